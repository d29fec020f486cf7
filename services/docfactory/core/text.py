"""One normalisation of query text, used wherever a query is compared or keyed: Unicode NFC,
the non-breaking spaces of French typography (U+00A0, U+202F before ? ! : ;) and other
whitespace collapsed to one space, ends trimmed."""

from __future__ import annotations

import re
import unicodedata

_SPACES = re.compile(r"\s+")


def normalize_query(text: str) -> str:
    text = unicodedata.normalize("NFC", text).replace("\u202f", " ").replace("\u00a0", " ")
    return _SPACES.sub(" ", text).strip()
