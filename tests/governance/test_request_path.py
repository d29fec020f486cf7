"""Governance enforced on the request path, over real gRPC: policy violations, classification
ceilings (randomised leak test), human review, audit of every action, shared quotas."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

from docfactory.app import RunningServer, start_server
from docfactory.core.config import Settings
from docfactory.core.db import make_engine
from docfactory.governance.audit import AuditLog
from docfactory.governance.v1 import governance_service_pb2 as gov_pb
from docfactory.governance.v1 import governance_service_pb2_grpc as gov_grpc
from docfactory.ingestion.v1 import ingestion_service_pb2 as ing_pb
from docfactory.ingestion.v1 import ingestion_service_pb2_grpc as ing_grpc
from tests.conftest import ROOT
from tests.helpers import answer, error_reason, md, search, upload

TENANTS = ("nord", "sud", "est")
LEVELS = {1: "PUBLIC", 2: "INTERNAL", 3: "CONFIDENTIAL", 4: "RESTRICTED"}


def _h(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def write_policy(path: Path, *, rpm: int | None = None) -> Path:
    keys: list[dict[str, Any]] = []
    for t in TENANTS:
        keys.append({"id": f"app-{t}", "tenant": t, "sha256": _h(f"key-{t}")})
        keys.append(
            {
                "id": f"reviewer-{t}",
                "tenant": t,
                "sha256": _h(f"rev-{t}"),
                "roles": ["reviewer", "auditor"],
            }
        )
    use_cases = [
        {
            "id": f"uc-{LEVELS[lvl].lower()}",
            "tenants": list(TENANTS),
            "owner": "dpo@groupe.example",
            "purpose": f"read up to {LEVELS[lvl]}",
            "allowed_collections": "*",
            "max_classification": LEVELS[lvl],
            "allowed_models": "*",
            "human_review": "optional",
            "retention": "30d",
        }
        for lvl in LEVELS
    ]
    use_cases += [
        {
            "id": "uc-rh",
            "tenants": ["nord"],
            "owner": "rh@nord.example",
            "purpose": "RH",
            "allowed_collections": ["rh"],
            "max_classification": "CONFIDENTIAL",
            "allowed_models": ["mistral-small"],
            "human_review": "optional",
            "retention": "none",
        },
        {
            "id": "uc-reviewed",
            "tenants": list(TENANTS),
            "owner": "conformite@groupe.example",
            "purpose": "answers to customers",
            "allowed_collections": "*",
            "max_classification": "INTERNAL",
            "allowed_models": "*",
            "human_review": "required",
            "retention": "30d",
        },
    ]
    if rpm is not None:
        use_cases.append(
            {
                "id": "uc-limited",
                "tenants": list(TENANTS),
                "owner": "ops@groupe.example",
                "purpose": "quota test",
                "allowed_collections": "*",
                "max_classification": "PUBLIC",
                "allowed_models": "*",
                "human_review": "optional",
                "retention": "none",
                "quotas": {"requests_per_minute": rpm},
            }
        )
    path.write_text(
        yaml.safe_dump(
            {
                "version": 7,
                "tenants": [{"id": t, "name": t.title()} for t in TENANTS],
                "api_keys": keys,
                "use_cases": use_cases,
            },
            sort_keys=False,
        )
    )
    return path


@pytest.fixture
async def gov_server(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> AsyncIterator[RunningServer]:
    policy = write_policy(tmp_path / "policy.yaml")
    running = await start_server(make_settings(policy_file=str(policy)), port=0)
    try:
        yield running
    finally:
        await running.stop(0.5)


async def _corpus(ch: grpc.aio.Channel, tmp_path: Path) -> dict[tuple[str, int, str], str]:
    """Overlapping content in 3 tenants x 4 levels x 2 collections; returns doc ids."""
    ids = {}
    for t in TENANTS:
        for lvl, name in LEVELS.items():
            for coll in ("rh", "finance"):
                f = tmp_path / f"{t}-{lvl}-{coll}.txt"
                f.write_text(
                    f"Note {name} de la caisse {t}, collection {coll}. Procédure de remboursement "
                    f"des frais de mission et règles de sécurité des données. marker-{t}-{lvl}"
                )
                r = await upload(ch, f, key=f"key-{t}", collection=coll, classification=lvl)
                ids[(t, lvl, coll)] = r.document.document_id
    return ids


async def test_policy_violations_have_codes_and_reasons(gov_server: RunningServer) -> None:
    async with grpc.aio.insecure_channel(gov_server.address) as ch:
        cases = [
            ({}, grpc.StatusCode.INVALID_ARGUMENT, "USE_CASE_REQUIRED"),
            ({"use_case": "nope"}, grpc.StatusCode.PERMISSION_DENIED, "UNKNOWN_USE_CASE"),
            (
                {"use_case": "uc-rh", "key": "key-sud"},
                grpc.StatusCode.PERMISSION_DENIED,
                "USE_CASE_NOT_ALLOWED_FOR_TENANT",
            ),
            (
                {"use_case": "uc-rh", "collections": ["finance"]},
                grpc.StatusCode.PERMISSION_DENIED,
                "COLLECTION_NOT_ALLOWED",
            ),
        ]
        for kw, code, reason in cases:
            key = kw.pop("key", "key-nord")
            for call in (search, answer):
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await call(ch, "frais de mission", key=key, **kw)
                assert err.value.code() == code, (kw, reason)
                assert error_reason(err.value) == reason
        # the old keys file no longer opens the door once a policy is configured
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await search(ch, "x", key="key-acme", use_case="uc-public")
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        # reviewer-only RPCs
        stub = gov_grpc.GovernanceServiceStub(ch)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.ListReviews(gov_pb.ListReviewsRequest(), metadata=md("key-nord"))
        assert error_reason(err.value) == "REVIEWER_ROLE_REQUIRED"
        pol = await stub.GetPolicy(gov_pb.GetPolicyRequest(), metadata=md("key-sud"))
        assert pol.version == "7"
        assert "uc-rh" not in {u.use_case_id for u in pol.use_cases}


async def test_model_not_allowed(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    policy = write_policy(tmp_path / "policy.yaml")
    settings = make_settings(
        policy_file=str(policy), generation={"urls": "http://127.0.0.1:9/v1", "model": "llama-x"}
    )
    running = await start_server(settings, port=0)
    try:
        async with grpc.aio.insecure_channel(running.address) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await answer(ch, "frais", key="key-nord", use_case="uc-rh", collections=["rh"])
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert error_reason(err.value) == "MODEL_NOT_ALLOWED"
    finally:
        await running.stop(0.5)


@pytest.mark.slow
async def test_leak_randomised_requests(gov_server: RunningServer, tmp_path: Path) -> None:
    rng = random.Random(20261128)
    async with grpc.aio.insecure_channel(gov_server.address) as ch:
        ids = await _corpus(ch, tmp_path)
        all_ids = list(ids.values())
        checked_results = 0
        for i in range(1000):
            t = rng.choice(TENANTS)
            lvl = rng.choice(list(LEVELS))
            uc = f"uc-{LEVELS[lvl].lower()}"
            kw: dict[str, Any] = {
                "use_case": uc,
                "top_k": rng.choice([3, 10, 30]),
                "mode": rng.choice([1, 2, 3]),
            }
            if rng.random() < 0.4:
                kw["collections"] = rng.sample(["rh", "finance", "autre"], rng.randint(1, 2))
            if rng.random() < 0.3:
                kw["document_ids"] = rng.sample(all_ids, rng.randint(1, 6))  # other tenants' too
            query = rng.choice(
                [
                    "frais de mission",
                    "sécurité des données",
                    "note RESTRICTED",
                    "caisse nord",
                    "remboursement",
                    "marker",
                ]
            )
            if i % 5 == 0:
                _, cits, _ = await answer(ch, query, key=f"key-{t}", **kw)
                texts = [(c.document_id, c.quote) for c in cits]
            else:
                res = await search(ch, query, key=f"key-{t}", **kw)
                texts = [(r.citation.document_id, r.text) for r in res.results]
            for doc_id, _text in texts:
                owner = next(k for k, v in ids.items() if v == doc_id)
                assert owner[0] == t, (t, owner)
                assert owner[1] <= lvl, (uc, owner)
                if "collections" in kw:
                    assert owner[2] in kw["collections"]
                checked_results += 1
        assert checked_results > 1500  # the test saw plenty of results, not an empty index


@pytest.mark.slow
async def test_review_flow_and_audit(
    gov_server: RunningServer, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    async with grpc.aio.insecure_channel(gov_server.address) as ch:
        f = tmp_path / "tarifs.md"
        f.write_text("# Tarifs\n\nLa carte bancaire classique coûte 45 euros par an.")
        await upload(ch, f, key="key-nord", classification=2)
        q = "Combien coûte la carte bancaire classique ?"
        text, cits, summary = await answer(ch, q, key="key-nord", use_case="uc-reviewed")
        # the draft is held: no text, no citations, a review id
        assert text == "" and cits == [] and summary.pending_review and summary.review_id
        gov = gov_grpc.GovernanceServiceStub(ch)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await gov.GetReviewedAnswer(
                gov_pb.GetReviewedAnswerRequest(review_id=summary.review_id),
                metadata=md("key-nord"),
            )
        assert error_reason(err.value) == "REVIEW_PENDING"
        pending = await gov.ListReviews(gov_pb.ListReviewsRequest(), metadata=md("rev-nord"))
        assert [r.review_id for r in pending.reviews] == [summary.review_id]
        assert "45 euros" in pending.reviews[0].draft_text
        # another tenant's reviewer does not see it
        other = await gov.ListReviews(gov_pb.ListReviewsRequest(), metadata=md("rev-sud"))
        assert not other.reviews
        await gov.DecideReview(
            gov_pb.DecideReviewRequest(
                review_id=summary.review_id, decision=gov_pb.REVIEW_DECISION_APPROVE
            ),
            metadata=md("rev-nord"),
        )
        released = await gov.GetReviewedAnswer(
            gov_pb.GetReviewedAnswerRequest(review_id=summary.review_id), metadata=md("key-nord")
        )
        assert released.state == "APPROVED" and "45 euros" in released.text
        assert released.citations[0].document_name == "tarifs.md"
        # reject -> never released
        _, _, s2 = await answer(ch, q, key="key-nord", use_case="uc-reviewed")
        await gov.DecideReview(
            gov_pb.DecideReviewRequest(
                review_id=s2.review_id, decision=gov_pb.REVIEW_DECISION_REJECT
            ),
            metadata=md("rev-nord"),
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await gov.GetReviewedAnswer(
                gov_pb.GetReviewedAnswerRequest(review_id=s2.review_id), metadata=md("key-nord")
            )
        assert error_reason(err.value) == "REVIEW_REJECTED"
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await gov.DecideReview(
                gov_pb.DecideReviewRequest(
                    review_id=s2.review_id, decision=gov_pb.REVIEW_DECISION_APPROVE
                ),
                metadata=md("rev-nord"),
            )
        assert error_reason(err.value) == "REVIEW_ALREADY_DECIDED"
        await search(ch, "carte", key="key-nord", use_case="uc-public")
        with pytest.raises(grpc.aio.AioRpcError):
            await search(ch, "carte", key="key-nord", use_case="nope")
        stub = ing_grpc.IngestionServiceStub(ch)
        docs = await stub.ListDocuments(ing_pb.ListDocumentsRequest(), metadata=md("key-nord"))
        await stub.DeleteDocument(
            ing_pb.DeleteDocumentRequest(name=docs.documents[0].name), metadata=md("key-nord")
        )
        report = await gov.VerifyAudit(gov_pb.VerifyAuditRequest(), metadata=md("rev-nord"))
        assert report.ok and report.checked >= 8
    # every action is in the audit log, with the question only where retention allows
    settings = make_settings()
    log = AuditLog(make_engine(settings.resolved_database_url), create_tables=False)
    recs = list(log.records())
    actions = [(r.action, r.outcome) for r in recs]
    assert ("INGEST", "OK") in actions and ("DELETE", "OK") in actions
    assert actions.count(("ANSWER", "PENDING_REVIEW")) == 2
    assert ("REVIEW_DECISION", "APPROVED") in actions and ("REVIEW_DECISION", "REJECTED") in actions
    assert ("SEARCH", "OK") in actions and ("DENIED", "UNKNOWN_USE_CASE") in actions
    answer_rec = next(r for r in recs if r.action == "ANSWER")
    assert answer_rec.use_case == "uc-reviewed" and answer_rec.key_id == "app-nord"
    assert answer_rec.document_ids


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(params=["sqlite", "postgresql"])
def shared_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'shared.db'}"
        return
    try:
        import psycopg

        admin = psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True)
    except Exception as exc:  # pragma: no cover - depends on the machine
        pytest.skip(f"PostgreSQL on 127.0.0.1:5432 unreachable: {exc}")
    name = f"docfactory_quota_{os.getpid()}_{random.randint(0, 10**6)}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.mark.slow
async def test_quota_shared_by_two_service_processes(shared_db: str, tmp_path: Path) -> None:
    limit = 10
    policy = write_policy(tmp_path / "policy.yaml", rpm=limit)
    procs: list[subprocess.Popen[bytes]] = []
    addrs: list[str] = []
    chans: list[grpc.aio.Channel] = []
    try:
        for i in range(2):
            port = _free_port()
            env = {
                **{k: v for k, v in os.environ.items() if not k.startswith("DOCFACTORY_")},
                "PYTHONPATH": str(ROOT / "services"),
                "DOCFACTORY_DATA_DIR": str(tmp_path / f"replica{i}"),
                "DOCFACTORY_DATABASE_URL": shared_db,
                "DOCFACTORY_POLICY_FILE": str(policy),
                "DOCFACTORY_PORT": str(port),
            }
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "docfactory.cli", "serve"],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=open(tmp_path / f"r{i}.log", "wb"),  # noqa: SIM115
                )
            )
            addrs.append(f"127.0.0.1:{port}")
            # start replicas one after the other: the first creates the tables
            ch = grpc.aio.insecure_channel(addrs[-1])
            await asyncio.wait_for(ch.channel_ready(), 180)
            chans.append(ch)
        # stay inside one minute window
        if time.time() % 60 > 45:
            await asyncio.sleep(61 - time.time() % 60)

        async def one(ch: grpc.aio.Channel) -> str:
            try:
                await search(ch, "frais", key="key-est", use_case="uc-limited")
                return "OK"
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert error_reason(exc) == "QUOTA_EXCEEDED"
                md_ = dict(exc.trailing_metadata() or ())
                assert "grpc-status-details-bin" in md_
                return "LIMITED"

        outcomes = await asyncio.gather(*(one(chans[i % 2]) for i in range(16)))
        assert outcomes.count("OK") == limit, outcomes
        assert outcomes.count("LIMITED") == 16 - limit
        for ch in chans:
            await ch.close()
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


async def test_raising_classification_takes_effect_on_chunks(
    gov_server: RunningServer, tmp_path: Path
) -> None:
    async with grpc.aio.insecure_channel(gov_server.address) as ch:
        f = tmp_path / "fusion.md"
        f.write_text("# Projet\n\nLe projet de fusion des caisses est prévu pour 2027.")
        first = await upload(ch, f, key="key-sud", classification=2)
        res = await search(ch, "projet de fusion", key="key-sud", use_case="uc-internal")
        assert [r.citation.document_id for r in res.results] == [first.document.document_id]
        again = await upload(ch, f, key="key-sud", classification=4)  # same bytes, RESTRICTED
        assert again.document.classification == 4 and not again.unchanged
        res = await search(ch, "projet de fusion", key="key-sud", use_case="uc-internal")
        assert not res.results
        res = await search(ch, "projet de fusion", key="key-sud", use_case="uc-restricted")
        assert [r.citation.document_id for r in res.results] == [first.document.document_id]


async def test_ingestion_requires_the_ingester_role_when_the_policy_says_so(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    policy = write_policy(tmp_path / "policy.yaml")
    raw = yaml.safe_load(policy.read_text())
    raw["ingestion_requires_role"] = True
    raw["api_keys"] += [
        {"id": "ingest-nord", "tenant": "nord", "sha256": _h("ing-nord"), "roles": ["ingester"]},
        {"id": "worker-sud", "tenant": "sud", "sha256": _h("wrk-sud"), "roles": ["worker"]},
    ]
    policy.write_text(yaml.safe_dump(raw, sort_keys=False))
    running = await start_server(make_settings(policy_file=str(policy)), port=0)
    note = tmp_path / "note.txt"
    note.write_text("Procédure de remboursement des frais de mission : 45 euros par nuit.")
    try:
        async with grpc.aio.insecure_channel(running.address) as ch:
            stub = ing_grpc.IngestionServiceStub(ch)
            # A key without the role cannot write...
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await upload(ch, note, key="key-nord", collection="rh")
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert error_reason(err.value) == "INGESTER_ROLE_REQUIRED"
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.IngestPath(
                    ing_pb.IngestPathRequest(paths=[str(note)]), metadata=md("key-nord")
                ).read()
            assert error_reason(err.value) == "INGESTER_ROLE_REQUIRED"
            # ... an ingester key can, and the reader key still reads.
            doc = (await upload(ch, note, key="ing-nord", collection="rh")).document
            assert doc.state == ing_pb.DOCUMENT_STATE_INDEXED
            hits = await search(ch, "frais de mission", key="key-nord", use_case="uc-internal")
            assert hits.results and hits.results[0].citation.document_id == doc.document_id
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.DeleteDocument(
                    ing_pb.DeleteDocumentRequest(name=doc.name), metadata=md("key-nord")
                )
            assert error_reason(err.value) == "INGESTER_ROLE_REQUIRED"
            # The refused deletion changed nothing.
            got = await stub.GetDocument(
                ing_pb.GetDocumentRequest(name=doc.name), metadata=md("key-nord")
            )
            assert got.document.state == ing_pb.DOCUMENT_STATE_INDEXED
            # A worker acting for the tenant writes (its job was authorized when submitted).
            worker_md = (*md("wrk-sud"), ("x-docfactory-on-behalf-of", "nord"))
            again = await stub.DeleteDocument(
                ing_pb.DeleteDocumentRequest(name=doc.name), metadata=worker_md
            )
            assert again is not None
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.GetDocument(
                    ing_pb.GetDocumentRequest(name=doc.name), metadata=md("key-nord")
                )
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        await running.stop(0.5)
    log = AuditLog(make_engine(make_settings().resolved_database_url), create_tables=False)
    denied = [r for r in log.records() if r.action == "DENIED"]
    assert [r.outcome for r in denied] == ["INGESTER_ROLE_REQUIRED"] * 3
    assert {r.key_id for r in denied} == {"app-nord"}
    assert sorted(r.details["rpc"] for r in denied) == [
        "DeleteDocument",
        "IngestPath",
        "UploadDocument",
    ]
