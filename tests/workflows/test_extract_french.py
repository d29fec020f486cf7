"""Typed French finders: check digits (property tests), amounts, dates, phones, e-mails."""

from __future__ import annotations

import string
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from docfactory.workflows.extract.french import (
    LA_POSTE_SIREN,
    find_amount,
    find_date,
    find_email,
    find_iban,
    find_nir,
    find_phone,
    find_siren,
    find_siret,
    iban_complete,
    iban_ok,
    luhn_complete,
    luhn_ok,
    nir_key,
    nir_ok,
    parse_amount,
    parse_date,
    siren_ok,
    siret_ok,
)

digits = st.text(alphabet=string.digits, min_size=1, max_size=1)


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=string.digits, min_size=8, max_size=8), st.integers(0, 8), digits)
def test_siren_luhn_detects_every_single_digit_error(prefix: str, pos: int, new: str) -> None:
    siren = luhn_complete(prefix)
    assert siren_ok(siren)
    changed = siren[:pos] + new + siren[pos + 1 :]
    assert siren_ok(changed) == (changed == siren)


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=string.digits, min_size=13, max_size=13), st.integers(0, 12))
def test_siret_luhn_detects_adjacent_transpositions_of_distinct_digits(
    prefix: str, pos: int
) -> None:
    siret = luhn_complete(prefix)
    if siret.startswith(LA_POSTE_SIREN):
        return
    assert siret_ok(siret)
    a, b = siret[pos], siret[pos + 1]
    swapped = siret[:pos] + b + a + siret[pos + 2 :]
    # Luhn catches every adjacent transposition except 09 <-> 90
    if a != b and {a, b} != {"0", "9"}:
        assert not siret_ok(swapped)


@given(st.text(alphabet=string.digits, min_size=5, max_size=5))
def test_la_poste_siret_uses_the_digit_sum_rule(nic: str) -> None:
    siret = LA_POSTE_SIREN + nic
    assert siret_ok(siret) == (sum(map(int, siret)) % 5 == 0 or nic == "00048")
    assert luhn_ok(LA_POSTE_SIREN + "00048")  # the head office follows Luhn as well


def test_known_identifiers() -> None:
    assert siren_ok("732829320") and not siren_ok("732829321")
    assert siret_ok("73282932000074")
    assert iban_ok("FR7630006000011234567890189")
    assert iban_ok("FR14 2004 1010 0505 0001 3M02 606")  # letters in the account number
    assert not iban_ok("FR7630006000011234567890188")
    assert not iban_ok("FR763000600001123456789018")  # French IBANs have 27 characters


@settings(max_examples=100, deadline=None)
@given(
    st.text(alphabet=string.digits, min_size=23, max_size=23),
    st.integers(4, 26),
    digits,
)
def test_iban_mod97_detects_every_single_character_error(bban: str, pos: int, new: str) -> None:
    iban = iban_complete("FR", bban)
    assert iban_ok(iban)
    changed = iban[:pos] + new + iban[pos + 1 :]
    assert iban_ok(changed) == (changed == iban)


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from("12"),
    st.integers(0, 99),
    st.integers(1, 12),
    st.sampled_from(["75", "13", "2A", "2B", "69", "97"]),
    st.integers(1, 999),
    st.integers(1, 999),
)
def test_nir_key_including_corsica(sex: str, yy: int, mm: int, dept: str, c: int, o: int) -> None:
    body = f"{sex}{yy:02d}{mm:02d}{dept}{c:03d}{o:03d}"
    nir = body + f"{nir_key(body):02d}"
    assert nir_ok(nir)
    wrong = body + f"{(nir_key(body) % 97) + 1:02d}"
    assert not nir_ok(wrong)


