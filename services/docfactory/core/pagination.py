"""AIP-158 page tokens: opaque, bound to the request's filters (a token from another query is
refused with INVALID_ARGUMENT / INVALID_PAGE_TOKEN)."""

from __future__ import annotations

import base64
import json

from docfactory.core.errors import InvalidArgument

#: Largest offset a token may carry: far beyond any real listing, and far below the 64-bit
#: limits of SQLite/PostgreSQL (a forged token with a huge offset is INVALID_ARGUMENT).
MAX_OFFSET = 10**9


def encode_page_token(offset: int, fingerprint: str) -> str:
    raw = json.dumps({"o": offset, "f": fingerprint}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def decode_page_token(token: str, fingerprint: str) -> int:
    """Offset of the next page; 0 for an empty token."""
    if not token:
        return 0
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        offset = data["o"]
        if not isinstance(offset, int) or isinstance(offset, bool):
            raise ValueError("offset is not an integer")
        if data["f"] != fingerprint or not 0 <= offset <= MAX_OFFSET:
            raise ValueError("token does not match the request")
        return offset
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise InvalidArgument(
            "invalid page_token (it must come from a previous response with the same filters)",
            reason="INVALID_PAGE_TOKEN",
        ) from exc


def encode_cursor(values: list[str], fingerprint: str) -> str:
    """A keyset page token: the sort key of the last row returned (stable under inserts:
    rows added meanwhile neither shift nor repeat the following pages)."""
    raw = json.dumps({"k": values, "f": fingerprint}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def decode_cursor(token: str, fingerprint: str, size: int) -> list[str] | None:
    """The sort key carried by ``token`` (``size`` strings); None for an empty token."""
    if not token:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        values = data["k"]
        if (
            data["f"] != fingerprint
            or not isinstance(values, list)
            or len(values) != size
            or not all(isinstance(v, str) and 0 < len(v) <= 256 for v in values)
        ):
            raise ValueError("token does not match the request")
        return values
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidArgument(
            "invalid page_token (it must come from a previous response with the same filters)",
            reason="INVALID_PAGE_TOKEN",
        ) from exc
