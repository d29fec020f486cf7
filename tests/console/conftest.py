"""One real docfactory server (policy, SQLite, embedded vector engine) and one console (uvicorn on
a real socket) per module, in a background thread with its own event loop; one headless Debian
chromium (Playwright, never a downloaded browser) per module, one browser context per test."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from docfactory.answering.v1 import answering_service_pb2 as ans_pb
from docfactory.answering.v1 import answering_service_pb2_grpc as ans_grpc
from docfactory.core.config import Settings, load_settings
from docfactory.ingestion.v1 import ingestion_service_pb2 as ing_pb
from docfactory.ingestion.v1 import ingestion_service_pb2_grpc as ing_grpc

ROOT = Path(__file__).resolve().parents[2]
DOSSIERS = True
# Screenshots go to a scratch folder, so a test run leaves the checkout clean; the README's
# images are refreshed with DOCFACTORY_SCREENSHOTS_DIR=docs/img pytest tests/console.
IMG = Path(
    os.environ.get("DOCFACTORY_SCREENSHOTS_DIR") or tempfile.mkdtemp(prefix="docfactory-shots-")
)
IMG.mkdir(parents=True, exist_ok=True)
CHROMIUM = os.environ.get("DOCFACTORY_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

#: key -> (key id, tenant, roles)
KEYS: dict[str, tuple[str, str, list[str]]] = {
    "key-requester": ("app-nord", "nord", []),
    "key-rev-a": ("reviewer-alice", "nord", ["reviewer", "auditor"]),
    "key-rev-b": ("reviewer-bob", "nord", ["reviewer"]),
    "key-ops": ("ops-nord", "nord", ["ingester", "operator", "owner"]),
    "key-owner": ("owner-nord", "nord", ["owner"]),
    "key-worker": ("bulk-worker", "platform", ["worker"]),
}


def _h(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def write_policy(path: Path) -> Path:
    uc = {
        "tenants": ["nord"],
        "owner": "conformite@nord.example",
        "allowed_collections": "*",
        "max_classification": "INTERNAL",
        "allowed_models": "*",
        "retention": "30d",
    }
    path.write_text(
        yaml.safe_dump(
            {
                "version": 3,
                "ingestion_requires_role": True,
                "tenants": [{"id": "nord", "name": "Caisse Nord"}, {"id": "platform"}],
                "api_keys": [
                    {"id": kid, "tenant": tenant, "sha256": _h(key), "roles": roles}
                    for key, (kid, tenant, roles) in KEYS.items()
                ],
                "use_cases": [
                    {**uc, "id": "uc-reviewed", "purpose": "réponses aux clients",
                     "human_review": "required"},
                    {**uc, "id": "uc-open", "purpose": "recherche interne",
                     "human_review": "optional"},
                    {**uc, "id": "credit-pro", "purpose": "instruction des financements",
                     "human_review": "optional", "max_classification": "CONFIDENTIAL",
                     "flows": ["financement"]},
                ],
            },
            sort_keys=False,
        )
    )  # fmt: skip
    return path


def md(key: str) -> tuple[tuple[str, str], ...]:
    return (("x-api-key", key),)


@dataclass
class Stack:
    """A running server + console; ``url`` is the console's base URL."""

    settings: Settings
    grpc_address: str = ""
    url: str = ""
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    thread: threading.Thread | None = None
    _running: Any = None
    _uvicorn: Any = None
    _workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start_workers(self) -> None:
        """Real worker processes: dossier workflows and bulk-ingestion jobs."""
        self._spawn("docfactory.workflows.engine", "workflow-worker.log")
        self._spawn("docfactory.jobs.runtime", "jobs-worker.log")

    def _spawn(self, module: str, log_name: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCFACTORY_")} | {
            "DOCFACTORY_DATA_DIR": str(self.settings.data_dir),
            "DOCFACTORY_DATABASE_URL": self.settings.resolved_database_url,
            "DOCFACTORY_POLICY_FILE": self.settings.policy_file,
            "DOCFACTORY_WORKER_API_KEY": "key-worker",
            "DOCFACTORY_WORKFLOWS_SEARCH_ADDRESS": self.grpc_address,
            "DOCFACTORY_WORKFLOWS_HEARTBEAT_SECONDS": "0.5",
            "DOCFACTORY_INGESTION_ADDRESS": self.grpc_address,
        }
        log = open(self.settings.data_dir / log_name, "ab")  # noqa: SIM115
        self._workers.append(
            subprocess.Popen(
                [sys.executable, "-m", module],
                env=env, cwd=str(ROOT), stdout=log, stderr=subprocess.STDOUT,
            )
        )  # fmt: skip
        log.close()

    def start(self, *, console_address: str | None = None) -> Stack:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        started = threading.Event()
        errors: list[BaseException] = []

        async def main() -> None:
            import uvicorn

            from docfactory.app import start_server
            from docfactory.console.app import ConsoleConfig, create_app

            try:
                self._running = await start_server(self.settings, port=0)
                self.grpc_address = self._running.address
                app = create_app(
                    ConsoleConfig(address=console_address or self.grpc_address, dossiers=DOSSIERS)
                )
                config = uvicorn.Config(app, log_level="warning", access_log=False)
                self._uvicorn = uvicorn.Server(config)
                serving = asyncio.ensure_future(self._uvicorn.serve(sockets=[sock]))
                while not self._uvicorn.started:
                    if serving.done():
                        serving.result()
                    await asyncio.sleep(0.02)
            except BaseException as exc:
                errors.append(exc)
                started.set()
                return
            started.set()
            await serving

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(main())
            if self._running is not None:
                self.loop.run_until_complete(self._running.stop(0.5))
            self.loop.close()
            sock.close()

        self.thread = threading.Thread(target=run, name="console-stack", daemon=True)
        self.thread.start()
        started.wait(300)
        if errors:
            raise errors[0]
        return self

    def stop(self) -> None:
        for proc in self._workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self._workers:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True
        if self.thread is not None:
            self.thread.join(60)

    # -- gRPC helpers (sync channel from the test thread) ------------------------------------

    def channel(self) -> grpc.Channel:
        return grpc.insecure_channel(self.grpc_address)

    def upload(self, name: str, text: str, key: str = "key-ops") -> ing_pb.Document:
        with self.channel() as ch:
            stub = ing_grpc.IngestionServiceStub(ch)
            reqs = iter(
                [
                    ing_pb.UploadDocumentRequest(
                        metadata=ing_pb.UploadMetadata(filename=name, collection="faq")
                    ),
                    ing_pb.UploadDocumentRequest(data=text.encode()),
                ]
            )
            doc: ing_pb.Document = stub.UploadDocument(reqs, metadata=md(key), timeout=120).document
            return doc

    def upload_background(self, name: str, data: bytes, key: str = "key-ops") -> str:
        """A background UploadDocument: returns its job name ("jobs/...")."""
        with self.channel() as ch:
            stub = ing_grpc.IngestionServiceStub(ch)
            reqs = iter(
                [
                    ing_pb.UploadDocumentRequest(
                        metadata=ing_pb.UploadMetadata(
                            filename=name,
                            collection="faq",
                            background=True,
                            source_uri=f"ged://faq/{name}",
                        )
                    ),
                    ing_pb.UploadDocumentRequest(data=data),
                ]
            )
            return str(stub.UploadDocument(reqs, metadata=md(key), timeout=120).job)

    def ask_held(self, question: str, key: str = "key-requester") -> str:
        """An answer of the reviewed use case: held, returns its review id."""
        with self.channel() as ch:
            stub = ans_grpc.AnsweringServiceStub(ch)
            summary = None
            for msg in stub.Answer(
                ans_pb.AnswerRequest(question=question, use_case="uc-reviewed"),
                metadata=md(key),
                timeout=120,
            ):
                if msg.WhichOneof("content") == "summary":
                    summary = msg.summary
            assert summary is not None and summary.pending_review, summary
            return str(summary.review_id)


