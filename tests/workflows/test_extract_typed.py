"""The embedded typed extractor: label-guided location, verbatim evidence, MISSING rather than
invented, classification by cues; the rule checks (also on the shipped flows' rule models)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from docfactory.core.errors import InvalidArgument
from docfactory.workflows.extract import FOUND, MISSING, ExtractedField, typed_extractor
from docfactory.workflows.extract.checks import FAIL, NOT_EVALUATED, PASS, run_checks
from docfactory.workflows.extract.french import iban_complete, luhn_complete
from docfactory.workflows.extract.vllm import normalise_value

SCHEMA = {
    "type": "object",
    "properties": {
        "raison_sociale": {"title": "Raison sociale", "x-kind": "text", "x-labels": ["Société"]},
        "siren": {"title": "SIREN", "x-kind": "siren", "x-labels": ["N° SIREN"]},
        "montant": {"title": "Montant demandé", "x-kind": "amount_eur"},
        "date_demande": {"title": "Date de la demande", "x-kind": "date", "x-labels": ["Fait à"]},
        "iban": {"title": "IBAN", "x-kind": "iban"},
        "email": {"title": "Courriel", "x-kind": "email"},
        "telephone": {"title": "Téléphone", "x-kind": "phone"},
        "nir": {"title": "Numéro de sécurité sociale", "x-kind": "nir"},
        "total": {"title": "Total du projet", "x-kind": "amount_eur"},
    },
}

LETTER = [
    "Atelier Lefebvre SAS\nSociété : Atelier Lefebvre SAS  Forme : SAS\nN° SIREN :\n732 829 320\n"
    "Courriel : contact@lefebvre.fr Téléphone : 04 78 12 34 56\n\n"
    "Nous sollicitons un prêt.\nMontant demandé : 1,2 M€ (plafond 500 000 €)",
    "Versement sur le compte IBAN : FR76 3000 6000 0112 3456 7890 189\n"
    "Fait à Lyon, le 1er mars 2025",
]


def by_name(fields: list[ExtractedField]) -> dict[str, ExtractedField]:
    return {f.name: f for f in fields}


def test_label_guided_values_with_verbatim_evidence() -> None:
    fields = typed_extractor().extract("doc-9", LETTER, SCHEMA)
    assert [f.name for f in fields] == list(SCHEMA["properties"])
    got = by_name(fields)
    expected = {
        "raison_sociale": ("Atelier Lefebvre SAS", 1),
        "siren": ("732829320", 1),  # value on the line after its label
        "montant": ("1200000.00", 1),
        "date_demande": ("2025-03-01", 2),
        "iban": ("FR7630006000011234567890189", 2),
        "email": ("contact@lefebvre.fr", 1),
        "telephone": ("+33478123456", 1),
    }
    for name, (value, page) in expected.items():
        f = got[name]
        assert f.status == FOUND and f.value == value, f
        ev = f.evidence
        assert ev is not None and ev.document_id == "doc-9" and ev.page == page
        assert LETTER[page - 1][ev.start : ev.end] == ev.quote
        assert 0 < f.confidence <= 1
    assert got["siren"].confidence < 0.95  # next line: less sure than on the label's line


def test_absent_fields_are_missing_never_invented() -> None:
    got = by_name(typed_extractor().extract("doc-9", LETTER, SCHEMA))
    for name in ("nir", "total"):  # no label, no value in the document
        assert got[name].status == MISSING
        assert got[name].value is None and got[name].evidence is None
        assert got[name].confidence == 0.0


def test_an_identifier_without_its_label_is_taken_only_when_unique_and_valid() -> None:
    schema = {"properties": {"siren": {"title": "SIREN", "x-kind": "siren"}}}
    one = ["Immatriculée sous le 732 829 320 au registre"]
    two = ["Immatriculée sous le 732 829 320, filiale de 552 100 554"]
    bad = ["Immatriculée sous le 732 829 321"]
    ex = typed_extractor()
    [f] = ex.extract("d", one, schema)
    assert f.value == "732829320" and f.confidence < 0.7
    assert ex.extract("d", two, schema)[0].status == MISSING
    assert ex.extract("d", bad, schema)[0].status == MISSING


def test_a_labelled_identifier_with_bad_check_digits_is_kept_with_low_confidence() -> None:
    [f] = typed_extractor().extract(
        "d",
        ["IBAN : FR77 3000 6000 0112 3456 7890 189"],
        {"properties": {"iban": {"x-kind": "iban"}}},
    )
    assert f.status == FOUND and f.value == "FR7730006000011234567890189" and f.confidence < 0.7


@settings(max_examples=40, deadline=None)
@given(
    st.text(alphabet="0123456789", min_size=8, max_size=8),
    st.text(alphabet="0123456789", min_size=23, max_size=23),
    st.integers(1, 9_999_999),
    st.dates(dt.date(1990, 1, 1), dt.date(2030, 12, 31)),
    st.sampled_from([" ", "\n", "\n\n", " :\n"]),
)
def test_evidence_is_always_verbatim(
    prefix: str, bban: str, cents: int, day: dt.date, sep: str
) -> None:
    siren, iban = luhn_complete(prefix), iban_complete("FR", bban)
    amount = Decimal(cents) / 100
    text = (
        f"Rapport\nN° SIREN{sep}{siren[:3]} {siren[3:6]} {siren[6:]}\n"
        f"IBAN :{sep}{' '.join(iban[i : i + 4] for i in range(0, 27, 4))}\n"
        f"Montant demandé : {f'{amount:,.2f}'.replace(',', ' ').replace('.', ',')} €\n"
        f"Date de la demande : {day.strftime('%d/%m/%Y')}"
    )
    got = by_name(typed_extractor().extract("d", [text], SCHEMA))
    assert got["siren"].value == siren
    assert got["iban"].value == iban
    assert got["montant"].value == f"{amount:.2f}"
    assert got["date_demande"].value == day.isoformat()
    for f in got.values():
        if f.status == FOUND:
            assert (
                f.evidence is not None
                and text[f.evidence.start : f.evidence.end] == f.evidence.quote
            )
            cand = normalise_value(SCHEMA["properties"][f.name]["x-kind"], f.evidence.quote)
            assert cand is not None and cand.value == f.value


def test_classify_by_cues() -> None:
    types = [
        SimpleNamespace(name="demande", cues=["demande de financement", "sollicitons"]),
        SimpleNamespace(name="kbis", cues=["extrait kbis", "greffe du tribunal de commerce"]),
        SimpleNamespace(name="rib", cues=["relevé d'identité bancaire", "iban", "bic"]),
    ]
    ex = typed_extractor()
    assert ex.classify("GREFFE DU TRIBUNAL DE COMMERCE DE LYON\nExtrait Kbis", types)[0] == "kbis"
    name, conf = ex.classify("RELEVÉ D'IDENTITÉ BANCAIRE\nIBAN : FR76...\nBIC : AGRIFRPP", types)
    assert name == "rib" and conf > 0.5
    assert ex.classify("Compte rendu de réunion", types) == ("", 0.0)


def f(name: str, value: str | None) -> ExtractedField:
    return ExtractedField(name, value, None, 0.9 if value else 0.0, FOUND if value else MISSING)


DOCS = {
    "demande": [
        f("siren", "732829320"),
        f("montant", "120000.00"),
        f("iban", "FR7630006000011234567890189"),
    ],
    "kbis": [f("siren", "732829320"), f("date_extrait", "2025-05-02")],
    "rib": [f("iban", "FR7730006000011234567890189")],
    "budget": [f("a", "100000.00"), f("b", "19000.00"), f("c", None), f("total", "120000.00")],
}  # fmt: skip
RULES = [
    {"id": "pieces", "kind": "required_documents", "documents": ["demande", "kbis", "etats"]},
    {"id": "siren", "kind": "same_value", "fields": ["demande.siren", "kbis.siren"]},
    {"id": "iban", "kind": "same_value", "fields": ["demande.iban", "rib.iban"]},
    {"id": "iban-ok", "kind": "valid_checksum", "field": "rib.iban"},
    {"id": "siren-ok", "kind": "valid_checksum", "field": "kbis.siren"},
    {"id": "somme", "kind": "sum_equals", "terms": ["budget.a", "budget.b", "budget.c"],
     "total": "budget.total"},
    {"id": "plafond", "kind": "max_amount", "field": "demande.montant", "ceiling": 100000},
    {"id": "frais", "kind": "not_expired", "field": "kbis.date_extrait", "max_age_days": 92},
    {"id": "echeance", "kind": "not_expired", "field": "kbis.date_extrait", "not_past": True},
    {"id": "nir", "kind": "valid_checksum", "field": "salarie.nir"},
    {"id": "champs", "kind": "required_fields", "fields": ["budget.c", "demande.siren"]},
]  # fmt: skip


def test_rule_checks_outcomes() -> None:
    res = {r.rule: r for r in run_checks(RULES, DOCS, as_of=dt.date(2025, 6, 30))}
    outcomes = {k: r.outcome for k, r in res.items()}
    assert outcomes == {
        "pieces": FAIL, "siren": PASS, "iban": FAIL, "iban-ok": FAIL, "siren-ok": PASS,
        "somme": FAIL, "plafond": FAIL, "frais": PASS, "echeance": FAIL, "nir": NOT_EVALUATED,
        "champs": FAIL,
    }  # fmt: skip
    assert "etats" in res["pieces"].message
    assert "budget.c" in res["somme"].message and "119000.00" in res["somme"].message
    assert res["iban"].fields == ("demande.iban", "rib.iban")
    assert res["nir"].message == "not extracted: salarie.nir"
    late = run_checks(RULES[7:8], DOCS, as_of=dt.date(2025, 9, 30))[0]
    assert late.outcome == FAIL and "151 days old" in late.message


def test_bad_rules_are_refused_with_the_reason() -> None:
    with pytest.raises(InvalidArgument) as err:
        run_checks([{"kind": "looks_fine"}], DOCS)
    assert err.value.reason == "INVALID_RULE" and "looks_fine" in err.value.message
    with pytest.raises(InvalidArgument):
        run_checks([{"kind": "same_value", "fields": ["siren"]}], DOCS)


def test_the_shipped_flows_rules_run_as_they_are() -> None:
    """The engine passes its pydantic rule models (id, terms, ceiling, not_past) straight in."""
    from docfactory.workflows.flows import load_flow, shipped_flows_dir

    flow = load_flow(shipped_flows_dir() / "financement.yaml")
    docs = {
        "demande": [f("siren", "732829320"), f("montant_demande", "900000.00")],
        "kbis": [f("siren", "552100554"), f("date_extrait", "2025-06-01")],
    }
    res = {r.rule: r.outcome for r in run_checks(flow.rules, docs, as_of=dt.date(2025, 6, 30))}
    assert set(res) == {r.id for r in flow.rules}
    assert res["siren-demande-kbis"] == FAIL
    assert res["plafond"] == FAIL
    assert res["kbis-moins-de-3-mois"] == PASS
    assert res["budget-total"] == NOT_EVALUATED


def test_ocr_misread_labels_match_within_a_few_edits_with_lower_confidence() -> None:
    schema = {"properties": {"ca": {"title": "Chiffre d'affaires net", "x-kind": "amount_eur"}}}
    ex = typed_extractor()
    [exact] = ex.extract("d", ["Chiffre d'affaires net : 6 210 000 €"], schema)
    [ocr] = ex.extract("d", ["Chiftre d'aftaires net : 6 210 000 €"], schema)
    assert exact.value == ocr.value == "6210000.00"
    assert ocr.confidence < exact.confidence
    [far] = ex.extract("d", ["Charges d'affacturage : 6 210 000 €"], schema)
    assert far.status == MISSING


def test_a_label_written_as_a_field_wins_over_the_same_words_in_a_sentence() -> None:
    schema = {
        "properties": {
            "montant": {"title": "Montant demandé", "x-kind": "amount_eur"},
            "nom": {"title": "Dénomination", "x-kind": "text"},
        }
    }
    page = (
        "Le montant demandé tient compte d'une subvention de 14 500 € déjà obtenue.\n"
        "Dénomination ou raison sociale : Pépinières Fontaine SARL\n"
        "Montant demandé : 177 500 €"
    )
    got = by_name(typed_extractor().extract("d", [page], schema))
    assert got["montant"].value == "177500.00"
    assert got["nom"].value == "Pépinières Fontaine SARL"  # the label's tail is not the value
