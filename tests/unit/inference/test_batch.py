"""Batch scoring's argument checks (inference/batch.py, `ems forecast --all-assets`): one clear error
naming the bad value, before any service is called."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cli import app
from core.errors import InvalidArgumentError, InvalidHorizonError
from core.settings import Settings
from inference.batch import forecast_all


def test_an_unknown_engine_is_refused_by_name():
    with pytest.raises(InvalidArgumentError, match="engine='flink' is not one of local, spark"):
        forecast_all(Settings(), "demo", engine="flink")


def test_a_horizon_out_of_range_is_refused():
    with pytest.raises(InvalidHorizonError, match="1..168"):
        forecast_all(Settings(), "demo", horizon=200, engine="spark")


@pytest.mark.parametrize("args, message", [((), "give --asset ID or --all-assets"),
                                           (("--asset", "zone1", "--all-assets"), "not both")])
def test_forecast_needs_one_asset_or_all_of_them(args, message):
    result = CliRunner().invoke(app, ["forecast", "--tenant", "demo", *args])
    assert result.exit_code == 1
    assert message in result.output
