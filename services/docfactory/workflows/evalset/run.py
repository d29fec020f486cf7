"""Runs the dossier evaluation: parse every document with the project's parser, classify it,
extract its fields, run the flow's checks, and score against the manifest's labels.

Field scores per kind (siren, siret, iban, nir, amount_eur, date, email, phone, text) and for
``typed`` (identifiers, amounts and dates together):

- precision: correct values / values returned (FOUND);
- recall: correct values / labelled values;
- exact match: fields whose returned value equals the label, where "nothing" equals an absent
  label (a field the document does not hold must come back MISSING).

Inconsistency detection: over (dossier, rule) pairs, a planted inconsistency is detected when
its rule comes back FAIL; precision counts every FAIL.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from docfactory.core.errors import DocfactoryError
from docfactory.workflows.extract import FOUND, ExtractedField, Extractor
from docfactory.workflows.extract.checks import FAIL, run_checks
from docfactory.workflows.extract.model import field_kind

SPEC_PATH = Path(__file__).with_name("spec.yaml")
TYPED_KINDS = ("siren", "siret", "iban", "nir", "amount_eur", "date")


@dataclass(frozen=True)
class DocType:
    name: str
    label: str
    cues: list[str]
    schema: dict[str, Any]


def load_spec(path: Path = SPEC_PATH) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return data


def without_synonyms(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the spec whose fields carry no ``x-labels`` (located by their title only)."""
    out: dict[str, Any] = copy.deepcopy(dict(spec))
    for flow in out["flows"].values():
        for doc in flow["documents"]:
            for prop in doc["schema"]["properties"].values():
                prop.pop("x-labels", None)
    return out


def doc_types(spec: Mapping[str, Any], flow: str) -> list[DocType]:
    return [
        DocType(d["name"], d.get("label", d["name"]), list(d.get("cues") or []), d["schema"])
        for d in spec["flows"][flow]["documents"]
    ]


def pages_of(parsed: Any) -> list[str]:
    """Page texts of a ParsedDocument: its elements joined by newlines, per page number
    (formats without pages, e.g. DOCX, give one page)."""
    by_page: dict[int, list[str]] = defaultdict(list)
    for el in parsed.elements:
        by_page[max(1, int(el.page_number or 1))].append(el.text)
    if not by_page:
        return [""]
    last = max(by_page)
    return ["\n".join(by_page.get(p, [])) for p in range(1, last + 1)]


def _norm_value(kind: str, v: str | None) -> str | None:
    if v is None:
        return None
    return " ".join(v.split()).casefold() if kind == "text" else v


def parse_cached(
    parse: Callable[[Path, str], Any], path: Path, cache: Path | None
) -> tuple[list[str], str, float]:
    """(pages, parse strategy, seconds); cached by file content hash under ``cache``."""
    key = hashlib.sha256(path.read_bytes()).hexdigest()[:24]
    hit = cache / f"{key}.json" if cache is not None else None
    if hit is not None and hit.exists():
        data = json.loads(hit.read_text())
        return list(data["pages"]), str(data["strategy"]), 0.0
    t0 = time.perf_counter()
    parsed = parse(path, path.name)
    seconds = time.perf_counter() - t0
    pages = pages_of(parsed)
    if hit is not None:
        hit.parent.mkdir(parents=True, exist_ok=True)
        hit.write_text(json.dumps({"pages": pages, "strategy": parsed.strategy}))
    return pages, str(parsed.strategy), seconds


