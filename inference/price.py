"""Serving the day-ahead price forecaster (Client.forecast with forecast_type="price").

Issued at `t` (the end of the zone's last ingested price hour): the target day is the local day after the
last complete day of prices; its 24 hours are forecast from the prices before it and the market's day-ahead
covariates for it issued by ISSUE_HOUR local on the day before (warehouse/market.py), the same rows as in
training. Only the days the model reads are read (the target day and its `past_days` before it), in one query
on the client's open connection, and the model predicts from them as arrays. The result holds the target day's
hours in [t, t + horizon); horizon 1..48, so an origin on day d covers day d+1.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd

from core.errors import InvalidArgumentError, InvalidHorizonError
from inference.results import ForecastResult

MAX_HORIZON = 48


def check_horizon(horizon: int) -> int:
    if not 1 <= horizon <= MAX_HORIZON:
        raise InvalidHorizonError(f"horizon={horizon} is out of range for a price forecast: 1..{MAX_HORIZON} hours "
                                  "(the next day's 24 prices from an origin on the day before)")
    return horizon


def forecast(client, served, tenant: str, asset: str, horizon: int, quantiles: bool, t: pd.Timestamp
             ) -> ForecastResult:
    from registry import price
    from registry.train_price import PricePyfunc
    from warehouse import market

    check_horizon(horizon)
    model = served.python_model
    if not isinstance(model, PricePyfunc):
        raise InvalidArgumentError(f"model {served.info.id} is tagged forecast_type=price but is not a price "
                                   "forecaster; train one with `ems train forecast --type price`")
    # the target day and the days before it that the model reads, in one query on the client's connection
    w = client._read(lambda conn: market.forecast_window(conn, tenant, asset, t, model.past_days, model.exog))
    ahead = np.asarray((w.target - t) // pd.Timedelta(hours=1))  # hours from the issue time to each target hour
    keep = (ahead >= 0) & (ahead < horizon)
    if not keep.any():
        raise InvalidHorizonError(f"horizon={horizon} from {t.isoformat()} does not reach the target day "
                                  f"{w.dates[-1]:%Y-%m-%d} (it starts {w.target[0].isoformat()})")
    pred = model.predict_days(price.Days(w.dates, w.price, w.exog, np.zeros(len(w.dates)), model.exog))
    columns = {"timestamp": w.target[keep], "horizon_h": ahead[keep] + 1, "point": pred["p50"][keep]}
    if quantiles:
        columns |= {q: pred[q][keep] for q in ("p10", "p50", "p90")}
        columns |= {"lower": columns["p10"], "upper": columns["p90"]}
    now = pd.Timestamp(datetime.now(UTC))
    return ForecastResult(
        tenant=tenant, asset=asset, _frame=columns, model_id=served.info.id, stage=served.info.stage,
        feature_service="covariate_forecasts",
        features={"price_last": float(w.price[-2, -1]),
                  **{c: float(w.exog[-1, e].mean()) for e, c in enumerate(model.exog)}},
        feature_time=t, feature_age_seconds=(now - t).total_seconds(), source="warehouse",
        training_metrics={k: served.metrics[k] for k in ("mae", "naive_d1_mae", "naive_d7_mae") if k in served.metrics},
        generated_at=now, warnings=list(served.warnings))
