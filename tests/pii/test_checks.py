"""Check digits, overlap resolution, span replacement and the policy's ``pii`` field: pure
code, no Presidio / spaCy load."""

from __future__ import annotations

import random

import pytest

from docfactory.governance.policy import PII_MODES, Policy, PolicyError
from docfactory.pii import checks
from docfactory.pii.model import MODES, PLACEHOLDERS, Finding, replace_spans, resolve_overlaps
from docfactory.pii.stage import IngestPii


def test_nir_key_and_corsica() -> None:
    body = "1850375115005"
    key = 97 - int(body) % 97
    assert checks.nir_valid(f"{body}{key:02d}")
    assert checks.nir_valid(f"1 85 03 75 115 005 {key:02d}")
    assert not checks.nir_valid(f"{body}{(key % 97) + 1:02d}")
    # Corsica: 2A counts as 19, 2B as 18 in the number the key is computed on
    a = "26905" + "2A" + "123456"
    k_a = 97 - int(a.replace("2A", "19")) % 97
    assert checks.nir_valid(f"{a}{k_a:02d}")
    b = a.replace("2A", "2B")
    k_b = 97 - int(b.replace("2B", "18")) % 97
    assert checks.nir_valid(f"{b}{k_b:02d}") and k_a != k_b
    assert not checks.nir_valid(f"{b}{k_a:02d}")
    # month 13 is no month (20-42 and 50-99 are the special ranges)
    bad = "1851375115005"
    assert not checks.nir_valid(f"{bad}{97 - int(bad) % 97:02d}")
    assert not checks.nir_valid("5850375115005" + "12")  # sex digit


def test_nir_key_random_roundtrip() -> None:
    r = random.Random(3)
    for _ in range(200):
        body = f"{r.choice('12')}{r.randint(0, 99):02d}{r.randint(1, 12):02d}{r.randint(1, 95):02d}"
        body += f"{r.randint(0, 999):03d}{r.randint(1, 999):03d}"
        key = checks.nir_key(body)
        assert key is not None and checks.nir_valid(f"{body}{key:02d}")
        assert not checks.nir_valid(f"{body}{(key + 1) % 100:02d}")


@pytest.mark.parametrize(
    "iban",
    [
        "FR76 3000 6000 0112 3456 7890 189",
        "DE89 3704 0044 0532 0130 00",
        "ES91 2100 0418 4502 0005 1332",
        "IT60 X054 2811 1010 0000 0123 456",
        "BE68 5390 0754 7034",
        "NL91 ABNA 0417 1643 00",
        "LU28 0019 4006 4475 0000",
        "GB29 NWBK 6016 1331 9268 19",
    ],
)
def test_iban_valid(iban: str) -> None:
    assert checks.iban_valid(iban)
    flipped = iban[:2] + f"{(int(iban[2:4]) + 1) % 100:02d}" + iban[4:]
    assert not checks.iban_valid(flipped)
    assert not checks.iban_valid(iban + "0")  # the country's length


def test_iban_check_digits_generator() -> None:
    assert checks.iban_check_digits("FR", "30006000011234567890189") == "76"


def test_siren_siret_luhn_and_la_poste() -> None:
    assert checks.siren_valid("732 829 320") and not checks.siren_valid("732 829 321")
    assert checks.siret_valid("732 829 320 00074") and not checks.siret_valid("73282932000075")
    # La Poste: digit sum multiple of 5, whatever Luhn says
    nic = next(
        f"{n:05d}"
        for n in range(2, 99999)
        if sum(map(int, f"356000000{n:05d}")) % 5 == 0 and not checks.luhn_ok(f"356000000{n:05d}")
    )
    assert checks.siret_valid("356000000" + nic)
    off = "356000000" + nic[:-1] + str((int(nic[-1]) + 1) % 10)
    assert not checks.siret_valid(off) or checks.luhn_ok(off)


def test_overlaps_identifiers_beat_names() -> None:
    kept = resolve_overlaps(
        [
            Finding("PERSON", 0, 30, 1.0),
            Finding("IBAN_CODE", 5, 30, 1.0),
            Finding("FR_SIREN", 40, 51, 0.6),
        ]
    )
    assert [f.type for f in kept] == ["IBAN_CODE", "FR_SIREN"]


def test_replace_spans_ignores_stale_spans() -> None:
    text = "IBAN FR7630006000011234567890189 de M. Jean Dupont"
    out = replace_spans(
        text,
        [
            Finding("IBAN_CODE", 5, 32, 1),
            Finding("PERSON", 39, 50, 0.9),
            Finding("PERSON", 45, 99, 1),
        ],
        PLACEHOLDERS,
    )
    assert out == "IBAN [IBAN] de M. [PERSONNE]"


def test_ingest_payload_and_metadata_never_hold_values() -> None:
    found = IngestPii(
        "redact_at_ingest",
        {"c1": [Finding("FR_NIR", 3, 8, 1.0)]},
        {"FR_NIR": 1},
    )
    assert found.payload("c1") == {
        "pii_mode": "redact_at_ingest",
        "pii": [{"type": "FR_NIR", "start": 3, "end": 8, "score": 1.0}],
    }
    meta = found.metadata({"owner": "rh", "pii.count": "forged"})
    assert meta == {
        "owner": "rh",
        "pii.mode": "redact_at_ingest",
        "pii.count": "1",
        "pii.count.FR_NIR": "1",
    }
    assert IngestPii("allow").payload("c1") == {}
    assert IngestPii("allow").metadata({"pii.note": "x"}) == {"pii.note": "x"}  # untouched


def _policy(pii: object, **extra: object) -> dict[str, object]:
    uc: dict[str, object] = {
        "id": "uc",
        "tenant": "t",
        "owner": "dpo@example.fr",
        "purpose": "p",
        "allowed_collections": ["rh"],
        "max_classification": "INTERNAL",
        "allowed_models": "*",
        "human_review": "optional",
        "retention": "none",
        **extra,
    }
    if pii is not None:
        uc["pii"] = pii
    return {"version": 1, "tenants": [{"id": "t"}], "use_cases": [uc]}


def test_policy_pii_field() -> None:
    assert MODES == PII_MODES
    assert Policy.from_mapping(_policy(None)).use_cases["uc"].pii == "allow"
    p = Policy.from_mapping(_policy("redact_at_ingest"))
    assert p.use_cases["uc"].pii == "redact_at_ingest"
    assert p.authorize("t", "k", "uc").pii == "redact_at_ingest"
    with pytest.raises(PolicyError) as err:
        Policy.from_mapping(_policy("mask"))
    assert err.value.problems == [
        "use_cases[0].pii: must be one of allow, mask_in_answers, redact_at_ingest, got 'mask'"
    ]


def test_ingestion_mode_is_the_strictest_reader() -> None:
    raw = _policy("mask_in_answers")
    ucs = raw["use_cases"]
    assert isinstance(ucs, list)
    ucs.append({**ucs[0], "id": "uc2", "pii": "redact_at_ingest", "allowed_collections": ["paie"]})
    ucs.append({**ucs[0], "id": "uc3", "pii": "allow", "allowed_collections": "*"})
    p = Policy.from_mapping(raw)
    assert p.pii_ingestion_mode("t", "rh") == "mask_in_answers"
    assert p.pii_ingestion_mode("t", "paie") == "redact_at_ingest"
    assert p.pii_ingestion_mode("t", "autre") == "allow"
    assert p.pii_ingestion_mode("other-tenant", "paie") == "allow"
