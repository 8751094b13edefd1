"""Model lifecycle on the MLflow registry: staging -> production -> archived, delete rules, and
resolution of "the production model" that honours promotions made in the MLflow UI.

Public ids are `{tenant}:{name}:{version}`; registered models are `{tenant}.{name}`. Promotion moves
the `production` alias AND mirrors the deprecated stage so the MLflow UI shows it; resolution takes
the alias first, then the latest version in stage Production (what a UI stage change sets).
"""

from __future__ import annotations

import functools
import logging
import os
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass

from core.errors import InvalidTransitionError, ModelNotFoundError
from core.names import (
    ALIAS_PRODUCTION,
    STAGES,
    TAG_ARTIFACT_LOCATION,
    TAG_MODEL_TYPE,
    TAG_TENANT,
    InvalidModelIdError,
    ModelRef,
    check_model_name,
    check_tenant_id,
    parse_model_id,
    registered_name,
)
from registry.access import grant_registered_model, registry_access

logger = logging.getLogger(__name__)

# Allowed moves between public stages (same stage is refused too).
TRANSITIONS = {
    "staging": {"production", "archived"},
    "production": {"archived"},
    "archived": {"staging", "production"},
}
_MLFLOW_STAGE = {"staging": "Staging", "production": "Production", "archived": "Archived"}


@dataclass
class ModelInfo:
    id: str
    tenant: str
    name: str
    version: int
    stage: str
    model_type: str | None
    run_id: str | None
    created: int
    tags: dict

    def as_dict(self) -> dict:
        return asdict(self)


def _access(what: Callable[..., str]):
    """A public call refused by MLflow (401/403, `ems up --auth`) raises one RegistryAccessError that
    names the user and what it tried (`what` gets the call's arguments after the client)."""

    def wrap(fn):
        @functools.wraps(fn)
        def guarded(mlflow_client, *args, **kwargs):
            with registry_access(mlflow_client.tracking_uri, what(*args, **kwargs)):
                return fn(mlflow_client, *args, **kwargs)

        return guarded

    return wrap


def fail_fast(timeout_s: int) -> None:
    """A registry that does not answer fails a call in about `timeout_s` seconds, not after MLflow's
    default minutes of retries; explicit environment settings win."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(timeout_s))


def client(tracking_uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def _not_found(e: Exception) -> bool:
    from mlflow.exceptions import MlflowException

    return isinstance(e, MlflowException) and e.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")


def _version(mlflow_client, ref: ModelRef):
    from mlflow.exceptions import MlflowException

    try:
        return mlflow_client.get_model_version(registered_name(ref.tenant, ref.name), str(ref.version))
    except MlflowException as e:
        if _not_found(e):
            raise ModelNotFoundError(f"model {ref.id} does not exist") from e
        raise


def _production_version(mlflow_client, name: str) -> str | None:
    """Alias `production` first; else the newest version in stage Production (UI stage change)."""
    from mlflow.exceptions import MlflowException

    try:
        return str(mlflow_client.get_model_version_by_alias(name, ALIAS_PRODUCTION).version)
    except MlflowException as e:
        if not _not_found(e):
            raise
    try:
        # Stage API: deprecated in MLflow; kept because the UI's stage control still writes it.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            latest = mlflow_client.get_latest_versions(name, stages=["Production"])
    except MlflowException as e:
        if _not_found(e):
            return None
        raise
    return str(max(int(v.version) for v in latest)) if latest else None


def stage_of(mlflow_client, version, production: dict[str, str | None] | None = None) -> str:
    """Public stage of an MLflow ModelVersion: production by alias or stage, else its stage.
    `production` caches each registered model's serving version across calls (listing)."""
    if ALIAS_PRODUCTION in (version.aliases or []):
        return "production"
    stage = (version.current_stage or "None").lower()
    if production is None:
        production = {}
    if stage == "production" and version.name not in production:
        production[version.name] = _production_version(mlflow_client, version.name)
    if stage == "production" and production[version.name] != str(version.version):
        return "archived"  # an older Production-stage version behind the alias
    return stage if stage in STAGES else "staging"


def _info(mlflow_client, version, production: dict[str, str | None] | None = None) -> ModelInfo:
    tenant, _, name = version.name.partition(".")
    return ModelInfo(
        id=f"{tenant}:{name}:{version.version}", tenant=tenant, name=name, version=int(version.version),
        stage=stage_of(mlflow_client, version, production), model_type=version.tags.get(TAG_MODEL_TYPE),
        run_id=version.run_id, created=version.creation_timestamp, tags=dict(version.tags),
    )


