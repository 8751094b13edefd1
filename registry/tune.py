"""Model search for the forecaster (`ems tune forecast`): Optuna TPE over the boosters' capacity and
regularisation and the design (feature service with/without weather, with/without site peers), scored
on rolling-origin validation windows carved from the training part only. Every trial is a nested MLflow
run; the parent run holds the leaderboard (with a ridge regression and the seasonal-naive forecasts on
the same validation rows) and the optimisation history. The best trial is refitted on the whole
training part through `train_forecast.train` (the `ems train forecast` path), scored once on the
held-out days and registered in staging with the search's run id in its tags."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime

import numpy as np
import pandas as pd

from core.errors import InvalidRangeError
from core.names import DEFAULT_FORECAST_NAME, DEFAULT_FORECAST_SERVICE, check_model_name
from core.settings import Settings
from registry import evaluation, tracking, training_data
from registry.design import HORIZON, baselines
from registry.forecaster import ANCHOR, ASSET, QUANTILE_OUTPUTS, anchor_matrix, prepare
from registry.train_forecast import BoosterConfig, fit, prefixed, train
from warehouse.store import service_uses_peers

logger = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
# Candidate designs (feature services): without weather, with the site's weather, with weather and the site
# peers' load. A design whose extra inputs the tenant does not have (no weather site, no site peer) is left out.
DESIGNS = ("forecast_load", "forecast_weather", "forecast_regional")
TAG_SEARCH = "tune_search_id"  # on the registered version and every run of a search: the parent run id
TAG_TRIAL = "tune_trial"
DAY_AHEAD = evaluation.DAY_AHEAD
LEADERBOARD = "leaderboard.json"
OBJECTIVE = "val_mase_168"  # pooled day-ahead MASE (scale: each asset's in-sample naive-168 MAE)


@dataclass(frozen=True)
class SearchConfig:
    trials: int = 30
    time_budget_s: float = 1800.0  # the search (training sets, baselines, trials); the refit comes on top
    windows: int = 3  # rolling-origin validation windows at the end of each asset's training part
    window_days: int = 7
    min_fit_days: int = 14  # training days needed before the first validation window
    seed: int = 0

    def check(self) -> SearchConfig:
        if not isinstance(self.trials, int) or not 1 <= self.trials <= 10_000:
            raise InvalidRangeError(f"trials={self.trials!r} is out of range 1..10000")
        if not isinstance(self.time_budget_s, int | float) or not 0 < self.time_budget_s <= 7 * 86400:
            raise InvalidRangeError(f"time_budget={self.time_budget_s!r} s is out of range (0, 604800] (7 days)")
        if not isinstance(self.windows, int) or not 1 <= self.windows <= 12:
            raise InvalidRangeError(f"windows={self.windows!r} is out of range 1..12")
        if not isinstance(self.window_days, int) or not 1 <= self.window_days <= 56:
            raise InvalidRangeError(f"window_days={self.window_days!r} is out of range 1..56")
        return self


@dataclass(frozen=True)
class Fold:
    """One validation window of one asset: forecasts issued in [start, end) are scored (day-ahead); the
    boosters of this window train on labels ending at or before `start`."""

    index: int
    asset_id: str
    start: pd.Timestamp
    end: pd.Timestamp


def carve(windows: list[training_data.AssetWindow], cfg: SearchConfig) -> list[Fold]:
    """`cfg.windows` consecutive validation windows of `cfg.window_days` per asset, the last ending where
    the asset's training labels end (its fit_end, before the held-out days): never inside the holdout."""
    span = pd.Timedelta(days=cfg.window_days)
    folds = []
    for w in windows:
        first = w.fit_end - cfg.windows * span
        have = (first - w.start) / pd.Timedelta(days=1)
        if have < cfg.min_fit_days:
            raise InvalidRangeError(
                f"asset {w.asset_id!r} has {max(have, 0):.1f} days of training history before its first validation "
                f"window ({first:%Y-%m-%d %H:%M} UTC); {cfg.windows} windows of {cfg.window_days} days need at "
                f"least {cfg.min_fit_days}: raise --history-days or lower the windows")
        folds += [Fold(k, w.asset_id, first + k * span, first + (k + 1) * span) for k in range(cfg.windows)]
    return folds


