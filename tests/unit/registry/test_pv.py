"""The PV forecaster (registry/pv.py over generation.GenerationModel) on a simulated plant whose output follows
the documented physical model (sun position, Haurwitz clear sky, AR(1) cloudiness, NOCT cell temperature,
PVWatts power clipped at the inverter): bounded, dark at night, and well ahead of same-hour persistence."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from registry import generation as gen
from registry import pv

LAT, LON, CAP = 35.6, -5.4, 2.5  # a 2.5 MW plant near Tetouan


def test_the_physical_model_is_dark_at_night_and_peaks_at_solar_noon_in_summer():
    plant = pv.simulate("2020-06-21", 24, CAP, LAT, LON)
    assert (plant.loc[plant["clear_sky"] == 0, "power"] == 0).all()
    noon = plant["clear_sky"].idxmax()
    assert noon.hour in (12, 13)  # solar noon at 12:22 UTC at 5.4 deg W
    # Haurwitz at the solstice's noon elevation 90 - 35.6 + 23.45 = 77.85 deg: 1098 x 0.9776 x e^(-0.057/0.9776)
    assert plant["clear_sky"].max() == pytest.approx(1012.7, rel=0.005)
    assert plant["power"].max() <= CAP
    # PVWatts: 1000 W/m2 at a 25 deg C cell gives the rated power; hotter cells give less
    assert pv.power(np.array([1000.0]), np.array([25.0 - 1000 * 25 / 800]), 1.0)[0] == pytest.approx(1.0, abs=1e-9)
    assert pv.power(np.array([800.0]), np.array([35.0]), 1.0)[0] < 0.8


@pytest.fixture(scope="module")
def fitted():
    plant = pv.simulate("2019-01-01", 24 * 420, CAP, LAT, LON, seed=3)
    origins = pd.date_range("2019-01-08 05:00", "2020-01-20 05:00", freq="12h", tz="UTC")
    rows = pv.plant_rows(plant, "pv1", origins, 48, CAP).dropna(subset=["y"])
    X = pv.design(rows, ["pv1"], LAT, LON)
    fit = rows["origin"] < pd.Timestamp("2019-11-01", tz="UTC")
    cal = ~fit & (rows["origin"] < pd.Timestamp("2019-12-20", tz="UTC"))
    test = rows["origin"] >= pd.Timestamp("2019-12-20", tz="UTC")
    model = gen.GenerationModel(["pv1"], {"num_leaves": 31, "min_data_in_leaf": 50},
                                {"point": 200, "p10": 200, "p50": 200, "p90": 200}, features=pv.FEATURES)
    model.fit(X[fit], rows.loc[fit, "y"].to_numpy())
    model.calibrate(X[cal], rows.loc[cal, "y"].to_numpy())
    return plant, rows[test], X[test], model


def test_forecasts_are_bounded_sorted_and_dark_at_night(fitted):
    _, rows, X, model = fitted
    pred = model.predict(X)
    assert ((pred >= 0) & (pred <= 1)).all().all()
    assert (pred["p10"] <= pred["p50"]).all() and (pred["p50"] <= pred["p90"]).all()
    night = X["clear_sky"].to_numpy() == 0
    assert night.any() and pred.loc[night, "p90"].max() < 0.02


def test_the_forecaster_beats_same_hour_persistence_and_covers_its_band(fitted):
    plant, rows, X, model = fitted
    pred = model.predict(X)
    y = rows["y"].to_numpy()
    days_back = np.ceil(((pd.DatetimeIndex(rows["target"]) - pd.DatetimeIndex(rows["origin"])) / pd.Timedelta(
        hours=1) + 1) / 24).astype(int)  # the same hour on the last day observed at the origin
    persistence = (plant["power"] / CAP).reindex(
        pd.DatetimeIndex(rows["target"]) - pd.to_timedelta(days_back, unit="D")).to_numpy()
    rmse = np.sqrt(np.mean((pred["point"].to_numpy() - y) ** 2))
    rmse_persistence = np.sqrt(np.mean((persistence - y) ** 2))
    # measured: 0.028 vs 0.061 of capacity (seed 3); the bar leaves room for other seeds and library versions
    assert np.isfinite(persistence).all() and rmse < 0.75 * rmse_persistence, (rmse, rmse_persistence)
    day = X["clear_sky"].to_numpy() > 0
    inside = (pred["p10"].to_numpy() <= y) & (y <= pred["p90"].to_numpy())
    assert 0.7 <= inside[day].mean() <= 0.92  # measured 0.747 in daylight (night rows are exactly 0)
