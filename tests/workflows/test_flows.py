"""Flow files: validated with pydantic, errors name the field path, a bad edit keeps the last
good version, versions stay addressable."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from docfactory.workflows.flows import FlowError, FlowRegistry, parse_flow, shipped_flows_dir
from docfactory.workflows.note import draft_note


def _bump(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_shipped_flows_validate() -> None:
    reg = FlowRegistry(shipped_flows_dir())
    assert reg.errors == {}
    flows = reg.latest()
    assert {"financement", "fin-de-contrat"} <= set(flows)
    fin = flows["financement"]
    assert [d.name for d in fin.documents] == [
        "demande",
        "kbis",
        "rib",
        "budget",
        "etats_financiers",
    ]
    assert fin.doc_type("demande") is not None
    assert fin.doc_type("demande").kind_of("siren") == "siren"  # type: ignore[union-attr]
    kinds = {r.kind for r in fin.rules}
    assert {"same_value", "sum_equals", "max_amount", "not_expired"} <= kinds
    assert fin.signoff.four_eyes_above == 150000


@pytest.mark.parametrize(
    ("edit", "path"),
    [
        (("x-kind: iban,", "x-kind: ibna,"), "documents[0].schema"),
        (("ceiling: 500000", "ceiling: -1"), "rules[5].ceiling"),
        (("fields: [demande.iban, rib.iban]", "fields: [demande.iban, rib.ibn]"), "rules[2]"),
        (("  role: reviewer", "  role: chef"), "signoff.role"),
        (("max_age_days: 92", "max_age_days: 92\n    not_past: true"), "rules[6]"),
        (("version: 1", "version: zero"), "version"),
        (("    cues:", "    cue:"), "documents[0].cue"),
    ],
)
def test_errors_name_the_field_path(edit: tuple[str, str], path: str) -> None:
    text = (shipped_flows_dir() / "financement.yaml").read_text(encoding="utf-8")
    assert edit[0] in text
    with pytest.raises(FlowError) as err:
        parse_flow(text.replace(edit[0], edit[1], 1), "financement.yaml")
    assert err.value.reason == "INVALID_FLOW"
    assert any(p.startswith(path) for p in err.value.problems), err.value.problems
    assert "financement.yaml" in str(err.value)


def test_bad_edit_keeps_last_good_version(tmp_path: Path) -> None:
    src = (shipped_flows_dir() / "financement.yaml").read_text(encoding="utf-8")
    path = tmp_path / "financement.yaml"
    path.write_text(src, encoding="utf-8")
    reg = FlowRegistry(tmp_path)
    good = reg.get("financement")
    assert good is not None and good.ref == "financement@1"
    # a broken edit: reported with its field path, the last good version keeps serving
    path.write_text(src.replace("ceiling: 500000", "ceiling: beaucoup"), encoding="utf-8")
    _bump(path)
    errors = reg.reload()
    assert "rules[5].ceiling" in errors[str(path)]
    assert reg.get("financement") == good
    # a fixed new version replaces it; the old one stays addressable by name@version
    path.write_text(
        src.replace("version: 1", "version: 2").replace("ceiling: 500000", "ceiling: 400000"),
        encoding="utf-8",
    )
    _bump(path)
    assert reg.reload() == {}
    assert reg.get("financement").version == 2  # type: ignore[union-attr]
    assert reg.get("financement@1") == good
    assert reg.get("financement@3") is None
    # same version number, different content: refused, the loaded one kept
    path.write_text(
        src.replace("version: 1", "version: 2").replace("ceiling: 500000", "ceiling: 1"),
        encoding="utf-8",
    )
    _bump(path)
    assert "without a new version number" in reg.reload()[str(path)]
    assert reg.get("financement@2").rules[5].ceiling == 400000  # type: ignore[union-attr]


def test_note_cites_evidence_and_flags_missing() -> None:
    flow = FlowRegistry(shipped_flows_dir()).get("financement")
    assert flow is not None
    result = {
        "documents": [
            {
                "document_id": "d1",
                "filename": "demande.pdf",
                "type": "demande",
                "type_confidence": 0.9,
                "fields": [
                    {
                        "name": "siren",
                        "title": "SIREN",
                        "value": "732829320",
                        "status": "FOUND",
                        "evidence": {
                            "document_id": "d1",
                            "page": 2,
                            "start": 5,
                            "end": 16,
                            "quote": "732 829 320",
                        },
                    },
                    {
                        "name": "iban",
                        "title": "IBAN",
                        "value": None,
                        "status": "MISSING",
                        "evidence": None,
                    },
                ],
            }
        ],
        "checks": [
            {
                "rule": "plafond",
                "label": "Plafond",
                "outcome": "FAILED",
                "detail": "trop",
                "severity": "blocking",
                "fields": ["demande.montant_demande"],
            },
        ],
        "passages": [
            {
                "document_id": "r1",
                "filename": "regles.pdf",
                "page": 4,
                "quote": "Le plafond est de 500 000 EUR.",
                "question": "Plafond ?",
            },
        ],
    }
    note, citations = draft_note(flow, result)
    assert "SIREN : 732829320 [1]" in note
    assert "IBAN : non trouvé" in note
    assert "Avis défavorable" in note and "Plafond" in note
    assert "[2]" in note
    assert [(c["document_id"], c["page"], c["source"]) for c in citations] == [
        ("d1", 2, "dossier"),
        ("r1", 4, "rules"),
    ]
