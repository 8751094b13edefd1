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


def test_spark_at_another_interval_than_the_hour_is_refused_naming_the_allowed_combination():
    with pytest.raises(InvalidArgumentError, match="engine='spark' with interval_minutes=30 is not supported: Spark "
                                                   "scores interval_minutes=60 only; use engine='local'"):
        forecast_all(Settings(), "demo", engine="spark", log=False, interval_minutes=30)


@pytest.mark.parametrize("interval", [15, 30, 1440])
def test_a_non_hourly_batch_is_not_written_to_the_hourly_forecast_log(interval):
    with pytest.raises(InvalidArgumentError, match=f"interval_minutes={interval} cannot go to the forecast log: it "
                                                   "holds hourly rows only"):
        forecast_all(Settings(), "demo", log=True, interval_minutes=interval)


def test_a_bad_interval_is_refused_before_any_service():
    from core.names import InvalidIntervalError

    with pytest.raises(InvalidIntervalError, match="interval_minutes=45 is not supported; allowed: 15, 30, 60, 1440"):
        forecast_all(Settings(), "demo", interval_minutes=45)


@pytest.mark.parametrize("args", [("--all-assets",), ("--asset", "zone1")])
def test_the_cli_refuses_log_at_another_interval_before_forecasting(args):
    result = CliRunner().invoke(app, ["forecast", "--tenant", "demo", *args, "--interval-minutes", "1440", "--log"])
    assert result.exit_code == 1
    assert "interval_minutes=1440 cannot go to the forecast log" in " ".join(result.output.split())


def _result(frame):
    import pandas as pd

    from inference.results import ForecastResult

    now = pd.Timestamp("2024-01-01", tz="UTC")
    return ForecastResult("demo", "zone1", frame, "demo:load_forecaster_30min:1", "production", "forecast_load_30min",
                          {}, now, 0.0, "online", {}, now)


@pytest.mark.parametrize("columns, interval", [
    ({"timestamp": ["2024-01-01 01:00", "2024-01-01 01:30"], "horizon_h": [1, 1], "horizon_steps": [1, 2]}, 30),
    ({"timestamp": ["2024-01-02"], "horizon_h": [24], "horizon_steps": [1], "hours": [24]}, 1440)])
def test_the_sdks_log_write_refuses_a_step_or_daily_result_before_the_warehouse(columns, interval):
    """`log_forecast` itself (the SDK's way in): the settings are never touched (None would fail later)."""
    import pandas as pd

    from inference.accuracy import log_forecast

    frame = pd.DataFrame(columns).assign(timestamp=lambda f: pd.to_datetime(f["timestamp"], utc=True), point=1.0)
    with pytest.raises(InvalidArgumentError, match=f"interval_minutes={interval} cannot go to the forecast log"):
        log_forecast(None, _result(frame))
