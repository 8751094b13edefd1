"""The covariate store (weather forecasts with their issue time) on the session's schema path: ingest through
the CLI, the point-in-time rule (per target hour the latest issue at or before the origin) in SQL and through
Feast's `weather_forecast` view (our offline store and stock Feast), later issues that must not leak, and
bad input that writes nothing."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import psycopg
import pytest
import yaml

from core.settings import ROOT
from tests.helpers.data import tetouan_slice
from tests.helpers.stack import ems
from warehouse.covariates import covariates_at, ingest_forecasts, target_hour
from warehouse.ingest import ingest_readings
from warehouse.store import get_store
from warehouse.validate import IngestError

pytestmark = [pytest.mark.integration, pytest.mark.warehouse]

TENANT, ASSET, SITE = "cov", "farm1", "cov-wp1"
FILE = ROOT / "data" / "gefcom2012_wind_forecasts_wp1.csv.gz"
VARIABLES = ["wind_speed", "wind_u", "wind_v"]
ORIGIN = pd.Timestamp("2010-12-29T05:00Z")  # between the 00:00 and 12:00 issues


@pytest.fixture(scope="module")
def loaded(stack, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cov")
    ingest_readings(stack, tetouan_slice(tmp / "t.csv", "2017-03-01", "2017-03-02"), TENANT, wide=True,
                    columns=f"{ASSET}=zone1_power_consumption", site=SITE)
    first = json.loads(ems("ingest-weather", str(FILE), "--site", SITE, "--forecast", "--json").stdout)
    again = json.loads(ems("ingest-weather", str(FILE), "--site", SITE, "--forecast", "--json").stdout)
    return first, again


def reference(origin: pd.Timestamp, targets: pd.DatetimeIndex) -> pd.DataFrame:
    """The rule in pandas on the file itself: per target, the row of the latest issue at or before origin."""
    df = pd.read_csv(FILE, parse_dates=["issue_time", "target_time"])
    df["issue_time"] = df["issue_time"].dt.tz_localize("UTC")
    df["target_time"] = df["target_time"].dt.tz_localize("UTC")
    df = df.dropna(subset=VARIABLES, how="all")  # an issue with no values is no issue
    known = df[df["issue_time"] <= origin].sort_values("issue_time").groupby("target_time").tail(1)
    return known.set_index("target_time").reindex(targets.rename("target_time"))


def test_the_cli_loads_every_row_once_and_a_rerun_changes_nothing(loaded):
    """The file as released has two issues with no values (72 rows, all empty): rejected as missing, so
    their target hours fall back to the issue before them."""
    first, again = loaded
    assert (first["inserted"], first["rejected"], first["target"]) == (600, 72, SITE)
    assert (again["inserted"], again["updated"], again["unchanged"], again["rejected"]) == (0, 0, 600, 72)


def test_each_target_hour_takes_the_latest_issue_at_or_before_the_origin(stack, loaded):
    targets = pd.date_range(ORIGIN + pd.Timedelta(hours=1), periods=48, freq="h")
    got = covariates_at(stack, SITE, ORIGIN, targets, VARIABLES)
    want = reference(ORIGIN, targets)
    assert got["issue_time"].max() == pd.Timestamp("2010-12-29T00:00Z")  # not the 12:00 issue
    assert got["issue_time"].notna().sum() == 43  # the 00:00 issue reaches 2010-12-31T00:00 only
    pd.testing.assert_frame_equal(got[VARIABLES], want[VARIABLES], check_dtype=False, check_freq=False)
    pd.testing.assert_series_equal(got["issue_time"], want["issue_time"], check_dtype=False, check_freq=False)


def test_a_later_issue_does_not_leak_into_an_earlier_origin(stack, loaded, tmp_path):
    targets = pd.date_range(ORIGIN + pd.Timedelta(hours=1), periods=6, freq="h")
    before = covariates_at(stack, SITE, ORIGIN, targets, VARIABLES)
    late = pd.DataFrame({"issue_time": (ORIGIN + pd.Timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                         "target_time": targets.strftime("%Y-%m-%dT%H:%M:%SZ"), "wind_speed": 99.0})
    late.to_csv(tmp_path / "late.csv", index=False)
    report = ingest_forecasts(stack, tmp_path / "late.csv", SITE)
    assert report.inserted == 6
    after = covariates_at(stack, SITE, ORIGIN, targets, VARIABLES)
    pd.testing.assert_frame_equal(after, before)  # issued after the origin: invisible at the origin
    later = covariates_at(stack, SITE, ORIGIN + pd.Timedelta(hours=1), targets, VARIABLES)
    assert later["wind_speed"].tolist() == [99.0] * 6 and later["wind_u"].isna().all()  # its own NULLs


@pytest.mark.parametrize("offline_store", ["ours", "stock"])
def test_feast_point_in_time_join_gives_the_same_rows(stack, loaded, tmp_path, offline_store):
    """`get_historical_features` on `weather_forecast` with entity rows (tenant, asset, target_hour, origin):
    Feast's latest-row-at-or-before rule on issue_time is the store's rule, with our offline store and stock
    Feast's; a forecast issued more than the view's TTL (2 days) before the origin is not used."""
    store = get_store(stack)
    if offline_store == "stock":
        from feast import FeatureStore

        cfg = yaml.safe_load(stack.feast_yaml.read_text())
        cfg["offline_store"]["type"] = "postgres"
        cfg.pop("materialization_config", None)
        (tmp_path / "stock.yaml").write_text(yaml.safe_dump(cfg))
        store = FeatureStore(repo_path=str(ROOT), fs_yaml_file=tmp_path / "stock.yaml")
    origins = [ORIGIN, ORIGIN + pd.Timedelta(hours=12), pd.Timestamp("2011-01-06T00:00Z")]  # the last: stale
    rows = []
    for origin in origins:
        targets = pd.date_range(origin + pd.Timedelta(hours=1), periods=24, freq="h")
        rows += [{"tenant_id": TENANT, "asset_id": ASSET, "target_hour": int(h), "event_timestamp": origin,
                  "target_time": t} for h, t in zip(target_hour(targets), targets, strict=True)]
    entities = pd.DataFrame(rows)
    got = store.get_historical_features(
        entity_df=entities.drop(columns="target_time"),
        features=[f"weather_forecast:{v}" for v in VARIABLES]).to_df()
    got["event_timestamp"] = pd.to_datetime(got["event_timestamp"], utc=True)  # stock Feast may hand back naive UTC
    got = got.sort_values(["event_timestamp", "target_hour"]).reset_index(drop=True)
    assert len(got) == len(entities)
    for origin in origins:
        mine = got[got["event_timestamp"] == origin]
        targets = pd.DatetimeIndex(entities.loc[entities["event_timestamp"] == origin, "target_time"])
        want = covariates_at(stack, SITE, origin, targets, VARIABLES)
        stale = want["issue_time"] < origin - pd.Timedelta(days=2)
        want.loc[stale, VARIABLES] = float("nan")
        np.testing.assert_allclose(mine[VARIABLES].to_numpy(dtype=float), want[VARIABLES].to_numpy(dtype=float),
                                   rtol=1e-9, equal_nan=True, err_msg=str(origin))
    assert got.loc[got["event_timestamp"] == origins[-1], VARIABLES].isna().all().all()  # nothing issued lately
    assert got.loc[got["event_timestamp"] == ORIGIN, "wind_speed"].notna().all()


def test_bad_input_is_one_error_and_writes_nothing(stack, loaded, tmp_path):
    with psycopg.connect(stack.postgres.conninfo()) as conn:
        before = conn.execute("SELECT count(*) FROM covariate_forecasts").fetchone()[0]
    bad = tmp_path / "bad.csv"
    bad.write_text("issue_time,target_time,wind_speed\n2011-01-02T00:00:00Z,2011-01-01T00:00:00Z,4\n"
                   "2011-01-02T00:00:00Z,2011-01-02T01:00:00Z,fast\n")
    with pytest.raises(IngestError, match="nothing to load, all 2 rows were rejected: issued_after_target x1 .*"
                                          "non_numeric_value x1"):
        ingest_forecasts(stack, bad, SITE)
    proc = ems("ingest-weather", str(bad), "--site", SITE, "--forecast", "--period-ending", "1h", check=False)
    assert proc.returncode == 1 and proc.stderr.startswith("error: --period-ending 1h does not apply to --forecast")
    proc = ems("ingest-weather", str(FILE), "--site", "bad site", "--forecast", check=False)
    assert proc.returncode == 1 and "site" in proc.stderr and "'bad site'" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    with psycopg.connect(stack.postgres.conninfo()) as conn:
        assert conn.execute("SELECT count(*) FROM covariate_forecasts").fetchone()[0] == before
