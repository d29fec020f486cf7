#!/usr/bin/env python
"""Formats corpus coverage: which files of ``../shared/data/formats`` yield text, which fail and
why (the README's "indexed / failed with reasons" figure).

Each file goes through the real parser (:class:`ProcessPoolParser`: one spawned child, so a
crash in a native library fails only that file), OCR on when tesseract is installed, LibreOffice
conversion on when it is installed (``--no-convert`` measures without it). A file "yields text"
when the parser returns at least one non-empty element; the chunker turns any such document into
at least one chunk, so this is the set that ingestion indexes.

    .venv/bin/python bench/bench_formats.py                   # every file, OCR + conversion
    .venv/bin/python bench/bench_formats.py --no-convert      # as without LibreOffice
    .venv/bin/python bench/bench_formats.py --json-out /tmp/formats.json --skip-large
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
FORMATS = (ROOT / ".." / "shared" / "data" / "formats").resolve()
LARGE = {
    "book-war-and-peace-1225p.txt",
    "handbook-872p.docx",
    "DA-619p.pdf",
    "pdf2image-memory-error-test-400p.pdf",
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-convert", action="store_true", help="LibreOffice conversion off")
    ap.add_argument("--no-ocr", action="store_true", help="OCR off")
    ap.add_argument("--skip-large", action="store_true", help="leave out the 4 book-length files")
    ap.add_argument("--only", nargs="*", help="file names to measure (default: every file)")
    ap.add_argument("--json-out", type=Path)
    args = ap.parse_args()
    if not FORMATS.is_dir():
        print(f"{FORMATS} not found: the formats corpus is needed", file=sys.stderr)
        return 2
    if args.no_convert:
        os.environ["DOCFACTORY_CONVERTER"] = "off"

    from docfactory.core.errors import DocfactoryError
    from docfactory.ingestion.adapters.parser import ProcessPoolParser

    files = sorted(f for f in FORMATS.rglob("*") if f.is_file() and not f.name.startswith("."))
    if args.only:
        files = [f for f in files if f.name in set(args.only)]
    if args.skip_large:
        files = [f for f in files if f.name not in LARGE]
    parser = ProcessPoolParser(1, ocr_fallback=not args.no_ocr)
    rows: list[dict[str, object]] = []
    t_all = time.perf_counter()
    try:
        parser.warm_up()
        for f in files:
            rel = str(f.relative_to(FORMATS))
            t0 = time.perf_counter()
            try:
                doc = parser.parse(f, f.name)
                chars = sum(len(e.text) for e in doc.elements)
                row: dict[str, object] = {
                    "file": rel,
                    "outcome": "text" if chars else "NO_TEXT_EXTRACTED",
                    "elements": len(doc.elements),
                    "chars": chars,
                    "strategy": doc.strategy,
                }
            except DocfactoryError as err:
                row = {"file": rel, "outcome": err.reason, "message": err.message[:200]}
            row["seconds"] = round(time.perf_counter() - t0, 2)
            rows.append(row)
            print(f"{row['outcome']:<24} {row['seconds']:>7}s  {rel}", flush=True)
    finally:
        parser.close()
    outcomes = Counter(str(r["outcome"]) for r in rows)
    failed = [r for r in rows if r["outcome"] != "text"]
    print()
    print(f"{len(rows)} files: {outcomes['text']} yield text, {len(failed)} fail "
          f"({time.perf_counter() - t_all:.0f} s)")
    for reason, n in sorted(outcomes.items()):
        if reason != "text":
            names = ", ".join(str(r["file"]) for r in failed if r["outcome"] == reason)
            print(f"  {reason}: {n} ({names})")
    if args.json_out:
        args.json_out.write_text(json.dumps({"files": rows, "outcomes": outcomes}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
