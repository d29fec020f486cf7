"""How long a person waits on the command line (embedded default), new processes only.

- ``search``: wall time from process start to the printed result, ``docfactory search "..."``
  on an embedded index of a few hundred documents (Code civil articles), median of N runs;
  target 1.5 s.
- ``ask``: from process start to the first text of the answer printed; target 2 s.
- ``ingest``: from process start to the first document's line, ``docfactory ingest FILE.docx``
  in a new process (a new file each run, so it is parsed, chunked, embedded and indexed);
  target 3 s.

Each command is a new process; on the embedded default it goes to the data directory's
background server (docfactory/cli/daemon.py), started by the first command (the index build
here) and reused by the next ones. Also measured, in the same run and on the same index:

- ``search (starts the server)``: ``docfactory stop`` then ``search``: what the first command
  after a stop (or the idle timeout, or a reboot) costs, server start included;
- the same three commands with ``--no-daemon`` (everything in the command's own process, as
  before the background server), for the ratio.

``--baseline REV`` also measures a former revision of the code (``git archive``, same
interpreter and environment, its own index).

    python bench/bench_cli.py                     # 300 articles, 10 runs, 3 of each other row
    python bench/bench_cli.py --docs 500 --runs 5 --other-runs 2
    python bench/bench_cli.py --baseline 50f8209  # + that revision (slow: its own index)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("DOCFACTORY_SHARED_DATA", ROOT.parent / "shared" / "data"))
QUERIES = [
    "Quels sont les effets du mariage sur les obligations des époux ?",
    "Qui exerce l'autorité parentale sur l'enfant ?",
    "Comment se fait la rectification d'un acte de l'état civil ?",
]
TARGETS = {"search": 1.5, "ask": 2.0, "ingest": 3.0}
ROWS = {
    "search": "search",
    "ask": "ask (first text)",
    "ingest": "ingest one DOCX (first document)",
    "search-start": "search, server not running (starts it)",
    "search-inprocess": "search --no-daemon",
    "ask-inprocess": "ask --no-daemon (first text)",
    "ingest-inprocess": "ingest one DOCX --no-daemon",
}


def _env(pythonpath: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCFACTORY_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # a normal install has its bytecode
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return env


def _cli(data: Path) -> list[str]:
    return [sys.executable, "-m", "docfactory.cli", "--data-dir", str(data)]


def time_to_output(cmd: list[str], env: dict[str, str], marker: str | None = None) -> float:
    """Seconds from process start to the first stdout line (containing ``marker``)."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True, bufsize=1
    )
    assert proc.stdout is not None
    first: float | None = None
    for line in proc.stdout:
        if line.strip() and (marker is None or marker in line):
            first = time.perf_counter() - start
            break
    _, err = proc.communicate(timeout=600)
    if proc.returncode != 0 or first is None:
        raise SystemExit(f"{' '.join(cmd[3:])} failed ({proc.returncode}):\n{err[-2000:]}")
    return first


