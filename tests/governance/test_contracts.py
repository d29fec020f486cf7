"""governance.contracts: the object classification lookup jobs use, parsed once per file version."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from docfactory.governance import contracts
from docfactory.governance.policy import PolicyError
from tests.governance.test_policy import base_policy


def _write(path: Path, prefix: str, level: str, mtime_ns: int) -> None:
    raw = base_policy()
    raw["object_classifications"] = [{"bucket": "rh", "prefix": prefix, "classification": level}]
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    os.utime(path, ns=(mtime_ns, mtime_ns))


def test_object_classification_parsed_once_and_reread_on_change(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    _write(path, "paie/", "RESTRICTED", 1_700_000_000_000_000_000)
    contracts._policy.cache_clear()
    assert contracts.object_classification(path, "rh", "paie/2025.pdf") == 4
    assert contracts.object_classification(str(path), "rh", "autre/x.pdf") == 2  # default
    assert contracts.object_classification(path, "compta", "paie/x.pdf") == 2
    assert contracts._policy.cache_info().misses == 1  # one parse for three objects

    _write(path, "paie/", "CONFIDENTIAL", 1_700_000_001_000_000_000)  # a new version
    assert contracts.object_classification(path, "rh", "paie/2025.pdf") == 3
    assert contracts._policy.cache_info().misses == 2


def test_missing_policy_file_is_the_policy_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError):
        contracts.object_classification(tmp_path / "absent.yaml", "rh", "x")
