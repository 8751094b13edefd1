"""Shared fixtures. Integration fixtures live in tests/integration/conftest.py."""


def pytest_report_header(config):
    from tests.helpers.stack import PG_FLAVOUR

    return f"integration schema path: {PG_FLAVOUR} (EMS_TEST_PG_FLAVOUR)"


def pytest_terminal_summary(terminalreporter):
    """Time per test file (setup + call + teardown, summed over its tests), slowest first: where CI time goes
    (`--durations` names single tests only)."""
    from collections import Counter

    per_file = Counter()
    for reports in terminalreporter.stats.values():
        for report in reports:
            if (nodeid := getattr(report, "nodeid", "")) and hasattr(report, "duration"):
                per_file[nodeid.split("::")[0]] += report.duration
    if per_file:
        terminalreporter.write_sep("=", f"slowest test files (of {len(per_file)})")
        for path, seconds in per_file.most_common(15):
            terminalreporter.write_line(f"{seconds:8.1f}s  {path}")
