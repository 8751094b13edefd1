"""Served models: "the production model" resolved as the registry does (alias, then stage), loaded
from MLflow once and kept in an LRU cache. Resolutions expire after a TTL, so a promotion made with
`ems models promote` or in the MLflow UI is served without a restart; if MLflow cannot be reached, the
last model resolved is served with a warning."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

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


class ModelCache:
    def __init__(self, tracking_uri: str, ttl_seconds: float = 30.0, max_models: int = 8):
        self.tracking_uri = tracking_uri
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
                model_id = lifecycle.resolve_production(self._client(), tenant, name).id
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
            if cached and cached[0] != model_id:
                logger.info("production %s:%s moved %s -> %s", tenant, name, cached[0], model_id)
            self._production[key] = (model_id, time.monotonic())
            return self.version(model_id)

    def version(self, model_id: str) -> Served:
        """One version by id (loaded once, then from the cache)."""
        ref = parse_model_id(model_id)
        with self._lock:
            if ref.id in self._models:
                return self._touch(ref.id)
            served = self._load(ref.id, registered_name(ref.tenant, ref.name), ref.version)
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

    def _load(self, model_id: str, name: str, version: int) -> Served:
        import mlflow

        client = self._client()
        try:
            info = lifecycle.show(client, model_id)
            mlflow.set_tracking_uri(self.tracking_uri)
            model = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
            metrics = client.get_run(info.run_id).data.metrics if info.run_id else {}
        except ModelNotFoundError:
            raise
        except Exception as e:
            if _unreachable(e):
                raise ModelUnavailableError(f"model registry at {self.tracking_uri} is unreachable; cannot load "
                                            f"{model_id}") from e
            raise
        logger.info("loaded %s", model_id)
        return Served(info, model, dict(metrics), time.monotonic())

    def cached_ids(self) -> list[str]:
        return list(self._models)
