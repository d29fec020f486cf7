"""Property-based requests against a live server (issue 12): every public RPC gets random
fields -- huge, empty and invalid-UTF-8 strings, out-of-range integers, unknown enum numbers,
NaN and infinities, forged page tokens, raw garbage bytes -- from a key of tenant ``sud``.

Whatever the input: never INTERNAL or UNKNOWN, the server stays SERVING, and nothing of tenant
``nord`` changes. Bounded: a fixed number of examples per RPC (DOCFACTORY_FUZZ_EXAMPLES).

Issue 24: forged page tokens of every List RPC (ListReviews first: base64 JSON whose keys are
huge, negative, fractional or non-finite numbers), and every ``google.protobuf.Timestamp`` field
of every request message, found from the descriptors (nested messages included) so that a field
added tomorrow is fuzzed too: out of range -> INVALID_ARGUMENT / INVALID_TIMESTAMP."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
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
from tests.security._env import Env, details, make_env, md

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
# A key of tenant sud with every role a List RPC or an export asks for (added to the policy).
ALL_ROLES_KEY = "all-sud"
_TIMESTAMP = "google.protobuf.Timestamp"
MIN_TS, MAX_TS = -62_135_596_800, 253_402_300_799  # 0001-01-01T00:00:00Z, 9999-12-31T23:59:59Z


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
    _add_all_roles_key(env)
    server = LiveServer(env)
    channel = grpc.insecure_channel(server.running.address)
    try:
        yield server, channel
    finally:
        channel.close()
        server.stop()


def _add_all_roles_key(env: Env) -> None:
    path = env.root / "policy.yaml"
    policy = yaml.safe_load(path.read_text())
    policy["api_keys"].append(
        {
            "id": "all-roles-sud",
            "tenant": "sud",
            "sha256": hashlib.sha256(ALL_ROLES_KEY.encode()).hexdigest(),
            "roles": ["ingester", "reviewer", "auditor"],
        }
    )
    path.write_text(yaml.safe_dump(policy, sort_keys=False))


def _methods(channel: grpc.Channel | None = None) -> list[MethodDescriptor]:
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
    out: list[MethodDescriptor] = []
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
# Timestamp seconds and nanos: anywhere in their wire types, often at the edges of the range.
_TS_SECONDS = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.integers(MIN_TS - 2, MIN_TS + 2),
    st.integers(MAX_TS - 2, MAX_TS + 2),
    st.sampled_from([0, -1, 1, 2**62, -(2**62)]),
)
_TS_NANOS = st.one_of(
    st.integers(-(2**31), 2**31 - 1),
    st.sampled_from([-1, 0, 1, 999_999_999, 1_000_000_000]),
)


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
    if desc.full_name == _TIMESTAMP:
        msg.seconds = draw(_TS_SECONDS)  # type: ignore[attr-defined]
        msg.nanos = draw(_TS_NANOS)  # type: ignore[attr-defined]
        return msg
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


# -- page tokens of every List RPC (issue 24) -----------------------------------------------

# (method, fingerprint of an unfiltered request by ALL_ROLES_KEY, arity of its sort key)
_LISTS = (
    ("/docfactory.governance.v1.GovernanceService/ListReviews", "reviews:", 1),
    ("/docfactory.ingestion.v1.IngestionService/ListDocuments", "docs||", 2),
    ("/docfactory.jobs.v1.JobsService/ListJobs", "jobs:", 2),
    ("/docfactory.workflows.v1.WorkflowService/ListDossiers", "dossiers::", 2),
    ("/docfactory.workflows.v1.WorkflowService/ListPendingDecisions", "pending:all-roles-sud", 2),
)
_HUGE_INTS = st.one_of(
    st.integers(),
    st.integers(-(2**70), 2**70),
    st.sampled_from([2**63, 2**63 - 1, -(2**63), -(2**63) - 1, 2**64, -(2**64), 10**30]),
)
_NUMBER_TEXT = st.one_of(
    _HUGE_INTS.map(str),
    st.floats().map(repr),  # nan, inf, -inf, 1e+308, -0.0, 5e-324
    st.sampled_from(["1e400", "-1e400", "1.5", "0x10", "1_000", " 7", "", "٣"]),
    st.text(max_size=12),
)
# A JSON value where a key string is expected: numbers, nulls, lists, objects.
_JSON_ODD = st.one_of(
    _HUGE_INTS, st.floats(), st.none(), st.booleans(), st.lists(_HUGE_INTS, max_size=2)
)


@st.composite
def page_tokens(draw: st.DrawFn, fingerprint: str, arity: int) -> str:
    """Base64 JSON like the server's tokens, with keys anywhere from plausible to absurd."""
    keys: list[Any] = [
        draw(st.one_of(_NUMBER_TEXT, _NUMBER_TEXT, _JSON_ODD))
        for _ in range(draw(st.sampled_from([arity, arity, 0, arity + 1])))
    ]
    data: Any = {"k": keys, "f": draw(st.sampled_from([fingerprint, fingerprint, "", "x"]))}
    if draw(st.integers(0, 9)) == 0:
        data = draw(st.sampled_from([keys, [data], "k", {"k": keys}]))
    raw = json.dumps(data).encode()
    if draw(st.integers(0, 9)) == 0:
        raw = raw[: draw(st.integers(0, len(raw)))]
    if draw(st.integers(0, 19)) == 0:  # nested deeper than the JSON decoder's recursion limit
        depth = draw(st.integers(900, 1500))
        raw = b'{"k": ' + b"[" * depth + b"]" * depth + b', "f": "x"}'
    return base64.urlsafe_b64encode(raw).decode()