def evaluate(
    root: Path,
    manifest: Mapping[str, Any],
    extractor: Extractor,
    parse: Callable[[Path, str], Any],
    *,
    spec: Mapping[str, Any] | None = None,
    parse_cache: Path | None = None,
    dossier_ids: Sequence[str] | None = None,
) -> dict[str, Any]:
    import datetime as dt

    spec = spec or load_spec()
    as_of = dt.date.fromisoformat(str(manifest.get("as_of") or spec["as_of"]))
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    det = {"tp": 0, "fp": 0, "fn": 0}
    classified = {"ok": 0, "n": 0}
    errors: list[dict[str, Any]] = []
    timing = {"parse_s": 0.0, "extract_s": 0.0, "ocr_documents": 0}
    dossiers = [
        d for d in manifest["dossiers"] if dossier_ids is None or d["id"] in set(dossier_ids)
    ]
    n_fields = 0
    for dossier in dossiers:
        types = doc_types(spec, dossier["flow"])
        by_name = {t.name: t for t in types}
        fields_by_doc: dict[str, list[ExtractedField]] = {}
        for doc in dossier["documents"]:
            path = root / doc["file"]
            try:
                pages, strategy, secs = parse_cached(parse, path, parse_cache)
            except DocfactoryError as exc:  # e.g. a scan without OCR installed: nothing read
                errors.append(
                    {"dossier": dossier["id"], "document": doc["file"], "error": str(exc)}
                )
                pages, strategy, secs = [""], "failed", 0.0
            timing["parse_s"] += secs
            timing["ocr_documents"] += int(strategy == "ocr_only")
            t0 = time.perf_counter()
            predicted, _conf = extractor.classify("\n".join(pages), types)
            classified["n"] += 1
            classified["ok"] += int(predicted == doc["type"])
            got: dict[str, ExtractedField] = {}
            if predicted in by_name:
                fields = extractor.extract(doc["file"], pages, by_name[predicted].schema)
                if predicted not in fields_by_doc:
                    fields_by_doc[predicted] = fields
                if predicted == doc["type"]:
                    got = {f.name: f for f in fields}
            timing["extract_s"] += time.perf_counter() - t0
            props = by_name[doc["type"]].schema["properties"]
            for name, expected in doc["fields"].items():
                kind = field_kind(props[name])
                f = got.get(name)
                value = f.value if f is not None and f.status == FOUND else None
                e, p = _norm_value(kind, expected), _norm_value(kind, value)
                n_fields += 1
                for group in (kind, "typed") if kind in TYPED_KINDS else (kind,):
                    c = counts[group]
                    c["n"] += 1
                    c["labelled"] += int(e is not None)
                    c["returned"] += int(p is not None)
                    c["correct"] += int(p is not None and p == e)
                    c["exact"] += int(p == e)
                if p != e:
                    errors.append(
                        {"dossier": dossier["id"], "document": doc["file"], "field": name,
                         "kind": kind, "expected": expected, "got": value,
                         "quote": f.evidence.quote if f is not None and f.evidence else None}
                    )  # fmt: skip
        results = run_checks(spec["flows"][dossier["flow"]]["rules"], fields_by_doc, as_of=as_of)
        failed = {r.rule for r in results if r.outcome == FAIL}
        expected_f = set(dossier["expected_failures"])
        det["tp"] += len(failed & expected_f)
        det["fp"] += len(failed - expected_f)
        det["fn"] += len(expected_f - failed)
        for rule in sorted(failed ^ expected_f):
            errors.append(
                {"dossier": dossier["id"], "rule": rule,
                 "error": "missed" if rule in expected_f else "false alarm",
                 "detail": next((r.message for r in results if r.rule == rule), "")}
            )  # fmt: skip

    def ratio(a: int, b: int) -> float | None:
        return round(a / b, 4) if b else None

    per_kind = {
        k: {
            "fields": c["n"],
            "precision": ratio(c["correct"], c["returned"]),
            "recall": ratio(c["correct"], c["labelled"]),
            "exact_match": ratio(c["exact"], c["n"]),
        }
        for k, c in sorted(counts.items())
    }
    return {
        "dossiers": len(dossiers),
        "documents": classified["n"],
        "fields": n_fields,
        "classification_accuracy": ratio(classified["ok"], classified["n"]),
        "per_kind": per_kind,
        "inconsistencies": {
            "planted": det["tp"] + det["fn"],
            "flagged": det["tp"] + det["fp"],
            "precision": ratio(det["tp"], det["tp"] + det["fp"]),
            "recall": ratio(det["tp"], det["tp"] + det["fn"]),
        },
        "timing": {k: round(v, 2) if isinstance(v, float) else v for k, v in timing.items()},
        "errors": errors,
    }
