"""Redis with ACL users (`ems up --auth`): a second Redis started the way the stack starts it, on its own
port, beside the session's Postgres. A client without credentials is refused; the operator (the Feast
yaml's user) materializes; the HTTP service's user reads and cannot write; a wrong password is one clear
error naming the user. The compose file's Redis command builds the same users for a real redis-server."""

from __future__ import annotations

import secrets
import shutil
import subprocess
from datetime import UTC, datetime

import pytest
import redis

from core.errors import OnlineStoreAccessError
from core.settings import ROOT, Settings
from inference.online import OnlineReader
from stack import services
from stack.process import port_open, spawn, terminate, wait_until
from stack.redis_acl import SERVICE_RULES
from tests.helpers.data import tetouan_slice
from tests.helpers.stack import TEST_PORTS, ems, write_feast_yaml
from warehouse.ingest import ingest_readings
from warehouse.refresh import refresh
from warehouse.store import get_store, online_features

pytestmark = pytest.mark.integration

PORT = TEST_PORTS["redis"] + 3  # beside the session's Redis
COMPOSE_PORT = TEST_PORTS["redis"] + 4
TENANT, ASSET = "rauth", "zone1"
SERVICE = "forecast_basic"


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("redis-auth")


@pytest.fixture(scope="module")
def yaml_path(home):
    return write_feast_yaml(home / "feature_store.yaml", TEST_PORTS["postgres"], PORT, TEST_PORTS["mlflow"])


def settings_for(home, yaml_path, **update) -> Settings:
    return Settings(FEAST_FS_YAML_FILE_PATH=str(yaml_path), home=home, **update)


@pytest.fixture(scope="module")
def operator(stack, home, yaml_path):
    """`ems up --auth`'s Redis, loaded by `ems materialize` as the operator."""
    settings = settings_for(home, yaml_path, mlflow_auth=True)
    server = services.Redis(settings)
    try:
        server.up()
        data = tetouan_slice(home / "t.csv", "2017-06-01", "2017-06-08")
        ingest_readings(stack, data, TENANT, wide=True, columns=f"{ASSET}=zone1_power_consumption")
        refresh(stack)
        ems("materialize", "--start", "2017-06-01T00:00:00", env={"FEAST_FS_YAML_FILE_PATH": str(yaml_path)})
        yield settings
    finally:
        server.down()


@pytest.fixture
def service(operator, home, yaml_path) -> Settings:
    """The HTTP service's settings: its ACL user, as `ems up --with-api` passes it."""
    return settings_for(home, yaml_path, redis_username=operator.redis_service_username,
                        redis_password=operator.redis_service_password)


def test_a_client_without_credentials_is_refused(operator):
    with pytest.raises(redis.AuthenticationError, match="Authentication required"):
        redis.Redis("127.0.0.1", PORT, socket_timeout=2).ping()
    cli = subprocess.run([shutil.which("redis-cli", path=str(ROOT / ".venv" / "bin")) or "redis-cli",
                          "-p", str(PORT), "ping"], capture_output=True, text=True, timeout=10)
    assert cli.stdout.strip() == "NOAUTH Authentication required."
    status = services.Redis(operator).status()
    assert status.healthy and status.detail == "running, ACL auth on"


def test_the_service_reads_what_the_operator_materialized_and_cannot_write(operator, service):
    store = get_store(service)
    assert f"username={service.redis_service_username}," in store.config.online_store.connection_string
    target = [datetime(2017, 6, 7, 12, tzinfo=UTC)]
    mine = OnlineReader(store).read(SERVICE, TENANT, [ASSET], {"target_time": target})
    feast_rows = get_store(operator).get_online_features(
        features=get_store(operator).get_feature_service(SERVICE),
        entity_rows=[{"tenant_id": TENANT, "asset_id": ASSET, "target_time": target[0]}]).to_dict()
    assert mine == feast_rows and mine["lag_1h"][0] is not None
    frame = online_features(service, SERVICE, TENANT, [ASSET], target_time=target[0])  # Feast's own read
    assert frame["lag_1h"].tolist() == mine["lag_1h"]

    as_service = redis.Redis("127.0.0.1", PORT, username=service.redis.username, password=service.redis.password)
    key = next(iter(redis.Redis("127.0.0.1", PORT, username=operator.redis.username,
                                password=operator.redis.password).scan_iter(count=1000)))
    assert as_service.type(key) == b"hash"
    for attempt in (lambda: as_service.hset(key, "x", "1"), lambda: as_service.delete(key),
                    lambda: as_service.keys("*"), lambda: as_service.flushall(),
                    lambda: as_service.config_get("requirepass")):
        with pytest.raises(redis.exceptions.NoPermissionError, match="no permissions to run"):
            attempt()


