"""Train the day-ahead price forecaster of one market zone from the warehouse and register it.

The zone asset's hourly prices and the day-ahead covariates issued before each day's auction
(warehouse/market.py) → `registry.price.Days`; the last `holdout_days` are scored (each day forecast from the
days before it, by a model fitted before the first of them) against the two naive forecasts (same hour of
d-1 and of d-7); their errors give the p10/p90 bands; the registered model is refitted on every day. Parts
and weights are those chosen on the epftoolbox validation year (evaluation/epf.py: ridge 0.25 + LightGBM
0.75); windows are the last 364 days or what the zone has.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

from core.errors import InvalidSeriesError
from core.names import (
    DEFAULT_FORECAST_NAMES,
    TAG_FINGERPRINT,
    TAG_FORECAST_TYPE,
    TAG_MODEL_TYPE,
    TAG_VALIDATION,
    TAG_WINDOW_END,
    TAG_WINDOW_START,
    check_model_name,
)
from core.settings import Settings
from registry import price, tracking

logger = logging.getLogger(__name__)
WEIGHTS = {"ridge": 0.25, "tree": 0.75}  # evaluation/epf.py's choice on the NP validation year
RIDGE_PENALTY = 0.03
MIN_TRAIN_DAYS = 21


class PricePyfunc(PythonModel):
    """The MLflow pyfunc: input = hourly rows (timestamp local, price, the covariates) of complete days ending
    with the target day (its prices NaN), output = the target day's 24 rows of p10, p50, p90, point."""

    forecast_type = "price"
    past_days = price.PAST_DAYS  # the days before the target day it reads: serving reads these and the target day

    def __init__(self, forecaster: price.PriceForecaster, exog: tuple[str, ...], timezone: str):
        self.forecaster, self.exog, self.timezone = forecaster, tuple(exog), timezone
        self.features = ["price", *exog]

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        q = self.predict_days(price.forecast_days(model_input, self.exog))
        return pd.DataFrame({"p10": q["p10"], "p50": q["p50"], "p90": q["p90"], "point": q["p50"]})

    def predict_days(self, days: price.Days) -> dict[str, np.ndarray]:
        """p10, p50, p90 (24 each) of the last of `days` (the target day, its prices unknown): `predict` on
        days already in arrays, as serving reads them (inference/price.py)."""
        return {k: v[0] for k, v in self.forecaster.quantiles(days, [len(days) - 1]).items()}


@dataclass
class PriceTrainResult:
    model_id: str
    run_id: str
    model_uri: str
    metrics: dict
    timings: dict


def fit(days: price.Days, holdout_days: int) -> tuple[price.PriceForecaster, dict, np.ndarray, np.ndarray]:
    """Score on the last `holdout_days` (fitted before them), then refit on all days; (model, metrics, held-out
    errors, held-out forecasts)."""
    n = len(days)
    end = n - holdout_days
    if end - price.FIRST_TARGET < MIN_TRAIN_DAYS:
        raise InvalidSeriesError(f"{n} complete days of prices and covariates: too few to train and hold out "
                                 f"{holdout_days} (need {MIN_TRAIN_DAYS + price.FIRST_TARGET + holdout_days})")

    def model(last: int) -> price.PriceForecaster:
        w = min(364, last - price.FIRST_TARGET)
        return price.PriceForecaster("zone", dict(WEIGHTS), RIDGE_PENALTY, (w,)).fit(days, last)

    first = model(end)
    idx = np.arange(end, n)
    pred, y = first.point(days, idx), days.price[idx]
    errors = y - pred
    d1, d7 = days.price[idx - 1], days.price[idx - 7]
    lo, hi = np.quantile(errors, 0.1, axis=0), np.quantile(errors, 0.9, axis=0)
    metrics = {"mae": float(np.abs(errors).mean()), "rmse": float(np.sqrt((errors ** 2).mean())),
               "naive_d1_mae": float(np.abs(y - d1).mean()), "naive_d7_mae": float(np.abs(y - d7).mean()),
               "coverage_p10_p90_in_sample": float(((y >= pred + lo) & (y <= pred + hi)).mean()),
               "train_days": float(end - price.FIRST_TARGET), "holdout_days": float(holdout_days)}
    final = model(n)
    final.residuals = errors
    return final, metrics, errors, pred


