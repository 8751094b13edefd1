"""Which failures a pipeline step retries: a service that did not answer (Postgres, Redis, S3, MLflow)
is transient and retried with exponential backoff; anything else (bad input, a missing model, a bug)
fails the step at once. Steps run their body through `step()`, which turns a non-transient error into
a Dagster `Failure(allow_retries=False)` so the op's RetryPolicy skips it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import TypeVar

import dagster as dg

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Retries of a step whose service was unavailable: Dagster waits (2^n - 1) x 2 s +- 2 s before retry n, so
# about 2, 6, 14 and 30 s: the 5th and last attempt starts ~52 s after the first failure, which covers a
# restart of the slowest service here (MLflow: 11-29 s on 2 busy cores, tests/integration/test_pipelines.py).
RETRY = dg.RetryPolicy(max_retries=4, delay=2.0, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)


def _chain(e: BaseException) -> Iterator[BaseException]:
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def is_transient(error: BaseException) -> bool:
    """True when `error` (or what it was raised from) says a service was unreachable, not that the
    request was wrong: refused credentials and bad values are never transient."""
    import botocore.exceptions as boto
    import psycopg
    import redis
    import requests
    from mlflow.exceptions import MlflowException

    from warehouse.db import DatabaseUnavailableError

    chain = list(_chain(error))
    refused = redis.AuthenticationError | redis.exceptions.NoPermissionError | psycopg.errors.InvalidPassword
    if any(isinstance(e, refused) for e in chain):
        return False
    for e in chain:
        if isinstance(e, DatabaseUnavailableError | psycopg.OperationalError | redis.ConnectionError |
                      redis.TimeoutError | redis.exceptions.BusyLoadingError | redis.exceptions.ClusterDownError |
                      boto.EndpointConnectionError | boto.ConnectTimeoutError | boto.ReadTimeoutError |
                      requests.ConnectionError | requests.Timeout | ConnectionError | TimeoutError):
            return True
        if isinstance(e, MlflowException) and ("Max retries exceeded" in str(e) or "Connection refused" in str(e)):
            return True
    return False


def step(context: dg.OpExecutionContext, what: str, fn: Callable[..., T], *args, **kwargs) -> T:
    """Run one step's work: a transient error propagates (the op's RetryPolicy retries it, logged with
    the attempt), any other error fails the step without a retry."""
    try:
        return fn(*args, **kwargs)
    except Exception as e:
        if is_transient(e):
            message = (f"{what}: transient failure on attempt {context.retry_number + 1} "
                       f"({type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}); retrying")
            logger.warning(message)
            context.log.warning(message)
            raise
        raise dg.Failure(description=f"{what}: {type(e).__name__}: {e}", allow_retries=False) from e
