"""The session's real services: Postgres, Redis, S3 and MLflow started by the suite on private
loopback ports (the Feast test-suite fixture shape, without Docker), then the schema and `feast apply`."""

from __future__ import annotations

import os

import pytest

from stack import services
from stack.settings import Settings
from tests.helpers.stack import feast, stack_env
from warehouse.migrate import migrate


@pytest.fixture(scope="session")
def stack_home(tmp_path_factory):
    return tmp_path_factory.mktemp("ems-stack")


@pytest.fixture(scope="session")
def env(stack_home):
    """Point this process (and subprocesses) at the test stack for the whole session."""
    values = stack_env(stack_home)
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    yield values
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def stack(env):
    settings = Settings()
    try:
        services.up(settings)
        migrate(settings)
        feast("apply", env=env)
        yield settings
    finally:
        services.down(settings)


@pytest.fixture(scope="session")
def store(stack):
    from inference.store import get_store

    return get_store(stack)
