"""The fault tests reuse the jobs tests' S3-protocol server (moto, on loopback)."""

from tests.jobs.conftest import s3  # noqa: F401 - a fixture, used by name
