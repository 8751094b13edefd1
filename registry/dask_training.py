"""Distributed training of the load forecaster (issue 22 item 3, `ems train forecast --engine dask`): the same
boosters as the in-process path (train_forecast.fit), fitted with `lightgbm.dask` on a Dask cluster from the
point-in-time training set exported as Parquet (warehouse/point_in_time.export).

The driver plans as in process (tenant, assets, windows, the hourly series that give labels and the
target-aligned inputs) and exports the service's features at every hour boundary of the windows to S3 (or reads
an export it is given). Each asset is one partition: a worker reads that asset's rows of the Parquet and builds
its design with training_data.design and its matrix with train_forecast.model_matrix, the functions the
in-process path runs on the whole set; the matrix stays on the workers and DaskLGBMRegressor fits each
quantile over all partitions (LightGBM's data-parallel learner: every worker bins and histograms its rows,
the histograms are reduced over the network). The calibration boosters are fitted the same way, and only
their held-back rows' nonconformity scores (three numbers a row) come back to the driver. Held-out rows (one
issue a day) come back to the driver, which evaluates, logs and registers exactly as in process.

Random draws (sampled horizons, gap and level-shift copies) use one generator per asset, seeded with the
split's seed and the asset id (the in-process path draws for all assets from one generator): with one asset
the partition uses the in-process stream and its design is the in-process design row for row.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.errors import EmsError
from core.settings import Settings
from registry import training_data
from registry.design import HORIZON
from registry.forecaster import ANCHOR, ASSET, BOOSTERS, QuantileForecaster, input_columns

logger = logging.getLogger(__name__)
Progress = Callable[[str, int, int], None]
# matrix columns beside X
LABEL, FIT, CALIB, ASSET_ID, SHUFFLE = "_ems_label", "_ems_fit", "_ems_calib", "_ems_asset", "_ems_shuffle"
CONNECT_TIMEOUT_S = 10


class DaskClusterError(EmsError, ConnectionError):
    """The Dask scheduler cannot be reached, or the extra that brings `distributed` is not installed."""


@dataclass(frozen=True)
class DaskConfig:
    """Where and how: `scheduler` an address (tcp://host:8786, EMS_DASK_SCHEDULER) or "" for a LocalCluster
    of `workers` processes with `threads` threads each; `training_set` an exported Parquet (s3://bucket/key
    or a path) or "" to export the plan's windows first."""

    scheduler: str = ""
    workers: int = 2
    threads: int = 1
    training_set: str = ""

    def check(self) -> DaskConfig:
        for name in ("workers", "threads"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 1 <= value <= 256:
                raise ValueError(f"dask {name}={value!r} is out of range 1..256")
        if self.scheduler and "://" not in self.scheduler:
            raise ValueError(f"dask scheduler {self.scheduler!r} is not an address: give tcp://host:port "
                             "(or leave it empty for a local cluster)")
        return self


@contextmanager
def cluster(cfg: DaskConfig) -> Iterator:
    """A distributed.Client on the scheduler at cfg.scheduler, or on a LocalCluster started for this run."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as e:
        raise DaskClusterError(f"the Dask engine needs `distributed` ({e}); install the extra: "
                               "`uv sync --extra dask` (`make install`)") from e
    if cfg.scheduler:
        try:
            client = Client(cfg.scheduler, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError) as e:
            raise DaskClusterError(f"Dask scheduler {cfg.scheduler!r} did not answer within {CONNECT_TIMEOUT_S} s "
                                   f"({type(e).__name__}); start it (`dask scheduler`, and `dask worker "
                                   f"{cfg.scheduler}` on each node) or leave --dask-scheduler/EMS_DASK_SCHEDULER "
                                   "unset for a local cluster") from e
        with client:
            yield client
        return
    with LocalCluster(n_workers=cfg.workers, threads_per_worker=cfg.threads, processes=True, host="127.0.0.1",
                      dashboard_address=None) as local, Client(local) as client:
        yield client


def workers(client) -> int:
    return len(client.scheduler_info(n_workers=-1)["workers"]) if client else 0


def export_windows(settings: Settings, store, p: training_data.Plan, key: str, progress: Progress | None = None
                   ) -> str:
    """The plan's point-in-time features (every hour boundary of every asset's window) as Parquet on S3."""
    from warehouse import point_in_time

    start = min(w.start for w in p.windows)
    end = max(w.end for w in p.windows) + pd.Timedelta(hours=1)  # the export's end is exclusive
    out = point_in_time.export(settings, store, p.service, p.tenant, start.to_pydatetime(), end.to_pydatetime(),
                               [w.asset_id for w in p.windows], key, progress)
    return out["uri"]


def check_export(settings: Settings, store, p: training_data.Plan, uri: str) -> None:
    """An export given by the user holds the plan's service columns, assets and windows."""
    from core.errors import InvalidRangeError
    from warehouse import point_in_time
    from warehouse.store import grid_features

    info = point_in_time.describe_export(settings, uri)
    wanted = [ref.split(":", 1)[1] for ref in grid_features(store, p.service)]
    missing = [c for c in ["asset_id", "event_timestamp", *wanted] if c not in info["columns"]]
    if missing:
        raise InvalidRangeError(f"training set {uri!r} lacks column(s) {', '.join(missing)} of feature service "
                                f"{p.service!r}: export that service")
    absent = [w.asset_id for w in p.windows if w.asset_id not in info["assets"]]
    start, end = min(w.start for w in p.windows), max(w.end for w in p.windows)
    if absent or info["start"] > start or info["end"] < end:
        raise InvalidRangeError(
            f"training set {uri!r} holds {', '.join(info['assets'][:10]) or 'no assets'} from {info['start']} to "
            f"{info['end']}; training needs {', '.join(w.asset_id for w in p.windows)} from {start} to {end}"
            f"{' (missing: ' + ', '.join(absent) + ')' if absent else ''}: export that range")


def partition_rng(p: training_data.Plan, asset: str) -> np.random.Generator:
    if len(p.windows) == 1:  # one asset: the in-process stream (the same design row for row)
        return np.random.default_rng(p.cfg.seed)
    return np.random.default_rng([p.cfg.seed, zlib.crc32(asset.encode())])


def partition(settings: Settings, p: training_data.Plan, uri: str, asset: str, model_assets: list[str],
              calibration_days: int) -> tuple[pd.DataFrame, dict]:
    """On a worker: one asset's boosters' matrix (X, label, calibration flags) and what the driver needs of
    the rest (held-out rows, naive scales, row count and fingerprint of the design)."""
    from registry import tracking
    from registry.train_forecast import calibration_cut, model_matrix, with_level
    from warehouse import point_in_time

    sub = training_data.for_asset(p, asset)
    store = _worker_store(settings) if sub.target_cols else None  # target-hour weather reads the archive
    hourly = point_in_time.read_export(settings, uri, asset)
    ts = training_data.design(store, sub, hourly, partition_rng(p, asset))
    train = with_level(ts.train, ts.features)
    X, target = model_matrix(train, ts.features, model_assets)
    X = X.reset_index(drop=True)
    X[LABEL] = target
    if calibration_days:
        X[FIT], X[CALIB] = calibration_cut(train, ts.windows, calibration_days)
    else:
        X[FIT], X[CALIB] = True, False
    X[HORIZON + "_"] = train[HORIZON].to_numpy()
    X[ASSET_ID] = asset
    X[SHUFFLE] = partition_rng(p, asset).integers(0, 1 << 30, len(X))  # seeded: the same shuffle on a rerun
    rows = train[["asset_id", "issue_time", *ts.features, "y"]]
    return X, {"holdout": ts.holdout, "scales": ts.scales, "rows": len(train),
               "fingerprint": tracking.fingerprint(rows),
               "features": ts.features, "issue_features": ts.issue_features, "calendar": ts.calendar_features,
               "target_features": ts.target_features, "gap_inputs": ts.gap_inputs}


_STORES: dict = {}


def _worker_store(settings: Settings):
    """One Feast store per worker process (the target-hour weather archive is read through it)."""
    from warehouse.store import get_store

    key = settings.model_dump_json()
    if key not in _STORES:
        _STORES[key] = get_store(settings)
    return _STORES[key]


def regressor(client, params: dict, rounds: int):
    """DaskLGBMRegressor with the in-process booster's parameters (BoosterConfig.params) under the sklearn
    names (lightgbm.dask gives each worker as many LightGBM threads as the worker has)."""
    from lightgbm.dask import DaskLGBMRegressor

    return DaskLGBMRegressor(
        client=client, objective=params["objective"], alpha=params["alpha"], n_estimators=rounds,
        learning_rate=params["learning_rate"], num_leaves=params["num_leaves"],
        min_child_samples=params["min_data_in_leaf"], colsample_bytree=params["feature_fraction"],
        reg_lambda=params["lambda_l2"], random_state=params["seed"],
        deterministic=params["deterministic"], force_col_wise=params["force_col_wise"], verbose=-1)


def fit(settings: Settings, store, client, p: training_data.Plan, cfg, dask_cfg: DaskConfig, key: str,
        progress: Progress | None = None, steps: tuple[str, ...] = ()) -> tuple[QuantileForecaster, dict]:
    """Export (or check) the training set, build the design on the workers, fit the boosters and the interval
    calibration with lightgbm.dask. Returns the model and the driver's view of the training set: `ts` (a
    TrainingSet holding the held-out rows; its train frame is empty, the rows stay on the workers), `rows`,
    `fingerprint`, `uri` and timings."""
    tick = progress or (lambda *_: None)
    timings, t0 = {}, time.perf_counter()
    if dask_cfg.training_set:  # checked by the caller before the MLflow run (check_export)
        uri = dask_cfg.training_set
    else:
        uri = export_windows(settings, store, p, key, lambda step, i, n: tick(f"export: {step}", 0, len(steps)))
    timings["export_s"] = time.perf_counter() - t0
    tick(f"design on {workers(client)} Dask workers", 0, len(steps))
    t1 = time.perf_counter()
    assets = [w.asset_id for w in p.windows]
    model_assets = assets if cfg.asset_input and len(assets) > 1 else []
    parts = [client.submit(partition, settings, p, uri, a, model_assets, cfg.calibration_days, key=f"design-{a}-{key}",
                           pure=False) for a in assets]
    matrices = [client.submit(_first, f, pure=False) for f in parts]
    infos = client.gather([client.submit(_second, f, pure=False) for f in parts])
    frame = mixed(client, matrices)
    del parts  # the matrices stay on the workers (persisted); the design frames are released
    timings["design_s"] = time.perf_counter() - t1
    inputs = input_columns(infos[0]["features"], model_assets)
    t2 = time.perf_counter()
    boosters = fit_boosters(client, frame, inputs, bool(model_assets), cfg,
                            lambda name, i: tick(f"{name} on {workers(client)} Dask workers", 1 + i, len(steps)))
    timings["fit_s"] = time.perf_counter() - t2
    categorical = [ASSET] if model_assets else "auto"
    calibration = _calibrate(client, frame, inputs, categorical, cfg)
    frame = None
    ts = _driver_set(p, infos)
    model = QuantileForecaster(ts.features, boosters, calibration, model_assets, ANCHOR[0] in ts.features)
    return model, {"ts": ts, "rows": sum(i["rows"] for i in infos), "uri": uri, "timings": timings,
                   "fingerprint": _combined([i["fingerprint"] for i in infos])}


def mixed(client, matrices: list):
    """One Dask frame over the partitions' matrices (futures) with one partition per worker, each holding a
    seeded share of every asset's rows: LightGBM's data-parallel learner bins each feature on one worker's
    rows, which must then look like all rows (one asset's alone would leave the others' levels in its edge
    bins). Worker k (by address) holds share k, so the same cluster size gives the same boosters."""
    import dask.dataframe as dd

    names = sorted(client.scheduler_info(n_workers=-1)["workers"])
    shares = [client.submit(_share, k, len(names), *matrices, workers=[w], allow_other_workers=False, pure=False)
              for k, w in enumerate(names)]
    meta = client.submit(_empty, shares[0], pure=False).result()
    return dd.from_delayed(shares, meta=meta, verify_meta=False)


def _share(k: int, n: int, *frames: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([f[f[SHUFFLE].to_numpy() % n == k] for f in frames], ignore_index=True)


def fit_boosters(client, frame, inputs: list[str], asset_input: bool, cfg,
                 progress: Callable[[str, int], None] | None = None) -> dict:
    """The quantile boosters (BOOSTERS) over the frame's partitions, as lightgbm.Booster objects."""
    boosters = {}
    for i, name in enumerate(BOOSTERS):
        if progress:
            progress(name, i)
        reg = regressor(client, cfg.params(name), cfg.num_boost_round)
        boosters[name] = reg.fit(frame[inputs], frame[LABEL], categorical_feature=[ASSET] if asset_input
                                 else "auto").booster_
    return boosters


def _calibrate(client, frame, inputs: list[str], categorical, cfg) -> dict:
    """train_forecast.calibrate over the partitions: p10/p90 boosters fitted on the rows before each asset's
    calibration window, the scores of the rows issued inside it computed on the workers."""
    from registry.train_forecast import MIN_CALIBRATION_FIT_ROWS, calibration_widths

    if not cfg.calibration_days:
        return {}
    n_fit, n_calib = (int(v) for v in client.compute([frame[FIT].sum(), frame[CALIB].sum()], sync=True))
    if n_fit < MIN_CALIBRATION_FIT_ROWS or n_calib < cfg.min_calibration_rows:
        logger.info("too few rows to calibrate the interval (%d fit, %d calibration)", n_fit, n_calib)
        return {}
    fit_rows = frame[frame[FIT]]
    bounds = {name: regressor(client, cfg.params(name), cfg.num_boost_round).fit(
        fit_rows[inputs], fit_rows[LABEL], categorical_feature=categorical).booster_ for name in ("p10", "p90")}
    scores = frame[frame[CALIB]].map_partitions(_scores, bounds, inputs,
                                                meta={"e": float, HORIZON: "int64", ASSET_ID: object})
    scores = scores.compute()
    return calibration_widths(scores["e"].to_numpy(), scores[HORIZON].to_numpy(), scores[ASSET_ID].to_numpy(), cfg)


def _scores(part: pd.DataFrame, bounds: dict, inputs: list[str]) -> pd.DataFrame:
    from registry.train_forecast import nonconformity

    X = part[inputs]
    e = nonconformity(bounds["p10"].predict(X), bounds["p90"].predict(X), part[LABEL].to_numpy())
    return pd.DataFrame({"e": e, HORIZON: part[HORIZON + "_"].to_numpy(), ASSET_ID: part[ASSET_ID].to_numpy()},
                        index=part.index)


def _driver_set(p: training_data.Plan, infos: list[dict]) -> training_data.TrainingSet:
    """The TrainingSet the driver evaluates and logs: every partition's held-out rows, the training rows left
    on the workers (an empty frame)."""
    first = infos[0]
    holdout = pd.concat([i["holdout"] for i in infos], ignore_index=True)
    scales = {a: s for i in infos for a, s in i["scales"].items()}
    return training_data.TrainingSet(p.tenant, p.service, first["issue_features"], first["calendar"],
                                     holdout.iloc[:0], holdout, p.windows, scales, p.series, p.peers,
                                     first["gap_inputs"], first["target_features"])


def _combined(fingerprints: list[str]) -> str:
    import hashlib

    return hashlib.sha256("".join(fingerprints).encode()).hexdigest()[:16]


def _first(pair):
    return pair[0]


def _second(pair):
    return pair[1]


def _empty(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.iloc[:0]
