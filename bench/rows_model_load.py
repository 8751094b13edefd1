"""Cold model load: a fresh `ModelCache` loading one registered version (local download cache
cleared), straight from S3 and through MLflow's artifact proxy (the path of a tenant's process with an MLflow
login and no S3 key of its own), each against a raw floor on the same S3 objects: list the prefix, GET every
object in parallel, then deserialize what the model is made of (each LightGBM booster text file,
python_model.pkl). All run alternated in this warm process (libraries imported, S3 connections open)."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.core import Context, Row, ratio_row, summary, timed
from core.names import parse_model_id, registered_name
from inference import artifacts
from inference.models import ModelCache
from registry import lifecycle

PICKLE = "python_model.pkl"
LIGHTGBM_TEXT = b"tree\n"  # how a LightGBM model file starts


def _raw_download(s3, bucket: str, prefix: str, target: Path) -> list[Path]:
    """The floor's download: list the prefix, then one GET per object on as many threads as the project."""
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for o in page.get("Contents", []) if not o["Key"].endswith("/")]

    def get(key: str) -> Path:
        path = target / key[len(prefix):]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        return path

    with ThreadPoolExecutor(artifacts.DOWNLOAD_THREADS) as pool:
        return list(pool.map(get, keys))


def model_load_rows(ctx: Context, model_id: str) -> list[Row]:
    import cloudpickle
    import lightgbm as lgb

    settings = ctx.settings
    ref = parse_model_id(model_id)
    uri = lifecycle.client(settings.mlflow_tracking_uri).get_model_version_download_uri(
        registered_name(ref.tenant, ref.name), str(ref.version))
    location = artifacts.s3_location(uri, settings.mlflow_artifacts_destination)
    if location is None:
        raise ValueError(f"{model_id} is stored at {uri}, not in S3; the model load row needs an S3 model")
    bucket, prefix = location
    s3 = artifacts.s3_client(settings)
    cache, scratch = ctx.work / "model_load" / "cache", ctx.work / "model_load" / "floor"

    def clear() -> None:
        shutil.rmtree(cache, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)

    def project():
        served = ModelCache(settings.mlflow_tracking_uri, settings=settings, cache_dir=cache).version(model_id)
        served.python_model  # noqa: B018 (what callers unwrap)
        return served

    def floor() -> tuple[int, int, int]:
        """(files, bytes, boosters) after downloading and deserializing."""
        files = _raw_download(s3, bucket, prefix, scratch)
        boosters = 0
        for path in files:
            with path.open("rb") as f:
                if path.name == PICKLE:
                    cloudpickle.load(f)
                elif path.suffix == ".txt" and f.read(len(LIGHTGBM_TEXT)) == LIGHTGBM_TEXT:
                    lgb.Booster(model_file=str(path))
                    boosters += 1
        return len(files), sum(p.stat().st_size for p in files), boosters

    def proxied():
        served = ModelCache(settings.mlflow_tracking_uri).version(model_id)  # no settings: through MLflow
        served.python_model  # noqa: B018
        return served

    reps = 3 if ctx.quick else 10
    ours, proxy, raw = [], [], []
    for i in range(1 + reps):  # one warm-up, then alternate project (direct), project (proxy) and floor
        clear()
        seconds, served = timed(project)
        if not any(cache.rglob("MLmodel")):
            raise AssertionError(f"{model_id} was not loaded from S3 directly; check the S3 settings")
        clear()
        proxy_seconds, through = timed(proxied)
        if through.folder.is_relative_to(cache):
            raise AssertionError(f"{model_id} was not loaded through MLflow's artifact proxy")
        shutil.rmtree(through.folder, ignore_errors=True)  # MLflow's temporary download folder
        clear()
        floor_seconds, (files, size, boosters) = timed(floor)
        if i:
            ours.append(seconds)
            proxy.append(proxy_seconds)
            raw.append(floor_seconds)
    clear()
    shutil.rmtree(scratch, ignore_errors=True)
    ctx.log(f"model load: {summary(ours)['p50'] * 1e3:.0f} ms direct, {summary(proxy)['p50'] * 1e3:.0f} ms through "
            f"MLflow's artifact proxy, vs raw S3 + deserialize {summary(raw)['p50'] * 1e3:.0f} ms")
    details = {"model_id": model_id, "artifact_uri": uri, "files": files, "artifact_bytes": size, "boosters": boosters,
               "repetitions": reps, "project": summary(ours), "floor": summary(raw),
               "project_s": [round(s, 4) for s in ours], "floor_s": [round(s, 4) for s in raw],
               "served": type(served.python_model).__name__}
    floor_desc = (f"boto3 on the same {files} objects: list_objects_v2 of the model's prefix, parallel get_object "
                  f"on {artifacts.DOWNLOAD_THREADS} threads to local files, then lightgbm.Booster(model_file=...) for "
                  f"each of the {boosters} booster text files and cloudpickle.load of python_model.pkl")
    proxy_row = ratio_row(
        "cold model load through MLflow's artifact proxy", "s", summary(proxy)["p50"], summary(raw)["p50"],
        max_ratio=3.0, floor_desc=floor_desc + "; project = a fresh ModelCache(tracking_uri).version(id) without S3 "
        "settings (registry REST, files through the MLflow server's /mlflow-artifacts, PythonModel load); median of "
        "runs alternated with the direct row's", details={"model_id": model_id, "project": summary(proxy),
                                                           "project_s": [round(s, 4) for s in proxy],
                                                           "floor_s": [round(s, 4) for s in raw]})
    return [ratio_row("cold model load from S3", "s", summary(ours)["p50"], summary(raw)["p50"], max_ratio=1.5,
                      floor_desc=f"boto3 on the same {files} objects: list_objects_v2 of the model's prefix, "
                                 f"parallel get_object on {artifacts.DOWNLOAD_THREADS} threads to local files, then "
                                 f"lightgbm.Booster(model_file=...) for each of the {boosters} booster text files and "
                                 "cloudpickle.load of python_model.pkl; project = a fresh ModelCache(...).version(id) "
                                 "with its download cache emptied (registry REST, S3, PythonModel load); "
                                 "median of alternated runs after one warm-up, in a warm process",
                      details=details), proxy_row]
