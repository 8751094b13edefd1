"""MLflow runs for training: one experiment per tenant, Feast lineage, tags shared by every version."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Callable, Iterator

import pandas as pd

from core.names import (
    TAG_FEAST_PROJECT,
    TAG_FEATURE_SERVICE,
    TAG_FINGERPRINT,
    TAG_MODEL_TYPE,
    TAG_SERVICE,
    TAG_TENANT,
    TAG_WINDOW_END,
    TAG_WINDOW_START,
    experiment_name,
)
from core.settings import Settings
from registry import lifecycle

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def training_run(settings: Settings, store, tenant: str, run_name: str, tags: dict) -> Iterator:
    """An active MLflow run in the tenant's experiment. Feast's MLflow integration (enabled in
    feature_store.yaml) tags it with the feature service and refs that get_historical_features read."""
    import mlflow

    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    experiment = mlflow.set_experiment(experiment_name(tenant))
    if experiment.tags.get(TAG_TENANT) != tenant:
        mlflow.MlflowClient(settings.mlflow_tracking_uri).set_experiment_tag(
            experiment.experiment_id, TAG_TENANT, tenant)
    with mlflow.start_run(run_name=run_name, tags={TAG_TENANT: tenant, "feast.project": store.project, **tags}) as run:
        yield run


def version_tags(store, tenant: str, model_type: str, service: str, window, fingerprint: str) -> dict[str, str]:
    return {
        TAG_TENANT: tenant, TAG_MODEL_TYPE: model_type, TAG_FEATURE_SERVICE: service, TAG_SERVICE: service,
        TAG_FEAST_PROJECT: store.project, TAG_WINDOW_START: window[0].isoformat(),
        TAG_WINDOW_END: window[1].isoformat(), TAG_FINGERPRINT: fingerprint,
    }


def log_feast_features(store, service: str) -> None:
    """`feast_features.json` in the run: the feature refs Feast's model resolver checks a feature
    service against (it reports drift if the service's contents change under a model)."""
    import mlflow

    fs = store.get_feature_service(service)
    refs = [f"{p.name_to_use()}:{f.name}" for p in fs.feature_view_projections for f in p.features]
    mlflow.log_dict(refs, "feast_features.json")


def log_figure(fig, name: str) -> None:
    import matplotlib.pyplot as plt
    import mlflow

    mlflow.log_figure(fig, f"plots/{name}.png")
    plt.close(fig)


def register(settings: Settings, tenant: str, name: str, model_uri: str, run_id: str, tags: dict):
    return lifecycle.register(lifecycle.client(settings.mlflow_tracking_uri), tenant, name, model_uri, run_id, tags)


def fingerprint(rows: pd.DataFrame) -> str:
    """Content hash of training rows: same data, same fingerprint."""
    hashed = pd.util.hash_pandas_object(rows, index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()[:16]


def requirements(*packages: str) -> list[str]:
    """Pinned pip requirements of a logged model (skips MLflow's slow inference of them)."""
    from importlib.metadata import version

    return [f"{p}=={version(p)}" for p in (*packages, "pandas", "numpy", "mlflow")]


def write_json(doc: dict, path, default: Callable = str) -> None:
    path.write_text(json.dumps(doc, indent=2, default=default) + "\n")


def publish_report(settings: Settings, tenant: str, report, log_run: Callable[[], str], default: Callable = str):
    """Log an evaluation report (files already written in report.out) to MLflow with `log_run`
    (returns the run id), then record where it went, or why not, in the report's JSON. MLflow being
    down is a warning: the files on disk are complete. `report`: has out, json, doc, run_id, warnings;
    `default`: json.dumps' fallback for values JSON lacks."""
    from mlflow.exceptions import MlflowException

    from core.names import experiment_name
    from stack.services import MLflow

    uri = settings.mlflow_tracking_uri
    try:
        if uri.startswith("http") and not MLflow(settings).healthy():
            raise OSError("unreachable")
        report.run_id = log_run()
    except (MlflowException, OSError) as e:  # OSError: requests' connection errors
        reason = ("is unreachable; report not logged (start it with `ems up`)" if str(e) == "unreachable" else
                  f"did not take the report ({e}); the files in {report.out} are complete")
        report.warnings.append(f"MLflow at {uri} {reason}")
        logger.warning("%s", report.warnings[-1])
    report.doc["mlflow"] = {"experiment": experiment_name(tenant), "run_id": report.run_id,
                            "tracking_uri": uri} if report.run_id else None
    report.doc["warnings"] = report.warnings
    write_json(report.doc, report.json, default)
    return report
