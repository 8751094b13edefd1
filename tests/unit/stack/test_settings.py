"""Settings: one source per value, environment overrides, unsafe defaults refused."""

from __future__ import annotations

import pytest

from core.settings import (
    LOCAL_REDIS_PASSWORD,
    LOCAL_S3_ACCESS_KEY,
    ROOT,
    Settings,
    SettingsError,
    is_loopback,
    parse_redis_connection_string,
    read_feast_yaml,
)


def test_postgres_and_redis_come_from_the_feast_yaml(monkeypatch):
    for name in ("FEAST_FS_YAML_FILE_PATH", "EMS_REDIS_USERNAME", "EMS_REDIS_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    s = Settings()
    cfg = read_feast_yaml(ROOT / "feature_store.yaml")
    assert (s.postgres.host, s.postgres.port, s.postgres.database) == (
        cfg["offline_store"]["host"], cfg["offline_store"]["port"], cfg["offline_store"]["database"])
    assert s.redis_connection_string == cfg["online_store"]["connection_string"] == (
        f"{s.redis.host}:{s.redis.port},username={s.redis.username},password={s.redis.password}")
    assert s.redis.password == LOCAL_REDIS_PASSWORD  # the operator's throwaway local password
    assert f":{s.postgres.port}/" in cfg["registry"]["path"]


def test_redis_credentials_from_the_environment_replace_the_yaml_ones(monkeypatch):
    monkeypatch.delenv("FEAST_FS_YAML_FILE_PATH", raising=False)
    monkeypatch.setenv("EMS_REDIS_USERNAME", "ems-service")
    monkeypatch.setenv("EMS_REDIS_PASSWORD", "svc-pass")
    s = Settings()
    assert (s.redis.username, s.redis.password) == ("ems-service", "svc-pass")
    assert s.redis_connection_string.endswith(",username=ems-service,password=svc-pass")
    assert s.redis_connection_string.count("username=") == 1


@pytest.mark.parametrize("value", ["a,b", " "])
def test_a_redis_password_feast_cannot_carry_is_refused(monkeypatch, value):
    monkeypatch.delenv("FEAST_FS_YAML_FILE_PATH", raising=False)
    monkeypatch.setenv("EMS_REDIS_PASSWORD", value)
    with pytest.raises(SettingsError, match="EMS_REDIS_PASSWORD must be non-empty and hold no ','"):
        _ = Settings().redis


def test_local_redis_password_is_refused_off_loopback(tmp_path, monkeypatch):
    path = tmp_path / "fs.yaml"
    path.write_text("offline_store: {type: postgres, host: db, port: 6000, database: d, user: u}\n"
                    f"online_store: {{type: redis, connection_string: 'redis.internal:6379,username=ems,"
                    f"password={LOCAL_REDIS_PASSWORD}'}}\n")
    monkeypatch.setenv("FEAST_FS_YAML_FILE_PATH", str(path))
    with pytest.raises(SettingsError, match="Redis at redis.internal:6379 is not local: set EMS_REDIS_PASSWORD"):
        Settings(s3_endpoint_url="http://127.0.0.1:1").check_credentials()


def test_feast_yaml_env_substitution_is_honoured(tmp_path, monkeypatch):
    path = tmp_path / "fs.yaml"
    path.write_text("offline_store: {type: postgres, host: ${PGHOST_X}, port: 6000, database: d, user: u}\n"
                    "online_store: {type: redis, connection_string: 'r:7000,db=2,password=p'}\n")
    monkeypatch.setenv("FEAST_FS_YAML_FILE_PATH", str(path))
    monkeypatch.setenv("PGHOST_X", "db.internal")
    s = Settings()
    assert (s.postgres.host, s.postgres.port) == ("db.internal", 6000)
    assert (s.redis.host, s.redis.port, s.redis.db, s.redis.password) == ("r", 7000, 2, "p")
    assert s.postgres.sqlalchemy_url("mlflow").startswith("postgresql+psycopg2://u:@db.internal:6000/mlflow")


def test_mlflow_follows_its_own_variable(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9999")
    assert Settings().mlflow_port == 9999


def test_local_s3_credentials_are_refused_for_a_remote_endpoint(monkeypatch):
    monkeypatch.setenv("EMS_S3_ENDPOINT_URL", "https://minio.example.org")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("EMS_S3_ACCESS_KEY", raising=False)
    s = Settings()
    assert s.s3_access_key == LOCAL_S3_ACCESS_KEY
    with pytest.raises(SettingsError, match="EMS_S3_ACCESS_KEY"):
        s.check_credentials()
    monkeypatch.setenv("EMS_S3_ACCESS_KEY", "real")
    monkeypatch.setenv("EMS_S3_SECRET_KEY", "real-secret")
    Settings().check_credentials()


def test_missing_feast_yaml_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("FEAST_FS_YAML_FILE_PATH", str(tmp_path / "nope.yaml"))
    with pytest.raises(SettingsError, match="FEAST_FS_YAML_FILE_PATH"):
        _ = Settings().postgres


@pytest.mark.parametrize(("host", "expected"), [("127.0.0.1", True), ("127.0.0.5", True), ("localhost", True),
                                                ("::1", True), ("10.0.0.1", False), ("db", False), (None, False)])
def test_loopback_detection(host, expected):
    assert is_loopback(host) is expected


def test_redis_connection_string_without_options():
    assert parse_redis_connection_string("127.0.0.1:16379").port == 16379


def test_redis_cluster_connection_string_lists_every_node():
    address = parse_redis_connection_string("r1:7000, r2:7001,r3:7002,password=p", "redis_cluster")
    assert address.cluster and address.nodes == (("r1", 7000), ("r2", 7001), ("r3", 7002))
    assert (address.host, address.port, address.db, address.password) == ("r1", 7000, 0, "p")
    assert not parse_redis_connection_string("r1:7000").cluster


@pytest.mark.parametrize(("value", "redis_type", "match"), [
    ("r1:7000,r2:7001,db=1", "redis_cluster", "only db 0"),
    ("r1:7000", "redis_sentinel", "redis_sentinel"),
    ("r1", "redis", "'r1' is not host:port"),
    ("db=2", "redis", "names no host:port"),
])
def test_bad_redis_connection_strings_are_refused(value, redis_type, match):
    with pytest.raises(SettingsError, match=match):
        parse_redis_connection_string(value, redis_type)


def test_the_cluster_form_of_the_feast_yaml_is_read(tmp_path, monkeypatch):
    path = tmp_path / "fs.yaml"
    path.write_text("offline_store: {type: postgres, database: d, user: u}\n"
                    "online_store: {type: redis, redis_type: redis_cluster, "
                    "connection_string: '127.0.0.1:27001,127.0.0.1:27002,127.0.0.1:27003'}\n")
    monkeypatch.setenv("FEAST_FS_YAML_FILE_PATH", str(path))
    s = Settings()
    assert s.redis.cluster and [p for _, p in s.redis.nodes] == [27001, 27002, 27003]


def test_mlflow_address_comes_from_the_feast_yaml_unless_the_variable_is_set(tmp_path, monkeypatch):
    path = tmp_path / "fs.yaml"
    path.write_text("offline_store: {type: postgres, database: d, user: u}\nmlflow: {tracking_uri: 'http://mlf:7000'}\n")
    monkeypatch.setenv("FEAST_FS_YAML_FILE_PATH", str(path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert Settings().mlflow_tracking_uri == "http://mlf:7000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://other:8000")
    assert Settings().mlflow_tracking_uri == "http://other:8000"
