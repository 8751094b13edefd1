"""mlflow-compose.yml, checked without Docker: the compose-spec schema, every variable defined in
.env.example, secrets required, images pinned, health checks and health-gated start order, ports
unique and on loopback, named volumes declared, the MLflow server reachable by the names it is
called with."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from importlib.resources import files
from urllib.parse import urlsplit

import pytest
from jsonschema import Draft202012Validator

from core.settings import ROOT
from tests.unit.deploy.conftest import COMPOSE, ENV_EXAMPLE
from tests.unit.deploy.interpolation import MissingVariable, interpolate, references, strings

SECRET = re.compile(r"PASSWORD|SECRET|ACCESS_KEY")
# Optional secrets: only used with EMS_MLFLOW_AUTH=true, and then checked by deploy/mlflow_server.py.
OPTIONAL_SECRETS = {"EMS_MLFLOW_ADMIN_PASSWORD", "EMS_MLFLOW_SECRET_KEY", "EMS_MLFLOW_PASSWORD"}
# Where each stateful service keeps its data (must be a named volume).
# PostgreSQL 18+ images keep PGDATA in /var/lib/postgresql/<major>/docker: the volume holds their parent.
DATA_PATHS = {"timescaledb": "/var/lib/postgresql", "redis": "/data", "minio": "/data"}


def _variables(doc) -> dict[str, set[str]]:
    used: dict[str, set[str]] = {}
    for value in strings(doc):
        for name, op in references(value):
            used.setdefault(name, set()).add(op)
    return used


def _one_shot(svc: dict) -> bool:
    return svc.get("restart") == "no"


def _compose_schema() -> dict:
    """The compose-spec JSON schema, as vendored by check-jsonschema (dev dependency)."""
    text = (files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json").read_text()
    return json.loads(text)


@pytest.mark.parametrize("interpolated", [False, True], ids=["as-written", "interpolated"])
def test_compose_file_matches_the_compose_spec_schema(compose_raw, compose, interpolated):
    validator = Draft202012Validator(_compose_schema())
    errors = sorted(validator.iter_errors(compose if interpolated else compose_raw), key=str)
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def test_every_variable_is_defined_in_env_example_and_every_entry_is_used(compose_raw, env_example):
    used = set(_variables(compose_raw))
    assert used, "no ${VAR} found: has the parser broken?"
    assert used - set(env_example) == set(), "set in .env.example"
    assert set(env_example) - used == set(), "stale entries in .env.example"


def test_secrets_are_empty_in_env_example_and_required_by_compose(compose_raw, env_example):
    secrets = {name for name in env_example if SECRET.search(name)}
    assert secrets >= {"EMS_PG_PASSWORD", "EMS_S3_ACCESS_KEY", "EMS_S3_SECRET_KEY"}
    assert {name: env_example[name] for name in secrets if env_example[name]} == {}
    for name, ops in _variables(compose_raw).items():
        if name in secrets - OPTIONAL_SECRETS:
            assert ops == {":?"}, f"every use of {name} must be ${{{name}:?message}}, got {ops}"


def test_compose_refuses_to_start_with_the_example_env_as_is(compose_raw, env_example):
    with pytest.raises(MissingVariable, match="EMS_PG_PASSWORD|EMS_S3_ACCESS_KEY|EMS_S3_SECRET_KEY"):
        interpolate(compose_raw, env_example)


def test_images_are_pinned(compose):
    for name, svc in compose["services"].items():
        image = svc.get("image", "")
        repo, _, tag = image.rpartition(":") if "@" not in image else (image, "", "digest")
        assert repo and tag and tag != "latest" and not tag.startswith("latest-"), f"{name}: {image!r}"
        assert "${" not in image, name


def test_app_image_is_built_from_the_project_at_its_version(compose):
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    built = {name: svc for name, svc in compose["services"].items() if "build" in svc}
    assert set(built) == {"mlflow", "init", "app", "api", "scheduler", "scheduler-ui"}
    for name, svc in built.items():
        assert svc["image"] == f"ems-ai-hub:{version}", name
        assert (ROOT / svc["build"]["context"] / svc["build"]["dockerfile"]).is_file(), name


def test_long_running_services_have_health_checks_and_restart(compose):
    for name, svc in compose["services"].items():
        if _one_shot(svc):
            assert "healthcheck" not in svc, name
            continue
        assert svc.get("restart") == "unless-stopped", name
        check = svc.get("healthcheck", {})
        assert check.get("test") and check["test"][0] in ("CMD", "CMD-SHELL"), name
        assert {"interval", "timeout", "retries"} <= set(check), name


def test_start_order_waits_for_health_and_for_one_shots_to_finish(compose):
    services = compose["services"]
    for name, svc in services.items():
        for target, cond in svc.get("depends_on", {}).items():
            assert target in services, f"{name} depends on unknown {target}"
            expected = "service_completed_successfully" if _one_shot(services[target]) else "service_healthy"
            assert cond == {"condition": expected}, f"{name} -> {target}"
    assert set(services["mlflow"]["depends_on"]) >= {"timescaledb", "minio-bucket"}
    assert set(services["init"]["depends_on"]) >= {"timescaledb", "redis"}
    assert set(services["app"]["depends_on"]) >= {"init", "redis", "mlflow"}


def test_published_ports_are_unique_and_on_loopback(compose):
    published = []
    for name, svc in compose["services"].items():
        for port in svc.get("ports", []):
            host_ip, host_port, container_port = str(port).split(":")
            assert host_ip == "127.0.0.1", f"{name} publishes {port} beyond loopback"
            assert host_port.isdigit() and container_port.isdigit(), port
            published.append(int(host_port))
    assert published and len(published) == len(set(published)), published


def test_named_volumes_are_declared_used_and_hold_the_data(compose):
    declared = set(compose["volumes"])
    mounted: dict[str, set[str]] = {}
    for name, svc in compose["services"].items():
        for volume in svc.get("volumes", []):
            source, target = volume.split(":")[:2]
            assert not source.startswith((".", "/", "~")), f"{name}: bind mount {volume}; use a named volume"
            mounted.setdefault(source, set()).add(f"{name}:{target}")
    assert set(mounted) == declared
    for name, path in DATA_PATHS.items():
        assert any(f"{name}:{path}" in targets for targets in mounted.values()), name


def test_every_app_image_service_runs_a_project_command(compose):
    services = compose["services"]
    assert services["app"]["command"][0] == "ems"
    assert services["init"]["command"] == ["sh", "-c", "ems migrate && feast apply"]
    assert services["mlflow"]["command"] == ["python", "deploy/mlflow_server.py"]
    assert (ROOT / "deploy" / "mlflow_server.py").is_file()


def test_services_of_the_app_image_share_the_app_environment(compose, app_env):
    for name in ("mlflow", "init"):
        env = {k: str(v) for k, v in compose["services"][name]["environment"].items()}
        assert env.items() >= app_env.items(), name


def test_redis_refuses_clients_without_credentials_and_the_api_reads_as_its_own_user(compose, stack_env):
    """The ACL file written by the Redis service's command: `default` off, the operator, and the service with
    the local stack's read-only rules (tests/integration/test_redis_auth.py loads it into a real Redis)."""
    from stack.redis_acl import CLOSED_DEFAULT, SERVICE_RULES

    redis = compose["services"]["redis"]
    script = redis["command"][2]
    assert redis["command"][:2] == ["sh", "-c"] and "--aclfile /tmp/users.acl" in script
    assert CLOSED_DEFAULT in script and SERVICE_RULES in script
    assert "--user" in " ".join(redis["healthcheck"]["test"])
    api = compose["services"]["api"]["environment"]
    assert (api["EMS_REDIS_USERNAME"], api["EMS_REDIS_PASSWORD"]) == (
        stack_env["EMS_REDIS_SERVICE_USERNAME"], stack_env["EMS_REDIS_SERVICE_PASSWORD"])
    assert api["EMS_REDIS_PASSWORD"] != stack_env["EMS_REDIS_PASSWORD"]


