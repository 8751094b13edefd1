"""The generation forecaster end to end on the real stack: GEFCom2012 wp1's hourly power (data/ extract, in %
of capacity) ingested as a wind unit with capacity 100, four weeks of its weather forecasts ingested by issue
time, `ems train forecast --type generation`, promotion, and `Client.forecast(forecast_type="generation")`:
bounded to [0, capacity], a forecast issued after T that does not change the forecast at T, a warning (and NaN
inputs) where no weather forecast was issued by then, and one clear error for a horizon past 48 h."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from core.errors import InvalidArgumentError, InvalidHorizonError
from core.settings import ROOT
from inference.client import Client
from registry import lifecycle
from tests.helpers.stack import ems
from warehouse.covariates import ingest_forecasts
from warehouse.ingest import ingest_readings
from warehouse.refresh import refresh
from warehouse.store import get_store

pytestmark = pytest.mark.integration

TENANT, ASSET, SITE, CAPACITY = "genw", "farm1", "genw-wp1", 100.0
POWER = ROOT / "data" / "gefcom2012_wind_power_wp1.csv.gz"
FORECASTS = [ROOT / "data" / "gefcom2012_wind_forecasts_wp1_dec.csv.gz",
             ROOT / "data" / "gefcom2012_wind_forecasts_wp1.csv.gz"]
T = pd.Timestamp("2011-01-01T01:00Z")  # the end of the hour 00:00 - 01:00: the 00:00 issue is known


@pytest.fixture(scope="module")
def trained(stack):
    ingest_readings(stack, POWER, TENANT, wide=True, columns=f"{ASSET}=wp1", site=SITE)
    refresh(stack)
    ems("assets", "set", "--tenant", TENANT, "--asset", ASSET, "--kind", "generation", "--capacity", "100",
        "--technology", "wind")
    for f in FORECASTS:
        ems("ingest-weather", str(f), "--site", SITE, "--forecast")
    proc = ems("train", "forecast", "--type", "generation", "--tenant", TENANT, "--holdout-days", "3", "--json")
    result = json.loads(proc.stdout)
    lifecycle.promote(lifecycle.client(stack.mlflow_tracking_uri), result["model_id"], "production", force=True)
    return result


@pytest.fixture(scope="module")
def client(stack, trained):
    return Client(stack, get_store(stack), model_ttl_seconds=0)


def test_training_registers_a_generation_version_that_beats_persistence(stack, trained):
    info = lifecycle.show(lifecycle.client(stack.mlflow_tracking_uri), trained["model_id"])
    assert trained["model_id"].startswith(f"{TENANT}:generation_forecaster:")
    assert info.tags["forecast_type"] == "generation" and info.model_type == "forecast"
    m = trained["metrics"]
    assert 0 <= m["coverage_p10_p90"] <= 1 and m["rows"] > 100
    assert m["rmse"] < m["persistence_rmse"], m  # 1-48 h ahead on the held-out days


def test_forecast_is_bounded_by_capacity_with_sorted_quantiles(client):
    r = client.forecast(TENANT, ASSET, horizon=48, forecast_type="generation", as_of=T)
    f = r.frame
    assert len(f) == 48 and f["timestamp"].iloc[0] == T and r.model_id.split(":")[1] == "generation_forecaster"
    for c in ("point", "p10", "p50", "p90"):
        assert f[c].between(0, CAPACITY).all(), f[c]
    assert (f["p10"] <= f["p50"]).all() and (f["p50"] <= f["p90"]).all()
    assert f["point"].std() > 0  # follows the weather, not a constant
    assert not [w for w in r.warnings if "weather forecast" in w], r.warnings


def test_a_forecast_issued_after_the_origin_does_not_change_it(stack, client, tmp_path):
    before = client.forecast(TENANT, ASSET, horizon=24, forecast_type="generation", as_of=T).frame
    targets = pd.date_range(T + pd.Timedelta(hours=1), periods=24, freq="h")  # issued at T + 1 h, for its future
    late = pd.DataFrame({"issue_time": (T + pd.Timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                         "target_time": targets.strftime("%Y-%m-%dT%H:%M:%SZ"), "wind_speed": 25.0,
                         "wind_u": 25.0, "wind_v": 0.0})
    late.to_csv(tmp_path / "late.csv", index=False)
    assert ingest_forecasts(stack, tmp_path / "late.csv", SITE).inserted == 24
    after = client.forecast(TENANT, ASSET, horizon=24, forecast_type="generation", as_of=T).frame
    pd.testing.assert_frame_equal(after, before)
    later = client.forecast(TENANT, ASSET, horizon=24, forecast_type="generation",
                            as_of=T + pd.Timedelta(hours=1)).frame
    assert not np.allclose(later["point"].to_numpy()[1:], before["point"].to_numpy()[1:])  # it does see it


def test_serving_inputs_are_the_training_rows_of_the_same_origin(stack, trained):
    """No train/serve skew: the rows a forecast at T reads (covariates_at, the last readings) are the rows the
    training set has for the origin T - 1 h (registry/generation.pit_join over every stored issue)."""
    from inference import generation as served
    from registry import generation as gen
    from registry import train_generation as tg
    from warehouse import generation as wg

    rows = tg.training_rows(stack, TENANT, wg.units(stack, TENANT, [ASSET]), origin_step=1)
    train = rows[rows["origin"] == T - pd.Timedelta(hours=1)].sort_values("target").reset_index(drop=True)
    serve, _ = served.inputs(stack, None, TENANT, ASSET, SITE, CAPACITY, T, 48)
    assert len(train) == 48
    a, b = gen.design(train, [ASSET]), gen.design(serve, [ASSET])
    np.testing.assert_allclose(a.to_numpy(dtype=float), b.to_numpy(dtype=float), equal_nan=True)
    assert a["ws"].notna().all() and a["power_last"].notna().all()


def test_target_hours_without_a_weather_forecast_warn_and_stay_nan(stack, client):
    from inference import generation as served

    t = pd.Timestamp("2011-01-04T00:00Z")  # the last issue (2011-01-02 12:00) reaches 2011-01-04 12:00
    rows, _ = served.inputs(stack, None, TENANT, ASSET, SITE, CAPACITY, t, 48)
    assert rows["wind_speed"].isna().sum() == 35 and not (rows["wind_speed"] == 0).any()
    r = client.forecast(TENANT, ASSET, horizon=48, forecast_type="generation", as_of=t)
    assert any("no weather forecast" in w and "35 of 48" in w for w in r.warnings), r.warnings  # 12:00 on
    assert r.frame[["point", "p10", "p90"]].apply(lambda c: c.between(0, CAPACITY)).all().all()


def test_bad_input_is_one_clear_error(client):
    with pytest.raises(InvalidHorizonError, match=r"horizon=49 .*1\.\.48"):
        client.forecast(TENANT, ASSET, horizon=49, forecast_type="generation", as_of=T)
    with pytest.raises(InvalidArgumentError, match="overrides not supported for forecast_type='generation'"):
        client.forecast(TENANT, ASSET, horizon=6, forecast_type="generation", overrides={"wind_speed": 3.0})
    proc = ems("train", "forecast", "--type", "pv", "--tenant", TENANT, check=False)
    assert proc.returncode != 0 and "'pv'" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_the_cli_forecasts_a_generation_unit(trained):
    """`ems forecast --type generation` at the unit's latest hour (2011-01-04 13:00): past the last stored
    weather forecast, so every weather input is missing, the CLI says so, and the forecast stays in bounds."""
    proc = ems("forecast", "--tenant", TENANT, "--asset", ASSET, "--type", "generation", "--horizon", "6", "--json")
    doc = json.loads(proc.stdout)
    rows = doc["forecast"]
    assert len(rows) == 6 and all(0 <= r["point"] <= CAPACITY for r in rows), rows
    assert "no weather forecast" in proc.stderr and "6 of 6" in proc.stderr


PAIR, PAIR_UNITS = "genw2", {"farm1": ("genw2-a", 1.0), "farm2": ("genw2-b", 1.2)}


@pytest.fixture(scope="module")
def pair(stack, tmp_path_factory):
    """Tenant genw2: two wind units with wp1's power, farm1 at a site with wp1's forecasts and farm2 at a site
    with the same forecasts 20 % stronger (so a unit's other-unit inputs are not its own), trained together."""
    folder = tmp_path_factory.mktemp("pair")
    for asset, (site, scale) in PAIR_UNITS.items():
        ingest_readings(stack, POWER, PAIR, wide=True, columns=f"{asset}=wp1", site=site)
        ems("assets", "set", "--tenant", PAIR, "--asset", asset, "--kind", "generation", "--capacity", "100",
            "--technology", "wind")
        for f in FORECASTS:
            frame = pd.read_csv(f)
            frame[["wind_u", "wind_v", "wind_speed"]] *= scale
            frame.to_csv(folder / f"{site}-{f.name.removesuffix('.gz')}", index=False)
            ems("ingest-weather", str(folder / f"{site}-{f.name.removesuffix('.gz')}"), "--site", site, "--forecast")
    refresh(stack)
    proc = ems("train", "forecast", "--type", "generation", "--tenant", PAIR, "--holdout-days", "3", "--json")
    result = json.loads(proc.stdout)
    lifecycle.promote(lifecycle.client(stack.mlflow_tracking_uri), result["model_id"], "production", force=True)
    return result


def test_a_unit_reads_the_other_units_forecasts_the_same_way_in_training_and_serving(stack, pair):
    """Serving farm1 at T reads farm2's site's forecasts issued by T (covariates_at), and its rows equal the
    training rows of origin T - 1 h, the other-unit inputs included (farm2's speeds, 1.2 x farm1's)."""
    from inference import generation as served
    from registry import generation as gen
    from registry import train_generation as tg
    from warehouse import generation as wg

    rows = tg.training_rows(stack, PAIR, wg.units(stack, PAIR), origin_step=1)
    train = rows[(rows["unit"] == "farm1") & (rows["origin"] == T - pd.Timedelta(hours=1))]
    train = train.sort_values("target").reset_index(drop=True)
    others = wg.sites(stack, PAIR, ["farm2", "gone"])
    assert others == {"farm2": "genw2-b"}  # a unit gone since training is left out
    serve, _ = served.inputs(stack, None, PAIR, "farm1", "genw2-a", CAPACITY, T, 48, list(others.values()))
    a, b = gen.design(train, list(PAIR_UNITS)), gen.design(serve, list(PAIR_UNITS))
    np.testing.assert_allclose(a.to_numpy(dtype=float), b.to_numpy(dtype=float), equal_nan=True)
    assert b["ws_others_mean"].to_numpy() == pytest.approx(1.2 * b["ws"].to_numpy(), abs=0.01)
    alone, _ = served.inputs(stack, None, PAIR, "farm1", "genw2-a", CAPACITY, T, 48)
    assert alone[list(gen.OTHERS)].isna().all().all() and alone["wind_speed"].notna().all()


def test_a_model_of_two_units_forecasts_each_within_capacity(stack, pair):
    client = Client(stack, get_store(stack), model_ttl_seconds=0)
    for asset in PAIR_UNITS:
        r = client.forecast(PAIR, asset, horizon=48, forecast_type="generation", as_of=T)
        f = r.frame
        assert len(f) == 48 and f["point"].std() > 0
        assert f[["point", "p10", "p90"]].apply(lambda c: c.between(0, CAPACITY)).all().all()
        assert r.features["ws_others_mean"] is not None  # the other unit's forecast was read
