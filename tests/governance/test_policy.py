"""Policy file: validation with field paths, reload with keep-last-good, authorization."""

from __future__ import annotations

import copy
import datetime as dt
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from docfactory.core.auth import hash_key
from docfactory.core.errors import (
    ConfigError,
    InvalidArgument,
    PermissionDenied,
    Unauthenticated,
)
from docfactory.governance.policy import (
    LEVELS,
    Policy,
    PolicyError,
    PolicyStore,
    QuotaLimits,
    level_rank,
)

KEY_CREDIT = "df_credit_2025"
KEY_CREDIT_NEXT = "df_credit_2026"
KEY_REVIEWER = "df_reviewer"
KEY_SUD = "df_sud"


def base_policy() -> dict[str, Any]:
    return {
        "version": 3,
        "tenants": [
            {"id": "caisse-nord", "name": "Caisse Nord", "quotas": {"requests_per_day": 1000}},
            {"id": "caisse-sud", "name": "Caisse Sud"},
        ],
        "api_keys": [
            {
                "id": "app-credit-2025",
                "app": "app-credit",
                "tenant": "caisse-nord",
                "sha256": hash_key(KEY_CREDIT),
                "expires": "2020-01-01",
            },
            {
                "id": "app-credit-2026",
                "app": "app-credit",
                "tenant": "caisse-nord",
                "sha256": hash_key(KEY_CREDIT_NEXT),
                "expires": "2099-01-01",
                "mtls_subject": "CN=app-credit,O=Caisse Nord",
            },
            {
                "id": "reviewer-nord",
                "tenant": "caisse-nord",
                "sha256": hash_key(KEY_REVIEWER),
                "roles": ["reviewer", "admin"],
            },
            {"id": "app-sud", "tenant": "caisse-sud", "sha256": hash_key(KEY_SUD)},
        ],
        "use_cases": [
            {
                "id": "credit-faq",
                "tenants": ["caisse-nord"],
                "owner": "direction-credit@nord.example",
                "purpose": "procédures de crédit",
                "allowed_collections": ["credit", "rh"],
                "max_classification": "CONFIDENTIAL",
                "allowed_models": ["mistral-small"],
                "human_review": "required",
                "retention": "30d",
                "quotas": {"requests_per_minute": 60, "tokens_per_day": 100000},
            },
            {
                "id": "public-faq",
                "tenant": "caisse-sud",
                "owner": "com@sud.example",
                "purpose": "questions publiques",
                "allowed_collections": "*",
                "max_classification": "PUBLIC",
                "allowed_models": "*",
                "human_review": "optional",
                "retention": "none",
            },
            {
                "id": "shared",
                "tenants": ["caisse-nord", "caisse-sud"],
                "owner": "dsi@groupe.example",
                "purpose": "assistant commun",
                "allowed_collections": ["commun"],
                "max_classification": "INTERNAL",
                "allowed_models": ["mistral-small", "mistral-large"],
                "allowed_keys": ["app-sud", "reviewer-nord"],
                "human_review": "optional",
                "retention": "1y",
            },
        ],
        "object_classifications": [
            {"bucket": "rh", "prefix": "", "classification": "INTERNAL"},
            {"bucket": "rh", "prefix": "dossiers/", "classification": "CONFIDENTIAL"},
            {"bucket": "rh", "prefix": "dossiers/medical/", "classification": "RESTRICTED"},
            {"bucket": "site", "classification": "PUBLIC"},
        ],
    }


def load(raw: dict[str, Any]) -> Policy:
    return Policy.from_mapping(raw, "policy.yaml")


def problems_of(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(PolicyError) as info:
        load(raw)
    return info.value.problems


# -- loading and validation ----------------------------------------------------------------


def test_valid_policy_loads_from_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(base_policy(), allow_unicode=True), encoding="utf-8")
    policy = Policy.load(path)
    assert policy.version == "3"
    assert set(policy.tenants) == {"caisse-nord", "caisse-sud"}
    uc = policy.use_cases["credit-faq"]
    assert uc.max_classification == LEVELS["CONFIDENTIAL"] == 3
    assert uc.allowed_collections == frozenset({"credit", "rh"})
    assert uc.human_review is True
    assert uc.retention.duration == dt.timedelta(days=30)
    assert uc.quotas == QuotaLimits(requests_per_minute=60, tokens_per_day=100000)
    public = policy.use_cases["public-faq"]
    assert public.allowed_collections is None and public.allowed_models is None
    assert public.retention.duration is None and not public.retention.keeps_question
    assert policy.use_cases["shared"].retention.duration == dt.timedelta(days=365)
    assert policy.api_keys["reviewer-nord"].roles == {"reviewer", "admin"}
    assert [LEVELS[n] for n in ("PUBLIC", "INTERNAL", "CONFIDENTIAL", "RESTRICTED")] == [1, 2, 3, 4]


