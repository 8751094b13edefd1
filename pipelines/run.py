"""`ems pipelines run NAME`: one pipeline executed in this process by Dagster's in-process executor
(an ephemeral instance: no server, no daemon, nothing written outside the project's own stores), and
what it did as plain values: status, wall time, every step with its attempts, the steps' outputs and
the error of a failed step."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import dagster as dg

from core.errors import EmsError
from pipelines.runtime import Runtime


class PipelineError(EmsError):
    """A pipeline run failed: names the step and its error."""


@dataclass
class PipelineRun:
    name: str
    run_id: str
    success: bool
    seconds: float
    steps: dict[str, dict] = field(default_factory=dict)  # step -> {status, attempts, seconds}
    outputs: dict[str, object] = field(default_factory=dict)
    error: str | None = None

    def as_dict(self) -> dict:
        return {"pipeline": self.name, "run_id": self.run_id, "success": self.success,
                "seconds": round(self.seconds, 3), "steps": self.steps, "outputs": self.outputs, "error": self.error}


def jobs() -> dict[str, dg.JobDefinition]:
    from pipelines.backfill import backfill
    from pipelines.daily import daily
    from pipelines.hourly import hourly

    return {"hourly": hourly, "daily": daily, "backfill": backfill}


def execute(name: str, runtime: Runtime, config: dict | None = None, raise_on_error: bool = True,
            log_level: str = "INFO") -> PipelineRun:
    """Run pipeline `name` in process with `config` ({op name: {field: value}}); a failed run raises
    PipelineError naming its step (or, with raise_on_error=False, is returned with success False).
    `log_level`: of Dagster's console log of the run's events (stderr); CRITICAL silences it."""
    from core.errors import InvalidArgumentError

    known = jobs()
    if name not in known:
        raise InvalidArgumentError(f"pipeline {name!r} is not one of {', '.join(known)}")
    job = known[name]
    run_config = {"ops": {op: {"config": values} for op, values in (config or {}).items()},
                  "loggers": {"console": {"config": {"log_level": log_level}}}}
    t0 = time.perf_counter()
    with dg.DagsterInstance.ephemeral() as instance:  # in memory: run history lives in the scheduler's instance
        result = job.execute_in_process(run_config=run_config, resources={"ems": runtime}, raise_on_error=False,
                                        instance=instance)
        seconds = time.perf_counter() - t0
        logs = instance.all_logs(result.run_id)
    run = PipelineRun(name, result.run_id, result.success, seconds)
    started: dict[str, float] = {}
    for entry in logs:
        event, key = entry.dagster_event, entry.step_key
        if event is None or not key:
            continue
        info = run.steps.setdefault(key, {"status": "started", "attempts": 0, "seconds": 0.0})
        kind = event.event_type_value
        if kind in ("STEP_START", "STEP_RESTARTED"):
            info["attempts"] += 1
            started[key] = entry.timestamp
        elif kind == "STEP_UP_FOR_RETRY":
            info["status"] = "retrying"
        elif kind in ("STEP_SUCCESS", "STEP_FAILURE"):
            info["status"] = "succeeded" if kind == "STEP_SUCCESS" else "failed"
            info["seconds"] = round(entry.timestamp - started.get(key, entry.timestamp), 3)
            if kind == "STEP_FAILURE" and run.error is None:
                data = event.step_failure_data
                run.error = f"step {key}: {data.user_failure_data.description if data.user_failure_data else ''}" \
                    if data and data.user_failure_data and data.user_failure_data.description else \
                    f"step {key}: {data.error.message.strip() if data and data.error else 'failed'}"
    for key, info in run.steps.items():
        if info["status"] == "succeeded":
            run.outputs[key] = result.output_for_node(key)
    if not run.success and raise_on_error:
        raise PipelineError(f"pipeline {name} failed at {run.error or 'an unknown step'}")
    return run
