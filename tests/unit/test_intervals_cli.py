"""`--interval-minutes` in the CLI: a value outside 15/30/60/1440 is one error line before any I/O."""

from typer.testing import CliRunner

from cli import app

runner = CliRunner()


def test_a_bad_interval_is_one_line_naming_the_value_and_the_allowed_ones():
    result = runner.invoke(app, ["forecast", "--tenant", "t", "--asset", "a", "--interval-minutes", "45"])
    assert result.exit_code == 1 and "interval_minutes=45 is not supported; allowed: 15, 30, 60, 1440" in result.output
    result = runner.invoke(app, ["train", "forecast", "--tenant", "t", "--interval-minutes", "1440"])
    assert result.exit_code == 1 and "1440 aggregates the hourly model" in " ".join(result.output.split())
