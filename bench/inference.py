"""Inference latency against raw floors measured in the same run (folded into `ems bench` later).

- warm forecast (1 asset, 24 h, p10/p50/p90 + point) vs raw pipelined HGETALL of the asset's Feast keys
  + raw LightGBM predict of the same 24 prepared rows with the same four boosters;
- explain (1 asset, 1 hour) vs raw shap.TreeExplainer.shap_values on the same prepared row;
- cold first call (fresh process: imports, store, model download, first forecast);
- resident memory added by loading the production forecaster and anomaly model.

Run against the local stack after `make demo`: `.venv/bin/python -m bench.inference`.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time

import numpy as np

TENANT, ASSET, REPS, WARMUP = "demo", "zone1", 200, 20


def _stats(samples: list[float]) -> dict[str, float]:
    return {"p50_ms": statistics.median(samples), "p99_ms": float(np.percentile(samples, 99))}


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def main() -> None:
    import redis
    from feast.infra.online_stores.helpers import _redis_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    from inference.client import Client
    from inference.features import forecast_inputs
    from registry.forecaster import OUTPUTS, prepare

    client = Client()
    before = _rss_mb()
    client.forecast(TENANT, ASSET, 24)
    served = client.models.production(TENANT, "load_forecaster")
    client.models.production(TENANT, "anomaly_isolation_forest")
    memory_mb = _rss_mb() - before
    store, settings = client.store, client.settings

    inputs = forecast_inputs(settings, store, TENANT, ASSET, served.feature_service, 24)
    model = served.python_model
    X, level = prepare(inputs.frame[model.features], model.features)
    key = _redis_key(store.config.project, EntityKey(join_keys=["tenant_id", "asset_id"], entity_values=[
        Value(string_val=TENANT), Value(string_val=ASSET)]), store.config.entity_key_serialization_version)
    r = redis.Redis(settings.redis.host, settings.redis.port, db=settings.redis.db)

    sdk, floor = [], []
    for i in range(REPS + WARMUP):
        t0 = time.perf_counter()
        client.forecast(TENANT, ASSET, 24)
        t1 = time.perf_counter()
        with r.pipeline(transaction=False) as pipe:
            pipe.hgetall(key)
            pipe.execute()
        for name in OUTPUTS:
            model.boosters[name].predict(X, num_threads=1) * level
        t2 = time.perf_counter()
        if i >= WARMUP:
            sdk.append((t1 - t0) * 1e3)
            floor.append((t2 - t1) * 1e3)

    explainer = client._explainer(served)
    row = X.iloc[[0]]
    exp_sdk, exp_floor = [], []
    for i in range(REPS // 2 + WARMUP):
        t0 = time.perf_counter()
        client.explain(TENANT, ASSET, 1)
        t1 = time.perf_counter()
        explainer.shap_values(row)
        t2 = time.perf_counter()
        if i >= WARMUP:
            exp_sdk.append((t1 - t0) * 1e3)
            exp_floor.append((t2 - t1) * 1e3)

    code = ("import time; t = time.perf_counter(); from inference import forecast; "
            f"forecast({TENANT!r}, {ASSET!r}, 24); print(time.perf_counter() - t)")
    cold = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                 env={"MLFLOW_LOGGING_LEVEL": "ERROR", "PATH": "/usr/bin:/bin"}).stdout.split()[-1])
            for _ in range(3)]
    report = {
        "forecast_warm": {"sdk": _stats(sdk), "floor_hgetall_plus_predict": _stats(floor),
                          "ratio_p99": float(np.percentile(sdk, 99) / np.percentile(floor, 99))},
        "explain": {"sdk": _stats(exp_sdk), "floor_tree_explainer": _stats(exp_floor),
                    "ratio_p99": float(np.percentile(exp_sdk, 99) / np.percentile(exp_floor, 99))},
        "cold_first_forecast_s": cold,
        "cached_models_rss_mb": memory_mb,
        "model": served.info.id,
    }
    sys.stdout.write(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
