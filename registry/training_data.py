"""Training sets from Feast: point-in-time features of a feature service at hourly issue times,
labels from the hourly aggregate, a time-ordered split with the last days held out."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd

from core.errors import EmsError, UnknownAssetError
from core.names import DEFAULT_FORECAST_SERVICE, check_asset_id, check_tenant_id
from core.settings import Settings
from registry.design import (
    ALIGNED,
    BASELINE_SOURCES,
    HORIZON,
    HOUR,
    MAX_HORIZON,
    PEER,
    aligned,
    baselines,
    days,
    expand,
    peer_inputs,
    sample_pairs,
)
from registry.gaps import GAP, gap_state, inject, inject_shifts
from registry.target_weather import MODES, model_names, training_columns
from warehouse import hourly
from warehouse.db import connect
from warehouse.store import grid_features, service_columns, service_target_columns, service_uses_peers

logger = logging.getLogger(__name__)
BASELINES = tuple(BASELINE_SOURCES)


class InsufficientHistoryError(EmsError, ValueError):
    """An asset has too little hourly history to train and hold out."""


@dataclass(frozen=True)
class SplitConfig:
    history_days: int = 730  # training window per asset (or all it has), ending at its last complete hour
    holdout_days: int = 14  # the last days of each asset are held out for evaluation
    min_history_days: int = 21  # below this an asset cannot be trained on (named in the error)
    issue_every_h: int = 6  # training issue times: every N hours
    horizons_per_issue: int = 24  # training horizons beyond dense_horizons sampled per issue time (168 = all)
    # Horizons 1..dense_horizons are trained at every issue time: day-ahead accuracy needs them dense
    # (a model sampling 24 of 168 sees each day-ahead hour 7x less often).
    dense_horizons: int = 24
    eval_every_h: int = 24  # held-out issue times: one forecast a day, every horizon
    seed: int = 0
    # Missing hours (registry/gaps.py). gap_share: the share of training issue times copied once more with
    # a random block of 1-72 h hidden from their history (seeded; every input read from the load recomputed
    # as Feast would return it, labels kept), so the model has seen forecasts issued after a gap. On the
    # validation windows before the test windows (Tetouan Sep-Nov 2017, PJM AEP May-Jul 2018) 0.3 took the
    # day-ahead forecasts after a 6/18/30/72 h gap ending at the origin from 4/3/1/1 of 32 origins within 1.25x
    # of the same origin without the gap to 23/19/17/11, with clean MAE -2 to -8 % (Tetouan), +0.8 % (AEP).
    # gap_inputs: the GAP inputs (hours since the last reading, observed hours of the last 24 h / 168 h,
    # the profile level scaling the load inputs, thin windows masked); off: on the same windows they cost
    # 4-6 % clean MAE on AEP and helped no gap length consistently.
    gap_inputs: bool = False
    gap_share: float = 0.3
    # Level shifts (registry/gaps.py, inject_shifts): the share of training issue times copied once more
    # with the load from a random step 1-7 days back and the labels moved by a factor in 1/2.5..1/1.25 or
    # 1.25..2.5, so the model has seen a load that moved to another level and stayed there. Opt-in: on the
    # validation days before the robustness test window (Tetouan zones 1-3, 8 Oct - 18 Nov 2017) 0 / 0.1 /
    # 0.2 gave day-ahead skill vs naive-24 on days 3-7 after a x0.5 shift of -10.5 to +0.46 / -0.17 to +0.68
    # / -0.13 to +0.68 (x2: -4.0 to +0.63 / -0.39 to +0.62 / +0.01 to +0.68) and clean day-ahead MAE
    # 822 / 694 / 715 (0) vs 750 / 645 / 707 (0.2; steps drawn 1-168 h back; 24-168 h: x0.5 -0.05 to +0.68,
    # x2 -0.03 to +0.68, clean 787 / 643 / 696); but a model trained on 8 weeks of zone 1 scored 1,984
    # (0.2) vs 1,827 (0) day-ahead MAE on a fortnight holding a 3x anomaly (tests/integration/
    # test_pipelines.py): trusting the last days more, it carries a one-off day forward. `ems train
    # forecast --shift-share 0.2` for loads that step to new levels; `ems evaluate robustness` uses 0.2.
    shift_share: float = 0.0
    # Training labels of every asset end at the earliest asset's split (backtests): a model trained on
    # assets whose readings end at different times then never learns from hours after any asset's test
    # window starts (another asset's later data would tell it about the weather, holidays and shocks of
    # that window). Off: each asset trains up to its own split (training for deployment).
    shared_cutoff: bool = False
    # Target-hour weather (registry/target_weather.py), for services with a view keyed by target_hour:
    # "forecast" (archived forecasts, else the observed weather with a forecast's error) or "oracle" (the
    # observed weather itself: an evaluation's upper bound, never a model to serve).
    target_weather: str = "forecast"

    def check(self) -> SplitConfig:
        rules = {
            "history_days": (self.history_days, 21, 20_000), "holdout_days": (self.holdout_days, 1, 365),
            "min_history_days": (self.min_history_days, 2, 20_000), "issue_every_h": (self.issue_every_h, 1, 168),
            "horizons_per_issue": (self.horizons_per_issue, 1, MAX_HORIZON),
            "dense_horizons": (self.dense_horizons, 0, MAX_HORIZON),
            "eval_every_h": (self.eval_every_h, 1, 168),
        }
        for name, (value, lo, hi) in rules.items():
            if not isinstance(value, int) or not lo <= value <= hi:
                raise ValueError(f"{name}={value!r} is out of range {lo}..{hi}")
        for name in ("gap_share", "shift_share"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0 <= value <= 1:
                raise ValueError(f"{name}={value!r} is out of range 0..1")
        if self.target_weather not in MODES:
            raise ValueError(f"target_weather={self.target_weather!r} is not one of {', '.join(MODES)}")
        if self.min_history_days <= self.holdout_days:
            raise ValueError(f"min_history_days={self.min_history_days} must exceed holdout_days={self.holdout_days}")
        return self


@dataclass
class AssetWindow:
    asset_id: str
    start: pd.Timestamp  # first hour boundary used (window start)
    split: pd.Timestamp  # labels at or after this time are held out
    end: pd.Timestamp  # end of the last complete hour
    train_end: pd.Timestamp | None = None  # last training label hour end, if before the split (shared cutoff)

    @property
    def fit_end(self) -> pd.Timestamp:
        """End of the last label hour the asset's training rows may hold."""
        return self.split if self.train_end is None else min(self.train_end, self.split)


