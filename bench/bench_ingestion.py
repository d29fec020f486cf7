#!/usr/bin/env python
"""Ingestion benchmark: parse-only vs end-to-end upload over the same real files, in one run.

Phase 1, parse-only: ``UnstructuredParser().parse(path, name)`` on every file (the baseline).
Phase 2, end-to-end: the real embedded server (every service, in-process, port 0, temp data dir)
and an UploadDocument client stream per file: parse + chunk + embed + index + SQLite.
Each phase runs in its own subprocess so that its peak RSS is its own. Same files, same
concurrency (parse-only runs ``--concurrency`` parser threads, as the server's parse slots do).

    .venv/bin/python bench/bench_ingestion.py                    # mixed corpus, both phases
    .venv/bin/python bench/bench_ingestion.py --corpus travail --limit 10 --json-out out.json
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"

try:
    import docfactory  # noqa: F401
except ImportError:  # run from a checkout without the package installed
    sys.path.insert(0, str(ROOT / "services"))

# formats/ families of the mixed corpus, by file extension.
FAMILIES = {
    ".docx": "docx",
    ".pptx": "pptx",
    ".xlsx": "xlsx",
    ".html": "html",
    ".htm": "html",
    ".md": "md",
    ".txt": "txt",
    ".eml": "eml",
    ".odt": "odt",
    ".csv": "csv",
    ".pdf": "pdf",
}
LARGE = {
    "book-war-and-peace-1225p.txt",
    "handbook-872p.docx",
    "DA-619p.pdf",
    "pdf2image-memory-error-test-400p.pdf",
}
# No usable text layer: with OCR available (tesseract + unstructured_pytesseract) these go through
# tesseract page by page, minutes each on 2 cores; without OCR they fail fast.
OCR_HEAVY = {"failure-after-repair.pdf"}  # 76 pages
MAX_BYTES = 2 * 1024 * 1024
CORPORA = ("mixed", "travail", "formats")
API_KEY = "bench-key"
TENANT = "bench"


# --------------------------------------------------------------------------- corpus


def select_corpus(corpus: str, include_large: bool, limit: int | None) -> list[Path]:
    if not DATA.is_dir():
        sys.exit(
            f"bench_ingestion: shared data folder not found: {DATA}\n"
            "(expected ../shared/data next to the repository; nothing to benchmark)"
        )
    files: list[Path] = []
    if corpus in ("mixed", "travail"):
        travail = DATA / "travail-docs"
        files += sorted((travail / "docx").glob("*.docx"))
        files += sorted((travail / "pdf").glob("*.pdf"))
    if corpus in ("mixed", "formats"):
        fmt = DATA / "formats"
        for p in sorted(fmt.rglob("*")):
            if not p.is_file() or p.suffix.lower() not in FAMILIES:
                continue
            if any(part.startswith(".") for part in p.relative_to(fmt).parts):
                continue
            if not include_large and (
                p.name in LARGE or p.name in OCR_HEAVY or p.stat().st_size >= MAX_BYTES
            ):
                continue
            files.append(p)
    if not files:
        sys.exit(f"bench_ingestion: corpus {corpus!r} is empty under {DATA}")
    return files[:limit] if limit else files


def display_name(path: Path) -> str:
    """Unique upload name (same base name in two folders must not be one document)."""
    try:
        rel = path.relative_to(DATA)
    except ValueError:
        return path.name
    return "__".join(rel.parts)


# --------------------------------------------------------------------------- memory


def _status_kb(field: str) -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def rss_mb() -> float:
    return _status_kb("VmRSS") / 1024.0


class RssSampler:
    """Samples VmRSS in a background thread; ``peak_mb`` is the highest seen while running."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, rss_mb())
            self._stop.wait(self.interval)

    @contextmanager
    def running(self) -> Iterator[RssSampler]:
        self.peak_mb = rss_mb()
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()
            self.peak_mb = max(self.peak_mb, rss_mb())


