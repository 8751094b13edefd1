"""PV generation: the wind forecaster's design for a photovoltaic unit (issue 26, item 3), and a physical
model of a PV plant to test it on. Pure (no I/O).

Design (`design`): one row per (unit, origin T, target hour t), like registry/generation.py: the irradiance and
temperature forecast for t issued at or before T, the clear-sky irradiance of t from the sun's position at the
unit's site (`clear_sky`), the forecast's clear-sky index (forecast / clear sky), the sun's elevation, the
lead time and horizon, the hour, and the unit's recent power at T (capacity units) with its clear-sky index.
The model is generation.GenerationModel over these features: outputs in [0, 1] of capacity, quantiles sorted,
band calibrated per horizon bucket by the sub-hourly models' split-conformal rule (registry/conformal.py). At
night the clear-sky irradiance is 0 and so is every output a tree learned there.

The plant model (`simulate`), documented so a test can hold the forecaster to it:
- sun position: declination 23.45 deg x sin(360/365 x (284 + day of year)), hour angle 15 deg per hour from
  solar noon (local mean solar time from the longitude; the equation of time is ignored, under 17 minutes);
- clear-sky global horizontal irradiance: the Haurwitz model, 1098 W/m2 x cos(z) x exp(-0.057 / cos(z));
- cloudiness: a clear-sky index k in [0.05, 1] following an AR(1) process per hour (persistence 0.9);
  irradiance = k x clear sky;
- cell temperature (NOCT model, NOCT 45 C): air + irradiance x (45 - 20) / 800;
- DC power (PVWatts): capacity x irradiance / 1000 x (1 - 0.004 x (cell - 25)), clipped at the inverter's
  rating (the capacity) and at 0.
A forecast of irradiance made L hours ahead is the clear sky times the true index plus an error whose spread
grows with L (`forecast_irradiance`), the same shape of error as registry/target_weather.py gives weather.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from registry import conformal
from registry.generation import BUCKETS, UNIT, GenerationModel, bucket

SOLAR_CONSTANT_HAURWITZ = 1098.0  # W/m2
NOCT = 45.0  # deg C
GAMMA = -0.004  # power temperature coefficient, 1/K
RECENT = ("power_last", "power_mean_3h", "csi_last")
MIN_CALIBRATION_ROWS = 100  # per horizon bucket (registry/conformal.widening); below it the all-bucket figure
FEATURES = [UNIT, "ghi", "clear_sky", "csi", "sun_sin", "temperature", "lead", "horizon", "hour", *RECENT]


def sun_sin(times: pd.DatetimeIndex, latitude: float, longitude: float) -> np.ndarray:
    """Sine of the sun's elevation at the middle of each hour starting at `times` (UTC)."""
    mid = pd.DatetimeIndex(times) + pd.Timedelta(minutes=30)
    doy = mid.dayofyear.to_numpy()
    decl = np.radians(23.45) * np.sin(np.radians(360.0 / 365.0 * (284 + doy)))
    solar_hour = mid.hour.to_numpy() + mid.minute.to_numpy() / 60.0 + longitude / 15.0
    angle = np.radians(15.0 * (solar_hour - 12.0))
    lat = np.radians(latitude)
    return np.sin(lat) * np.sin(decl) + np.cos(lat) * np.cos(decl) * np.cos(angle)


def clear_sky(times: pd.DatetimeIndex, latitude: float, longitude: float) -> np.ndarray:
    """Haurwitz clear-sky global horizontal irradiance (W/m2) of each hour; 0 with the sun down."""
    cos_z = sun_sin(times, latitude, longitude)
    up = cos_z > 0.01
    out = np.zeros(len(cos_z))
    out[up] = SOLAR_CONSTANT_HAURWITZ * cos_z[up] * np.exp(-0.057 / cos_z[up])
    return out


def power(ghi: np.ndarray, air: np.ndarray, capacity: float) -> np.ndarray:
    """PVWatts DC power with the NOCT cell temperature, clipped to [0, capacity]."""
    cell = air + ghi * (NOCT - 20.0) / 800.0
    return np.clip(capacity * ghi / 1000.0 * (1.0 + GAMMA * (cell - 25.0)), 0.0, capacity)


