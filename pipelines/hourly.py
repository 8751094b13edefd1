"""The hourly pipeline: refresh -> materialize -> score the last hours of every asset with each
tenant's production anomaly detectors -> record the anomalous hours as alerts (warehouse/alerts.py);
after materialize, also the live accuracy of the logged forecasts (inference/accuracy.py) into MLflow.

Idempotent: refresh and materialize take what is queued (nothing queued, nothing done); scoring reads
the last `lookback_hours` complete hours of each asset (so late data of those hours is scored on the
next run), and recording an hour an alert already covers changes nothing. Each step retries when a
service is unavailable (pipelines/transient.py) and is all-or-nothing where it writes."""
# No `from __future__ import annotations`: Dagster resolves the ops' Config annotations when decorating.


import math
from dataclasses import asdict

import dagster as dg

from core.names import ANOMALY_METHODS
from pipelines.transient import RETRY, step

MAX_LOOKBACK_HOURS = 168


class HourlyConfig(dg.Config):
    tenants: list[str] = []  # empty: every tenant with a production anomaly detector
    lookback_hours: int = 3  # hours scored per asset, ending at its latest complete hour
    sensitivity: int = 3  # registry/severity.py: 1 flags only critical scores, 5 everything above 2.0


@dg.op(retry_policy=RETRY, required_resource_keys={"ems"})
def refresh(context: dg.OpExecutionContext) -> dict:
    from warehouse.refresh import refresh as run

    report = step(context, "refresh", run, context.resources.ems.settings)
    context.log.info(f"refresh: {report.rows or 'nothing queued'}")
    return asdict(report)


@dg.op(retry_policy=RETRY, required_resource_keys={"ems"})
def materialize(context: dg.OpExecutionContext, refreshed: dict) -> dict:
    from warehouse.store import materialize as run

    ems = context.resources.ems
    report = step(context, "materialize", run, ems.settings, store=ems.store)
    context.log.info(f"materialize: {report.written} ({report.queued} queued)")
    return {"written": report.written, "full": report.full, "queued": report.queued, "end": report.end}


def detectors(mlflow_client, tenants: list[str]) -> dict[str, list[str]]:
    """{tenant: [method, ...]} of the production anomaly detectors (`anomaly_{method}` serving)."""
    from registry import lifecycle

    found: dict[str, list[str]] = {}
    for m in lifecycle.list_models(mlflow_client, None, metrics=False):
        if m.serving and m.model_type == "anomaly" and m.name.startswith("anomaly_") and \
                m.name.removeprefix("anomaly_") in ANOMALY_METHODS and (not tenants or m.tenant in tenants):
            found.setdefault(m.tenant, []).append(m.name.removeprefix("anomaly_"))
    return {t: sorted(ms) for t, ms in sorted(found.items())}


def score_tenants(ems, config: HourlyConfig) -> list[dict]:
    """Each (tenant, asset, detector): the model that scored, the hours scored and the anomalous ones."""
    from core.errors import InvalidArgumentError
    from core.names import check_tenant_id
    from warehouse.point_in_time import tenant_assets

    for t in config.tenants:
        check_tenant_id(t)
    if not 1 <= config.lookback_hours <= MAX_LOOKBACK_HOURS:
        raise InvalidArgumentError(f"lookback_hours={config.lookback_hours} is out of range 1..{MAX_LOOKBACK_HOURS}")
    found = detectors(ems.mlflow, config.tenants)
    out = []
    for tenant, methods in found.items():
        for asset in tenant_assets(ems.settings, tenant, None):
            for method in methods:
                result = ems.client.detect_anomalies(tenant, asset, method=method, sensitivity=config.sensitivity,
                                                     lookback_hours=config.lookback_hours)
                f = result.frame
                hits = f[f["is_anomaly"]]
                out.append({"tenant": tenant, "asset": asset, "detector": f"anomaly_{method}",
                            "model_id": result.model_id, "hours": len(f),
                            "scored_to": f["timestamp"].max().isoformat() if len(f) else None,
                            "anomalies": [{"hour": r.timestamp.to_pydatetime(), "score": float(r.score),
                                           "severity": r.severity, "explanation": r.explanation}
                                          for r in hits.itertuples() if not math.isnan(r.score)]})
    return out


@dg.op(retry_policy=RETRY, required_resource_keys={"ems"})
def score(context: dg.OpExecutionContext, config: HourlyConfig, materialized: dict) -> list[dict]:
    scored = step(context, "score", score_tenants, context.resources.ems, config)
    context.log.info(f"scored {len(scored)} (tenant, asset, detector) series, "
                     f"{sum(len(s['anomalies']) for s in scored)} anomalous hours")
    return scored


def record_all(settings, scored: list[dict]) -> dict:
    from warehouse import alerts

    total = alerts.RecordReport()
    for s in scored:
        hours = [alerts.AnomalousHour(**a) for a in s["anomalies"]]
        total.add(alerts.record(settings, s["tenant"], s["asset"], s["detector"], s["model_id"], hours))
    return asdict(total)


@dg.op(retry_policy=RETRY, required_resource_keys={"ems"})
def record(context: dg.OpExecutionContext, scored: list[dict]) -> dict:
    report = step(context, "record", record_all, context.resources.ems.settings, scored)
    context.log.info(f"alerts: {report}")
    return report


def accuracy_all(ems, days: int) -> dict:
    """Live accuracy of every tenant's logged forecasts over the last `days` days, logged to MLflow."""
    from inference.accuracy import log_to_mlflow, report
    from warehouse import forecast_log

    out = {}
    for tenant in forecast_log.tenants(ems.settings):
        table, _ = report(ems.settings, tenant, days=days)
        logged = log_to_mlflow(ems.mlflow, table) if len(table) else []
        pooled = table[(table["asset_id"] == "(all)") & (table["bucket"] == "all")]
        out[tenant] = {"models": logged, "pooled": pooled.drop(columns=["asset_id", "bucket"]).to_dict("records")}
    return out


class AccuracyConfig(dg.Config):
    days: int = 7  # live accuracy over the target hours of the last N days with actuals


@dg.op(retry_policy=RETRY, required_resource_keys={"ems"})
def accuracy(context: dg.OpExecutionContext, config: AccuracyConfig, materialized: dict) -> dict:
    out = step(context, "accuracy", accuracy_all, context.resources.ems, config.days)
    context.log.info(f"live accuracy: {out}")
    return out


@dg.job(description="refresh -> materialize -> anomaly scoring of the last hours -> alert records; "
                    "live accuracy of logged forecasts")
def hourly():
    materialized = materialize(refresh())
    record(score(materialized))
    accuracy(materialized)