def cpu_s() -> float:
    """User + system CPU seconds of this process, all threads (less noisy than wall time on a
    shared machine)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def memory_figures(start_mb: float, sampler: RssSampler) -> dict[str, float]:
    ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    return {
        "rss_before_mb": start_mb,  # after imports, model load and warm-up
        "rss_peak_mb": sampler.peak_mb,  # sampled VmRSS during the measured loop
        "vm_hwm_mb": _status_kb("VmHWM") / 1024.0,  # kernel high-water mark, whole subprocess
        "ru_maxrss_mb": ru,
    }


# --------------------------------------------------------------------------- phases


class Progress:
    """One stderr line per 20 files and per file slower than 10 s (thread-safe)."""

    def __init__(self, phase: str, total: int) -> None:
        self.phase, self.total, self.done = phase, total, 0
        self._lock = threading.Lock()
        self._t0 = time.perf_counter()

    def __call__(self, name: str, seconds: float) -> None:
        with self._lock:
            self.done += 1
            if seconds > 10 or self.done % 20 == 0 or self.done == self.total:
                print(
                    f"  [{self.phase}] {self.done}/{self.total} files, "
                    f"{time.perf_counter() - self._t0:.0f}s"
                    + (f" ({name}: {seconds:.1f}s)" if seconds > 10 else ""),
                    file=sys.stderr,
                    flush=True,
                )


def _warmup_files(files: list[Path]) -> list[Path]:
    """Smallest file of each extension: loads every partitioner (and spaCy) before timing."""
    best: dict[str, Path] = {}
    for p in files:
        ext = p.suffix.lower()
        if p.stat().st_size > 0 and (
            ext not in best or p.stat().st_size < best[ext].stat().st_size
        ):
            best[ext] = p
    return list(best.values())


def _parser() -> Any:
    from docfactory.ingestion.adapters.parser import UnstructuredParser

    return UnstructuredParser()


def _warm_parse(parser: Any, files: list[Path]) -> float:
    from docfactory.core.errors import DocfactoryError

    t0 = time.perf_counter()
    for p in _warmup_files(files):
        with suppress(DocfactoryError):
            parser.parse(p, display_name(p))
    return time.perf_counter() - t0


def run_parse(files: list[Path], concurrency: int) -> dict[str, Any]:
    from docfactory.core.errors import DocfactoryError

    parser = _parser()
    warm_s = _warm_parse(parser, files)

    progress = Progress("parse", len(files))

    def one(path: Path) -> dict[str, Any]:
        name = display_name(path)
        t0 = time.perf_counter()
        res: dict[str, Any]
        try:
            doc = parser.parse(path, name)
        except DocfactoryError as exc:
            res = {"file": name, "ok": False, "reason": exc.reason}
        else:
            res = {
                "file": name,
                "ok": True,
                "pages": max(1, int(doc.page_count)),
                "elements": len(doc.elements),
                "strategy": doc.strategy,
            }
        res["s"] = time.perf_counter() - t0
        progress(name, res["s"])
        return res

    start_mb = rss_mb()
    sampler = RssSampler()
    with sampler.running():
        c0, t0 = cpu_s(), time.perf_counter()
        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            per_file = list(pool.map(one, files))
        wall, cpu = time.perf_counter() - t0, cpu_s() - c0
    from docfactory.ingestion.adapters.parser import ocr_available

    return {
        "phase": "parse",
        "settings": {"ocr_available": ocr_available()},
        "wall_s": wall,
        "cpu_s": cpu,
        "warmup_s": warm_s,
        "files": per_file,
        **memory_figures(start_mb, sampler),
    }


def _bench_settings(tmp: Path, concurrency: int, overrides: dict[str, Any]) -> Any:
    import yaml

    from docfactory.core.config import load_settings

    data = tmp / "data"
    data.mkdir(parents=True, exist_ok=True)
    keys = tmp / "keys.yaml"
    keys.write_text(
        yaml.safe_dump(
            {
                "keys": [
                    {
                        "id": "bench-app",
                        "tenant": TENANT,
                        "sha256": hashlib.sha256(API_KEY.encode()).hexdigest(),
                    }
                ]
            }
        )
    )
    base: dict[str, Any] = {
        "data_dir": str(data),
        "keys_file": str(keys),
        "server": {"host": "127.0.0.1", "port": 0},
        "parsing": {"max_concurrent_parses": max(1, concurrency)},
    }
    for section, values in overrides.items():
        if isinstance(values, dict) and isinstance(base.get(section), dict):
            base[section] = {**base[section], **values}
        else:
            base[section] = values
    return load_settings(env={}, overrides=base)


async def _upload(stub: Any, path: Path, name: str, collection: str) -> Any:
    from docfactory.ingestion.v1 import ingestion_service_pb2 as ing_pb

    payload = await asyncio.to_thread(path.read_bytes)

    async def reqs() -> AsyncIterator[Any]:
        yield ing_pb.UploadDocumentRequest(
            metadata=ing_pb.UploadMetadata(filename=name, collection=collection)
        )
        for i in range(0, len(payload), 256 * 1024):
            yield ing_pb.UploadDocumentRequest(data=payload[i : i + 256 * 1024])

    return await stub.UploadDocument(reqs(), metadata=(("x-api-key", API_KEY),), timeout=1800)


async def _run_e2e(
    files: list[Path], concurrency: int, overrides: dict[str, Any]
) -> dict[str, Any]:
    import grpc

    from docfactory.app import start_server
    from docfactory.core.interceptors import error_from_rpc
    from docfactory.ingestion.v1 import ingestion_service_pb2_grpc as ing_grpc

    with tempfile.TemporaryDirectory(prefix="bench_ingestion_") as tmp:
        settings = _bench_settings(Path(tmp), concurrency, overrides)
        t0 = time.perf_counter()
        server = await start_server(settings, port=0)
        startup_s = time.perf_counter() - t0
        channel = grpc.aio.insecure_channel(
            server.address,
            options=[
                ("grpc.max_send_message_length", settings.server.max_message_bytes),
                ("grpc.max_receive_message_length", settings.server.max_message_bytes),
            ],
        )
        try:
            stub = ing_grpc.IngestionServiceStub(channel)
            # Warm-up, untimed, in another collection: the same partitioners as the parse
            # phase, and the first embedding/index calls.
            t0 = time.perf_counter()
            await asyncio.to_thread(_warm_parse, _parser(), files)
            smallest = min(
                (p for p in files if p.stat().st_size > 0), key=lambda p: p.stat().st_size
            )
            with suppress(grpc.aio.AioRpcError):
                await _upload(stub, smallest, "warmup-" + display_name(smallest), "bench-warmup")
            warm_s = time.perf_counter() - t0

            sem = asyncio.Semaphore(max(1, concurrency))
            progress = Progress("e2e", len(files))

            async def one(path: Path) -> dict[str, Any]:
                name = display_name(path)
                async with sem:
                    t1 = time.perf_counter()
                    res: dict[str, Any]
                    try:
                        resp = await _upload(stub, path, name, "bench")
                    except grpc.aio.AioRpcError as exc:
                        res = {"file": name, "ok": False, "reason": error_from_rpc(exc).reason}
                    else:
                        doc = resp.document
                        res = {
                            "file": name,
                            "ok": True,
                            "pages": max(1, int(doc.page_count)),
                            "chunks": int(doc.chunk_count),
                            "unchanged": bool(resp.unchanged),
                        }
                    res["s"] = time.perf_counter() - t1
                    progress(name, res["s"])
                    return res

            start_mb = rss_mb()
            sampler = RssSampler()
            with sampler.running():
                c0, t0 = cpu_s(), time.perf_counter()
                per_file = await asyncio.gather(*(one(p) for p in files))
                wall, cpu = time.perf_counter() - t0, cpu_s() - c0
        finally:
            await channel.close()
            await server.stop(1.0)
    from docfactory.ingestion.adapters.parser import ocr_available

    return {
        "phase": "e2e",
        "settings": {
            "vector_backend": settings.vector_store.backend,
            "embedding_backend": settings.embedding.backend,
            "chunking": f"{settings.chunking.strategy}/{settings.chunking.max_tokens} tokens",
            "pdf_strategy": settings.parsing.pdf_strategy,
            "ocr_available": ocr_available(),
        },
        "wall_s": wall,
        "cpu_s": cpu,
        "startup_s": startup_s,
        "warmup_s": warm_s,
        "files": list(per_file),
        **memory_figures(start_mb, sampler),
    }


def run_e2e(files: list[Path], concurrency: int, overrides: dict[str, Any]) -> dict[str, Any]:
    return asyncio.run(_run_e2e(files, concurrency, overrides))


# --------------------------------------------------------------------------- summary


def summarize(raw: dict[str, Any]) -> dict[str, Any]:
    per = raw["files"]
    ok = [f for f in per if f["ok"]]
    wall = float(raw["wall_s"]) or 1e-9
    pages = sum(int(f["pages"]) for f in ok)
    out: dict[str, Any] = {
        "phase": raw["phase"],
        "files_ok": len(ok),
        "files_failed": len(per) - len(ok),
        "pages": pages,
        "wall_s": wall,
        "docs_per_s": len(ok) / wall,
        "pages_per_s": pages / wall,
        "failures": dict(Counter(str(f["reason"]) for f in per if not f["ok"])),
        "settings": raw.get("settings", {}),
    }
    if raw["phase"] == "e2e":
        chunks = sum(int(f["chunks"]) for f in ok)
        out["chunks"] = chunks
        out["chunks_per_s"] = chunks / wall
        out["unchanged"] = sum(1 for f in ok if f.get("unchanged"))
    for key in (
        "cpu_s",
        "startup_s",
        "warmup_s",
        "rss_before_mb",
        "rss_peak_mb",
        "vm_hwm_mb",
        "ru_maxrss_mb",
    ):
        if key in raw:
            out[key] = raw[key]
    slow = sorted(per, key=lambda f: -float(f["s"]))[:5]
    out["slowest"] = [{"file": f["file"], "s": round(float(f["s"]), 3)} for f in slow]
    return out


def phase_only_failures(raws: dict[str, dict[str, Any]]) -> dict[str, dict[str, str]]:
    """Files that failed in one phase but not the other, with the reason."""
    if not {"parse", "e2e"} <= set(raws):
        return {}
    ok = {p: {f["file"] for f in raws[p]["files"] if f["ok"]} for p in ("parse", "e2e")}
    return {
        p: {
            f["file"]: str(f["reason"])
            for f in raws[p]["files"]
            if not f["ok"] and f["file"] in ok["e2e" if p == "parse" else "parse"]
        }
        for p in ("parse", "e2e")
    }


def print_table(results: dict[str, dict[str, Any]]) -> None:
    phases = [p for p in ("parse", "e2e") if p in results]
    both = len(phases) == 2
    labels = {"parse": "parse-only", "e2e": "end-to-end"}
    rows: list[tuple[str, str, str]] = [
        ("files ok", "files_ok", "{:d}"),
        ("files failed", "files_failed", "{:d}"),
        ("pages", "pages", "{:d}"),
        ("chunks", "chunks", "{:d}"),
        ("wall s", "wall_s", "{:.2f}"),
        ("CPU s", "cpu_s", "{:.2f}"),
        ("documents/s", "docs_per_s", "{:.2f}"),
        ("pages/s", "pages_per_s", "{:.2f}"),
        ("chunks/s", "chunks_per_s", "{:.2f}"),
        ("RSS before MB", "rss_before_mb", "{:.0f}"),
        ("RSS peak MB", "rss_peak_mb", "{:.0f}"),
        ("VmHWM MB", "vm_hwm_mb", "{:.0f}"),
        ("startup s", "startup_s", "{:.2f}"),
        ("warm-up s", "warmup_s", "{:.2f}"),
    ]
    header = f"{'metric':<16}" + "".join(f"{labels[p]:>13}" for p in phases)
    if both:
        header += f"{'e2e/parse':>11}"
    print()
    print(header)
    print("-" * len(header))
    ratio_keys = {"wall_s", "cpu_s", "docs_per_s", "pages_per_s", "rss_peak_mb"}
    for label, key, fmt in rows:
        if not any(key in results[p] for p in phases):
            continue
        cells = "".join(
            f"{fmt.format(results[p][key]) if key in results[p] else '-':>13}" for p in phases
        )
        line = f"{label:<16}{cells}"
        if both and key in ratio_keys and results["parse"].get(key):
            line += f"{results['e2e'][key] / results['parse'][key]:>10.2f}x"
        print(line)
    if both:
        r = results["e2e"]["wall_s"] / results["parse"]["wall_s"]
        print(
            f"\nend-to-end / parse-only wall time: {r:.2f}x "
            f"(chunking + embedding + indexing + gRPC + SQLite add {100 * (r - 1):.0f}% "
            "over parsing)"
        )
        if results["parse"].get("cpu_s"):
            rc = results["e2e"]["cpu_s"] / results["parse"]["cpu_s"]
            print(f"end-to-end / parse-only CPU time:  {rc:.2f}x")
    for p in phases:
        if results[p]["settings"]:
            conf = ", ".join(f"{k}={v}" for k, v in results[p]["settings"].items())
            print(f"{labels[p]} settings: {conf}")
    for p in phases:
        if results[p]["failures"]:
            print(f"{labels[p]} failures by reason: {results[p]['failures']}")


# --------------------------------------------------------------------------- CLI


def parse_overrides(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            sys.exit(f"bench_ingestion: --set expects SECTION.KEY=VALUE or KEY=VALUE, got {item!r}")
        section, dot, field = key.partition(".")
        if dot:
            out.setdefault(section, {})[field] = value
        else:
            out[key] = value
    return out


def run_child(phase: str, files: list[Path], args: argparse.Namespace) -> dict[str, Any]:
    """Run one phase in a fresh interpreter so that its RSS figures are its own."""
    with tempfile.TemporaryDirectory(prefix="bench_ingestion_run_") as tmp:
        lst, res = Path(tmp) / "files.json", Path(tmp) / "result.json"
        lst.write_text(json.dumps([str(p) for p in files]))
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--phase",
            phase,
            "--files-from",
            str(lst),
            "--result-out",
            str(res),
            "--concurrency",
            str(args.concurrency),
        ]
        for item in args.set:
            cmd += ["--set", item]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, check=False)
        if proc.returncode != 0 or not res.exists():
            sys.exit(f"bench_ingestion: the {phase} phase failed (exit {proc.returncode})")
        raw: dict[str, Any] = json.loads(res.read_text())
        raw["process_s"] = time.perf_counter() - t0
        return raw


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--corpus", choices=CORPORA, default="mixed")
    ap.add_argument("--limit", type=int, default=None, help="first N files of the corpus")
    ap.add_argument(
        "--include-large",
        action="store_true",
        help="also the very large files (war-and-peace 1225p, handbook 872p, DA 619p, "
        "pdf2image 400p) and formats files >= 2 MB",
    )
    ap.add_argument("--concurrency", type=int, default=2, help="uploads / parser threads")
    ap.add_argument(
        "--phase",
        choices=("both", "parse", "e2e"),
        default="both",
        help="both (default): each phase in its own subprocess; parse|e2e: that phase only, "
        "in this process",
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="settings override for the e2e server, e.g. embedding.backend=hash (repeatable)",
    )
    ap.add_argument("--json-out", type=Path, default=None, help="write the figures as JSON")
    ap.add_argument("--files-from", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--result-out", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    overrides = parse_overrides(args.set)

    if args.files_from is not None:
        files = [Path(p) for p in json.loads(args.files_from.read_text())]
    else:
        files = select_corpus(args.corpus, args.include_large, args.limit)

    import logging
    import warnings

    warnings.filterwarnings("ignore")  # unstructured's encoding guesses, per file

    # Third-party parsers log a warning per odd PDF operator; failures are counted instead.
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("docfactory").setLevel(logging.WARNING)

    if args.result_out is not None:  # child of a "both" run
        raw = (
            run_parse(files, args.concurrency)
            if args.phase == "parse"
            else run_e2e(files, args.concurrency, overrides)
        )
        args.result_out.write_text(json.dumps(raw))
        return 0

    size_mb = sum(p.stat().st_size for p in files) / 1e6
    fams = Counter(p.suffix.lower().lstrip(".") for p in files)
    print(
        f"corpus {args.corpus}: {len(files)} files, {size_mb:.1f} MB "
        f"({', '.join(f'{k} {v}' for k, v in sorted(fams.items()))}); "
        f"concurrency {args.concurrency}; data {DATA}",
        flush=True,
    )
    phases = ["parse", "e2e"] if args.phase == "both" else [args.phase]
    raws: dict[str, dict[str, Any]] = {}
    for phase in phases:
        print(f"running {phase} ...", flush=True)
        if args.phase == "both":
            raws[phase] = run_child(phase, files, args)
        elif phase == "parse":
            raws[phase] = run_parse(files, args.concurrency)
        else:
            raws[phase] = run_e2e(files, args.concurrency, overrides)
    results = {p: summarize(r) for p, r in raws.items()}
    print_table(results)
    only = phase_only_failures(raws)
    for p, failed in only.items():
        for name, reason in failed.items():
            print(f"failed in {p} only: {name} ({reason})")
    if args.json_out is not None:
        doc: dict[str, Any] = {
            "corpus": args.corpus,
            "files": len(files),
            "bytes": sum(p.stat().st_size for p in files),
            "concurrency": args.concurrency,
            "include_large": args.include_large,
            "cpus": os.cpu_count(),
            "subprocess_per_phase": args.phase == "both",
            "overrides": overrides,
            "phases": results,
            "failed_in_one_phase_only": only,
            "per_file": {p: r["files"] for p, r in raws.items()},
        }
        if "parse" in results and "e2e" in results:
            doc["e2e_over_parse_wall"] = results["e2e"]["wall_s"] / results["parse"]["wall_s"]
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(doc, indent=2))
        print(f"figures written to {args.json_out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
