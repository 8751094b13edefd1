"""Market covariates in the covariate store (issue 26, item 2): a market zone's day-ahead load and wind
forecasts (Nord Pool, data/epf_np_extract.csv.gz), ingested with `ems ingest-weather --forecast` under the
zone's site, read at an origin by the point-in-time rule; a forecast issued after the origin never reaches
a row at that origin; bad input writes nothing."""

from __future__ import annotations

import json

import pandas as pd
import psycopg
import pytest

from core.settings import ROOT
from tests.helpers.stack import ems
from warehouse.covariates import covariates_at, ingest_forecasts, target_hour
from warehouse.ingest import ingest_readings
from warehouse.validate import IngestError

pytestmark = pytest.mark.integration

TENANT, ASSET, SITE = "mkt", "np-system", "np-zone"
EXTRACT = ROOT / "data" / "epf_np_extract.csv.gz"
MARKET = ["load_forecast", "wind_forecast"]
TZ = "Europe/Oslo"  # NP's market time; the extract lies after the October DST change


def market_file(path, days: int = 5) -> pd.DataFrame:
    """The extract's first days as forecasts issued at 10:00 the day before (before the noon auction)."""
    df = pd.read_csv(EXTRACT, parse_dates=["timestamp"]).head(days * 24)
    out = pd.DataFrame({"issue_time": (df["timestamp"].dt.normalize() - pd.Timedelta(hours=14)),
                        "target_time": df["timestamp"], **{c: df[c] for c in MARKET}})
    out.to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%S")
    return out


