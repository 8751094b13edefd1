"""Champion/challenger retraining of one tenant's forecaster (the daily pipeline's work, no Dagster here).

- The challenger is trained by the registry's own `train_forecast.train` on the latest data with the
  last `window_days` of every asset held out (its boosters never see them); it is registered in staging.
- Champion (the serving version) and challenger forecast the same held-out rows (the challenger's
  holdout: one origin a day, horizons 1..24) as the SDK would have served them (intervals recalibrated
  on earlier origins' residuals, evaluation/backtest.predict_recalibrated).
- Promote only if the challenger's day-ahead MAE is below the champion's by at least `margin` (a share:
  0.02 = 2 % lower) and its p10-p90 coverage is inside [coverage_min, coverage_max] and it validated
  better than seasonal naive at training; otherwise keep the champion. Either way the decision, its
  reason and the numbers are recorded as tags on the challenger version (`ems.challenger.*`).
- Idempotent: the challenger is tagged with the data it saw (the tenant's newest feature hour); a rerun
  for the same data reuses that version (and its decision, if one was made) instead of training again.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from core.errors import InvalidArgumentError

logger = logging.getLogger(__name__)

TAG_DATA_END = "ems.challenger.data_end"
TAG_DECISION = "ems.challenger.decision"
TAG_REASON = "ems.challenger.reason"
TAG_SCORES = "ems.challenger.scores"
TAG_CHAMPION = "ems.challenger.champion"
PROMOTED, KEPT = "promoted", "kept_champion"
DAY_AHEAD = 24


@dataclass(frozen=True)
class Rule:
    margin: float = 0.02
    coverage_min: float = 0.75
    coverage_max: float = 0.85

    def check(self) -> Rule:
        if not 0.0 <= self.margin < 1.0:
            raise InvalidArgumentError(f"margin={self.margin!r} is out of range 0..1 (a share of the champion's MAE)")
        if not 0.0 <= self.coverage_min < self.coverage_max <= 1.0:
            raise InvalidArgumentError(f"coverage band {self.coverage_min!r}..{self.coverage_max!r} must satisfy "
                                       "0 <= min < max <= 1")
        return self


@dataclass
class Decision:
    tenant: str
    champion: str | None
    challenger: str
    decision: str  # PROMOTED | KEPT
    reason: str
    scores: dict[str, dict[str, float]] = field(default_factory=dict)  # model role -> pooled scores
    per_asset: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    reused: bool = False  # decided by an earlier run for the same data

    def as_dict(self) -> dict:
        return asdict(self)


def scores(rows: pd.DataFrame, pred: pd.DataFrame) -> dict[str, float]:
    """Day-ahead MAE of the point forecast and share of actuals inside [p10, p90], on `rows`."""
    y = rows["y"].to_numpy(dtype=float)
    ok = ~np.isnan(y) & ~np.isnan(pred["point"].to_numpy(dtype=float))
    inside = (pred["p10"].to_numpy() <= y) & (y <= pred["p90"].to_numpy())
    return {"mae": float(np.abs(y - pred["point"].to_numpy())[ok].mean()) if ok.any() else float("nan"),
            "coverage": float(inside[ok].mean()) if ok.any() else float("nan"), "rows": int(ok.sum())}


def decide(champion: dict[str, float] | None, challenger: dict[str, float], rule: Rule,
           challenger_doubtful: bool = False) -> tuple[str, str]:
    """(decision, reason) by the rule in the module docstring; a refusal names every condition missed."""
    cov, mae = challenger["coverage"], challenger["mae"]
    missed = []
    if challenger_doubtful:
        missed.append("the challenger validated worse than seasonal naive at training")
    if not rule.coverage_min <= cov <= rule.coverage_max:
        missed.append(f"challenger p10-p90 coverage {cov:.3f} is outside {rule.coverage_min:.2f}.."
                      f"{rule.coverage_max:.2f}")
    if champion is not None and not mae <= champion["mae"] * (1 - rule.margin):
        missed.append(f"challenger day-ahead MAE {mae:.4g} is not {rule.margin:.0%} below the champion's "
                      f"{champion['mae']:.4g} ({mae / champion['mae'] - 1:+.1%})")
    if missed:
        return KEPT, "; ".join(missed) + f" (challenger MAE {mae:.4g}, coverage {cov:.3f})"
    if champion is None:
        return PROMOTED, f"no champion; challenger day-ahead MAE {mae:.4g}, coverage {cov:.3f}"
    return PROMOTED, (f"challenger day-ahead MAE {mae:.4g} vs champion {champion['mae']:.4g} "
                      f"({mae / champion['mae'] - 1:+.1%}, margin {rule.margin:.0%}), coverage {cov:.3f}")


def data_end(settings, tenant: str) -> str:
    """The tenant's newest feature hour (what a challenger trained now would see), ISO 8601."""
    from warehouse.point_in_time import tenant_assets
    from warehouse.store import latest_feature_time

    ends = [t for t in latest_feature_time(settings, tenant, tenant_assets(settings, tenant, None)).values() if t]
    if not ends:
        raise InvalidArgumentError(f"tenant {tenant!r} has no feature rows yet: run `ems refresh` first")
    return max(ends).isoformat()