def test_corsica_nir_key_is_computed_on_19_or_18_minus_the_offset() -> None:
    body_2a, body_2b = "185052A123456", "185052B123456"
    assert body_2a[5:7] == "2A" and body_2b[5:7] == "2B"
    assert nir_key(body_2a) == 97 - (int(body_2a.replace("2A", "19")) - 1_000_000) % 97
    assert nir_key(body_2b) == 97 - (int(body_2b.replace("2B", "18")) - 2_000_000) % 97
    assert nir_key(body_2a) != nir_key(body_2b)
    [cand] = find_nir(f"NIR : {body_2a[:1]} {body_2a[1:3]} {body_2a[3:5]} 2a {body_2a[7:10]} "
                      f"{body_2a[10:]} {nir_key(body_2a):02d}")  # fmt: skip
    assert cand.value == body_2a + f"{nir_key(body_2a):02d}" and cand.valid


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1 234 567,89 €", "1234567.89"),
        ("1\u00a0234\u00a0567,89\u00a0€", "1234567.89"),
        ("1\u202f234,50 €", "1234.50"),
        ("12.500 EUR", "12500.00"),
        ("12.50 EUR", "12.50"),
        ("1,2 M€", "1200000.00"),
        ("3 millions d'euros", "3000000.00"),
        ("45 000 euros", "45000.00"),
        ("150 k€", "150000.00"),
        ("EUR 1 000", "1000.00"),
        ("-9 699,41 €", "-9699.41"),
        ("Total : 125 000", "125000.00"),  # a bare number in a labelled cell
    ],
)
def test_french_amounts(text: str, value: str) -> None:
    assert parse_amount(text) == Decimal(value)


def test_one_thousands_separator_per_number_splits_flattened_table_cells() -> None:
    row = "Chiffre d'affaires 1\u00a0234\u00a0567 1\u00a0111\u00a0110"  # cells joined by a space
    assert [c.value for c in find_amount(row, bare=True)] == ["1234567.00", "1111110.00"]


def test_amounts_need_a_currency_unless_bare_and_skip_dates() -> None:
    assert find_amount("le 12/03/2025 à 14 h") == []
    assert [c.value for c in find_amount("12/03/2025 ; 500 €", bare=True)] == ["500.00"]
    [c] = find_amount("montant de 45 000,00 € HT")
    assert "montant de 45 000,00 € HT"[c.start : c.end] == "45 000,00 €"


@pytest.mark.parametrize(
    ("text", "iso"),
    [
        ("12 mars 2025", "2025-03-12"),
        ("1er janvier 2024", "2024-01-01"),
        ("le 3 août 2025", "2025-08-03"),
        ("3 AOUT 2025", "2025-08-03"),
        ("12/03/2025", "2025-03-12"),
        ("12-03-2025", "2025-03-12"),
        ("12.03.25", "2025-03-12"),
        ("2025-03-12", "2025-03-12"),
        ("29 février 2024", "2024-02-29"),
        ("1er janvier", "--01-01"),
        ("15 sept. 2024", "2024-09-15"),
    ],
)
def test_french_dates(text: str, iso: str) -> None:
    assert parse_date(text) == iso


def test_impossible_dates_are_not_dates() -> None:
    assert find_date("31/02/2025") == []
    assert find_date("29 février 2025") == []
    assert find_date("30 février") == []


def test_phones_emails_and_identifier_spans() -> None:
    text = "Tél. : +33 6 12 34 56 78 / 01.23.45.67.89 / +33 (0)4 78 00 00 01 ; Mél : Jo.B@ex-a.fr."
    assert [c.value for c in find_phone(text)] == ["+33612345678", "+33123456789", "+33478000001"]
    [mail] = find_email(text)
    assert mail.value == "jo.b@ex-a.fr" and text[mail.start : mail.end] == "Jo.B@ex-a.fr"
    ids = "SIREN 732 829 320, SIRET 732 829 320 00074, IBAN FR76 3000 6000 0112 3456 7890 189 BIC"
    assert [c.value for c in find_siren(ids)] == ["732829320"]  # not the SIRET's first 9 digits
    assert [c.value for c in find_siret(ids)] == ["73282932000074"]
    [iban] = find_iban(ids)
    assert ids[iban.start : iban.end] == "FR76 3000 6000 0112 3456 7890 189" and iban.valid
