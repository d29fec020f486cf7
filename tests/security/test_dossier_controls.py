"""Issue 24, items 1-4: the dossier controls a hostile tenant broke, reproduced with the exact
inputs of the probe over real gRPC, real SQLite and real workflow worker processes.

1. four-eyes: the submitter approving, then amending the amount below the threshold, then
   approving again -> COMPLETED by one person;
2. a client's ``source_uri: local:///etc/passwd`` read back by the server into a dossier;
3. ``CreateDossier{files}`` storing documents for a key without the ingester role;
4. runs waiting for a person holding the worker's slots, and one tenant filling them.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from docfactory.ingestion.v1 import ingestion_service_pb2 as ing_pb
from docfactory.ingestion.v1 import ingestion_service_pb2_grpc as ing_grpc
from docfactory.workflows.v1 import workflows_service_pb2 as pb
from tests.conftest import WORKER_KEY
from tests.security._env import details
from tests.workflows import dossiers
from tests.workflows.conftest import (
    Env,
    create_dossier,
    decide,
    md,
    start_run,
    stub,
    wait_state,
    write_policy,
)

pytestmark = pytest.mark.slow

# key -> (key id, tenant, roles)
KEYS: dict[str, tuple[str, str, list[str]]] = {
    "a-rev1": ("a-rev1", "acme", ["reviewer", "ingester"]),  # submits, and reviews
    "a-rev2": ("a-rev2", "acme", ["reviewer"]),
    "a-rev3": ("a-rev3", "acme", ["reviewer"]),
    "a-ing": ("a-ing", "acme", ["ingester"]),
    "a-plain": ("a-plain", "acme", []),
    "b-ing": ("b-ing", "globex", ["ingester", "reviewer"]),
    WORKER_KEY: ("bulk-worker", "platform", ["worker"]),
}
WAITING = {pb.RUN_STATE_AWAITING_SIGNOFF}
ENDED = {
    pb.RUN_STATE_COMPLETED,
    pb.RUN_STATE_REJECTED,
    pb.RUN_STATE_INCOMPLETE,
    pb.RUN_STATE_FAILED,
    pb.RUN_STATE_CANCELLED,
}


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    """The workflow suites' server and worker processes, under this module's policy."""
    e = Env(tmp_path, policy=True)
    write_policy(Path(e.settings.policy_file), keys=KEYS, ingestion_requires_role=True)
    try:
        yield e
    finally:
        e.stop_workers()
        await e.stop_server()


async def _refused(coro: Any, code: grpc.StatusCode, reason: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await coro
    assert err.value.code() == code, err.value.details()
    assert details(err.value)[0] == reason, err.value.details()


async def _get(ch: grpc.aio.Channel, run: pb.Run, key: str) -> pb.Run:
    return (await stub(ch).GetRun(pb.GetRunRequest(name=run.name), metadata=md(key))).run


def _audit(env: Env, action: str) -> list[tuple[str, str]]:
    db = env.settings.resolved_database_url.removeprefix("sqlite:///")
    with sqlite3.connect(db) as conn:
        return list(
            conn.execute(
                "SELECT outcome, details FROM audit_records WHERE action = ? ORDER BY seq",
                (action,),
            )
        )


async def test_four_eyes_cannot_be_argued_with(env: Env, tmp_path: Path) -> None:
    """The probe: a-rev1 submits, approves, amends the amount to 5 EUR (below the four-eyes
    threshold) and approves again. Now: the submitter's approvals are refused, the amendment
    does not lower the two approvals the run started with, and the release names two people
    other than the submitter."""
    server = await env.start_server()
    env.start_worker()
    async with grpc.aio.insecure_channel(server.address) as ch:
        files = dossiers.financement(tmp_path / "a", amount="180 000,00 €")
        dossier = await create_dossier(ch, files, "a-rev1", use_case="credit-pro")
        run = await start_run(ch, dossier, "a-rev1")
        waiting = await wait_state(ch, run.name, "a-rev2", WAITING)
        assert waiting.approvals_required == 2
        approve, amend = pb.DECISION_KIND_APPROVE, pb.DECISION_KIND_AMEND
        await _refused(
            decide(ch, run, "a-rev1", approve, "ok"),
            grpc.StatusCode.PERMISSION_DENIED,
            "SUBMITTER_CANNOT_APPROVE",
        )
        await decide(ch, run, "a-rev1", amend, "montant", **{"demande.montant_demande": "5 €"})
        for _ in range(150):  # the run applies the amendment (checks and note redone)
            got = await _get(ch, run, "a-rev2")
            amended = [
                f
                for d in got.result.documents
                for f in d.fields
                if f.name == "montant_demande" and f.status == "AMENDED"
            ]
            if amended:
                break
            await asyncio.sleep(0.2)
        assert amended and amended[0].value == "5.00"
        assert got.approvals_required == 2  # never below the rule at start
        await _refused(
            decide(ch, run, "a-rev1", approve, "again"),
            grpc.StatusCode.PERMISSION_DENIED,
            "SUBMITTER_CANNOT_APPROVE",
        )
        await decide(ch, run, "a-rev2", approve, "vu")
        await asyncio.sleep(1.5)
        one = await _get(ch, run, "a-rev2")
        assert one.state == pb.RUN_STATE_AWAITING_SIGNOFF and one.approvals == 1
        await decide(ch, run, "a-rev3", approve, "vu")
        done = await wait_state(ch, run.name, "a-rev1", ENDED)
        assert done.state == pb.RUN_STATE_COMPLETED
    releases = _audit(env, "DOSSIER_RELEASE")
    assert len(releases) == 1
    assert json.loads(releases[0][1])["approvers"] == ["a-rev2", "a-rev3"]
    denied = [d for o, d in _audit(env, "DENIED") if o == "SUBMITTER_CANNOT_APPROVE"]
    assert len(denied) == 2


async def test_client_source_uri_is_a_label_never_read(env: Env, tmp_path: Path) -> None:
    """An ingester labels an upload ``local:///etc/passwd``; a plain key's CreateDossier on
    that document must not read the server's file into the dossier."""
    server = await env.start_server()
    async with grpc.aio.insecure_channel(server.address) as ch:
        ing = ing_grpc.IngestionServiceStub(ch)

        async def upload() -> Any:
            yield ing_pb.UploadDocumentRequest(
                metadata=ing_pb.UploadMetadata(
                    filename="note.txt", source_uri="local:///etc/passwd"
                )
            )
            yield ing_pb.UploadDocumentRequest(data=b"Une note sans importance.\n")

        doc = (await ing.UploadDocument(upload(), metadata=md("a-ing"), timeout=120)).document
        assert doc.document_id
        await _refused(
            stub(ch).CreateDossier(
                pb.CreateDossierRequest(
                    display_name="x", use_case="credit-pro", document_ids=[doc.document_id]
                ),
                metadata=md("a-plain"),
            ),
            grpc.StatusCode.FAILED_PRECONDITION,
            "DOCUMENT_TEXT_UNAVAILABLE",
        )
        listed = await stub(ch).ListDossiers(pb.ListDossiersRequest(), metadata=md("a-plain"))
        assert list(listed.dossiers) == []
    db = env.settings.resolved_database_url.removeprefix("sqlite:///")
    with sqlite3.connect(db) as conn:
        pages = [r[0] for r in conn.execute("SELECT pages_json FROM workflow_documents")]
    assert not any("root:" in p for p in pages)


