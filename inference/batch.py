"""Batch scoring: forecast every asset of a tenant with one model version, in this process or on Spark.

The model version is resolved once, on the driver (the production one unless `model` names another),
and every asset is forecast with that id, so a promotion during the run cannot mix versions. On Spark
the assets are spread over partitions (`mapInPandas`); each partition builds one SDK `Client` and calls
the same `Client.forecast` as a per-asset call (features from the online store, the calendar of each
target hour, the boosters), so a batch row equals the per-asset forecast by construction, and the
expensive parts (feature reads, model load, predictions) run on the executors. Each asset's rows go to
the forecast log (`forecast_log`: model id, issue time = feature time, one row per target hour; idempotent,
so a rerun after a failure replaces, never duplicates) and, with `out`, to Parquet. The Spark session is
the one the Feast yaml's `batch_engine: spark.engine` block describes (warehouse/spark.py).

`interval_minutes` 15 or 30 forecasts every asset with the step model (`load_forecaster_{N}min`, resolved once
like the hourly one), 1440 rolls the hourly model's forecast up to each asset's local days, as
`Client.forecast(..., interval_minutes=N)` does per asset; an asset whose readings are coarser than the interval
gets that call's error on its row. The forecast log holds hourly rows only (a target hour joined with its hourly
mean, horizon_h 1..168): a non-hourly batch is not logged (`check_loggable`), and Spark scores hourly only.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from core.errors import EmsError, InvalidArgumentError
from core.names import DEFAULT_FORECAST_NAME, STEP_INTERVALS, check_interval, check_tenant_id, step_model_name
from inference import checks

logger = logging.getLogger(__name__)

ENGINES = ("local", "spark")
LOG_INTERVAL = 60  # the forecast log's step: one row per target hour, scored against that hour's mean
SPARK_INTERVALS = (60,)
COLUMNS = {"tenant_id": "string", "asset_id": "string", "model_id": "string", "feature_time": "timestamp",
           "timestamp": "timestamp", "horizon_h": "int", "horizon_steps": "int", "point": "double", "p10": "double",
           "p50": "double", "p90": "double", "source": "string", "error": "string"}


def check_loggable(interval: int) -> None:
    """One clear error for a forecast log write at another step than the log's hour."""
    if interval != LOG_INTERVAL:
        raise InvalidArgumentError(f"interval_minutes={interval} cannot go to the forecast log: it holds hourly rows "
                                   f"only (each target hour scored against that hour's mean, horizon_h 1..168); "
                                   f"log forecasts at interval_minutes={LOG_INTERVAL}, or do not log this one")


@dataclass
class BatchForecast:
    """The rows of a batch run (COLUMNS; `error` set on the one row of an asset that could not be forecast)."""

    tenant: str
    model_id: str
    engine: str
    rows: pd.DataFrame
    seconds: float
    skipped: dict[str, str] = field(default_factory=dict)  # asset -> reason
    interval_minutes: int = 60
    logged: bool = False  # the rows went to the forecast log

    @property
    def assets(self) -> int:
        return int(self.rows.loc[self.rows["error"].isna(), "asset_id"].nunique())