@pytest.fixture(scope="module")
def loaded(stack, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mkt")
    prices = pd.read_csv(EXTRACT).head(5 * 24)[["timestamp", "price"]]
    prices.to_csv(tmp / "prices.csv", index=False)
    ingest_readings(stack, tmp / "prices.csv", TENANT, wide=True, columns=f"{ASSET}=price", site=SITE, tz=TZ)
    sent = market_file(tmp / "market.csv")
    report = json.loads(ems("ingest-weather", str(tmp / "market.csv"), "--site", SITE, "--forecast", "--tz", TZ,
                            "--json").stdout)
    return sent, report


def utc(local: str) -> pd.Timestamp:
    return pd.Timestamp(local).tz_localize(TZ).tz_convert("UTC")


def test_the_cli_loads_a_market_zones_forecasts(loaded):
    sent, report = loaded
    assert (report["inserted"], report["rejected"], report["target"]) == (120, 0, SITE)


def test_the_target_day_reads_the_issue_of_the_day_before(stack, loaded):
    sent, _ = loaded
    origin = utc("2018-10-30T11:00")  # day d-1 = 30 Oct, after its 10:00 issue, before the auction
    targets = pd.date_range(utc("2018-10-31T00:00"), periods=24, freq="h")
    got = covariates_at(stack, SITE, origin, targets, MARKET)
    want = sent[sent["target_time"].dt.strftime("%Y-%m-%d") == "2018-10-31"]
    assert got[MARKET].to_numpy().tolist() == want[MARKET].to_numpy().tolist()
    assert (got["issue_time"] == utc("2018-10-30T10:00")).all()
    early = covariates_at(stack, SITE, utc("2018-10-30T09:59"), targets, MARKET)
    assert early[MARKET].isna().all().all()  # before the issue: nothing known for day d


def test_a_market_forecast_issued_after_the_origin_never_reaches_it(stack, loaded, tmp_path):
    origin = utc("2018-10-31T11:00")
    targets = pd.date_range(utc("2018-11-01T00:00"), periods=24, freq="h")
    before = covariates_at(stack, SITE, origin, targets, MARKET)
    revised = pd.DataFrame({"issue_time": (origin + pd.Timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                            "target_time": targets.strftime("%Y-%m-%dT%H:%M:%SZ"), "load_forecast": 1.0,
                            "wind_forecast": 2.0})
    revised.to_csv(tmp_path / "revised.csv", index=False)
    assert ingest_forecasts(stack, tmp_path / "revised.csv", SITE).inserted == 24
    pd.testing.assert_frame_equal(covariates_at(stack, SITE, origin, targets, MARKET), before)
    later = covariates_at(stack, SITE, origin + pd.Timedelta(hours=1), targets, MARKET)
    assert later["load_forecast"].tolist() == [1.0] * 24 and later["wind_forecast"].tolist() == [2.0] * 24
    with psycopg.connect(stack.postgres.conninfo()) as conn:  # the asset's view carries the market columns
        rows = conn.execute(
            "SELECT count(*), min(load_forecast) FROM asset_covariate_forecasts WHERE tenant_id = %s AND "
            "asset_id = %s AND event_timestamp <= %s AND target_time >= %s AND target_time < %s",
            (TENANT, ASSET, origin.to_pydatetime(), targets[0].to_pydatetime(),
             (targets[-1] + pd.Timedelta(hours=1)).to_pydatetime())).fetchone()
    assert rows[0] == 24 and rows[1] > 1.0  # the revision (issued after the origin) is not among them


def test_feast_market_forecast_view_reads_the_same_rows(stack, store, loaded):
    """The declared view `market_forecast` (feature_repo/views.py) through Feast's point-in-time join: per
    target hour the latest issue at or before the origin, as `covariates_at` reads it; before the day's issue
    nothing is known; the view's columns are the market's, and a zone without a zonal forecast reads NULL."""
    origins = [utc("2018-10-30T11:00"), utc("2018-10-30T09:59"), utc("2018-11-01T11:00")]
    rows = []
    for origin in origins:
        day = origin.tz_convert(TZ).normalize() + pd.Timedelta(days=1)
        targets = pd.date_range(day.tz_convert("UTC"), periods=24, freq="h")
        rows += [{"tenant_id": TENANT, "asset_id": ASSET, "target_hour": int(h), "event_timestamp": origin,
                  "target_time": t} for h, t in zip(target_hour(targets), targets, strict=True)]
    entities = pd.DataFrame(rows)
    got = store.get_historical_features(
        entity_df=entities.drop(columns="target_time"),
        features=[f"market_forecast:{c}" for c in [*MARKET, "zonal_load_forecast"]]).to_df()
    got["event_timestamp"] = pd.to_datetime(got["event_timestamp"], utc=True)
    got = got.sort_values(["event_timestamp", "target_hour"]).reset_index(drop=True)
    assert len(got) == len(entities)
    for origin in origins:
        mine = got[got["event_timestamp"] == origin]
        targets = pd.DatetimeIndex(entities.loc[entities["event_timestamp"] == origin, "target_time"]).sort_values()
        want = covariates_at(stack, SITE, origin, targets, MARKET)
        assert mine[MARKET].to_numpy(dtype=float).tolist() == want[MARKET].to_numpy(dtype=float).tolist() or (
            mine[MARKET].isna().all().all() and want[MARKET].isna().all().all()), str(origin)
    assert got.loc[got["event_timestamp"] == origins[0], MARKET].notna().all().all()
    assert got.loc[got["event_timestamp"] == origins[1], MARKET].isna().all().all()  # before the 10:00 issue
    assert got["zonal_load_forecast"].isna().all()  # NP publishes none


def test_bad_market_values_are_rejected_and_nothing_is_written(stack, loaded, tmp_path):
    with psycopg.connect(stack.postgres.conninfo()) as conn:
        before = conn.execute("SELECT count(*) FROM covariate_forecasts").fetchone()[0]
    bad = tmp_path / "bad.csv"
    bad.write_text("issue_time,target_time,load_forecast,wind_forecast\n"
                   "2018-11-01T10:00:00Z,2018-11-02T00:00:00Z,high,\n"
                   "2018-11-01T10:00:00Z,2018-11-02T01:00:00Z,40000,-5\n")
    with pytest.raises(IngestError, match="nothing to load, all 2 rows were rejected: .*non_numeric_value x1.*"
                                          "|.*value_out_of_range x1.*non_numeric_value x1"):
        ingest_forecasts(stack, bad, SITE)
    with psycopg.connect(stack.postgres.conninfo()) as conn:
        assert conn.execute("SELECT count(*) FROM covariate_forecasts").fetchone()[0] == before