def _list_request(method: str, token: str) -> bytes:
    service, name = method.strip("/").split("/")
    m = next(m for m in _methods() if m.containing_service.full_name == service and m.name == name)
    msg = GetMessageClass(m.input_type)()
    msg.page_token = token  # type: ignore[attr-defined]
    return msg.SerializeToString()


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize(("method", "fingerprint", "arity"), _LISTS)
def test_forged_page_tokens_never_crash(
    live: tuple[LiveServer, grpc.Channel], method: str, fingerprint: str, arity: int
) -> None:
    _, channel = live
    call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)

    @settings(
        max_examples=EXAMPLES * 8,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(token=page_tokens(fingerprint, arity))
    def fuzz(token: str) -> None:
        try:
            call(_list_request(method, token), metadata=md(ALL_ROLES_KEY), timeout=20)
        except grpc.RpcError as exc:
            code = exc.code()  # type: ignore[attr-defined]
            assert code not in FORBIDDEN, f"{method} {token}: {code} {exc.details()}"  # type: ignore[attr-defined]
            if code == grpc.StatusCode.INVALID_ARGUMENT:
                reason, _ = details(exc)  # type: ignore[arg-type]
                assert reason == "INVALID_PAGE_TOKEN", (token, reason)

    fuzz()


# -- every Timestamp field of every request (issue 24) --------------------------------------


def _timestamp_paths(
    desc: Descriptor, prefix: tuple[FieldDescriptor, ...] = (), seen: frozenset[str] = frozenset()
) -> list[tuple[FieldDescriptor, ...]]:
    """Every path from ``desc`` to a Timestamp field, through singular, repeated and oneof
    message fields (a recursive type is followed once)."""
    out: list[tuple[FieldDescriptor, ...]] = []
    for fd in desc.fields:
        mt = fd.message_type
        if mt is None or mt.GetOptions().map_entry:
            continue
        if mt.full_name == _TIMESTAMP:
            out.append((*prefix, fd))
        elif not mt.full_name.startswith("google.protobuf.") and mt.full_name not in seen:
            out += _timestamp_paths(mt, (*prefix, fd), seen | {desc.full_name})
    return out


def _with_timestamp(
    desc: Descriptor, path: tuple[FieldDescriptor, ...], seconds: int, nanos: int
) -> Message:
    msg = GetMessageClass(desc)()
    cur: Any = msg
    for fd in path:
        cur = getattr(cur, fd.name).add() if fd.is_repeated else getattr(cur, fd.name)
    cur.seconds = seconds
    cur.nanos = nanos
    return msg


def _all_timestamp_fields() -> list[tuple[MethodDescriptor, tuple[FieldDescriptor, ...]]]:
    return [(m, p) for m in _methods() for p in _timestamp_paths(m.input_type)]


def test_timestamp_fields_are_found_from_the_descriptors() -> None:
    found = {(m.name, ".".join(f.name for f in p)) for m, p in _all_timestamp_fields()}
    assert {
        ("ExportAudit", "start_time"),
        ("Search", "filter.ingested_after"),
        ("Search", "filter.ingested_before"),
        ("Answer", "filter.ingested_after"),
    } <= found, found


def _call_once(channel: grpc.Channel, m: MethodDescriptor, payload: bytes) -> grpc.RpcError | None:
    path = f"/{m.containing_service.full_name}/{m.name}"
    kwargs: dict[str, Any] = {"request_serializer": None, "response_deserializer": None}
    meta = md(ALL_ROLES_KEY)
    try:
        if m.client_streaming and m.server_streaming:
            for _ in channel.stream_stream(path, **kwargs)(
                iter([payload]), metadata=meta, timeout=20
            ):
                pass
        elif m.client_streaming:
            channel.stream_unary(path, **kwargs)(iter([payload]), metadata=meta, timeout=20)
        elif m.server_streaming:
            stream = channel.unary_stream(path, **kwargs)(payload, metadata=meta, timeout=20)
            for i, _ in enumerate(stream):
                if i >= 3:
                    stream.cancel()
                    break
        else:
            channel.unary_unary(path, **kwargs)(payload, metadata=meta, timeout=20)
    except grpc.RpcError as exc:
        return exc
    return None


def _timestamp_fuzzer(
    channel: grpc.Channel, m: MethodDescriptor, path: tuple[FieldDescriptor, ...]
) -> Any:
    dotted = ".".join(f.name for f in path)
    name = f"{m.name} {dotted}"

    @settings(
        max_examples=EXAMPLES * 2,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(seconds=_TS_SECONDS, nanos=_TS_NANOS)
    def fuzz(seconds: int, nanos: int) -> None:
        payload = _with_timestamp(m.input_type, path, seconds, nanos).SerializeToString()
        exc = _call_once(channel, m, payload)
        code = grpc.StatusCode.OK if exc is None else exc.code()  # type: ignore[attr-defined]
        if code in (grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED):
            return
        assert code not in FORBIDDEN, f"{name} {seconds}/{nanos}: {code}"
        reason, violations = ("", []) if exc is None else details(exc)  # type: ignore[arg-type]
        if MIN_TS <= seconds <= MAX_TS and 0 <= nanos <= 999_999_999:
            assert reason != "INVALID_TIMESTAMP", (name, seconds, nanos)
            return
        assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_TIMESTAMP"), (
            name,
            seconds,
            nanos,
            code,
            reason,
        )
        assert [f for f, _ in violations] in (
            [f"{dotted}.seconds"],
            [f"{dotted}.nanos"],
        ), (name, violations)

    return fuzz


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_every_timestamp_field_is_range_checked(live: tuple[LiveServer, grpc.Channel]) -> None:
    _, channel = live
    fields = _all_timestamp_fields()
    assert fields
    for m, path in fields:
        _timestamp_fuzzer(channel, m, path)()
