"""Served models: "the production model" resolved as the registry does (alias, then stage), loaded
from MLflow once and kept in an LRU cache. Resolutions expire after a TTL, so a promotion made with
`ems models promote` or in the MLflow UI is served without a restart; if MLflow cannot be reached, the
last model resolved is served with a warning.

A load asks the registry where the version's files are, fetches them straight from S3 when our
settings reach it (inference/artifacts.py) or else through MLflow's artifact proxy, and runs
`mlflow.pyfunc.load_model` on the local folder; the version's info and run metrics are read meanwhile."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from inference import artifacts
from inference.errors import ModelNotFoundError, ModelUnavailableError
from registry import lifecycle
from registry.naming import check_model_name, check_tenant_id, parse_model_id, registered_name

logger = logging.getLogger(__name__)


@dataclass
class Served:
    info: lifecycle.ModelInfo
    model: object  # mlflow.pyfunc.PyFuncModel
    metrics: dict[str, float]
    loaded_at: float
    warnings: list[str] = field(default_factory=list)

    @property
    def python_model(self):
        return self.model.unwrap_python_model()

    @property
    def feature_service(self) -> str:
        return self.info.tags.get("feast.feature_service") or self.info.tags.get("feature_service", "")


def _unreachable(e: Exception) -> bool:
    """MLflow's client retries and then raises MlflowException (or a requests error) when the
    server is down; tell that apart from "no such model"."""
    import requests
    from mlflow.exceptions import MlflowException

    if isinstance(e, requests.RequestException | ConnectionError):
        return True
    return isinstance(e, MlflowException) and ("Max retries exceeded" in str(e) or "Connection" in str(e))


def _describe(mlflow_client, model_id: str,
              info: lifecycle.ModelInfo | None) -> tuple[lifecycle.ModelInfo, dict[str, float]]:
    info = info or lifecycle.show(mlflow_client, model_id)
    metrics = mlflow_client.get_run(info.run_id).data.metrics if info.run_id else {}
    return info, dict(metrics)


# Model environments (requirements.txt + python_env.yaml) already checked against this process's packages.
_checked_environments: set[bytes] = set()
_ENVIRONMENT_FILES = ("requirements.txt", "python_env.yaml")


def _load_local(folder: Path):
    """`mlflow.pyfunc.load_model` of a local model folder. MLflow's check of the model's requirements
    and Python version against the installed ones (a warning on mismatch) runs once per distinct
    environment in this process: the installed packages do not change while it runs."""
    import mlflow

    environment = b"\0".join((folder / f).read_bytes() if (folder / f).is_file() else b"" for f in _ENVIRONMENT_FILES)
    model = mlflow.pyfunc.load_model(str(folder), suppress_warnings=environment in _checked_environments)
    _checked_environments.add(environment)
    return model


class ModelCache:
    """`settings` (stack.settings.Settings) lets loads read model files from S3 directly into
    `cache_dir` (default `settings.home / "models"`); without it every load goes through MLflow."""

    def __init__(self, tracking_uri: str, ttl_seconds: float = 30.0, max_models: int = 8, settings=None,
                 cache_dir: Path | None = None):
        self.tracking_uri = tracking_uri
        self.settings = settings
        self.cache_dir = cache_dir or (settings.home / "models" if settings is not None else None)
        self._direct = settings is not None  # off after S3 failed with these settings
        self.ttl_seconds = ttl_seconds
        self.max_models = max_models
        self._models: OrderedDict[str, Served] = OrderedDict()  # by model id, LRU order
        self._production: dict[tuple[str, str], tuple[str, float]] = {}  # (tenant, name) -> (id, resolved at)
        self._lock = threading.RLock()

    def _client(self):
        return lifecycle.client(self.tracking_uri)

    def production(self, tenant: str, name: str) -> Served:
        """The serving version of `{tenant}:{name}`, re-resolved once the TTL has passed."""
        check_tenant_id(tenant)
        check_model_name(name)
        key = (tenant, name)
        with self._lock:
            cached = self._production.get(key)
            if cached and time.monotonic() - cached[1] < self.ttl_seconds and cached[0] in self._models:
                return self._touch(cached[0])
            try:
                info = lifecycle.resolve_production(self._client(), tenant, name)
            except ModelNotFoundError:
                self._production.pop(key, None)
                raise
            except Exception as e:
                if not _unreachable(e):
                    raise
                if cached and cached[0] in self._models:
                    served = self._touch(cached[0])
                    served.warnings = [f"model registry at {self.tracking_uri} unreachable; serving cached "
                                       f"{served.info.id} resolved {time.monotonic() - cached[1]:.0f} s ago"]
                    return served
                raise ModelUnavailableError(f"model registry at {self.tracking_uri} is unreachable and no "
                                            f"version of {tenant}:{name} is cached; start it with `ems up`") from e
            if cached and cached[0] != info.id:
                logger.info("production %s:%s moved %s -> %s", tenant, name, cached[0], info.id)
            self._production[key] = (info.id, time.monotonic())
            return self.version(info.id, info)

    def version(self, model_id: str, info: lifecycle.ModelInfo | None = None) -> Served:
        """One version by id (loaded once, then from the cache); `info`, if the caller has just read
        it from the registry, is not asked for again."""
        ref = parse_model_id(model_id)
        with self._lock:
            if ref.id in self._models:
                return self._touch(ref.id)
            served = self._load(ref.id, registered_name(ref.tenant, ref.name), ref.version, info)
            self._models[ref.id] = served
            while len(self._models) > self.max_models:
                evicted, _ = self._models.popitem(last=False)
                logger.info("evicted %s from the model cache", evicted)
            return served

    def _touch(self, model_id: str) -> Served:
        self._models.move_to_end(model_id)
        served = self._models[model_id]
        served.warnings = []
        return served

    def _load(self, model_id: str, name: str, version: int, info: lifecycle.ModelInfo | None) -> Served:
        client = self._client()
        try:
            # The version's info and run metrics are read while the files are located, fetched and loaded.
            with ThreadPoolExecutor(1) as pool:
                described = pool.submit(_describe, client, model_id, info)
                try:
                    location = client.get_model_version_download_uri(name, str(version))
                except Exception:
                    described.result()  # a missing version raises ModelNotFoundError here
                    raise
                model = _load_local(self._files(model_id, location))
                info, metrics = described.result()
        except ModelNotFoundError:
            raise
        except Exception as e:
            if _unreachable(e):
                raise ModelUnavailableError(f"model registry at {self.tracking_uri} is unreachable; cannot load "
                                            f"{model_id}") from e
            raise
        logger.info("loaded %s", model_id)
        return Served(info, model, metrics, time.monotonic())

    def _files(self, model_id: str, artifact_uri: str) -> Path:
        """A local folder with the model's files: from S3 directly if possible, else through MLflow."""
        import mlflow

        if self._direct:
            try:
                return artifacts.fetch_model(self.settings, artifact_uri, self.cache_dir, model_id)
            except artifacts.S3Unreachable as e:
                self._direct = False
                logger.warning("%s; loading models through MLflow's artifact proxy from now on", e)
            except artifacts.DirectS3Unavailable as e:
                logger.info("%s; loading %s through MLflow", e, model_id)
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=artifact_uri, tracking_uri=self.tracking_uri))

    def cached_ids(self) -> list[str]:
        return list(self._models)
