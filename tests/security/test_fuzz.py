"""Property-based requests against a live server (issue 12): every public RPC gets random
fields -- huge, empty and invalid-UTF-8 strings, out-of-range integers, unknown enum numbers,
NaN and infinities, forged page tokens, raw garbage bytes -- from a key of tenant ``sud``.

Whatever the input: never INTERNAL or UNKNOWN, the server stays SERVING, and nothing of tenant
``nord`` changes. Bounded: a fixed number of examples per RPC (DOCFACTORY_FUZZ_EXAMPLES)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from docfactory.app import RunningServer, start_server
from docfactory.core.db import make_engine
from docfactory.governance.audit import AuditLog
from docfactory.ingestion.v1 import ingestion_service_pb2 as ing_pb
from tests.security._env import Env, make_env, md

EXAMPLES = int(os.environ.get("DOCFACTORY_FUZZ_EXAMPLES", "12"))
FORBIDDEN = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
# The services a client reaches on the public port (IndexService is internal: not there).
PUBLIC_SERVICES = (
    "docfactory.ingestion.v1.IngestionService",
    "docfactory.chunking.v1.ChunkingService",
    "docfactory.embedding.v1.EmbeddingService",
    "docfactory.answering.v1.AnsweringService",
    "docfactory.governance.v1.GovernanceService",
    "docfactory.measurement.v1.MeasurementService",
    "docfactory.jobs.v1.JobsService",
    "docfactory.workflows.v1.WorkflowService",
)


class LiveServer:
    """docfactory on its own event loop in a thread, so hypothesis drives it synchronously."""

    def __init__(self, env: Env) -> None:
        self.env = env
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.running: RunningServer = self.call(start_server(env.settings, port=0))

    def call(self, coro: Any) -> Any:
        fut: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(timeout=300)

    def stop(self) -> None:
        self.call(self.running.stop(0.5))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, grpc.Channel]]:
    env = make_env(tmp_path_factory.mktemp("fuzz"))
    server = LiveServer(env)
    channel = grpc.insecure_channel(server.running.address)
    try:
        yield server, channel
    finally:
        channel.close()
        server.stop()


def _methods(channel: grpc.Channel) -> list[MethodDescriptor]:
    from google.protobuf import descriptor_pool

    # Importing the stubs registers their descriptors in the default pool.
    import docfactory.answering.v1.answering_service_pb2
    import docfactory.chunking.v1.chunking_service_pb2
    import docfactory.embedding.v1.embedding_service_pb2
    import docfactory.governance.v1.governance_service_pb2
    import docfactory.ingestion.v1.ingestion_service_pb2
    import docfactory.jobs.v1.jobs_service_pb2
    import docfactory.measurement.v1.measurement_service_pb2

    with contextlib.suppress(ImportError):
        import docfactory.workflows.v1.workflows_service_pb2  # noqa: F401
    pool = descriptor_pool.Default()
    out = []
    for name in PUBLIC_SERVICES:
        try:
            svc = pool.FindServiceByName(name)
        except KeyError:
            continue
        out.extend(svc.methods)
    return out


_STRINGS = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "",
            "../../../etc/passwd",
            "documents/../../x",
            "jobs/%00",
            "\x00\x01\x02",
            "x" * 5000,
            "é" * 200_000,
            "eyJvIjogOTk5OTk5OTk5OTk5OTk5OTk5OTk5LCAiZiI6ICJ8In0=",  # {"o": huge, "f": "|"}
            "eyJhZnRlciI6IDk5OTk5OTk5OTk5OTk5OTk5OTk5fQ==",  # {"after": huge}
            "file:///etc/shadow",
            "uc-conf",
            "*",
        ]
    ),
)
_INT32 = st.one_of(st.integers(-(2**31), 2**31 - 1), st.sampled_from([0, -1, 1, 2**31 - 1]))
_INT64 = st.one_of(st.integers(-(2**63), 2**63 - 1), st.sampled_from([2**62, -1, 0]))
_UINT64 = st.one_of(st.integers(0, 2**64 - 1), st.sampled_from([2**63, 2**64 - 1, 0, 1]))
_UINT32 = st.integers(0, 2**32 - 1)
_FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=32)


def _scalar(fd: FieldDescriptor) -> st.SearchStrategy[Any]:
    t = fd.type
    if t == FieldDescriptor.TYPE_STRING:
        return _STRINGS
    if t == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=2048)
    if t == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if t == FieldDescriptor.TYPE_ENUM:
        assert fd.enum_type is not None
        known = [v.number for v in fd.enum_type.values]
        return st.one_of(st.sampled_from(known), st.integers(-3, 120))
    if t in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        return _FLOATS
    if t in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):
        return _UINT64
    if t in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32):
        return _UINT32
    if t in (
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_SFIXED64,
    ):
        return _INT64
    return _INT32


@st.composite
def messages(draw: st.DrawFn, desc: Descriptor, depth: int = 0) -> Message:
    msg = GetMessageClass(desc)()
    if desc.full_name.startswith("google.protobuf."):
        return msg
    for fd in desc.fields:
        if not draw(st.booleans()):
            continue
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            keys = draw(st.lists(st.text(max_size=20), max_size=3))
            target = getattr(msg, fd.name)
            val_fd = fd.message_type.fields_by_name["value"]
            for k in keys:
                if val_fd.message_type is None:
                    target[k] = draw(_scalar(val_fd))
            continue
        if fd.message_type is not None:
            if depth >= 2:
                continue
            if fd.is_repeated:
                for sub in draw(st.lists(messages(fd.message_type, depth + 1), max_size=2)):
                    getattr(msg, fd.name).add().CopyFrom(sub)
            else:
                getattr(msg, fd.name).CopyFrom(draw(messages(fd.message_type, depth + 1)))
            continue
        if fd.is_repeated:
            getattr(msg, fd.name).extend(draw(st.lists(_scalar(fd), max_size=3)))
        else:
            setattr(msg, fd.name, draw(_scalar(fd)))
    return msg


@st.composite
def payloads(draw: st.DrawFn, desc: Descriptor) -> bytes:
    """A serialised request: mostly a generated message, sometimes garbage or a string field
    holding invalid UTF-8."""
    kind = draw(st.sampled_from(["message", "message", "message", "garbage", "bad-utf8"]))
    if kind == "garbage":
        return draw(st.binary(max_size=300))
    if kind == "bad-utf8":
        strings = [f for f in desc.fields if f.type == FieldDescriptor.TYPE_STRING]
        if strings:
            fd = draw(st.sampled_from(strings))
            bad = draw(st.sampled_from([b"\xff\xfe", b"\xc3\x28", b"abc\xed\xa0\x80"]))
            return bytes([(fd.number << 3) | 2, len(bad)]) + bad
    return draw(messages(desc)).SerializeToString()


def _call(channel: grpc.Channel, m: MethodDescriptor, payload: bytes, extra: bytes) -> None:
    path = f"/{m.containing_service.full_name}/{m.name}"
    meta = md("ing-sud")
    kwargs: dict[str, Any] = {"request_serializer": None, "response_deserializer": None}
    try:
        if m.client_streaming and m.server_streaming:
            for _ in channel.stream_stream(path, **kwargs)(
                iter([payload, extra]), metadata=meta, timeout=20
            ):
                pass
        elif m.client_streaming:
            channel.stream_unary(path, **kwargs)(iter([payload, extra]), metadata=meta, timeout=20)
        elif m.server_streaming:
            stream = channel.unary_stream(path, **kwargs)(payload, metadata=meta, timeout=8)
            for i, _ in enumerate(stream):
                if i >= 3:
                    stream.cancel()
                    break
        else:
            channel.unary_unary(path, **kwargs)(payload, metadata=meta, timeout=20)
    except grpc.RpcError as exc:
        code = exc.code()  # type: ignore[attr-defined]
        if code in (grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED):
            return
        assert code not in FORBIDDEN, f"{path}: {code} {exc.details()}"  # type: ignore[attr-defined]


def _nord_documents(channel: grpc.Channel) -> list[tuple[str, int, int, int]]:
    stub = channel.unary_unary(
        "/docfactory.ingestion.v1.IngestionService/ListDocuments",
        request_serializer=ing_pb.ListDocumentsRequest.SerializeToString,
        response_deserializer=ing_pb.ListDocumentsResponse.FromString,
    )
    resp = stub(ing_pb.ListDocumentsRequest(page_size=1000), metadata=md("read-nord"), timeout=30)
    return sorted(
        (d.document_id, d.version, d.chunk_count, d.classification) for d in resp.documents
    )


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_random_requests_never_crash_nor_cross_tenants(
    live: tuple[LiveServer, grpc.Channel], tmp_path: Path
) -> None:
    server, channel = live
    upload = channel.stream_unary(
        "/docfactory.ingestion.v1.IngestionService/UploadDocument",
        request_serializer=ing_pb.UploadDocumentRequest.SerializeToString,
        response_deserializer=ing_pb.UploadDocumentResponse.FromString,
    )
    upload(
        iter(
            [
                ing_pb.UploadDocumentRequest(
                    metadata=ing_pb.UploadMetadata(filename="nord.txt", classification=3)
                ),
                ing_pb.UploadDocumentRequest(data=b"Note interne de la caisse Nord."),
            ]
        ),
        metadata=md("ing-nord"),
        timeout=120,
    )
    before = _nord_documents(channel)
    assert before
    methods = _methods(channel)
    assert len(methods) >= 25, [m.name for m in methods]

    def fuzzer(m: MethodDescriptor) -> Any:
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(payload=payloads(m.input_type), extra=payloads(m.input_type))
        def fuzz(payload: bytes, extra: bytes) -> None:
            _call(channel, m, payload, extra)

        return fuzz

    for m in methods:
        fuzzer(m)()

    health = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=""), timeout=10
    )
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert _nord_documents(channel) == before
    audit = AuditLog(make_engine(server.env.settings.resolved_database_url), create_tables=False)
    assert audit.verify().ok
    assert all(r.tenant == "sud" for r in audit.records() if r.key_id == "ingester-sud")