@dataclass
class ServedStack:
    """The deployed shape: ``docfactory serve --console-port`` as an operator starts it (one
    process: the services, the console and the dossier workers it supervises), with the
    policy of ``settings``; same ``url`` / ``grpc_address`` / ``settings`` as :class:`Stack`."""

    settings: Settings
    grpc_address: str = ""
    url: str = ""
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ServedStack:
        import time

        import httpx

        ports = []
        for _ in range(2):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                ports.append(s.getsockname()[1])
        self.grpc_address = f"127.0.0.1:{ports[0]}"
        self.url = f"http://127.0.0.1:{ports[1]}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCFACTORY_")} | {
            "DOCFACTORY_DATA_DIR": str(self.settings.data_dir),
            "DOCFACTORY_POLICY_FILE": self.settings.policy_file,
            "DOCFACTORY_WORKER_API_KEY": "key-worker",
            "DOCFACTORY_WORKFLOWS_HEARTBEAT_SECONDS": "0.5",
            "PYTHONPATH": str(ROOT / "services"),
        }
        log = open(self.settings.data_dir / "serve.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "docfactory.cli", "serve", "--port", str(ports[0]),
             "--console-port", str(ports[1])],
            env=env, cwd=str(ROOT), stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + 300
        while True:
            assert self.proc.poll() is None, (self.settings.data_dir / "serve.log").read_text()
            try:  # the console answers at once; the services once their models are warm
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    with grpc.insecure_channel(self.grpc_address) as ch:
                        r = health_pb2_grpc.HealthStub(ch).Check(
                            health_pb2.HealthCheckRequest(), timeout=2
                        )
                    if r.status == health_pb2.HealthCheckResponse.SERVING:
                        return self
            except (httpx.HTTPError, grpc.RpcError):
                pass
            assert time.monotonic() < deadline, "docfactory serve --console-port did not start"
            time.sleep(0.5)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def make_settings(tmp: Path, **extra: Any) -> Settings:
    data = tmp / "data"
    data.mkdir(parents=True, exist_ok=True)
    base: dict[str, Any] = {
        "data_dir": str(data),
        "policy_file": str(write_policy(tmp / "policy.yaml")),
        "server": {"host": "127.0.0.1", "port": 0},
        **extra,
    }
    return load_settings(env={}, overrides=base)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("console")
    running = Stack(make_settings(tmp)).start()
    running.start_workers()  # they start while the first tests run
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists() and not shutil.which(CHROMIUM):
        pytest.skip(f"Debian chromium not found at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def new_page(browser: Any) -> Iterator[Any]:
    """Factory of pages, each in its own context (own cookies = own person)."""
    contexts: list[Any] = []

    def factory(lang: str = "fr-FR") -> Any:
        context = browser.new_context(locale=lang, viewport={"width": 1280, "height": 860})
        contexts.append(context)
        return context.new_page()

    yield factory
    for context in contexts:
        context.close()


def sign_in(page: Any, url: str, key: str) -> None:
    page.goto(f"{url}/signin")
    page.locator("#api_key").fill(key)
    page.locator("main form button[type=submit]").click()
    page.wait_for_load_state()
