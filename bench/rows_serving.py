"""Serving rows: warm forecast and explain calls, `ems --help` start-up."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from bench import core
from bench.data import DataSet

MODEL_NAME = "load_forecaster"


def ensure_model(ctx, data: DataSet, store) -> str:
    """The bench tenant's production forecaster (trained once on five bench assets, then reused)."""
    from core.errors import ModelNotFoundError
    from core.names import TAG_ARTIFACT_LOCATION
    from registry import lifecycle, train_forecast
    from registry.training_data import SplitConfig

    client = lifecycle.client(ctx.settings.mlflow_tracking_uri)
    current = {k: str(v) for k, v in train_forecast.prefixed("lgb", train_forecast.BoosterConfig()).items()}
    current["label"] = train_forecast.LABELS[True]
    try:
        info = lifecycle.resolve_production(client, data.tenant, MODEL_NAME)
        params = client.get_run(info.run_id).data.params if info.run_id else {}
        # reused while it has its files' location, today's booster settings and label (else the rows measure an
        # old model)
        if TAG_ARTIFACT_LOCATION in info.tags and all(params.get(k) == v for k, v in current.items()):
            return info.id
    except ModelNotFoundError:
        pass
    ctx.log("bench model: training bench:load_forecaster on 5 bench assets (once)")
    result = train_forecast.train(ctx.settings, store, data.tenant, assets=data.assets[:5],
                                  split=SplitConfig(history_days=(data.end - data.start).days - 1, holdout_days=14))
    lifecycle.promote(client, result.model_id, "production", force=True)  # latency, not accuracy
    return result.model_id


def serving_rows(ctx, data: DataSet, store, model_id: str) -> list[core.Row]:
    from inference.client import Client
    from inference.features import AssetSource, forecast_inputs
    from inference.online import online_reader

    client = Client(ctx.settings, store)
    asset = data.assets[0]
    f = client.forecast(data.tenant, asset, 24)
    if f.source != "online" or f.model_id != model_id:
        raise AssertionError(f"bench forecast came from {f.source} / {f.model_id}, expected online / {model_id}")
    served = client.models.version(model_id)
    model = served.python_model
    inputs = forecast_inputs(AssetSource(ctx.settings, store, data.tenant, asset), served.feature_service, 24)
    X, level = model.matrix(inputs.matrix(model.features), asset)
    reader = online_reader(store)
    key = reader._key(data.tenant, asset)

    def floor():
        with reader.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(key)
            pipe.execute()
        for booster in model.boosters.values():
            booster.predict(X, num_threads=1) * level

    a, b = core.paired(lambda: client.forecast(data.tenant, asset, 24), floor, ctx.reps, ctx.warmup)
    rows = [core.ratio_row(
        "forecast call, 1 asset, 24 h x p10/p50/p90 (+ point), p99 warm", "ms", core.p(a, 99), core.p(b, 99),
        max_ratio=2.0, max_abs=5.0,
        floor_desc=f"raw pipelined HGETALL of the asset's Feast key + the model's {len(model.boosters)} LightGBM "
                   "boosters predicting the same 24 prepared rows",
        details={"ours": core.summary(a), "floor": core.summary(b), "model": model_id})]

    import shap

    explainer = shap.TreeExplainer(model.point_booster)
    row = X[:1]
    a, b = core.paired(lambda: client.explain(data.tenant, asset, 1), lambda: explainer.shap_values(row),
                       ctx.reps // 2, ctx.warmup)
    rows.append(core.ratio_row(
        "explain, 1 asset, 1 hour, p99 warm", "ms", core.p(a, 99), core.p(b, 99), max_ratio=1.5,
        floor_desc="raw shap.TreeExplainer.shap_values of the point (p50) booster on the same prepared row",
        details={"ours": core.summary(a), "floor": core.summary(b)}))
    return rows


def startup_rows(ctx) -> list[core.Row]:
    ems = str(Path(sys.executable).parent / "ems")

    def wall(cmd: list[str], env: dict | None = None) -> float:
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, env=env)
        return time.perf_counter() - t0

    reps = 5 if ctx.quick else 10
    wall([ems, "--help"])
    ours, floor = [], []
    for _ in range(reps):
        ours.append(wall([ems, "--help"]))
        floor.append(wall([sys.executable, "-c", "pass"]))
    rows = [core.absolute_row("`ems --help` wall time (median)", "s", core.p(ours, 50), 0.3,
                              floor=core.p(floor, 50), floor_desc="`python -c pass` (interpreter start)",
                              details={"ours_s": ours, "floor_s": floor})]
    # Feast's import as our processes do it (core first: typeguard's decorator a no-op, core/__init__.py)
    # against Python's own optimised mode, where typeguard skips its instrumentation by itself; and with
    # the opt-out (Feast's type checks kept) for the figure the change saves.
    # -O reads its own .pyc files: they are written (once, the warm-up) to a folder of the bench's.
    optimized = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    optimized["PYTHONPYCACHEPREFIX"] = str(ctx.work / "pycache-optimized")
    wall([sys.executable, "-O", "-c", "import feast"], optimized)
    ours, floor, checked = [], [], []
    for _ in range(2 if ctx.quick else 3):
        ours.append(wall([sys.executable, "-c", "import core, feast"]))
        floor.append(wall([sys.executable, "-O", "-c", "import feast"], optimized))
        checked.append(wall([sys.executable, "-c", "import feast"]))
    rows.append(core.ratio_row("`import feast` in an ems process (median)", "s", core.p(ours, 50),
                               core.p(floor, 50), max_ratio=1.15,
                               floor_desc="`python -O -c 'import feast'` (typeguard off by itself; asserts off too)",
                               details={"ours_s": ours, "floor_s": floor, "with_typechecks_s": checked,
                                        "with_typechecks_median_s": core.p(checked, 50)}))
    return rows
