"""The local Redis's ACL file: operator and service users with hashed passwords, `default` per mode."""

from __future__ import annotations

import hashlib

import pytest

from core.settings import LOCAL_REDIS_PASSWORD, LOCAL_REDIS_SERVICE_PASSWORD, Settings
from stack.process import ServiceError
from stack.redis_acl import CLOSED_DEFAULT, OPERATOR_RULES, acl_lines, write_acl_file


@pytest.fixture
def settings(monkeypatch):
    for name in ("FEAST_FS_YAML_FILE_PATH", "EMS_REDIS_USERNAME", "EMS_REDIS_PASSWORD",
                 "EMS_REDIS_SERVICE_USERNAME", "EMS_REDIS_SERVICE_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    return Settings()


def test_auth_mode_disables_default_and_stores_only_hashes(settings):
    lines = acl_lines(settings, auth=True)
    assert lines[0] == CLOSED_DEFAULT
    assert lines[1].startswith("user ems on #" + hashlib.sha256(LOCAL_REDIS_PASSWORD.encode()).hexdigest())
    service_hash = hashlib.sha256(LOCAL_REDIS_SERVICE_PASSWORD.encode()).hexdigest()
    assert lines[2].startswith(f"user ems-service on #{service_hash}")
    assert not any(p in "\n".join(lines) for p in (LOCAL_REDIS_PASSWORD, LOCAL_REDIS_SERVICE_PASSWORD))


def test_without_auth_default_takes_either_password_and_never_none(settings):
    """Legacy `AUTH <password>` (a client that sends no user name) works; a client without credentials not."""
    op, svc = (hashlib.sha256(p.encode()).hexdigest() for p in (LOCAL_REDIS_PASSWORD, LOCAL_REDIS_SERVICE_PASSWORD))
    lines = acl_lines(settings, auth=False)
    assert lines == [f"user default on #{op} #{svc} {OPERATOR_RULES}", *acl_lines(settings, auth=True)[1:]]
    assert "nopass" not in lines[0]


def test_the_file_is_readable_by_its_owner_only(settings, tmp_path):
    path = write_acl_file(tmp_path / "r" / "users.acl", acl_lines(settings, auth=True))
    assert path.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(("name", "value", "match"), [
    ("EMS_REDIS_SERVICE_PASSWORD", "two words", "password 'two words' must be non-empty and hold no whitespace"),
    ("EMS_REDIS_SERVICE_USERNAME", "ems", "operator user 'ems' must differ from 'default' and from the service"),
    ("EMS_REDIS_USERNAME", "default", "operator user 'default' must differ"),
])
def test_bad_users_are_refused_naming_the_value(settings, monkeypatch, name, value, match):
    monkeypatch.setenv(name, value)
    with pytest.raises(ServiceError, match=match):
        acl_lines(Settings(), auth=True)