def test_mlflow_accepts_the_hosts_it_is_called_by_and_no_other(compose, app_env, stack_env):
    from mlflow.server.security_utils import is_allowed_host_header, is_health_endpoint

    allowed_hosts = compose["services"]["mlflow"]["environment"]["MLFLOW_SERVER_ALLOWED_HOSTS"]
    allowed = [h.strip() for h in allowed_hosts.split(",")]
    published = stack_env["EMS_MLFLOW_PUBLISHED_PORT"]
    for host in (urlsplit(app_env["MLFLOW_TRACKING_URI"]).netloc, f"localhost:{published}", f"127.0.0.1:{published}"):
        assert is_allowed_host_header(allowed, host), host
    assert not is_allowed_host_header(allowed, "attacker.example.org")
    assert "*" not in allowed
    health = compose["services"]["mlflow"]["healthcheck"]["test"]
    assert "http://127.0.0.1:5000/health" in " ".join(health) and is_health_endpoint("/health")


def test_mlflow_health_check_needs_no_credentials_when_basic_auth_is_on():
    from mlflow.server.auth import is_unprotected_route

    assert is_unprotected_route("/health")


def test_bucket_job_and_services_agree_on_names(compose, stack_env):
    services = compose["services"]
    assert services["minio-bucket"]["environment"]["EMS_S3_BUCKET"] == stack_env["EMS_S3_BUCKET"]
    script = services["minio-bucket"]["command"][0]
    assert "mc mb --ignore-existing" in script and "http://minio:9000" in script
    app_env = services["app"]["environment"]
    assert app_env["EMS_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert app_env["EMS_S3_SERVER"] == "minio"  # tenants' S3 keys through MinIO's admin API
    assert app_env["EMS_PG_HOST"] in services and app_env["EMS_REDIS_HOST"] in services
    assert urlsplit(app_env["MLFLOW_TRACKING_URI"]).hostname in services
    minio = services["minio"]["environment"]
    assert (minio["MINIO_ROOT_USER"], minio["MINIO_ROOT_PASSWORD"]) == (
        app_env["EMS_S3_ACCESS_KEY"], app_env["EMS_S3_SECRET_KEY"])
    pg = services["timescaledb"]["environment"]
    assert (pg["POSTGRES_DB"], pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"]) == (
        app_env["EMS_PG_DATABASE"], app_env["EMS_PG_USER"], app_env["EMS_PG_PASSWORD"])


def test_timescaledb_image_is_the_timescale_one(compose):
    assert compose["services"]["timescaledb"]["image"].startswith("timescale/timescaledb:")


def test_timescaledb_image_runs_the_versions_ci_tests(compose):
    """The production image's TimescaleDB is the vendored release CI builds (stack/timescale.py), on the
    PostgreSQL major of the embedded server the suite runs."""
    from stack import timescale

    tag = compose["services"]["timescaledb"]["image"].rpartition(":")[2]
    m = re.fullmatch(r"(\d+\.\d+\.\d+)-pg(\d+)", tag)
    assert m, f"timescale/timescaledb tag {tag!r} is not <version>-pg<major>"
    assert m[1] == timescale.VERSION
    assert int(m[2]) == timescale.pg_install().major


def test_dotenv_is_ignored_by_git_and_by_docker_builds():
    assert subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=ROOT).returncode == 0
    dockerignore = {line.strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".env", ".venv", ".ems", ".git"} <= dockerignore


