"""Tenant access to the model registry under MLflow's basic-auth app (the server side is
stack/auth.py, `ems up --auth`).

Tenants: role `tenant:{tenant}` holds MANAGE on each registered model `{tenant}.{name}` (read,
promote, delete) and READ on the tenant's experiment `tenant-{tenant}` (the model files and runs, so a
tenant's user can load its models); a tenant's users get that role and nothing else. `register`
(registry/lifecycle.py) grants the role every model it creates when the caller is an admin;
`create_tenant_user` and `grant_tenant_models` grant what already exists. Clients log in the MLflow way:
MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD (MLflow reads them on every request).
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

from core.errors import EmsError
from core.names import TAG_TENANT, check_tenant_id, experiment_name
from stack.auth import AUTH_APP

logger = logging.getLogger(__name__)

TENANT_PERMISSION = "MANAGE"  # on the tenant's registered models: read, promote, delete
EXPERIMENT_PERMISSION = "READ"  # on the tenant's experiment: load model files, see runs
WORKSPACE = "default"  # MLflow keeps grants in workspace `default` when workspaces are off
MIN_PASSWORD_LENGTH = 12  # MLflow's own rule
USERNAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}"


class RegistryAccessError(EmsError, PermissionError):
    """MLflow refused the caller (HTTP 401 or 403); the message names the user and the model."""


class AuthSetupError(EmsError, ValueError):
    """A user cannot be created as asked (taken name, short password, server without auth)."""


# ---------------------------------------------------------------- clients
def current_user() -> str | None:
    """The MLflow user this process acts as (MLFLOW_TRACKING_USERNAME or MLflow's credentials file)."""
    from mlflow.utils.credentials import read_mlflow_creds

    return read_mlflow_creds().username


@contextmanager
def registry_access(tracking_uri: str, what: str,
                    why: str = "the model belongs to another tenant, or does not exist") -> Iterator[None]:
    """Turn MLflow's 401/403 into one RegistryAccessError naming the user and `what` was refused."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as e:
        user = current_user()
        if e.error_code == "UNAUTHENTICATED":
            fix = "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
            if user is None:
                raise RegistryAccessError(f"MLflow at {tracking_uri} needs a login to {what} (HTTP 401): {fix}") from e
            raise RegistryAccessError(f"MLflow at {tracking_uri} rejected the login of user {user!r} "
                                      f"to {what} (HTTP 401): check MLFLOW_TRACKING_PASSWORD") from e
        if e.error_code == "PERMISSION_DENIED":
            raise RegistryAccessError(
                f"MLflow user {user!r} may not {what} (HTTP 403 from {tracking_uri}): {why}") from e
        raise


@contextmanager
def _admin_call(tracking_uri: str, what: str) -> Iterator[None]:
    from mlflow.exceptions import MlflowException

    try:
        with registry_access(tracking_uri, what, "that needs an MLflow admin"):
            yield
    except MlflowException as e:
        if e.error_code == "ENDPOINT_NOT_FOUND":
            raise AuthSetupError(f"MLflow at {tracking_uri} does not run its basic-auth app, so it has no "
                                 "users: start it with `ems up --auth`") from e
        raise


def _auth_client(tracking_uri: str):
    import mlflow.server

    return mlflow.server.get_app_client(AUTH_APP, tracking_uri=tracking_uri)


def tenant_role_name(tenant: str) -> str:
    return f"tenant:{tenant}"


def _tenant_role(auth, tenant: str):
    name = tenant_role_name(tenant)
    for role in auth.list_roles(WORKSPACE):
        if role.name == name:
            return role
    logger.info("creating MLflow role %s", name)
    return auth.create_role(WORKSPACE, name, description=f"registered models of tenant {tenant}")


def _grant(auth, role, model_names: list[str], experiment_id: str | None) -> list[str]:
    """Give `role` what it lacks of: MANAGE on each model, READ on the experiment; returns the models
    newly granted."""
    held = {(p.resource_type, p.resource_pattern) for p in auth.list_role_permissions(role.id)}
    wanted = [("registered_model", name, TENANT_PERMISSION) for name in model_names]
    wanted += [("experiment", experiment_id, EXPERIMENT_PERMISSION)] if experiment_id else []
    new = [grant for grant in wanted if grant[:2] not in held]
    for resource_type, resource, permission in new:
        auth.add_role_permission(role.id, resource_type, resource, permission)
        logger.info("granted %s %s on %s %s", role.name, permission, resource_type, resource)
    return [resource for resource_type, resource, _ in new if resource_type == "registered_model"]


def tenant_experiment_id(tracking_uri: str, tenant: str) -> str | None:
    from mlflow import MlflowClient

    experiment = MlflowClient(tracking_uri=tracking_uri).get_experiment_by_name(experiment_name(tenant))
    return experiment.experiment_id if experiment else None


def ensure_tenant_experiment(tracking_uri: str, tenant: str) -> str:
    """The id of the tenant's experiment, created (by the caller, an admin) when missing: its artifact prefix
    is what a tenant's scoped S3 key may read."""
    from mlflow import MlflowClient

    with registry_access(tracking_uri, f"create experiment {experiment_name(tenant)!r}", "that needs an MLflow admin"):
        return tenant_experiment_id(tracking_uri, tenant) or \
            MlflowClient(tracking_uri=tracking_uri).create_experiment(experiment_name(tenant))


def tenant_models(tracking_uri: str, tenant: str) -> list[str]:
    """Registered models of `tenant` (name `{tenant}.*` AND tag tenant_id) that the caller can see."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    prefix = f"{tenant}."
    found, token = [], None
    while True:
        # `_` is a LIKE wildcard; the exact prefix and the tag are checked below.
        page = client.search_registered_models(filter_string=f"name LIKE '{prefix}%'", max_results=1000,
                                               page_token=token)
        found += [m.name for m in page if m.name.startswith(prefix) and m.tags.get(TAG_TENANT) == tenant]
        token = page.token
        if not token:
            return sorted(found)


def grant_registered_model(mlflow_client, tenant: str, model_name: str) -> bool:
    """`register`'s hook: give tenant's role MANAGE on a model just created. Does nothing without a
    login or on a server without auth; when the caller is no admin, warns and leaves it (the creator
    has MANAGE already; `ems users grant` completes it)."""
    from mlflow.exceptions import MlflowException

    uri = mlflow_client.tracking_uri
    if current_user() is None or not uri.startswith(("http://", "https://")):
        return False
    auth = _auth_client(uri)
    try:
        _grant(auth, _tenant_role(auth, tenant), [model_name], tenant_experiment_id(uri, tenant))
    except MlflowException as e:
        if e.error_code == "ENDPOINT_NOT_FOUND":
            return False
        if e.error_code != "PERMISSION_DENIED":
            raise
        logger.warning("MLflow user %r is no admin, so tenant %s's other users cannot see %s yet: an admin "
                       "runs `ems users grant --tenant %s`", current_user(), tenant, model_name, tenant)
        return False
    return True


@dataclass
class TenantUser:
    username: str
    tenant: str
    password: str | None  # only when generated here: shown once, stored nowhere
    models: list[str]  # registered models newly granted to the tenant's role

    def as_dict(self) -> dict:
        return asdict(self)


def create_tenant_user(tracking_uri: str, tenant: str, username: str | None = None,
                       password: str | None = None) -> TenantUser:
    """Create an MLflow user who can read and promote `tenant`'s models only (the caller must be an
    MLflow admin). Without `password` one is generated and returned."""
    from mlflow.exceptions import MlflowException

    check_tenant_id(tenant)
    username = username or tenant
    if not isinstance(username, str) or not re.fullmatch(USERNAME_PATTERN, username):
        raise AuthSetupError(f"username {username!r} is invalid: use 1-64 letters, digits, '.', '_', '@' or '-'")
    generated = password is None
    password = secrets.token_urlsafe(18) if generated else password
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AuthSetupError(f"the password for {username!r} has {len(password)} characters; "
                             f"MLflow needs at least {MIN_PASSWORD_LENGTH}")
    auth = _auth_client(tracking_uri)
    with _admin_call(tracking_uri, f"create user {username!r} for tenant {tenant}"):
        try:
            auth.create_user(username, password)
        except MlflowException as e:
            if e.error_code == "RESOURCE_ALREADY_EXISTS":
                raise AuthSetupError(f"MLflow user {username!r} already exists; choose another --username") from e
            raise
        role = _tenant_role(auth, tenant)
        auth.assign_role(username, role.id)
        models = _grant(auth, role, tenant_models(tracking_uri, tenant), tenant_experiment_id(tracking_uri, tenant))
    logger.info("created MLflow user %s for tenant %s", username, tenant)
    return TenantUser(username, tenant, password if generated else None, models)


def grant_tenant_models(tracking_uri: str, tenant: str) -> list[str]:
    """Give tenant's role MANAGE on every model of the tenant it lacks (admin only); returns those."""
    check_tenant_id(tenant)
    auth = _auth_client(tracking_uri)
    with _admin_call(tracking_uri, f"grant tenant {tenant}'s users its models"):
        return _grant(auth, _tenant_role(auth, tenant), tenant_models(tracking_uri, tenant),
                      tenant_experiment_id(tracking_uri, tenant))


