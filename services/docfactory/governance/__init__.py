"""Governance of uses (tracker issue 5): policy, audit trail, quotas and human review.

Standalone domain modules, meant to be called from the request path (auth interceptor and
servicers):

- :mod:`docfactory.governance.policy` -- the versioned policy file (tenants, API keys, use
  cases, classification levels, object classifications), validated at load and reloaded when
  it changes on disk; ``Policy.authorize`` decides whether a call may proceed.
- :mod:`docfactory.governance.audit` -- append-only, hash-chained audit log in SQL with
  ``verify`` and JSONL export.
- :mod:`docfactory.governance.quotas` -- requests / tokens per minute and per day, shared by
  every replica through SQL (or Redis).
- :mod:`docfactory.governance.reviews` -- answers held for human review.
"""