@_access(lambda tenant, name, *_, **__: f"register model {tenant}:{name}")
def register(mlflow_client, tenant: str, name: str, model_uri: str, run_id: str | None, tags: dict) -> ModelInfo:
    """Register a logged model as a new version of `{tenant}.{name}`; it starts in staging. With basic
    auth, a new registered model is granted to the tenant's users (registry/access.py)."""
    from mlflow.exceptions import MlflowException

    check_tenant_id(tenant)
    check_model_name(name)
    full = registered_name(tenant, name)
    try:
        mlflow_client.create_registered_model(full, tags={TAG_TENANT: tenant})
    except MlflowException as e:
        if e.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    else:
        grant_registered_model(mlflow_client, tenant, full)
    # MLflow 3 logged models (`models:/m-<id>`) must be registered with their model id.
    model_id = model_uri.removeprefix("models:/") if model_uri.startswith("models:/m-") else None
    tags = {**tags, TAG_TENANT: tenant}
    if model_id:  # lets a cold load go straight to the files (inference/models.py)
        tags[TAG_ARTIFACT_LOCATION] = mlflow_client.get_logged_model(model_id).artifact_location
    version = mlflow_client.create_model_version(full, model_uri, run_id=run_id, model_id=model_id, tags=tags)
    _set_stage(mlflow_client, full, str(version.version), "staging")
    logger.info("registered %s version %s", full, version.version)
    return show(mlflow_client, f"{tenant}:{name}:{version.version}")


@_access(lambda model_id: f"read model {model_id}")
def show(mlflow_client, model_id: str) -> ModelInfo:
    return _info(mlflow_client, _version(mlflow_client, parse_model_id(model_id)))


@_access(lambda tenant=None: f"list the models of tenant {tenant}" if tenant else "list models")
def list_models(mlflow_client, tenant: str | None = None) -> list[ModelInfo]:
    """Every version of every model, or of one tenant's models only (by name prefix AND tag)."""
    filter_string = None
    if tenant is not None:
        check_tenant_id(tenant)
        filter_string = f"name LIKE '{tenant}.%'"  # tenant ids cannot contain quotes (check_tenant_id)
    out, production = [], {}
    for version in mlflow_client.search_model_versions(filter_string=filter_string, max_results=10_000):
        info = _info(mlflow_client, version, production)
        if tenant is None or (info.tenant == tenant and info.tags.get(TAG_TENANT) == tenant):
            out.append(info)
    return sorted(out, key=lambda m: (m.tenant, m.name, -m.version))


@_access(lambda model_id, to: f"promote model {model_id} to {to}")
def promote(mlflow_client, model_id: str, to: str) -> ModelInfo:
    """Move a version to `to`; promoting to production archives the previous production version."""
    if not isinstance(to, str) or to.lower() not in STAGES:
        raise InvalidTransitionError(f"stage {to!r} is not one of {', '.join(STAGES)}")
    to = to.lower()
    ref = parse_model_id(model_id)
    version = _version(mlflow_client, ref)
    current = stage_of(mlflow_client, version)
    if to not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(TRANSITIONS[current]))
        raise InvalidTransitionError(f"{ref.id} is {current}; it can move to {allowed}, not {to}")
    name = registered_name(ref.tenant, ref.name)
    if to == "production":
        previous = _production_version(mlflow_client, name)
        mlflow_client.set_registered_model_alias(name, ALIAS_PRODUCTION, str(ref.version))
        _set_stage(mlflow_client, name, str(ref.version), "production")
        if previous and previous != str(ref.version):
            _set_stage(mlflow_client, name, previous, "archived")
            logger.info("archived %s:%s:%s", ref.tenant, ref.name, previous)
    else:
        if current == "production":
            mlflow_client.delete_registered_model_alias(name, ALIAS_PRODUCTION)
        _set_stage(mlflow_client, name, str(ref.version), to)
    logger.info("%s: %s -> %s", ref.id, current, to)
    return show(mlflow_client, ref.id)


def _set_stage(mlflow_client, name: str, version: str, stage: str) -> None:
    # Deprecated in MLflow (aliases replace stages); only this module calls it, so the UI's stage
    # column shows what the alias says. See MLflow's "Deprecated: Model Stages" note.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the deprecation is known; see above
        mlflow_client.transition_model_version_stage(name, version, _MLFLOW_STAGE[stage],
                                                     archive_existing_versions=False)


@_access(lambda model_id, force=False: f"delete model {model_id}")
def delete(mlflow_client, model_id: str, force: bool = False) -> ModelInfo:
    """Delete a version; a production version needs `force`."""
    info = _info(mlflow_client, _version(mlflow_client, parse_model_id(model_id)))
    if info.stage == "production" and not force:
        raise InvalidTransitionError(f"{info.id} is in production; pass --force to delete it")
    mlflow_client.delete_model_version(registered_name(info.tenant, info.name), str(info.version))
    return info


@_access(lambda tenant, name: f"read model {tenant}:{name}")
def resolve_production(mlflow_client, tenant: str, name: str) -> ModelInfo:
    """The version serving `{tenant}:{name}` (alias first, then stage Production)."""
    check_tenant_id(tenant)
    check_model_name(name)
    version = _production_version(mlflow_client, registered_name(tenant, name))
    if version is None:
        raise ModelNotFoundError(f"model {tenant}:{name} has no production version; promote one with "
                                 f"`ems models promote {tenant}:{name}:<version> --to production`")
    return show(mlflow_client, f"{tenant}:{name}:{version}")


__all__ = ["InvalidModelIdError", "InvalidTransitionError", "ModelInfo", "ModelNotFoundError", "client",
           "delete", "list_models", "promote", "register", "resolve_production", "show"]