def _compose_cli() -> list[str] | None:
    """A Docker Compose v2 CLI, where this machine has one (`docker compose` or `docker-compose`)."""
    for cli in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(cli[0]) is None:
            continue
        version = subprocess.run([*cli, "version"], capture_output=True, text=True, timeout=60)
        if version.returncode == 0 and re.search(r"\bv?2\.\d+\.\d+\b", version.stdout):
            return cli
    return None


@pytest.mark.skipif(_compose_cli() is None, reason="no Docker Compose v2 CLI here (the schema tests above still run)")
def test_docker_compose_resolves_the_file_and_refuses_empty_secrets(stack_env, tmp_path):
    cli = _compose_cli()
    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in stack_env.items()))
    resolved = subprocess.run([*cli, "--env-file", str(env_file), "-f", str(COMPOSE), "--profile", "app",
                               "config", "--format", "json"], capture_output=True, text=True, timeout=120)
    assert resolved.returncode == 0 and resolved.stdout, resolved.stderr
    services = json.loads(resolved.stdout)["services"]
    assert set(services) == {"timescaledb", "redis", "minio", "minio-bucket", "mlflow", "init", "app"}
    assert services["mlflow"]["environment"]["EMS_PG_PASSWORD"] == stack_env["EMS_PG_PASSWORD"]
    refused = subprocess.run([*cli, "--env-file", str(ENV_EXAMPLE), "-f", str(COMPOSE), "config"],
                             capture_output=True, text=True, timeout=120)
    assert "required variable" in refused.stderr and not refused.stdout.strip()
