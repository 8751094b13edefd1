"""The compose stack's files, parsed once; secrets for it are generated per test session."""

from __future__ import annotations

import importlib.util
import secrets

import pytest

from core.settings import ROOT
from tests.unit.deploy.interpolation import interpolate, load, read_env_file

COMPOSE = ROOT / "mlflow-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
FEAST_ENV_YAML = ROOT / "deploy" / "feature_store.env.yaml"
MLFLOW_SERVER = ROOT / "deploy" / "mlflow_server.py"
IMAGE_WORKDIR = "/app"


@pytest.fixture(scope="session")
def compose_raw() -> dict:
    return load(COMPOSE)


@pytest.fixture(scope="session")
def env_example() -> dict[str, str]:
    return read_env_file(ENV_EXAMPLE)


@pytest.fixture(scope="session")
def stack_env(env_example) -> dict[str, str]:
    """.env.example with every empty value filled in, as an operator would (URL-safe secrets)."""
    return {k: v or secrets.token_hex(12) for k, v in env_example.items()}


@pytest.fixture(scope="session")
def compose(compose_raw, stack_env) -> dict:
    """mlflow-compose.yml after interpolation with a complete .env."""
    return interpolate(compose_raw, stack_env)


@pytest.fixture(scope="session")
def app_env(compose) -> dict[str, str]:
    """The environment of the `app` service (what `ems` and Feast see in the image)."""
    return {k: str(v) for k, v in compose["services"]["app"]["environment"].items()}


@pytest.fixture
def in_app_env(app_env, monkeypatch) -> dict[str, str]:
    """This process sees exactly the app's EMS_*/MLFLOW_*/AWS_*/FEAST_* environment."""
    import os

    for name in list(os.environ):
        if name.startswith(("EMS_", "MLFLOW_", "AWS_", "FEAST_")):
            monkeypatch.delenv(name)
    for name, value in app_env.items():
        monkeypatch.setenv(name, in_repo(value))
    return app_env


def in_repo(value: str) -> str:
    """A path inside the image (WORKDIR /app holds the repo) mapped to this checkout."""
    if not value.startswith(f"{IMAGE_WORKDIR}/"):
        return value
    path = ROOT / value.removeprefix(f"{IMAGE_WORKDIR}/")
    assert path.exists(), f"{value} is not in the repo ({path})"
    return str(path)


@pytest.fixture(scope="session")
def mlflow_server():
    """deploy/mlflow_server.py as a module (the image runs it as a script)."""
    spec = importlib.util.spec_from_file_location("deploy_mlflow_server", MLFLOW_SERVER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
