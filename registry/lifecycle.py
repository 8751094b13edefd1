"""Model lifecycle on the MLflow registry: staging -> production -> archived, delete rules, and
resolution of "the production model" that honours promotions made in the MLflow UI.

Public ids are `{tenant}:{name}:{version}`; registered models are `{tenant}.{name}`. Promotion moves
the `production` alias AND the deprecated stage together, so both MLflow UI controls show it. What
serves is decided by one rule, `_serving_rule`: the alias's version unless a stage change made outside
`ems` archived it; else the version most recently moved to stage Production.
"""

from __future__ import annotations

import functools
import getpass
import json
import logging
import os
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from core.errors import InvalidTransitionError, ModelNotFoundError
from core.names import (
    ALIAS_PRODUCTION,
    STAGES,
    TAG_ARTIFACT_LOCATION,
    TAG_MODEL_TYPE,
    TAG_TENANT,
    TAG_VALIDATION,
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
# Audit trail of `ems` moves (tags on the version): the latest under fixed keys, each under a prefix.
TAG_PROMOTED_AT = "ems.promoted_at"
TAG_PROMOTED_BY = "ems.promoted_by"
TAG_PROMOTED_FROM = "ems.promoted_from_version"
TAG_PROMOTION_REASON = "ems.promotion_reason"
TAG_PROMOTION_PREFIX = "ems.promotion."
TAG_ARCHIVED_AT = "ems.archived_at"  # server time of the Archived stage `ems` set
MAX_REASON = 500
_MLFLOW_STAGE = {"staging": "Staging", "production": "Production", "archived": "Archived"}


# Training-run metrics `ems models list/show` print (those the run has).
KEY_METRICS = ("dayahead_mae", "dayahead_mase_168", "dayahead_naive_168_mase", "dayahead_coverage_p10_p90",
               "precision", "recall", "f1")


@dataclass
class ModelInfo:
    """One version as MLflow holds it (stage, aliases, tags) and whether it serves by the one rule."""
    id: str
    tenant: str
    name: str
    version: int
    stage: str  # MLflow's stage, lower case: none | staging | production | archived
    model_type: str | None
    run_id: str | None
    created: int
    tags: dict
    aliases: list[str] = field(default_factory=list)
    serving: bool = False  # what `forecast`/`anomaly` load now for {tenant}:{name}
    validation: str | None = None  # `validation_status` tag set at training
    metrics: dict = field(default_factory=dict)
    disagreement: str | None = None  # alias and stage tell different stories
    updated: int | None = None  # MLflow's last update of the version (its last stage change)

    @property
    def doubtful(self) -> bool:
        """Validated worse than its baseline at training."""
        return bool(self.validation and self.validation.startswith("worse_than"))

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


def _serving_rule(alias_target, versions) -> str | None:
    """THE rule for the version that serves (SDK, CLI, list): the `production` alias's target unless a
    stage change made outside `ems` archived it; else the version most recently moved to stage Production.
    `alias_target` is the alias's ModelVersion (or None); `versions` the registered model's versions
    (only read when the alias does not decide)."""
    if _alias_decides(alias_target):
        return str(alias_target.version)
    staged = [v for v in versions if v.current_stage == "Production"]
    if not staged:
        return None
    return str(max(staged, key=lambda v: (v.last_updated_timestamp or 0, int(v.version))).version)


def _versions_of(mlflow_client, name: str) -> list:
    return _with_aliases(mlflow_client, mlflow_client.search_model_versions(filter_string=f"name = '{name}'",
                                                                            max_results=10_000))


def _with_aliases(mlflow_client, versions) -> list:
    """`versions` with their aliases filled in: a search answers every version with none (MLflow
    3.17), so they come from each registered model, which holds them."""
    versions = list(versions)
    held: dict[str, dict[str, list[str]]] = {}
    for name in {v.name for v in versions}:
        held[name] = {}
        for alias, version in mlflow_client.get_registered_model(name).aliases.items():
            held[name].setdefault(str(version), []).append(alias)
    for v in versions:
        v.aliases = sorted(held[v.name].get(str(v.version), []))
    return versions


def _production_version(mlflow_client, name: str) -> str | None:
    """The serving version of registered model `name` by `_serving_rule` (one call while the alias decides)."""
    from mlflow.exceptions import MlflowException

    try:
        target = mlflow_client.get_model_version_by_alias(name, ALIAS_PRODUCTION)
    except MlflowException as e:
        if not _not_found(e):
            raise
        target = None
    return _serving_rule(target, [] if _alias_decides(target) else _versions_of(mlflow_client, name))


def _alias_decides(target) -> bool:
    """The alias decides unless a stage change made outside `ems` archived its target (the legacy UI's
    "archive existing", or a move to Archived): `ems` archives only versions the alias has just left,
    so an alias on a version `ems` archived was moved there afterwards, deliberately."""
    if target is None:
        return False
    return target.current_stage != "Archived" or _archived_by_ems(target)


def _archived_by_ems(version) -> bool:
    """Its current Archived stage is the one `ems` set (the tag holds that transition's server time)."""
    return version.tags.get(TAG_ARCHIVED_AT) == str(version.last_updated_timestamp)


def _public_stage(version) -> str:
    """MLflow's stage as it holds it, lower case (`none` for a version no one staged)."""
    return (version.current_stage or "None").lower()


def _disagreement(version, serving: str | None) -> str | None:
    """Where alias and stage tell different stories about `version` (None when they agree)."""
    me, stage = str(version.version), version.current_stage or "None"
    aliased = ALIAS_PRODUCTION in (version.aliases or [])
    if me == serving and stage != "Production":
        return f"serves through the `{ALIAS_PRODUCTION}` alias, but its MLflow stage is {stage}"
    if stage == "Production" and me != serving:
        return f"MLflow stage Production, but version {serving} serves (the `{ALIAS_PRODUCTION}` alias points there)"
    if aliased and me != serving:
        return (f"has the `{ALIAS_PRODUCTION}` alias but is {stage}, so it does not serve"
                + (f"; version {serving} (stage Production) does" if serving else ""))
    return None


def _effective(info: ModelInfo) -> str:
    """The public state promotion rules use: production = serves; else archived or staging."""
    if info.serving:
        return "production"
    return "archived" if info.stage == "archived" else "staging"


def _info(version, serving: str | None, metrics: dict | None = None) -> ModelInfo:
    tenant, _, name = version.name.partition(".")
    me = str(version.version)
    return ModelInfo(
        id=f"{tenant}:{name}:{me}", tenant=tenant, name=name, version=int(me), stage=_public_stage(version),
        model_type=version.tags.get(TAG_MODEL_TYPE), run_id=version.run_id, created=version.creation_timestamp,
        tags=dict(version.tags), aliases=sorted(version.aliases or []), serving=me == serving,
        validation=version.tags.get(TAG_VALIDATION), metrics=metrics or {},
        disagreement=_disagreement(version, serving), updated=version.last_updated_timestamp,
    )


def _key_metrics(mlflow_client, run_id: str | None) -> dict[str, float]:
    """The few numbers a promotion decision looks at, from the version's training run."""
    from mlflow.exceptions import MlflowException

    if not run_id:
        return {}
    try:
        found = mlflow_client.get_run(run_id).data.metrics
    except MlflowException:
        return {}  # the run was deleted: the version stays listable
    return {k: found[k] for k in KEY_METRICS if k in found}


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
    """One version with its stage, aliases, whether it serves, validation and key training metrics."""
    ref = parse_model_id(model_id)
    version = _version(mlflow_client, ref)
    serving = _production_version(mlflow_client, version.name)
    return _info(version, serving, _key_metrics(mlflow_client, version.run_id))


@_access(lambda tenant=None, *_, **__: f"list the models of tenant {tenant}" if tenant else "list models")
def list_models(mlflow_client, tenant: str | None = None, metrics: bool = True) -> list[ModelInfo]:
    """Every version of every model, or of one tenant's models only (by name prefix AND tag), each
    marked with whether it serves (one rule, `_serving_rule`, over the versions listed)."""
    filter_string = None
    if tenant is not None:
        check_tenant_id(tenant)
        filter_string = f"name LIKE '{tenant}.%'"  # tenant ids cannot contain quotes (check_tenant_id)
    by_name: dict[str, list] = {}
    for version in _with_aliases(mlflow_client, mlflow_client.search_model_versions(filter_string=filter_string,
                                                                                    max_results=10_000)):
        by_name.setdefault(version.name, []).append(version)
    out = []
    for versions in by_name.values():
        aliased = [v for v in versions if ALIAS_PRODUCTION in (v.aliases or [])]
        serving = _serving_rule(aliased[0] if aliased else None, versions)
        for version in versions:
            info = _info(version, serving,
                         _key_metrics(mlflow_client, version.run_id) if metrics else None)
            if tenant is None or (info.tenant == tenant and info.tags.get(TAG_TENANT) == tenant):
                out.append(info)
    return sorted(out, key=lambda m: (m.tenant, m.name, -m.version))


@_access(lambda model_id, to, **_: f"promote model {model_id} to {to}")
def promote(mlflow_client, model_id: str, to: str, force: bool = False, reason: str | None = None) -> ModelInfo:
    """Move a version to `to` through both MLflow controls: production sets the `production` alias
    and stage Production and archives every other Production-stage version; archiving the serving
    version removes the alias. A version validated worse than its baseline needs `force` for
    production. Each move is recorded on the version (who, when, from which version, why)."""
    if not isinstance(to, str) or to.lower() not in STAGES:
        raise InvalidTransitionError(f"stage {to!r} is not one of {', '.join(STAGES)}")
    to = to.lower()
    if reason is not None and (not isinstance(reason, str) or not reason.strip() or len(reason) > MAX_REASON):
        raise InvalidTransitionError(f"reason {reason!r} must be 1..{MAX_REASON} characters of text")
    ref = parse_model_id(model_id)
    name = registered_name(ref.tenant, ref.name)
    serving = _production_version(mlflow_client, name)
    info = _info(_version(mlflow_client, ref), serving)
    current = _effective(info)
    resync = to == current == "production" and not _agrees(mlflow_client, name, str(ref.version))
    if to not in TRANSITIONS[current] and not resync:
        allowed = ", ".join(sorted(TRANSITIONS[current]))
        raise InvalidTransitionError(f"{ref.id} is {current}; it can move to {allowed}, not {to}")
    if to == "production" and info.doubtful and not force:
        raise InvalidTransitionError(f"{ref.id} was validated `{info.validation}` at training; "
                                     "pass --force to put it in production anyway")
    if to == "production":
        _make_serving(mlflow_client, name, str(ref.version))
    else:
        if current == "production":
            mlflow_client.delete_registered_model_alias(name, ALIAS_PRODUCTION)
        _set_stage(mlflow_client, name, str(ref.version), to)
    at = mlflow_client.get_model_version(name, str(ref.version)).last_updated_timestamp  # the server's clock
    _record(mlflow_client, name, str(ref.version), at, to, serving, reason)
    logger.info("%s: %s -> %s", ref.id, current, to)
    return show(mlflow_client, ref.id)


@_access(lambda model_id, **_: f"promote model {model_id} to production")
def ensure_production(mlflow_client, model_id: str, reason: str, previous: str | None = None) -> ModelInfo:
    """`promote(model_id, "production")` for an unattended step that may be retried: when an earlier attempt
    already made the version serve (alias and stage both name it alone: the attempt was cut off after the
    move, e.g. MLflow unreachable while it wrote the audit tags), only the audit record is completed,
    instead of the refusal `ems models promote` gives for a version already in production. `previous`: the
    model id that served before the first attempt (the audit's from_version)."""
    ref = parse_model_id(model_id)
    name = registered_name(ref.tenant, ref.name)
    if not _agrees(mlflow_client, name, str(ref.version)):
        return promote(mlflow_client, model_id, "production", reason=reason)
    version = _version(mlflow_client, ref)
    if not any(k.startswith(TAG_PROMOTION_PREFIX) and json.loads(v).get("to") == "production"
               for k, v in version.tags.items()):
        before = str(parse_model_id(previous).version) if previous else None
        _record(mlflow_client, name, str(ref.version), version.last_updated_timestamp, "production", before, reason)
        logger.info("%s: already serving; promotion record completed", ref.id)
    return show(mlflow_client, ref.id)


@_access(lambda model_id: f"complete the registration of model {model_id}")
def complete_registration(mlflow_client, model_id: str) -> ModelInfo:
    """A version whose registration stopped between its creation and its stage (MLflow unreachable between
    the two calls of `register`) is still in MLflow's stage None: put it in staging, as `register` would
    have, and end its training run if the outage left it RUNNING (its files and metrics were complete
    before the version was created). Any other version is returned as it is."""
    ref = parse_model_id(model_id)
    version = _version(mlflow_client, ref)
    if _public_stage(version) == "none":
        _set_stage(mlflow_client, version.name, str(ref.version), "staging")
        if version.run_id and mlflow_client.get_run(version.run_id).info.status == "RUNNING":
            mlflow_client.set_terminated(version.run_id, "FINISHED")
        logger.info("%s: registration completed (stage staging)", ref.id)
    return show(mlflow_client, ref.id)


def _make_serving(mlflow_client, name: str, version: str, rounds: int = 5) -> None:
    """Alias, then stage Production, then archive every other Production-stage version. The alias write
    orders concurrent promotions: one that finds the alias moved on before touching stages stops; one
    that finds it moved on after archiving puts back what it archived of the winner and archives its
    own version, so the end state has one Production version, the alias's."""
    _set_alias(mlflow_client, name, version)
    for _ in range(rounds):
        if str(mlflow_client.get_model_version_by_alias(name, ALIAS_PRODUCTION).version) != version:
            logger.info("%s version %s: a later promotion moved the alias; it decides", name, version)
            return
        _set_stage(mlflow_client, name, version, "production")
        archived = []
        for other in _versions_of(mlflow_client, name):
            if other.current_stage == "Production" and str(other.version) != version:
                _set_stage(mlflow_client, name, str(other.version), "archived")
                archived.append(str(other.version))
                logger.info("archived %s version %s", name, other.version)
        target = mlflow_client.get_model_version_by_alias(name, ALIAS_PRODUCTION)
        if str(target.version) != version:  # overtaken while archiving: step aside
            if str(target.version) in archived:
                _set_stage(mlflow_client, name, str(target.version), "production")
            _set_stage(mlflow_client, name, version, "archived")
            logger.info("%s version %s: overtaken by version %s", name, version, target.version)
            return
        if target.current_stage == "Production":
            return
    raise InvalidTransitionError(f"{name} version {version}: concurrent promotions kept archiving it; retry")


def _set_alias(mlflow_client, name: str, version: str) -> None:
    """Point the production alias at `version` (the last write orders concurrent promotions)."""
    _upsert(mlflow_client.set_registered_model_alias, name, ALIAS_PRODUCTION, version)


def _upsert(write, *args, tries: int = 5) -> None:
    """An MLflow write of a row that may not exist yet (an alias, a version tag). The server does these by
    select-then-insert, so two writers that both find no row collide on its primary key; the loser's retry
    finds the row and updates it."""
    from mlflow.exceptions import MlflowException

    for attempt in range(tries):
        try:
            write(*args)
            return
        except MlflowException as e:
            collided = "UniqueViolation" in str(e) or "UNIQUE constraint" in str(e)
            if not collided or attempt == tries - 1:
                raise
            logger.info("%s%s: written concurrently; retrying", getattr(write, "__name__", "write"), args[:2])


def _agrees(mlflow_client, name: str, version: str) -> bool:
    """Both controls name `version` alone: it has the alias and is the only version in stage Production."""
    versions = _versions_of(mlflow_client, name)
    aliased = [str(v.version) for v in versions if ALIAS_PRODUCTION in (v.aliases or [])]
    staged = [str(v.version) for v in versions if v.current_stage == "Production"]
    return aliased == staged == [version]


def _actor() -> str:
    """Who acts: the MLflow user with auth on, else the operating-system user."""
    return os.environ.get("MLFLOW_TRACKING_USERNAME") or getpass.getuser()


def _record(mlflow_client, name: str, version: str, at: int, to: str, previous: str | None,
            reason: str | None) -> None:
    """The audit trail of one `ems` move, as tags on the version: the latest move under fixed keys and
    every move under `ems.promotion.<at>` (what `history` reads); `at` is the server's time of the
    stage change, so history can tell a later change made elsewhere by the version's update time."""
    event = {"to": to, "by": _actor(), "from_version": previous, "reason": reason}
    for key, value in {TAG_PROMOTED_AT: str(at), TAG_PROMOTED_BY: event["by"],
                       TAG_PROMOTED_FROM: previous or "", TAG_PROMOTION_REASON: reason or "",
                       f"{TAG_PROMOTION_PREFIX}{at}": json.dumps(event)}.items():
        _upsert(mlflow_client.set_model_version_tag, name, version, key, value)


def _set_stage(mlflow_client, name: str, version: str, stage: str):
    # Deprecated in MLflow (aliases replace stages); only this module calls it, so the UI's stage
    # column shows what the alias says. See MLflow's "Deprecated: Model Stages" note.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the deprecation is known; see above
        moved = mlflow_client.transition_model_version_stage(name, version, _MLFLOW_STAGE[stage],
                                                             archive_existing_versions=False)
    if stage == "archived":  # marks this Archived stage as set by `ems` (see _alias_decides)
        _upsert(mlflow_client.set_model_version_tag, name, version, TAG_ARCHIVED_AT, str(moved.last_updated_timestamp))
    return moved


@_access(lambda model_id, force=False: f"delete model {model_id}")
def delete(mlflow_client, model_id: str, force: bool = False) -> ModelInfo:
    """Delete a version; the serving version needs `force`."""
    info = show(mlflow_client, model_id)
    if info.serving and not force:
        raise InvalidTransitionError(f"{info.id} is serving (production); pass --force to delete it")
    mlflow_client.delete_model_version(registered_name(info.tenant, info.name), str(info.version))
    return info


@_access(lambda tenant, name: f"read model {tenant}:{name}")
def resolve_production(mlflow_client, tenant: str, name: str) -> ModelInfo:
    """The version serving `{tenant}:{name}` by the one rule (`_serving_rule`)."""
    check_tenant_id(tenant)
    check_model_name(name)
    full = registered_name(tenant, name)
    version = _production_version(mlflow_client, full)
    if version is None:
        raise ModelNotFoundError(f"model {tenant}:{name} has no production version; promote one with "
                                 f"`ems models promote {tenant}:{name}:<version> --to production`")
    return _info(_version(mlflow_client, ModelRef(tenant, name, int(version))), version)


@dataclass
class HistoryEvent:
    at: int | None  # epoch ms; None: MLflow keeps no time for it
    version: int
    to: str
    by: str
    source: str  # ems | mlflow (the UI or any other client)
    from_version: str | None = None
    reason: str | None = None


@_access(lambda tenant, name: f"read model {tenant}:{name}")
def history(mlflow_client, tenant: str, name: str) -> tuple[list[HistoryEvent], list[str]]:
    """Promotions and rollbacks of `{tenant}:{name}`, oldest first, and what MLflow cannot tell.
    `ems` moves come from the versions' audit tags; a version's last stage change made elsewhere
    (MLflow UI, MlflowClient) from its stage and update time; the alias only as it stands now."""
    check_tenant_id(tenant)
    check_model_name(name)
    versions = _versions_of(mlflow_client, registered_name(tenant, name))
    if not versions:
        raise ModelNotFoundError(f"model {tenant}:{name} has no versions")
    events = []
    for v in versions:
        ours = [(int(k.removeprefix(TAG_PROMOTION_PREFIX)), json.loads(val)) for k, val in v.tags.items()
                if k.startswith(TAG_PROMOTION_PREFIX)]
        events += [HistoryEvent(at, int(v.version), e["to"], e["by"], "ems", e.get("from_version"), e.get("reason"))
                   for at, e in ours]
        stage = _public_stage(v)
        latest_ours = max(ours, default=(None, None), key=lambda x: x[0])
        explained = latest_ours[0] is not None and latest_ours[1]["to"] == stage \
            and (v.last_updated_timestamp or 0) <= latest_ours[0]
        registered = stage in ("staging", "none") and (v.last_updated_timestamp or 0) - v.creation_timestamp < 60_000
        if not explained and not registered:
            events.append(HistoryEvent(v.last_updated_timestamp, int(v.version), stage, "-", "mlflow"))
        if ALIAS_PRODUCTION in (v.aliases or []) and not (latest_ours[1] or {}).get("to") == "production":
            events.append(HistoryEvent(None, int(v.version), f"alias {ALIAS_PRODUCTION}", "-", "mlflow"))
    events.sort(key=lambda e: (e.at is None, e.at or 0, e.version))
    unknown = ["MLflow keeps only each version's latest stage and the time of its last update: stage changes "
               "made outside `ems` before a version's latest one are not recoverable",
               f"alias moves made outside `ems` carry no time; only where `{ALIAS_PRODUCTION}` points now is known"]
    return events, unknown


__all__ = ["HistoryEvent", "InvalidModelIdError", "InvalidTransitionError", "ModelInfo", "ModelNotFoundError",
           "client", "complete_registration", "delete", "ensure_production", "history", "list_models", "promote",
           "register", "resolve_production", "show"]
