"""The daily pipeline: per tenant with a production forecaster, check drift and freshness (alert
records, inference/drift.py), train a challenger on the latest data, backtest champion and challenger
on the same recent window, promote only a clear winner (pipelines/challenger.py); the open drift
alerts are recorded with the decision as the reasons the retraining answered. Separate steps, so a
retry after a transient failure in the backtest or the decision does not train again (and a rerun
for the same data reuses the trained challenger)."""
# No `from __future__ import annotations`: Dagster resolves the ops' Config annotations when decorating.


import dagster as dg

from core.names import DEFAULT_FORECAST_NAME
from pipelines.transient import RETRY, step


class DailyConfig(dg.Config):
    tenants: list[str] = []  # empty: every tenant whose `name` has a serving version
    name: str = DEFAULT_FORECAST_NAME
    window_days: int = 7  # the backtest window: the challenger's held-out last days
    history_days: int = 365  # the challenger's training window
    num_boost_round: int = 300  # registry/train_forecast.BoosterConfig
    margin: float = 0.02  # the challenger's day-ahead MAE must be this share below the champion's
    coverage_min: float = 0.75
    coverage_max: float = 0.85
    psi_threshold: float = 0.25  # inference/drift.py Thresholds
    recent_days: int = 7  # drift: the last days compared with the champion's training window

    def split(self):
        from registry.training_data import SplitConfig

        return SplitConfig(history_days=self.history_days, holdout_days=self.window_days).check()

    def boosting(self):
        from registry.train_forecast import BoosterConfig

        return BoosterConfig(num_boost_round=self.num_boost_round)

    def rule(self):
        from pipelines.challenger import Rule

        return Rule(self.margin, self.coverage_min, self.coverage_max).check()


def _tenants(ems, config: DailyConfig) -> list[str]:
    from core.names import check_model_name, check_tenant_id
    from registry import lifecycle

    check_model_name(config.name)
    for t in config.tenants:
        check_tenant_id(t)
    config.split(), config.rule()  # bad values fail before anything is trained
    serving = sorted({m.tenant for m in lifecycle.list_models(ems.mlflow, None, metrics=False)
                      if m.serving and m.name == config.name})
    return [t for t in serving if not config.tenants or t in config.tenants]


def _drift_all(ems, config: DailyConfig) -> dict[str, dict]:
    from inference.drift import Thresholds, check
    from warehouse.monitor import open_alerts

    out = {}
    for tenant in _tenants(ems, config):
        report = check(ems, tenant, recent_days=config.recent_days, thresholds=Thresholds(psi=config.psi_threshold))
        out[tenant] = {"recorded": report.recorded, "open": [
            f"{a.kind} {a.asset_id or '-'} {a.subject} {a.value:.3g} > {a.threshold:.3g}"
            for a in open_alerts(ems.settings, tenant) if a.kind in ("psi", "nulls")]}
    return out


@dg.op(retry_policy=RETRY, required_resource_keys={"ems"})
def drift(context: dg.OpExecutionContext, config: DailyConfig) -> dict:
    found = step(context, "drift", _drift_all, context.resources.ems, config)
    context.log.info(f"drift: {found}")
    return found


def _train_all(ems, config: DailyConfig, drifted: dict) -> list[dict]:
    from pipelines.challenger import train_challenger

    return [{**train_challenger(ems, t, config.name, config.split(), config.boosting()),
             "triggers": drifted.get(t, {}).get("open", [])} for t in _tenants(ems, config)]


@dg.op(retry_policy=RETRY, required_resource_keys={"ems"})
def train_challengers(context: dg.OpExecutionContext, config: DailyConfig, drifted: dict) -> list[dict]:
    trained = step(context, "train challengers", _train_all, context.resources.ems, config, drifted)
    context.log.info(f"challengers: {[(t['tenant'], t['challenger'], t['reused']) for t in trained]}")
    return trained


@dg.op(retry_policy=RETRY, required_resource_keys={"ems"})
def backtest(context: dg.OpExecutionContext, config: DailyConfig, trained: list[dict]) -> list[dict]:
    from pipelines.challenger import backtest as run

    ems = context.resources.ems
    return [step(context, f"backtest {t['tenant']}", run, ems, t, config.split()) for t in trained]


@dg.op(retry_policy=RETRY, required_resource_keys={"ems"})
def decide(context: dg.OpExecutionContext, config: DailyConfig, trained: list[dict], tested: list[dict]) -> list[dict]:
    from pipelines.challenger import conclude

    ems = context.resources.ems
    out = []
    for t, b in zip(trained, tested, strict=True):
        d = step(context, f"decide {t['tenant']}", conclude, ems, t, b, config.rule())
        context.log.info(f"{d.tenant}: {d.challenger} {d.decision}: {d.reason}")
        out.append({**d.as_dict(), "triggers": t.get("triggers", [])})
    return out


@dg.job(description="drift check -> challenger training -> champion/challenger backtest -> promote a clear winner")
def daily():
    trained = train_challengers(drift())
    decide(trained, backtest(trained))
