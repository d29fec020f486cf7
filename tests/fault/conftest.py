"""Fixtures of the fault tests: the jobs tests' S3-protocol server (moto, on loopback), and a
list of started processes (``Serve``, ``Worker``) stopped at the end of each test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.jobs.conftest import s3  # noqa: F401 - a fixture, used by name


@pytest.fixture
def procs() -> Iterator[list[Any]]:
    started: list[Any] = []
    yield started
    for p in reversed(started):
        p.stop()
