"""A worker key acts for a job's tenant through ``x-docfactory-on-behalf-of``; no other key can."""

from __future__ import annotations

import grpc
import pytest

from docfactory.answering.v1 import answering_service_pb2 as ans_pb
from docfactory.answering.v1 import answering_service_pb2_grpc as ans_grpc
from docfactory.core.auth import ON_BEHALF_HEADER, Principal, act_on_behalf
from docfactory.core.errors import PermissionDenied
from docfactory.ingestion.v1 import ingestion_service_pb2 as ing_pb
from docfactory.ingestion.v1 import ingestion_service_pb2_grpc as ing_grpc
from tests.conftest import WORKER_KEY
from tests.helpers import error_reason

TEXT = b"Le bail commercial du quai Voltaire est conclu pour neuf ans."


def _upload(filename: str) -> list[ing_pb.UploadDocumentRequest]:
    return [
        ing_pb.UploadDocumentRequest(
            metadata=ing_pb.UploadMetadata(filename=filename, collection="bulk")
        ),
        ing_pb.UploadDocumentRequest(data=TEXT),
    ]


async def _search(channel: grpc.aio.Channel, key: str) -> set[str]:
    resp = await ans_grpc.AnsweringServiceStub(channel).Search(
        ans_pb.SearchRequest(query="bail commercial quai Voltaire", top_k=5),
        metadata=(("x-api-key", key),),
    )
    return {h.citation.document_name for h in resp.results}


def test_act_on_behalf_rules() -> None:
    worker = Principal("platform", "bulk-worker", "k", roles=frozenset({"worker"}))
    app = Principal("acme", "acme-app", "k")
    assert act_on_behalf(app, "") is app
    assert act_on_behalf(app, "acme") is app  # naming one's own tenant is harmless
    acting = act_on_behalf(worker, "acme")
    assert (acting.tenant, acting.key_id, acting.on_behalf_of) == ("acme", "bulk-worker", "acme")
    assert acting.roles == frozenset()
    assert acting.metadata() == (("x-api-key", "k"), (ON_BEHALF_HEADER, "acme"))
    with pytest.raises(PermissionDenied) as exc:
        act_on_behalf(app, "globex")
    assert exc.value.reason == "ON_BEHALF_NOT_ALLOWED"


async def test_worker_writes_into_the_named_tenant(channel: grpc.aio.Channel) -> None:
    ing = ing_grpc.IngestionServiceStub(channel)
    resp = await ing.UploadDocument(
        iter(_upload("bail.txt")),
        metadata=(("x-api-key", WORKER_KEY), (ON_BEHALF_HEADER, "acme")),
    )
    assert resp.document.state == ing_pb.DOCUMENT_STATE_INDEXED
    assert await _search(channel, "key-acme") == {"bail.txt"}
    assert await _search(channel, "key-globex") == set()
    assert await _search(channel, WORKER_KEY) == set()  # nothing in the worker's own tenant


async def test_other_keys_cannot_act_for_another_tenant(channel: grpc.aio.Channel) -> None:
    ing = ing_grpc.IngestionServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await ing.UploadDocument(
            iter(_upload("intrus.txt")),
            metadata=(("x-api-key", "key-acme"), (ON_BEHALF_HEADER, "globex")),
        )
    assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_reason(exc.value) == "ON_BEHALF_NOT_ALLOWED"
    assert await _search(channel, "key-globex") == set()
    assert await _search(channel, "key-acme") == set()