@dataclass
class TrainingSet:
    tenant: str
    service: str
    issue_features: list[str]
    calendar_features: list[str]
    train: pd.DataFrame  # META + features + horizon_h + y
    holdout: pd.DataFrame  # same + naive_24, naive_168 (with fallbacks) and their `_source` (design.baselines)
    windows: list[AssetWindow]
    scales: dict[str, dict[str, float]]  # per asset: in-sample MAE of seasonal naive 24 h / 168 h
    series: dict[str, pd.Series] = field(repr=False)
    peers: dict[str, list[str]] = field(default_factory=dict)  # asset -> its site peers (peer inputs)
    gap_inputs: bool = False  # the GAP inputs (registry/gaps.py)
    target_features: list[str] = field(default_factory=list)  # target_<variable> (registry/target_weather.py)

    @property
    def features(self) -> list[str]:
        return [*self.issue_features, *self.target_features, *ALIGNED, *(PEER if self.peers else ()),
                *(GAP if self.gap_inputs else ()), *self.calendar_features, HORIZON]

    @property
    def window(self) -> tuple[pd.Timestamp, pd.Timestamp]:
        return min(w.start for w in self.windows), max(w.end for w in self.windows)

    def fingerprint(self) -> str:
        """Content hash of the training rows (features + labels): same data, same fingerprint."""
        from registry.tracking import fingerprint

        return fingerprint(self.train[["asset_id", "issue_time", *self.features, "y"]])