def _versions(mlflow_client, tenant: str, name: str):
    from registry import lifecycle

    return [m for m in lifecycle.list_models(mlflow_client, tenant, metrics=False) if m.name == name]


def train_challenger(ems, tenant: str, name: str, split, boosting) -> dict:
    """The challenger for the tenant's current data: a version trained earlier for the same data is
    reused; else a new staging version is trained and tagged with that data."""
    from registry import lifecycle, train_forecast

    end = data_end(ems.settings, tenant)
    versions = _versions(ems.mlflow, tenant, name)
    champion = next((m for m in versions if m.serving), None)
    service = (champion.tags.get("feast.feature_service") or champion.tags.get("feature_service")) if champion \
        else None
    done = next((m for m in versions if m.tags.get(TAG_DATA_END) == end), None)
    if done is not None:
        logger.info("%s: challenger %s already trained for data up to %s", tenant, done.id, end)
        # Registered by an attempt that MLflow's outage cut off before its stage was set: finish that.
        done = lifecycle.complete_registration(ems.mlflow, done.id)
        if done.serving and TAG_CHAMPION in done.tags:  # promoted by an attempt cut off before its decision tag
            champion_id = done.tags[TAG_CHAMPION] or None
        else:
            champion_id = champion.id if champion else None
        return {"tenant": tenant, "champion": champion_id, "challenger": done.id,
                "service": service or done.tags.get("feast.feature_service"), "data_end": end, "reused": True}
    kwargs = {"service": service} if service else {}
    # The data tag goes on the version as it is created (one call): a version registered by an attempt that an
    # outage cut off is found and reused by the retry, never left behind as an untagged orphan.
    result = train_forecast.train(ems.settings, ems.store, tenant, name=name, split=split, boosting=boosting,
                                  version_tags={TAG_DATA_END: end}, **kwargs)
    ref = lifecycle.show(ems.mlflow, result.model_id)
    return {"tenant": tenant, "champion": champion.id if champion else None, "challenger": result.model_id,
            "service": ref.tags.get("feast.feature_service"), "data_end": end, "reused": False}


def backtest(ems, trained: dict, split) -> dict:
    """Champion and challenger on the same held-out day-ahead rows: pooled and per-asset scores."""
    from evaluation.backtest import predict_recalibrated
    from registry import training_data
    from registry.design import HORIZON

    plan = training_data.plan(ems.settings, ems.store, trained["tenant"], None, trained["service"], split)
    ts = training_data.build(ems.store, plan)
    rows = ts.holdout[ts.holdout[HORIZON] <= DAY_AHEAD]
    window = [rows["issue_time"].min().isoformat(), rows["target_time"].max().isoformat()]
    out = {"rows": int(len(rows)), "window": window, "scores": {}, "per_asset": {}}
    for role in ("champion", "challenger"):
        if trained[role] is None:
            continue
        model = ems.client.models.version(trained[role]).python_model
        missing = sorted(set(model.features) - set(rows.columns))
        if missing:
            raise InvalidArgumentError(f"{trained[role]} reads inputs the {trained['service']} rows lack: "
                                       f"{', '.join(missing)}")
        pred = predict_recalibrated(model, rows)
        out["scores"][role] = scores(rows, pred)
        out["per_asset"][role] = {a: scores(rows[rows["asset_id"] == a], pred[rows["asset_id"] == a])
                                  for a in sorted(rows["asset_id"].unique())}
    return out


def conclude(ems, trained: dict, tested: dict, rule: Rule) -> Decision:
    """Decide, record the decision on the challenger version, and promote it when it wins."""
    from registry import lifecycle

    tenant, challenger = trained["tenant"], trained["challenger"]
    info = lifecycle.show(ems.mlflow, challenger)
    if TAG_DECISION in info.tags:  # decided by an earlier run for the same data
        return Decision(tenant, info.tags.get(TAG_CHAMPION) or None, challenger, info.tags[TAG_DECISION],
                        info.tags.get(TAG_REASON, ""), json.loads(info.tags.get(TAG_SCORES, "{}")), reused=True)
    decision, reason = decide(tested["scores"].get("champion"), tested["scores"]["challenger"], rule.check(),
                              info.doubtful)
    name = f"{tenant}.{info.name}"
    for key, value in ((TAG_CHAMPION, trained["champion"] or ""), (TAG_SCORES, json.dumps(tested["scores"])),
                       (TAG_REASON, reason[:4000])):
        ems.mlflow.set_model_version_tag(name, str(info.version), key, value)
    if decision == PROMOTED:  # idempotent: a retry after an outage that cut off an earlier promotion completes it
        lifecycle.ensure_production(ems.mlflow, challenger, reason=f"daily champion/challenger: {reason}"[:200],
                                    previous=trained["champion"])
    # Written last: a run that failed before this point decides again on its rerun.
    ems.mlflow.set_model_version_tag(name, str(info.version), TAG_DECISION, decision)
    logger.info("%s: %s %s (%s)", tenant, challenger, decision, reason)
    return Decision(tenant, trained["champion"], challenger, decision, reason, tested["scores"], tested["per_asset"])
