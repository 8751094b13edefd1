"""The online store as a 3-master Redis Cluster on loopback: `ems materialize` writes into it and every
read path (Feast's get_online_features, the SDK's OnlineReader, a forecast) returns exactly what the
single-node Redis of the session returns for the same data.

The cluster's Feast yaml is the session's with `online_store` pointed at the cluster and its own file
registry (applied with `feast apply`): Feast records materialization intervals in the registry, so
sharing the session's SQL registry would make the single-node store's incremental runs skip data."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
import redis
import yaml
from redis.cluster import RedisCluster

from core.errors import FeaturesUnavailableError
from core.settings import Settings
from inference.client import Client
from inference.features import AssetSource, forecast_inputs
from inference.online import OnlineReader
from registry import lifecycle, train_forecast
from registry.training_data import SplitConfig
from stack.redis_cluster import LocalRedisCluster
from tests.helpers.data import tetouan_slice
from tests.helpers.stack import TEST_PORTS, ems, feast
from warehouse.ingest import ingest_readings, ingest_weather
from warehouse.refresh import refresh
from warehouse.store import feature_service, get_store, online_features, service_columns

pytestmark = pytest.mark.integration
TENANT = "rcl"
SERVICES = ("forecast_basic", "forecast_advanced", "anomaly_detection")
PORTS = [TEST_PORTS["redis_cluster"] + i for i in range(3)]
ZONES = ["zone1_power_consumption", "zone2_power_consumption", "zone3_power_consumption"]
# The three Tetouan zones under three names each: with a weather site, in New York time, in Paris time.
# Keys of ids this alike do not spread evenly (CRC16 is linear); these nine cover all three masters.
GROUPS = {"tet": {"site": "tet-rcl"}, "nyc": {"asset_tz": "America/New_York"}, "par": {"asset_tz": "Europe/Paris"}}
ASSETS = [f"{g}-zone{i}" for g in GROUPS for i in (1, 2, 3)]
START = "2017-05-08T00:00:00"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with LocalRedisCluster(PORTS, tmp_path_factory.mktemp("redis-cluster")) as c:
        yield c


@pytest.fixture(scope="module")
def single(stack, store, tmp_path_factory):
    """A real slice ingested once and materialized into the session's single-node Redis."""
    from warehouse.store import materialize

    tet = tetouan_slice(tmp_path_factory.mktemp("redis-cluster-data") / "t.csv", START[:10], "2017-06-12")
    for group, options in GROUPS.items():
        columns = ",".join(f"{group}-zone{i}={col}" for i, col in enumerate(ZONES, start=1))
        ingest_readings(stack, tet, TENANT, wide=True, columns=columns, **options)
    ingest_weather(stack, tet, "tet-rcl", columns="temperature,humidity,solar_irradiance=general_diffuse_flows")
    refresh(stack)
    materialize(stack, start=datetime.fromisoformat(START).replace(tzinfo=UTC), store=store)
    return store


@pytest.fixture(scope="module")
def cluster_settings(env, single, cluster, tmp_path_factory):
    """The session's Feast yaml with the cluster as online store and its own registry, applied and
    materialized with the real CLIs."""
    tmp = tmp_path_factory.mktemp("redis-cluster-feast")
    cfg = yaml.safe_load(open(env["FEAST_FS_YAML_FILE_PATH"]).read())
    cfg["online_store"] = cluster.online_store_config()
    cfg["registry"] = {"registry_type": "file", "path": str(tmp / "registry.db"), "cache_ttl_seconds": 60}
    path = tmp / "feature_store.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    cluster_env = {**env, "FEAST_FS_YAML_FILE_PATH": str(path)}
    feast("apply", env=cluster_env)
    ems("materialize", "--start", START, env=cluster_env)
    return Settings(FEAST_FS_YAML_FILE_PATH=str(path))


@pytest.fixture(scope="module")
def cluster_store(cluster_settings):
    return get_store(cluster_settings)


def _rows(assets):
    times = [datetime(2017, 6, 11, h % 24, tzinfo=UTC) for h in range(0, 3 * len(assets), 3)]
    return [{"tenant_id": TENANT, "asset_id": a, "target_time": t} for a, t in zip(assets, times, strict=True)], times


def test_settings_read_the_cluster_form_of_the_feast_yaml(cluster_settings, cluster):
    address = cluster_settings.redis
    assert address.cluster and list(address.nodes) == cluster.nodes
    assert (address.host, address.port) == cluster.nodes[0]


