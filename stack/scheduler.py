"""The pipelines' scheduler and UI on the local stack: `dagster dev` over the code location
`pipelines.definitions` (webserver + daemon + code server, one process group), started by
`ems up --with-scheduler` after the services the pipelines call, stopped by `ems down`. Run history and
schedule state live in DAGSTER_HOME = `<EMS_HOME>/scheduler` (SQLite); the compose stack runs the same."""

from __future__ import annotations

import urllib.request

from stack.services import VENV_BIN, Service

CODE_LOCATION = "pipelines.definitions"


class Scheduler(Service):
    name = "scheduler"
    kill_group = True  # dagster dev's webserver, daemon and code server are its children
    start_timeout = 120.0

    @property
    def host(self) -> str:
        return self.settings.scheduler_host

    @property
    def port(self) -> int:
        return self.settings.scheduler_port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}  (Dagster UI: runs, schedules)"

    @property
    def marker(self) -> str:
        return f"{CODE_LOCATION} -h {self.host} -p {self.port}"

    def env(self) -> dict[str, str]:
        return {"DAGSTER_HOME": str(self.dir)}

    def command(self) -> list[str]:
        return [str(VENV_BIN / "dagster"), "dev", "-m", CODE_LOCATION, "-h", self.host, "-p", str(self.port)]

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.host}:{self.port}/server_info", timeout=5) as r:
                return r.status == 200
        except OSError:
            return False
