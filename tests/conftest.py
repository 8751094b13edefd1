"""Shared fixtures. Integration fixtures live in tests/integration/conftest.py."""


def pytest_report_header(config):
    from tests.helpers.stack import PG_FLAVOUR

    return f"integration schema path: {PG_FLAVOUR} (EMS_TEST_PG_FLAVOUR)"
