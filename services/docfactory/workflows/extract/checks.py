"""Rule checks over the fields extracted from a dossier's documents.

For the workflow engine: call ``run_checks(rules, fields_by_doc, as_of=date)`` after extraction.

- ``rules``: a sequence of mappings (or pydantic models / objects with the same attributes),
  each with ``kind`` and an optional ``name`` (defaults to the kind and its fields), plus:

  ==================  ==========================================================================
  kind                parameters
  ==================  ==========================================================================
  required_documents  ``documents``: document type names that must be present
  same_value          ``fields``: ["doctype.field", ...] that must hold the same value
  sum_equals          ``total``: "doctype.field", ``parts`` (or ``terms``): [...],
                      ``tolerance`` (default 0.01)
  max_amount          ``field``, ``max`` (or ``ceiling``; euros, inclusive)
  not_expired         ``field`` (a date); ``max_age_days`` (the date is an issue date no older
                      than that) or none / ``not_past: true`` (an expiry date not yet passed)
  required_fields     ``fields``: ["doctype.field", ...] that must be FOUND
  valid_checksum      ``field``; ``check`` in siren, siret, iban, nir (default: guessed from
                      the field name)
  ==================  ==========================================================================

  The rule models of ``docfactory.workflows.flows`` (``id``, ``terms``, ``ceiling``,
  ``not_past``) are accepted as they are: ``id`` names the result.

- ``fields_by_doc``: document type name -> the ExtractedFields of that document (one document
  per type; merge several beforehand).

A rule whose fields were not extracted (document absent or field MISSING/UNSUPPORTED) is
``NOT_EVALUATED`` and names what is missing: the reviewer sees it, nothing is assumed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from docfactory.core.errors import InvalidArgument
from docfactory.workflows.extract.french import iban_ok, nir_ok, siren_ok, siret_ok
from docfactory.workflows.extract.model import FOUND, ExtractedField

PASS = "PASS"
FAIL = "FAIL"
NOT_EVALUATED = "NOT_EVALUATED"

RULE_KINDS = (
    "required_documents",
    "same_value",
    "sum_equals",
    "max_amount",
    "not_expired",
    "valid_checksum",
    "required_fields",
)
_CHECKSUMS = {"siren": siren_ok, "siret": siret_ok, "iban": iban_ok, "nir": nir_ok}


@dataclass(frozen=True)
class CheckResult:
    rule: str
    kind: str
    outcome: str  # PASS | FAIL | NOT_EVALUATED
    message: str
    fields: tuple[str, ...] = ()  # "doctype.field" involved
    values: Mapping[str, str | None] = field(default_factory=dict)


def _get(rule: Any, key: str, default: Any = None) -> Any:
    if isinstance(rule, Mapping):
        return rule.get(key, default)
    value = getattr(rule, key, default)
    return default if value is None else value


class _Fields:
    def __init__(self, fields_by_doc: Mapping[str, Sequence[ExtractedField]]) -> None:
        self.docs = {k: {f.name: f for f in v} for k, v in fields_by_doc.items()}

    def value(self, ref: str) -> str | None:
        doc, _, name = ref.partition(".")
        f = self.docs.get(doc, {}).get(name)
        return f.value if f is not None and f.status == FOUND else None


def _ref_list(rule: Any, key: str) -> list[str]:
    refs = _get(rule, key) or []
    if isinstance(refs, str) or not all(isinstance(r, str) and "." in r for r in refs):
        raise InvalidArgument(
            f"rule {_get(rule, 'kind')}: {key} must be a list of 'doctype.field'",
            reason="INVALID_RULE",
        )
    return list(refs)


def _ref(rule: Any, key: str) -> str:
    ref = _get(rule, key)
    if not isinstance(ref, str) or "." not in ref:
        raise InvalidArgument(
            f"rule {_get(rule, 'kind')}: {key} must be 'doctype.field'", reason="INVALID_RULE"
        )
    return ref


def _dec(v: str | None) -> Decimal | None:
    if v is None:
        return None
    try:
        return Decimal(v)
    except InvalidOperation:
        return None


def run_checks(
    rules: Sequence[Any],
    fields_by_doc: Mapping[str, Sequence[ExtractedField]],
    *,
    as_of: dt.date | None = None,
) -> list[CheckResult]:
    """One CheckResult per rule, in order (see the module docstring)."""
    today = as_of or dt.date.today()
    f = _Fields(fields_by_doc)
    out = []
    for rule in rules:
        kind = str(_get(rule, "kind", ""))
        if kind not in RULE_KINDS:
            raise InvalidArgument(
                f"unknown rule kind {kind!r} (expected one of {', '.join(RULE_KINDS)})",
                reason="INVALID_RULE",
            )
        out.append(_CHECKERS[kind](rule, f, today))
    return out


def _name(rule: Any, default: str) -> str:
    return str(_get(rule, "name") or _get(rule, "id") or default)


def _missing(rule: Any, kind: str, name: str, refs: list[str], f: _Fields) -> CheckResult:
    absent = [r for r in refs if f.value(r) is None]
    return CheckResult(
        name,
        kind,
        NOT_EVALUATED,
        "not extracted: " + ", ".join(absent),
        tuple(refs),
        {r: f.value(r) for r in refs},
    )


def _required_documents(rule: Any, f: _Fields, today: dt.date) -> CheckResult:
    docs = [str(d) for d in _get(rule, "documents") or []]
    absent = [d for d in docs if d not in f.docs]
    name = _name(rule, "required_documents")
    if absent:
        return CheckResult(
            name, "required_documents", FAIL, "missing documents: " + ", ".join(absent)
        )
    return CheckResult(name, "required_documents", PASS, "all required documents present")


def _same_value(rule: Any, f: _Fields, today: dt.date) -> CheckResult:
    refs = _ref_list(rule, "fields")
    name = _name(rule, "same_value(" + ", ".join(refs) + ")")
    values = {r: f.value(r) for r in refs}
    present = {r: v for r, v in values.items() if v is not None}
    if len(present) < 2:
        return _missing(rule, "same_value", name, refs, f)
    distinct = {v for v in present.values()}
    if len(distinct) > 1:
        detail = ", ".join(f"{r}={v}" for r, v in present.items())
        return CheckResult(
            name, "same_value", FAIL, "values differ: " + detail, tuple(refs), values
        )
    return CheckResult(name, "same_value", PASS, "same value", tuple(refs), values)


def _sum_equals(rule: Any, f: _Fields, today: dt.date) -> CheckResult:
    """Total and at least one term found: the found terms must add up to the total (terms not
    found count as absent lines of the table and are named in the message)."""
    total_ref = _ref(rule, "total")
    parts = _ref_list(rule, "parts" if _get(rule, "parts") else "terms")
    refs = [total_ref, *parts]
    name = _name(rule, f"sum_equals({total_ref})")
    values = {r: f.value(r) for r in refs}
    nums = {r: _dec(v) for r, v in values.items()}
    present = [p for p in parts if nums[p] is not None]
    if nums[total_ref] is None or not present:
        return _missing(rule, "sum_equals", name, refs, f)
    absent = [p for p in parts if nums[p] is None]
    note = f" (not found: {', '.join(absent)})" if absent else ""
    tol = Decimal(str(_get(rule, "tolerance", "0.01")))
    total = nums[total_ref] or Decimal(0)
    parts_sum = sum((nums[p] or Decimal(0) for p in present), Decimal(0))
    if abs(total - parts_sum) > tol:
        msg = f"{total_ref}={total} but the terms sum to {parts_sum}{note}"
        return CheckResult(name, "sum_equals", FAIL, msg, tuple(refs), values)
    return CheckResult(name, "sum_equals", PASS, f"sum {parts_sum}{note}", tuple(refs), values)


def _max_amount(rule: Any, f: _Fields, today: dt.date) -> CheckResult:
    ref = _ref(rule, "field")
    raw_max = _get(rule, "max")
    ceiling = _dec(str(raw_max if raw_max is not None else _get(rule, "ceiling")))
    if ceiling is None:
        raise InvalidArgument("rule max_amount: max must be a number", reason="INVALID_RULE")
    name = _name(rule, f"max_amount({ref})")
    value = _dec(f.value(ref))
    if value is None:
        return _missing(rule, "max_amount", name, [ref], f)
    vals = {ref: f.value(ref)}
    if value > ceiling:
        return CheckResult(
            name, "max_amount", FAIL, f"{ref}={value} exceeds {ceiling}", (ref,), vals
        )
    return CheckResult(name, "max_amount", PASS, f"{value} <= {ceiling}", (ref,), vals)


def _not_expired(rule: Any, f: _Fields, today: dt.date) -> CheckResult:
    ref = _ref(rule, "field")
    name = _name(rule, f"not_expired({ref})")
    raw = f.value(ref)
    try:
        date = dt.date.fromisoformat(raw) if raw else None
    except ValueError:
        date = None
    if date is None:
        return _missing(rule, "not_expired", name, [ref], f)
    vals = {ref: raw}
    max_age = _get(rule, "max_age_days")
    if max_age is not None:
        age = (today - date).days
        if age > int(max_age):
            msg = f"{ref}={date} is {age} days old (limit {int(max_age)})"
            return CheckResult(name, "not_expired", FAIL, msg, (ref,), vals)
        return CheckResult(name, "not_expired", PASS, f"{age} days old", (ref,), vals)
    if date < today:
        return CheckResult(name, "not_expired", FAIL, f"{ref} expired on {date}", (ref,), vals)
    return CheckResult(name, "not_expired", PASS, f"valid until {date}", (ref,), vals)


def _valid_checksum(rule: Any, f: _Fields, today: dt.date) -> CheckResult:
    ref = _ref(rule, "field")
    check = _get(rule, "check")
    if check is None:
        field_name = ref.partition(".")[2].lower()
        check = next((k for k in ("siret", "siren", "iban", "nir") if k in field_name), None)
    if check not in _CHECKSUMS:
        raise InvalidArgument(
            f"rule valid_checksum({ref}): check must be one of siren, siret, iban, nir",
            reason="INVALID_RULE",
        )
    name = _name(rule, f"valid_checksum({ref})")
    value = f.value(ref)
    if value is None:
        return _missing(rule, "valid_checksum", name, [ref], f)
    vals = {ref: value}
    if not _CHECKSUMS[str(check)](value):
        msg = f"{ref}={value}: {str(check).upper()} check digits do not hold"
        return CheckResult(name, "valid_checksum", FAIL, msg, (ref,), vals)
    return CheckResult(name, "valid_checksum", PASS, "check digits hold", (ref,), vals)


def _required_fields(rule: Any, f: _Fields, today: dt.date) -> CheckResult:
    refs = _ref_list(rule, "fields")
    name = _name(rule, "required_fields(" + ", ".join(refs) + ")")
    values = {r: f.value(r) for r in refs}
    absent = [r for r, v in values.items() if v is None]
    if absent:
        msg = "not found: " + ", ".join(absent)
        return CheckResult(name, "required_fields", FAIL, msg, tuple(refs), values)
    return CheckResult(name, "required_fields", PASS, "all found", tuple(refs), values)


_CHECKERS = {
    "required_fields": _required_fields,
    "required_documents": _required_documents,
    "same_value": _same_value,
    "sum_equals": _sum_equals,
    "max_amount": _max_amount,
    "not_expired": _not_expired,
    "valid_checksum": _valid_checksum,
}
