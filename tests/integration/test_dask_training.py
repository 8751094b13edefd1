"""Distributed training (issue 22 item 3): `ems train forecast --engine dask` fits the in-process boosters with
lightgbm.dask on a 2-worker LocalCluster from the Parquet point-in-time training set, scores within 2 % of
the in-process model on the held-out days, and registers, promotes and serves like it.

Settings chosen before looking at the held-out days: every horizon at every issue time and no gap copies, so
the design holds no random draw and the two engines train on the same rows (they still differ in LightGBM's
data-parallel learner: each worker bins its own rows, and the workers' histograms are summed)."""

from __future__ import annotations

import dataclasses

import mlflow
import pandas as pd
import pytest

from core.settings import Settings
from inference.client import Client
from registry import dask_training, lifecycle, train_forecast, training_data
from registry.training_data import SplitConfig
from tests.helpers.data import tetouan_slice
from tests.helpers.stack import ems
from warehouse import point_in_time
from warehouse.ingest import ingest_readings, ingest_weather
from warehouse.refresh import refresh

pytestmark = pytest.mark.integration
TENANT = "dask"
ZONES = "zone1=zone1_power_consumption,zone2=zone2_power_consumption,zone3=zone3_power_consumption"
# 63 days of three zones: 56 days of training issue times every 12 h x all 168 horizons (56k rows), 7 held
# out; a service without target-hour weather (whose forecast error is a seeded draw too). The two engines'
# models differ (each worker bins the features it is given on its own share, and LightGBM averages the
# workers' quantile leaf values, serial_tree_learner.cpp RenewTreeOutput): on 28 days (14k-28k rows) held-out
# MAE moved -1.6 % to +3.2 % between runs, hence more rows. One thread in process: on this shared 2-core
# machine two OpenMP threads took 200 s for what one thread does in a fraction (the models do not change).
SERVICE = "forecast_advanced"
SPLIT = SplitConfig(history_days=63, holdout_days=7, issue_every_h=12, horizons_per_issue=168, gap_share=0.0)
BOOST = train_forecast.BoosterConfig(num_boost_round=60, calibration_days=7, num_threads=1)


@pytest.fixture(scope="module")
def data(stack, env, tmp_path_factory):
    tet = tetouan_slice(tmp_path_factory.mktemp("dask") / "t.csv", "2017-05-04", "2017-07-06")
    ingest_readings(stack, tet, TENANT, wide=True, columns=ZONES, site="tet-dask")
    ingest_weather(stack, tet, "tet-dask", columns="temperature,humidity,solar_irradiance=general_diffuse_flows")
    refresh(stack)
    ems("materialize", "--start", "2017-05-04T00:00:00", env=env)
    return stack


SEEDS = (0, 1, 2)


def _train(data, store, seed: int, **kw):
    return train_forecast.train(data, store, TENANT, service=SERVICE, split=SPLIT,
                                boosting=dataclasses.replace(BOOST, seed=seed), **kw)


@pytest.fixture(scope="module")
def local(data, store):
    return _train(data, store, SEEDS[0])


@pytest.fixture(scope="module")
def distributed(data, store):
    steps = []
    result = _train(data, store, SEEDS[0], engine="dask", progress=lambda step, done, total: steps.append(step))
    return result, steps


def test_dask_model_scores_within_2_percent_of_the_local_model(data, store, local, distributed):
    """Averaged over three LightGBM seeds: one seed's pair is below the noise floor. The local model alone moved
    1,993-2,086 held-out MAE between seeds 0-2 (feature_fraction's draws; +-2.3 %), and the dask model 1,885-2,119
    between runs and seeds (which worker's rows bin which feature, and the averaged quantile leaves: one seed gave
    2,003 or 2,119, another 1,979 or 1,885 from one run to the next). Seed means: 2,041 local vs 2,027 and 1,995
    dask in two runs (-0.7 %, -2.2 %), mean pinball 707 vs 703 and 700. The dask model is held to no more than
    2 % worse on both (a better one passes up to 5 %, beyond which something other than the learner differs).
    The seed average replaced a one-seed pair after that pair failed in CI (+3.7 % MAE at seed 0)."""
    result, steps = distributed
    runs = {"local": [local] + [_train(data, store, s) for s in SEEDS[1:]],
            "dask": [result] + [_train(data, store, s, engine="dask") for s in SEEDS[1:]]}
    means = {engine: {m: sum(r.metrics[m] for r in rs) / len(rs) for m in ("mae", "pinball_mean", "dayahead_mae")}
             for engine, rs in runs.items()}
    each = {engine: [(round(r.metrics["mae"], 1), round(r.metrics["pinball_mean"], 1)) for r in rs]
            for engine, rs in runs.items()}
    print(means, each, "dask", result.timings, "local", local.timings)  # noqa: T201 (README's figures, pytest -rP)
    for metric in ("mae", "pinball_mean"):  # the point forecast's MAE and the pinball loss of p10/p50/p90
        ratio = means["dask"][metric] / means["local"][metric]
        assert -0.05 <= ratio - 1 <= 0.02, f"{metric}: dask {means['dask'][metric]:.2f} vs local " \
                                       f"{means['local'][metric]:.2f} ({ratio:.4f}; per seed {each})"
    assert result.metrics["rows"] == local.metrics["rows"]  # the same held-out rows
    assert any("Dask workers" in s for s in steps) and steps[-1] == "done"


