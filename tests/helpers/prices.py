"""A small seeded market series for the price forecaster's unit tests (registry/price.py, evaluation/epf.py)."""

import numpy as np
import pandas as pd

EXOG = ("load_forecast", "wind_forecast")


def hourly(n_days: int, seed: int = 0, level: float = 30.0) -> pd.DataFrame:
    """A daily-profile price driven by the load forecast (with noise), negative prices on windy nights."""
    rng = np.random.default_rng(seed)
    ts = pd.date_range("2016-01-01", periods=n_days * 24, freq="h")
    hour = ts.hour.to_numpy()
    load = 40_000 + 8_000 * np.sin((hour - 6) / 24 * 2 * np.pi) + rng.normal(0, 1_000, len(ts))
    wind = np.clip(rng.normal(3_000, 1_500, len(ts)), 0, None)
    p = level + 0.002 * (load - 40_000) - 0.004 * (wind - 3_000) + rng.normal(0, 0.5, len(ts))
    return pd.DataFrame({"timestamp": ts, "price": p, "load_forecast": load, "wind_forecast": wind})
