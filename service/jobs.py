"""Long work over the API: trainings (`POST /ai/models/train`) and point-in-time feature exports
(`POST /ai/features/export`). Each answers 202 with a job id at once; the work runs in its own process
(`python -m service.jobs <id>`, so it neither blocks a worker nor dies with one) that records its steps
in Postgres (warehouse/jobs.py), which any worker reads for `GET /ai/jobs/{id}`.

Bad input is refused at submission (422 naming the value), not discovered by a failed job.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from core.errors import EmsError, InvalidArgumentError, error_code
from core.names import (
    DEFAULT_ANOMALY_SERVICE,
    DEFAULT_FORECAST_NAME,
    DEFAULT_FORECAST_SERVICE,
    check_anomaly_method,
    check_model_name,
)
from core.settings import ROOT
from service.auth import Caller

logger = logging.getLogger("ems.api.jobs")


class TrainRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"tenant_id": "demo", "model_type": "forecast", "history_days": 365, "holdout_days": 14}]})
    tenant_id: str
    model_type: Literal["forecast", "anomaly"] = "forecast"
    name: str | None = Field(None, description=f"registered as {{tenant}}.{{name}}; default {DEFAULT_FORECAST_NAME} "
                                               "(forecast) or anomaly_{method}")
    method: str | None = Field(None, description="anomaly only: z_score | iqr | isolation_forest | "
                                                 "local_outlier_factor")
    asset_ids: list[str] | None = Field(None, description="default: every asset of the tenant")
    feature_service: str | None = Field(None, description=f"default {DEFAULT_FORECAST_SERVICE} (forecast) or "
                                                          f"{DEFAULT_ANOMALY_SERVICE} (anomaly)")
    history_days: int = Field(730, description="21..20000")
    holdout_days: int = Field(14, description="1..365")
    num_boost_round: int | None = Field(None, description="forecast only: 1..5000 boosting rounds (default 300)")
    engine: Literal["local", "dask"] = Field("local", description="forecast only: local (the job's process) | dask "
                                                                  "(lightgbm.dask from the Parquet training set, "
                                                                  "as `ems train forecast --engine dask`)")
    dask_scheduler: str | None = Field(None, description="engine dask: a running scheduler (tcp://host:8786); "
                                                         "default the service's EMS_DASK_SCHEDULER, else a local "
                                                         "cluster of dask_workers processes")
    dask_workers: int | None = Field(None, description="engine dask without a scheduler: 1..256 local worker "
                                                       "processes (default 2)")


class ExportRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"tenant_id": "demo", "feature_service": "forecast_advanced", "start": "2017-06-01T00:00:00Z",
         "end": "2017-06-08T00:00:00Z", "asset_ids": ["zone1"]}]})
    tenant_id: str
    feature_service: str = DEFAULT_FORECAST_SERVICE
    start: datetime
    end: datetime
    asset_ids: list[str] | None = Field(None, description="default: every asset of the tenant")


class JobResponse(BaseModel):
    """A job as `GET /ai/jobs/{job_id}` shows it (times ISO 8601 UTC)."""
    job_id: str
    tenant_id: str
    kind: Literal["train", "export"]
    status: Literal["queued", "running", "succeeded", "failed"]
    request: dict[str, Any]
    created_by: str
    step: str | None = Field(description="the step running now (or the last one)")
    done: int
    total: int | None
    result: dict[str, Any] | None = Field(description="train: model_id, run_id, metrics; export: uri, rows, bytes")
    error_code: str | None = Field(description="stable code of the failure (`lost`: its process stopped)")
    error: str | None
    created_at: datetime
    started_at: datetime | None
    heartbeat_at: datetime | None
    finished_at: datetime | None


class AcceptedJob(JobResponse):
    links: dict[str, str] = Field(description="self: where to poll the job")


class ExportResponse(JobResponse):
    rows: int | None
    bytes: int | None
    uri: str | None = Field(description="s3://bucket/exports/<tenant>/<job_id>.parquet once it succeeded")


def router(settings, store_of) -> APIRouter:
    """The job routes over `settings`' stack; `store_of()` gives the Feast store (to check names)."""
    from warehouse import jobs

    api = APIRouter()

    def accepted(job, request: Request) -> JSONResponse:
        _spawn(job.id)
        location = str(request.url_for("job", job_id=job.id).path)
        return JSONResponse({**job.as_dict(), "links": {"self": location}}, status_code=202,
                            headers={"location": location})

    @api.post("/ai/models/train", tags=["models"], status_code=202, response_model=AcceptedJob)
    def train(body: TrainRequest, caller: Caller, request: Request) -> JSONResponse:
        """Start a training (a new staging version when it succeeds); poll `GET /ai/jobs/{job_id}`."""
        caller.require("model_admin", body.tenant_id)
        _check_train(body, store_of())
        job = jobs.submit(settings, body.tenant_id, "train", body.model_dump(mode="json"), caller.subject,
                          settings.api_max_jobs)
        return accepted(job, request)

    @api.post("/ai/features/export", tags=["features"], status_code=202, response_model=AcceptedJob)
    def export(body: ExportRequest, caller: Caller, request: Request) -> JSONResponse:
        """Start a point-in-time export of a feature service (every hour in [start, end) of each asset)
        to S3 as Parquet; `GET /ai/features/exports` lists them."""
        from warehouse.point_in_time import MAX_EXPORT_ROWS, tenant_assets
        from warehouse.store import feature_service

        caller.require("ai_user", body.tenant_id)
        feature_service(store_of(), body.feature_service)
        if body.start.tzinfo is None or body.end.tzinfo is None:
            raise InvalidArgumentError(f"start {body.start} and end {body.end} need a time zone (Z for UTC)")
        hours = (body.end - body.start).total_seconds() / 3600
        assets = tenant_assets(settings, body.tenant_id, body.asset_ids)
        if not 1 <= hours * len(assets) <= MAX_EXPORT_ROWS:
            raise InvalidArgumentError(f"{len(assets)} assets x {hours:g} hours from {body.start} to {body.end}: an "
                                       f"export holds 1..{MAX_EXPORT_ROWS:,} rows (end after start)")
        job = jobs.submit(settings, body.tenant_id, "export", body.model_dump(mode="json"), caller.subject,
                          settings.api_max_jobs)
        return accepted(job, request)

    @api.get("/ai/jobs/{job_id}", tags=["jobs"], name="job")
    def job(job_id: str, caller: Caller) -> JobResponse:
        """A job's status (queued, running, succeeded, failed), step and progress, and its result: the
        new model id of a training, the file of an export."""
        found = jobs.get(settings, job_id)
        caller.require("ai_user", found.tenant_id)
        return found.as_dict()

    @api.get("/ai/jobs", tags=["jobs"])
    def job_list(caller: Caller, tenant_id: str | None = None, kind: Literal["train", "export"] | None = None
                 ) -> list[JobResponse]:
        """A tenant's jobs, newest first (100 at most)."""
        tenant = tenant_id or caller.tenant
        if tenant is None:
            raise InvalidArgumentError("tenant_id is required when auth is off")
        caller.require("ai_user", tenant)
        return [j.as_dict() for j in jobs.list_jobs(settings, tenant, kind)]

    @api.get("/ai/features/exports", tags=["features"])
    def exports(caller: Caller, tenant_id: str | None = None) -> list[ExportResponse]:
        """A tenant's exports with status, rows, size, file and times, newest first."""
        tenant = tenant_id or caller.tenant
        if tenant is None:
            raise InvalidArgumentError("tenant_id is required when auth is off")
        caller.require("ai_user", tenant)
        out = []
        for j in jobs.list_jobs(settings, tenant, "export"):
            result = j.result or {}
            out.append({**j.as_dict(), "rows": result.get("rows"), "bytes": result.get("bytes"),
                        "uri": result.get("uri")})
        return out

    return api


