"""Which queued entities each online view rewrites (the relation its source reads)."""

from __future__ import annotations

from feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source import PostgreSQLSource

from feature_repo import views
from warehouse.materialize import _changed_in, relation


class _View:
    def __init__(self, query: str):
        self.batch_source = PostgreSQLSource(name="s", query=query, timestamp_field="event_timestamp")


def test_every_online_view_names_the_feature_relation_it_reads():
    found = {fv.name: relation(fv) for fv in (views.load_lags, views.load_rolling, views.weather_hourly,
                                              views.asset_profile, views.load_30min, views.load_15min)}
    assert found == {"load_lags": "load_lag_features", "load_rolling": "load_rolling_features",
                     "weather_hourly": "asset_weather_features", "asset_profile": "asset_profile_features",
                     "load_30min": "load_features_30min", "load_15min": "load_features_15min"}


def test_a_source_that_is_not_one_whole_relation_has_none():
    assert relation(_View("select * from load_lag_features")) == "load_lag_features"
    assert relation(_View("SELECT * FROM a JOIN b USING (x)")) is None
    assert relation(_View("SELECT x FROM load_lag_features")) is None


def test_queued_entities_per_relation():
    queued = [("t", "a1", "load_lag_features"), ("t", "a1", "load_rolling_features"),
              ("t", "a2", "asset_weather_features"), ("t", "a3", None)]
    assert _changed_in(queued, "load_lag_features") == [("t", "a1"), ("t", "a3")]
    assert _changed_in(queued, "asset_profile_features") == [("t", "a3")]
    assert _changed_in(queued, "asset_weather_features") == [("t", "a2"), ("t", "a3")]
    assert _changed_in(queued, None) == [("t", "a1"), ("t", "a2"), ("t", "a3")]