def simulate(start: str, hours: int, capacity: float = 1.0, latitude: float = 35.6, longitude: float = -5.4,
             seed: int = 0) -> pd.DataFrame:
    """An hourly plant (index: hour start, UTC): clear sky, index k, irradiance, air temperature, power."""
    rng = np.random.default_rng(seed)
    times = pd.date_range(start, periods=hours, freq="h", tz="UTC")
    cs = clear_sky(times, latitude, longitude)
    k = np.empty(hours)
    k[0] = 0.7
    for i in range(1, hours):
        k[i] = 0.9 * k[i - 1] + 0.1 * 0.72 + rng.normal(0, 0.09)
    k = np.clip(k, 0.05, 1.0)
    doy = times.dayofyear.to_numpy()
    hour = times.hour.to_numpy()
    air = (18 + 7 * np.sin(2 * np.pi * (doy - 110) / 365) + 5 * np.sin(2 * np.pi * (hour - 9) / 24)
           + rng.normal(0, 1.0, hours))
    ghi = cs * k
    return pd.DataFrame({"clear_sky": cs, "k": k, "ghi": ghi, "air": air, "power": power(ghi, air, capacity)},
                        index=times)


def forecast_irradiance(plant: pd.DataFrame, target: pd.DatetimeIndex, lead_h: np.ndarray, seed: int = 0
                        ) -> np.ndarray:
    """Irradiance forecasts of `target` hours made `lead_h` hours ahead: clear sky x (true index + error), the
    error's sd 0.08 + 0.06 per day of lead, the index kept in [0.05, 1]."""
    rng = np.random.default_rng(seed)
    k = plant["k"].reindex(target).to_numpy()
    err = rng.normal(0, 1, len(k)) * (0.08 + 0.06 * np.asarray(lead_h, dtype=float) / 24.0)
    return plant["clear_sky"].reindex(target).to_numpy() * np.clip(k + err, 0.05, 1.0)


def design(rows: pd.DataFrame, units: list[str], latitude: float, longitude: float) -> pd.DataFrame:
    """Model matrix (FEATURES) of rows with `unit`, `origin`, `target` (hour start, UTC), `issue_time`,
    `ghi` and `temperature` forecasts for the target, and RECENT power (capacity units) at the origin."""
    codes = {u: i for i, u in enumerate(units)}
    target = pd.DatetimeIndex(pd.to_datetime(rows["target"], utc=True))
    cs = clear_sky(target, latitude, longitude)
    ghi = rows["ghi"].to_numpy(dtype=float)
    hours = lambda a, b: ((pd.to_datetime(rows[a], utc=True) - pd.to_datetime(rows[b], utc=True))  # noqa: E731
                          .dt.total_seconds() / 3600).to_numpy()
    X = pd.DataFrame({
        UNIT: rows["unit"].map(codes).astype(float).to_numpy(),
        "ghi": ghi, "clear_sky": cs, "csi": np.divide(ghi, cs, out=np.zeros_like(ghi), where=cs > 1.0),
        "sun_sin": sun_sin(target, latitude, longitude), "temperature": rows["temperature"].to_numpy(dtype=float),
        "lead": hours("target", "issue_time"), "horizon": hours("target", "origin") + 1.0, "hour": target.hour,
        **{c: rows[c].to_numpy(dtype=float) for c in RECENT},
    }, index=rows.index)
    return X[FEATURES]