def tenant_assets(settings: Settings, tenant: str, assets: list[str] | None) -> list[str]:
    """The tenant's consumption meters to train a load model (forecaster, anomaly detector) on: `assets`
    (checked), or all of them. Generation units and market zones have their own forecasters (`ems train forecast
    --type`)."""
    check_tenant_id(tenant)
    for a in assets or []:
        check_asset_id(a)
    with connect(settings) as conn:
        kinds = dict(conn.execute("SELECT asset_id, kind FROM assets WHERE tenant_id = %s ORDER BY asset_id",
                                  (tenant,)).fetchall())
    known = [a for a, kind in kinds.items() if kind == "consumption"]
    if not kinds:
        raise UnknownAssetError(f"tenant {tenant!r} has no assets; ingest readings first (`ems ingest`)")
    if not assets:
        if not known:
            raise UnknownAssetError(f"tenant {tenant!r} has no consumption meters to train a load model on "
                                    f"(its assets are generation units or market zones: `ems train forecast --type`)")
        return known
    missing = [a for a in assets if a not in kinds]
    if missing:
        raise UnknownAssetError(f"tenant {tenant!r} has no asset(s) {', '.join(map(repr, missing))}; "
                                f"known: {', '.join(known[:10])}{' …' if len(known) > 10 else ''}")
    other = [a for a in assets if kinds[a] != "consumption"]
    if other:
        raise UnknownAssetError(f"asset(s) {', '.join(f'{a!r} ({kinds[a]})' for a in other)} of tenant {tenant!r} "
                                "are not consumption meters: load models train on meters; use `ems train "
                                "forecast --type generation|price` for them")
    return list(dict.fromkeys(assets))


def asset_windows(series: dict[str, pd.Series], assets: list[str], cfg: SplitConfig) -> list[AssetWindow]:
    windows = []
    for a in assets:
        s = series.get(a)
        if s is None or s.empty:
            raise InsufficientHistoryError(f"asset {a!r} has no hourly readings; training needs at least "
                                           f"{cfg.min_history_days} days")
        end = s.index[-1]
        first = s.index[0] - HOUR
        start = max(first, end - pd.Timedelta(days=cfg.history_days))
        have = days(end - first)
        if have < cfg.min_history_days:
            raise InsufficientHistoryError(
                f"asset {a!r} has {have:g} days of hourly readings ({first:%Y-%m-%d %H:%M} → {end:%Y-%m-%d %H:%M} "
                f"UTC); training needs at least {cfg.min_history_days} days ({cfg.holdout_days} of them held out)")
        windows.append(AssetWindow(a, start, end - pd.Timedelta(days=cfg.holdout_days), end))
    if cfg.shared_cutoff and windows:
        first = min(windows, key=lambda w: w.split)  # the asset whose test window starts first
        need = cfg.min_history_days - cfg.holdout_days
        for w in windows:
            w.train_end = first.split
            if days(first.split - w.start) < need:
                raise InsufficientHistoryError(
                    f"asset {w.asset_id!r} has {max(days(first.split - w.start), 0):g} days of readings before "
                    f"{first.split:%Y-%m-%d %H:%M} UTC, where the first test window starts (asset "
                    f"{first.asset_id!r}); training needs at least {need}: evaluate it separately")
    return windows


def point_in_time_features(store, service: str, tenant: str, windows: list[AssetWindow]) -> pd.DataFrame:
    """The service's features at every hour boundary E of each asset's window, from Feast's
    point-in-time join; calendar (on-demand) features describe the hour starting at E."""
    features = grid_features(store, service)
    frames = []
    for w in windows:
        grid = pd.date_range(w.start, w.end, freq="h")
        frames.append(pd.DataFrame({"tenant_id": tenant, "asset_id": w.asset_id, "event_timestamp": grid,
                                    "target_time": grid}))
    entity_df = pd.concat(frames, ignore_index=True)
    out = store.get_historical_features(entity_df=entity_df, features=features).to_df()
    out["event_timestamp"] = pd.to_datetime(out["event_timestamp"], utc=True)
    return out


@dataclass
class Plan:
    """Validated inputs of a training run (assets, windows, columns, labels), before any Feast read."""

    settings: Settings
    tenant: str
    service: str
    cfg: SplitConfig
    issue_cols: list[str]
    calendar_cols: list[str]
    series: dict[str, pd.Series]
    windows: list[AssetWindow]
    peers: dict[str, list[str]] = field(default_factory=dict)  # asset -> site peers, when the service asks
    peer_series: dict[str, pd.Series] = field(default_factory=dict, repr=False)  # peers not trained on
    target_cols: list[str] = field(default_factory=list)  # the service's target-hour variables

    @property
    def features(self) -> list[str]:
        return [*self.issue_cols, *model_names(self.target_cols), *self.calendar_cols]


