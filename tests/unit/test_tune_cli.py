"""`ems tune forecast` wiring: bad search settings are one error naming the value, before any I/O."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cli import app


@pytest.mark.parametrize(("args", "message"), [
    (["--trials", "0"], "trials=0 is out of range 1..10000"),
    (["--time-budget", "0"], "time_budget=0.0 s is out of range (0, 604800]"),
    (["--time-budget", "-3"], "time_budget=-3.0 s"),
    (["--windows", "13"], "windows=13 is out of range 1..12"),
])
def test_bad_search_settings_are_one_error_naming_the_value(args, message):
    result = CliRunner().invoke(app, ["tune", "forecast", "-t", "acme", *args])
    assert result.exit_code == 1
    assert message in " ".join(result.output.split()) and result.output.count("error:") == 1


def test_bad_split_is_a_usage_error_naming_the_value():
    result = CliRunner().invoke(app, ["tune", "forecast", "-t", "acme", "--issue-every-h", "0"])
    assert result.exit_code == 2 and "issue_every_h=0 is out of range 1..168" in result.output
