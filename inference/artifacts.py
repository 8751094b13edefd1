"""A model version's files straight from S3, without MLflow's artifact proxy in the way.

The MLflow server runs with `--serve-artifacts --artifacts-destination <settings.mlflow_artifacts_destination>`,
so an `mlflow-artifacts:/<path>` URI is the object prefix `<destination>/<path>` in our bucket. When
S3 answers with our settings, every object under that prefix is fetched with parallel GETs into
`<cache>/<model id>/<digest of the listing>` (written in a scratch folder, then renamed, so a folder that
exists is complete). The same listing later finds the folder and downloads nothing. Anything else (a URI
that is not ours, S3 unreachable, a prefix without an MLmodel, a key scoped to other tenants' prefixes
(`ems users create --s3`)) raises DirectS3Unavailable, and the caller goes through MLflow (permission-checked)."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)

MLMODEL = "MLmodel"
DOWNLOAD_THREADS = 8
CONNECT_TIMEOUT_S = 2  # fail over to the MLflow proxy quickly when the endpoint is wrong


@dataclass(frozen=True)
class S3Object:
    key: str
    relative: str  # path below the prefix
    size: int
    etag: str


class DirectS3Unavailable(Exception):
    """This model cannot be fetched from S3 directly; the message says why (the caller goes through MLflow)."""


class S3Unreachable(DirectS3Unavailable):
    """S3 refused or failed the request with our settings: no model will load directly until they change."""


def s3_location(artifact_uri: str, artifacts_destination: str) -> tuple[str, str] | None:
    """(bucket, prefix ending in '/') of an artifact URI, or None if it is not in S3.
    `mlflow-artifacts:` URIs resolve against the server's artifacts destination."""
    parts = urlsplit(artifact_uri)
    if parts.scheme == "mlflow-artifacts":
        dest = urlsplit(artifacts_destination)
        if dest.scheme != "s3":
            return None
        bucket, base, path = dest.netloc, dest.path.strip("/"), parts.path.strip("/")
        if not path:
            return None
        key = f"{base}/{path}" if base else path
    elif parts.scheme in ("s3", "s3a"):
        bucket, key = parts.netloc, parts.path.strip("/")
    else:
        return None
    return (bucket, key + "/") if bucket and key else None


_clients: dict[tuple, object] = {}
_executor: ThreadPoolExecutor | None = None


def executor() -> ThreadPoolExecutor:
    """The process's download threads, started once (starting eight threads per load costs more than
    a small model's GETs on a busy machine). Its tasks never wait on each other."""
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(DOWNLOAD_THREADS, thread_name_prefix="ems-s3")
    return _executor


def s3_client(settings):
    """One boto3 client per S3 address and key, kept for the process (boto3 clients are thread-safe
    and keep their connections open), with a short connect timeout."""
    import boto3
    from botocore.config import Config

    kwargs = settings.s3_client_kwargs()
    key = (kwargs["endpoint_url"], kwargs["region_name"], kwargs["aws_access_key_id"], kwargs["aws_secret_access_key"])
    if key not in _clients:
        kwargs["config"] = kwargs["config"].merge(Config(connect_timeout=CONNECT_TIMEOUT_S,
                                                         max_pool_connections=2 * DOWNLOAD_THREADS))
        _clients[key] = boto3.client("s3", **kwargs)
    return _clients[key]


def list_objects(s3, bucket: str, prefix: str) -> list[S3Object]:
    out = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", []):
            if not o["Key"].endswith("/"):
                out.append(S3Object(o["Key"], o["Key"][len(prefix):], o["Size"], o["ETag"]))
    return out


def digest(objects: list[S3Object]) -> str:
    """Names the content of a listing (paths, sizes, ETags)."""
    h = hashlib.sha256()
    for o in sorted(objects, key=lambda o: o.relative):
        h.update(f"{o.relative}\0{o.size}\0{o.etag}\n".encode())
    return h.hexdigest()[:16]


def download(s3, bucket: str, objects: list[S3Object], target: Path) -> None:
    """Fetch the objects into `target` (which must exist) with parallel GETs."""
    root = target.resolve()
    paths = []
    for o in objects:
        path = (root / o.relative).resolve()
        if not path.is_relative_to(root):
            raise DirectS3Unavailable(f"object key {o.key!r} points outside its prefix")
        path.parent.mkdir(parents=True, exist_ok=True)
        paths.append(path)

    def fetch(item: tuple[S3Object, Path]) -> None:
        o, path = item
        body = s3.get_object(Bucket=bucket, Key=o.key)["Body"]
        with open(path, "wb") as f:
            shutil.copyfileobj(body, f, 1 << 20)

    list(executor().map(fetch, zip(objects, paths, strict=True)))


def operator_key_refusal(settings) -> str | None:
    """Why a process logged in to MLflow as a tenant's user (MLFLOW_TRACKING_USERNAME, not the admin) must not
    read model files with the built-in local S3 key, which is the operator's: its models then load through
    MLflow's artifact proxy, permission-checked. None when the direct path may be tried (the admin, no login,
    or a key of its own such as `ems users create --s3` gives)."""
    from core.settings import LOCAL_S3_ACCESS_KEY

    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    if not user or user == settings.mlflow_admin_username or settings.s3_access_key != LOCAL_S3_ACCESS_KEY:
        return None
    return (f"MLflow user {user!r} has no S3 key of its own (the built-in one is the operator's): models load "
            "through MLflow's artifact proxy; set EMS_S3_ACCESS_KEY/EMS_S3_SECRET_KEY from `ems users create --s3` "
            "for the direct path")


def fetch_model(settings, artifact_uri: str, cache: Path, model_id: str) -> Path:
    """Local folder with the model's files (downloaded unless a complete copy of the same listing is
    there). Raises DirectS3Unavailable when the caller should go through MLflow instead."""
    from botocore.exceptions import BotoCoreError, ClientError

    refusal = operator_key_refusal(settings)
    if refusal:
        raise DirectS3Unavailable(refusal)
    location = s3_location(artifact_uri, settings.mlflow_artifacts_destination)
    if location is None:
        raise DirectS3Unavailable(f"{artifact_uri} is not in S3")
    bucket, prefix = location
    s3 = s3_client(settings)
    try:
        objects = list_objects(s3, bucket, prefix)
        if not any(o.relative == MLMODEL for o in objects):
            raise DirectS3Unavailable(f"s3://{bucket}/{prefix} holds no {MLMODEL} at {settings.s3_endpoint_url}")
        folder = cache / model_id.replace(":", "-") / digest(objects)
        if folder.is_dir():
            return folder
        folder.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=".partial-", dir=folder.parent))
        try:
            download(s3, bucket, objects, scratch)
            os.rename(scratch, folder)  # atomic; fails if another process finished the same copy first
        except OSError:
            if not folder.is_dir():
                raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") in ("AccessDenied", "403"):  # a key scoped to other prefixes
            raise DirectS3Unavailable(f"S3 key {settings.s3_access_key!r} may not read s3://{bucket}/{prefix} "
                                      f"(AccessDenied)") from e
        raise S3Unreachable(f"S3 at {settings.s3_endpoint_url}: {e}") from e
    except BotoCoreError as e:
        raise S3Unreachable(f"S3 at {settings.s3_endpoint_url}: {e}") from e
    logger.debug("fetched %s (%d files) from s3://%s/%s", model_id, len(objects), bucket, prefix)
    return folder
