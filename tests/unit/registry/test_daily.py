"""Daily aggregation of an hourly forecast (registry/daily.py): complete local days only, energy sums and power
averages, and the band between independence (rho 0) and the sum of quantiles (rho 1)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from registry.daily import Z90, aggregate, combine, how


def _hourly(start: str, hours: int, p50: float = 10.0, half: float = 2.0) -> pd.DataFrame:
    ts = pd.date_range(pd.Timestamp(start, tz="UTC"), periods=hours, freq="h")
    return pd.DataFrame({"timestamp": ts, "point": p50, "p10": p50 - half, "p50": p50, "p90": p50 + half})


def test_energy_sums_and_power_averages_complete_local_days_only():
    frame = _hourly("2024-01-01 05:00", 48)  # 05:00 day 1 .. 04:00 day 3 UTC: one complete UTC day
    assert (how("kWh"), how("MWh"), how("kW"), how(None), how("EUR/MWh")) == ("sum", "sum", "mean", "mean", "mean")
    mean, total = aggregate(frame, "UTC", "kW"), aggregate(frame, "UTC", "kWh")
    assert list(mean["timestamp"]) == [pd.Timestamp("2024-01-02", tz="UTC")] and list(mean["hours"]) == [24]
    assert mean["p50"].iloc[0] == 10.0 and total["p50"].iloc[0] == 240.0


def test_a_dst_day_has_23_hours():
    frame = _hourly("2024-03-30 23:00", 24)  # 31 March in Berlin: 00:00 CET .. 24:00 CEST is 23 hours
    days = aggregate(frame, "Europe/Berlin", "kWh")
    assert list(days["hours"]) == [23] and days["p50"].iloc[0] == 230.0


@pytest.mark.parametrize(("rho", "half_day"), [(1.0, 2.0 * 24), (0.0, 2.0 * np.sqrt(24))])
def test_the_band_runs_from_independence_to_the_sum_of_quantiles(rho, half_day):
    days = aggregate(_hourly("2024-01-01", 24), "UTC", "kWh", rho=rho)
    assert days["p90"].iloc[0] - days["p50"].iloc[0] == pytest.approx(half_day)
    assert days["p50"].iloc[0] - days["p10"].iloc[0] == pytest.approx(half_day)
    assert combine(np.array([3.0, 4.0]), 0.0) == pytest.approx(5.0) and combine(np.array([3.0, 4.0]), 1.0) == 7.0
    assert Z90 == pytest.approx(1.2815515655)


def test_skewed_hours_keep_a_skewed_day():
    frame = _hourly("2024-01-01", 24)
    frame["p90"] = frame["p50"] + 4.0
    day = aggregate(frame, "UTC", "kW", rho=0.5).iloc[0]
    assert day["p90"] - day["p50"] == pytest.approx(2 * (day["p50"] - day["p10"]))
