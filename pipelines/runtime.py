"""The one Dagster resource every op uses: the project's settings and, built on first use, the Feast
store, the SDK client and the MLflow client. `ems pipelines run` passes one built from its own
settings; the scheduler's code location builds it from the environment (pipelines/definitions.py)."""

from __future__ import annotations

from functools import cached_property

from core.settings import Settings


class Runtime:
    def __init__(self, settings: Settings | None = None, store=None):
        self.settings = settings or Settings()
        if store is not None:
            self.__dict__["store"] = store

    @cached_property
    def store(self):
        from warehouse.store import get_store

        return get_store(self.settings)

    @cached_property
    def client(self):
        from inference.client import Client

        # No model TTL: every run resolves the production versions again (a promotion counts at once).
        return Client(self.settings, self.store, model_ttl_seconds=0, latest_ttl_seconds=0)

    @cached_property
    def mlflow(self):
        from registry import lifecycle

        # A registry that does not answer fails a call in seconds (not after MLflow's minutes of retries), so
        # the step's RetryPolicy (pipelines/transient.py) does the waiting, with its backoff and its log lines.
        lifecycle.fail_fast(15)
        return lifecycle.client(self.settings.mlflow_tracking_uri)
