"""Served models: "the production model" resolved as the registry does (alias, then stage), loaded
from MLflow once and kept in an LRU cache. Resolutions expire after a TTL, so a promotion made with
`ems models promote` or in the MLflow UI is served without a restart; if MLflow cannot be reached, the
last model resolved is served with a warning.

A load reads the version from the registry (its tags record where its files are), fetches them
straight from S3 when our settings reach it (inference/artifacts.py) or else through MLflow's artifact
proxy, and loads the PythonModel from the local folder (`_python_model`); the run's metrics are read
meanwhile."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cachetools import LRUCache

from core.errors import ModelNotFoundError, ModelUnavailableError
from core.names import (
    TAG_ARTIFACT_LOCATION,
    check_model_name,
    check_tenant_id,
    parse_model_id,
    registered_name,
)
from inference import artifacts
from registry import lifecycle

logger = logging.getLogger(__name__)


@dataclass
class Served:
    info: lifecycle.ModelInfo
    folder: Path  # the local copy of the version's files
    metrics: dict[str, float]
    loaded_at: float
    warnings: list[str] = field(default_factory=list)
    _python: object = field(default=None, repr=False)  # the PythonModel, its load_context run
    _pyfunc: object = field(default=None, repr=False)

    @property
    def model(self):
        """The version as an `mlflow.pyfunc.PyFuncModel` (input schema enforcement, `.metadata`), built
        from the local copy on first use; the hot paths call `python_model` directly."""
        if self._pyfunc is None:
            self._pyfunc = _pyfunc_model(self.folder)
        return self._pyfunc

    @property
    def python_model(self):
        if self._python is None:
            self._python = self.model.unwrap_python_model()
        return self._python

    @property
    def feature_service(self) -> str:
        return self.info.tags.get("feast.feature_service") or self.info.tags.get("feature_service", "")


def registry_unreachable(e: Exception) -> bool:
    """MLflow's client retries and then raises MlflowException (or a requests error) when the
    server is down; tell that apart from "no such model"."""
    import requests
    from mlflow.exceptions import MlflowException

    if isinstance(e, requests.RequestException | ConnectionError):
        return True
    return isinstance(e, MlflowException) and ("Max retries exceeded" in str(e) or "Connection" in str(e))


def _run_metrics(mlflow_client, run_id: str | None) -> dict[str, float]:
    return dict(mlflow_client.get_run(run_id).data.metrics) if run_id else {}


# Model environments (requirements.txt + python_env.yaml) already checked against this process's packages.
_checked_environments: set[bytes] = set()
_ENVIRONMENT_FILES = ("requirements.txt", "python_env.yaml")
PYTHON_MODEL_LOADER = "mlflow.pyfunc.model"  # MLmodel loader_module of a PythonModel (mlflow.pyfunc.log_model)


def _pyfunc_model(folder: Path):
    """`mlflow.pyfunc.load_model` of a local model folder. MLflow's check of the model's requirements
    and Python version against the installed ones (a warning on mismatch) runs once per distinct
    environment in this process: the installed packages do not change while it runs."""
    import mlflow

    environment = b"\0".join((folder / f).read_bytes() if (folder / f).is_file() else b"" for f in _ENVIRONMENT_FILES)
    model = mlflow.pyfunc.load_model(str(folder), suppress_warnings=environment in _checked_environments)
    _checked_environments.add(environment)
    return model


def _python_model(folder: Path) -> tuple[object, object]:
    """(PythonModel, None) or (None, PyFuncModel) of a local model folder.

    A PythonModel saved by `mlflow.pyfunc.log_model` (no code paths, no model config) is read the way
    MLflow's loader reads it, once: MLmodel parsed with libyaml, `python_model.pkl` unpickled,
    `load_context` given the artifacts' local paths. MLflow's own loader parses MLmodel three times
    with the pure-Python YAML parser, a third of a cold load. A version that differs in Python or
    MLflow version, or any other flavor, goes through `mlflow.pyfunc.load_model`."""
    import platform

    import cloudpickle
    import mlflow
    import yaml

    meta = yaml.load((folder / "MLmodel").read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    conf = (meta.get("flavors") or {}).get("python_function") or {}
    simple = (conf.get("loader_module") == PYTHON_MODEL_LOADER and not conf.get("code") and not conf.get("model_config")
              and conf.get("python_version") == platform.python_version()
              and meta.get("mlflow_version") == mlflow.__version__ and conf.get("python_model"))
    if not simple:
        return None, _pyfunc_model(folder)  # another flavor: unwrapped (or refused) where it is used
    with (folder / conf["python_model"]).open("rb") as f:
        python_model = cloudpickle.load(f)
    artifacts = {name: str(folder / spec["path"]) for name, spec in (conf.get("artifacts") or {}).items()}
    python_model.load_context(mlflow.pyfunc.PythonModelContext(artifacts=artifacts, model_config={}))
    return python_model, None


class _ModelLRU(LRUCache):
    """The loaded versions, least recently used evicted first (logged)."""

    def popitem(self):
        evicted, served = super().popitem()
        logger.info("evicted %s from the model cache", evicted)
        return evicted, served


def _doubt(info: lifecycle.ModelInfo) -> list[str]:
    """The warning every result of a version validated worse than its baseline carries."""
    if not info.doubtful:
        return []
    return [f"{info.id} was validated `{info.validation}` at training: expect it to do worse than that baseline"]


class ModelCache:
    """`settings` (core.settings.Settings) lets loads read model files from S3 directly into
    `cache_dir` (default `settings.home / "models"`); without it every load goes through MLflow."""

    def __init__(self, tracking_uri: str, ttl_seconds: float = 30.0, max_models: int = 8, settings=None,
                 cache_dir: Path | None = None):
        self.tracking_uri = tracking_uri
        self.settings = settings
        self.cache_dir = cache_dir or (settings.home / "models" if settings is not None else None)
        self._direct = settings is not None  # off after S3 failed with these settings
        self.ttl_seconds = ttl_seconds
        self.max_models = max_models
        self._models = _ModelLRU(maxsize=max_models)  # by model id, least recently used evicted
        self._production: dict[tuple[str, str], tuple[str, float]] = {}  # (tenant, name) -> (id, resolved at)
        self._lock = threading.RLock()
        # Told of each lookup: ("hit" | "miss", 0.0), then ("load", seconds) once a miss loaded (the API's metrics).
        self.observer: Callable[[str, float], None] | None = None

    def _note(self, event: str, seconds: float = 0.0) -> None:
        if self.observer is not None:
            self.observer(event, seconds)

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
                self._note("hit")
                return self._touch(cached[0])
            try:
                info = lifecycle.resolve_production(self._client(), tenant, name)
            except ModelNotFoundError:
                self._production.pop(key, None)
                raise
            except Exception as e:
                if not registry_unreachable(e):
                    raise
                if cached and cached[0] in self._models:
                    self._note("hit")
                    served = self._touch(cached[0])
                    served.warnings += [f"model registry at {self.tracking_uri} unreachable; serving cached "
                                       f"{served.info.id} resolved {time.monotonic() - cached[1]:.0f} s ago"]
                    return served
                raise ModelUnavailableError(f"model registry at {self.tracking_uri} is unreachable and no "
                                            f"version of {tenant}:{name} is cached; start it with `ems up`") from e
            if cached and cached[0] != info.id:
                logger.info("production %s:%s moved %s -> %s", tenant, name, cached[0], info.id)
            self._production[key] = (info.id, time.monotonic())
            return self.version(info.id, info)

    def warm(self, tenant: str, model: str) -> Served | None:
        """The version a call for `model` (an id, or a name served by its production version) would get
        without asking the registry, if it is loaded and (for a name) resolved within the TTL; else None.
        Nothing is counted or moved in the LRU order."""
        with self._lock:
            if ":" in model:
                try:
                    ref = parse_model_id(model)
                except ValueError:
                    return None  # the call itself says what is wrong with it
                return self._models[ref.id] if ref.id in self._models else None
            cached = self._production.get((tenant, model))
            if cached and time.monotonic() - cached[1] < self.ttl_seconds and cached[0] in self._models:
                return self._models[cached[0]]
            return None

    def version(self, model_id: str, info: lifecycle.ModelInfo | None = None) -> Served:
        """One version by id (loaded once, then from the cache); `info`, if the caller has just read
        it from the registry, is not asked for again."""
        ref = parse_model_id(model_id)
        with self._lock:
            if ref.id in self._models:
                self._note("hit")
                return self._touch(ref.id)
            self._note("miss")
            t0 = time.perf_counter()
            served = self._load(ref.id, registered_name(ref.tenant, ref.name), ref.version, info)
            self._note("load", time.perf_counter() - t0)
            self._models[ref.id] = served
            return self._touch(ref.id)

    def _touch(self, model_id: str) -> Served:
        served = self._models[model_id]  # a read marks it most recently used
        served.warnings = _doubt(served.info)
        return served

    def _load(self, model_id: str, name: str, version: int, info: lifecycle.ModelInfo | None) -> Served:
        client = self._client()
        try:
            info = info or lifecycle.show(client, model_id)  # a missing version raises ModelNotFoundError here
            # The run's metrics are read while the files are fetched and loaded.
            metrics = artifacts.executor().submit(_run_metrics, client, info.run_id)
            folder = self._files(model_id, name, version, info.tags.get(TAG_ARTIFACT_LOCATION))
            python_model, pyfunc = _python_model(folder)
            metrics = metrics.result()
        except ModelNotFoundError:
            raise
        except Exception as e:
            if registry_unreachable(e):
                raise ModelUnavailableError(f"model registry at {self.tracking_uri} is unreachable; cannot load "
                                            f"{model_id}") from e
            raise
        logger.info("loaded %s", model_id)
        return Served(info, folder, metrics, time.monotonic(), _python=python_model, _pyfunc=pyfunc)

    def _files(self, model_id: str, name: str, version: int, recorded: str | None) -> Path:
        """A local folder with the model's files: from S3 directly if possible, else through MLflow.
        `recorded` is the location written on the version at registration; without it (or if S3 does
        not hold the model there) the registry is asked."""
        import mlflow
        from mlflow.exceptions import MlflowException

        location = None
        if self._direct:
            location = recorded or self._client().get_model_version_download_uri(name, str(version))
            try:
                return artifacts.fetch_model(self.settings, location, self.cache_dir, model_id)
            except artifacts.S3Unreachable as e:
                self._direct = False
                logger.warning("%s; loading models through MLflow's artifact proxy from now on", e)
            except artifacts.DirectS3Unavailable as e:
                logger.info("%s; loading %s through MLflow", e, model_id)
        if location is None or location == recorded:
            location = self._client().get_model_version_download_uri(name, str(version))
        try:
            return Path(mlflow.artifacts.download_artifacts(artifact_uri=location, tracking_uri=self.tracking_uri))
        except MlflowException as e:
            if self._direct or self.settings is None:
                raise
            # The proxy serves the S3 bucket that did not answer us: name S3, not the registry.
            raise ModelUnavailableError(
                f"cannot load {model_id}: S3 at {self.settings.s3_endpoint_url} is unreachable, and MLflow's "
                f"artifact proxy at {self.tracking_uri} (which reads the same bucket) failed too; start S3 "
                "with `ems up`") from e

    def cached_ids(self) -> list[str]:
        return list(self._models)