def fold_masks(train: pd.DataFrame, folds: list[Fold], k: int) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, validation rows) of window k. Training: labels ending at or before the window's start
    (gap-injected copies included). Validation: the clean (first) copy of each day-ahead row issued in the
    window."""
    mine = [f for f in folds if f.index == k]
    start = train["asset_id"].map({f.asset_id: f.start for f in mine})
    end = train["asset_id"].map({f.asset_id: f.end for f in mine})
    fit_rows = (train["target_time"] <= start).to_numpy()
    clean = ~train.duplicated(["asset_id", "issue_time", HORIZON], keep="first")
    val = ((train["issue_time"] >= start) & (train["issue_time"] < end) & (train[HORIZON] <= DAY_AHEAD)
           & clean).to_numpy()
    return fit_rows, val


@dataclass
class Entry:
    """A leaderboard row: a trial (LightGBM) or a baseline, scored on the same validation rows."""

    name: str
    kind: str  # lightgbm | ridge | seasonal_naive
    design: str | None
    params: dict
    metrics: dict[str, float]
    state: str = "complete"  # complete | pruned (worse than the median after a window) | out_of_time
    run_id: str | None = None


def leaderboard(entries: list[Entry]) -> list[dict]:
    """Complete entries ranked by the objective (lower is better), then the pruned ones; each row also shows
    its MAE relative to the best seasonal-naive baseline's (what the boosting buys)."""
    done = sorted((e for e in entries if e.state == "complete" and math.isfinite(e.metrics.get(OBJECTIVE, math.nan))),
                  key=lambda e: e.metrics[OBJECTIVE])
    naive = [e.metrics[OBJECTIVE] for e in done if e.kind == "seasonal_naive"]
    ref = min(naive) if naive else math.nan
    rest = [e for e in entries if e not in done]
    rows = []
    for rank, e in enumerate([*done, *rest], start=1):
        value = e.metrics.get(OBJECTIVE, math.nan)
        rows.append({"rank": rank if e in done else None, "name": e.name, "kind": e.kind, "design": e.design,
                     "state": e.state, **{k: v for k, v in e.metrics.items()},
                     "skill_vs_best_naive": 1 - value / ref if e in done and ref > 0 else None,
                     "params": e.params, "run_id": e.run_id})
    return rows


@dataclass
class SearchResult:
    search_id: str  # the parent MLflow run
    model_id: str
    leaderboard: list[dict]
    best: dict  # the best trial's design and parameters
    holdout: dict[str, dict[str, float]]  # day-ahead on the held-out days: tuned model, ridge, naive-24/168
    per_asset: dict[str, dict[str, float]]
    folds: list[dict]
    trials_done: int
    trials_pruned: int
    timings: dict[str, float] = field(default_factory=dict)
    skipped_designs: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict:
        """A JSON-ready copy (NaN and infinities as None)."""
        return finite(asdict(self))


def finite(doc):
    """`doc` with every non-finite float replaced by None (JSON has no NaN)."""
    if isinstance(doc, dict):
        return {k: finite(v) for k, v in doc.items()}
    if isinstance(doc, list | tuple):
        return [finite(v) for v in doc]
    if isinstance(doc, float | np.floating):
        return float(doc) if math.isfinite(doc) else None
    return doc


def _scores(rows: pd.DataFrame, point: np.ndarray, scales: dict) -> dict[str, float]:
    """Day-ahead scores of a point forecast on validation rows (MASE with each asset's naive scale, MAE,
    MAE relative to naive-24/168 on the same rows)."""
    s = evaluation.score(rows, pd.DataFrame({q: point for q in (*QUANTILE_OUTPUTS, "point")}, index=rows.index),
                         scales)
    return {"val_mase_168": s["mase_168"], "val_mae": s["mae"], "val_relmae_24": s["relmae_24"],
            "val_relmae_168": s["relmae_168"], "val_rows": s["rows"]}


