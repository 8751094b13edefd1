"""Long work over the API: trainings and point-in-time exports run as jobs (202, then polled), on the
real stack with `ems serve` (two workers: a job started through one is read through either)."""

from __future__ import annotations

import io
import os
import signal
import time

import boto3
import pandas as pd
import pyarrow.parquet as pq
import pytest

from registry import lifecycle
from tests.helpers.api import call, loaded_tenant, served_keys, serving
from tests.helpers.stack import TEST_PORTS
from warehouse.db import connect

pytestmark = pytest.mark.integration

J, OTHER = "jobs-a", "jobs-b"
API_PORT = TEST_PORTS["mlflow"] + 15
JWKS_PORT = TEST_PORTS["mlflow"] + 16
ALL_ROLES = ["ai_user", "forecaster", "anomaly_analyst", "model_admin"]


keys = served_keys(JWKS_PORT)


@pytest.fixture(scope="module")
def api(stack, env, keys, tmp_path_factory):
    """Tenant J with four weeks of Tetouan load and weather (no model yet); the API allows one open job
    per tenant."""
    tmp = tmp_path_factory.mktemp("jobs")
    loaded_tenant(stack, env, tmp, J, "tet-jobs", "2017-07-01", "2017-07-29")
    with serving({**os.environ, **env, "EMS_API_MAX_JOBS": "1"}, API_PORT, tmp / "serve.log",
                 jwks_url=keys.url) as base:
        yield base


def wait(base: str, token: str, job_id: str, seconds: float = 300) -> dict:
    """Poll a job until it ends; returns its last state and every (status, step) seen on the way."""
    seen, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        r = call("GET", f"{base}/ai/jobs/{job_id}", token)
        assert r.status_code == 200, r.text
        doc = r.json()
        seen.append((doc["status"], doc["step"]))
        if doc["status"] in ("succeeded", "failed"):
            return {**doc, "seen": seen}
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} still {seen[-1]} after {seconds} s")


def test_a_training_job_registers_a_staging_version_and_reports_its_steps(api, keys, stack):
    admin = keys.token(J, ALL_ROLES)
    r = call("POST", f"{api}/ai/models/train", admin,
             json={"tenant_id": J, "history_days": 28, "holdout_days": 7, "num_boost_round": 30})
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status"] == "queued" and job["kind"] == "train" and job["created_by"] == "svc-scheduler"
    assert r.headers["location"] == f"/ai/jobs/{job['job_id']}" == job["links"]["self"]

    # one open job per tenant (EMS_API_MAX_JOBS=1): a second is refused while the first has not ended
    second = call("POST", f"{api}/ai/models/train", admin, json={"tenant_id": J, "history_days": 28,
                                                                 "holdout_days": 7})
    assert second.status_code == 429 and second.json()["code"] == "too_many_jobs"
    assert "EMS_API_MAX_JOBS=1" in second.json()["message"]

    done = wait(api, admin, job["job_id"])
    assert done["status"] == "succeeded", done
    assert any(status == "running" and step for status, step in done["seen"]) or len(done["seen"]) == 1
    model_id = done["result"]["model_id"]
    assert model_id.startswith(f"{J}:load_forecaster:") and done["result"]["metrics"]["dayahead_mase_168"] > 0
    assert done["finished_at"] >= done["started_at"] >= done["created_at"]

    # what the user sees next: the new version, in staging, in the list and in MLflow
    listed = call("GET", f"{api}/ai/models?tenant_id={J}", keys.token(J, ["ai_user"])).json()
    assert [(m["id"], m["stage"]) for m in listed] == [(model_id, "staging")]
    info = lifecycle.show(lifecycle.client(stack.mlflow_tracking_uri), model_id)
    assert info.stage == "staging" and info.tags["tenant_id"] == J
    jobs_listed = call("GET", f"{api}/ai/jobs?kind=train", admin).json()
    assert jobs_listed[0]["job_id"] == job["job_id"] and jobs_listed[0]["status"] == "succeeded"


