"""Shared fixtures: real grpc.aio servers on port 0, real Qdrant local engine, real SQLite."""

from __future__ import annotations

import hashlib
import os
import tarfile
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from docfactory.app import RunningServer, start_server
from docfactory.core.config import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]
SHARED = (ROOT / ".." / "shared" / "data").resolve()

KEYS = {
    "key-acme": ("acme-app", "acme"),
    "key-globex": ("globex-app", "globex"),
}
EXPIRED_KEY = "key-expired"
# A bulk-ingestion worker key: tenant "platform", role "worker" (may act for a job's tenant).
WORKER_KEY = "key-worker"
# A key of tenant acme with the ingester role (IngestPath needs it).
INGESTER_KEY = "key-acme-ingester"


def shared_data(*parts: str) -> Path:
    """Path under ../shared/data, or skip the test with the reason."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"../shared/data absent ({path} not found): real-data test skipped")
    return path


def write_keys(path: Path) -> Path:
    entries: list[dict[str, Any]] = [
        {"id": key_id, "tenant": tenant, "sha256": hashlib.sha256(k.encode()).hexdigest()}
        for k, (key_id, tenant) in KEYS.items()
    ]
    entries.append(
        {
            "id": "acme-ingester",
            "tenant": "acme",
            "sha256": hashlib.sha256(INGESTER_KEY.encode()).hexdigest(),
            "roles": ["ingester"],
        }
    )
    entries.append(
        {
            "id": "bulk-worker",
            "tenant": "platform",
            "sha256": hashlib.sha256(WORKER_KEY.encode()).hexdigest(),
            "roles": ["worker"],
        }
    )
    entries.append(
        {
            "id": "old-app",
            "tenant": "acme",
            "sha256": hashlib.sha256(EXPIRED_KEY.encode()).hexdigest(),
            "expires": "2020-01-01",
        }
    )
    path.write_text(yaml.safe_dump({"keys": entries}))
    return path


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    def factory(**overrides: Any) -> Settings:
        data = tmp_path / "data"
        data.mkdir(exist_ok=True)
        keys = write_keys(tmp_path / "keys.yaml")
        base: dict[str, Any] = {
            "data_dir": str(data),
            "keys_file": str(keys),
            "server": {"host": "127.0.0.1", "port": 0},
        }
        for k, v in overrides.items():
            if isinstance(v, dict) and isinstance(base.get(k), dict):
                base[k] = {**base[k], **v}
            else:
                base[k] = v
        return load_settings(env={}, overrides=base)

    return factory


@pytest.fixture
async def server(make_settings: Callable[..., Settings]) -> AsyncIterator[RunningServer]:
    running = await start_server(make_settings(), port=0)
    try:
        yield running
    finally:
        await running.stop(0.5)


@pytest.fixture
async def channel(server: RunningServer) -> AsyncIterator[grpc.aio.Channel]:
    ch = grpc.aio.insecure_channel(server.address)
    try:
        yield ch
    finally:
        await ch.close()


@pytest.fixture
def corpus(tmp_path: Path) -> dict[str, Path]:
    """Real files of four formats copied into a temp dir (DOCX, PDF, HTML, Markdown)."""
    out = tmp_path / "corpus"
    out.mkdir()
    files = {
        "docx": shared_data("travail-docs", "docx", "demande_rdv_rupture_conventionnelle.docx"),
        "docx2": shared_data("travail-docs", "docx", "certificat_de_travail.docx"),
        "pdf": shared_data("travail-docs", "pdf", "reunion-cse-synthese.pdf"),
        "html": shared_data("formats", "ideas-page.html"),
    }
    result = {}
    for key, src in files.items():
        dst = out / src.name
        dst.write_bytes(src.read_bytes())
        result[key] = dst
    archive = shared_data("code-civil", "code-civil-2015.tar.gz")
    with tarfile.open(archive) as tf:
        member = tf.getmember("code_civil_md/Livre III/Titre IV/Article 1382.md")
        fobj = tf.extractfile(member)
        assert fobj is not None
        dst = out / "Article 1382.md"
        dst.write_bytes(fobj.read())
        result["md"] = dst
    return result


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for k in list(os.environ):
        if k.startswith("DOCFACTORY_"):
            monkeypatch.delenv(k, raising=False)
    yield


# -- CI honesty: a skip for a required dependency is a failure --------------------------------
# DOCFACTORY_TEST_REQUIRE=postgres,data,ocr,chromium (set by .ci/run) names dependencies that
# must be present: a test that skips because one of them is missing fails instead, with the skip
# reason. Locally (variable unset) the skips remain. Skip reasons are matched by these patterns,
# so every existing and future skip site that names its dependency is covered.
REQUIRE_PATTERNS: dict[str, tuple[str, ...]] = {
    "postgres": ("postgresql", "postgres on", ":5432"),
    "data": ("../shared/data", "shared/data absent"),
    "ocr": ("tesseract", "poppler"),
    "chromium": ("chromium",),
    "libreoffice": ("libreoffice", "unoserver", "soffice"),
    "buf": ("buf not installed",),
    "redis": ("redis",),
}


def required_dependencies() -> set[str]:
    raw = os.environ.get("DOCFACTORY_TEST_REQUIRE", "")
    wanted = {d.strip().lower() for d in raw.split(",") if d.strip()}
    unknown = wanted - set(REQUIRE_PATTERNS)
    if unknown:
        raise pytest.UsageError(
            f"DOCFACTORY_TEST_REQUIRE: unknown {sorted(unknown)} "
            f"(known: {sorted(REQUIRE_PATTERNS)})"
        )
    return wanted


def required_dependency_of(reason: str) -> str | None:
    """The required dependency a skip reason names, if any."""
    text = reason.lower()
    for dep in sorted(required_dependencies()):
        if any(p in text for p in REQUIRE_PATTERNS[dep]):
            return dep
    return None


def skip_unless_required(dep: str, reason: str) -> None:
    """For skip sites: fail when ``dep`` is required (DOCFACTORY_TEST_REQUIRE), else skip."""
    if dep in required_dependencies():
        pytest.fail(f"required dependency {dep!r} missing (DOCFACTORY_TEST_REQUIRE): {reason}")
    pytest.skip(reason)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if not report.skipped or hasattr(report, "wasxfail"):
        return report
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    dep = required_dependency_of(reason)
    if dep is not None:
        report.outcome = "failed"
        report.longrepr = (
            f"required dependency {dep!r} missing "
            f"(DOCFACTORY_TEST_REQUIRE={os.environ.get('DOCFACTORY_TEST_REQUIRE')}): {reason}"
        )
    return report
