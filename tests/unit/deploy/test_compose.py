"""mlflow-compose.yml, checked without Docker: parses, every variable defined, images pinned,
published ports unique, health checks everywhere that serves."""

from __future__ import annotations

import re

import yaml

from stack.settings import ROOT

COMPOSE = ROOT / "mlflow-compose.yml"
VAR = re.compile(r"\$\{([A-Z0-9_]+)(?::?-[^}]*)?\}")


def _env_example() -> dict[str, str]:
    lines = (ROOT / ".env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_every_variable_is_defined_in_env_example():
    used = set(VAR.findall(COMPOSE.read_text().replace("$$", "")))
    assert used and used <= set(_env_example())


def test_images_are_pinned_and_services_have_health_checks():
    doc = yaml.safe_load(COMPOSE.read_text())
    for name, svc in doc["services"].items():
        image = svc.get("image", "")
        assert ":" in image and not image.endswith(":latest"), name
        if name not in ("minio-bucket", "app"):
            assert "healthcheck" in svc, name


def test_published_ports_are_unique_and_on_loopback():
    env = _env_example()
    doc = yaml.safe_load(COMPOSE.read_text())
    published = []
    for svc in doc["services"].values():
        for port in svc.get("ports", []):
            host_ip, host_port, _ = VAR.sub(lambda m: env[m.group(1)], port).split(":")
            assert host_ip == "127.0.0.1"
            published.append(host_port)
    assert len(published) == len(set(published))


def test_deployed_feast_yaml_reads_every_address_from_the_environment():
    text = (ROOT / "deploy" / "feature_store.env.yaml").read_text()
    app_env = yaml.safe_load(COMPOSE.read_text())["x-app-env"]
    assert set(VAR.findall(text)) <= set(app_env)
    assert "127.0.0.1" not in text and "password: ems" not in text
