"""Inside the compose stack: Feast's deploy/feature_store.env.yaml renders from the app's environment to a
valid RepoConfig, and `ems` settings take every address and credential from that environment."""

from __future__ import annotations

import re

import pytest
import yaml
from feast.repo_config import load_repo_config

from core.settings import LOCAL_S3_ACCESS_KEY, LOCAL_S3_SECRET_KEY, ROOT, Settings, SettingsError, is_loopback
from tests.unit.deploy.conftest import FEAST_ENV_YAML, IMAGE_WORKDIR

FEAST_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")  # Feast: os.path.expandvars, no defaults


def _shape(doc, path=()):
    """(key path, value) leaves of a parsed yaml."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _shape(v, (*path, k))
    else:
        yield path, doc


def test_the_app_points_feast_at_the_deploy_yaml(app_env):
    assert app_env["FEAST_FS_YAML_FILE_PATH"] == f"{IMAGE_WORKDIR}/deploy/feature_store.env.yaml"


def test_every_variable_of_the_deploy_yaml_is_set_by_the_stack(app_env):
    values = (str(v) for _, v in _shape(yaml.safe_load(FEAST_ENV_YAML.read_text())))
    used = {name for value in values for name in FEAST_VAR.findall(value)}
    assert used and used <= set(app_env), used - set(app_env)


def test_deploy_yaml_holds_no_address_or_credential():
    cfg = yaml.safe_load(FEAST_ENV_YAML.read_text())
    for path, value in _shape(cfg):
        if path[-1] in ("host", "port", "database", "user", "password", "sslmode", "path",
                        "connection_string", "tracking_uri"):
            assert "${" in str(value), f"{'.'.join(path)} is written in the file: {value!r}"


def test_deploy_yaml_has_the_same_settings_as_the_local_one():
    """Only values differ (environment instead of local literals): no Feast setting drifts."""
    local = dict(_shape(yaml.safe_load((ROOT / "feature_store.yaml").read_text())))
    deployed = dict(_shape(yaml.safe_load(FEAST_ENV_YAML.read_text())))
    assert set(local) == set(deployed)
    for path, value in deployed.items():
        if "${" not in str(value):
            assert local[path] == value, ".".join(path)


def test_deploy_yaml_renders_to_a_valid_feast_config(in_app_env, app_env):
    config = load_repo_config(ROOT, FEAST_ENV_YAML)
    offline, online = config.offline_store, config.online_store
    assert (offline.host, int(offline.port), offline.database, offline.user, offline.password, offline.sslmode) == (
        "timescaledb", 5432, app_env["EMS_PG_DATABASE"], app_env["EMS_PG_USER"], app_env["EMS_PG_PASSWORD"],
        "disable")
    assert online.connection_string == (
        f"redis:6379,username={app_env['EMS_REDIS_USERNAME']},password={app_env['EMS_REDIS_PASSWORD']}")
    assert config.registry.path == (
        f"postgresql+psycopg://{app_env['EMS_PG_USER']}:{app_env['EMS_PG_PASSWORD']}@timescaledb:5432/"
        f"{app_env['EMS_PG_DATABASE']}?sslmode=disable")
    assert config.mlflow.enabled and config.mlflow.get_tracking_uri() == "http://mlflow:5000"
    assert "${" not in str(config.model_dump())


def test_ems_settings_take_every_address_and_credential_from_the_environment(in_app_env, app_env):
    s = Settings()
    assert (s.postgres.host, s.postgres.port, s.postgres.user, s.postgres.password) == (
        "timescaledb", 5432, app_env["EMS_PG_USER"], app_env["EMS_PG_PASSWORD"])
    assert (s.redis.host, s.redis.port, s.redis.username, s.redis.password) == (
        "redis", 6379, app_env["EMS_REDIS_USERNAME"], app_env["EMS_REDIS_PASSWORD"])
    assert (s.s3_endpoint_url, s.s3_bucket) == ("http://minio:9000", app_env["EMS_S3_BUCKET"])
    assert (s.s3_access_key, s.s3_secret_key) == (app_env["EMS_S3_ACCESS_KEY"], app_env["EMS_S3_SECRET_KEY"])
    assert s.mlflow_tracking_uri == "http://mlflow:5000"
    assert s.mlflow_backend_uri.startswith("postgresql+psycopg2://")
    for host in (s.postgres.host, s.redis.host, "minio", "mlflow"):
        assert not is_loopback(host)
    s.check_credentials()


def test_local_throwaway_s3_credentials_are_refused_inside_the_stack(in_app_env, monkeypatch):
    monkeypatch.setenv("EMS_S3_ACCESS_KEY", LOCAL_S3_ACCESS_KEY)
    monkeypatch.setenv("EMS_S3_SECRET_KEY", LOCAL_S3_SECRET_KEY)
    with pytest.raises(SettingsError, match="EMS_S3_ACCESS_KEY"):
        Settings().check_credentials()


def test_a_password_with_url_characters_reaches_mlflow_intact(in_app_env, monkeypatch):
    from sqlalchemy.engine import make_url

    monkeypatch.setenv("EMS_PG_PASSWORD", "p@ss:w/rd%")
    url = make_url(Settings().mlflow_backend_uri)
    assert (url.drivername, url.password, url.host, url.database) == (
        "postgresql+psycopg2", "p@ss:w/rd%", "timescaledb", "mlflow")
