"""The MinIO side of `ems users create --s3` (stack/s3_identities.py): the policy a tenant's key gets, and the
order of the admin calls with their undo on failure. The admin client here records calls instead of sending
them (no MinIO server can run on this machine); the SeaweedFS side runs on a real server in
tests/integration/test_s3_identities.py."""

from __future__ import annotations

import inspect
import json

import pytest
from minio import MinioAdmin
from minio.error import MinioAdminException

from core.settings import Settings
from stack.process import ServiceError
from stack.s3_identities import create_minio_identity, minio_policy


def _bind(name: str, *args, **kwargs) -> None:
    """The call as the installed SDK's MinioAdmin would take it (a renamed or reordered argument fails here)."""
    inspect.signature(getattr(MinioAdmin, name)).bind(None, *args, **kwargs)


class RecordingAdmin:
    """Stands in for minio.MinioAdmin: records each call, checked against the SDK's signatures; `fail` names
    the call that raises as MinIO would."""

    def __init__(self, policies: dict | None = None, fail: str | None = None, fail_undo: bool = False):
        self.calls: list[tuple] = []
        self.policies = policies or {}
        self.fail, self.fail_undo = fail, fail_undo

    def _call(self, name: str, *args, undo: bool = False):
        self.calls.append((name, *args))
        if name == self.fail or (undo and self.fail_undo):
            raise MinioAdminException("500", f"{name} failed")
        return ""

    def policy_list(self):
        _bind("policy_list")
        self.calls.append(("policy_list",))
        return json.dumps(self.policies)

    def policy_add(self, name, policy_file=None, policy=None):
        _bind("policy_add", name, policy=policy)
        return self._call("policy_add", name, policy)

    def user_add(self, access, secret):
        _bind("user_add", access, secret)
        return self._call("user_add", access, secret)

    def attach_policy(self, policies, user=None):
        _bind("attach_policy", policies, user=user)
        return self._call("attach_policy", policies, user)

    def policy_remove(self, name):
        _bind("policy_remove", name)
        return self._call("policy_remove", name, undo=True)

    def user_remove(self, access):
        _bind("user_remove", access)
        return self._call("user_remove", access, undo=True)


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(home=tmp_path, s3_server="minio", s3_endpoint_url="http://minio:9000", s3_bucket="ems-artifacts")


def test_policy_reads_and_lists_the_prefix_only():
    doc = minio_policy("ems-artifacts", "mlflow/7/")
    actions = {a for st in doc["Statement"] for a in st["Action"]}
    assert actions == {"s3:GetObject", "s3:ListBucket"}  # nothing that writes, deletes or lists buckets
    get = next(st for st in doc["Statement"] if st["Action"] == ["s3:GetObject"])
    assert get["Resource"] == ["arn:aws:s3:::ems-artifacts/mlflow/7/*"]
    listing = next(st for st in doc["Statement"] if st["Action"] == ["s3:ListBucket"])
    assert listing["Resource"] == ["arn:aws:s3:::ems-artifacts"]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["mlflow/7/*"]}}
    assert all(st["Effect"] == "Allow" for st in doc["Statement"])


def test_creates_policy_then_user_then_attachment(settings):
    admin = RecordingAdmin(policies={"readwrite": {}})
    access, secret = create_minio_identity(settings, "demo", "7", admin=admin)
    assert [c[0] for c in admin.calls] == ["policy_list", "policy_add", "user_add", "attach_policy"]
    assert admin.calls[1][1:] == ("tenant-demo", minio_policy("ems-artifacts", "mlflow/7/"))
    assert admin.calls[2][1:] == (access, secret)
    assert admin.calls[3][1:] == (["tenant-demo"], access)
    assert 3 <= len(access) <= 20 and 8 <= len(secret) <= 40  # MinIO's key length limits
    assert create_minio_identity(settings, "demo", "7", admin=RecordingAdmin())[0] != access  # a new key each time


def test_second_run_for_a_tenant_is_refused_without_calls(settings):
    admin = RecordingAdmin(policies={"tenant-demo": {}})
    with pytest.raises(ServiceError, match="'tenant-demo' of tenant 'demo' exists already.*nothing was changed"):
        create_minio_identity(settings, "demo", "7", admin=admin)
    assert admin.calls == [("policy_list",)]


@pytest.mark.parametrize(("fail", "undone"), [("policy_add", []), ("user_add", ["policy_remove"]),
                                               ("attach_policy", ["user_remove", "policy_remove"])])
def test_a_failed_step_undoes_the_earlier_ones(settings, fail, undone):
    admin = RecordingAdmin(fail=fail)
    with pytest.raises(ServiceError, match=rf"MinIO at http://minio:9000 refused .*{fail} failed.*nothing was kept"):
        create_minio_identity(settings, "demo", "7", admin=admin)
    names = [c[0] for c in admin.calls]
    assert names[names.index(fail) + 1:] == undone


def test_an_undo_that_fails_is_named(settings):
    admin = RecordingAdmin(fail="attach_policy", fail_undo=True)
    with pytest.raises(ServiceError, match=r"left behind, remove by hand: user ems\w+ \(.*\), policy tenant-demo"):
        create_minio_identity(settings, "demo", "7", admin=admin)


def test_bad_experiment_and_unreachable_server(settings):
    with pytest.raises(ServiceError, match="experiment id 'x' of tenant 'demo' is not a number"):
        create_minio_identity(settings, "demo", "x", admin=RecordingAdmin())
    unreachable = settings.model_copy(update={"s3_endpoint_url": "http://127.0.0.1:9"})
    with pytest.raises(ServiceError, match="MinIO at http://127.0.0.1:9 did not list its policies"):
        create_minio_identity(unreachable, "demo", "7")