@dataclass
class TenantAccess:
    user: TenantUser
    password: str  # the one password of the MLflow user and the database role
    database_role: str | None = None
    s3_key: tuple[str, str] | None = None  # (access key, secret key), shown once


def create_tenant_access(settings, tenant: str, username: str | None = None, password: str | None = None,
                         db: bool = False, s3: bool = False) -> TenantAccess:
    """`ems users create`: the tenant's MLflow user, with `db` its database role (same password), with `s3` its
    read-only S3 key; all or nothing. The role's transaction commits only after the MLflow user and the S3 key
    exist; when a step after the MLflow user fails, the user is deleted again, so the same command can be run
    once the cause is fixed (the tenant's MLflow role and experiment stay: they are shared and re-used)."""
    from mlflow.exceptions import MlflowException

    check_tenant_id(tenant)
    uri = settings.mlflow_tracking_uri
    secret = password or secrets.token_urlsafe(18)
    made: dict = {}

    def rest() -> None:  # after the MLflow user: on failure, delete it
        try:
            if s3:
                from stack.services import create_tenant_s3_identity

                made["s3_key"] = create_tenant_s3_identity(settings, tenant, ensure_tenant_experiment(uri, tenant))
        except BaseException as e:
            name = made["user"].username
            try:
                with _admin_call(uri, f"delete user {name!r}"):
                    _auth_client(uri).delete_user(name)
            except (MlflowException, EmsError) as cleanup:
                raise AuthSetupError(f"{e}; MLflow user {name!r} was created and could not be deleted again "
                                     f"({cleanup}): delete it in the MLflow UI before running this again") from e
            logger.info("deleted MLflow user %s again: a later step failed", name)
            if isinstance(e, EmsError):
                undone = " and database role rolled back" if db else ""
                raise AuthSetupError(f"{e} (nothing was kept: MLflow user {name!r} deleted{undone}; run the "
                                     "command again once this is fixed)") from e
            raise

    def create() -> None:
        made["user"] = create_tenant_user(uri, tenant, username, secret)
        rest()

    if db:
        from warehouse.tenant_roles import create_tenant_role

        made["role"] = create_tenant_role(settings, tenant, secret, then=create)
    else:
        create()
    user = made["user"]
    user.password = None if password else secret  # generated: shown once
    return TenantAccess(user, secret, made.get("role"), made.get("s3_key"))
