"""The dossier evaluation set and ``docfactory eval-flow`` (synthetic values in real public
templates, parsed by the project's parser, OCR included)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from docfactory.workflows.evalset.generate import build
from docfactory.workflows.evalset.run import load_spec
from docfactory.workflows.extract import FOUND, MISSING, ExtractedField
from docfactory.workflows.extract.checks import FAIL, run_checks
from tests.conftest import shared_data, skip_unless_required


@pytest.mark.slow
def test_full_set_size_formats_and_labels_agree_with_the_rules(tmp_path: Path) -> None:
    """>= 30 dossiers, >= 300 labelled fields, PDF + DOCX + real templates, planted
    inconsistencies and missing documents; the rules run on the labelled (true) values fail
    exactly where an inconsistency was planted."""
    templates = shared_data("travail-docs", "docx")
    m = build(tmp_path, templates=templates, scans=False)
    dossiers = m["dossiers"]
    docs = [x for d in dossiers for x in d["documents"]]
    assert len(dossiers) >= 30
    assert sum(len(x["fields"]) for x in docs) >= 300
    assert {x["format"] for x in docs} == {"pdf", "docx"}
    assert Counter(d["flow"] for d in dossiers)["fin-de-contrat"] >= 5
    assert sum(bool(d["missing"]) for d in dossiers) >= 3
    assert sum(len(d["expected_failures"]) for d in dossiers) >= 25
    assert not (tmp_path / "_templates").resolve().is_relative_to(Path.cwd().resolve())
    spec = load_spec()
    for d in dossiers:
        by_doc = {
            x["type"]: [
                ExtractedField(k, v, None, 1.0, FOUND if v is not None else MISSING)
                for k, v in x["fields"].items()
            ]
            for x in d["documents"]
        }
        rules = spec["flows"][d["flow"]]["rules"]
        failed = {r.rule for r in run_checks(rules, by_doc, as_of=_as_of(m)) if r.outcome == FAIL}
        assert failed == set(d["expected_failures"]), d["id"]


def _as_of(m: dict[str, object]) -> object:
    import datetime as dt

    return dt.date.fromisoformat(str(m["as_of"]))


@pytest.mark.slow
def test_eval_flow_cli_on_a_few_dossiers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Four dossiers end to end (one page through OCR): metrics computed and above a floor."""
    from docfactory.cli import main
    from docfactory.ingestion.adapters.parser import ocr_available

    templates = shared_data("travail-docs", "docx")
    if not ocr_available():
        skip_unless_required("ocr", "tesseract/poppler not installed: scanned pages need OCR")
    out = tmp_path / "report.json"
    rc = main([
        "eval-flow", "--dir", str(tmp_path / "set"), "--financement", "3",
        "--fin-de-contrat", "1", "--templates", str(templates), "--json", str(out),
    ])  # fmt: skip
    assert rc == 0
    text = capsys.readouterr().out
    assert "field kind" in text and "inconsistencies: planted" in text
    report = json.loads(out.read_text())
    assert report["dossiers"] == 4 and report["fields"] >= 60
    assert report["timing"]["ocr_documents"] == 1
    typed = report["per_kind"]["typed"]
    assert typed["fields"] >= 40
    assert typed["exact_match"] >= 0.85 and typed["precision"] >= 0.85
    for kind in ("siren", "iban", "amount_eur", "date"):
        assert report["per_kind"][kind]["recall"] is not None
    inc = report["inconsistencies"]
    assert inc["planted"] >= 3
    assert inc["recall"] >= 0.75 and inc["precision"] >= 0.6
    assert report["classification_accuracy"] >= 0.9
    # the run is cached: a second run reuses the built set and the parsed pages
    assert main(["eval-flow", "--dir", str(tmp_path / "set"), "--financement", "3",
                 "--fin-de-contrat", "1", "--templates", str(templates)]) == 0  # fmt: skip
    assert "parse 0.0 s" in capsys.readouterr().out
