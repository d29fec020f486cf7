"""The pagination helper: keyset tokens bound to their filters, validated sizes."""

from __future__ import annotations

import pytest

from docfactory.core.errors import InvalidArgument
from docfactory.core.pagination import encode_cursor, next_page, page_request


def _parse(k: list[str]) -> tuple[float, str]:
    return float(k[0]), k[1]


def test_a_token_carries_the_last_key_and_its_filters() -> None:
    rows = [(3.0, "c"), (2.0, "b"), (1.0, "a")]
    req = page_request(2, "", fingerprint="jobs:RUNNING", parse=_parse)
    assert (req.size, req.after) == (2, None)
    page, token = next_page(rows, req, lambda r: [repr(r[0]), r[1]])
    assert page == rows[:2] and token
    nxt = page_request(2, token, fingerprint="jobs:RUNNING", parse=_parse)
    assert nxt.after == (2.0, "b")
    # The last page (no extra row fetched) has no token.
    assert next_page(rows[2:], nxt, lambda r: [repr(r[0]), r[1]]) == ([rows[2]], "")
    assert next_page([], nxt, lambda r: [repr(r[0]), r[1]]) == ([], "")


@pytest.mark.parametrize(
    "token",
    [
        "%%%",
        "bm90IGpzb24=",  # base64 of "not json"
        encode_cursor(["1.0", "a"], "jobs:FAILED"),  # another filter
        encode_cursor(["not-a-float", "a"], "jobs:RUNNING"),  # fails to parse
        encode_cursor(["1.0"], "jobs:RUNNING"),  # too short for the key
        encode_cursor([], "jobs:RUNNING"),
        encode_cursor(["x" * 5000, "a"], "jobs:RUNNING"),
    ],
)
def test_foreign_or_forged_tokens_are_refused(token: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        page_request(2, token, fingerprint="jobs:RUNNING", parse=_parse)
    assert err.value.reason == "INVALID_PAGE_TOKEN"


def test_page_sizes() -> None:
    assert page_request(0, "", fingerprint="", parse=_parse, default=50).size == 50
    assert page_request(10**6, "", fingerprint="", parse=_parse, maximum=1000).size == 1000
    with pytest.raises(InvalidArgument) as err:
        page_request(-1, "", fingerprint="", parse=_parse)
    assert err.value.reason == "INVALID_PAGE_SIZE"
