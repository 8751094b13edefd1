"""`ems up / status / down` against the real local services."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from core.settings import Settings
from stack import services
from stack.process import pid_alive
from tests.helpers.stack import TEST_PORTS, ems, write_feast_yaml

pytestmark = pytest.mark.integration


def test_status_json_lists_every_service_healthy_with_its_url(stack, env):
    doc = json.loads(ems("status", "--json", env=env).stdout)
    services_ = doc["services"]
    by_name = {s["name"]: s for s in services_}
    assert set(by_name) == {"postgres", "redis", "s3", "mlflow"}
    assert all(s["healthy"] and s["managed"] and s["pid"] for s in services_)
    assert {"assets", "stale", "max_lag_hours", "worst"} <= set(doc["materialization"])
    assert by_name["mlflow"]["url"] == env["MLFLOW_TRACKING_URI"]
    assert by_name["s3"]["url"].endswith("/ems-artifacts")


def test_up_twice_keeps_the_same_processes(stack, env):
    before = {s.name: s.pid for s in services.status(stack)}
    ems("up", "--json", env=env)
    after = {s.name: s.pid for s in services.status(stack)}
    assert before == after


def test_crashed_service_is_restarted_by_up(stack):
    s3 = services.S3(stack)
    old = s3.status().pid
    os.killpg(old, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while pid_alive(old):
        assert time.monotonic() < deadline, f"s3 pid {old} still alive 30 s after SIGKILL"
        time.sleep(0.05)
    assert not s3.status().healthy
    new = s3.up()
    assert new.healthy and new.pid not in (None, old)


def test_service_not_started_by_ems_is_left_alone(stack, tmp_path, monkeypatch):
    port = TEST_PORTS["redis"] + 5  # beside the session's Redis, inside this stack's port range
    cmd = services.Redis(stack).command()
    cmd[cmd.index("--port") + 1] = str(port)
    cmd[cmd.index("--dir") + 1] = str(tmp_path)
    foreign = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    try:
        fs_yaml = write_feast_yaml(tmp_path / "fs.yaml", stack.postgres.port, port, stack.mlflow_port)
        monkeypatch.setenv("FEAST_FS_YAML_FILE_PATH", str(fs_yaml))
        monkeypatch.setenv("EMS_HOME", str(tmp_path / "home"))
        redis = services.Redis(Settings())
        deadline = time.monotonic() + 10
        while not redis.healthy() and time.monotonic() < deadline:
            time.sleep(0.05)
        status = redis.up()
        assert status.healthy and not status.managed and "external" in status.detail
        assert redis.down() is False
        assert foreign.poll() is None and redis.healthy()
    finally:
        foreign.terminate()
        foreign.wait(10)