def _check_train(body: TrainRequest, store) -> None:
    """Refuse a training request that could not run, naming the bad value."""
    from registry.training_data import SplitConfig
    from warehouse.store import feature_service

    if body.model_type == "anomaly":
        if body.method is None:
            raise InvalidArgumentError("method is required for an anomaly model: z_score | iqr | isolation_forest "
                                       "| local_outlier_factor")
        check_anomaly_method(body.method)
        if body.num_boost_round is not None:
            raise InvalidArgumentError("num_boost_round applies to forecast models only")
    elif body.method is not None:
        raise InvalidArgumentError(f"method {body.method!r} applies to anomaly models only")
    _dask_config(body)
    if body.num_boost_round is not None and not 1 <= body.num_boost_round <= 5000:
        raise InvalidArgumentError(f"num_boost_round={body.num_boost_round} is out of range 1..5000")
    if body.name is not None:
        check_model_name(body.name)
    try:
        SplitConfig(history_days=body.history_days, holdout_days=body.holdout_days).check()
    except ValueError as e:
        raise InvalidArgumentError(str(e)) from None
    feature_service(store, body.feature_service or (DEFAULT_FORECAST_SERVICE if body.model_type == "forecast"
                                                    else DEFAULT_ANOMALY_SERVICE))


def _dask_config(body: TrainRequest):
    """The Dask options checked with the engine (the CLI's rules): None for engine local."""
    given = [f"{k}={v!r}" for k, v in (("dask_scheduler", body.dask_scheduler), ("dask_workers", body.dask_workers))
             if v is not None]
    if body.engine == "local":
        if given:
            raise InvalidArgumentError(f"{', '.join(given)}: Dask options need engine 'dask', not 'local'")
        return None
    if body.model_type != "forecast":
        raise InvalidArgumentError(f"engine 'dask' trains forecast models; model_type {body.model_type!r} needs "
                                   "engine 'local'")
    if body.dask_scheduler and body.dask_workers is not None:
        raise InvalidArgumentError(f"dask_workers={body.dask_workers} sizes a local cluster; with dask_scheduler "
                                   f"{body.dask_scheduler!r} the workers are the scheduler's: give one of the two")
    from registry.dask_training import DaskConfig

    try:
        return DaskConfig(scheduler=body.dask_scheduler or os.environ.get("EMS_DASK_SCHEDULER", ""),
                          workers=2 if body.dask_workers is None else body.dask_workers).check()
    except ValueError as e:
        raise InvalidArgumentError(str(e)) from None