def test_a_wrong_password_is_one_error_naming_the_user(operator, home, yaml_path):
    wrong = secrets.token_urlsafe(12)
    bad = settings_for(home, yaml_path, redis_username="ems-service", redis_password=wrong)
    with pytest.raises(OnlineStoreAccessError, match=r"Redis at 127\.0\.0\.1:\d+ refused user 'ems-service' "
                                                     r"\(.*invalid username-password pair.*\): set EMS_REDIS_USERNAME"):
        OnlineReader(get_store(bad)).read(SERVICE, TENANT, [ASSET], {"target_time": [datetime.now(UTC)]})
    proc = ems("features", "--tenant", TENANT, "--asset", ASSET, "--service", SERVICE, check=False,
               env={"FEAST_FS_YAML_FILE_PATH": str(yaml_path), "EMS_REDIS_PASSWORD": wrong})
    assert proc.returncode == 1
    assert "refused user 'ems'" in proc.stderr and "EMS_REDIS_PASSWORD" in proc.stderr, proc.stderr


def test_up_switches_the_mode_in_place(operator, home, yaml_path):
    """`ems up --no-auth` turns the default user on (legacy `AUTH <password>`, never without one) and `--auth`
    off again, on the same process."""
    server = services.Redis(operator)
    pid = server.pidfile.read()
    legacy = redis.Redis("127.0.0.1", PORT, password=operator.redis.password)  # no user name
    try:
        status = services.Redis(settings_for(home, yaml_path, mlflow_auth=False)).up()
        assert legacy.ping() and status.pid == pid
        assert status.detail == "running, default user on (AUTH with a password)"
        with pytest.raises(redis.AuthenticationError, match="Authentication required"):
            redis.Redis("127.0.0.1", PORT).ping()
    finally:
        server.up()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis("127.0.0.1", PORT, password=operator.redis.password).ping()
    assert server.pidfile.read() == pid
    assert (server.acl_file.stat().st_mode & 0o777, server.dir.stat().st_mode & 0o777) == (0o600, 0o700)
    assert "user default off" in server.acl_file.read_text()  # saved: a restart keeps the mode


def test_up_gives_users_to_a_redis_started_before_them(operator, home, yaml_path):
    """A Redis an older `ems up` started (open to anyone, no ACL users) answers the new clients after one
    `ems up`, without a restart."""
    server = services.Redis(operator)
    pid = server.pidfile.read()
    admin = redis.Redis("127.0.0.1", PORT, username=operator.redis.username, password=operator.redis.password)
    try:
        admin.execute_command("ACL", "SETUSER", "default", "reset", "on", "nopass", "~*", "&*", "+@all")
        bare = redis.Redis("127.0.0.1", PORT)
        bare.execute_command("ACL", "DELUSER", operator.redis.username, operator.redis_service_username)
        assert server._ping(operator.redis.username, operator.redis.password) is False
        server.up()
        assert server._ping(operator.redis.username, operator.redis.password) is True
        assert server._ping(operator.redis_service_username, operator.redis_service_password) is True
        assert server.open_to_anyone() is False and server.pidfile.read() == pid
    finally:
        server.up()


def test_the_compose_redis_command_builds_the_same_users(tmp_path):
    """The compose file's Redis command, run by sh with its variables set, writes an ACL file that the
    real redis-server loads: no client without credentials, the operator may do anything, the API's
    user (stack/redis_acl.py SERVICE_RULES) only reads."""
    from tests.unit.deploy.conftest import COMPOSE
    from tests.unit.deploy.interpolation import interpolate, load

    op_secret, api_secret = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    env = {"EMS_REDIS_USERNAME": "op", "EMS_REDIS_PASSWORD": op_secret,
           "EMS_REDIS_SERVICE_USERNAME": "api", "EMS_REDIS_SERVICE_PASSWORD": api_secret}
    command = interpolate(load(COMPOSE)["services"]["redis"], env)["command"]
    acl = tmp_path / "users.acl"
    script = command[2].replace("/tmp/users.acl", str(acl)).replace("chown redis:redis", "true")
    script = script.replace("exec docker-entrypoint.sh redis-server", "exit 0 #")
    subprocess.run(["sh", "-c", script], env=env, check=True, timeout=10)
    assert SERVICE_RULES in acl.read_text() and op_secret not in acl.read_text()
    binary = shutil.which("redis-server", path=f"{ROOT / '.venv' / 'bin'}:/usr/bin")
    proc = spawn([binary, "--port", str(COMPOSE_PORT), "--bind", "127.0.0.1", "--save", "", "--aclfile", str(acl)],
                 tmp_path / "redis.log")
    try:
        wait_until(lambda: port_open("127.0.0.1", COMPOSE_PORT), "compose-shaped redis", 20, proc,
                   tmp_path / "redis.log")
        with pytest.raises(redis.AuthenticationError, match="Authentication required"):
            redis.Redis("127.0.0.1", COMPOSE_PORT).ping()
        op = redis.Redis("127.0.0.1", COMPOSE_PORT, username="op", password=op_secret)
        api = redis.Redis("127.0.0.1", COMPOSE_PORT, username="api", password=api_secret)
        assert op.hset("k", "f", "v") == 1 and api.hget("k", "f") == b"v"
        with pytest.raises(redis.exceptions.NoPermissionError):
            api.hset("k", "f", "w")
    finally:
        terminate(proc.pid)