def build_index(data: Path, docs: int, env: dict[str, str]) -> int:
    corpus = data.parent / "corpus"
    corpus.mkdir()
    with tarfile.open(SHARED / "code-civil" / "code-civil-2015.tar.gz") as tar:
        members = sorted(
            (m for m in tar.getmembers() if m.isfile() and m.name.endswith(".md")),
            key=lambda m: m.name,
        )
        step = max(1, len(members) // docs)
        for m in members[::step][:docs]:
            src = tar.extractfile(m)
            assert src is not None
            title = Path(m.name).parent.name.replace(" ", "_")
            (corpus / f"{title}-{Path(m.name).name}").write_bytes(src.read())
    out = subprocess.run(
        [*_cli(data), "ingest", str(corpus), "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    rows = [json.loads(x) for x in out.stdout.splitlines() if x.startswith("{")]
    return sum(1 for r in rows if r["status"] == "indexed")


def _one_round(
    cli: list[str], env: dict[str, str], work: Path, tag: str, i: int, docx: Path
) -> dict[str, float]:
    q = QUERIES[i % len(QUERIES)]
    out = {
        "search": time_to_output([*cli, "search", q], env),
        "ask": time_to_output([*cli, "ask", q], env),
    }
    one = work / f"{tag}-run{i}"
    one.mkdir(parents=True)
    target = one / f"lettre-{tag}-{i}.docx"
    shutil.copy(docx, target)
    out["ingest"] = time_to_output([*cli, "ingest", str(target)], env, marker="indexed")
    return out


def measure(
    label: str,
    env: dict[str, str],
    work: Path,
    docs: int,
    runs: int,
    docx: Path,
    other_runs: int,
    daemon: bool,
) -> dict[str, list[float]]:
    data = work / label / "data"
    data.mkdir(parents=True)
    t = time.perf_counter()
    indexed = build_index(data, docs, env)
    print(f"[{label}] index: {indexed} documents in {time.perf_counter() - t:.0f} s", flush=True)
    out: dict[str, list[float]] = {k: [] for k in ROWS}
    try:
        for i in range(runs):
            for k, v in _one_round(_cli(data), env, work / label, "now", i, docx).items():
                out[k].append(v)
            print(
                f"[{label}] run {i + 1}/{runs}: "
                + ", ".join(f"{k} {out[k][-1]:.2f} s" for k in TARGETS),
                flush=True,
            )
        if not daemon:
            return out
        for i in range(other_runs):
            stop = subprocess.run([*_cli(data), "stop"], env=env, capture_output=True, text=True)
            assert stop.returncode == 0, stop.stderr
            q = QUERIES[i % len(QUERIES)]
            out["search-start"].append(time_to_output([*_cli(data), "search", q], env))
            print(f"[{label}] search (starts the server) {out['search-start'][-1]:.2f} s")
        for i in range(other_runs):
            cli = [*_cli(data), "--no-daemon"]
            for k, v in _one_round(cli, env, work / label, "inproc", i, docx).items():
                out[f"{k}-inprocess"].append(v)
            print(
                f"[{label}] --no-daemon run {i + 1}/{other_runs}: "
                + ", ".join(f"{k} {out[k + '-inprocess'][-1]:.2f} s" for k in TARGETS),
                flush=True,
            )
    finally:
        if daemon:
            subprocess.run([*_cli(data), "stop"], env=env, capture_output=True, timeout=120)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=300, help="documents in the index")
    ap.add_argument("--runs", type=int, default=10, help="runs through the background server")
    ap.add_argument(
        "--other-runs",
        type=int,
        default=3,
        help="runs of 'search, server not running' and of each --no-daemon command",
    )
    ap.add_argument("--baseline", default="none", help="git revision, or 'none'")
    ap.add_argument(
        "--baseline-runs", type=int, default=3, help="runs of the (slow) baseline; median"
    )
    ap.add_argument("--json-out")
    args = ap.parse_args()
    docx = SHARED / "travail-docs" / "docx" / "certificat_de_travail.docx"
    if not docx.exists():
        raise SystemExit(f"{docx} not found (../shared/data)")
    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        work = Path(tmp)
        if args.baseline != "none":
            src = work / "baseline-src"
            src.mkdir()
            archive = subprocess.run(
                ["git", "archive", args.baseline, "services"],
                cwd=ROOT,
                capture_output=True,
                check=True,
            ).stdout
            subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
            env = _env(str(src / "services"))
            results["baseline"] = measure(
                "baseline", env, work, args.docs, args.baseline_runs, docx, 0, daemon=False
            )
        results["now"] = measure(
            "now", _env(None), work, args.docs, args.runs, docx, args.other_runs, daemon=True
        )
    print()
    now = results["now"]
    head = "| command | target s | runs | median s | min-max s |"
    sep = "|---|---|---|---|---|"
    if "baseline" in results:
        head += f" baseline {args.baseline} median s | speed-up |"
        sep += "---|---|"
    print(head + " meets target |")
    print(sep + "---|")
    for key, label in ROWS.items():
        values = now.get(key) or []
        if not values:
            continue
        med = statistics.median(values)
        target = TARGETS.get(key)
        row = (
            f"| {label} | {target or ''} | {len(values)} | {med:.2f} "
            f"| {min(values):.2f}-{max(values):.2f} |"
        )
        if "baseline" in results:
            base = results["baseline"].get(key)
            row += (
                f" {statistics.median(base):.2f} | {statistics.median(base) / med:.1f}x |"
                if base
                else " | |"
            )
        print(row + (f" {'yes' if med <= target else 'no'} |" if target else " |"))
    for key in TARGETS:
        inproc = now.get(f"{key}-inprocess")
        if inproc and now[key]:
            ratio = statistics.median(inproc) / statistics.median(now[key])
            print(f"{key}: --no-daemon / background server = {ratio:.1f}x")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
