"""`ems pipelines run` and `ems alerts` wiring: an unknown pipeline is one clear error before anything runs."""

from __future__ import annotations

from typer.testing import CliRunner

from cli import app


def test_unknown_pipeline_is_one_clear_error():
    result = CliRunner().invoke(app, ["pipelines", "run", "weekly"])
    assert result.exit_code == 1
    assert "pipeline 'weekly' is not one of hourly, daily, backfill" in result.output


def test_the_commands_are_listed():
    result = CliRunner().invoke(app, ["--help"])
    assert "pipelines" in result.output and "alerts" in result.output
