"""A private local stack for the test session: own home folder, own loopback ports, own Feast yaml."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from core.settings import ROOT

# EMS_TEST_PORT_OFFSET moves the whole test stack (to run two suites side by side).
# redis_cluster: the first of three cluster nodes (each also binds its bus on port + 10000).
_OFFSET = int(os.environ.get("EMS_TEST_PORT_OFFSET", "0"))
TEST_PORTS = {name: port + _OFFSET for name, port in
              {"postgres": 25432, "redis": 26379, "s3": 19333, "mlflow": 25050, "redis_cluster": 27001}.items()}

# EMS_TEST_PG_FLAVOUR picks the schema path the session's Postgres runs: `plain` (default: TimescaleDB
# never preloaded, even where `make timescaledb` installed it) or `timescale` (preloaded, required).
PG_FLAVOURS = ("plain", "timescale")
PG_FLAVOUR = os.environ.get("EMS_TEST_PG_FLAVOUR", "").strip().lower() or "plain"


def write_feast_yaml(target: Path, pg_port: int, redis_port: int, mlflow_port: int) -> Path:
    """The repo's feature_store.yaml with the test ports (same project, credentials and layout)."""
    cfg = yaml.safe_load((ROOT / "feature_store.yaml").read_text())
    local_port = cfg["offline_store"]["port"]
    cfg["offline_store"]["port"] = pg_port
    cfg["registry"]["path"] = cfg["registry"]["path"].replace(f":{local_port}/", f":{pg_port}/")
    options = [p for p in cfg["online_store"]["connection_string"].split(",") if "=" in p]  # credentials
    cfg["online_store"]["connection_string"] = ",".join([f"127.0.0.1:{redis_port}", *options])
    cfg["mlflow"]["tracking_uri"] = f"http://127.0.0.1:{mlflow_port}"
    target.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return target


def stack_env(home: Path) -> dict[str, str]:
    """Environment variables that point every setting at the test stack."""
    yaml_path = write_feast_yaml(home / "feature_store.yaml", TEST_PORTS["postgres"], TEST_PORTS["redis"],
                                 TEST_PORTS["mlflow"])
    return {
        "EMS_HOME": str(home),
        "FEAST_FS_YAML_FILE_PATH": str(yaml_path),
        "EMS_S3_ENDPOINT_URL": f"http://127.0.0.1:{TEST_PORTS['s3']}",
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{TEST_PORTS['mlflow']}",
        "EMS_PG_TIMESCALEDB": "on" if PG_FLAVOUR == "timescale" else "off",
    }


def ems(*args: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run the real `ems` CLI in a subprocess."""
    proc = subprocess.run([str(Path(sys.executable).parent / "ems"), *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=ROOT, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"ems {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def feast(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the untouched `feast` CLI from the repo root."""
    proc = subprocess.run([str(Path(sys.executable).parent / "feast"), *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=ROOT, timeout=600)
    if proc.returncode != 0:
        raise AssertionError(f"feast {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc
