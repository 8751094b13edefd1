"""notebooks/quickstart.ipynb runs top to bottom against the suite's stack (as `make demo` leaves it)."""

from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient

from core.settings import ROOT
from registry import lifecycle, train_forecast
from registry.training_data import SplitConfig
from tests.helpers.data import tetouan_slice
from tests.helpers.stack import feast
from warehouse.ingest import ingest_readings
from warehouse.refresh import refresh

pytestmark = pytest.mark.integration
TENANT = "nb"


@pytest.fixture(scope="module")
def tenant_with_production_model(stack, store, env, tmp_path_factory):
    tet = tetouan_slice(tmp_path_factory.mktemp("nb") / "t.csv", "2017-06-01", "2017-07-06")
    ingest_readings(stack, tet, TENANT, wide=True, columns="zone1=zone1_power_consumption")
    refresh(stack)
    feast("materialize", "2017-06-01T00:00:00", "2017-07-07T00:00:00", env=env)
    model = train_forecast.train(stack, store, TENANT, split=SplitConfig(history_days=30, holdout_days=7),
                                 boosting=train_forecast.BoosterConfig(num_boost_round=60))
    lifecycle.promote(lifecycle.client(stack.mlflow_tracking_uri), model.model_id, "production", force=True)
    return model.model_id


def test_quickstart_notebook_runs(tenant_with_production_model, monkeypatch):
    monkeypatch.setenv("EMS_TENANT", TENANT)
    nb = nbformat.read(ROOT / "notebooks" / "quickstart.ipynb", as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert f"served: {tenant_with_production_model} -> {TENANT}:load_forecaster:" in outputs
    assert f"served again: {tenant_with_production_model}" in outputs
    images = sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
    assert images >= 3  # forecast, anomalies, waterfall
