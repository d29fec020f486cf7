"""Issue 24 (partial findings): every refusal and every INTERNAL error of an identified caller is
in the audit chain, exactly once -- on-behalf and attestation refusals, cross-tenant reads
(NOT_FOUND, with the RPC and the requested id), role refusals, invalid arguments, expired keys,
unexpected errors (their correlation id, never the exception's text); the worker key acts only
for the policy's tenants; GetUsage needs the console's usage roles. The suite provokes each
one against a real two-tenant server, then counts the records by action and outcome, and
``audit verify`` (AuditLog.verify and the VerifyAudit RPC) still passes.

An unknown or missing API key is not audited: it names no tenant, and the chains are per tenant
(an anonymous chain would let anyone on the network grow the audit table); it is counted in the
RPC metrics and logged."""

from __future__ import annotations

import collections
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
import yaml
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from docfactory.app import RunningServer, start_server
from docfactory.core.db import make_engine
from docfactory.governance.audit import AuditLog, AuditRecord
from docfactory.governance.v1 import governance_service_pb2 as gov_pb
from docfactory.governance.v1 import governance_service_pb2_grpc as gov_grpc
from docfactory.ingestion.v1 import ingestion_service_pb2 as ing_pb
from docfactory.ingestion.v1 import ingestion_service_pb2_grpc as ing_grpc
from docfactory.jobs.v1 import jobs_service_pb2 as jobs_pb
from docfactory.jobs.v1 import jobs_service_pb2_grpc as jobs_grpc
from docfactory.measurement.v1 import measurement_service_pb2 as meas_pb
from docfactory.measurement.v1 import measurement_service_pb2_grpc as meas_grpc
from tests.helpers import upload
from tests.security._env import Env, details, make_env, md

pytestmark = pytest.mark.asyncio(loop_scope="module")

ON_BEHALF = "x-docfactory-on-behalf-of"
ATTESTATION = "x-docfactory-principal"
SECRET_TEXT = "password=hunter2"

# Keys of this suite only (added to the policy of _env): a worker, an owner and an auditor of
# sud, and an expired key of sud.
EXTRA_KEYS: dict[str, tuple[str, str, list[str], dict[str, Any]]] = {
    "work-nord": ("worker-nord", "nord", ["worker"], {}),
    "own-sud": ("owner-sud", "sud", ["owner"], {}),
    "aud-sud": ("auditor-sud", "sud", ["auditor"], {}),
    "rev-sud": ("reviewer-sud", "sud", ["reviewer"], {}),
    "old-sud": ("expired-sud", "sud", [], {"expires": "2020-01-01"}),
}


def _add_keys(env: Env) -> None:
    path = env.root / "policy.yaml"
    policy = yaml.safe_load(path.read_text())
    for key, (kid, tenant, roles, extra) in EXTRA_KEYS.items():
        entry = {"id": kid, "tenant": tenant, "sha256": hashlib.sha256(key.encode()).hexdigest()}
        policy["api_keys"].append(entry | ({"roles": roles} if roles else {}) | extra)
    path.write_text(yaml.safe_dump(policy, sort_keys=False))


