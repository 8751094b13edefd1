"""`ems evaluate anomaly` end to end on three real NAB files: ingest into a tenant, read back from
Postgres, every streaming method, NAB scoring, report on disk and in MLflow; a rerun changes nothing."""

from __future__ import annotations

import json
import math
import shutil

import mlflow
import pandas as pd
import pytest

from core.settings import ROOT
from tests.helpers.stack import ems
from warehouse.db import connect

pytestmark = pytest.mark.integration

CORPUS = ROOT / "data" / "nab"
FILES = (
    "realAdExchange/exchange-3_cpc_results.csv",  # 3 windows, hourly with gaps
    "realTraffic/speed_t4013.csv",  # 2 windows, one timestamp twice with different values
    "artificialNoAnomaly/art_flatline.csv",  # no window: every detection is an FP
)
TENANT = "nab-it"


@pytest.fixture
def small_corpus(tmp_path):
    """A NAB-layout folder with three of the corpus files and their windows."""
    root = tmp_path / "nab"
    windows = json.loads((CORPUS / "labels" / "combined_windows.json").read_text())
    for name in FILES:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(CORPUS / f"{name}.gz", root / f"{name}.gz")
    (root / "labels").mkdir()
    (root / "labels" / "combined_windows.json").write_text(json.dumps({n: windows[n] for n in FILES}))
    (root / "config").mkdir()
    shutil.copy(CORPUS / "config" / "profiles.json", root / "config" / "profiles.json")
    return root


def _evaluate(env, corpus, out):
    proc = ems("evaluate", "anomaly", "--nab", str(corpus), "--tenant", TENANT, "--out", str(out), "--json", env=env)
    return json.loads(proc.stdout)


def test_nab_evaluation_end_to_end_and_rerun(stack, env, small_corpus, tmp_path):
    doc = _evaluate(env, small_corpus, tmp_path / "first")
    rows = {n: len(pd.read_csv(CORPUS / f"{n}.gz")) for n in FILES}

    # Ingested through the project's ingest: one asset per file, the conflicting pair rejected.
    assert doc["ingest"]["rows_read"] == sum(rows.values()) and doc["ingest"]["rejected"] == 2
    assert doc["ingest"]["inserted"] == sum(rows.values()) - 2 and doc["ingest"]["assets"] == 3
    with connect(stack) as conn:
        stored = conn.execute("SELECT count(*) FROM readings WHERE tenant_id = %s", (TENANT,)).fetchone()[0]
    assert stored == sum(rows.values()) - 2
    by_file = {f["name"]: f for f in doc["file_rows"]}
    assert by_file["realTraffic/speed_t4013.csv"]["from_file"] == 2  # the conflicting pair, fed as NAB does
    assert by_file["realTraffic/speed_t4013.csv"]["asset_id"] == "realTraffic.speed_t4013"
    assert [by_file[n]["rows"] for n in FILES] == [rows[n] for n in FILES]

    # Every method, every profile: a threshold, counts over the 5 windows, a score <= 100; null is 0.
    assert doc["files"] == 3 and doc["complete"] is False
    assert set(doc["results"]) == {"z_score", "iqr", "isolation_forest", "local_outlier_factor",
                                   "forecast_residual", "null"}
    for method, by_profile in doc["results"].items():
        assert set(by_profile) == {"standard", "reward_low_FP_rate", "reward_low_FN_rate"}
        for r in by_profile.values():
            assert r["normalised"] <= 100.0 and not math.isnan(r["normalised"])
            assert r["tp"] + r["fn"] == 5 and r["fp"] >= 0
            if method == "null":
                assert (r["normalised"], r["tp"], r["fp"]) == (0.0, 0, 0)
        assert set(doc["per_file"][method]) == set(FILES)
    assert doc["best"]["standard"] in doc["methods"]

    # The report on disk and in MLflow.
    report = doc["report"]
    markdown = open(report["markdown"]).read()
    assert "Partial corpus" in markdown and "| z_score |" in markdown.replace("**", "")
    scores = pd.read_parquet(report["scores"])
    assert len(scores) == sum(rows.values()) and scores["z_score"].between(0, 1).all()
    assert doc["mlflow"]["run_id"] and doc["warnings"] == []
    run = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"]).get_run(doc["mlflow"]["run_id"])
    standard = doc["results"]["z_score"]["standard"]
    assert run.data.metrics["z_score.standard.score"] == pytest.approx(standard["normalised"])
    assert run.data.metrics["null.standard.score"] == 0.0
    assert run.data.tags["tenant_id"] == TENANT

    # Rerun: the ingest changes nothing and the scores are the same.
    again = _evaluate(env, small_corpus, tmp_path / "second")
    assert (again["ingest"]["inserted"], again["ingest"]["updated"]) == (0, 0)
    assert again["ingest"]["unchanged"] == sum(rows.values()) - 2
    assert again["results"] == doc["results"]
