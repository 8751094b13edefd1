"""Ingest validation rules on small frames built in code."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from warehouse import validate as v

NOW = datetime(2025, 1, 1, tzinfo=UTC)


def tidy(*rows) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["asset_id", "timestamp", "value"], dtype="string")
    frame.insert(0, "line", range(2, len(frame) + 2))
    return frame


def test_naive_timestamps_are_utc_unless_a_zone_is_given():
    utc = v.validate_readings(tidy(("m", "2024-06-01T12:00:00", "1")), now=NOW)
    paris = v.validate_readings(tidy(("m", "2024-06-01T12:00:00", "1")), tz="Europe/Paris", now=NOW)
    assert utc.rows["ts"][0] == pd.Timestamp("2024-06-01 12:00", tz="UTC")
    assert paris.rows["ts"][0] == pd.Timestamp("2024-06-01 10:00", tz="UTC")


def test_offsets_in_the_file_win_over_the_zone_option():
    out = v.validate_readings(tidy(("m", "2024-06-01T12:00:00+02:00", "1"), ("m", "2024-06-01T12:00:00Z", "2")),
                              tz="America/New_York", now=NOW)
    assert out.rows["ts"].tolist() == [pd.Timestamp("2024-06-01 10:00", tz="UTC"),
                                       pd.Timestamp("2024-06-01 12:00", tz="UTC")]


def test_spring_forward_local_time_is_rejected_as_nonexistent():
    out = v.validate_readings(tidy(("m", "2024-03-10T02:30:00", "1")), tz="America/New_York", now=NOW)
    assert out.rejects["reason"].tolist() == [v.NONEXISTENT_LOCAL_TIME]


def test_repeated_fall_back_label_is_summer_time_then_standard_time():
    out = v.validate_readings(tidy(("m", "2024-11-03T01:00:00", "1"), ("m", "2024-11-03T01:00:00", "2")),
                              tz="America/New_York", now=NOW)
    assert out.rejects.empty
    assert out.rows["ts"].dt.hour.tolist() == [5, 6]


def test_period_ending_labels_are_stored_as_period_starts():
    out = v.validate_readings(tidy(("m", "2024-01-01T01:00:00", "1")), now=NOW, period_ending=timedelta(hours=1))
    assert out.rows["ts"][0] == pd.Timestamp("2024-01-01 00:00", tz="UTC")


def test_period_ending_label_on_a_dst_day_keeps_the_hour():
    """Hour-ending 02:00 on a spring-forward day is the hour starting 01:00 (valid), not 02:00 (gap)."""
    out = v.validate_readings(tidy(("m", "2016-03-13T02:00:00", "1")), tz="America/New_York", now=NOW,
                              period_ending=timedelta(hours=1))
    assert out.rejects.empty and out.rows["ts"][0] == pd.Timestamp("2016-03-13 06:00", tz="UTC")


@pytest.mark.parametrize(
    ("value", "reason"),
    [("abc", v.NON_NUMERIC), ("", v.NAN), ("NaN", v.NAN), ("inf", v.NAN), ("1,5", v.NON_NUMERIC)],
)
def test_bad_values_are_rejected_with_their_reason(value, reason):
    out = v.validate_readings(tidy(("m", "2024-01-01T00:00:00", value)), now=NOW)
    assert out.rows.empty and out.rejects["reason"].tolist() == [reason]


def test_future_and_unparseable_timestamps_are_rejected():
    out = v.validate_readings(tidy(("m", "2025-01-01T00:00:01Z", "1"), ("m", "01/02/2024", "1"),
                                   ("m", "2025-01-01T00:00:00Z", "1")), now=NOW)
    assert out.rejects["reason"].tolist() == [v.FUTURE, v.BAD_TIMESTAMP]
    assert len(out.rows) == 1  # exactly now is not in the future


def test_identical_duplicates_keep_the_first_and_conflicts_reject_all():
    out = v.validate_readings(tidy(("a", "2024-01-01T00:00:00Z", "1"), ("a", "2024-01-01T00:00:00Z", "1"),
                                   ("b", "2024-01-01T00:00:00Z", "1"), ("b", "2024-01-01T00:00:00Z", "2")), now=NOW)
    assert out.rows["asset_id"].tolist() == ["a"]
    assert dict(zip(out.rejects["line"].astype(int), out.rejects["reason"], strict=True)) == {
        3: v.DUPLICATE, 4: v.CONFLICT, 5: v.CONFLICT}


@pytest.mark.parametrize("asset", ["", "has space", "x" * 129, "quote'd", "-lead"])
def test_invalid_asset_ids_are_rejected(asset):
    out = v.validate_readings(tidy((asset, "2024-01-01T00:00:00Z", "1")), now=NOW)
    assert out.rejects["reason"].tolist() == [v.BAD_ASSET]


def test_unknown_and_missing_columns_name_the_column_and_the_allowed_ones():
    frame = pd.DataFrame({"line": [2], "asset_id": ["m"], "timestamp": ["2024-01-01"], "value": ["1"], "volts": ["2"]})
    with pytest.raises(v.IngestError, match="unknown column.*volts; allowed: timestamp, asset_id, value, unit"):
        v.select_columns(frame, None, allowed=v.TIDY_REQUIRED + v.TIDY_OPTIONAL)
    with pytest.raises(v.IngestError, match="missing column.*value"):
        v.select_columns(frame.drop(columns=["value", "volts"]), None, allowed=v.TIDY_REQUIRED,
                         required=("asset_id", "value"))
    with pytest.raises(v.IngestError, match="missing column 'timestamp'"):
        v.select_columns(frame.drop(columns=["timestamp"]), None, allowed=None)


def test_wide_columns_become_assets_with_renames():
    frame = pd.DataFrame({"line": [2, 3], "timestamp": ["t1", "t2"], "zone1_power": ["1", "2"], "temp": ["9", "9"]})
    picked = v.select_columns(frame, v.parse_column_spec("zone1=zone1_power"), allowed=None)
    tidy_frame = v.wide_to_tidy(picked)
    assert tidy_frame.to_dict("list") == {"line": [2, 3], "asset_id": ["zone1", "zone1"],
                                          "timestamp": ["t1", "t2"], "value": ["1", "2"]}


def test_column_spec_parsing():
    assert v.parse_column_spec("a, b=col_b,") == {"a": "a", "b": "col_b"}
    assert v.parse_column_spec(None) is None


def test_weather_rows_keep_only_the_given_variables():
    frame = pd.DataFrame({"line": [2, 3], "timestamp": ["2024-01-01T00:00:00Z", "2024-01-01T00:10:00Z"],
                          "temperature": ["5.5", "x"]})
    out = v.validate_weather(frame, now=NOW)
    assert list(out.rows.columns) == ["ts", "temperature"] and out.rows["temperature"].tolist() == [5.5]
    assert out.rejects["reason"].tolist() == [v.NON_NUMERIC]


def test_unknown_time_zone_is_refused():
    with pytest.raises(v.IngestError, match="'Mars/Base' is not an IANA time zone"):
        v.validate_readings(tidy(("m", "2024-01-01T00:00:00", "1")), tz="Mars/Base", now=NOW)


def test_read_table_refuses_other_formats_and_empty_files(tmp_path):
    (tmp_path / "x.xlsx").write_text("nope")
    with pytest.raises(v.IngestError, match="unsupported file type"):
        v.read_table(tmp_path / "x.xlsx")
    (tmp_path / "empty.csv").write_text("asset_id,timestamp,value\n")
    with pytest.raises(v.IngestError, match="no data rows"):
        v.read_table(tmp_path / "empty.csv")
    with pytest.raises(v.IngestError, match="does not exist"):
        v.read_table(tmp_path / "missing.csv")


@pytest.mark.parametrize("texts", [
    ["12379", "11935", "12379", "", "abc", None, "12379"],  # all integers: to_numeric takes its int path
    ["1", "2.5", "1", "9007199254740993", "9007199254740993", "nan", "inf"],  # mixed: the float path
    ["-5", "18446744073709551615", "-5", "x"],  # signed and unsigned ints that fit no single int type
])
def test_values_parsed_once_per_distinct_text_equal_parsing_every_row(texts):
    """parse_values parses each distinct text once; the result must be what parsing all rows gives."""
    raw = pd.Series(texts * 3, dtype=v.STR, name="value")
    values, reason = v.parse_values(raw)
    pd.testing.assert_series_equal(values, pd.to_numeric(raw, errors="coerce").astype("float64"))
    bad = {"abc": v.NON_NUMERIC, "x": v.NON_NUMERIC, "": v.NAN, None: v.NAN, "nan": v.NAN, "inf": v.NAN}
    assert reason.dtype == v.STR
    assert reason.fillna("ok").tolist() == [bad.get(t, "ok") for t in texts * 3]


def test_read_table_keeps_empty_fields_as_empty_text(tmp_path):
    (tmp_path / "gaps.csv").write_text("asset_id,timestamp,value\nm1, 2024-01-01T00:00:00Z,\nm2,NA\n")
    frame = v.read_table(tmp_path / "gaps.csv")
    assert frame.drop(columns="line").to_dict("list") == {
        "asset_id": ["m1", "m2"], "timestamp": ["2024-01-01T00:00:00Z", "NA"], "value": ["", ""]}


def test_a_missing_weather_cell_is_its_variables_null_and_the_row_loads():
    """A missing wind speed once dropped the temperature, humidity and irradiance of its row."""
    frame = pd.DataFrame({"line": [2, 3, 4, 5], "timestamp": [f"2024-01-01T0{h}:00:00Z" for h in range(4)],
                          "temperature": ["5.5", "6.0", "", "x"], "wind_speed": ["", "nan", "NaN", "1"],
                          "humidity": ["70", "inf", "", "80"]})
    out = v.validate_weather(frame, now=NOW)
    rows = out.rows
    assert rows["temperature"].tolist() == [5.5, 6.0] and rows["wind_speed"].isna().all()
    assert rows["humidity"].tolist()[0] == 70.0 and pd.isna(rows["humidity"].tolist()[1])
    assert out.rejects["line"].tolist() == ["4", "5"]  # every variable missing; a non-numeric cell
    assert out.rejects["reason"].tolist() == [v.NAN, v.NON_NUMERIC]


def test_weather_period_ending_labels_move_to_the_period_start():
    frame = pd.DataFrame({"line": [2, 3], "timestamp": ["2024-01-01T01:00:00Z", "2024-01-01T02:00:00Z"],
                          "solar_irradiance": ["0", "12.5"]})
    out = v.validate_weather(frame, now=NOW, period_ending=timedelta(hours=1))
    assert out.rows["ts"].tolist() == [pd.Timestamp("2024-01-01 00:00", tz="UTC"),
                                       pd.Timestamp("2024-01-01 01:00", tz="UTC")]
    late = v.validate_weather(frame.assign(timestamp=["2025-01-01T00:30:00Z", "2025-01-01T01:00:00Z"]), now=NOW,
                              period_ending=timedelta(hours=1))
    assert late.rejects["reason"].tolist() == [v.FUTURE, v.FUTURE]  # the periods end after now