class Ctx:
    def __init__(self, env: Env, server: RunningServer, channel: grpc.aio.Channel) -> None:
        self.env = env
        self.server = server
        self.ch = channel
        self.ing = ing_grpc.IngestionServiceStub(channel)
        self.jobs = jobs_grpc.JobsServiceStub(channel)
        self.meas = meas_grpc.MeasurementServiceStub(channel)
        self.gov = gov_grpc.GovernanceServiceStub(channel)
        self.nord_doc = ""
        self.nord_job = ""
        #: (tenant, key id, action, outcome) of every refusal provoked by this suite.
        self.provoked: collections.Counter[tuple[str, str, str, str]] = collections.Counter()

    @property
    def audit(self) -> AuditLog:
        url = self.env.settings.resolved_database_url
        return AuditLog(make_engine(url), create_tables=False)

    def failures(self) -> list[AuditRecord]:
        return [
            r
            for r in self.audit.records()
            if r.action in ("DENIED", "REJECTED", "NOT_FOUND", "ERROR")
        ]

    def counted(self) -> collections.Counter[tuple[str, str, str, str]]:
        return collections.Counter(
            (r.tenant, r.key_id, r.action, r.outcome) for r in self.failures()
        )

    def one(self, tenant: str, key_id: str, action: str, outcome: str) -> AuditRecord:
        found = [
            r
            for r in self.failures()
            if (r.tenant, r.key_id, r.action, r.outcome) == (tenant, key_id, action, outcome)
        ]
        assert len(found) == 1, (tenant, key_id, action, outcome, found)
        return found[0]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def ctx(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Ctx]:
    env = make_env(tmp_path_factory.mktemp("audit-refusals"))
    _add_keys(env)
    running = await start_server(env.settings, port=0)
    channel = grpc.aio.insecure_channel(running.address)
    c = Ctx(env, running, channel)
    note = env.root / "note.txt"
    note.write_text("Note de service : les congés d'été sont posés avant le 31 mars.")
    c.nord_doc = (await upload(channel, note, key="ing-nord", collection="rh")).document.document_id
    job = await c.jobs.IngestPrefix(
        jobs_pb.IngestPrefixRequest(bucket="nord-docs", prefix=""), metadata=md("ing-nord")
    )
    c.nord_job = job.job.job_id
    try:
        yield c
    finally:
        await channel.close()
        await running.stop(0.5)


async def _refused(
    ctx: Ctx,
    coro: Any,
    code: grpc.StatusCode,
    reason: str,
    audited_as: tuple[str, str, str] | None,
) -> grpc.aio.AioRpcError:
    """Run a call that must fail with ``code``/``reason``; ``audited_as`` (tenant, key id,
    action) is the record it must leave (None: none)."""
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await coro
    got, _ = details(err.value)
    assert (err.value.code(), got) == (code, reason), err.value.details()
    if audited_as is not None:
        ctx.provoked[(*audited_as, reason)] += 1
    return err.value


async def test_on_behalf_refusals_are_audited_and_unknown_tenants_refused(ctx: Ctx) -> None:
    # A key without the worker role naming another tenant.
    await _refused(
        ctx,
        ctx.ing.ListDocuments(
            ing_pb.ListDocumentsRequest(), metadata=(*md("read-sud"), (ON_BEHALF, "nord"))
        ),
        grpc.StatusCode.PERMISSION_DENIED,
        "ON_BEHALF_NOT_ALLOWED",
        ("sud", "reader-sud", "DENIED"),
    )
    rec = ctx.one("sud", "reader-sud", "DENIED", "ON_BEHALF_NOT_ALLOWED")
    assert rec.details.get("rpc") == "ListDocuments"
    assert rec.details.get("on_behalf_of") == "nord"

    # The worker key naming a tenant the policy does not have (the report's tenant-zzz): no
    # document is stored under it.
    async def requests() -> AsyncIterator[ing_pb.UploadDocumentRequest]:
        yield ing_pb.UploadDocumentRequest(
            metadata=ing_pb.UploadMetadata(filename="zzz.txt", collection="bulk")
        )
        yield ing_pb.UploadDocumentRequest(data=b"Document d'un tenant inconnu.")

    await _refused(
        ctx,
        ctx.ing.UploadDocument(requests(), metadata=(*md("work-nord"), (ON_BEHALF, "tenant-zzz"))),
        grpc.StatusCode.PERMISSION_DENIED,
        "UNKNOWN_TENANT",
        ("nord", "worker-nord", "DENIED"),
    )
    rec = ctx.one("nord", "worker-nord", "DENIED", "UNKNOWN_TENANT")
    assert rec.details.get("on_behalf_of") == "tenant-zzz"
    assert not [r for r in ctx.audit.records() if r.tenant == "tenant-zzz"]
    # The worker still acts for a tenant of the policy.
    listed = await ctx.ing.ListDocuments(
        ing_pb.ListDocumentsRequest(), metadata=(*md("work-nord"), (ON_BEHALF, "nord"))
    )
    assert [d.document_id for d in listed.documents] == [ctx.nord_doc]