@pytest.mark.parametrize("service", SERVICES)
def test_feast_reads_from_the_cluster_what_single_redis_holds(single, cluster_store, service):
    rows, _ = _rows([*ASSETS, "missing"])
    fs = feature_service(single, service)
    expected = single.get_online_features(features=fs, entity_rows=rows).to_dict(include_event_timestamps=True)
    got = cluster_store.get_online_features(features=feature_service(cluster_store, service),
                                            entity_rows=rows).to_dict(include_event_timestamps=True)
    assert got == expected
    stored = service_columns(single, service)[0][0]  # a feature from Redis, not from the on-demand view
    assert all(v is not None for v in expected[stored][:-1]) and expected[stored][-1] is None


@pytest.mark.parametrize("service", SERVICES)
def test_sdk_reader_on_the_cluster_equals_feast_on_single_redis(single, cluster_store, service):
    rows, times = _rows([*ASSETS, "tet-zone1", "missing"])
    expected = single.get_online_features(features=feature_service(single, service), entity_rows=rows).to_dict(
        include_event_timestamps=True)
    reader = OnlineReader(cluster_store)
    got = reader.read(service, TENANT, [r["asset_id"] for r in rows], {"target_time": times}, event_timestamps=True)
    assert isinstance(reader.redis, RedisCluster)
    assert got == expected


def test_each_entity_hash_is_byte_identical_and_spread_over_the_three_masters(stack, single, cluster_store, cluster):
    reader = OnlineReader(cluster_store)
    one = redis.Redis(stack.redis.host, stack.redis.port, username=stack.redis.username, password=stack.redis.password)
    keys = [reader._key(TENANT, a) for a in ASSETS]
    for asset, key in zip(ASSETS, keys, strict=True):
        assert reader.redis.hgetall(key) == one.hgetall(key) != {}, asset
    held = {port: set(redis.Redis("127.0.0.1", port).keys()) for port in PORTS}  # asked node by node
    for key in keys:
        assert [port for port in PORTS if key in held[port]] == [reader.redis.get_node_from_key(key).port]
    assert all(held[port] & set(keys) for port in PORTS), cluster.key_counts()  # every master has some


@pytest.fixture(scope="module")
def forecaster(stack, single):
    """A small production forecaster of the tenant (trained on tet-zone1 alone)."""
    split = SplitConfig(history_days=28, holdout_days=7, issue_every_h=12, horizons_per_issue=12)
    trained = train_forecast.train(stack, single, TENANT, ["tet-zone1"], split=split,
                                   boosting=train_forecast.BoosterConfig(num_boost_round=30))
    lifecycle.promote(lifecycle.client(stack.mlflow_tracking_uri), trained.model_id, "production", force=True)
    return trained.model_id


def test_forecast_from_the_cluster_equals_forecast_from_single_redis(stack, single, cluster_settings, cluster_store,
                                                                     forecaster):
    on_single = Client(stack, single, model_ttl_seconds=0).forecast(TENANT, "tet-zone1", horizon=24)
    on_cluster = Client(cluster_settings, cluster_store, model_ttl_seconds=0).forecast(TENANT, "tet-zone1", horizon=24)
    assert on_cluster.model_id == on_single.model_id == forecaster
    assert on_single.source == on_cluster.source == "online"
    assert on_cluster.warnings == on_single.warnings  # only the model's validation warning, if any
    assert on_cluster.features == on_single.features
    pd.testing.assert_frame_equal(on_cluster.frame, on_single.frame)
    for asset in ("nyc-zone2", "par-zone3"):  # every service input, not only the model's
        a = forecast_inputs(AssetSource(stack, single, TENANT, asset), "forecast_advanced", 24)
        b = forecast_inputs(AssetSource(cluster_settings, cluster_store, TENANT, asset), "forecast_advanced",
                            24)
        assert a.source == b.source == "online" and a.values == b.values
        for column in a.columns:
            np.testing.assert_array_equal(a.columns[column], b.columns[column])


def test_an_unreachable_cluster_is_one_clear_error_and_forecasts_fall_back(cluster_settings, forecaster, tmp_path):
    cfg = yaml.safe_load(cluster_settings.feast_yaml.read_text())
    cfg["online_store"]["connection_string"] = "127.0.0.1:1,127.0.0.1:2"
    path = tmp_path / "feature_store.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    dead = Settings(FEAST_FS_YAML_FILE_PATH=str(path))
    store = get_store(dead)
    reader = OnlineReader(store)  # connects on first read
    with pytest.raises(redis.ConnectionError, match="127.0.0.1:1"):
        reader.fetch(reader.plan("forecast_basic"), TENANT, ["tet-zone1", "tet-zone2"])
    with pytest.raises(FeaturesUnavailableError, match="online store unreachable"):
        online_features(dead, "forecast_basic", TENANT, ["tet-zone1"])
    f = Client(dead, store, model_ttl_seconds=0).forecast(TENANT, "tet-zone1", horizon=6)
    assert f.source == "offline" and f.fallback and any("online store unreachable" in w for w in f.warnings)
    assert f.model_id == forecaster
