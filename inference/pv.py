"""Serving the PV forecaster (Client.forecast with forecast_type="generation" for a PV unit; inference/generation.py
hands it here): the unit's last hours of power and its site's irradiance and temperature forecasts for the target
hours, each the latest issued by the issue time (warehouse.covariates.latest_issues, `covariates_at`'s rule),
through the design of training (registry/pv.design at the unit's position, registry/train_pv.py's rows).
Results in the unit's capacity units, bounded to [0, capacity] and 0 with the sun down. A target hour with no
forecast issued by then keeps NaN inputs (never zeros) and the result says so in a warning."""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.errors import InvalidArgumentError
from inference.generation import result
from inference.results import ForecastResult
from registry import pv
from registry.train_pv import VARIABLES
from warehouse.covariates import latest_issues
from warehouse.db import connect

HOUR = pd.Timedelta(hours=1)


def inputs(settings, conn, tenant: str, asset: str, site: str, capacity: float, latitude: float, longitude: float,
           t: pd.Timestamp, horizon: int) -> tuple[pd.DataFrame, list[str]]:
    """The rows of registry/train_pv.unit_rows for origin `t` (the issue time, the end of the last complete
    hour) and the target hours [t, t + horizon h): two reads on `conn` (None: one new connection)."""
    if conn is None:
        with connect(settings) as conn:
            return inputs(settings, conn, tenant, asset, site, capacity, latitude, longitude, t, horizon)
    from warehouse import hourly

    targets = pd.date_range(t, periods=horizon, freq="h")
    power = hourly.series_by_end(settings, conn, tenant, asset, t - 3 * HOUR, t)
    power = pd.Series(power.to_numpy() / capacity, index=power.index - HOUR, dtype=float)
    found = latest_issues(conn, [site], t, targets[0], targets[-1], VARIABLES, depth=1)
    values = pd.DataFrame([(target, issue, *v) for _, target, _, issue, *v in found],
                          columns=["target", "issue_time", "ghi", "temperature"])
    values["target"] = pd.to_datetime(values["target"], utc=True).astype("datetime64[ns, UTC]")
    values = values.set_index("target").reindex(targets)
    rows = pd.DataFrame({"unit": asset, "origin": t, "target": targets,
                         "issue_time": pd.to_datetime(values["issue_time"].to_numpy(), utc=True),
                         "ghi": values["ghi"].to_numpy(dtype=float),
                         "temperature": values["temperature"].to_numpy(dtype=float)})
    for k, v in pv.recent_power(power, [t], latitude, longitude).items():
        rows[k] = np.repeat(v, horizon)
    warnings = []
    missing = rows["ghi"].isna().to_numpy()
    if missing.any():
        warnings.append(f"no irradiance forecast of site {site!r} issued by {t.isoformat()} for {int(missing.sum())} "
                        f"of {horizon} target hours (first {targets[missing][0].isoformat()}): their weather inputs "
                        "are missing (NaN)")
    if np.isnan(rows["power_last"].iloc[0]):
        warnings.append(f"no reading of {asset!r} in the hour before {t.isoformat()}: recent-power inputs missing")
    return rows, warnings


def forecast(client, served, tenant: str, asset: str, horizon: int, quantiles: bool, t: pd.Timestamp
             ) -> ForecastResult:
    """The forecast of a PV unit with a PV model `served` issued at `t`."""
    from warehouse import generation as wg

    model = served.python_model.model

    def read(conn):  # the unit (its capacity, site and position) and the inputs, on the client's connection
        unit, _ = wg.unit_and_sites(conn, tenant, asset, [])
        _, _, capacity, technology, site, latitude, longitude = unit
        if technology != "pv":
            raise InvalidArgumentError(f"model {served.info.id} forecasts PV units; {asset!r} is a {technology} "
                                       "unit: name a wind model (generation_forecaster) or leave the model out")
        rows, warnings = inputs(client.settings, conn, tenant, asset, site, float(capacity), latitude, longitude,
                                t, horizon)
        return float(capacity), latitude, longitude, rows, warnings

    capacity, latitude, longitude, given, warnings = client._read(read)
    X = pv.design(given, model.units, latitude, longitude)
    return result(served, tenant, asset, horizon, quantiles, t, given, X, capacity, warnings)