async def test_untrusted_attestation_is_audited_under_the_callers_key(ctx: Ctx) -> None:
    forged = "eyJ0ZW5hbnQiOiAibm9yZCIsICJrZXlfaWQiOiAieCJ9"
    await _refused(
        ctx,
        ctx.ing.ListDocuments(
            ing_pb.ListDocumentsRequest(), metadata=(*md("read-sud"), (ATTESTATION, forged))
        ),
        grpc.StatusCode.PERMISSION_DENIED,
        "ATTESTATION_NOT_TRUSTED",
        ("sud", "reader-sud", "DENIED"),
    )
    # Without a valid key, nobody to audit it under: refused, not recorded.
    await _refused(
        ctx,
        ctx.ing.ListDocuments(
            ing_pb.ListDocumentsRequest(), metadata=(*md("nope"), (ATTESTATION, forged))
        ),
        grpc.StatusCode.PERMISSION_DENIED,
        "ATTESTATION_NOT_TRUSTED",
        None,
    )


async def test_cross_tenant_reads_are_audited_with_the_requested_id(ctx: Ctx) -> None:
    await _refused(
        ctx,
        ctx.ing.GetDocument(
            ing_pb.GetDocumentRequest(name=f"documents/{ctx.nord_doc}"), metadata=md("read-sud")
        ),
        grpc.StatusCode.NOT_FOUND,
        "DOCUMENT_NOT_FOUND",
        ("sud", "reader-sud", "NOT_FOUND"),
    )
    rec = ctx.one("sud", "reader-sud", "NOT_FOUND", "DOCUMENT_NOT_FOUND")
    assert rec.details.get("rpc") == "GetDocument"
    assert ctx.nord_doc in str(rec.details.get("name"))
    await _refused(
        ctx,
        ctx.jobs.GetJob(jobs_pb.GetJobRequest(name=f"jobs/{ctx.nord_job}"), metadata=md("ing-sud")),
        grpc.StatusCode.NOT_FOUND,
        "JOB_NOT_FOUND",
        ("sud", "ingester-sud", "NOT_FOUND"),
    )
    rec = ctx.one("sud", "ingester-sud", "NOT_FOUND", "JOB_NOT_FOUND")
    assert rec.details.get("rpc") == "GetJob" and ctx.nord_job in str(rec.details.get("name"))
    # Feedback on an audit record of nord (seq 1: nord's upload).
    await _refused(
        ctx,
        ctx.meas.SubmitFeedback(
            meas_pb.SubmitFeedbackRequest(answer_audit_seq=1, rating=4), metadata=md("read-sud")
        ),
        grpc.StatusCode.NOT_FOUND,
        "ANSWER_NOT_FOUND",
        ("sud", "reader-sud", "NOT_FOUND"),
    )
    rec = ctx.one("sud", "reader-sud", "NOT_FOUND", "ANSWER_NOT_FOUND")
    assert rec.details.get("answer_audit_seq") == "1"
    # A review id of no draft of sud (another tenant's looks the same).
    await _refused(
        ctx,
        ctx.gov.GetReview(gov_pb.GetReviewRequest(review_id="rv-nord-1"), metadata=md("rev-sud")),
        grpc.StatusCode.NOT_FOUND,
        "REVIEW_NOT_FOUND",
        ("sud", "reviewer-sud", "NOT_FOUND"),
    )
    rec = ctx.one("sud", "reviewer-sud", "NOT_FOUND", "REVIEW_NOT_FOUND")
    assert rec.details.get("review_id") == "rv-nord-1"


async def test_get_usage_needs_the_consoles_usage_roles(ctx: Ctx) -> None:
    await _refused(
        ctx,
        ctx.meas.GetUsage(meas_pb.GetUsageRequest(), metadata=md("read-sud")),
        grpc.StatusCode.PERMISSION_DENIED,
        "USAGE_ROLE_REQUIRED",
        ("sud", "reader-sud", "DENIED"),
    )
    usage = await ctx.meas.GetUsage(meas_pb.GetUsageRequest(), metadata=md("own-sud"))
    assert {r.tenant for r in usage.records} <= {"sud"}


