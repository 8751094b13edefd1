"""The calendar on-demand transformation (pure pandas)."""

import pandas as pd

from feature_repo.on_demand import calendar


def run(times, zones):
    inputs = {"target_time": list(pd.to_datetime(times, utc=True)), "timezone": zones}
    return pd.DataFrame(calendar.feature_transformation.udf(inputs))


def test_local_calendar_in_each_assets_zone():
    out = run(["2024-07-05T12:30:00Z", "2024-07-05T12:30:00Z", "2024-07-06T23:30:00Z"],
              ["America/New_York", "Asia/Tokyo", "UTC"])
    assert out["hour_of_day"].tolist() == [8, 21, 23]
    assert out["day_of_week"].tolist() == [4, 4, 5]  # Friday, Friday, Saturday
    assert out["is_weekend"].tolist() == [0, 0, 1]
    assert out["is_business_hours"].tolist() == [1, 0, 0]
    assert out["month"].tolist() == [7, 7, 7] and out["day_of_month"].tolist() == [5, 5, 6]


def test_dst_is_applied_and_unknown_zones_read_as_utc():
    out = run(["2024-01-15T13:00:00Z", "2024-07-15T13:00:00Z", "2024-07-15T13:00:00Z"],
              ["Europe/Paris", "Europe/Paris", "not/a-zone"])
    assert out["hour_of_day"].tolist() == [14, 15, 13]


def test_row_order_is_preserved_across_zones():
    zones = ["UTC", "Asia/Kolkata", "UTC", "Asia/Kolkata"]
    out = run(["2024-01-01T00:00:00Z", "2024-01-01T00:00:00Z", "2024-01-01T05:00:00Z", "2024-01-01T05:00:00Z"], zones)
    assert out["hour_of_day"].tolist() == [0, 5, 5, 10]


def test_public_holidays_of_the_zones_country_on_the_local_date():
    # 2018-07-04 is Independence Day in the US; 02:00 UTC is still July 3 in New York. Morocco's
    # Independence Day is 18 November. UTC and unknown zones have no country, so no holidays.
    out = run(["2018-07-04T16:00:00Z", "2018-07-04T02:00:00Z", "2018-07-05T16:00:00Z", "2017-11-18T10:00:00Z",
               "2018-07-04T16:00:00Z", "2018-07-04T16:00:00Z"],
              ["America/New_York", "America/New_York", "America/New_York", "Africa/Casablanca", "UTC", "not/a-zone"])
    assert out["is_holiday"].tolist() == [1, 0, 0, 1, 0, 0]


def test_zone_countries_come_from_the_tz_database():
    from feature_repo.holiday_calendar import country_of, holiday_dates

    assert country_of("America/New_York") == "US" and country_of("Europe/Paris") == "FR"
    assert country_of("UTC") is None and country_of(None) is None and country_of("US/Eastern") is None
    assert holiday_dates("ZZ", 2018) == frozenset()  # a country the holidays package does not know
