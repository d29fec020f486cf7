"""The one pagination helper of every List RPC (AIP-158): keyset page tokens.

A token carries the sort key of the last row returned, bound to the request's filters (a
fingerprint): rows inserted between two pages neither shift nor repeat the following pages
(offsets would, on newest-first lists). A token from another query, or a forged one, is
refused with INVALID_ARGUMENT / INVALID_PAGE_TOKEN; a negative page size with
INVALID_ARGUMENT / INVALID_PAGE_SIZE.

A forged token may carry any string: whatever ``parse`` raises on it (OverflowError included)
is INVALID_PAGE_TOKEN, and the typed key it returns is checked before it reaches a query --
every integer fits a signed 64-bit column, every float is finite -- so no List RPC needs its
own range checks.

Usage, in a service::

    req = page_request(page_size, page_token, fingerprint=f"jobs:{state}",
                       parse=lambda k: (float(k[0]), k[1]))
    rows = repo.list(..., after=req.after, limit=req.size + 1)   # one row more than a page
    page, token = next_page(rows, req, key=lambda r: [repr(r.created_at), r.job_id])
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from docfactory.core.errors import InvalidArgument

K = TypeVar("K")
T = TypeVar("T")

#: Longest value a token may carry (a sort key: a timestamp, an id, a source URI).
MAX_KEY_CHARS = 4096
#: The range of a sort key's integers: a signed 64-bit column (SQLite INTEGER, SQL BIGINT).
MIN_INT64 = -(2**63)
MAX_INT64 = 2**63 - 1


def _invalid() -> InvalidArgument:
    return InvalidArgument(
        "invalid page_token (it must come from a previous response with the same filters)",
        reason="INVALID_PAGE_TOKEN",
    )


def encode_cursor(values: Sequence[str], fingerprint: str) -> str:
    """A keyset page token: the sort key of the last row returned."""
    raw = json.dumps({"k": list(values), "f": fingerprint}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def decode_cursor(token: str, fingerprint: str) -> list[str] | None:
    """The sort key carried by ``token``; None for an empty token."""
    if not token:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        values = data["k"]
        if (
            data["f"] != fingerprint
            or not isinstance(values, list)
            or not values
            or not all(isinstance(v, str) and 0 < len(v) <= MAX_KEY_CHARS for v in values)
        ):
            raise ValueError("token does not match the request")
        return values
    except (ValueError, KeyError, TypeError, binascii.Error, RecursionError) as exc:
        # RecursionError: JSON nested deeper than the interpreter's limit ("[[[[...").
        raise _invalid() from exc


def _check_key(value: object) -> None:
    """ValueError unless every integer of a parsed sort key fits 64 bits and every float is
    finite (tuples and lists are checked item by item)."""
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        if not MIN_INT64 <= value <= MAX_INT64:
            raise ValueError("page token integer out of range")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("page token number is not finite")
    elif isinstance(value, tuple | list):
        for item in value:
            _check_key(item)


def page_size(value: int, *, default: int = 50, maximum: int = 1000) -> int:
    """The effective page size: ``default`` for 0, at most ``maximum``."""
    if value < 0:
        raise InvalidArgument("page_size must be >= 0", reason="INVALID_PAGE_SIZE")
    return min(value or default, maximum)


@dataclass(frozen=True)
class PageRequest(Generic[K]):
    """A decoded list request: page size, the sort key to continue after (None: first page),
    and the fingerprint of the filters its token is bound to."""

    size: int
    after: K | None
    fingerprint: str


def page_request(
    size: int,
    token: str,
    *,
    fingerprint: str,
    parse: Callable[[list[str]], K],
    default: int = 50,
    maximum: int = 1000,
) -> PageRequest[K]:
    """Validate ``page_size`` / ``page_token``; ``parse`` turns the token's strings into the
    typed sort key (any ValueError/IndexError/TypeError/ArithmeticError, OverflowError
    included -> INVALID_PAGE_TOKEN), whose integers must fit 64 bits and floats be finite."""
    n = page_size(size, default=default, maximum=maximum)
    values = decode_cursor(token, fingerprint)
    if values is None:
        return PageRequest(n, None, fingerprint)
    try:
        after = parse(values)
        _check_key(after)
    except (ValueError, IndexError, TypeError, ArithmeticError) as exc:
        raise _invalid() from exc
    return PageRequest(n, after, fingerprint)


def next_page(
    rows: Sequence[T], req: PageRequest[K], key: Callable[[T], Sequence[str]]
) -> tuple[list[T], str]:
    """The page (``rows`` was fetched with ``limit=req.size + 1``) and the next page's token
    ("" on the last page); ``key`` gives a row's sort key as strings."""
    page = list(rows[: req.size])
    if len(rows) <= req.size or not page:
        return page, ""
    return page, encode_cursor(key(page[-1]), req.fingerprint)
