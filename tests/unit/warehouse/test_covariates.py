"""Validation of forecast files for the covariate store (no database)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from warehouse.covariates import (
    ISSUED_AFTER_TARGET,
    OUT_OF_RANGE,
    WEATHER_FORECAST_VARIABLES,
    select,
    target_hour,
    validate,
)
from warehouse.validate import BAD_TIMESTAMP, CONFLICT, FUTURE, NAN, NON_NUMERIC, IngestError

NOW = datetime(2011, 1, 10, tzinfo=UTC)


def frame(rows: list[tuple]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["issue_time", "target_time", "wind_speed", "wind_u"], dtype="string[pyarrow]")
    df.insert(0, "line", np.arange(2, len(df) + 2))
    return df


def test_good_rows_load_with_utc_times_and_missing_cells_as_null():
    checked = validate(frame([("2011-01-01T00:00", "2011-01-01T01:00", "4.5", ""),
                              ("2011-01-01T12:00+01:00", "2011-01-02T00:00", "", "-2")]),
                       WEATHER_FORECAST_VARIABLES, now=NOW)
    assert checked.rejects.empty and len(checked.rows) == 2
    assert checked.rows["issue_time"].tolist() == [pd.Timestamp("2011-01-01T00:00Z"), pd.Timestamp("2011-01-01T11:00Z")]
    assert checked.rows["wind_speed"].isna().tolist() == [False, True]
    assert checked.rows["wind_u"].tolist()[1] == -2.0


@pytest.mark.parametrize(("row", "reason"), [
    (("2011-01-02T00:00", "2011-01-01T23:00", "4", "1"), ISSUED_AFTER_TARGET),  # a forecast of the past
    (("2011-02-01T00:00", "2011-02-01T01:00", "4", "1"), FUTURE),  # issued after now
    (("yesterday", "2011-01-01T01:00", "4", "1"), BAD_TIMESTAMP),
    (("2011-01-01T00:00", "soon", "4", "1"), BAD_TIMESTAMP),
    (("2011-01-01T00:00", "2011-01-01T01:00", "windy", "1"), NON_NUMERIC),
    (("2011-01-01T00:00", "2011-01-01T01:00", "-3", "1"), OUT_OF_RANGE),  # a negative wind speed
    (("2011-01-01T00:00", "2011-01-01T01:00", "", "nan"), NAN),  # nothing in the row
])
def test_bad_rows_are_rejected_with_their_reason(row, reason):
    checked = validate(frame([row, ("2011-01-01T00:00", "2011-01-01T02:00", "4", "1")]), WEATHER_FORECAST_VARIABLES,
                       now=NOW)
    assert checked.rejects["reason"].tolist() == [reason] and len(checked.rows) == 1


def test_copies_of_one_issue_and_target_that_disagree_are_all_rejected():
    checked = validate(frame([("2011-01-01T00:00", "2011-01-01T01:00", "4", "1"),
                              ("2011-01-01T00:00", "2011-01-01T01:00", "5", "1"),
                              ("2011-01-01T12:00", "2011-01-01T13:00", "4", "1")]), WEATHER_FORECAST_VARIABLES, now=NOW)
    assert checked.rejects["reason"].tolist() == [CONFLICT, CONFLICT] and len(checked.rows) == 1


def test_the_same_target_from_two_issues_is_two_rows():
    checked = validate(frame([("2011-01-01T00:00", "2011-01-01T13:00", "4", "1"),
                              ("2011-01-01T12:00", "2011-01-01T13:00", "5", "1")]), WEATHER_FORECAST_VARIABLES, now=NOW)
    assert checked.rejects.empty and checked.rows["wind_speed"].tolist() == [4.0, 5.0]


def test_columns_are_checked_as_a_whole():
    df = frame([("2011-01-01T00:00", "2011-01-01T01:00", "4", "1")])
    with pytest.raises(IngestError, match="unknown column\\(s\\) load_mw; allowed: issue_time, target_time, "
                                          "temperature"):
        select(df.rename(columns={"wind_u": "load_mw"}), None, WEATHER_FORECAST_VARIABLES)
    with pytest.raises(IngestError, match="column\\(s\\) issue_time not in the file"):
        select(df.drop(columns="issue_time"), None, WEATHER_FORECAST_VARIABLES)
    with pytest.raises(IngestError, match="no forecast variable to load"):
        select(df[["line", "issue_time", "target_time"]], None, WEATHER_FORECAST_VARIABLES)
    renamed = select(df.rename(columns={"issue_time": "issued"}), {"issue_time": "issued", "wind_speed": "wind_speed"},
                     WEATHER_FORECAST_VARIABLES)
    assert list(renamed.columns) == ["line", "issue_time", "target_time", "wind_speed"]


def test_target_hour_counts_hours_since_1970_utc():
    assert target_hour(["1970-01-01T00:00Z", "1970-01-02T01:00Z", "2011-01-01T01:00+01:00"]).tolist() == [
        0, 25, 359400]
