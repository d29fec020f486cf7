"""Authentication against the policy's API keys: hash lookup, expiry, client certificate."""

from __future__ import annotations

import datetime as dt
import hmac
from collections.abc import Mapping

from docfactory.core.auth import hash_key
from docfactory.core.errors import Unauthenticated
from docfactory.core.tls import subjects_equal
from docfactory.governance.policy.model import ApiKey


def authenticate(
    keys_by_hash: Mapping[str, ApiKey],
    api_key: str | None,
    *,
    mtls_subject: str | None = None,
    now: dt.datetime | None = None,
) -> ApiKey:
    """The policy entry of ``api_key`` (looked up by its SHA-256), checked for expiry and, when
    the entry names one, for the subject of the verified client certificate."""
    if not api_key:
        raise Unauthenticated("missing API key", reason="API_KEY_MISSING")
    digest = hash_key(api_key)
    entry = keys_by_hash.get(digest)
    if entry is None or not hmac.compare_digest(entry.sha256, digest):
        raise Unauthenticated("unknown API key", reason="API_KEY_INVALID")
    moment = now or dt.datetime.now(dt.UTC)
    if not entry.active(moment):
        assert entry.expires is not None
        raise Unauthenticated(
            f"API key {entry.id!r} expired on {entry.expires.isoformat()}",
            reason="API_KEY_EXPIRED",
            metadata={"key_id": entry.id},
        )
    if entry.mtls_subject is not None and not subjects_equal(mtls_subject, entry.mtls_subject):
        raise Unauthenticated(
            f"API key {entry.id!r} must be presented with its client certificate "
            f"({entry.mtls_subject!r}); "
            + (f"the peer presented {mtls_subject!r}" if mtls_subject else "none presented"),
            reason="MTLS_SUBJECT_MISMATCH",
            metadata={"key_id": entry.id},
        )
    return entry
