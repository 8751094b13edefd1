"""S3 identities of the local SeaweedFS (`weed mini -s3.config`): the operator's key, and one read-only key
per tenant (`ems users create --tenant T --s3`) limited to the tenant's artifact prefix.

SeaweedFS scopes an action to a bucket and key prefix (`Read:ems-artifacts/mlflow/7/*`): a tenant's key
lists and reads the objects of its MLflow experiment (`mlflow/<experiment id>/` under the artifact
destination) and nothing else, and writes nothing. The identities live in `<home>/s3/identities.json`
(owner-only; it holds the secrets, as SeaweedFS needs them to check signatures), which `weed mini` loads at
start, so a new identity restarts the local S3 server (about a second; clients retry). Writing SeaweedFS
4.48's dynamic identities through its filer did not load reliably here, hence the restart.

MinIO (the compose stack, `EMS_S3_SERVER=minio`) has no such file: there the same identity is a MinIO user
with a canned policy `tenant-<tenant>` (GetObject under the prefix, ListBucket only with `s3:prefix` under
it), created through MinIO's admin API with the operator's (root) key (`minio.MinioAdmin`, the MinIO SDK's
admin client: the requests `mc admin policy create` / `user add` / `policy attach` make).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from core.names import check_tenant_id
from core.settings import Settings
from stack.process import ServiceError

logger = logging.getLogger(__name__)

OPERATOR = "ems-operator"
OPERATOR_ACTIONS = ["Admin", "Read", "Write", "List", "Tagging"]


def identity_name(tenant: str) -> str:
    return f"tenant-{check_tenant_id(tenant)}"


def config_path(settings: Settings) -> Path:
    return settings.home / "s3" / "identities.json"


def _operator(settings: Settings) -> dict:
    return {"name": OPERATOR, "actions": OPERATOR_ACTIONS,
            "credentials": [{"accessKey": settings.s3_access_key, "secretKey": settings.s3_secret_key}]}


def read_config(settings: Settings) -> dict:
    """The identities file, with the operator's identity as the settings have it now."""
    path = config_path(settings)
    doc = json.loads(path.read_text()) if path.exists() else {"identities": []}
    others = [i for i in doc.get("identities", []) if i.get("name") != OPERATOR]
    return {"identities": [_operator(settings), *others]}


def write_config(settings: Settings, doc: dict) -> Path:
    path = config_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=2)
    os.chmod(path, 0o600)
    return path


def tenant_actions(bucket: str, prefix: str) -> list[str]:
    """Read-only on one prefix: list it and get its objects."""
    return [f"Read:{bucket}/{prefix}*", f"List:{bucket}/{prefix}*"]


def artifact_prefix(settings: Settings, experiment_id: str) -> tuple[str, str]:
    """(bucket, key prefix) of an experiment's artifacts under MLflow's artifact destination."""
    dest = urlsplit(settings.mlflow_artifacts_destination)
    base = dest.path.strip("/")
    return dest.netloc, f"{base}/{experiment_id}/" if base else f"{experiment_id}/"


def create_tenant_identity(settings: Settings, tenant: str, experiment_id: str, restart=None) -> tuple[str, str]:
    """A new read-only key of `tenant` for its experiment's prefix; returns (access key, secret key), shown
    once. Refused when the tenant has one already (nothing changed). `restart` reloads the server (the local
    S3 service's restart; stack/services.py passes it)."""
    name = identity_name(tenant)
    if not str(experiment_id).isdigit():
        raise ServiceError(f"experiment id {experiment_id!r} of tenant {tenant!r} is not a number")
    doc = read_config(settings)
    if any(i.get("name") == name for i in doc["identities"]):
        raise ServiceError(f"S3 identity {name!r} of tenant {tenant!r} exists already in {config_path(settings)}: "
                           "nothing was changed")
    access, secret = f"ems-{tenant}-{secrets.token_hex(6)}", secrets.token_urlsafe(30)
    bucket, prefix = artifact_prefix(settings, experiment_id)
    doc["identities"].append({"name": name, "actions": tenant_actions(bucket, prefix),
                              "credentials": [{"accessKey": access, "secretKey": secret}]})
    previous = config_path(settings).read_text() if config_path(settings).exists() else None
    write_config(settings, doc)
    try:
        if restart is not None:
            restart()
    except ServiceError:
        if previous is not None:
            write_config(settings, json.loads(previous))
        raise
    logger.info("created S3 identity %s: read-only on s3://%s/%s", name, bucket, prefix)
    return access, secret


