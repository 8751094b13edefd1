"""The SDK's online reader returns exactly what Feast's get_online_features returns, value for value
and timestamp for timestamp, for every registered feature service (calendar on-demand view included)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from inference.online import OnlineReader
from tests.helpers.data import tetouan_slice
from tests.helpers.stack import ems
from warehouse.ingest import ingest_readings, ingest_weather
from warehouse.refresh import refresh
from warehouse.store import feature_service

pytestmark = [pytest.mark.integration, pytest.mark.warehouse]
TENANT = "onl"
SERVICES = ("forecast_basic", "forecast_advanced", "anomaly_detection")


@pytest.fixture(scope="module")
def reader(stack, store, env, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("online")
    tet = tetouan_slice(tmp / "t.csv", "2017-06-01", "2017-06-12")
    # zone1 with a site (weather) in UTC; zone3 without a site, calendar in New York
    ingest_readings(stack, tet, TENANT, wide=True, site="tet-onl", columns="zone1=zone1_power_consumption")
    ingest_readings(stack, tet, TENANT, wide=True, columns="zone3=zone3_power_consumption",
                    asset_tz="America/New_York")
    ingest_weather(stack, tet, "tet-onl", columns="temperature,humidity,solar_irradiance=general_diffuse_flows")
    refresh(stack)
    ems("materialize", "--start", "2017-06-01T00:00:00", env=env)
    return OnlineReader(store)


@pytest.mark.parametrize("service", SERVICES)
def test_reader_equals_feast_get_online_features(reader, store, service):
    assets = ["zone1", "zone3", "zone1", "missing", "zone3"]
    times = [datetime(2017, 6, 12, h, tzinfo=UTC) for h in (0, 3, 13, 22, 23)]
    rows = [{"tenant_id": TENANT, "asset_id": a, "target_time": t} for a, t in zip(assets, times, strict=True)]
    expected = store.get_online_features(features=feature_service(store, service), entity_rows=rows).to_dict(
        include_event_timestamps=True)
    got = reader.read(service, TENANT, assets, {"target_time": times}, event_timestamps=True)
    assert got == expected  # Feast's own column order varies between processes (set order); ours is the service's
    assert [c for c in got if not c.endswith("__ts")][2:] == [
        f.name for p in feature_service(store, service).feature_view_projections for f in p.features]
    plain = store.get_online_features(features=feature_service(store, service), entity_rows=rows).to_dict()
    assert reader.read(service, TENANT, assets, {"target_time": times}) == plain


def test_reader_reads_each_asset_once_and_keeps_values_typed(reader):
    plan = reader.plan("forecast_advanced")
    fetched = reader.fetch(plan, TENANT, ["zone1", "zone1", "zone3"])
    assert len(fetched) == 2  # one HMGET per distinct asset, all views at once
    values, stamps = fetched[0]
    assert isinstance(values[("load_lags", "lag_1h")], float) and values[("load_lags", "lag_1h")] > 0
    assert values[("asset_profile", "timezone")] == "UTC"  # read for the calendar, not a service output
    assert stamps["load_lags"] == int(datetime(2017, 6, 12, tzinfo=UTC).timestamp())
    assert fetched[1][0][("weather_hourly", "temperature")] is None  # zone3 has no site
    assert "timezone" not in reader.read("forecast_advanced", TENANT, ["zone1"],
                                         {"target_time": [datetime(2017, 6, 12, tzinfo=UTC)]})


def test_reader_requires_the_request_data_of_on_demand_views(reader):
    from core.errors import FeaturesUnavailableError

    with pytest.raises(FeaturesUnavailableError, match="target_time"):
        reader.read("forecast_basic", TENANT, ["zone1"])
