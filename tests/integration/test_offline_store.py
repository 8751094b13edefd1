"""The COPY + LATERAL point-in-time join and the DISTINCT ON materialization read
(warehouse/offline_store.py) return exactly what stock Feast's Postgres offline store returns, row for
row, on the same registry and data; the calendar on-demand view, computed once per distinct input,
equals Feast's per-row evaluation."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from core.settings import ROOT
from tests.helpers.data import tetouan_slice
from warehouse.ingest import ingest_readings, ingest_weather
from warehouse.refresh import refresh
from warehouse.store import get_store

pytestmark = [pytest.mark.integration, pytest.mark.warehouse]
TENANT = "pit"


@pytest.fixture(scope="module")
def stores(stack, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pit")
    tet = tetouan_slice(tmp / "t.csv", "2017-03-01", "2017-03-11")
    ingest_readings(stack, tet, TENANT, wide=True, columns="z1=zone1_power_consumption,z2=zone2_power_consumption",
                    site="pit-site")
    ingest_readings(stack, tet, TENANT, wide=True, columns="z3=zone3_power_consumption", asset_tz="America/New_York")
    ingest_weather(stack, tet, "pit-site", columns="temperature,humidity,solar_irradiance=general_diffuse_flows")
    refresh(stack)
    cfg = yaml.safe_load(stack.feast_yaml.read_text())
    assert cfg["offline_store"]["type"] == "warehouse.offline_store.EmsPostgresOfflineStore"
    cfg["offline_store"]["type"] = "postgres"  # stock Feast, same database and registry
    cfg.pop("materialization_config", None)
    stock_yaml = tmp / "stock.yaml"
    stock_yaml.write_text(yaml.safe_dump(cfg))
    from feast import FeatureStore

    cfg = yaml.safe_load(stack.feast_yaml.read_text())
    cfg["offline_store"]["hour_join"] = False
    lateral_yaml = tmp / "lateral.yaml"
    lateral_yaml.write_text(yaml.safe_dump(cfg))
    return {"hour-aligned": get_store(stack),
            "lateral-only": FeatureStore(repo_path=str(ROOT), fs_yaml_file=lateral_yaml),
            "stock": FeatureStore(repo_path=str(ROOT), fs_yaml_file=stock_yaml)}


def _entities() -> pd.DataFrame:
    t = pd.Timestamp("2017-03-01", tz="UTC")
    times = [t + pd.Timedelta(h, "h") for h in (0, 1, 5, 30, 100, 239, 240)]  # before data, exact hours, the end
    times += [t + pd.Timedelta("47h30min"), t + pd.Timedelta("300h")]  # mid-hour; beyond the TTL -> NULL
    rows = [{"tenant_id": TENANT, "asset_id": a, "event_timestamp": ts, "target_time": ts + pd.Timedelta(h, "h")}
            for a in ("z1", "z2", "z3") for ts in times for h in (0, 7)]  # z3's calendar is in New York
    rows.append({"tenant_id": TENANT, "asset_id": "nope", "event_timestamp": times[3], "target_time": times[3]})
    rows.append(rows[4])  # a duplicate entity row stays a duplicate
    return pd.DataFrame(rows)


@pytest.mark.parametrize("hour_join", ["hour-aligned", "lateral-only"])
@pytest.mark.parametrize("service", ["forecast_advanced", "anomaly_detection", "forecast_basic"])
def test_lateral_join_equals_stock_feast_row_for_row(stores, service, hour_join):
    # lateral-only: as for views whose rows are not one per key and whole hour
    ours, stock = stores[hour_join], stores["stock"]
    entities = _entities()
    fast = ours.get_historical_features(entity_df=entities, features=ours.get_feature_service(service)).to_df()
    slow = stock.get_historical_features(entity_df=entities, features=stock.get_feature_service(service)).to_df()
    keys = ["asset_id", "event_timestamp"]
    cols = sorted(slow.columns)
    assert sorted(fast.columns) == cols
    fast = fast[cols].sort_values(keys, kind="stable").reset_index(drop=True)
    slow = slow[cols].sort_values(keys, kind="stable").reset_index(drop=True)
    assert len(fast) == len(entities)
    assert fast[[c for c in cols if c not in ("lag_1h",)]].notna().to_numpy().any()  # not all NULL
    pd.testing.assert_frame_equal(fast, slow, check_dtype=False)


def test_entity_rows_keep_their_order(stores):
    ours = stores["hour-aligned"]
    entities = _entities().sample(frac=1.0, random_state=1).reset_index(drop=True)
    out = ours.get_historical_features(entity_df=entities, features=["load_lags:lag_1h"]).to_df()
    assert out["asset_id"].tolist() == entities["asset_id"].tolist()
    assert out["event_timestamp"].tolist() == entities["event_timestamp"].tolist()


@pytest.mark.parametrize("view", ["load_lags", "load_rolling", "weather_hourly", "asset_profile"])
def test_latest_rows_for_materialize_equal_stock_feast(stores, view):
    from feast.infra.offline_stores.contrib.postgres_offline_store.postgres import PostgreSQLOfflineStore

    from warehouse.offline_store import EmsPostgresOfflineStore

    ours, stock = stores["hour-aligned"], stores["stock"]
    fv = ours.get_feature_view(view)
    args = (fv.batch_source, [e.name for e in fv.entity_columns], [f.name for f in fv.features],
            fv.batch_source.timestamp_field, fv.batch_source.created_timestamp_column,
            pd.Timestamp("1970-01-01", tz="UTC").to_pydatetime(), pd.Timestamp("2017-03-06 05:00", tz="UTC"))
    fast = EmsPostgresOfflineStore.pull_latest_from_table_or_query(ours.config, *args).to_df()
    slow = PostgreSQLOfflineStore.pull_latest_from_table_or_query(stock.config, *args).to_df()
    # what stock Feast does by default (pull_latest_features false): every row, then the latest per key
    every = PostgreSQLOfflineStore.pull_all_from_table_or_query(stock.config, *args).to_df()
    stamps = [c for c in ("event_timestamp", "created") if c in every.columns]
    every = every.sort_values(stamps, ascending=False).drop_duplicates(["tenant_id", "asset_id"])
    keys = ["tenant_id", "asset_id"]
    fast = fast[fast["tenant_id"] == TENANT].sort_values(keys).reset_index(drop=True)
    assert len(fast) == (2 if view == "weather_hourly" else 3)  # z3 has no site, so no weather
    assert list(fast.columns) == [*keys, *args[2], *stamps]
    for other in (slow, every):
        other = other[other["tenant_id"] == TENANT].sort_values(keys).reset_index(drop=True)[list(fast.columns)]
        pd.testing.assert_frame_equal(fast, other, check_dtype=False)