async def test_dossier_files_need_the_ingester_role(env: Env, tmp_path: Path) -> None:
    """With ``ingestion_requires_role: true`` a plain key's UploadDocument is refused; its
    CreateDossier{files} must be refused the same way and store nothing."""
    server = await env.start_server()
    async with grpc.aio.insecure_channel(server.address) as ch:
        files = dossiers.financement(tmp_path / "r")[:3]
        await _refused(
            create_dossier(ch, files, "a-plain", use_case="credit-pro"),
            grpc.StatusCode.PERMISSION_DENIED,
            "INGESTER_ROLE_REQUIRED",
        )
        ing = ing_grpc.IngestionServiceStub(ch)
        docs = await ing.ListDocuments(ing_pb.ListDocumentsRequest(), metadata=md("a-ing"))
        assert list(docs.documents) == []
        # the ingester may
        made = await create_dossier(ch, files, "a-ing", use_case="credit-pro")
        assert len(made.documents) == 3
    assert any(o == "INGESTER_ROLE_REQUIRED" for o, _ in _audit(env, "DENIED"))


async def test_waiting_runs_hold_no_slot_and_no_tenant_takes_all(env: Env, tmp_path: Path) -> None:
    """One worker, two slots (the default). Two runs of globex waiting for sign-off used to
    keep acme's run QUEUED until their deadline; and a flood of globex runs must leave a slot
    to acme."""
    server = await env.start_server()
    env.start_worker(DOCFACTORY_WORKFLOWS_CONCURRENCY="2")
    async with grpc.aio.insecure_channel(server.address) as ch:
        b_runs = []
        for i in range(2):
            files = dossiers.financement(tmp_path / f"b{i}")
            d = await create_dossier(ch, files, "b-ing", use_case="credit-pro")
            b_runs.append(await start_run(ch, d, "b-ing"))
        for r in b_runs:
            await wait_state(ch, r.name, "b-ing", WAITING)
        files = dossiers.financement(tmp_path / "a0")
        d = await create_dossier(ch, files, "a-ing", use_case="credit-pro")
        a_run = await start_run(ch, d, "a-ing")
        await wait_state(ch, a_run.name, "a-rev2", WAITING, within=120)
    env.stop_workers()

    # A flood: globex queues three runs whose extraction is slow; acme's run, queued after
    # them, starts at once on the slot globex may not take.
    env.start_worker(
        DOCFACTORY_WORKFLOWS_CONCURRENCY="2", DOCFACTORY_WORKFLOWS_STEP_DELAY="extract:2"
    )
    async with grpc.aio.insecure_channel(server.address) as ch:
        # the dossiers first (ingestion takes seconds), then the four runs at once
        made = [
            await create_dossier(
                ch, dossiers.financement(tmp_path / f"f{i}"), "b-ing", use_case="credit-pro"
            )
            for i in range(3)
        ]
        mine = await create_dossier(
            ch, dossiers.financement(tmp_path / "a1"), "a-ing", use_case="credit-pro"
        )
        flood = [await start_run(ch, d, "b-ing") for d in made]
        a_run = await start_run(ch, mine, "a-ing")
        deadline = time.monotonic() + 90
        while True:
            mine = await _get(ch, a_run, "a-ing")
            if mine.state != pb.RUN_STATE_QUEUED:
                break
            assert time.monotonic() < deadline, "acme's run never started"
            await asyncio.sleep(0.2)
        states = [(await _get(ch, r, "b-ing")).state for r in flood]
        # globex holds at most one of the two slots: two of its runs are still queued
        assert states.count(pb.RUN_STATE_QUEUED) >= 2, states
        for r in flood:
            await wait_state(ch, r.name, "b-ing", WAITING, within=180)
