"""Typed value finders for French documents: identifiers with their check digits, amounts in
euros, dates in French formats, e-mail addresses and phone numbers.

Each ``find_<kind>(text)`` returns the candidate matches of that kind in ``text``, with the span
of the verbatim text, the normalised value and whether its check digits hold (``valid``; True for
kinds without check digits).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation


@dataclass(frozen=True)
class Candidate:
    start: int
    end: int
    value: str
    valid: bool = True


# -- check digits ---------------------------------------------------------------------------

LA_POSTE_SIREN = "356000000"


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


def siren_ok(siren: str) -> bool:
    return len(siren) == 9 and luhn_ok(siren)


def siret_ok(siret: str) -> bool:
    """Luhn over the 14 digits, except La Poste's establishments (SIREN 356 000 000), whose
    SIRETs have a digit sum divisible by 5 instead (INSEE rule)."""
    if len(siret) != 14 or not siret.isdigit():
        return False
    if siret.startswith(LA_POSTE_SIREN) and siret != LA_POSTE_SIREN + "00048":
        return sum(int(c) for c in siret) % 5 == 0
    return luhn_ok(siret)


def luhn_complete(prefix: str) -> str:
    """``prefix`` + the Luhn check digit."""
    for d in "0123456789":
        if luhn_ok(prefix + d):
            return prefix + d
    raise AssertionError("unreachable")


IBAN_LENGTHS = {
    "FR": 27, "MC": 27, "DE": 22, "BE": 16, "ES": 24, "IT": 27, "LU": 20, "NL": 18, "GB": 22,
    "CH": 21, "PT": 25, "AT": 20, "IE": 22, "GR": 27, "PL": 28, "SE": 24, "DK": 18, "FI": 18,
}  # fmt: skip


def iban_mod97(iban: str) -> int:
    moved = iban[4:] + iban[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97


def iban_ok(iban: str) -> bool:
    iban = iban.replace(" ", "").upper()
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]{10,30}", iban):
        return False
    expected = IBAN_LENGTHS.get(iban[:2])
    if expected is not None and len(iban) != expected:
        return False
    return iban_mod97(iban) == 1


def iban_complete(country: str, bban: str) -> str:
    """A valid IBAN for ``country`` + ``bban`` (computes the two check digits)."""
    check = 98 - iban_mod97(country + "00" + bban)
    return f"{country}{check:02d}{bban}"


def nir_number(body: str) -> int:
    """The 13-character NIR body as the number the key is computed on (Corsica: 2A -> 19 minus
    1,000,000; 2B -> 18 minus 2,000,000)."""
    upper = body.upper()
    if upper[5:7] == "2A":
        return int(upper[:5] + "19" + upper[7:]) - 1_000_000
    if upper[5:7] == "2B":
        return int(upper[:5] + "18" + upper[7:]) - 2_000_000
    return int(upper)


def nir_key(body: str) -> int:
    return 97 - nir_number(body) % 97


def nir_ok(nir: str) -> bool:
    nir = nir.replace(" ", "").upper()
    if not re.fullmatch(r"[12378]\d{4}(?:\d{2}|2A|2B)\d{6}\d{2}", nir):
        return False
    return nir_key(nir[:13]) == int(nir[13:])


# -- finders ----------------------------------------------------------------------------------

_SP = "[ \u00a0\u202f]"
_NODIGIT_BEFORE = r"(?<![\dA-Za-z])"
_NODIGIT_AFTER = r"(?![\dA-Za-z])"

_SIRET_RE = re.compile(
    _NODIGIT_BEFORE + rf"(\d{{3}}{_SP}?\d{{3}}{_SP}?\d{{3}}{_SP}?\d{{5}})" + r"(?![\d])"
)
_SIREN_RE = re.compile(_NODIGIT_BEFORE + rf"(\d{{3}}{_SP}?\d{{3}}{_SP}?\d{{3}})" + rf"(?!{_SP}?\d)")
_IBAN_RE = re.compile(r"(?<![A-Za-z0-9])([A-Z]{2}\d{2}(?:[ \u00a0]?[A-Z0-9]){10,30})")
_NIR_RE = re.compile(
    _NODIGIT_BEFORE
    + rf"([12378]{_SP}?\d{{2}}{_SP}?\d{{2}}{_SP}?(?:\d{{2}}|2[AaBb]){_SP}?\d{{3}}{_SP}?\d{{3}}"
    + rf"(?:{_SP}?\d{{2}}))"
    + r"(?!\d)"
)
_EMAIL_RE = re.compile(r"(?<![\w.+-])([\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,})")
_PHONE_RE = re.compile(
    r"(?<![\d+])((?:\+33[ .\u00a0]?(?:\(0\)[ .\u00a0]?)?|0033[ .\u00a0]?|0)"
    r"[1-9](?:[ .\-\u00a0]?\d{2}){4})(?!\d)"
)


def _digits(s: str) -> str:
    return "".join(c for c in s if c.isdigit())


def find_siren(text: str) -> list[Candidate]:
    return [
        Candidate(m.start(1), m.end(1), v, siren_ok(v))
        for m in _SIREN_RE.finditer(text)
        for v in [_digits(m.group(1))]
    ]


def find_siret(text: str) -> list[Candidate]:
    return [
        Candidate(m.start(1), m.end(1), v, siret_ok(v))
        for m in _SIRET_RE.finditer(text)
        for v in [_digits(m.group(1))]
    ]


def find_iban(text: str) -> list[Candidate]:
    out: list[Candidate] = []
    for m in _IBAN_RE.finditer(text):
        raw = m.group(1)
        compact = raw.replace(" ", "").replace("\u00a0", "")
        length = IBAN_LENGTHS.get(compact[:2])
        if length is not None:
            if len(compact) < length:
                continue
            compact = compact[:length]
        # end of the verbatim span covering ``compact``'s characters
        n, end = 0, m.start(1)
        for i, ch in enumerate(raw):
            if ch not in " \u00a0":
                n += 1
            if n == len(compact):
                end = m.start(1) + i + 1
                break
        out.append(Candidate(m.start(1), end, compact, iban_ok(compact)))
    return out


def find_nir(text: str) -> list[Candidate]:
    out = []
    for m in _NIR_RE.finditer(text):
        v = re.sub(r"[ \u00a0\u202f]", "", m.group(1)).upper()
        out.append(Candidate(m.start(1), m.end(1), v, nir_ok(v)))
    return out


def find_email(text: str) -> list[Candidate]:
    return [
        Candidate(m.start(1), m.end(1), m.group(1).rstrip(".").lower())
        for m in _EMAIL_RE.finditer(text)
    ]


def find_phone(text: str) -> list[Candidate]:
    out = []
    for m in _PHONE_RE.finditer(text):
        d = _digits(m.group(1))
        if d.startswith("0033"):
            d = d[4:]
        elif d.startswith("330") and len(d) == 12:  # +33 (0)6...
            d = d[3:]
        elif d.startswith("33") and len(d) == 11:
            d = d[2:]
        d = d.lstrip("0")
        if len(d) != 9:
            continue
        out.append(Candidate(m.start(1), m.end(1), "+33" + d))
    return out


# -- amounts ----------------------------------------------------------------------------------

# One thousands separator per number (space, no-break spaces or dot): "1 234 567" but in a
# flattened table row "1\u00a0234\u00a0567 1\u00a0111\u00a0110" holds two numbers.
_NUM = (
    r"(?<![\d,.])(\d{1,3}(?P<sep>[ \u00a0\u202f.])\d{3}(?:(?P=sep)\d{3})*|\d+)"
    r"(?:,(\d{1,2})|\.(\d{1,2}))?(?![\d])"
)
_SCALE = r"(?:{sp}?(M|Md|k|K|millions?|milliards?|milliers?|mille){sp}?(?:d['’]{sp}?)?)?".format(
    sp=r"\s"
)
_CUR = r"(€|EUR\b|euros?\b|Euros?\b)"
_AMOUNT_CUR_RE = re.compile(_NUM + _SCALE + r"\s?" + _CUR)
_AMOUNT_PREFIX_RE = re.compile(r"(?:€|EUR)\s?" + _NUM)
_AMOUNT_BARE_RE = re.compile(_NUM)
_SCALES = {
    "m": 10**6, "million": 10**6, "millions": 10**6, "md": 10**9, "milliard": 10**9,
    "milliards": 10**9, "k": 10**3, "millier": 10**3, "milliers": 10**3, "mille": 10**3,
}  # fmt: skip


def parse_amount(text: str) -> Decimal | None:
    """A French amount (``1 234 567,89 €``, ``12.500 EUR``, ``1,2 M€``, ``45 000``) -> Decimal,
    or None when ``text`` holds no amount."""
    cands = find_amount(text, bare=True)
    if not cands:
        return None
    return Decimal(cands[0].value)


def _amount_value(
    int_part: str, dec_comma: str | None, dec_dot: str | None, scale: str | None
) -> str | None:
    whole = re.sub(r"[ \u00a0\u202f.]", "", int_part)
    dec = dec_comma or dec_dot or ""
    try:
        value = Decimal(f"{whole}.{dec}" if dec else whole)
    except InvalidOperation:
        return None
    if scale:
        value *= _SCALES.get(scale.lower(), 1)
    return f"{value.quantize(Decimal('0.01'))}"


def find_amount(text: str, *, bare: bool = False) -> list[Candidate]:
    """Amounts with a currency (``€``, ``EUR``, ``euros``); with ``bare`` also plain numbers
    (for a labelled table cell such as ``Total | 125 000``)."""
    out: list[Candidate] = []
    taken: list[tuple[int, int]] = []
    for m in _AMOUNT_CUR_RE.finditer(text):
        v = _amount_value(m.group(1), m.group(3), m.group(4), m.group(5))
        if v is not None:
            out.append(Candidate(m.start(), m.end(), v))
            taken.append((m.start(), m.end()))
    for m in _AMOUNT_PREFIX_RE.finditer(text):
        if any(a <= m.start() < b for a, b in taken):
            continue
        v = _amount_value(m.group(1), m.group(3), m.group(4), None)
        if v is not None:
            out.append(Candidate(m.start(), m.end(), v))
            taken.append((m.start(), m.end()))
    if bare:
        for m in _AMOUNT_BARE_RE.finditer(text):
            if any(a <= m.start() < b or a < m.end() <= b for a, b in taken):
                continue
            # not part of a date or an identifier
            before, after = text[max(0, m.start() - 1) : m.start()], text[m.end() : m.end() + 1]
            if (before in "/-" and before) or (after in "/-" and after):
                continue
            v = _amount_value(m.group(1), m.group(3), m.group(4), None)
            if v is not None:
                out.append(Candidate(m.start(), m.end(), v))
    out = [_signed(text, c) for c in out]
    out.sort(key=lambda c: c.start)
    return out


def _signed(text: str, c: Candidate) -> Candidate:
    """A minus sign right before the number (``-9 699,41 €``, ``− 12 €``) makes it negative."""
    i = c.start - 1
    if i >= 0 and text[i] == " ":
        i -= 1
    if i >= 0 and text[i] in "-−" and (i == 0 or not text[i - 1].isalnum()):
        if c.value.startswith("-") or Decimal(c.value) == 0:
            return c
        return Candidate(i, c.end, "-" + c.value, c.valid)
    return c


# -- dates ------------------------------------------------------------------------------------

MONTHS = {
    "janvier": 1, "janv": 1, "fevrier": 2, "fevr": 2, "fev": 2, "mars": 3, "avril": 4, "avr": 4,
    "mai": 5, "juin": 6, "juillet": 7, "juil": 7, "aout": 8, "septembre": 9, "sept": 9,
    "octobre": 10, "oct": 10, "novembre": 11, "nov": 11, "decembre": 12, "dec": 12,
}  # fmt: skip


def fold(text: str) -> str:
    """Lower-case, accents removed, same length as ``text`` (positions stay aligned)."""
    out = []
    for ch in text:
        base = unicodedata.normalize("NFKD", ch)
        c = base[0] if base else ch
        out.append(c.lower() if len(c.lower()) == 1 else c)
    return "".join(out)


_MONTH_ALT = "|".join(sorted(MONTHS, key=len, reverse=True))
_DATE_TEXT_RE = re.compile(rf"(?<![\w])(1er|[0-3]?\d)\s+({_MONTH_ALT})\.?(?:\s+(\d{{4}}))?(?![\w])")
_DATE_NUM_RE = re.compile(r"(?<![\d/.-])([0-3]?\d)([/.-])([01]?\d)\2(\d{4}|\d{2})(?![\d/])")
_DATE_ISO_RE = re.compile(r"(?<![\d-])(\d{4})-(\d{2})-(\d{2})(?![\d-])")


def _iso(day: int, month: int, year: int | None) -> str | None:
    import datetime as dt

    if year is None:
        if 1 <= month <= 12 and 1 <= day <= 31:
            try:
                dt.date(2000, month, day)  # leap year: 29 Feb allowed
            except ValueError:
                return None
            return f"--{month:02d}-{day:02d}"
        return None
    try:
        return dt.date(year, month, day).isoformat()
    except ValueError:
        return None


def find_date(text: str) -> list[Candidate]:
    folded = fold(text)
    out: list[Candidate] = []
    for m in _DATE_TEXT_RE.finditer(folded):
        day = 1 if m.group(1) == "1er" else int(m.group(1))
        year = int(m.group(3)) if m.group(3) else None
        v = _iso(day, MONTHS[m.group(2)], year)
        if v:
            out.append(Candidate(m.start(), m.end(), v))
    for m in _DATE_NUM_RE.finditer(text):
        y = int(m.group(4))
        if len(m.group(4)) == 2:
            y += 2000 if y < 70 else 1900
        v = _iso(int(m.group(1)), int(m.group(3)), y)
        if v:
            out.append(Candidate(m.start(), m.end(), v))
    for m in _DATE_ISO_RE.finditer(text):
        v = _iso(int(m.group(3)), int(m.group(2)), int(m.group(1)))
        if v:
            out.append(Candidate(m.start(), m.end(), v))
    out.sort(key=lambda c: c.start)
    return out


def parse_date(text: str) -> str | None:
    cands = find_date(text)
    return cands[0].value if cands else None


FINDERS: dict[str, Callable[[str], list[Candidate]]] = {
    "siren": find_siren,
    "siret": find_siret,
    "iban": find_iban,
    "nir": find_nir,
    "amount_eur": find_amount,
    "date": find_date,
    "email": find_email,
    "phone": find_phone,
}