def _spawn(job_id: str) -> None:
    """Run the job in its own session (it outlives the worker that started it)."""
    subprocess.Popen([sys.executable, "-m", "service.jobs", job_id], cwd=ROOT, start_new_session=True,
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# ------------------------------------------------------------------ the job's own process
def run(job_id: str) -> int:
    """Claim job `job_id`, do its work with a heartbeat, record the result or the error."""
    from core.settings import Settings
    from warehouse import jobs

    settings = Settings()
    request = jobs.start(settings, job_id, os.getpid())
    stop = threading.Event()

    def beat():
        while not stop.wait(jobs.HEARTBEAT_EVERY.total_seconds()):
            try:
                jobs.progress(settings, job_id)
            except Exception:  # a missed beat is retried at the next one
                logger.warning("job %s: heartbeat failed", job_id, exc_info=True)

    threading.Thread(target=beat, daemon=True).start()

    def step(name: str, done: int, total: int) -> None:
        jobs.progress(settings, job_id, name, done, total)

    try:
        job = jobs.get(settings, job_id)
        result = _train(settings, request, step) if job.kind == "train" else _export(settings, job, request, step)
    except EmsError as e:
        jobs.fail(settings, job_id, error_code(e), str(e))
        return 1
    except Exception as e:  # recorded for the caller; the trace goes to the log only
        logger.exception("job %s failed", job_id)
        jobs.fail(settings, job_id, "internal", f"unexpected {type(e).__name__}: {str(e)[:500]}")
        return 1
    finally:
        stop.set()
    jobs.finish(settings, job_id, result)
    return 0


def _train(settings, request: dict, step) -> dict:
    import contextlib

    from registry.training_data import SplitConfig
    from warehouse.store import get_store

    body = TrainRequest(**request)
    split = SplitConfig(history_days=body.history_days, holdout_days=body.holdout_days)
    store = get_store(settings)
    with contextlib.redirect_stdout(sys.stderr):
        if body.model_type == "forecast":
            from registry import train_forecast

            boosting = train_forecast.BoosterConfig(**({"num_boost_round": body.num_boost_round}
                                                       if body.num_boost_round else {}))
            result = train_forecast.train(settings, store, body.tenant_id, body.asset_ids,
                                          body.feature_service or DEFAULT_FORECAST_SERVICE,
                                          body.name or DEFAULT_FORECAST_NAME, split, boosting, progress=step,
                                          engine=body.engine, dask=_dask_config(body))
        else:
            from registry import train_anomaly

            result = train_anomaly.train(settings, store, body.tenant_id, body.method, body.asset_ids,
                                         body.feature_service or DEFAULT_ANOMALY_SERVICE, body.name, split,
                                         progress=step)
    return {"model_id": result.model_id, "run_id": result.run_id, "model_uri": result.model_uri,
            "metrics": result.metrics, "timings": result.timings}


def _export(settings, job, request: dict, step) -> dict:
    from warehouse import point_in_time
    from warehouse.store import get_store

    body = ExportRequest(**request)
    key = f"exports/{job.tenant_id}/{job.id}.parquet"
    return point_in_time.export(settings, get_store(settings), body.feature_service, body.tenant_id, body.start,
                                body.end, body.asset_ids, key, progress=step)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    sys.exit(run(sys.argv[1]))