def _with_baselines(ts: training_data.TrainingSet, rows: pd.DataFrame) -> pd.DataFrame:
    """Validation rows with the seasonal-naive forecasts (with fallbacks) the held-out rows carry."""
    rows = rows.copy()
    for asset, part in rows.groupby("asset_id", sort=False):
        for name, values in baselines(ts.series[asset], part["issue_time"], part[HORIZON]).items():
            rows.loc[part.index, name] = values
    return rows


def _ridge_design(ts: training_data.TrainingSet, frame: pd.DataFrame, assets: list[str]):
    """The boosters' design matrix (load inputs over the row level, log level) with the asset one-hot
    instead of a code, the level and the anchor: the ridge learns the same label (change from the anchor)."""
    X, lvl = prepare(frame, ts.features, assets)
    for i in range(len(assets)):
        X[f"asset_{i}"] = (X[ASSET] == i).astype(float) if ASSET in X.columns else 0.0
    X = X.drop(columns=[ASSET], errors="ignore")
    cols = [f for f in ANCHOR if f in ts.features]
    origin = anchor_matrix(frame[cols].to_numpy(dtype=float), cols, lvl) if cols else np.zeros(len(frame))
    return X, lvl, origin


def ridge_forecast(ts: training_data.TrainingSet, fit_rows: pd.DataFrame, rows: pd.DataFrame) -> np.ndarray:
    """Ridge regression baseline (scikit-learn): missing inputs imputed with the training median,
    standardised, alpha by efficient leave-one-out over a small grid."""
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    assets = sorted(fit_rows["asset_id"].unique())
    X, lvl, origin = _ridge_design(ts, fit_rows, assets)
    keep = np.isfinite(fit_rows["y"].to_numpy())
    model = make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler(),
                          RidgeCV(alphas=(0.1, 1.0, 10.0, 100.0, 1000.0)))
    model.fit(X[keep], ((fit_rows["y"].to_numpy() - origin) / lvl)[keep])
    Xv, lv, ov = _ridge_design(ts, rows, assets)
    return ov + model.predict(Xv) * lv


def _point_forecast(ts: training_data.TrainingSet, cfg: BoosterConfig, fit_rows: pd.DataFrame,
                    rows: pd.DataFrame) -> np.ndarray:
    """p50 of the forecaster fitted by train_forecast.fit on `fit_rows` (the median booster only: the
    objective scores the point forecast; the p10/p90 boosters and their calibration come with the refit)."""
    model = fit(replace(ts, train=fit_rows.reset_index(drop=True)), replace(cfg, calibration_days=0), outputs=("p50",))
    model.boosters = dict.fromkeys(QUANTILE_OUTPUTS, model.boosters["p50"])  # point = p50; no interval here
    return model.predict(None, rows)["point"].to_numpy()


def suggest(trial, designs: list[str]) -> tuple[str, BoosterConfig]:
    """The search space: design, capacity (leaves, rounds), regularisation (leaf size, L2, feature fraction)."""
    design = trial.suggest_categorical("design", designs)
    cfg = BoosterConfig(
        num_leaves=trial.suggest_int("num_leaves", 15, 255, log=True),
        min_data_in_leaf=trial.suggest_int("min_data_in_leaf", 10, 400, log=True),
        learning_rate=trial.suggest_float("learning_rate", 0.02, 0.3, log=True),
        num_boost_round=trial.suggest_int("num_boost_round", 100, 600, step=50),
        lambda_l2=trial.suggest_float("lambda_l2", 1e-3, 100.0, log=True),
        feature_fraction=trial.suggest_float("feature_fraction", 0.5, 1.0),
    )
    return design, cfg


DEFAULT_TRIAL = {"num_leaves": BoosterConfig.num_leaves, "min_data_in_leaf": BoosterConfig.min_data_in_leaf,
                 "learning_rate": BoosterConfig.learning_rate, "num_boost_round": BoosterConfig.num_boost_round,
                 "lambda_l2": 1e-3, "feature_fraction": BoosterConfig.feature_fraction}