def minio_policy(bucket: str, prefix: str) -> dict:
    """The MinIO (IAM) policy of a tenant's read-only key: its objects under `prefix`, and a listing of the
    bucket only for keys under that prefix (nothing else: no other prefix, no bucket listing, no write)."""
    return {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": [f"arn:aws:s3:::{bucket}/{prefix}*"]},
        {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [f"arn:aws:s3:::{bucket}"],
         "Condition": {"StringLike": {"s3:prefix": [f"{prefix}*"]}}},
    ]}


def minio_admin(settings: Settings):
    """MinIO's admin client with the operator's key (the root user of the compose stack's MinIO)."""
    import certifi
    from minio import MinioAdmin
    from minio.credentials import StaticProvider
    from urllib3 import PoolManager, Retry, Timeout

    url = urlsplit(settings.s3_endpoint_url)
    # The SDK's default client waits 5 minutes per request and retries 5 times; a command answers sooner.
    http = PoolManager(timeout=Timeout(connect=5, read=30), ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
                       retries=Retry(total=2, backoff_factor=0.5, status_forcelist=[500, 502, 503, 504]))
    return MinioAdmin(endpoint=url.netloc, credentials=StaticProvider(settings.s3_access_key, settings.s3_secret_key),
                      region=settings.s3_region, secure=url.scheme == "https", http_client=http)


def create_minio_identity(settings: Settings, tenant: str, experiment_id: str, admin=None) -> tuple[str, str]:
    """A new read-only MinIO user of `tenant` for its experiment's prefix; returns (access key, secret key),
    shown once. Refused when the tenant's policy exists already (nothing changed). The policy, the user and the
    attachment are made in that order and undone in reverse when a step fails, so the command can be run
    again. `admin` is a MinIO admin client (default: `minio_admin(settings)`)."""
    import urllib3
    from minio.error import MinioAdminException

    name = identity_name(tenant)
    if not str(experiment_id).isdigit():
        raise ServiceError(f"experiment id {experiment_id!r} of tenant {tenant!r} is not a number")
    admin = admin or minio_admin(settings)
    where = f"MinIO at {settings.s3_endpoint_url}"
    failures = (MinioAdminException, urllib3.exceptions.HTTPError, OSError, ValueError)
    try:
        existing = json.loads(admin.policy_list() or "{}")
    except failures as e:
        raise ServiceError(f"{where} did not list its policies with the operator's key: {e}") from e
    if name in existing:
        raise ServiceError(f"S3 identity {name!r} of tenant {tenant!r} exists already on {where} (policy {name}): "
                           "nothing was changed")
    # MinIO's limits: access key 3-20 characters, secret 8-40.
    access, secret = f"ems{secrets.token_hex(8)}", secrets.token_urlsafe(30)
    bucket, prefix = artifact_prefix(settings, experiment_id)
    undo: list[tuple[str, Callable[[], object]]] = []
    try:
        admin.policy_add(name, policy=minio_policy(bucket, prefix))
        undo.append((f"policy {name}", lambda: admin.policy_remove(name)))
        admin.user_add(access, secret)
        undo.append((f"user {access}", lambda: admin.user_remove(access)))
        admin.attach_policy([name], user=access)
    except failures as e:
        left = []
        for what, step in reversed(undo):
            try:
                step()
            except failures as cleanup:
                left.append(f"{what} ({cleanup})")
        kept = f"left behind, remove by hand: {', '.join(left)}" if left else "nothing was kept"
        raise ServiceError(f"{where} refused the S3 identity {name!r} of tenant {tenant!r}: {e} ({kept})") from e
    logger.info("created MinIO user %s with policy %s: read-only on s3://%s/%s", access, name, bucket, prefix)
    return access, secret