def band_figure(days: price.Days, holdout_days: int, pred: np.ndarray, errors: np.ndarray):
    """The held-out days: actual, forecast and its p10–p90 band (from the same errors), naive d-1."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    idx = np.arange(len(days) - holdout_days, len(days))
    t = pd.date_range(days.dates[idx[0]], periods=holdout_days * price.HOURS, freq="h")
    lo, hi = np.quantile(errors, 0.1, axis=0), np.quantile(errors, 0.9, axis=0)
    fig, ax = plt.subplots(figsize=(11, 4))
    ax.fill_between(t, (pred + lo).ravel(), (pred + hi).ravel(), alpha=0.25, label="p10–p90")
    ax.plot(t, days.price[idx].ravel(), color="black", lw=1.4, label="actual")
    ax.plot(t, pred.ravel(), lw=1.2, label="forecast (day before)")
    ax.plot(t, days.price[idx - 1].ravel(), ":", lw=1, label="naive d-1")
    ax.set_title("held-out days, each forecast the day before")
    ax.legend(loc="upper left", fontsize=8, ncol=4)
    fig.tight_layout()
    return fig


def train(settings: Settings, store, tenant: str, asset: str, name: str = DEFAULT_FORECAST_NAMES["price"],
          holdout_days: int = 7, progress=None) -> PriceTrainResult:
    import mlflow
    from mlflow.models import infer_signature

    from warehouse import market

    check_model_name(name)
    tick = progress or (lambda *_: None)
    t0 = time.perf_counter()
    tick("reading prices and covariates", 0, 3)
    z = market.zone(settings, tenant, asset)
    rows, exog = market.frame(settings, tenant, asset, z["site"], z["timezone"])
    if not exog:
        raise InvalidSeriesError(f"no day-ahead covariates stored for site {z['site']!r} of {asset!r}: ingest the "
                                 "market's load/wind forecasts with `ems ingest-weather --site S --forecast`")
    rows = market.trailing_days(rows)
    days = price.to_days(rows, exog)
    timings = {"training_set_s": time.perf_counter() - t0}
    tick("fitting", 1, 3)
    t1 = time.perf_counter()
    forecaster, metrics, errors, held = fit(days, holdout_days)
    timings["fit_s"] = time.perf_counter() - t1
    tick("registering", 2, 3)
    tags = {"model_type": "forecast", TAG_FORECAST_TYPE: "price"}
    with tracking.training_run(settings, store, tenant, f"forecast {name}", tags) as run:
        mlflow.log_params({"asset": asset, "site": z["site"], "timezone": z["timezone"], "covariates": ",".join(exog),
                           "weights": ",".join(f"{k}={v}" for k, v in WEIGHTS.items()), "ridge_penalty": RIDGE_PENALTY,
                           "issue_hour_local": market.ISSUE_HOUR, "days": len(days)})
        python_model = PricePyfunc(forecaster, exog, z["timezone"])
        example = rows.tail(8 * 24).reset_index(drop=True)
        example.loc[example.index[-24:], "price"] = np.nan
        out = python_model.predict(None, example)
        info = mlflow.pyfunc.log_model(name="model", python_model=python_model,
                                       signature=infer_signature(example, out), input_example=example.head(5),
                                       pip_requirements=tracking.requirements("lightgbm", "scikit-learn"),
                                       metadata={"forecast_type": "price", "covariates": list(exog)})
        tracking.log_figure(band_figure(days, holdout_days, held, errors), "forecast_band")
        timings["total_s"] = time.perf_counter() - t0
        mlflow.log_metrics({**metrics, **timings})
        vtags = {TAG_MODEL_TYPE: "forecast", TAG_FORECAST_TYPE: "price",
                 TAG_WINDOW_START: str(days.dates[0].date()), TAG_WINDOW_END: str(days.dates[-1].date()),
                 TAG_FINGERPRINT: tracking.fingerprint(rows),
                 TAG_VALIDATION: "beats_naive" if metrics["mae"] < min(metrics["naive_d1_mae"], metrics["naive_d7_mae"])
                 else "worse_than_naive"}
        version = tracking.register(settings, tenant, name, info.model_uri, run.info.run_id, vtags)
    tick("done", 3, 3)
    logger.info("registered %s (%s days, MAE %.3f)", version.id, len(days), metrics["mae"])
    return PriceTrainResult(version.id, run.info.run_id, info.model_uri, metrics, timings)