class _Search:
    """Training sets per design, validation folds and their rows, built once for every trial."""

    def __init__(self, sets: dict[str, training_data.TrainingSet], folds: list[Fold], cfg: SearchConfig):
        self.sets, self.folds, self.cfg = sets, folds, cfg
        self.masks = {d: [fold_masks(ts.train, folds, k) for k in range(cfg.windows)] for d, ts in sets.items()}
        # the same rows for every design: the dense day-ahead horizons of the same issue times
        self.rows = {d: [_with_baselines(ts, ts.train[self.masks[d][k][1]]) for k in range(cfg.windows)]
                     for d, ts in sets.items()}

    def pooled(self, design: str, points: list[np.ndarray]) -> dict[str, float]:
        ts = self.sets[design]
        rows = pd.concat(self.rows[design][:len(points)])
        return _scores(rows, np.concatenate(points), ts.scales)


def search(settings: Settings, store, tenant: str, assets: list[str] | None = None,
           name: str = DEFAULT_FORECAST_NAME, split: training_data.SplitConfig | None = None,
           cfg: SearchConfig | None = None, designs: tuple[str, ...] = DESIGNS, until: datetime | None = None,
           progress: Progress | None = None) -> SearchResult:
    """Search, log, refit the best and register it in staging (see the module docstring)."""
    import mlflow
    import optuna

    cfg, split = (cfg or SearchConfig()).check(), (split or training_data.SplitConfig()).check()
    check_model_name(name)
    tick = progress or (lambda *_: None)
    t0 = time.perf_counter()
    deadline = t0 + cfg.time_budget_s
    plans, skipped = {}, {}
    for d in designs:  # validated before any MLflow run exists (unknown tenant/asset, short history)
        p = training_data.plan(settings, store, tenant, assets, d, split, until)
        if service_uses_peers(store, d) and not p.peers:
            skipped[d] = "no asset has a site peer"
            continue
        plans[d] = p
    folds = carve(next(iter(plans.values())).windows, cfg)
    with tracking.training_run(settings, store, tenant, f"tune {name}", {"model_type": "forecast"}) as parent:
        search_id = parent.info.run_id
        mlflow.set_tag(TAG_SEARCH, search_id)
        sets = {}
        for d, p in plans.items():
            tick(f"training set {d}", 0, cfg.trials)
            ts = training_data.build(store, p)
            extra = [c for c in ts.issue_features if sets and c not in next(iter(sets.values())).issue_features]
            if extra and not ts.peers and ts.train[extra].isna().all().all():
                skipped[d] = f"its extra inputs ({', '.join(extra)}) are unknown for every asset"
                continue
            sets[d] = ts
        logger.info("designs searched: %s; left out: %s", ", ".join(sets), skipped or "none")
        run = _Search(sets, folds, cfg)
        fold_doc = [{"window": f.index, "asset_id": f.asset_id, "start": f.start.isoformat(), "end": f.end.isoformat(),
                     "holdout_start": w.split.isoformat()}
                    for f in folds for w in next(iter(sets.values())).windows if w.asset_id == f.asset_id]
        mlflow.log_dict({"folds": fold_doc, "skipped_designs": skipped}, "validation_windows.json")
        mlflow.log_params({
            "designs": ",".join(sets), "trials": cfg.trials, "time_budget_s": cfg.time_budget_s,
            "windows": cfg.windows, "window_days": cfg.window_days, "objective": OBJECTIVE, "sampler": "TPE",
            "seed": cfg.seed, "validation_start": min(f.start for f in folds).isoformat(),
            "validation_end": max(f.end for f in folds).isoformat(),
            "holdout_start": min(w.split for w in next(iter(sets.values())).windows).isoformat(),
            **prefixed("split", split)})
        entries = _baselines(run, cfg)
        timings = {"training_sets_s": time.perf_counter() - t0}
        study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=cfg.seed),
                                    pruner=optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=0))
        base = DEFAULT_FORECAST_SERVICE if DEFAULT_FORECAST_SERVICE in sets else next(iter(sets))
        study.enqueue_trial({"design": base, **DEFAULT_TRIAL})  # trial 0: today's default configuration
        trial_entries: list[Entry] = []

        def objective(trial) -> float:
            design, booster = suggest(trial, list(sets))
            tick(f"trial {trial.number + 1}/{cfg.trials} ({design})", len(trial_entries), cfg.trials)
            params = {"design": design, **{k: v for k, v in asdict(booster).items() if k in DEFAULT_TRIAL}}
            with mlflow.start_run(run_name=f"trial {trial.number}", nested=True,
                                  tags={TAG_SEARCH: search_id, TAG_TRIAL: str(trial.number)}) as child:
                mlflow.log_params({**params, "validation_end": max(f.end for f in folds).isoformat()})
                points, state, t1 = [], "complete", time.perf_counter()
                try:
                    for k in range(cfg.windows):
                        if k and trial.number and not fits_in_budget():  # trial 0 (the default) always ends
                            raise optuna.TrialPruned("time budget: the next window would end after it")
                        ts, t_window = sets[design], time.perf_counter()
                        fit_rows, _ = run.masks[design][k]
                        points.append(_point_forecast(ts, booster, ts.train[fit_rows], run.rows[design][k]))
                        window_s.append(time.perf_counter() - t_window)
                        metrics = run.pooled(design, points)
                        trial.report(metrics[OBJECTIVE], k)
                        if trial.should_prune():
                            raise optuna.TrialPruned(f"pruned after window {k}")
                except optuna.TrialPruned as e:
                    state = "out_of_time" if "time budget" in str(e) else "pruned"
                    raise
                finally:
                    metrics = run.pooled(design, points) if points else {}
                    metrics |= {"fit_s": time.perf_counter() - t1, "windows_scored": float(len(points))}
                    mlflow.log_metrics({k: v for k, v in metrics.items() if math.isfinite(v)})
                    mlflow.set_tag("state", state)
                    trial_entries.append(Entry(f"trial {trial.number}", "lightgbm", design, params, metrics, state,
                                               child.info.run_id))
            return metrics[OBJECTIVE]

        window_s: list[float] = []  # how long one window's fit took, per window fitted so far

        def fits_in_budget() -> bool:
            """Whether a window fitted now (median duration so far) ends within the time budget."""
            return time.perf_counter() + (float(np.median(window_s)) if window_s else 0.0) <= deadline

        def stop_when_done(study, trial) -> None:
            if not fits_in_budget():  # no trial starts that could not fit its first window in the budget
                study.stop()

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study.optimize(objective, n_trials=cfg.trials, timeout=max(deadline - time.perf_counter(), 1e-3),
                       callbacks=[stop_when_done], catch=())
        timings["search_s"] = time.perf_counter() - t0
        board = leaderboard([*entries, *trial_entries])
        best_trial = study.best_trial
        best = {"trial": best_trial.number, **best_trial.params, OBJECTIVE: best_trial.value}
        mlflow.log_dict(finite({"leaderboard": board, "best": best}), LEADERBOARD)
        mlflow.log_text(pd.DataFrame([{k: v for k, v in r.items() if k != "params"} for r in board]).to_csv(
            index=False), "leaderboard.csv")
        tracking.log_figure(_history_figure(trial_entries, entries), "optimisation_history")
        done = sum(e.state == "complete" for e in trial_entries)
        mlflow.log_metrics({"best_" + OBJECTIVE: best_trial.value, "trials_done": float(done),
                            "trials_pruned": float(len(trial_entries) - done), "search_s": timings["search_s"]})
        tick("refit the best on the whole training part", len(trial_entries), cfg.trials)
        best_design, best_cfg = best_trial.params["design"], BoosterConfig(**{
            k: v for k, v in best_trial.params.items() if k != "design"})
        ts = sets[best_design]
        ridge = ridge_forecast(ts, ts.train, ts.holdout)
    t2 = time.perf_counter()
    result = train(settings, store, tenant, assets, best_design, name, split, best_cfg, until,
                   run_tags={"mlflow.parentRunId": search_id, TAG_SEARCH: search_id, TAG_TRIAL: str(best["trial"])},
                   version_tags={TAG_SEARCH: search_id, TAG_TRIAL: str(best["trial"])})
    timings["refit_s"] = time.perf_counter() - t2
    holdout = _holdout(ts, result.metrics, ridge)
    client = mlflow.MlflowClient(settings.mlflow_tracking_uri)
    for label, scores in holdout.items():
        for k, v in scores.items():
            if math.isfinite(v):
                client.log_metric(search_id, f"holdout_{label}_{k}", v)
    client.log_dict(search_id, finite({"holdout": holdout, "model_id": result.model_id, "best": best}), "holdout.json")
    timings["total_s"] = time.perf_counter() - t0
    tick("done", cfg.trials, cfg.trials)
    return SearchResult(search_id, result.model_id, board, best, holdout, result.per_asset, fold_doc, done,
                        len(trial_entries) - done, timings, skipped)


