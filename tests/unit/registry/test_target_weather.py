"""The forecast error added to observed weather when no archived forecast exists (registry/target_weather.py)."""

from __future__ import annotations

import numpy as np
import pytest

from registry.target_weather import NOISE, model_names, noise


def test_the_error_grows_with_the_lead_and_is_seeded():
    values = np.full(20_000, 15.0)
    issues = np.arange(20_000) // 24  # 24 target hours per issue
    day1 = noise(values, "temperature", np.full(20_000, 24.0), issues)
    week = noise(values, "temperature", np.full(20_000, 168.0), issues)
    sd0, growth, _ = NOISE["temperature"]
    assert np.std(day1 - 15.0) == pytest.approx(sd0 + growth, rel=0.1)
    assert np.std(week - 15.0) == pytest.approx(sd0 + 7 * growth, rel=0.1)
    np.testing.assert_array_equal(day1, noise(values, "temperature", np.full(20_000, 24.0), issues))


def test_half_of_the_error_is_shared_by_the_hours_of_one_issue():
    values = np.zeros(48_000)
    issues = np.arange(48_000) // 48
    e = noise(values, "temperature", np.full(48_000, 24.0), issues).reshape(-1, 48)
    within = np.corrcoef(e[:, 0], e[:, 1])[0, 1]  # two hours of the same issue
    assert within == pytest.approx(0.5, abs=0.05)


def test_bounded_variables_stay_physical_and_irradiance_errs_in_proportion():
    humidity = noise(np.full(5000, 98.0), "humidity", np.full(5000, 100.0), np.arange(5000))
    assert humidity.max() <= 100.0 and humidity.min() >= 0.0
    night = noise(np.zeros(1000), "solar_irradiance", np.full(1000, 24.0), np.arange(1000))
    assert (night == 0.0).all()  # no sun at night in any forecast
    wind = noise(np.full(5000, 0.5), "wind_speed", np.full(5000, 24.0), np.arange(5000))
    assert wind.min() >= 0.0


def test_model_inputs_are_named_apart_from_the_observed_weather():
    assert model_names(["temperature", "wind_speed"]) == ["target_temperature", "target_wind_speed"]