def forecast_all(settings, tenant: str, horizon: int = 24, model: str | None = None, engine: str = "local",
                 out: Path | None = None, log: bool = True, store=None, assets: list[str] | None = None,
                 interval_minutes: int = 60) -> BatchForecast:
    """Forecast the next `horizon` hours of every asset of `tenant` (or of `assets`) at `interval_minutes`
    (15 | 30 | 60 | 1440) with one model version (`model`: an id or name; default the production
    `load_forecaster`, or `load_forecaster_{N}min` at 15/30) on `engine` (local | spark; spark: 60 only); rows
    go to the forecast log (`log`: hourly only) and, with `out`, to `out`/tenant=<tenant>/ as Parquet."""
    from inference.client import Client
    from inference.intervals import check_model_interval
    from warehouse.point_in_time import tenant_assets

    check_tenant_id(tenant)
    horizon = checks.horizon(horizon)
    interval = check_interval(interval_minutes)
    if engine not in ENGINES:
        raise InvalidArgumentError(f"engine={engine!r} is not one of {', '.join(ENGINES)}")
    if engine == "spark" and interval not in SPARK_INTERVALS:
        raise InvalidArgumentError(f"engine='spark' with interval_minutes={interval} is not supported: Spark scores "
                                   f"interval_minutes={SPARK_INTERVALS[0]} only; use engine='local' for 15, 30 and "
                                   "1440")
    if log:
        check_loggable(interval)
    assets = tenant_assets(settings, tenant, assets)
    client = Client(settings, store=store)
    default = step_model_name(interval) if interval in STEP_INTERVALS else DEFAULT_FORECAST_NAME
    served = client._served(tenant, model, default, "forecast")
    check_model_interval(served, interval if interval in STEP_INTERVALS else 60)  # 1440 rolls up the hourly model
    model_id = served.info.id
    started = time.perf_counter()
    if engine == "local":
        rows = pd.concat(list(score_assets(iter([pd.DataFrame({"asset_id": assets})]), settings, tenant, horizon,
                                           model_id, log, client, interval)), ignore_index=True)
    else:
        rows = _on_spark(client.store.config, settings, tenant, assets, horizon, model_id, log)
    seconds = time.perf_counter() - started
    rows = rows.sort_values(["asset_id", "timestamp"], ignore_index=True)
    if out is not None:
        target = Path(out) / f"tenant={tenant}"
        target.mkdir(parents=True, exist_ok=True)
        name = model_id.replace(":", "_") + ("" if interval == 60 else f"_{interval}min")
        rows.drop(columns=["tenant_id"]).to_parquet(target / f"{name}.parquet", index=False)
    skipped = dict(rows.loc[rows["error"].notna(), ["asset_id", "error"]].itertuples(index=False, name=None))
    logger.info("batch forecast of %s at %d min: %d assets on %s in %.2f s (%d skipped)", tenant, interval,
                len(assets), engine, seconds, len(skipped))
    return BatchForecast(tenant, model_id, engine, rows, seconds, skipped, interval, log)


def score_assets(frames, settings, tenant: str, horizon: int, model_id: str, log: bool, client=None,
                 interval: int = 60):
    """For each frame of asset ids, the forecast rows of its assets (COLUMNS). Runs in a Spark partition
    as well as in this process: the SDK's own `Client.forecast`, one Client per partition."""
    from inference.accuracy import log_forecast
    from inference.client import Client

    if log:
        check_loggable(interval)
    client = client or Client(settings)
    for frame in frames:
        parts = []
        for asset in frame["asset_id"]:
            try:
                result = client.forecast(tenant, asset, horizon, model=model_id, interval_minutes=interval)
            except EmsError as e:  # one asset without features (or too coarse data) must not stop the portfolio
                parts.append(pd.DataFrame({"asset_id": [asset], "error": [str(e)]}))
                continue
            if log:
                log_forecast(settings, result)
            f = result.frame
            steps = f["horizon_steps"] if "horizon_steps" in f else range(1, len(f) + 1)
            parts.append(pd.DataFrame({
                "asset_id": asset, "model_id": result.model_id, "feature_time": _utc(result.feature_time),
                "timestamp": pd.to_datetime(f["timestamp"], utc=True), "horizon_h": f["horizon_h"].astype("int32"),
                "horizon_steps": pd.Series(steps, index=f.index).astype("int32"),
                "point": f["point"], "p10": f["p10"], "p50": f["p50"], "p90": f["p90"], "source": result.source,
                "error": None}))
        rows = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame({"asset_id": []})
        rows["tenant_id"] = tenant
        yield rows.reindex(columns=list(COLUMNS)).astype({"horizon_h": "Int32", "horizon_steps": "Int32"})


def _utc(t) -> pd.Timestamp:
    t = pd.Timestamp(t)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def _on_spark(config, settings, tenant, assets, horizon, model_id, log) -> pd.DataFrame:
    from warehouse.spark import is_spark, session

    if not is_spark(config):
        raise InvalidArgumentError("engine='spark' needs `batch_engine: spark.engine` in the Feast yaml: set "
                                   "FEAST_FS_YAML_FILE_PATH=deploy/feature_store.spark.yaml (and EMS_SPARK_MASTER)")
    spark = session(config)
    schema = ", ".join(f"{name} {kind}" for name, kind in COLUMNS.items())
    frame = spark.createDataFrame(pd.DataFrame({"asset_id": assets}))
    partitions = min(len(assets), config.batch_engine.partitions or spark.sparkContext.defaultParallelism)
    frame = frame.repartition(partitions)
    scored = frame.mapInPandas(lambda frames: score_assets(frames, settings, tenant, horizon, model_id, log), schema)
    rows = scored.toPandas()
    for column in ("feature_time", "timestamp"):  # Spark hands back session-zone (UTC) naive times
        rows[column] = pd.to_datetime(rows[column]).dt.tz_localize("UTC")
    return rows.astype({"horizon_h": "Int32", "horizon_steps": "Int32"})
