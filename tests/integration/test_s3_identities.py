"""Scoped S3 keys of tenants on the session's SeaweedFS (`ems users create --s3`): tenant A's key lists and
reads the objects under A's experiment prefix and nothing else (B's prefix, the bucket, writes); the SDK's
direct-S3 model path with A's key reads A's model and not B's; the operator's key is unaffected."""

from __future__ import annotations

import boto3
import botocore.exceptions
import pytest

from core.names import InvalidIdError
from inference import artifacts
from stack.process import ServiceError
from stack.s3_identities import artifact_prefix, config_path
from stack.services import create_tenant_s3_identity as create_tenant_identity

pytestmark = pytest.mark.integration

TENANTS = {"s3-a": "901", "s3-b": "902"}  # tenant -> experiment id (its prefix mlflow/<id>/)


def client(stack, key: tuple[str, str]):
    kwargs = stack.s3_client_kwargs()
    kwargs.update(aws_access_key_id=key[0], aws_secret_access_key=key[1])
    return boto3.client("s3", **kwargs)


def accepted(s3, bucket: str, prefix: str) -> bool:
    try:
        s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
        return True
    except botocore.exceptions.ClientError:
        return False


@pytest.fixture(scope="module")
def keys(stack):
    operator = boto3.client("s3", **stack.s3_client_kwargs())
    for tenant, experiment in TENANTS.items():
        bucket, prefix = artifact_prefix(stack, experiment)
        for name in ("MLmodel", "model.txt"):
            operator.put_object(Bucket=bucket, Key=f"{prefix}m-{tenant}/artifacts/{name}", Body=tenant.encode())
        operator.put_object(Bucket=bucket, Key=f"exports/{tenant}/job.parquet", Body=tenant.encode())  # an API export
    made = {tenant: create_tenant_identity(stack, tenant, experiment) for tenant, experiment in TENANTS.items()}
    for tenant, key in made.items():  # the server restarted with them
        bucket, prefix = artifact_prefix(stack, TENANTS[tenant])
        assert accepted(client(stack, key), bucket, prefix), tenant
    return made


def test_a_tenant_key_reads_its_prefix_only(stack, keys):
    a = client(stack, keys["s3-a"])
    bucket, mine = artifact_prefix(stack, TENANTS["s3-a"])
    _, theirs = artifact_prefix(stack, TENANTS["s3-b"])
    listed = [o["Key"] for o in a.list_objects_v2(Bucket=bucket, Prefix=mine)["Contents"]]
    assert sorted(listed) == [f"{mine}m-s3-a/artifacts/MLmodel", f"{mine}m-s3-a/artifacts/model.txt"]
    assert a.get_object(Bucket=bucket, Key=listed[0])["Body"].read() == b"s3-a"
    attempts = {"list B": lambda: a.list_objects_v2(Bucket=bucket, Prefix=theirs),
                "get B": lambda: a.get_object(Bucket=bucket, Key=f"{theirs}m-s3-b/artifacts/MLmodel"),
                "list bucket": lambda: a.list_objects_v2(Bucket=bucket),
                "get B's export": lambda: a.get_object(Bucket=bucket, Key="exports/s3-b/job.parquet"),
                "list B's exports": lambda: a.list_objects_v2(Bucket=bucket, Prefix="exports/s3-b/"),
                "B's key smuggled under A's prefix": lambda: a.get_object(
                    Bucket=bucket, Key=f"{mine}../{theirs.split('/')[-2]}/m-s3-b/artifacts/MLmodel"),
                "put own": lambda: a.put_object(Bucket=bucket, Key=f"{mine}x", Body=b"x"),
                "delete own": lambda: a.delete_object(Bucket=bucket, Key=listed[0])}
    allowed = []
    for name, attempt in attempts.items():
        try:
            attempt()
            allowed.append(name)
        except botocore.exceptions.ClientError as e:
            refusals = {"AccessDenied", "InvalidRequest"} if "smuggled" in name else {"AccessDenied"}  # '..' keys
            assert e.response["Error"]["Code"] in refusals, name
    assert allowed == []
    assert a.list_buckets()["Buckets"] == []  # no bucket is the tenant's
    operator = boto3.client("s3", **stack.s3_client_kwargs())
    assert operator.get_object(Bucket=bucket, Key=f"{theirs}m-s3-b/artifacts/MLmodel")["Body"].read() == b"s3-b"


def test_the_direct_model_path_with_a_tenant_key_loads_only_that_tenants_files(stack, keys, tmp_path):
    settings = stack.model_copy(update={"s3_access_key": keys["s3-a"][0], "s3_secret_key": keys["s3-a"][1]})
    dest = stack.mlflow_artifacts_destination.removeprefix(f"s3://{stack.s3_bucket}/").strip("/")
    mine = f"mlflow-artifacts:/{TENANTS['s3-a']}/m-s3-a/artifacts"
    folder = artifacts.fetch_model(settings, mine, tmp_path, "s3-a:m:1")
    assert (folder / "MLmodel").read_bytes() == b"s3-a" and dest == "mlflow"
    with pytest.raises(artifacts.DirectS3Unavailable, match="may not read .*AccessDenied") as refused:
        artifacts.fetch_model(settings, f"mlflow-artifacts:/{TENANTS['s3-b']}/m-s3-b/artifacts", tmp_path, "s3-b:m:1")
    assert not isinstance(refused.value, artifacts.S3Unreachable)  # that model through MLflow; the path stays on


def test_bad_input_changes_nothing(stack, keys):
    before = config_path(stack).read_text()
    with pytest.raises(ServiceError, match="S3 identity 'tenant-s3-a' of tenant 's3-a' exists already"):
        create_tenant_identity(stack, "s3-a", "901")
    with pytest.raises(InvalidIdError, match="tenant id \"s3'c\" is invalid"):
        create_tenant_identity(stack, "s3'c", "903")
    with pytest.raises(InvalidIdError, match="tenant id '../c' is invalid"):
        create_tenant_identity(stack, "../c", "903")
    with pytest.raises(ServiceError, match="experiment id '9/../1' of tenant 's3-c' is not a number"):
        create_tenant_identity(stack, "s3-c", "9/../1")
    assert config_path(stack).read_text() == before and config_path(stack).stat().st_mode & 0o777 == 0o600


def test_a_tenant_login_with_the_operators_built_in_key_goes_through_mlflow(stack, keys, tmp_path, monkeypatch):
    """An MLflow login that is not the admin's, with the built-in (operator's) S3 key: no direct read, even of
    a prefix that key could read; with the tenant's own key the direct path is tried again."""
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "s3-a")
    mine = f"mlflow-artifacts:/{TENANTS['s3-a']}/m-s3-a/artifacts"
    with pytest.raises(artifacts.DirectS3Unavailable, match="MLflow user 's3-a' has no S3 key of its own"):
        artifacts.fetch_model(stack, mine, tmp_path, "s3-a:m:1")
    assert not list(tmp_path.iterdir())  # nothing fetched
    own = stack.model_copy(update={"s3_access_key": keys["s3-a"][0], "s3_secret_key": keys["s3-a"][1]})
    assert (artifacts.fetch_model(own, mine, tmp_path, "s3-a:m:1") / "MLmodel").read_bytes() == b"s3-a"
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", stack.mlflow_admin_username)
    assert (artifacts.fetch_model(stack, mine, tmp_path, "s3-a:m:2") / "MLmodel").read_bytes() == b"s3-a"