def mutate(path: list[Any], value: Any) -> dict[str, Any]:
    raw = copy.deepcopy(base_policy())
    node: Any = raw
    for step in path[:-1]:
        node = node[step]
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return raw


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (
            ["use_cases", 2, "max_classification"],
            "SECRET",
            "use_cases[2].max_classification: unknown level 'SECRET'",
        ),
        (["version"], _DELETE, "version: required"),
        (["version"], [1], "version: must be an integer or a string"),
        (["tenants", 1, "id"], "caisse-nord", "tenants[1].id: duplicate tenant 'caisse-nord'"),
        (
            ["api_keys", 0, "tenant"],
            "caisse-est",
            "api_keys[0].tenant: unknown tenant 'caisse-est'",
        ),
        (["api_keys", 1, "sha256"], "abc", "api_keys[1].sha256: must be 64 hex characters"),
        (["api_keys", 1, "expires"], "demain", "api_keys[1].expires: invalid date 'demain'"),
        (["api_keys", 2, "roles"], ["reviewer", "boss"], "api_keys[2].roles: unknown role 'boss'"),
        (["api_keys", 3, "sha256"], hash_key(KEY_CREDIT), "api_keys[3].sha256: same key hash"),
        (["use_cases", 0, "tenants"], ["caisse-est"], "use_cases[0].tenants: unknown tenant"),
        (["use_cases", 0, "human_review"], "sometimes", "use_cases[0].human_review: must be"),
        (["use_cases", 0, "retention"], "30 days", "use_cases[0].retention: invalid retention"),
        (["use_cases", 0, "retention"], "0d", "use_cases[0].retention: invalid retention"),
        (["use_cases", 1, "allowed_collections"], "all", "use_cases[1].allowed_collections: must"),
        (["use_cases", 0, "allowed_models"], ["*", "x"], "use_cases[0].allowed_models[0]:"),
        (["use_cases", 0, "quotas", "requests_per_minute"], -5, "use_cases[0].quotas."),
        (["use_cases", 0, "quotas", "per_hour"], 5, "use_cases[0].quotas.per_hour: unknown field"),
        (["use_cases", 0, "max_clasification"], "PUBLIC", "use_cases[0].max_clasification: unkn"),
        (["use_cases", 0, "owner"], _DELETE, "use_cases[0].owner: required"),
        (["use_cases", 2, "allowed_keys"], ["nobody"], "use_cases[2].allowed_keys: unknown key"),
        (["use_cases", 1, "tenants"], ["caisse-sud"], "use_cases[1].tenants: give exactly one"),
        (["use_cases", 1, "id"], "credit-faq", "use_cases[1].id: duplicate use case"),
        (
            ["object_classifications", 0, "classification"],
            "TOP",
            "object_classifications[0].classification: unknown level 'TOP'",
        ),
        (["object_classifications", 3], "site", "object_classifications[3]: must be a mapping"),
        (["tenants"], {"id": "x"}, "tenants: must be a list"),
        (["default_classification"], "HIGH", "default_classification: unknown level 'HIGH'"),
        (["ingestion_requires_role"], "yes", "ingestion_requires_role: must be true or false"),
        (["api_keys", 1, "mtls_subject"], 7, "api_keys[1].mtls_subject: must be a string, got int"),
        (["tenants", 0, "sources"], [{"prefix": "x/"}], "tenants[0].sources[0].bucket: required"),
        (["api_keys", 2, "roles"], ["admin", "admin"], "api_keys[2].roles: duplicate entries"),
        (["use_cases", 1, "tenant"], 5, "use_cases[1].tenant: must be a string, got int 5"),
        (["use_cases", 0, "tenants"], [], "use_cases[0].tenants: must not be empty"),
        (["use_cases", 0, "allowed_collections"], ["rh", 3], "use_cases[0].allowed_collections[1]"),
        (["classifications"], ["LOW", "HIGH"], "classifications: must be exactly"),
        (["object_classifications", 1, "prefix"], "", "object_classifications[1]: duplicate rule"),
    ],
)
def test_validation_errors_name_the_field(path: list[Any], value: Any, expected: str) -> None:
    problems = problems_of(mutate(path, value))
    assert any(p.startswith(expected) for p in problems), problems


def test_all_problems_are_reported_at_once_in_a_config_error() -> None:
    raw = mutate(["use_cases", 2, "max_classification"], "SECRET")
    raw["use_cases"][0]["retention"] = "forever"
    with pytest.raises(ConfigError) as info:
        load(raw)
    err = info.value
    assert isinstance(err, PolicyError) and err.reason == "INVALID_POLICY"
    assert len(err.problems) == 2
    assert "use_cases[2].max_classification: unknown level 'SECRET'" in err.message
    assert "use_cases[0].retention" in err.message
    assert err.metadata["file"] == "policy.yaml"