def plant_rows(plant: pd.DataFrame, unit: str, origins: pd.DatetimeIndex, horizons: int, capacity: float,
               seed: int = 0) -> pd.DataFrame:
    """Rows of `design` for a simulated plant: per origin T (an hour start; readings known up to T) and target
    hour T + h - 1h (h = 1..horizons), forecasts issued at the last 00:00 or 12:00 at or before T, recent power
    from the hours before T, and the label `y` (power / capacity)."""
    frames = []
    cap_power = plant["power"] / capacity
    csi = (plant["ghi"] / plant["clear_sky"]).where(plant["clear_sky"] > 1.0, 0.0)
    for T in origins:
        issue = T.floor("12h")
        target = pd.date_range(T, periods=horizons, freq="h")
        lead = ((target - issue) / pd.Timedelta(hours=1)).to_numpy()
        past = cap_power[:T - pd.Timedelta(hours=1)]
        frames.append(pd.DataFrame({
            "unit": unit, "origin": T, "target": target, "issue_time": issue,
            "ghi": forecast_irradiance(plant, target, lead, seed + int(T.value // 3_600_000_000_000)),
            "temperature": plant["air"].reindex(target).to_numpy(),
            "power_last": past.iloc[-1] if len(past) else np.nan,
            "power_mean_3h": past.iloc[-3:].mean() if len(past) else np.nan,
            "csi_last": csi[:T - pd.Timedelta(hours=1)].iloc[-1] if len(past) else np.nan,
            "y": cap_power.reindex(target).to_numpy(),
        }))
    return pd.concat(frames, ignore_index=True)


class PVModel(GenerationModel):
    """generation.GenerationModel over FEATURES that is exactly 0 with the sun down (clear sky 0 at the middle
    of the target hour): no irradiance, no power, whatever a booster's leaf shared with dawn rows says. What a
    PV unit is trained and served with from the warehouse (registry/train_pv.py, inference/pv.py)."""

    def __init__(self, units: list[str], params: dict | None = None, rounds: dict | None = None,
                 mix: dict | None = None):
        super().__init__(units, params, rounds, features=FEATURES, mix=mix)

    def calibrate(self, X: pd.DataFrame, y: np.ndarray, coverage: float = conformal.COVERAGE) -> np.ndarray:
        """The band's widening per horizon bucket by the sub-hourly models' split-conformal rule
        (registry/conformal.widening: the finite-sample quantile of max(p10 - y, y - p90), a bucket under
        MIN_CALIBRATION_ROWS rows taking the all-bucket figure) on rows the boosters were not fitted on (daytime
        ones: at night the band is 0 by construction). The record is kept in `calibration` (calibration.json)."""
        raw = self.raw(X)
        self.calibration = conformal.widening(raw["p10"], raw["p90"], y, bucket(X["horizon"]), len(BUCKETS) - 1,
                                              MIN_CALIBRATION_ROWS, coverage)
        self.widen = np.asarray(self.calibration["by_bucket"], dtype=float)
        return self.widen

    def predict_matrix(self, x: np.ndarray, horizon: np.ndarray, threads: int | None = 1) -> np.ndarray:
        out = super().predict_matrix(x, horizon, threads)
        out[~(x[:, FEATURES.index("clear_sky")] > 0)] = 0.0
        return out


def recent_power(power: pd.Series, origins, latitude: float, longitude: float) -> dict[str, np.ndarray]:
    """RECENT at each origin T (the issue time, an hour start) from `power` (capacity units, indexed by hour
    start; hours before T are known): the last hour's power, the mean of the last 3 hours' and the last hour's
    clear-sky index of power, power / (clear sky / 1000 W/m2) (PVWatts: the irradiance index, up to the
    temperature's few %), 0 with the sun down and kept in [0, 1.5] (dawn's small clear sky). The warehouse
    holds no irradiance measured at the plant, so the index comes from power; the simulated `plant_rows` take
    the true irradiance's. NaN where the last hour is not known."""
    hourly = power.asfreq("h") if len(power) else power
    last = pd.DatetimeIndex(pd.to_datetime(origins, utc=True)) - pd.Timedelta(hours=1)
    at = hourly.index.get_indexer(last)  # -1: not an hour of power
    pick = lambda s: np.append(s.to_numpy(dtype=float), np.nan)[at]  # noqa: E731
    p_last = pick(hourly)
    cs = clear_sky(last, latitude, longitude)
    csi = np.divide(p_last, cs / 1000.0, out=np.zeros_like(p_last), where=cs > 1.0)
    return {"power_last": p_last, "power_mean_3h": pick(hourly.rolling(3, min_periods=1).mean()),
            "csi_last": np.where(np.isnan(p_last), np.nan, np.clip(csi, 0.0, 1.5))}


def same_hour_persistence(power: pd.Series, origin, target) -> np.ndarray:
    """The persistence baseline of PV: the power of the target's hour on the last day known at the origin
    (target - 24 h for horizons 1-24, target - 48 h for 25-48; the sun's course makes yesterday's hour the
    natural guess, where the wind forecaster's is the last hour). `power` indexed by hour start; NaN where
    that hour has no reading."""
    origin = pd.DatetimeIndex(pd.to_datetime(origin, utc=True))
    target = pd.DatetimeIndex(pd.to_datetime(target, utc=True))
    days = np.ceil(((target - origin) / pd.Timedelta(hours=1) + 1) / 24).astype(int)
    return power.reindex(target - pd.to_timedelta(24 * days, unit="h")).to_numpy(dtype=float)


__all__ = ["FEATURES", "PVModel", "clear_sky", "design", "plant_rows", "power", "recent_power",
           "same_hour_persistence", "simulate", "sun_sin"]
