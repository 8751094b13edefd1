"""`ems bench --only scale`, distributed training (issue 22 item 3): fitting the forecaster's three quantile
boosters with lightgbm.dask on a 2-worker LocalCluster against lgb.train in this process, on the same rows
(one design of the bench assets, built once), at two sizes.

The Dask side is the path `ems train forecast --engine dask` runs once the design is on the workers
(registry/dask_training.py: `mixed` spreads every asset's rows over the partitions, `fit_boosters` fits);
here the per-asset matrices are built in this process and scattered, so both sides fit the same rows and
the design's cost stays out. The cluster start is timed separately; spreading the rows over the workers
(`mix_s`) is part of the Dask figure.
"""

from __future__ import annotations

import time

import numpy as np

from bench import core
from bench.data import DataSet

SERVICE = "forecast_advanced"  # no target-hour weather: the bench tenant's sites have no forecast archive


def dask_rows(ctx, data: DataSet, store) -> list[core.Row]:
    from registry import dask_training, train_forecast, training_data
    from registry.forecaster import input_columns
    from registry.training_data import SplitConfig

    sizes = (4, 16) if ctx.quick else (8, 32)
    cfg = train_forecast.BoosterConfig(num_boost_round=100, calibration_days=0)
    split = SplitConfig(history_days=(data.end - data.start).days - 1, holdout_days=7)
    ctx.log(f"scale: design of {sizes[-1]} bench assets for the Dask fit rows")
    ts = training_data.build(store, training_data.plan(ctx.settings, store, data.tenant, data.assets[:sizes[-1]],
                                                       SERVICE, split))
    t0 = time.perf_counter()
    rows: list[core.Row] = []
    with dask_training.cluster(dask_training.DaskConfig(workers=2)) as client:
        start_s = time.perf_counter() - t0
        for n in sizes:
            assets = data.assets[:n]
            part = ts.train[ts.train["asset_id"].isin(assets)].reset_index(drop=True)
            sub = training_data.TrainingSet(ts.tenant, ts.service, ts.issue_features, ts.calendar_features, part,
                                            ts.holdout.iloc[:0], [w for w in ts.windows if w.asset_id in assets],
                                            {}, {}, gap_inputs=ts.gap_inputs, target_features=ts.target_features)
            t1 = time.perf_counter()
            train_forecast.fit(sub, cfg)
            local_s = time.perf_counter() - t1
            train = train_forecast.with_level(part, ts.features)
            matrices = []
            codes = sorted(assets)  # the asset input's codes, as train_forecast.fit orders them
            for i, (_, rows_of) in enumerate(train.groupby("asset_id", sort=True)):
                X, target = train_forecast.model_matrix(rows_of, ts.features, codes)
                X = X.reset_index(drop=True)
                X[dask_training.LABEL] = target
                X[dask_training.SHUFFLE] = np.random.default_rng(i).integers(0, 1 << 30, len(X))
                matrices.append(X)
            futures = client.scatter(matrices)
            t2 = time.perf_counter()
            frame = dask_training.mixed(client, futures)
            mix_s = time.perf_counter() - t2
            dask_training.fit_boosters(client, frame, input_columns(ts.features, codes), True, cfg)
            dask_s = time.perf_counter() - t2
            del frame, futures
            ctx.log(f"scale: fit {n} assets, {len(train):,} rows: in process {local_s:.1f} s, dask {dask_s:.1f} s")
            rows.append(core.Row(
                f"fit p10/p50/p90 ({cfg.num_boost_round} rounds), {n} assets = {len(train):,} rows: lightgbm.dask "
                "2 workers vs in process", "s", dask_s, local_s, "informational", True, dask_s / local_s,
                floor_desc="lgb.train in this process (all cores), same rows, same run",
                details={"rows": len(train), "features": len(ts.features), "mix_s": mix_s,
                         "fit_s": dask_s - mix_s, "rows_per_s_dask": len(train) / dask_s,
                         "rows_per_s_local": len(train) / local_s}))
    rows.append(core.Row("Dask LocalCluster start (2 worker processes)", "s", start_s, None, "informational", True,
                         floor_desc="-"))
    return rows