def plan(settings: Settings, store, tenant: str, assets: list[str] | None = None,
         service: str = DEFAULT_FORECAST_SERVICE, cfg: SplitConfig | None = None,
         until: datetime | None = None) -> Plan:
    """Check everything a training run needs (tenant, assets, feature service, history) up front, so
    bad input fails before an MLflow run exists."""
    cfg = (cfg or SplitConfig()).check()
    assets = tenant_assets(settings, tenant, assets)
    issue_cols, calendar_cols = service_columns(store, service)
    series = hourly.history(settings, tenant, assets, until, cfg.history_days)
    windows = asset_windows(series, assets, cfg)
    peers, peer_series = {}, {}
    if service_uses_peers(store, service):
        with connect(settings) as conn:
            peers = {a: p for a, p in hourly.site_peers(conn, tenant, [w.asset_id for w in windows]).items() if p}
        others = sorted({p for ps in peers.values() for p in ps} - set(series))
        peer_series = hourly.history(settings, tenant, others, until, cfg.history_days) if others else {}
        if peers:
            logger.info("peer inputs (%s): %s", service, ", ".join(f"{a} <- {'+'.join(p)}" for a, p in peers.items()))
        else:
            logger.warning("%s asks for peer inputs but no asset of %s has a site peer (the tenant's other assets "
                           "at its site; `ems ingest --site`): trained without them", service, tenant)
    return Plan(settings, tenant, service, cfg, issue_cols, calendar_cols, series, windows, peers, peer_series,
                service_target_columns(store, service))


def build(store, p: Plan) -> TrainingSet:
    """Training and held-out rows for a direct multi-horizon forecaster."""
    hourly = point_in_time_features(store, p.service, p.tenant, p.windows)
    return design(store, p, hourly, np.random.default_rng(p.cfg.seed))


def for_asset(p: Plan, asset: str) -> Plan:
    """The plan of one of `p`'s assets (a partition of a distributed training set, registry/dask_training.py):
    its window and series, with every other series its peer inputs read."""
    from dataclasses import replace

    peers = {asset: p.peers[asset]} if asset in p.peers else {}
    needed = {a for a in peers.get(asset, [])}
    others = {a: s for a, s in {**p.peer_series, **p.series}.items() if a in needed and a != asset}
    return replace(p, series={asset: p.series[asset]}, windows=[w for w in p.windows if w.asset_id == asset],
                   peers=peers, peer_series=others)


