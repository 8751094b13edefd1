"""Model loads on the real stack: straight from S3 into the local cache, and through MLflow's artifact
proxy when S3 is not reachable with our settings; both give the model `mlflow.pyfunc.load_model` gives."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest

from core.errors import ModelNotFoundError, ModelUnavailableError
from core.names import registered_name
from inference.models import ModelCache
from registry import lifecycle, tracking
from registry.forecaster import BOOSTERS, QuantileForecaster, prepare
from registry.train_forecast import BoosterConfig

pytestmark = pytest.mark.integration
TENANT = "mload"
FEATURES = ["lag_1h", "lag_24h", "historical_avg_24h", "hour_of_day", "horizon_h"]


def _frame(n: int = 600, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    hour = rng.integers(0, 24, n).astype(float)
    base = 100 + 20 * np.sin(2 * np.pi * hour / 24)
    return pd.DataFrame({"lag_1h": base + rng.normal(0, 3, n), "lag_24h": base + rng.normal(0, 3, n),
                         "historical_avg_24h": base + rng.normal(0, 1, n), "hour_of_day": hour,
                         "horizon_h": rng.integers(1, 25, n).astype(float), "y": base + rng.normal(0, 2, n)})


@pytest.fixture(scope="module")
def model_id(stack, tmp_path_factory):
    """A small QuantileForecaster (three boosters as artifacts + python_model.pkl), logged and registered
    the way registry/train_forecast.py does it."""
    import lightgbm as lgb
    from mlflow.models import infer_signature

    train = _frame()
    X, lvl = prepare(train, FEATURES)
    cfg = BoosterConfig(num_boost_round=20, min_data_in_leaf=20, num_threads=1)
    boosters = {name: lgb.train(cfg.params(name), lgb.Dataset(X, label=train["y"].to_numpy() / lvl), 20)
                for name in BOOSTERS}
    model = QuantileForecaster(FEATURES, boosters)
    example = train[FEATURES].head(5)
    mlflow.set_tracking_uri(stack.mlflow_tracking_uri)
    mlflow.set_experiment("model-load-tests")
    with mlflow.start_run() as run:
        info = mlflow.pyfunc.log_model(
            name="model", python_model=model, artifacts=model.save_boosters(tmp_path_factory.mktemp("boosters")),
            signature=infer_signature(example, model.predict(None, example)), input_example=example,
            pip_requirements=tracking.requirements("lightgbm"))
        mlflow.log_metrics({"mae": 1.5, "rmse": 2.5})
    mlc = lifecycle.client(stack.mlflow_tracking_uri)
    return lifecycle.register(mlc, TENANT, "forecaster", info.model_uri, run.info.run_id,
                              {"model_type": "forecast"}).id


@pytest.fixture(scope="module")
def reference(stack, model_id):
    """What MLflow itself loads for the version."""
    version = model_id.rsplit(":", 1)[1]
    mlflow.set_tracking_uri(stack.mlflow_tracking_uri)
    return mlflow.pyfunc.load_model(f"models:/{registered_name(TENANT, 'forecaster')}/{version}")


def _assert_same_model(served, reference, stack, model_id):
    test = _frame(48, seed=1)[FEATURES]
    assert isinstance(served.model, mlflow.pyfunc.PyFuncModel)
    pd.testing.assert_frame_equal(served.model.predict(test), reference.predict(test))
    ours, theirs = served.python_model, reference.unwrap_python_model()
    assert isinstance(ours, QuantileForecaster) and ours.features == theirs.features == FEATURES
    assert {k: b.model_to_string() for k, b in ours.boosters.items()} == \
           {k: b.model_to_string() for k, b in theirs.boosters.items()}
    assert served.model.metadata.signature == reference.metadata.signature
    assert served.info == lifecycle.show(lifecycle.client(stack.mlflow_tracking_uri), model_id)
    assert served.metrics == {"mae": 1.5, "rmse": 2.5} and served.feature_service == ""


def test_direct_s3_load_gives_the_model_mlflow_loads(stack, model_id, reference, tmp_path):
    served = ModelCache(stack.mlflow_tracking_uri, settings=stack, cache_dir=tmp_path).version(model_id)
    _assert_same_model(served, reference, stack, model_id)
    [mlmodel] = tmp_path.rglob("MLmodel")  # the files came straight from S3 into the cache
    assert {"python_model.pkl", *(f"{o}.txt" for o in BOOSTERS)} <= {p.name for p in mlmodel.parent.rglob("*")}
    assert not list(tmp_path.rglob(".partial-*"))


def test_a_second_cache_reuses_the_downloaded_files(stack, model_id, reference, tmp_path):
    ModelCache(stack.mlflow_tracking_uri, settings=stack, cache_dir=tmp_path).version(model_id)
    before = {p: p.stat().st_ino for p in tmp_path.rglob("*") if p.is_file()}
    served = ModelCache(stack.mlflow_tracking_uri, settings=stack, cache_dir=tmp_path).version(model_id)
    assert {p: p.stat().st_ino for p in tmp_path.rglob("*") if p.is_file()} == before
    _assert_same_model(served, reference, stack, model_id)


def test_s3_unreachable_loads_through_the_mlflow_proxy(stack, model_id, reference, tmp_path, caplog):
    wrong = stack.model_copy(update={"s3_endpoint_url": "http://127.0.0.1:9"})  # nothing listens there
    cache = ModelCache(stack.mlflow_tracking_uri, settings=wrong, cache_dir=tmp_path)
    served = cache.version(model_id)
    _assert_same_model(served, reference, stack, model_id)
    assert not list(tmp_path.rglob("*")) and not cache._direct
    assert "loading models through MLflow's artifact proxy" in caplog.text


def test_without_settings_models_load_through_mlflow(stack, model_id, reference):
    _assert_same_model(ModelCache(stack.mlflow_tracking_uri).version(model_id), reference, stack, model_id)


def test_missing_version_and_unreachable_registry_fail_clearly(stack, model_id, tmp_path, monkeypatch):
    cache = ModelCache(stack.mlflow_tracking_uri, settings=stack, cache_dir=tmp_path)
    with pytest.raises(ModelNotFoundError, match=f"model {TENANT}:forecaster:999 does not exist"):
        cache.version(f"{TENANT}:forecaster:999")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    dead = ModelCache("http://127.0.0.1:9", settings=stack, cache_dir=tmp_path)  # nothing listens there
    with pytest.raises(ModelUnavailableError, match=f"unreachable; cannot load {model_id}"):
        dead.version(model_id)
