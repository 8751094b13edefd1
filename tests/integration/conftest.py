"""The session's real services: Postgres, Redis, S3 and MLflow started by the suite on private
loopback ports (the Feast test-suite fixture shape, without Docker), then the schema and `feast apply`.
EMS_TEST_PG_FLAVOUR=plain (default) | timescale chooses the schema path (tests/helpers/stack.py); the
session stops at once when migrate took another path than the one asked for."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from core.settings import Settings
from stack import services
from stack.process import ServiceError
from tests.helpers.stack import PG_FLAVOUR, PG_FLAVOURS, feast, stack_env
from warehouse import migrate as migrations


def pytest_configure(config):
    if PG_FLAVOUR not in PG_FLAVOURS:
        raise pytest.UsageError(f"EMS_TEST_PG_FLAVOUR={PG_FLAVOUR!r}: use one of {', '.join(PG_FLAVOURS)}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Each phase's report on the test item (`item.rep_call`): fixtures that keep evidence of a failure
    (the browser tests' screenshots) read it at teardown."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture(scope="session")
def stack_home(request, tmp_path_factory):
    """The suite's stack folder. As root, Postgres runs as `nobody`, which must reach its data folder, so the
    folder is made outside pytest's own `/tmp/pytest-of-root`: every pytest run (a unit test in another
    terminal) resets that folder to mode 0700 and would cut a running suite's Postgres off its files. Kept
    after a session with failures (the service logs are in `logs/`), removed after a clean one."""
    if os.geteuid() != 0:
        yield tmp_path_factory.mktemp("ems-stack")
        return
    home = Path(tempfile.mkdtemp(prefix="ems-test-stack-"))
    yield home
    if not request.session.testsfailed:
        shutil.rmtree(home, ignore_errors=True)
    elif reporter := request.config.pluginmanager.get_plugin("terminalreporter"):
        reporter.write_line(f"stack folder with the service logs kept: {home}")


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
        try:
            services.up(settings)
        except ServiceError as e:
            if PG_FLAVOUR == "timescale":
                pytest.exit(f"EMS_TEST_PG_FLAVOUR=timescale: {e}", returncode=1)
            raise
        migrations.migrate(settings)
        chosen = migrations.flavour(settings)
        if chosen != PG_FLAVOUR:
            pytest.exit(f"EMS_TEST_PG_FLAVOUR={PG_FLAVOUR} but migrate created the {chosen} schema "
                        f"(EMS_PG_TIMESCALEDB={env['EMS_PG_TIMESCALEDB']}); see {settings.home}/logs/postgres.log",
                        returncode=1)
        feast("apply", env=env)
        yield settings
    finally:
        services.down(settings)


@pytest.fixture(scope="session")
def store(stack):
    from warehouse.store import get_store

    return get_store(stack)
