"""Serving the day-ahead price forecaster (Client.forecast with forecast_type="price").

Issued at `t` (the end of the zone's last ingested price hour): the target day is the local day after the
last complete day of prices; its 24 hours are forecast from the prices before it and the market's day-ahead
covariates for it issued by ISSUE_HOUR local on the day before (warehouse/market.py), the same rows as in
training. The result holds the target day's hours in [t, t + horizon); horizon 1..48, so an origin on day d
covers day d+1.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd

from core.errors import FeaturesUnavailableError, InvalidArgumentError, InvalidHorizonError
from inference.results import ForecastResult

MAX_HORIZON = 48


def check_horizon(horizon: int) -> int:
    if not 1 <= horizon <= MAX_HORIZON:
        raise InvalidHorizonError(f"horizon={horizon} is out of range for a price forecast: 1..{MAX_HORIZON} hours "
                                  "(the next day's 24 prices from an origin on the day before)")
    return horizon


def forecast(client, served, tenant: str, asset: str, horizon: int, quantiles: bool, t: pd.Timestamp
             ) -> ForecastResult:
    from registry.train_price import PricePyfunc
    from warehouse import market

    check_horizon(horizon)
    model = served.python_model
    if not isinstance(model, PricePyfunc):
        raise InvalidArgumentError(f"model {served.info.id} is tagged forecast_type=price but is not a price "
                                   "forecaster; train one with `ems train forecast --type price`")
    z = market.zone(client.settings, tenant, asset)
    rows, exog = market.frame(client.settings, tenant, asset, z["site"], z["timezone"], until=t, extra_day=True)
    rows = market.trailing_days(rows)
    if len(rows) < 8 * 24 or not rows["price"].iloc[-24:].isna().all():
        raise FeaturesUnavailableError(
            f"no day-ahead covariates of site {z['site']!r} issued for the day after {asset!r}'s last complete day "
            f"of prices (or fewer than 7 days of prices before it): nothing to forecast at {t.isoformat()}")
    missing = [c for c in model.exog if c not in exog]
    if missing:
        raise FeaturesUnavailableError(f"model {served.info.id} reads {', '.join(missing)}, not stored for site "
                                       f"{z['site']!r} on the target day")
    pred = model.predict(None, rows[["timestamp", "price", *model.exog]].tail(8 * 24 + 24 * 7).reset_index(drop=True))
    day = rows["timestamp"].iloc[-24:]
    target = pd.DatetimeIndex(day).tz_localize(z["timezone"]).tz_convert("UTC")
    keep = (target >= t) & (target < t + pd.Timedelta(hours=horizon))
    if not keep.any():
        raise InvalidHorizonError(f"horizon={horizon} from {t.isoformat()} does not reach the target day "
                                  f"{day.iloc[0]:%Y-%m-%d} (it starts {target[0].isoformat()})")
    hours = ((target[keep] - t) / pd.Timedelta(hours=1)).astype(int) + 1
    columns = {"timestamp": target[keep], "horizon_h": np.asarray(hours), "point": pred["point"].to_numpy()[keep]}
    if quantiles:
        columns |= {q: pred[q].to_numpy()[keep] for q in ("p10", "p50", "p90")}
        columns |= {"lower": columns["p10"], "upper": columns["p90"]}
    now = pd.Timestamp(datetime.now(UTC))
    last = rows.iloc[-25]
    return ForecastResult(
        tenant=tenant, asset=asset, _frame=columns, model_id=served.info.id, stage=served.info.stage,
        feature_service="covariate_forecasts",
        features={"price_last": float(last["price"]), **{c: float(rows[c].iloc[-24:].mean()) for c in model.exog}},
        feature_time=t, feature_age_seconds=(now - t).total_seconds(), source="warehouse",
        training_metrics={k: served.metrics[k] for k in ("mae", "naive_d1_mae", "naive_d7_mae") if k in served.metrics},
        generated_at=now, warnings=list(served.warnings))