def test_dask_model_is_registered_like_a_local_one(local, distributed, mlc):
    result, _ = distributed
    name, version = result.model_id.rsplit(":", 1)[0].replace(":", "."), result.model_id.rsplit(":", 1)[1]
    tags = mlc.get_model_version(name, version).tags
    local_tags = mlc.get_model_version(name, local.model_id.rsplit(":", 1)[1]).tags
    assert tags["engine"] == "dask" and local_tags["engine"] == "local"
    assert set(tags) == set(local_tags)
    assert {k: tags[k] for k in ("model_type", "feast.feature_service", "tenant_id")} == \
           {k: local_tags[k] for k in ("model_type", "feast.feature_service", "tenant_id")}
    run = mlflow.get_run(result.run_id)
    assert run.data.params["engine"] == "dask" and run.data.params["dask.workers"] == "2"
    assert int(run.data.params["train_rows"]) == int(mlflow.get_run(local.run_id).data.params["train_rows"])
    assert run.data.params["dask.training_set"].startswith("s3://")
    model = mlflow.pyfunc.load_model(result.model_uri).unwrap_python_model()
    assert sorted(model.boosters) == ["p10", "p50", "p90"] and model.calibration["global"]


@pytest.fixture(scope="module")
def scheduler():
    """A running Dask cluster the CLI is pointed at by address, as at a cluster's scheduler."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None) as cluster:
        yield cluster.scheduler_address


def test_cli_trains_on_a_scheduler_by_address_then_promotes_and_serves(data, store, mlc, scheduler):
    proc = ems("train", "forecast", "--tenant", TENANT, "--asset", "zone1", "--features", SERVICE, "--history-days",
               "35", "--holdout-days", "7", "--boost-rounds", "5", "--engine", "dask",
               env={"EMS_DASK_SCHEDULER": scheduler})
    model_id = proc.stdout.strip().splitlines()[-1]
    version = mlc.get_model_version(f"{TENANT}.load_forecaster", model_id.rsplit(":", 1)[1])
    assert version.tags["engine"] == "dask" and version.current_stage == "Staging"
    assert mlflow.get_run(version.run_id).data.params["dask.scheduler"] == scheduler
    ems("models", "promote", model_id, "--to", "production")
    f = Client(data, store, model_ttl_seconds=0).forecast(TENANT, "zone1", horizon=24)
    assert f.model_id == model_id and f.stage == "production"
    frame = f.frame
    assert len(frame) == 24 and (frame["p10"] <= frame["p50"]).all() and (frame["p50"] <= frame["p90"]).all()


def test_dask_design_of_one_asset_is_the_local_design(data, store, distributed):
    """One asset per partition: with one asset the worker's design is the in-process design, row for row, read
    back from the Parquet export the dask run wrote."""
    result, _ = distributed
    uri = mlflow.get_run(result.run_id).data.params["dask.training_set"]
    p = training_data.plan(data, store, TENANT, ["zone2"], SERVICE, SPLIT)
    local = training_data.build(store, p)
    hourly = point_in_time.read_export(data, uri, "zone2")
    remote = training_data.design(store, p, hourly, dask_training.partition_rng(p, "zone2"))
    pd.testing.assert_frame_equal(remote.train, local.train, check_dtype=False)
    pd.testing.assert_frame_equal(remote.holdout, local.holdout, check_dtype=False)


# Options that conflict are checked before any I/O: tests/unit/registry/test_train_engine.py.
@pytest.mark.parametrize(("args", "message"), [
    (["--engine", "dask", "--dask-scheduler", "tcp://127.0.0.1:9"], "Dask scheduler 'tcp://127.0.0.1:9' did not "
                                                                     "answer"),
    (["--engine", "dask", "--training-set", "s3://ems-artifacts/training-sets/none.parquet"],
     "training set 's3://ems-artifacts/training-sets/none.parquet' cannot be read"),
])
def test_bad_engine_options_are_one_error_and_register_nothing(data, mlc, args, message):
    before = len(mlc.search_model_versions(f"name = '{TENANT}.load_forecaster'"))
    proc = ems("train", "forecast", "--tenant", TENANT, "--history-days", "35", "--holdout-days", "7",
               "--boost-rounds", "5", *args, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert message in " ".join(proc.stderr.split()), proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(mlc.search_model_versions(f"name = '{TENANT}.load_forecaster'")) == before


@pytest.fixture(scope="module")
def mlc(data):
    return lifecycle.client(Settings().mlflow_tracking_uri)
