"""Which failures a step retries (pipelines/transient.py), checked through Dagster's own in-process
executor: an unreachable service is retried with backoff and then succeeds; bad input fails at once."""


import dagster as dg
import psycopg
import pytest
import redis

from core.errors import InvalidHorizonError
from pipelines.transient import RETRY, is_transient, step
from warehouse.db import DatabaseUnavailableError


def _raised_from(outer: Exception, inner: Exception) -> Exception:
    try:
        try:
            raise inner
        except Exception as e:
            raise outer from e
    except Exception as e:
        return e


@pytest.mark.parametrize("error", [
    redis.ConnectionError("Error 111 connecting to 127.0.0.1:16379"),
    psycopg.OperationalError("connection refused"),
    DatabaseUnavailableError("Postgres at 127.0.0.1:15432 is unreachable"),
    ConnectionRefusedError(111, "refused"),
    _raised_from(RuntimeError("online store unreachable"), redis.ConnectionError("down")),
])
def test_unreachable_services_are_transient(error):
    assert is_transient(error)


@pytest.mark.parametrize("error", [
    InvalidHorizonError("horizon=200 is out of range 1..168"),
    ValueError("bad"),
    redis.AuthenticationError("invalid username-password pair"),  # a ConnectionError subclass in redis-py
    _raised_from(RuntimeError("refused"), redis.AuthenticationError("WRONGPASS")),
])
def test_bad_input_and_refused_credentials_are_not(error):
    assert not is_transient(error)


def _job(fail_times: int, error: Exception):
    calls = []

    @dg.op(retry_policy=dg.RetryPolicy(max_retries=3, delay=0.01, backoff=dg.Backoff.EXPONENTIAL))
    def work(context: dg.OpExecutionContext) -> int:
        def body():
            calls.append(context.retry_number)
            if len(calls) <= fail_times:
                raise error
            return len(calls)

        return step(context, "work", body)

    @dg.job
    def job():
        work()

    return job, calls


def test_a_transient_failure_is_retried_until_it_succeeds():
    job, calls = _job(2, redis.ConnectionError("down"))
    result = job.execute_in_process(raise_on_error=False)
    assert result.success and result.output_for_node("work") == 3 and calls == [0, 1, 2]


def test_bad_input_is_not_retried():
    job, calls = _job(5, InvalidHorizonError("horizon=200 is out of range 1..168"))
    result = job.execute_in_process(raise_on_error=False)
    assert not result.success and calls == [0]
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "horizon=200 is out of range 1..168" in failure.step_failure_data.user_failure_data.description


def test_the_retry_waits_cover_about_52_seconds_before_the_last_attempt():
    waits = [RETRY.calculate_delay(n) for n in range(1, RETRY.max_retries + 1)]
    for wait, nominal in zip(waits, (2, 6, 14, 30), strict=True):
        assert nominal - 2 <= wait <= nominal + 2
    assert sum(waits) >= 44
