"""Issue 24, item 6 (and the metadata caps): inputs that broke the server with INTERNAL, or
were silently accepted, reproduced against a real server with the exact values reported.

- a ListReviews page token whose integer does not fit 64 bits (OverflowError in SQLite);
- ExportAudit ``start_time`` before 0001-01-01 or after 9999-12-31 (ValueError in
  ``Timestamp.ToDatetime``); the same out-of-range ``ingested_after`` in Search;
- UpdateDocument metadata beyond what an upload accepts (256 x 4,096 vs 64 x 2,048).

Each is refused with INVALID_ARGUMENT and its reason; values at the bounds still pass."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import pytest_asyncio
import yaml
from google.protobuf import field_mask_pb2, timestamp_pb2

from docfactory.answering.v1 import answering_service_pb2 as ans_pb
from docfactory.answering.v1 import answering_service_pb2_grpc as ans_grpc
from docfactory.app import RunningServer, start_server
from docfactory.common.v1 import common_pb2
from docfactory.governance.v1 import governance_service_pb2 as gov_pb
from docfactory.governance.v1 import governance_service_pb2_grpc as gov_grpc
from docfactory.ingestion.v1 import ingestion_service_pb2 as ing_pb
from docfactory.ingestion.v1 import ingestion_service_pb2_grpc as ing_grpc
from docfactory.jobs.v1 import jobs_service_pb2 as jobs_pb
from docfactory.workflows.v1 import workflows_service_pb2 as wf_pb
from tests.security._env import Env, details, make_env, md

pytestmark = pytest.mark.asyncio(loop_scope="module")

# The exact inputs of the report.
OVERFLOW_TOKEN = "eyJrIjogWyI5MjIzMzcyMDM2ODU0Nzc1ODA4Il0sICJmIjogInJldmlld3M6In0="
TOO_EARLY = -62135596801  # 0000-12-31T23:59:59Z
TOO_LATE = 253402300800  # 10000-01-01T00:00:00Z
MIN_SECONDS = -62135596800  # 0001-01-01T00:00:00Z
MAX_SECONDS = 253402300799  # 9999-12-31T23:59:59Z

# The caps of client-supplied document metadata, on upload and update alike.
MAX_METADATA_ENTRIES = 64
MAX_METADATA_VALUE_CHARS = 2_048

# Extra keys for this suite: a reviewer and an auditor of tenant sud.
EXTRA_KEYS = {
    "rev-sud": ("reviewer-sud", "sud", ["reviewer"]),
    "aud-sud": ("auditor-sud", "sud", ["auditor"]),
}


def _token(values: list[Any], fingerprint: str) -> str:
    raw = json.dumps({"k": values, "f": fingerprint}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _add_keys(env: Env) -> None:
    import hashlib

    path = env.root / "policy.yaml"
    policy = yaml.safe_load(path.read_text())
    for key, (kid, tenant, roles) in EXTRA_KEYS.items():
        policy["api_keys"].append(
            {"id": kid, "tenant": tenant, "sha256": hashlib.sha256(key.encode()).hexdigest()}
            | {"roles": roles}
        )
    path.write_text(yaml.safe_dump(policy, sort_keys=False))


class Ctx:
    def __init__(self, server: RunningServer, channel: grpc.aio.Channel) -> None:
        self.server = server
        self.ch = channel
        self.gov = gov_grpc.GovernanceServiceStub(channel)
        self.ing = ing_grpc.IngestionServiceStub(channel)
        self.ans = ans_grpc.AnsweringServiceStub(channel)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def ctx(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Ctx]:
    env = make_env(tmp_path_factory.mktemp("bad-input"))
    _add_keys(env)
    running = await start_server(env.settings, port=0)
    channel = grpc.aio.insecure_channel(running.address)
    try:
        yield Ctx(running, channel)
    finally:
        await channel.close()
        await running.stop(0.5)


async def _refused(coro: Any, reason: str) -> list[tuple[str, str]]:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await coro
    got, violations = details(err.value)
    assert (err.value.code(), got) == (grpc.StatusCode.INVALID_ARGUMENT, reason), (
        err.value.code(),
        got,
        err.value.details(),
    )
    return violations


async def _drain(call: Any) -> int:
    n = 0
    async for _ in call:
        n += 1
    return n


# ListReviews page tokens --------------------------------------------------------------------


async def test_list_reviews_overflowing_token_is_invalid(ctx: Ctx) -> None:
    await _refused(
        ctx.gov.ListReviews(
            gov_pb.ListReviewsRequest(page_token=OVERFLOW_TOKEN), metadata=md("rev-sud")
        ),
        "INVALID_PAGE_TOKEN",
    )


@pytest.mark.parametrize(
    "value",
    ["-9223372036854775809", "9" * 40, "1e400", "nan", "-inf", "1.5", ""],
)
async def test_list_reviews_out_of_range_keys_are_invalid(ctx: Ctx, value: str) -> None:
    await _refused(
        ctx.gov.ListReviews(
            gov_pb.ListReviewsRequest(page_token=_token([value], "reviews:")),
            metadata=md("rev-sud"),
        ),
        "INVALID_PAGE_TOKEN",
    )


async def test_deeply_nested_token_is_invalid(ctx: Ctx) -> None:
    # Within the 4,096-character cap of a string field, deeper than json's recursion limit.
    raw = b'{"k": ' + b"[" * 1500 + b"]" * 1500 + b', "f": "reviews:"}'
    token = base64.urlsafe_b64encode(raw).decode()
    assert len(token) <= 4096
    await _refused(
        ctx.gov.ListReviews(gov_pb.ListReviewsRequest(page_token=token), metadata=md("rev-sud")),
        "INVALID_PAGE_TOKEN",
    )


async def test_list_reviews_int64_bounds_still_page(ctx: Ctx) -> None:
    for value in (str(2**63 - 1), str(-(2**63)), "0"):
        resp = await ctx.gov.ListReviews(
            gov_pb.ListReviewsRequest(page_token=_token([value], "reviews:")),
            metadata=md("rev-sud"),
        )
        assert resp.next_page_token == ""


# Every List RPC: a forged token whose keys parse but are out of range -----------------------

# (method, request class, fingerprint for an unfiltered request by ing-sud, a valid key,
# forged keys)
_FLOAT_KEYS = [["nan", "x"], ["-inf", "x"], ["1e999", "x"]]
_LISTS = [
    (
        "/docfactory.ingestion.v1.IngestionService/ListDocuments",
        ing_pb.ListDocumentsRequest,
        "docs||",
        ["2024-01-01T00:00:00+00:00", "x"],
        [["99999-01-01", "x"], ["2024-01-01T00:00:00+99:00", "x"], ["", "x"]],
    ),
    (
        "/docfactory.jobs.v1.JobsService/ListJobs",
        jobs_pb.ListJobsRequest,
        "jobs:",
        ["1.0", "x"],
        _FLOAT_KEYS,
    ),
    (
        "/docfactory.workflows.v1.WorkflowService/ListDossiers",
        wf_pb.ListDossiersRequest,
        "dossiers::",
        ["1.0", "x"],
        _FLOAT_KEYS,
    ),
    (
        "/docfactory.workflows.v1.WorkflowService/ListPendingDecisions",
        wf_pb.ListPendingDecisionsRequest,
        "pending:ingester-sud",
        ["1.0", "x"],
        _FLOAT_KEYS,
    ),
]


@pytest.mark.parametrize(("method", "request_cls", "fingerprint", "valid", "keys"), _LISTS)
async def test_every_list_rpc_refuses_out_of_range_token_keys(
    ctx: Ctx,
    method: str,
    request_cls: Any,
    fingerprint: str,
    valid: list[str],
    keys: list[list[str]],
) -> None:
    call = ctx.ch.unary_unary(
        method, request_serializer=request_cls.SerializeToString, response_deserializer=None
    )
    # The fingerprint is right: an in-range key pages normally.
    await call(request_cls(page_token=_token(valid, fingerprint)), metadata=md("ing-sud"))
    for values in keys:
        await _refused(
            call(request_cls(page_token=_token(values, fingerprint)), metadata=md("ing-sud")),
            "INVALID_PAGE_TOKEN",
        )


# Timestamps ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "nanos", "field"),
    [
        (TOO_EARLY, 0, "start_time.seconds"),
        (TOO_LATE, 0, "start_time.seconds"),
        (0, -1, "start_time.nanos"),
        (0, 1_000_000_000, "start_time.nanos"),
    ],
)
async def test_export_audit_out_of_range_start_time_is_invalid(
    ctx: Ctx, seconds: int, nanos: int, field: str
) -> None:
    req = gov_pb.ExportAuditRequest(
        start_time=timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)
    )
    for key in ("aud-sud", "read-sud"):
        violations = await _refused(
            _drain(ctx.gov.ExportAudit(req, metadata=md(key))), "INVALID_TIMESTAMP"
        )
        assert [f for f, _ in violations] == [field]


async def test_export_audit_start_time_at_the_bounds_is_accepted(ctx: Ctx) -> None:
    for seconds, nanos in ((MIN_SECONDS, 0), (MAX_SECONDS, 999_999_999)):
        req = gov_pb.ExportAuditRequest(
            start_time=timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)
        )
        await _drain(ctx.gov.ExportAudit(req, metadata=md("aud-sud")))


@pytest.mark.parametrize("field", ["ingested_after", "ingested_before"])
@pytest.mark.parametrize("seconds", [TOO_EARLY, TOO_LATE])
async def test_search_out_of_range_ingestion_time_is_invalid(
    ctx: Ctx, field: str, seconds: int
) -> None:
    flt = common_pb2.DocumentFilter()
    getattr(flt, field).seconds = seconds
    violations = await _refused(
        ctx.ans.Search(
            ans_pb.SearchRequest(query="horaires", use_case="uc-public", filter=flt),
            metadata=md("read-sud"),
        ),
        "INVALID_TIMESTAMP",
    )
    assert [f for f, _ in violations] == [f"filter.{field}.seconds"]


# Metadata caps ------------------------------------------------------------------------------


async def _upload(ctx: Ctx, metadata: dict[str, str], filename: str) -> ing_pb.Document:
    async def reqs() -> AsyncIterator[ing_pb.UploadDocumentRequest]:
        yield ing_pb.UploadDocumentRequest(
            metadata=ing_pb.UploadMetadata(
                filename=filename,
                collection="caps",
                classification=common_pb2.CLASSIFICATION_PUBLIC,
                metadata=metadata,
            )
        )
        yield ing_pb.UploadDocumentRequest(data=b"Horaires d'ouverture de l'agence Sud.")

    resp = await ctx.ing.UploadDocument(reqs(), metadata=md("ing-sud"), timeout=120)
    doc: ing_pb.Document = resp.document
    return doc


def _update(ctx: Ctx, name: str, metadata: dict[str, str]) -> Any:
    return ctx.ing.UpdateDocument(
        ing_pb.UpdateDocumentRequest(
            document=ing_pb.Document(name=name, metadata=metadata),
            update_mask=field_mask_pb2.FieldMask(paths=["metadata"]),
        ),
        metadata=md("ing-sud"),
    )


def _meta(entries: int, chars: int) -> dict[str, str]:
    return {f"k{i}": "v" * chars for i in range(entries)}


async def test_update_metadata_caps_equal_upload_caps(ctx: Ctx) -> None:
    at_cap = _meta(MAX_METADATA_ENTRIES, MAX_METADATA_VALUE_CHARS)
    doc = await _upload(ctx, at_cap, "caps.txt")
    assert doc.name
    updated = await _update(ctx, doc.name, at_cap)
    assert dict(updated.document.metadata) == at_cap

    # The report's input, then one entry too many, then one value too long: refused alike on
    # both paths.
    for metadata, reason in (
        (_meta(256, 4_096), "TOO_MANY_ITEMS"),
        (_meta(MAX_METADATA_ENTRIES + 1, 1), "TOO_MANY_ITEMS"),
        ({"k": "v" * (MAX_METADATA_VALUE_CHARS + 1)}, "FIELD_TOO_LONG"),
    ):
        await _refused(_update(ctx, doc.name, metadata), reason)
        await _refused(_upload(ctx, metadata, "caps-2.txt"), reason)
    # Nothing changed.
    got = await ctx.ing.GetDocument(
        ing_pb.GetDocumentRequest(name=doc.name), metadata=md("ing-sud")
    )
    assert dict(got.document.metadata) == at_cap


async def test_one_metadata_cap_for_upload_and_update() -> None:
    from docfactory.core import validation

    # One cap, declared once, for both request fields.
    for field in ("UploadMetadata.metadata", "Document.metadata"):
        lim = validation.FIELD_LIMITS[f"docfactory.ingestion.v1.{field}"]
        assert lim is validation.METADATA_LIMIT
        assert (lim.max_items, lim.max_chars) == (MAX_METADATA_ENTRIES, MAX_METADATA_VALUE_CHARS)


async def test_paths_without_a_request_field_get_the_same_metadata_cap() -> None:
    """Dossier files, background and mail ingestion call the service directly: the same cap."""
    from docfactory.core.errors import InvalidArgument
    from docfactory.core.validation import check_metadata

    check_metadata(_meta(MAX_METADATA_ENTRIES, MAX_METADATA_VALUE_CHARS))
    for metadata, reason, field in (
        (_meta(MAX_METADATA_ENTRIES + 1, 1), "TOO_MANY_ITEMS", "metadata"),
        ({"k": "v" * (MAX_METADATA_VALUE_CHARS + 1)}, "FIELD_TOO_LONG", "metadata['k']"),
        ({"k" * 257: "v"}, "FIELD_TOO_LONG", "metadata[key]"),
    ):
        with pytest.raises(InvalidArgument) as err:
            check_metadata(metadata)
        assert err.value.reason == reason
        assert [f for f, _ in err.value.field_violations] == [field]