def test_cross_reference_problems_are_reported_together() -> None:
    raw = base_policy()
    raw["use_cases"][2]["allowed_keys"] = ["nobody", "app-sud"]
    raw["api_keys"][0]["tenant"] = "caisse-est"
    raw["use_cases"][1]["tenant"] = "caisse-ouest"
    assert problems_of(raw) == [
        "api_keys[0].tenant: unknown tenant 'caisse-est'",
        "use_cases[1].tenant: unknown tenant 'caisse-ouest'",
        "use_cases[2].allowed_keys: unknown key id 'nobody'",
    ]


def test_invalid_yaml_and_non_mapping(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: [1\n", encoding="utf-8")
    with pytest.raises(PolicyError, match="invalid YAML"):
        Policy.load(bad)
    with pytest.raises(PolicyError, match="<root>: must be a mapping"):
        Policy.from_yaml("- 1\n- 2\n")
    with pytest.raises(PolicyError, match="not readable"):
        Policy.load(tmp_path / "absent.yaml")


# -- reload -------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def write(path: Path, raw: dict[str, Any], mtime: float) -> None:
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    os.utime(path, (mtime, mtime))


def test_store_reloads_on_change_and_keeps_last_good(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    write(path, base_policy(), 1_700_000_000)
    errors: list[PolicyError] = []
    clock = Clock()
    store = PolicyStore(path, check_interval_s=1.0, clock=clock, on_error=errors.append)
    assert store.current().version == "3"

    v4 = base_policy()
    v4["version"] = 4
    v4["use_cases"][0]["max_classification"] = "RESTRICTED"
    write(path, v4, 1_700_000_100)
    assert store.current().version == "3"  # not checked before the interval
    clock.now += 1.5
    assert store.current().version == "4"
    assert store.current().use_cases["credit-faq"].max_classification == 4
    assert store.last_error is None

    broken = base_policy()
    broken["version"] = 5
    broken["use_cases"][2]["max_classification"] = "SECRET"
    write(path, broken, 1_700_000_200)
    clock.now += 1.5
    policy = store.current()
    assert policy.version == "4"  # last good policy stays in force
    assert store.last_error is not None
    assert "use_cases[2].max_classification: unknown level 'SECRET'" in store.last_error.message
    clock.now += 1.5
    store.current()
    assert len(errors) == 1  # reported once per faulty version of the file

    fixed = base_policy()
    fixed["version"] = 6
    write(path, fixed, 1_700_000_300)
    assert store.reload() is True
    assert store.current().version == "6" and store.last_error is None

    path.unlink()
    clock.now += 1.5
    assert store.current().version == "6"
    assert store.last_error is not None and "not readable" in store.last_error.message


def test_store_first_load_must_succeed(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    write(path, mutate(["version"], _DELETE), 1_700_000_000)
    with pytest.raises(PolicyError, match="version: required"):
        PolicyStore(path)


# -- authorization -------------------------------------------------------------------------


@pytest.fixture
def policy() -> Policy:
    return load(base_policy())


def reason_of(exc: pytest.ExceptionInfo[Any]) -> str:
    return str(exc.value.reason)


def test_authorize_allowed(policy: Policy) -> None:
    d = policy.authorize("caisse-nord", "app-credit-2026", "credit-faq", ["rh"], "mistral-small")
    assert d.use_case == "credit-faq" and d.max_classification == 3
    assert d.collections == ("rh",) and d.human_review is True
    assert d.retention.spec == "30d" and d.policy_version == "3"
    assert d.tenant_quotas.requests_per_day == 1000
    every = policy.authorize("caisse-nord", "app-credit-2026", "credit-faq")
    assert every.collections == ("credit", "rh") and every.model == ""
    star = policy.authorize("caisse-sud", "app-sud", "public-faq", ["n'importe"], "any-model")
    assert star.collections == ("n'importe",) and star.max_classification == 1
    assert policy.authorize("caisse-sud", "app-sud", "public-faq").collections is None


def test_authorize_use_case_required(policy: Policy) -> None:
    with pytest.raises(InvalidArgument) as info:
        policy.authorize("caisse-nord", "app-credit-2026", "", [], "")
    assert reason_of(info) == "USE_CASE_REQUIRED"


@pytest.mark.parametrize(
    ("tenant", "key", "use_case", "collections", "model", "reason"),
    [
        ("caisse-nord", "app-credit-2026", "marketing", [], "", "UNKNOWN_USE_CASE"),
        ("caisse-sud", "app-sud", "credit-faq", [], "", "USE_CASE_NOT_ALLOWED_FOR_TENANT"),
        (
            "caisse-nord",
            "app-credit-2026",
            "credit-faq",
            ["rh", "paie"],
            "",
            "COLLECTION_NOT_ALLOWED",
        ),
        ("caisse-nord", "app-credit-2026", "credit-faq", [], "gpt-4", "MODEL_NOT_ALLOWED"),
        ("caisse-nord", "app-credit-2026", "shared", [], "", "USE_CASE_NOT_ALLOWED_FOR_KEY"),
        ("caisse-nord", "app-sud", "shared", [], "", "KEY_TENANT_MISMATCH"),
    ],
)
def test_authorize_violations(
    policy: Policy,
    tenant: str,
    key: str,
    use_case: str,
    collections: list[str],
    model: str,
    reason: str,
) -> None:
    with pytest.raises(PermissionDenied) as info:
        policy.authorize(tenant, key, use_case, collections, model)
    assert reason_of(info) == reason
    assert info.value.metadata["use_case"] == use_case
    if reason == "COLLECTION_NOT_ALLOWED":
        assert info.value.metadata["collection"] == "paie"


def test_classification_for_object(policy: Policy) -> None:
    assert policy.classification_for_object("rh", "notes/a.pdf") == LEVELS["INTERNAL"]
    assert policy.classification_for_object("rh", "dossiers/x.pdf") == LEVELS["CONFIDENTIAL"]
    assert policy.classification_for_object("rh", "dossiers/medical/y.pdf") == 4
    assert policy.classification_for_object("site", "index.html") == LEVELS["PUBLIC"]
    assert policy.classification_for_object("autre", "z") == policy.default_classification == 2
    raw = base_policy()
    raw["default_classification"] = "CONFIDENTIAL"
    assert load(raw).classification_for_object("autre", "z") == 3
    assert level_rank("restricted") == 4
    with pytest.raises(InvalidArgument):
        level_rank("SECRET")


def test_authenticate_rotation_expiry_and_mtls(policy: Policy) -> None:
    now = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
    assert [k.id for k in policy.active_keys("app-credit", now)] == ["app-credit-2026"]
    with pytest.raises(Unauthenticated) as expired:
        policy.authenticate(KEY_CREDIT, now=now)
    assert expired.value.reason == "API_KEY_EXPIRED"
    with pytest.raises(Unauthenticated) as no_cert:
        policy.authenticate(KEY_CREDIT_NEXT, now=now)
    assert no_cert.value.reason == "MTLS_SUBJECT_MISMATCH"
    entry = policy.authenticate(
        KEY_CREDIT_NEXT, mtls_subject="CN=app-credit,O=Caisse Nord", now=now
    )
    assert entry.id == "app-credit-2026" and entry.tenant == "caisse-nord"
    with pytest.raises(Unauthenticated) as unknown:
        policy.authenticate("nope")
    assert unknown.value.reason == "API_KEY_INVALID"
    assert policy.has_role("reviewer-nord", "reviewer")
    assert not policy.has_role("app-sud", "reviewer")
    # rotation: both keys of an app active during the overlap
    raw = base_policy()
    raw["api_keys"][0]["expires"] = "2099-06-30"
    rotated = load(raw)
    assert [k.id for k in rotated.active_keys("app-credit", now)] == [
        "app-credit-2025",
        "app-credit-2026",
    ]


def test_example_policy_shipped_with_the_package_is_valid() -> None:
    import docfactory.governance

    path = Path(docfactory.governance.__file__).parent / "policy.example.yaml"
    policy = Policy.load(path)
    assert policy.use_cases["credit-faq"].human_review
    assert policy.classification_for_object("rh", "dossiers-salaries/x.pdf") == LEVELS["RESTRICTED"]


def test_worker_acting_for_a_tenant_reads_under_its_use_case() -> None:
    raw = base_policy()
    raw["api_keys"].append(
        {"id": "platform-worker", "tenant": "caisse-sud", "sha256": "ab" * 32, "roles": ["worker"]}
    )
    policy = load(raw)
    d = policy.authorize("caisse-nord", "platform-worker", "credit-faq", ["rh"], on_behalf=True)
    assert d.use_case == "credit-faq" and d.max_classification == 3  # the tenant's ceiling
    with pytest.raises(PermissionDenied) as info:  # not acting for it: its own tenant only
        policy.authorize("caisse-nord", "platform-worker", "credit-faq", ["rh"])
    assert reason_of(info) == "KEY_TENANT_MISMATCH"
    with pytest.raises(PermissionDenied) as info:  # no worker role: on_behalf changes nothing
        policy.authorize("caisse-nord", "app-sud", "credit-faq", [], on_behalf=True)
    assert reason_of(info) == "KEY_TENANT_MISMATCH"