def design(store, p: Plan, hourly: pd.DataFrame, rng: np.random.Generator) -> TrainingSet:
    """The design of `p`'s assets from their point-in-time features at every hour boundary of their windows
    (`hourly`: Feast's historical join, or the same rows read back from an exported Parquet training set)."""
    cfg, series, windows, issue_cols, calendar_cols = p.cfg, p.series, p.windows, p.issue_cols, p.calendar_cols
    tenant, service = p.tenant, p.service

    train_issues, eval_issues = [], []
    for w in windows:
        train_issues.append(pd.DataFrame({"asset_id": w.asset_id, "issue_time": pd.date_range(
            w.start + pd.Timedelta(days=1), w.fit_end - HOUR, freq=f"{cfg.issue_every_h}h")}))
        eval_issues.append(pd.DataFrame({"asset_id": w.asset_id, "issue_time": pd.date_range(
            w.split, w.end - HOUR, freq=f"{cfg.eval_every_h}h")}))
    fit_end = {w.asset_id: w.fit_end for w in windows}
    by_hour = labels(series)
    train = _labelled(hourly, issue_cols, calendar_cols, by_hour,
                      sample_pairs(pd.concat(train_issues, ignore_index=True), cfg.horizons_per_issue, rng,
                                   dense=cfg.dense_horizons))
    train = train[train["target_time"] <= train["asset_id"].map(fit_end)]  # no held-out label in training
    holdout = _labelled(hourly, issue_cols, calendar_cols, by_hour,
                        sample_pairs(pd.concat(eval_issues, ignore_index=True), MAX_HORIZON, rng))
    known = {**p.peer_series, **series}
    for rows in (train, holdout):
        names = (*ALIGNED, *(PEER if p.peers else ()), *(GAP if cfg.gap_inputs else ()))
        for name in names:
            rows[name] = np.nan
        for asset, part in rows.groupby("asset_id", sort=False):
            columns = aligned(series[asset], part["issue_time"], part[HORIZON])
            if p.peers:
                peer = [known[a] for a in p.peers.get(asset, []) if a in known]
                columns |= peer_inputs(peer, part["issue_time"], part[HORIZON])
            if cfg.gap_inputs:
                columns |= gap_state(series[asset], part["issue_time"])
            for name in names:
                rows.loc[part.index, name] = columns[name]
    if p.target_cols:  # before gap injection: the copies keep their rows' weather (not read from the load)
        for name, rows in (("training", train), ("held-out", holdout)):
            columns, counts = training_columns(p.settings, store, tenant, rows, p.target_cols, cfg.target_weather,
                                               cfg.seed)
            for c, values in columns.items():
                rows[c] = values
            logger.info("target-hour weather of %d %s rows (%s): %d archived forecasts, %d observed%s, %d missing",
                        len(rows), name, cfg.target_weather, counts["archived"], counts["observed"],
                        " with forecast error" if cfg.target_weather == "forecast" else "", counts["missing"])
    load_inputs = [*issue_cols, *ALIGNED, *(GAP if cfg.gap_inputs else ())]
    copies = []
    if cfg.gap_share:
        copies.append(inject(train, series, load_inputs, rng, cfg.gap_share))
        logger.info("gap injection: %d training rows recomputed with a block of 1-72 h hidden", len(copies[-1]))
    if cfg.shift_share:
        copies.append(inject_shifts(train, series, load_inputs, rng, cfg.shift_share))
        logger.info("level-shift injection: %d training rows recomputed after a step of x1/2.5..x2.5",
                    len(copies[-1]))
    if copies:
        train = pd.concat([train, *copies], ignore_index=True)
    for name in BASELINES:
        holdout[name], holdout[f"{name}_source"] = np.nan, -1
    for asset, part in holdout.groupby("asset_id", sort=False):
        for name, values in baselines(series[asset], part["issue_time"], part[HORIZON]).items():
            holdout.loc[part.index, name] = values
    scales = {w.asset_id: _naive_scales(series[w.asset_id], w) for w in windows}
    if train.empty or holdout.empty:
        raise InsufficientHistoryError(f"no complete training/held-out rows for {', '.join(series)}: need more "
                                       f"than {cfg.holdout_days} days of readings before the held-out days")
    logger.info("training set %s/%s: %d training rows, %d held-out rows, %d assets", tenant, service,
                len(train), len(holdout), len(windows))
    return TrainingSet(tenant, service, issue_cols, calendar_cols, train.reset_index(drop=True),
                       holdout.reset_index(drop=True), windows, scales, series, p.peers, cfg.gap_inputs,
                       model_names(p.target_cols))


def labels(series: dict[str, pd.Series]) -> pd.Series:
    """All assets' hourly means in one series indexed by (asset_id, hour end)."""
    return pd.concat(series.values(), keys=list(series.keys()), names=["asset_id", "hour_end"])


def _labelled(hourly, issue_cols, calendar_cols, by_hour: pd.Series, pairs) -> pd.DataFrame:
    rows = expand(hourly, issue_cols, calendar_cols, pairs)
    rows["y"] = by_hour.reindex(pd.MultiIndex.from_arrays([rows["asset_id"], rows["target_time"]])).to_numpy()
    return rows[rows["y"].notna()]


def _naive_scales(s: pd.Series, w: AssetWindow) -> dict[str, float]:
    """In-sample MAE of the seasonal-naive forecasts over the training part (MASE denominators)."""
    part = s[(s.index > w.start) & (s.index <= w.split)]
    out = {}
    for season in (24, 168):
        diff = (part - part.reindex(part.index - season * HOUR).to_numpy()).abs()
        out[f"naive_{season}"] = float(diff.mean()) if diff.notna().any() else float("nan")
    return out
