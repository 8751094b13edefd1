"""The Dagster code location the scheduler and the UI load (`dagster dev -m pipelines.definitions`, or
`dagster-daemon run` + `dagster-webserver` with the same module): the three jobs, the hourly schedule
(five past every hour) and the daily one (02:30 UTC). The `ems` resource is built from the environment
(EMS_*, MLFLOW_TRACKING_URI, the Feast yaml), like every other entry point of the project."""

import dagster as dg

from pipelines.backfill import backfill
from pipelines.daily import daily
from pipelines.hourly import hourly


@dg.resource(description="project settings, Feast store, SDK and MLflow clients (pipelines/runtime.py)")
def ems_runtime(_init_context):
    from pipelines.runtime import Runtime

    return Runtime()


defs = dg.Definitions(
    jobs=[hourly, daily, backfill],
    schedules=[dg.ScheduleDefinition(job=hourly, cron_schedule="5 * * * *", execution_timezone="UTC"),
               dg.ScheduleDefinition(job=daily, cron_schedule="30 2 * * *", execution_timezone="UTC")],
    resources={"ems": ems_runtime},
)
