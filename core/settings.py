"""Every address, port, bucket and credential of the project, read once from the environment.

Postgres and Redis addresses are Feast settings, so they are read from the Feast yaml in use
(`FEAST_FS_YAML_FILE_PATH`, else the repo's `feature_store.yaml`) instead of being typed again.
MLflow follows its own convention (`MLFLOW_TRACKING_URI`); everything else is `EMS_*`.
The defaults are throwaway values for the local stack; outside loopback they are refused.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal
from urllib.parse import quote, urlsplit

import yaml
from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.errors import EmsError

ROOT = Path(__file__).resolve().parent.parent
# MLflow 3's client telemetry thread sets and unsets _MLFLOW_TELEMETRY_SESSION_ID in os.environ while other
# threads read the environment (requests does, per call): a KeyError in a pipeline step or a test. Every
# process of the project imports this module before MLflow; telemetry stays off unless the user says otherwise.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
LOOPBACK = {"127.0.0.1", "localhost", "::1"}

# Throwaway credentials of the local S3 server; refused for any non-loopback endpoint.
LOCAL_S3_ACCESS_KEY = "ems-local-access"
LOCAL_S3_SECRET_KEY = "ems-local-secret"
# Throwaway password of the local MLflow admin (`ems up --auth`); refused for a server off loopback.
LOCAL_MLFLOW_ADMIN_PASSWORD = "ems-local-admin"
# Throwaway passwords of the local Redis's ACL users: the operator's is in the root feature_store.yaml, the
# service's (`ems serve`, read-only) is EMS_REDIS_SERVICE_PASSWORD's default; refused for a Redis off loopback.
LOCAL_REDIS_PASSWORD = "ems-local-redis"
LOCAL_REDIS_SERVICE_PASSWORD = "ems-local-redis-service"


# Offline store types whose connection settings are Postgres's: stock Feast's and ours (same config
# fields, faster point-in-time join; warehouse/offline_store.py).
POSTGRES_OFFLINE_STORES = ("warehouse.offline_store.EmsPostgresOfflineStore", "postgres")


LOCAL_MLFLOW = "http://127.0.0.1:15050"


class SettingsError(EmsError, ValueError):
    """A setting is missing or unsafe; the message names the variable to set."""


@dataclass(frozen=True)
class PostgresAddress:
    host: str
    port: int
    database: str
    user: str
    password: str
    sslmode: str = "disable"

    def conninfo(self, database: str | None = None) -> str:
        """libpq connection string (psycopg 3)."""
        return (
            f"host={self.host} port={self.port} dbname={database or self.database} "
            f"user={self.user} password={self.password} sslmode={self.sslmode}"
        )

    def sqlalchemy_url(self, database: str | None = None) -> str:
        return (
            f"postgresql+psycopg2://{quote(self.user)}:{quote(self.password)}@{self.host}:{self.port}/"
            f"{database or self.database}?sslmode={self.sslmode}"
        )


REDIS_TYPES = ("redis", "redis_cluster")  # Feast's redis_type values the SDK's reader supports


@dataclass(frozen=True)
class RedisAddress:
    host: str  # the first node listed
    port: int
    db: int = 0
    password: str | None = None
    username: str | None = None  # an ACL user (Redis 6+); None = `default`
    cluster: bool = False  # redis_type: redis_cluster (the nodes are startup nodes; slots are discovered)
    nodes: tuple[tuple[str, int], ...] = ()  # every node listed, (host, port)


def read_feast_yaml(path: Path) -> dict:
    """Parse the Feast yaml the way Feast does (environment variables substituted)."""
    try:
        text = path.read_text()
    except FileNotFoundError as e:
        raise SettingsError(f"Feast config {path} does not exist; set FEAST_FS_YAML_FILE_PATH") from e
    return yaml.safe_load(os.path.expandvars(text))


def parse_redis_connection_string(value: str, redis_type: str = "redis") -> RedisAddress:
    """Feast's format: `host:port[,db=N][,username=U][,password=P]`; for `redis_type: redis_cluster` a list of
    startup nodes, `host1:port1,host2:port2,...[,password=P]` (a cluster has only database 0)."""
    if redis_type not in REDIS_TYPES:
        raise SettingsError(f"online_store.redis_type {redis_type!r} is not supported; use one of "
                            f"{', '.join(REDIS_TYPES)}")
    parts = [p.strip() for p in value.split(",") if p.strip()]
    options = dict(p.split("=", 1) for p in parts if "=" in p)
    nodes = []
    for part in (p for p in parts if "=" not in p):
        host, _, port = part.rpartition(":")
        if not port.isdigit():
            raise SettingsError(f"online_store.connection_string {value!r}: {part!r} is not host:port")
        nodes.append((host or "localhost", int(port)))
    if not nodes:
        raise SettingsError(f"online_store.connection_string {value!r} names no host:port")
    cluster = redis_type == "redis_cluster"
    db = int(options.get("db", 0))
    if cluster and db != 0:
        raise SettingsError(f"online_store.connection_string {value!r}: db={db}, but a Redis Cluster has only db 0")
    return RedisAddress(host=nodes[0][0], port=nodes[0][1], db=db, password=options.get("password"),
                        username=options.get("username"), cluster=cluster, nodes=tuple(nodes))


CREDENTIAL_OPTIONS = ("username", "password")


def with_redis_credentials(value: str, username: str | None, password: str | None) -> str:
    """A Feast connection string with its `username=`/`password=` options replaced by these (None: kept).
    Feast splits the string on commas, so a credential holding `,` cannot be written into it."""
    given = {"username": username, "password": password}
    for name, secret in given.items():
        if secret is not None and ("," in secret or not secret.strip()):
            raise SettingsError(f"EMS_REDIS_{name.upper()} must be non-empty and hold no ',' (Feast's "
                                "connection_string is comma separated)")
    parts = [p.strip() for p in value.split(",") if p.strip()]
    kept = [p for p in parts if p.split("=", 1)[0] not in {k for k, v in given.items() if v is not None}]
    return ",".join([*kept, *(f"{k}={v}" for k, v in given.items() if v is not None)])


class Settings(BaseSettings):
    """Project settings; build once (CLI callback or SDK entry) and pass down."""

    model_config = SettingsConfigDict(env_prefix="EMS_", extra="ignore")

    home: Path = Field(default=ROOT / ".ems", description="state, data and logs of the local stack")
    feast_yaml: Path = Field(
        default=ROOT / "feature_store.yaml",
        validation_alias=AliasChoices("FEAST_FS_YAML_FILE_PATH", "EMS_FEAST_YAML"),
    )
    # MLFLOW_TRACKING_URI (MLflow's convention) wins; else the Feast yaml's `mlflow.tracking_uri`
    # (the address Feast's MLflow integration uses too); else the local stack's.
    mlflow_tracking_uri: str | None = Field(default=None, validation_alias=AliasChoices("MLFLOW_TRACKING_URI"))
    mlflow_database: str = "mlflow"
    s3_endpoint_url: str = "http://127.0.0.1:18333"
    s3_bucket: str = "ems-artifacts"
    s3_region: str = "us-east-1"
    s3_access_key: str = Field(
        default=LOCAL_S3_ACCESS_KEY, validation_alias=AliasChoices("EMS_S3_ACCESS_KEY", "AWS_ACCESS_KEY_ID")
    )
    s3_secret_key: str = Field(
        default=LOCAL_S3_SECRET_KEY,
        validation_alias=AliasChoices("EMS_S3_SECRET_KEY", "AWS_SECRET_ACCESS_KEY"),
    )
    # Which S3 server holds the artifacts, for `ems users create --s3` (stack/s3_identities.py): `local` = the
    # SeaweedFS `ems up` starts (identities file + restart), `minio` = MinIO's admin API (the compose stack).
    s3_server: Literal["local", "minio"] = "local"
    pg_user_os: str = Field(default="nobody", description="OS user that runs the local Postgres when root")
    # TimescaleDB retention of raw readings, weather and feature rows (a Postgres interval, applied by
    # `ems migrate`); the demo data reaches back to 2002, so the local default is long.
    raw_retention: str = Field(default="30 years", description="drop raw and feature rows older than this")
    # Preload TimescaleDB in the local Postgres (stack/timescale.py, `make timescaledb`): auto = when its
    # library is installed in that Postgres, on = required (error if absent), off = never (plain schema).
    pg_timescaledb: Literal["auto", "on", "off"] = "auto"
    # `ems up --auth`: MLflow's basic-auth app (stack/auth.py) and a Redis that refuses clients without an ACL
    # user (stack/redis_acl.py); None keeps what the local stack ran last.
    mlflow_auth: bool | None = None
    # Redis ACL user this process connects as; unset = the Feast yaml's connection_string (`username=`,
    # `password=`: the operator's). `ems serve` under `ems up --with-api` gets the service user's.
    redis_username: str | None = None
    redis_password: str | None = None
    # The read-only ACL user the local stack creates for the HTTP service (stack/redis_acl.py).
    redis_service_username: str = "ems-service"
    redis_service_password: str = LOCAL_REDIS_SERVICE_PASSWORD
    mlflow_auth_database: str = Field(default="mlflow_auth", description="users and permissions of the auth app")
    mlflow_admin_username: str = Field(
        default="admin", validation_alias=AliasChoices("EMS_MLFLOW_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_USERNAME")
    )
    mlflow_admin_password: str = Field(
        default=LOCAL_MLFLOW_ADMIN_PASSWORD,
        validation_alias=AliasChoices("EMS_MLFLOW_ADMIN_PASSWORD", "MLFLOW_AUTH_ADMIN_PASSWORD"),
    )

    # The AI Hub API (`ems serve`): bearer JWTs verified against this JWKS (an OIDC provider's
    # `.../protocol/openid-connect/certs`); unset = auth off, allowed on loopback only.
    api_jwks_url: str | None = None
    api_audience: str | None = None
    api_issuer: str | None = None
    api_host: str = "127.0.0.1"
    api_port: int = 8003
    api_workers: int = Field(default=2, description="worker processes `ems up --with-api` starts")
    api_max_body_bytes: int = Field(default=10_000_000, description="larger requests get 413")
    api_rate_per_second: float = Field(default=200.0, description="per caller (token) and worker; more get 429")
    api_rate_burst: int = 400
    api_max_jobs: int = Field(default=2, description="trainings and exports a tenant may have queued or running")
    api_model_ttl_seconds: float = Field(default=30.0, description="a promotion serves within this many seconds")
    # The pipelines' scheduler and UI (Dagster, `ems up --with-scheduler`; pipelines/definitions.py).
    scheduler_host: str = "127.0.0.1"
    scheduler_port: int = 15070
    environment: str = Field(default="local", description="reported by the API's /health")

    @field_validator("pg_timescaledb", mode="before")
    @classmethod
    def _lower(cls, value):
        return value.strip().lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _mlflow_address(self) -> Settings:
        if not self.mlflow_tracking_uri:
            mlflow_cfg = (self.feast_config.get("mlflow") or {}) if self.feast_yaml.is_file() else {}
            self.mlflow_tracking_uri = str(mlflow_cfg.get("tracking_uri") or LOCAL_MLFLOW)
        return self

    @cached_property
    def feast_config(self) -> dict:
        return read_feast_yaml(self.feast_yaml)

    @cached_property
    def postgres(self) -> PostgresAddress:
        """The database Feast's offline store uses; ingest and the schema live there too."""
        cfg = self.feast_config.get("offline_store") or {}
        if cfg.get("type") not in POSTGRES_OFFLINE_STORES:
            raise SettingsError(f"{self.feast_yaml}: offline_store.type must be one of "
                                f"{', '.join(POSTGRES_OFFLINE_STORES)}, not {cfg.get('type')!r}")
        return PostgresAddress(
            host=str(cfg.get("host", "localhost")),
            port=int(cfg.get("port", 5432)),
            database=str(cfg["database"]),
            user=str(cfg["user"]),
            password=str(cfg.get("password", "")),
            sslmode=str(cfg.get("sslmode", "disable")),
        )

    @cached_property
    def redis_connection_string(self) -> str:
        """The Feast yaml's online connection string with EMS_REDIS_USERNAME / EMS_REDIS_PASSWORD, when set,
        as its credentials (warehouse/store.py gives Feast this one)."""
        cfg = self.feast_config.get("online_store") or {}
        if cfg.get("type") != "redis":
            raise SettingsError(f"{self.feast_yaml}: online_store.type must be 'redis'")
        return with_redis_credentials(str(cfg.get("connection_string", "localhost:6379")),
                                      self.redis_username, self.redis_password)

    @cached_property
    def redis(self) -> RedisAddress:
        cfg = self.feast_config.get("online_store") or {}
        return parse_redis_connection_string(self.redis_connection_string, str(cfg.get("redis_type", "redis")))

    @property
    def s3_port(self) -> int:
        return urlsplit(self.s3_endpoint_url).port or 80

    @property
    def mlflow_port(self) -> int:
        return urlsplit(self.mlflow_tracking_uri).port or 80

    @property
    def mlflow_backend_uri(self) -> str:
        return self.postgres.sqlalchemy_url(self.mlflow_database)

    @property
    def mlflow_artifacts_destination(self) -> str:
        return f"s3://{self.s3_bucket}/mlflow"

    def s3_client_kwargs(self) -> dict:
        """boto3 client arguments: explicit endpoint, region and path-style addressing."""
        from botocore.config import Config

        return {
            "endpoint_url": self.s3_endpoint_url,
            "region_name": self.s3_region,
            "aws_access_key_id": self.s3_access_key,
            "aws_secret_access_key": self.s3_secret_key,
            "config": Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
        }

    def check_credentials(self) -> None:
        """Refuse the throwaway local credentials for a service that is not on loopback."""
        if not is_loopback(urlsplit(self.s3_endpoint_url).hostname) and (
            self.s3_access_key == LOCAL_S3_ACCESS_KEY or self.s3_secret_key == LOCAL_S3_SECRET_KEY
        ):
            raise SettingsError(
                f"S3 endpoint {self.s3_endpoint_url} is not local: set EMS_S3_ACCESS_KEY and "
                "EMS_S3_SECRET_KEY (the built-in values are for the local stack only)"
            )
        if not is_loopback(self.redis.host) and self.redis.password in (LOCAL_REDIS_PASSWORD,
                                                                        LOCAL_REDIS_SERVICE_PASSWORD):
            raise SettingsError(
                f"Redis at {self.redis.host}:{self.redis.port} is not local: set EMS_REDIS_PASSWORD (or the "
                "password= of the Feast yaml's connection_string); the built-in value is for the local stack only"
            )
        if (self.mlflow_auth and not is_loopback(urlsplit(self.mlflow_tracking_uri).hostname)
                and self.mlflow_admin_password == LOCAL_MLFLOW_ADMIN_PASSWORD):
            raise SettingsError(
                f"MLflow at {self.mlflow_tracking_uri} is not local: set EMS_MLFLOW_ADMIN_PASSWORD (or "
                "MLFLOW_AUTH_ADMIN_PASSWORD) for its admin (the built-in value is for the local stack only)"
            )

    def service_env(self) -> dict[str, str]:
        """Environment for MLflow (server and clients) so that artifacts reach our S3."""
        return {
            "MLFLOW_TRACKING_URI": self.mlflow_tracking_uri,
            "MLFLOW_S3_ENDPOINT_URL": self.s3_endpoint_url,
            "MLFLOW_BOTO_CLIENT_ADDRESSING_STYLE": "path",
            "AWS_ACCESS_KEY_ID": self.s3_access_key,
            "AWS_SECRET_ACCESS_KEY": self.s3_secret_key,
            "AWS_DEFAULT_REGION": self.s3_region,
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        }


def is_loopback(host: str | None) -> bool:
    """True for localhost and any address in 127.0.0.0/8 or ::1 (no name lookups)."""
    if host in LOOPBACK:
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False