@pytest.mark.parametrize("body, code, names", [
    ({"history_days": 5}, "invalid_argument", "history_days=5 is out of range 21..20000"),
    ({"method": "z_score"}, "invalid_argument", "method 'z_score' applies to anomaly models only"),
    ({"model_type": "anomaly"}, "invalid_argument", "method is required"),
    ({"model_type": "anomaly", "method": "median"}, "invalid_method", "median"),
    ({"feature_service": "forecast_nope"}, "unknown_feature_service", "forecast_nope"),
    ({"num_boost_round": 0}, "invalid_argument", "num_boost_round=0 is out of range 1..5000"),
    ({"model_type": "price"}, "invalid_request", "model_type"),
    ({"engine": "spark"}, "invalid_request", "engine"),
    ({"dask_workers": 3}, "invalid_argument", "dask_workers=3: Dask options need engine 'dask', not 'local'"),
    ({"engine": "dask", "model_type": "anomaly", "method": "z_score"}, "invalid_argument",
     "engine 'dask' trains forecast models; model_type 'anomaly' needs engine 'local'"),
    ({"engine": "dask", "dask_workers": 0}, "invalid_argument", "dask workers=0 is out of range 1..256"),
    ({"engine": "dask", "dask_scheduler": "scheduler:8786"}, "invalid_argument", "'scheduler:8786' is not an address"),
    ({"engine": "dask", "dask_scheduler": "tcp://10.0.0.1:8786", "dask_workers": 4}, "invalid_argument",
     "give one of the two"),
])
def test_a_training_that_could_not_run_is_refused_at_submission_and_nothing_is_queued(api, keys, body, code, names):
    admin = keys.token(J, ALL_ROLES)
    before = call("GET", f"{api}/ai/jobs", admin).json()
    r = call("POST", f"{api}/ai/models/train", admin, json={"tenant_id": J, **body})
    assert r.status_code in (404, 422) and r.json()["code"] == code and names in r.json()["message"], r.text
    assert call("GET", f"{api}/ai/jobs", admin).json() == before


def test_jobs_are_the_tenants_own(api, keys):
    admin = keys.token(J, ALL_ROLES)
    mine = call("GET", f"{api}/ai/jobs", admin).json()
    assert mine, "the training test ran first"
    other = keys.token(OTHER, ALL_ROLES)
    r = call("GET", f"{api}/ai/jobs/{mine[0]['job_id']}", other)
    assert r.status_code == 403 and f"may not act for tenant '{J}'" in r.json()["message"]
    assert call("GET", f"{api}/ai/jobs?tenant_id={J}", other).status_code == 403
    assert call("POST", f"{api}/ai/models/train", other, json={"tenant_id": J}).status_code == 403
    assert call("POST", f"{api}/ai/models/train", keys.token(J, ["ai_user", "forecaster"]),
                json={"tenant_id": J}).status_code == 403  # training needs model_admin
    missing = call("GET", f"{api}/ai/jobs/0123abcd", admin)
    assert missing.status_code == 404 and missing.json() == {"code": "job_not_found", "message": "no job '0123abcd'"}


def test_a_dask_training_job_registers_a_version_trained_on_the_cluster(api, keys, stack):
    """engine 'dask' over the API is `ems train forecast --engine dask`: a 2-worker local cluster in the job's
    process, the version tagged engine=dask, in staging like any other."""
    import mlflow

    admin = keys.token(J, ALL_ROLES)
    r = call("POST", f"{api}/ai/models/train", admin, json={"tenant_id": J, "history_days": 28, "holdout_days": 7,
                                                            "num_boost_round": 10, "engine": "dask"})
    assert r.status_code == 202, r.text
    done = wait(api, admin, r.json()["job_id"])
    assert done["status"] == "succeeded", done
    model_id = done["result"]["model_id"]
    info = lifecycle.show(lifecycle.client(stack.mlflow_tracking_uri), model_id)
    assert info.stage == "staging" and info.tags["engine"] == "dask"
    mlflow.set_tracking_uri(stack.mlflow_tracking_uri)
    params = mlflow.get_run(done["result"]["run_id"]).data.params
    assert params["engine"] == "dask" and params["dask.workers"] == "2" and params["dask.training_set"].startswith("s3://")


def test_a_dask_training_on_an_unreachable_scheduler_fails_naming_it_and_registers_nothing(api, keys):
    admin = keys.token(J, ALL_ROLES)
    before = call("GET", f"{api}/ai/models?tenant_id={J}", admin).json()
    r = call("POST", f"{api}/ai/models/train", admin, json={"tenant_id": J, "history_days": 28, "holdout_days": 7,
                                                            "engine": "dask", "dask_scheduler": "tcp://127.0.0.1:9"})
    assert r.status_code == 202, r.text
    done = wait(api, admin, r.json()["job_id"])
    assert done["status"] == "failed" and done["error_code"] == "dask_cluster", done
    assert "tcp://127.0.0.1:9" in done["error"]
    assert call("GET", f"{api}/ai/models?tenant_id={J}", admin).json() == before


