"""The governance policy: a versioned YAML file, reviewed like code, validated at load.

```yaml
version: 7                          # required; recorded in audit records
default_classification: INTERNAL    # objects matched by no rule below (default INTERNAL)
ingestion_requires_role: true       # optional (default false): writes need the ingester role
tenants:
  - id: caisse-nord
    name: Caisse régionale Nord
    sources:                        # what its bulk jobs (IngestPrefix) may read; none = nothing
      - {bucket: rh, prefix: caisse-nord/}
api_keys:                           # several active keys per app = rotation
  - id: app-credit-2025             # key id (audit, metrics) -- never the key itself
    app: app-credit                 # optional; groups the keys of one application
    tenant: caisse-nord
    sha256: 5e88...                 # hex SHA-256 of the key (docfactory.core.auth.hash_key)
    expires: 2026-06-30             # optional (date or ISO datetime, UTC)
    mtls_subject: "CN=app-credit,O=Caisse Nord"   # optional: the client certificate must match
    roles: [reviewer]               # optional: reviewer, admin, auditor, ingester, worker
use_cases:
  - id: credit-faq
    tenants: [caisse-nord]          # or `tenant: caisse-nord`
    owner: direction-credit@caisse-nord.fr
    purpose: Questions des conseillers sur les procédures de crédit
    allowed_collections: [credit, rh]   # or "*"
    max_classification: CONFIDENTIAL
    allowed_models: [mistral-small-3.2]  # or "*"
    allowed_keys: "*"               # optional (default "*": every key of an allowed tenant)
    human_review: required          # required | optional
    retention: 30d                  # question text kept: none | <n>h | <n>d | <n>w | <n>y
    flows: [financement]            # optional: dossier workflows it may run ("*" = all)
    quotas: {requests_per_minute: 60, requests_per_day: 5000, tokens_per_day: 2000000}
    pii: mask_in_answers            # optional: allow (default) | mask_in_answers | redact_at_ingest
object_classifications:             # MinIO bucket/prefix defaults, longest prefix wins
  - {bucket: rh, prefix: "", classification: INTERNAL}
  - {bucket: rh, prefix: dossiers-salaries/, classification: RESTRICTED}
```

Every problem is reported with the path of the offending field, e.g.
``use_cases[2].max_classification: unknown level 'SECRET'``, in one :class:`PolicyError` (all
the problems of the fields; the cross-references -- unknown tenant or key, duplicate ids -- once
the fields are valid). Unknown fields are errors (a typo must not silently disable a control).

The package:

- :mod:`.model` -- the file's pydantic models (:class:`PolicyDocument`) and loading;
- :mod:`.errors` -- :class:`PolicyError`, pydantic locations turned into field paths;
- :mod:`.access` -- :class:`Policy`, the policy in force: lookups and :meth:`Policy.authorize`;
- :mod:`.auth` -- API key authentication (hash, expiry, client certificate subject);
- :mod:`.reload` -- :class:`PolicyStore`, the file reloaded when it changes (last good kept).
"""

from docfactory.governance.policy.access import Decision, Policy, level_rank
from docfactory.governance.policy.auth import authenticate
from docfactory.governance.policy.errors import PolicyError
from docfactory.governance.policy.model import (
    ANY,
    KNOWN_ROLES,
    LEVEL_NAMES,
    LEVELS,
    PII_MODES,
    ApiKey,
    ObjectRule,
    PolicyDocument,
    QuotaLimits,
    Retention,
    Source,
    Tenant,
    UseCase,
    parse_policy,
    read_policy,
    validate_policy,
)
from docfactory.governance.policy.reload import PolicyStore

__all__ = [
    "ANY",
    "KNOWN_ROLES",
    "LEVELS",
    "LEVEL_NAMES",
    "PII_MODES",
    "ApiKey",
    "Decision",
    "ObjectRule",
    "Policy",
    "PolicyDocument",
    "PolicyError",
    "PolicyStore",
    "QuotaLimits",
    "Retention",
    "Source",
    "Tenant",
    "UseCase",
    "authenticate",
    "level_rank",
    "parse_policy",
    "read_policy",
    "validate_policy",
]