def _baselines(run: _Search, cfg: SearchConfig) -> list[Entry]:
    """Ridge (per design) and seasonal naive-24/168, on the trials' validation rows, each a nested run."""
    import mlflow

    out = []
    first = next(iter(run.sets))
    for name in ("naive_24", "naive_168"):
        points = [rows[name].to_numpy() for rows in run.rows[first]]
        out.append(Entry(name.replace("_", "-"), "seasonal_naive", None, {}, run.pooled(first, points)))
    for d, ts in run.sets.items():
        points = [ridge_forecast(ts, ts.train[run.masks[d][k][0]], run.rows[d][k]) for k in range(cfg.windows)]
        out.append(Entry(f"ridge ({d})", "ridge", d, {"design": d}, run.pooled(d, points)))
    for e in out:
        with mlflow.start_run(run_name=f"baseline {e.name}", nested=True,
                              tags={TAG_SEARCH: mlflow.active_run().info.run_id, "baseline": e.kind}) as child:
            mlflow.log_params({"baseline": e.name, **e.params})
            mlflow.log_metrics({k: v for k, v in e.metrics.items() if math.isfinite(v)})
            e.run_id = child.info.run_id
    return out


def _holdout(ts: training_data.TrainingSet, tuned: dict[str, float], ridge: np.ndarray) -> dict[str, dict[str, float]]:
    """Day-ahead on the held-out days: the refitted best (its run's metrics), the ridge refitted on the
    whole training part, and the seasonal-naive forecasts, on the same rows."""
    day = (ts.holdout[HORIZON] <= DAY_AHEAD).to_numpy()
    rows = ts.holdout[day]
    r = evaluation.score(rows, pd.DataFrame({q: ridge[day] for q in (*QUANTILE_OUTPUTS, "point")},
                                            index=rows.index), ts.scales)
    pick = ("mae", "mase_168", "relmae_24", "relmae_168")
    return {"tuned": {k: tuned[f"dayahead_{k}"] for k in (*pick, "coverage_p10_p90")},
            "ridge": {k: r[k] for k in pick},
            "naive_24": {"mae": tuned["dayahead_naive_24_mae"], "mase_168": tuned["dayahead_naive_24_mase"]},
            "naive_168": {"mae": tuned["dayahead_naive_168_mae"], "mase_168": tuned["dayahead_naive_168_mase"]}}


