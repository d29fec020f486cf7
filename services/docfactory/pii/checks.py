"""Check digits of French and European identifiers (pure functions, no dependency).

- NIR (numéro de sécurité sociale): 13 digits + key, key = 97 - (n mod 97); Corsica's
  departments 2A / 2B count as 19 / 18 in n.
- IBAN: ISO 13616 mod-97 (letters A=10 .. Z=35, country + check digits moved to the end),
  with the length of each country's format.
- SIREN (9 digits) / SIRET (14 digits): Luhn; La Poste's establishments (SIREN 356 000 000)
  follow another rule: the sum of the SIRET's digits is a multiple of 5.
"""

from __future__ import annotations

import re

_NON_ALNUM = re.compile(r"[^0-9A-Za-z]")

#: IBAN length per country (EU/EEA + the neighbours French documents meet).
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AT": 20, "BE": 16, "BG": 22, "CH": 21, "CY": 28, "CZ": 24, "DE": 22,
    "DK": 18, "EE": 20, "ES": 24, "FI": 18, "FR": 27, "GB": 22, "GI": 23, "GR": 27,
    "HR": 21, "HU": 28, "IE": 22, "IS": 26, "IT": 27, "LI": 21, "LT": 20, "LU": 20,
    "LV": 21, "MC": 27, "MT": 31, "NL": 18, "NO": 15, "PL": 28, "PT": 25, "RO": 24,
    "SE": 24, "SI": 19, "SK": 24, "SM": 27,
}  # fmt: skip

LA_POSTE_SIREN = "356000000"


def compact(value: str) -> str:
    """The value without spaces, dots, dashes or other separators."""
    return _NON_ALNUM.sub("", value)


# -- NIR -----------------------------------------------------------------------------------


def nir_number(body: str) -> int | None:
    """The 13-character NIR body as the integer the key is computed on (Corsica: 2A=19,
    2B=18), or None when it is not a NIR body."""
    body = body.upper()
    if len(body) != 13:
        return None
    dept = body[5:7]
    if dept == "2A":
        body = body[:5] + "19" + body[7:]
    elif dept == "2B":
        body = body[:5] + "18" + body[7:]
    if not body.isdigit():
        return None
    return int(body)


def nir_key(body: str) -> int | None:
    n = nir_number(body)
    return None if n is None else 97 - (n % 97)


def nir_valid(value: str) -> bool:
    """A NIR with its key: sex 1/2 (3/4/7/8 for provisional numbers), month 01-12 or the
    special ranges 20-42 / 50-99, department, commune, order number, key."""
    v = compact(value).upper()
    if len(v) != 15 or v[0] not in "123478" or not v[13:].isdigit():
        return False
    month = v[3:5]
    if not month.isdigit():
        return False
    m = int(month)
    if not (1 <= m <= 12 or 20 <= m <= 42 or 50 <= m <= 99):
        return False
    key = nir_key(v[:13])
    return key is not None and key == int(v[13:])


# -- IBAN ----------------------------------------------------------------------------------


def iban_checksum_ok(iban: str) -> bool:
    v = compact(iban).upper()
    if len(v) < 15 or not v[:2].isalpha() or not v[2:4].isdigit():
        return False
    moved = v[4:] + v[:4]
    digits = "".join(str(int(ch, 36)) for ch in moved)
    return int(digits) % 97 == 1


def iban_valid(value: str) -> bool:
    """Country known, length of that country's format, mod-97 == 1."""
    v = compact(value).upper()
    expected = IBAN_LENGTHS.get(v[:2])
    return expected is not None and len(v) == expected and iban_checksum_ok(v)


def iban_check_digits(country: str, bban: str) -> str:
    """The two check digits of an IBAN (used by the evaluation set's generator)."""
    moved = bban.upper() + country.upper() + "00"
    digits = "".join(str(int(ch, 36)) for ch in moved)
    return f"{98 - int(digits) % 97:02d}"


# -- SIREN / SIRET -------------------------------------------------------------------------


def luhn_ok(digits: str) -> bool:
    if not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def siren_valid(value: str) -> bool:
    v = compact(value)
    return len(v) == 9 and v.isdigit() and v != "000000000" and luhn_ok(v)


def siret_valid(value: str) -> bool:
    v = compact(value)
    if len(v) != 14 or not v.isdigit():
        return False
    if v.startswith(LA_POSTE_SIREN):
        # La Poste: one SIREN, thousands of establishments, more than Luhn's check digit
        # allows; their SIRET's digits sum to a multiple of 5 (the head office, 00048, also
        # passes Luhn).
        return luhn_ok(v) or sum(int(c) for c in v) % 5 == 0
    return siren_valid(v[:9]) and luhn_ok(v)


def luhn_digit(partial: str) -> str:
    """The digit that makes ``partial + digit`` pass Luhn (evaluation set's generator)."""
    for d in "0123456789":
        if luhn_ok(partial + d):
            return d
    raise ValueError(partial)  # pragma: no cover - one digit always fits
