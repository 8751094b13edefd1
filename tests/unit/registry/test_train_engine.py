"""The training engine's options (`ems train forecast --engine`, train_forecast.check_engine, DaskConfig): one
error naming the bad value and the allowed ones, before any I/O (no services)."""

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from cli import app
from registry import train_forecast
from registry.dask_training import DaskConfig

runner = CliRunner()


@pytest.mark.parametrize(("args", "message"), [
    (["--engine", "spark"], "--engine 'spark' is not one of local, dask"),
    (["--training-set", "s3://b/k.parquet"], "--training-set s3://b/k.parquet: Dask option(s) need --engine dask"),
    (["--dask-workers", "4"], "--dask-workers 4: Dask option(s) need --engine dask, not --engine local"),
    (["--engine", "dask", "--type", "price"], "--engine dask trains hourly load models: --type price"),
    (["--engine", "dask", "--interval-minutes", "30"], "--interval-minutes 30 needs --engine local"),
    (["--engine", "dask", "--dask-scheduler", "tcp://h:8786", "--dask-workers", "3"], "give one of the two"),
    (["--engine", "dask", "--dask-scheduler", "h:8786"], "dask scheduler 'h:8786' is not an address"),
])
def test_engine_options_that_conflict_are_one_error(args, message):
    result = runner.invoke(app, ["train", "forecast", "--tenant", "t", *args], env={"EMS_DASK_SCHEDULER": ""})
    assert result.exit_code == 1, result.output
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_scheduler_from_the_environment_does_not_conflict_with_the_local_engine(monkeypatch):
    import typer

    from cli import _dask_config

    monkeypatch.setenv("EMS_DASK_SCHEDULER", "tcp://h:8786")
    assert _dask_config("local", "load", 60, "tcp://h:8786", 2, "") is None  # the variable's value: not an option
    assert _dask_config("dask", "load", 60, "tcp://h:8786", 2, "") == DaskConfig(scheduler="tcp://h:8786")
    with pytest.raises(typer.Exit):
        _dask_config("local", "load", 60, "tcp://other:8786", 2, "")


def test_check_engine():
    assert train_forecast.check_engine("local", None) is None
    assert train_forecast.check_engine("dask", None) == DaskConfig()
    with pytest.raises(ValueError, match="engine='ray' is not one of local, dask"):
        train_forecast.check_engine("ray", None)
    with pytest.raises(ValueError, match="need engine='dask'"):
        train_forecast.check_engine("local", DaskConfig(workers=3))
    with pytest.raises(ValueError, match="dask workers=0 is out of range 1..256"):
        train_forecast.check_engine("dask", DaskConfig(workers=0))


def test_importing_the_training_modules_does_not_import_dask():
    code = ("import sys, cli, registry.train_forecast, registry.dask_training; "
            "print(','.join(m for m in ('dask', 'distributed', 'lightgbm') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_shares_split_every_assets_rows_once_and_the_same_way():
    import numpy as np
    import pandas as pd

    from registry.dask_training import SHUFFLE, _share

    frames = [pd.DataFrame({"x": np.arange(n, dtype=float), SHUFFLE: np.random.default_rng(n).integers(0, 1 << 30, n)})
              for n in (50, 80)]
    shares = [_share(k, 2, *frames) for k in range(2)]
    assert sum(len(s) for s in shares) == 130 and all(20 < len(s) < 110 for s in shares)
    both = pd.concat(shares)
    assert sorted(both["x"]) == sorted([*frames[0]["x"], *frames[1]["x"]])
    pd.testing.assert_frame_equal(_share(1, 2, *frames), shares[1])