def _history_figure(trials: list[Entry], baselines: list[Entry]):
    """Objective per trial, the best so far, and the baselines as horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    done = [(int(e.name.split()[-1]), e.metrics.get(OBJECTIVE, math.nan)) for e in trials if e.state == "complete"]
    pruned = [(int(e.name.split()[-1]), e.metrics.get(OBJECTIVE, math.nan)) for e in trials if e.state != "complete"]
    if done:
        x, y = zip(*done, strict=True)
        ax.scatter(x, y, label="trial", color="tab:blue", zorder=3)
        ax.step(x, np.minimum.accumulate(y), where="post", color="tab:blue", label="best so far")
    if pruned:
        x, y = zip(*pruned, strict=True)
        ax.scatter(x, y, marker="x", color="grey", label="pruned (partial windows)")
    for e, colour in zip(baselines, ("tab:orange", "tab:red", "tab:green", "tab:olive", "tab:purple"), strict=False):
        if math.isfinite(e.metrics.get(OBJECTIVE, math.nan)):
            ax.axhline(e.metrics[OBJECTIVE], linestyle="--", color=colour, label=e.name)
    ax.set_xlabel("trial")
    ax.set_ylabel("day-ahead MASE (naive-168 scale), validation windows")
    ax.set_title("model search: optimisation history")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


__all__ = ["DESIGNS", "SearchConfig", "SearchResult", "carve", "fold_masks", "leaderboard", "search"]
