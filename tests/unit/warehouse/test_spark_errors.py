"""A failed Spark write job becomes one line naming the online store when an executor could not reach
Redis (warehouse/spark.py); any other job error is raised as it was."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from core.errors import FeaturesUnavailableError
from warehouse.spark import _online_failure

CONFIG = SimpleNamespace(online_store=SimpleNamespace(connection_string="10.1.2.3:6380,username=ems,password=s3cret"))
EXECUTOR_TRACE = """An exception was thrown from the Python worker. Please see the stack trace below.
Traceback (most recent call last):
  File ".../feast/infra/online_stores/redis.py", line 496, in online_write_batch
redis.exceptions.ConnectionError: Error 111 connecting to 10.1.2.3:6380. Connection refused.
"""


def test_an_unreachable_redis_is_one_line_naming_its_address_without_the_password():
    error = _online_failure(RuntimeError(EXECUTOR_TRACE), CONFIG)
    assert isinstance(error, FeaturesUnavailableError)
    text = str(error)
    assert "\n" not in text and "Redis at 10.1.2.3:6380" in text and "Connection refused" in text
    assert "s3cret" not in text and "nothing was marked as materialized" in text


def test_other_job_errors_are_kept_as_they_are():
    original = RuntimeError("java.lang.OutOfMemoryError: Java heap space")
    assert _online_failure(original, CONFIG) is original
    with pytest.raises(RuntimeError, match="heap space"):
        raise _online_failure(original, CONFIG)
