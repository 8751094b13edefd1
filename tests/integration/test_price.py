"""The price forecaster end to end on the real stack: six weeks of Nord Pool (data/epf_np_extract.csv.gz) as a
market zone's hourly prices and its day-ahead load/wind forecasts issued at 10:00 the day before,
`ems train forecast --type price`, promotion, and `Client.forecast(forecast_type="price")` for the next day:
24 sorted quantiles scored against the day's real prices, a covariate issued after the target day's issue
time that does not change the forecast, one clear error for prices as text and a horizon past 48 h, and the
serving read (only the days the model reads, one query) giving the training read's rows."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import psycopg
import pytest

from core.errors import InvalidHorizonError
from core.settings import ROOT
from inference.client import Client
from registry import lifecycle
from tests.helpers.stack import ems
from warehouse import market
from warehouse.db import connect
from warehouse.store import get_store

pytestmark = pytest.mark.integration

TENANT, ASSET, SITE, TZ = "pricez", "np-system", "pricez-np", "Europe/Oslo"
EXTRACT = ROOT / "data" / "epf_np_extract.csv.gz"
TARGET = "2018-12-09"  # the extract's last day: its prices are not ingested, its covariates are


@pytest.fixture(scope="module")
def trained(stack, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("price")
    df = pd.read_csv(EXTRACT, parse_dates=["timestamp"])
    df[df["timestamp"] < TARGET][["timestamp", "price"]].to_csv(tmp / "prices.csv", index=False)
    ems("ingest", str(tmp / "prices.csv"), "--tenant", TENANT, "--wide", "--columns", f"{ASSET}=price", "--site",
        SITE, "--tz", TZ)
    ems("refresh")  # the hourly roll-up the forecaster reads
    ems("assets", "set", "--tenant", TENANT, "--asset", ASSET, "--kind", "market")
    cov = pd.DataFrame({"issue_time": df["timestamp"].dt.normalize() - pd.Timedelta(hours=14),
                        "target_time": df["timestamp"], "load_forecast": df["load_forecast"],
                        "wind_forecast": df["wind_forecast"]})
    cov.to_csv(tmp / "cov.csv", index=False, date_format="%Y-%m-%dT%H:%M:%S")
    ems("ingest-weather", str(tmp / "cov.csv"), "--site", SITE, "--forecast", "--tz", TZ)
    proc = ems("train", "forecast", "--type", "price", "--tenant", TENANT, "--asset", ASSET, "--holdout-days", "7",
               "--json")
    result = json.loads(proc.stdout)
    lifecycle.promote(lifecycle.client(stack.mlflow_tracking_uri), result["model_id"], "production", force=True)
    return result, df


@pytest.fixture(scope="module")
def client(stack, trained):
    return Client(stack, get_store(stack), model_ttl_seconds=0)


def test_training_registers_a_price_version_that_beats_the_naive_forecasts(stack, trained):
    result, _ = trained
    info = lifecycle.show(lifecycle.client(stack.mlflow_tracking_uri), result["model_id"])
    assert result["model_id"].startswith(f"{TENANT}:price_forecaster:")
    assert info.tags["forecast_type"] == "price" and info.model_type == "forecast"
    m = result["metrics"]
    arts = lifecycle.client(stack.mlflow_tracking_uri).list_artifacts(result["run_id"], "plots")
    assert [a.path for a in arts] == ["plots/forecast_band.png"]
    assert m["holdout_days"] == 7 and m["train_days"] == 27
    assert m["mae"] < min(m["naive_d1_mae"], m["naive_d7_mae"]), m


def test_next_day_forecast_is_the_models_forecast_from_the_files_rows(client, trained):
    """24 sorted hours of the target day; the same numbers as the registered model on the extract's own rows
    (prices up to the day before, the target day's covariates): serving reads what training read."""
    _, df = trained
    res = client.forecast(TENANT, ASSET, 24, forecast_type="price")
    f = res.frame
    day = pd.date_range(TARGET, periods=24, freq="h", tz=TZ).tz_convert("UTC")
    assert len(f) == 24 and (pd.DatetimeIndex(f["timestamp"]) == day).all()
    assert (f["p10"] <= f["p50"]).all() and (f["p50"] <= f["p90"]).all()
    rows = df.tail(15 * 24).reset_index(drop=True)
    actual = rows["price"].iloc[-24:].to_numpy().copy()
    rows.loc[rows.index[-24:], "price"] = np.nan
    offline = client.models.production(TENANT, "price_forecaster").python_model.predict(None, rows)
    np.testing.assert_allclose(f["point"].to_numpy(), offline["point"].to_numpy(), rtol=1e-9)
    assert np.abs(f["point"].to_numpy() - actual).mean() < 2.0  # EUR/MWh, on a day of prices 40-47


def test_the_cli_forecasts_the_next_day(client):
    doc = json.loads(ems("forecast", "--tenant", TENANT, "--asset", ASSET, "--type", "price", "--json").stdout)
    assert len(doc["forecast"]) == 24 and doc["model_id"].startswith(f"{TENANT}:price_forecaster:")
    expected = client.forecast(TENANT, ASSET, 24, forecast_type="price").frame["point"].to_numpy()
    np.testing.assert_allclose([r["point"] for r in doc["forecast"]], expected, rtol=1e-9)


def test_a_covariate_issued_after_the_target_days_issue_time_does_not_change_it(stack, client, tmp_path):
    before = client.forecast(TENANT, ASSET, 24, forecast_type="price").frame
    day = pd.date_range(TARGET, periods=24, freq="h", tz=TZ).tz_convert("UTC")
    late = pd.DataFrame({"issue_time": pd.Timestamp("2018-12-08T11:00", tz=TZ).tz_convert("UTC").isoformat(),
                         "target_time": [t.isoformat() for t in day], "load_forecast": 1.0, "wind_forecast": 1.0})
    late.to_csv(tmp_path / "late.csv", index=False)
    ems("ingest-weather", str(tmp_path / "late.csv"), "--site", SITE, "--forecast")
    after = client.forecast(TENANT, ASSET, 24, forecast_type="price").frame
    pd.testing.assert_frame_equal(after, before)


def test_bad_input_is_one_clear_error(stack, client, tmp_path):
    with pytest.raises(InvalidHorizonError, match="horizon=49 is out of range for a price forecast: 1..48"):
        client.forecast(TENANT, ASSET, 49, forecast_type="price")
    with psycopg.connect(stack.postgres.conninfo()) as conn:
        before = conn.execute("SELECT count(*) FROM readings WHERE tenant_id = %s", (TENANT,)).fetchone()[0]
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,price\n2018-12-09T00:00:00,12.5 EUR\n")
    proc = ems("ingest", str(bad), "--tenant", TENANT, "--wide", "--columns", f"{ASSET}=price", "--site", SITE,
               "--tz", TZ, check=False)
    assert proc.returncode == 1 and "12.5 EUR" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, \
        proc.stderr
    with psycopg.connect(stack.postgres.conninfo()) as conn:
        assert conn.execute("SELECT count(*) FROM readings WHERE tenant_id = %s", (TENANT,)).fetchone()[0] == before


def test_serving_reads_the_training_frames_last_days_with_each_covariates_latest_value(stack, client):
    """market.forecast_window (the target day and the model's past days, one query) gives the rows training's
    frame + trailing_days give, also where the latest issue by the cutoff lacks one covariate and an earlier issue
    has it (per covariate, the latest value issued by 10:00 the day before)."""
    t = pd.Timestamp(client.forecast(TENANT, ASSET, 24, forecast_type="price").feature_time)
    pyfunc = client.models.production(TENANT, "price_forecaster").python_model
    first = pd.date_range(TARGET, periods=6, freq="h", tz=TZ).tz_convert("UTC")
    issued = pd.Timestamp(TARGET, tz=TZ) - pd.Timedelta(hours=14)  # 10:00 the day before: the cutoff
    with psycopg.connect(stack.postgres.conninfo(), autocommit=True) as conn:
        conn.execute("UPDATE covariate_forecasts SET wind_forecast = NULL WHERE series_id = %s AND issue_time = %s "
                     "AND target_time = ANY(%s)", (SITE, issued.to_pydatetime(), list(first.to_pydatetime())))
        conn.execute("INSERT INTO covariate_forecasts (series_id, target_time, issue_time, wind_forecast) "
                     "SELECT %s, t, %s, 777.0 FROM unnest(%s::timestamptz[]) t",
                     (SITE, (issued - pd.Timedelta(hours=1)).to_pydatetime(), list(first.to_pydatetime())))
    z = market.zone(stack, TENANT, ASSET)
    rows, exog = market.frame(stack, TENANT, ASSET, z["site"], z["timezone"], until=t, extra_day=True)
    rows = market.trailing_days(rows).tail((pyfunc.past_days + 1) * 24)
    with connect(stack, autocommit=True) as conn:
        w = market.forecast_window(conn, TENANT, ASSET, t, pyfunc.past_days, pyfunc.exog)
    assert exog == pyfunc.exog == ("load_forecast", "wind_forecast")
    np.testing.assert_array_equal(w.price.ravel(), rows["price"].to_numpy())
    for e, c in enumerate(exog):
        np.testing.assert_array_equal(w.exog[:, e].ravel(), rows[c].to_numpy())
    assert (w.exog[-1, 1, :6] == 777.0).all() and (w.exog[-1, 1, 6:] != 777.0).all()
    assert list(w.dates) == list(rows["timestamp"].dt.normalize().drop_duplicates())
    assert (w.target == pd.date_range(TARGET, periods=24, freq="h", tz=TZ).tz_convert("UTC")).all()
    served = client.forecast(TENANT, ASSET, 24, forecast_type="price").frame["point"].to_numpy()
    offline = pyfunc.predict(None, rows.reset_index(drop=True))["point"].to_numpy()
    np.testing.assert_allclose(served, offline, rtol=1e-9)
