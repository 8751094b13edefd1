"""Migration discovery: numbering, flavours, naming rule."""

import pytest

from warehouse.migrate import SQL_DIR, MigrationError, discover


def test_each_flavour_gets_common_files_plus_its_own():
    plain = {m.key for m in discover("plain")}
    timescale = {m.key for m in discover("timescale")}
    assert "050_readings_hourly.plain.sql" in plain and "050_readings_hourly.plain.sql" not in timescale
    assert "050_readings_hourly.timescale.sql" in timescale
    assert {k for k in plain if k.count(".") == 1} == {k for k in timescale if k.count(".") == 1}


def test_versions_are_in_order_and_unique_per_flavour():
    for flavour in ("plain", "timescale"):
        versions = [m.version for m in discover(flavour)]
        assert versions == sorted(versions) and len(versions) == len(set(versions))


def test_both_paths_define_the_same_hourly_relations_and_feature_views():
    for name in ("readings_hourly", "weather_hourly"):
        assert (SQL_DIR / f"050_{name}.plain.sql").exists() or (SQL_DIR / f"051_{name}.plain.sql").exists()
    common = [m.name for m in discover("plain") if m.flavour is None]
    assert {"load_lag_features", "load_rolling_features", "asset_weather_features"} <= set(common)


def test_badly_named_file_is_refused(tmp_path):
    (tmp_path / "1_x.sql").write_text("SELECT 1")
    with pytest.raises(MigrationError, match="NNN_<object>"):
        discover("plain", tmp_path)
