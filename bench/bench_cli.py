"""How long a person waits on the command line (embedded default), cold processes only.

- ``search``: wall time from process start to the printed result, ``docfactory search "..."``
  on an embedded index of a few hundred documents (Code civil articles), median of N runs;
  target 1.5 s.
- ``ask``: from process start to the first text of the answer printed; target 2 s.
- ``ingest``: from process start to the first document's line, ``docfactory ingest FILE.docx``
  in a new process (a new file each run, so it is parsed, chunked, embedded and indexed);
  target 3 s.

Each figure is also measured, in the same run, for a baseline revision of the code (``git
archive`` of ``--baseline``, run with the same interpreter and environment), so the ratio holds
on a busy machine where the absolute figures do not.

    python bench/bench_cli.py                     # 300 articles, 10 runs (baseline 50f8209: 3)
    python bench/bench_cli.py --docs 500 --runs 5 --baseline none
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


def measure(
    label: str, env: dict[str, str], work: Path, docs: int, runs: int, docx: Path
) -> dict[str, list[float]]:
    data = work / label / "data"
    data.mkdir(parents=True)
    t = time.perf_counter()
    indexed = build_index(data, docs, env)
    print(f"[{label}] index: {indexed} documents in {time.perf_counter() - t:.0f} s", flush=True)
    out: dict[str, list[float]] = {"search": [], "ask": [], "ingest": []}
    for i in range(runs):
        q = QUERIES[i % len(QUERIES)]
        out["search"].append(time_to_output([*_cli(data), "search", q], env))
        out["ask"].append(time_to_output([*_cli(data), "ask", q], env))
        one = work / label / f"run{i}"
        one.mkdir()
        target = one / f"lettre-{i}.docx"
        shutil.copy(docx, target)
        out["ingest"].append(
            time_to_output([*_cli(data), "ingest", str(target)], env, marker="indexed")
        )
        print(
            f"[{label}] run {i + 1}/{runs}: "
            + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in out.items()),
            flush=True,
        )
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=300, help="documents in the index")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--baseline", default="50f8209", help="git revision, or 'none'")
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
                "baseline", env, work, args.docs, args.baseline_runs, docx
            )
        results["now"] = measure("now", _env(None), work, args.docs, args.runs, docx)
    print()
    head = "| command | target s | now median s |"
    sep = "|---|---|---|"
    if "baseline" in results:
        head += f" baseline ({args.baseline}) median s | speed-up |"
        sep += "---|---|"
    print(head + " meets target |")
    print(sep + "---|")
    for cmd, target in TARGETS.items():
        now = statistics.median(results["now"][cmd])
        row = f"| {cmd} | {target} | {now:.2f} |"
        if "baseline" in results:
            base = statistics.median(results["baseline"][cmd])
            row += f" {base:.2f} | {base / now:.1f}x |"
        print(row + f" {'yes' if now <= target else 'no'} |")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