async def test_role_and_argument_refusals_are_audited_once(ctx: Ctx) -> None:
    # Audited by the gate's role check itself: not a second time by the interceptor.
    async def requests() -> AsyncIterator[ing_pb.UploadDocumentRequest]:
        yield ing_pb.UploadDocumentRequest(
            metadata=ing_pb.UploadMetadata(filename="x.txt", collection="rh")
        )
        yield ing_pb.UploadDocumentRequest(data=b"x")

    await _refused(
        ctx,
        ctx.ing.UploadDocument(requests(), metadata=md("read-nord")),
        grpc.StatusCode.PERMISSION_DENIED,
        "INGESTER_ROLE_REQUIRED",
        ("nord", "reader-nord", "DENIED"),
    )
    await _refused(
        ctx,
        ctx.ing.ListDocuments(ing_pb.ListDocumentsRequest(state=99), metadata=md("read-nord")),  # type: ignore[arg-type]
        grpc.StatusCode.INVALID_ARGUMENT,
        "UNKNOWN_ENUM_VALUE",
        ("nord", "reader-nord", "REJECTED"),
    )


async def test_expired_key_is_audited_unknown_key_is_not(ctx: Ctx) -> None:
    before = len(list(ctx.audit.records()))
    await _refused(
        ctx,
        ctx.ing.ListDocuments(ing_pb.ListDocumentsRequest(), metadata=md("not-a-key")),
        grpc.StatusCode.UNAUTHENTICATED,
        "API_KEY_INVALID",
        None,
    )
    assert len(list(ctx.audit.records())) == before
    await _refused(
        ctx,
        ctx.ing.ListDocuments(ing_pb.ListDocumentsRequest(), metadata=md("old-sud")),
        grpc.StatusCode.UNAUTHENTICATED,
        "API_KEY_EXPIRED",
        ("sud", "expired-sud", "DENIED"),
    )


async def test_internal_errors_are_audited_with_their_correlation_id(
    ctx: Ctx, monkeypatch: pytest.MonkeyPatch
) -> None:
    from docfactory.measurement.service import MeasurementService

    def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError(f"database said {SECRET_TEXT}")

    monkeypatch.setattr(MeasurementService, "usage_and_dossiers", broken)
    err = await _refused(
        ctx,
        ctx.meas.GetUsage(meas_pb.GetUsageRequest(), metadata=md("own-sud")),
        grpc.StatusCode.INTERNAL,
        "INTERNAL_UNEXPECTED",
        ("sud", "owner-sud", "ERROR"),
    )
    correlation = ""
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    for d in status.details if status is not None else ():
        info = error_details_pb2.ErrorInfo()
        if d.Unpack(info):
            correlation = info.metadata["correlation_id"]
    assert correlation
    rec = ctx.one("sud", "owner-sud", "ERROR", "INTERNAL_UNEXPECTED")
    assert rec.details.get("correlation_id") == correlation
    assert rec.details.get("rpc") == "GetUsage"
    assert SECRET_TEXT not in str(rec.to_json())


async def test_zz_every_refusal_is_in_the_chain_once_and_it_verifies(
    ctx: Ctx, tmp_path: Path
) -> None:
    counted = ctx.counted()
    assert ctx.provoked, "the suite provoked refusals"
    for key, n in ctx.provoked.items():
        assert counted[key] == n, (key, counted[key], n)
    # Nothing else failed in this module: no record beyond the provoked ones.
    assert {k: v for k, v in counted.items() if k not in ctx.provoked} == {}
    report = ctx.audit.verify()
    assert report.ok, report
    resp = await ctx.gov.VerifyAudit(gov_pb.VerifyAuditRequest(), metadata=md("aud-sud"))
    assert resp.ok and resp.checked >= sum(ctx.provoked.values())