def test_an_export_is_the_point_in_time_read_of_every_hour(api, keys, stack):
    user = keys.token(J, ["ai_user"])
    r = call("POST", f"{api}/ai/features/export", user,
             json={"tenant_id": J, "feature_service": "forecast_advanced", "start": "2017-07-20T00:00:00Z",
                   "end": "2017-07-22T00:00:00Z"})
    assert r.status_code == 202, r.text
    done = wait(api, user, r.json()["job_id"])
    assert done["status"] == "succeeded", done
    result = done["result"]
    assert result["rows"] == 48 and result["assets"] == 1 and result["bytes"] > 0
    assert result["uri"] == f"s3://{stack.s3_bucket}/exports/{J}/{done['job_id']}.parquet"

    listed = call("GET", f"{api}/ai/features/exports", user).json()
    assert [(e["job_id"], e["rows"], e["bytes"], e["uri"]) for e in listed][0] == (
        done["job_id"], 48, result["bytes"], result["uri"])

    body = boto3.client("s3", **stack.s3_client_kwargs()).get_object(
        Bucket=stack.s3_bucket, Key=result["uri"].split("/", 3)[3])["Body"].read()
    assert len(body) == result["bytes"]
    table = pq.read_table(io.BytesIO(body)).to_pandas()
    assert len(table) == 48 and table["asset_id"].eq("zone1").all()
    assert {"lag_1h", "lag_168h", "historical_avg_24h", "temperature", "hour_of_day"} <= set(table.columns)
    assert table["lag_1h"].notna().all()

    # the same hour read point-in-time through /ai/features/get gives the same values
    at = pd.Timestamp("2017-07-21T06:00:00Z")
    got = call("POST", f"{api}/ai/features/get", user, json={"tenant_id": J, "asset_ids": ["zone1"],
                                                              "feature_service": "forecast_advanced",
                                                              "timestamp": at.isoformat()})
    assert got.status_code == 200, got.text
    doc = got.json()
    assert doc["source"] == "offline" and len(doc["rows"]) == 1
    row = table[pd.to_datetime(table["event_timestamp"], utc=True) == at].iloc[0]
    for name in ("lag_1h", "lag_24h", "lag_168h", "historical_avg_24h", "temperature", "hour_of_day"):
        assert doc["rows"][0][name] == pytest.approx(row[name]), name


@pytest.mark.parametrize("body, names", [
    ({"start": "2017-07-22T00:00:00Z", "end": "2017-07-20T00:00:00Z"}, "end after start"),
    ({"start": "2017-07-20T00:00:00", "end": "2017-07-22T00:00:00"}, "need a time zone"),
    ({"start": "1800-01-01T00:00:00Z", "end": "2100-01-01T00:00:00Z"}, "1..2,000,000 rows"),
    ({"start": "2017-07-20T00:00:00Z", "end": "2017-07-22T00:00:00Z", "asset_ids": ["zone9"]}, "'zone9'"),
])
def test_an_export_that_could_not_run_is_refused_at_submission(api, keys, body, names):
    r = call("POST", f"{api}/ai/features/export", keys.token(J, ["ai_user"]), json={"tenant_id": J, **body})
    assert r.status_code in (404, 422) and names in r.json()["message"], r.text


def test_a_job_whose_process_died_is_reported_lost_and_frees_its_place(api, keys, stack):
    admin = keys.token(J, ALL_ROLES)
    r = call("POST", f"{api}/ai/models/train", admin, json={"tenant_id": J, "history_days": 28, "holdout_days": 7})
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # its process has claimed it
        with connect(stack) as conn:
            status, pid = conn.execute("SELECT status, pid FROM jobs WHERE id = %s", (job_id,)).fetchone()
        if status == "running":
            break
        time.sleep(0.2)
    os.killpg(pid, signal.SIGKILL)  # the machine's OOM killer, a reboot
    with connect(stack) as conn:  # its last beat, as it will look a minute on (instead of waiting for it)
        conn.execute("UPDATE jobs SET heartbeat_at = heartbeat_at - INTERVAL '2 minutes' WHERE id = %s", (job_id,))
        conn.commit()
    doc = call("GET", f"{api}/ai/jobs/{job_id}", admin).json()
    assert doc["status"] == "failed" and doc["error_code"] == "lost" and "submit it again" in doc["error"]
    again = call("POST", f"{api}/ai/models/train", admin, json={"tenant_id": J, "history_days": 28,
                                                                "holdout_days": 7, "num_boost_round": 10})
    assert again.status_code == 202, again.text  # the lost job no longer holds the tenant's one place
    assert wait(api, admin, again.json()["job_id"])["status"] == "succeeded"
