"""The ``docfactory eval-flow`` subcommand: build the dossier evaluation set (synthetic values
in real public templates), parse every document with the ingestion parser, extract, check, and
print per field kind precision / recall / exact match and the detection precision / recall of
the planted inconsistencies."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

DEFAULT_TEMPLATES = Path("../shared/data/travail-docs/docx")


def add_parser(sub: Any) -> None:
    e = sub.add_parser(
        "eval-flow",
        help="dossier extraction evaluation (fields and planted inconsistencies)",
        description="Build the dossier evaluation set (synthetic values filled into real public "
        "templates; PDF, DOCX and scanned pages), run parsing -> classification -> extraction -> "
        "checks, print per field kind precision / recall / exact match and the detection "
        "precision / recall of the planted inconsistencies.",
    )
    e.add_argument(
        "--dir",
        help="folder for the generated dossiers and the parse cache "
        "(default: $XDG_CACHE_HOME/docfactory/eval-flow, or a temporary folder with --no-cache)",
    )
    e.add_argument("--no-cache", action="store_true", help="build and parse in a temp folder")
    e.add_argument("--financement", type=int, default=24, help="financing dossiers (default 24)")
    e.add_argument(
        "--fin-de-contrat", type=int, default=10, help="end-of-contract dossiers (default 10)"
    )
    e.add_argument("--seed", type=int, default=13)
    e.add_argument("--no-scans", action="store_true", help="no scanned (OCR) pages")
    e.add_argument(
        "--templates",
        default=str(DEFAULT_TEMPLATES),
        help="Ministère du travail DOCX templates (default ../shared/data/travail-docs/docx)",
    )
    e.add_argument(
        "--no-synonyms",
        action="store_true",
        help="drop the label synonyms (x-labels) of the spec: fields located by title only",
    )
    e.add_argument("--extractor", choices=["typed", "vllm"], default="typed")
    e.add_argument("--vllm-url", default="", help="--extractor vllm: base URL (…/v1)")
    e.add_argument("--vllm-model", default="")
    e.add_argument("--json", dest="json_out", help="write the full report (with errors) as JSON")
    e.add_argument("--errors", type=int, default=10, help="print the first N errors (default 10)")


def run(ns: argparse.Namespace) -> dict[str, Any]:
    from docfactory.core.errors import InvalidArgument
    from docfactory.ingestion.adapters.parser import UnstructuredParser
    from docfactory.workflows.evalset.generate import build
    from docfactory.workflows.evalset.run import evaluate, load_spec, without_synonyms
    from docfactory.workflows.extract import Extractor, typed_extractor, vllm_extractor

    extractor: Extractor
    if ns.extractor == "vllm":
        if not ns.vllm_url or not ns.vllm_model:
            raise InvalidArgument("--extractor vllm needs --vllm-url and --vllm-model")
        extractor = vllm_extractor(ns.vllm_url, ns.vllm_model)
    else:
        extractor = typed_extractor()
    scans = not ns.no_scans
    if scans and not shutil.which("pdftoppm"):
        print("note: pdftoppm (poppler) not installed: no scanned pages", file=sys.stderr)
        scans = False
    templates = Path(ns.templates)
    if ns.fin_de_contrat and not templates.is_dir():
        print(
            f"note: {templates} not found: the fin-de-contrat dossiers (real templates) are "
            "skipped",
            file=sys.stderr,
        )
    with tempfile.TemporaryDirectory(prefix="docfactory-evalflow-") as tmp:
        if ns.dir:
            root = Path(ns.dir)
        elif ns.no_cache:
            root = Path(tmp)
        else:
            cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
            root = Path(cache) / "docfactory" / "eval-flow"
        data = root / f"seed{ns.seed}-{ns.financement}-{ns.fin_de_contrat}-{int(scans)}"
        manifest = build(
            data,
            financement=ns.financement,
            fin_de_contrat=ns.fin_de_contrat,
            seed=ns.seed,
            templates=templates if templates.is_dir() else None,
            scans=scans,
            reuse=True,
        )
        spec = load_spec()
        if ns.no_synonyms:
            spec = without_synonyms(spec)
        return evaluate(
            data,
            manifest,
            extractor,
            UnstructuredParser().parse,
            spec=spec,
            parse_cache=root / "parsed",
        )


def format_report(report: dict[str, Any], errors: int = 10) -> str:
    lines = [
        f"dossiers {report['dossiers']}  documents {report['documents']}  "
        f"labelled fields {report['fields']}  (synthetic values in real public templates)",
        f"document classification accuracy {report['classification_accuracy']}",
        "",
        f"{'field kind':<12} {'fields':>6} {'precision':>9} {'recall':>7} {'exact':>7}",
    ]

    def f(x: float | None) -> str:
        return "-" if x is None else f"{x:.3f}"

    for kind, m in report["per_kind"].items():
        lines.append(
            f"{kind:<12} {m['fields']:>6} {f(m['precision']):>9} {f(m['recall']):>7} "
            f"{f(m['exact_match']):>7}"
        )
    inc = report["inconsistencies"]
    lines += [
        "",
        f"inconsistencies: planted {inc['planted']}  flagged {inc['flagged']}  "
        f"precision {f(inc['precision'])}  recall {f(inc['recall'])}",
        f"time: parse {report['timing']['parse_s']} s "
        f"({report['timing']['ocr_documents']} documents through OCR), "
        f"classify + extract {report['timing']['extract_s']} s",
    ]
    errs = report.get("errors") or []
    if errs and errors:
        lines += ["", f"first {min(errors, len(errs))} of {len(errs)} errors:"]
        lines += ["  " + json.dumps(e, ensure_ascii=False) for e in errs[:errors]]
    return "\n".join(lines)


def _run_and_save(ns: argparse.Namespace) -> dict[str, Any]:
    report = run(ns)
    if ns.json_out:
        Path(ns.json_out).write_text(json.dumps(report, indent=1, ensure_ascii=False))
    return report


async def cmd_eval_flow(ns: argparse.Namespace, settings: Any) -> int:
    report = await asyncio.to_thread(_run_and_save, ns)
    print(format_report(report, ns.errors))
    return 0
