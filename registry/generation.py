"""The generation (wind) forecaster: design and model, pure (no I/O), shared by the GEFCom2012 evaluation
(evaluation/gefcom.py), training from the warehouse and serving (inference/generation.py).

Design: one row per (unit, origin T, target hour t). Inputs are the numerical weather forecast for t as
known at T (the latest issue at or before T; `covariates_at`), the previous issue's speed for t (a second
opinion), the latest speeds for t-3 ... t+3 and their means over 3, 5 and 7 hours (the forecast's timing is
uncertain by hours: a smoothed speed is a better guess), the spread over 5 hours and the mean cube over 5 hours,
the forecast's lead time (t - issue) and the horizon (t - T), the hour of day of t, and the unit's recent power
at T (the last reading and the means of the last 3 and 6 hours). The other units' forecasts for t, issued by
the same rule (`others`): the mean over them of the speed, of the 3-hour mean speed, of u and of v (a front
reaches one farm before another; NaN for a unit trained or served alone). Power is in capacity units (0-1): the
label is power / capacity, and so are the recent-power inputs. A forecast variable nobody issued by T is NaN
(LightGBM sends it down the branch it learned for missing), and so is an input the caller does not give.

Model: one pooled model over the units it was trained on, the unit a categorical (`unit_code`, its index
among the training units; an unknown unit is "missing" and takes the shared branches). Three quantile
boosters (p10, p50, p90) and one L2 booster for the point forecast: the bar is RMSE, which the conditional
mean minimises, and power near 0 and near capacity makes the distribution skewed, so the median is not it.
The wind forecaster's point forecast (`POINT_MIX`) is the mean of that L2 booster, the p50 booster and an L2
booster of the row's own unit (trained on that unit's rows alone, without the unit input); a unit without
one (unknown, or trained on too few rows) gets the mean of the first two. Outputs are clipped to [0, 1]
and the quantiles sorted per row; the p10-p90 band is then widened (or narrowed) by a per-horizon-bucket
amount calibrated on held-out rows so that 80 % of them fall inside (split conformal on the band's edges)."""

from __future__ import annotations

import numpy as np
import pandas as pd

QUANTILES = {"p10": 0.1, "p50": 0.5, "p90": 0.9}
OUTPUTS = (*QUANTILES, "point")
UNIT = "unit_code"
# Inputs the caller provides per row (besides unit, origin, target): NWP for t at T, and recent power at T.
# SHIFTS: the latest speed for t + k (k = -3..3, not 0), by name; the last four and OTHERS may be absent (NaN).
SHIFTS = {-1: "ws_before", 1: "ws_after", -2: "ws_before2", 2: "ws_after2", -3: "ws_before3", 3: "ws_after3"}
NWP = ("wind_speed", "wind_u", "wind_v", "issue_time", "ws_prev", *SHIFTS.values())
RECENT = ("power_last", "power_mean_3h", "power_mean_6h")
OTHERS = ("ws_others_mean", "ws_others_mean3", "u_others_mean", "v_others_mean")
SMOOTHED = ("ws_mean3", "ws_mean5", "ws_mean7", "ws_std5", "ws3_mean5")
# The inputs before the smoothed speeds and the other units' forecasts (issue 26): a model pickled with no
# `features` attribute was trained on these.
FEATURES_V1 = [UNIT, "ws", "ws2", "ws3", "wind_u", "wind_v", "dir_sin", "dir_cos", "ws_prev", "ws_delta_prev",
               "ws_before", "ws_after", "ws_slope", "lead", "horizon", "hour", *RECENT]
# Chosen by rolling-origin validation on GEFCom2012's training period (README "Generation forecasts", every
# candidate's score there): the smoothed speeds (0.1479 -> 0.1459) and the other units' mean forecasts
# (-> 0.1439). Their min/max/spread, recent power, previous issue or speeds at t-3..t+3 scored within 0.0001
# and were left out. Every farm's speed, u and v as inputs of their own scored 0.0003-0.0005 lower but tie the
# design to the number and order of a tenant's units (not a validation choice; the README says so). The season
# (day of year, month) is left out: with 18 months of training data the trees learn the weather of particular
# weeks from it (0.1479 without it vs 0.1503 with).
FEATURES = [*FEATURES_V1, *SMOOTHED, *OTHERS]
BUCKETS = (0, 6, 12, 24, 36, 48)  # horizon buckets (h]: 1-6, 7-12, 13-24, 25-36, 37-48
MAX_HORIZON = 48
# Settings chosen by rolling-origin validation on GEFCom2012's training period (evaluation/gefcom.py,
# README "Generation forecasts"): the defaults of a model trained from the warehouse.
TUNED_PARAMS = {"num_leaves": 31, "min_data_in_leaf": 200}
TUNED_ROUNDS = {"point": 236, "p10": 1321, "p50": 592, "p90": 149, "unit": 88}
# The wind point forecast (issue 26, third round), chosen on the same rolling-origin folds (README "Generation
# forecasts"): the pooled L2 booster 0.14388; its mean with the p50 booster 0.14306; with an L2 booster per unit
# as well, in equal parts, 0.14253. Other seeds of the L2 booster (their mean 0.14379) and a per-unit empirical
# power curve as inputs (0.14471) did not help. Weights: booster name -> weight ("unit": the unit's own booster).
POINT_MIX = {"point": 1 / 3, "p50": 1 / 3, "unit": 1 / 3}
UNIT_MIN_ROWS = 1000  # a unit with fewer training rows gets no booster of its own
BASE_PARAMS = {"learning_rate": 0.05, "num_leaves": 63, "min_data_in_leaf": 100, "feature_fraction": 0.8,
               "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 1.0, "verbose": -1, "seed": 7,
               "num_threads": 2}


def _times(a) -> pd.DatetimeIndex:
    """`a` as UTC times."""
    if isinstance(getattr(a, "dtype", None), pd.DatetimeTZDtype) and str(a.dtype.tz) == "UTC":
        return pd.DatetimeIndex(a)
    return pd.DatetimeIndex(pd.to_datetime(a, utc=True))


def _hours(a: pd.DatetimeIndex, b: pd.DatetimeIndex) -> np.ndarray:
    """Hours from each of `b` to `a` (NaN where either is missing)."""
    return (a - b).total_seconds().to_numpy() / 3600


def _floats(values) -> np.ndarray:
    return values.to_numpy(dtype=float) if isinstance(values, pd.Series) else np.asarray(values, dtype=float)


def _col(rows, c: str) -> np.ndarray:
    """Column `c` as floats, all NaN where the caller does not give it."""
    return _floats(rows[c]) if c in rows else np.full(len(rows["target"]), np.nan)


def nanmean(stack: np.ndarray) -> np.ndarray:
    """The mean over axis 0 of the finite values (NaN where none; no warning, also for an empty stack)."""
    stack = np.asarray(stack, dtype=float).reshape(-1, *np.shape(stack)[1:])
    ok = np.isfinite(stack)
    n = ok.sum(axis=0)
    return np.where(n > 0, np.where(ok, stack, 0).sum(axis=0) / np.maximum(n, 1), np.nan)


def smoothed(speeds: np.ndarray) -> dict[str, np.ndarray]:
    """From `speeds` (7, rows): the latest speeds for t-3 ... t+3, the means over 3, 5 and 7 hours, the
    spread (standard deviation) over 5 hours and the mean cube over 5 hours (over the hours issued)."""
    five = speeds[1:6]
    mean5 = nanmean(five)
    return {"ws_mean3": nanmean(speeds[2:5]), "ws_mean5": mean5, "ws_mean7": nanmean(speeds),
            "ws_std5": np.sqrt(nanmean((five - mean5) ** 2)), "ws3_mean5": nanmean(five ** 3)}


def others(ws: np.ndarray, u: np.ndarray, v: np.ndarray, before: np.ndarray, after: np.ndarray
           ) -> dict[str, np.ndarray]:
    """The OTHERS inputs of one unit's rows from the other units' forecasts for the same rows (each argument
    shaped (other unit, row): speed, u, v and the speeds for t-1 and t+1, NaN where not issued): the mean over
    the units of the speed, of each unit's 3-hour mean speed, of u and of v. NaN where no other unit has one,
    e.g. for a unit trained or served alone (an empty stack)."""
    ws, u, v, before, after = (np.asarray(a, dtype=float) for a in (ws, u, v, before, after))
    mean3 = np.stack([nanmean(np.stack([b, w, a])) for b, w, a in zip(before, ws, after, strict=True)]) \
        if len(ws) else ws
    return {"ws_others_mean": nanmean(ws), "ws_others_mean3": nanmean(mean3), "u_others_mean": nanmean(u),
            "v_others_mean": nanmean(v)}


def design(rows, units: list[str]) -> pd.DataFrame:
    """Model matrix (columns FEATURES) of rows with `unit`, `origin`, `target`, the NWP inputs, the recent
    power (capacity units) and the OTHERS inputs. `units` are the training units, in code order. `rows`: a
    DataFrame, or a mapping of those columns to arrays (serving's, without building a frame first)."""
    codes = {u: i for i, u in enumerate(units)}
    target = _times(rows["target"])
    ws, u, v = (_floats(rows[c]) for c in ("wind_speed", "wind_u", "wind_v"))
    norm = np.hypot(u, v)
    speeds = np.stack([ws if k == 0 else _col(rows, SHIFTS[k]) for k in range(-3, 4)])
    columns = {
        UNIT: np.array([codes.get(unit, np.nan) for unit in rows["unit"]], dtype=float),
        "ws": ws, "ws2": ws ** 2, "ws3": ws ** 3, "wind_u": u, "wind_v": v,
        "dir_sin": np.divide(u, norm, out=np.full_like(u, np.nan), where=norm > 0),
        "dir_cos": np.divide(v, norm, out=np.full_like(v, np.nan), where=norm > 0),
        "ws_prev": _floats(rows["ws_prev"]),
        "ws_delta_prev": ws - _floats(rows["ws_prev"]),
        "ws_before": _floats(rows["ws_before"]),
        "ws_after": _floats(rows["ws_after"]),
        "ws_slope": _floats(rows["ws_after"]) - _floats(rows["ws_before"]),
        "lead": _hours(target, _times(rows["issue_time"])),
        "horizon": _hours(target, _times(rows["origin"])),
        "hour": target.hour.to_numpy(),
        **{c: _floats(rows[c]) for c in RECENT},
        **smoothed(speeds),
        **{c: _col(rows, c) for c in OTHERS},
    }
    index = rows.index if isinstance(rows, pd.DataFrame) else None
    return pd.DataFrame({c: columns[c] for c in FEATURES}, index=index)


def bucket(horizon) -> np.ndarray:
    """Index of the horizon bucket (0 for 1-6 h ... 4 for 37-48 h) of each horizon in hours."""
    return np.clip(np.searchsorted(BUCKETS, np.asarray(horizon, dtype=float), side="left") - 1, 0, len(BUCKETS) - 2)


class GenerationModel:
    """Four LightGBM boosters over `design` (or another design's `features`, e.g. registry/pv.py's; the unit
    categorical first), and with `mix` naming "unit" an L2 booster per training unit over the other features;
    predictions in capacity units, bounded to [0, 1]. `mix`: the point forecast's weights over the pooled L2
    booster ("point"), the p50 booster and the unit's own ("unit"); None: the pooled L2 booster alone."""

    def __init__(self, units: list[str], params: dict | None = None, rounds: dict | None = None,
                 features: list[str] | None = None, mix: dict | None = None):
        self.units = list(units)
        self.features = list(features or FEATURES)
        self.params = {**BASE_PARAMS, **(params or {})}
        self.rounds = rounds or {k: 600 for k in OUTPUTS}
        self.mix = dict(mix or {"point": 1.0})
        self.boosters: dict = {}
        self.unit_boosters: dict[int, object] = {}  # unit code -> L2 booster over features[1:]
        self.widen = np.zeros(len(BUCKETS) - 1)

    @staticmethod
    def objective(output: str) -> dict:
        if output == "point":
            return {"objective": "regression"}
        return {"objective": "quantile", "alpha": QUANTILES[output]}

    def fit(self, X: pd.DataFrame, y: np.ndarray, progress=None) -> GenerationModel:
        import lightgbm as lgb

        y = np.asarray(y, dtype=float)
        for i, out in enumerate(OUTPUTS):
            data = lgb.Dataset(X[self.features], y, categorical_feature=[UNIT], free_raw_data=False)
            self.boosters[out] = lgb.train({**self.params, **self.objective(out)}, data,
                                           num_boost_round=int(self.rounds[out]))
            if progress:
                progress(f"booster {out}", i + 1, len(OUTPUTS))
        if self.mix.get("unit"):
            codes = X[UNIT].to_numpy()
            for code in range(len(self.units)):
                rows = codes == code
                if rows.sum() >= UNIT_MIN_ROWS:
                    data = lgb.Dataset(X.loc[rows, self.features[1:]], y[rows], free_raw_data=False)
                    self.unit_boosters[code] = lgb.train({**self.params, **self.objective("point")}, data,
                                                         num_boost_round=int(self.rounds.get("unit",
                                                                                             self.rounds["point"])))
            if progress:
                progress("unit boosters", len(OUTPUTS), len(OUTPUTS))
        return self

    def outputs(self, x: np.ndarray, threads: int | None = None) -> np.ndarray:
        """(n, 4) p10, p50, p90, point of the matrix `x` (columns `features`), each booster once over `x` (a
        unit's booster over its rows): clipped to [0, 1], the quantiles sorted, not yet widened."""
        kw = {} if threads is None else {"num_threads": threads}
        raw = np.column_stack([self.boosters[o].predict(x, **kw) for o in OUTPUTS]).clip(0, 1)
        mix = getattr(self, "mix", {"point": 1.0})  # pickled before the mix: the L2 booster alone
        total = mix.get("point", 0) * raw[:, 3] + mix.get("p50", 0) * raw[:, 1]
        weight = np.full(len(x), mix.get("point", 0) + mix.get("p50", 0))
        for code, booster in getattr(self, "unit_boosters", {}).items() if mix.get("unit") else ():
            rows = x[:, 0] == code
            if rows.any():
                total[rows] += mix["unit"] * booster.predict(x[rows, 1:], **kw).clip(0, 1)
                weight[rows] += mix["unit"]
        return np.column_stack([np.sort(raw[:, :3], axis=1), total / weight])

    def raw(self, X: pd.DataFrame) -> pd.DataFrame:
        """Clipped, sorted, not yet widened predictions."""
        return pd.DataFrame(self.outputs(self.matrix(X)), columns=list(OUTPUTS), index=X.index)

    def calibrate(self, X: pd.DataFrame, y: np.ndarray, coverage: float = 0.8) -> np.ndarray:
        """Per horizon bucket, the widening d (negative: narrowing) of the p10-p90 band that puts `coverage`
        of the held-out rows (X, y) inside [p10 - d, p90 + d]: the `coverage` quantile of each row's
        conformity score max(p10 - y, y - p90). Rows at exactly 0 or 1 are inside once the band touches."""
        raw = self.raw(X)
        score = np.maximum(raw["p10"].to_numpy() - y, np.asarray(y, dtype=float) - raw["p90"].to_numpy())
        b = bucket(X["horizon"])
        self.widen = np.array([np.quantile(score[b == i], coverage) if (b == i).any() else 0.0
                               for i in range(len(BUCKETS) - 1)])
        return self.widen

    def predict(self, X: pd.DataFrame) -> pd.DataFrame:
        """p10, p50, p90, point in capacity units: each in [0, 1], p10 <= p50 <= p90."""
        return pd.DataFrame(self.predict_matrix(self.matrix(X), X["horizon"].to_numpy(), threads=None),
                            columns=list(OUTPUTS), index=X.index)

    def matrix(self, X: pd.DataFrame) -> np.ndarray:
        """The model's columns of a design as one float matrix."""
        return X[getattr(self, "features", FEATURES_V1)].to_numpy(dtype=float)  # pickled before PV: the first design

    def predict_matrix(self, x: np.ndarray, horizon: np.ndarray, threads: int | None = 1) -> np.ndarray:
        """`predict` on `matrix(X)` and X's horizons, as an (n, 4) array (p10, p50, p90, point), without the
        frames (serving's 24 rows: one thread by default; None: the boosters' own setting)."""
        raw = self.outputs(x, threads)
        q = raw[:, :3]
        d = self.widen[bucket(horizon)]
        q[:, 0] = (q[:, 0] - d).clip(0, 1)
        q[:, 2] = (q[:, 2] + d).clip(0, 1)
        return np.column_stack([np.sort(q, axis=1), raw[:, 3]])


def pinball(y: np.ndarray, pred: pd.DataFrame) -> float:
    """Mean pinball loss over p10, p50, p90."""
    y = np.asarray(y, dtype=float)
    losses = [np.mean(np.maximum(a * (y - pred[q].to_numpy()), (a - 1) * (y - pred[q].to_numpy())))
              for q, a in QUANTILES.items()]
    return float(np.mean(losses))


GRID = ({"num_leaves": 31, "min_data_in_leaf": 200}, {"num_leaves": 63, "min_data_in_leaf": 100},
        {"num_leaves": 127, "min_data_in_leaf": 300})


def tune(X: pd.DataFrame, y: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]], grid=GRID,
         max_rounds: int = 3000, progress=None) -> dict:
    """Rolling-origin validation: for each setting of `grid`, the L2 booster trained on each fold's training
    rows with early stopping on its validation rows (later origins); the setting with the lowest mean RMSE
    wins, and the quantile boosters' rounds are chosen by early stopping on the last fold. Returns the
    params, rounds per output, the validation scores and the last fold's fitted model (to calibrate on)."""
    import lightgbm as lgb

    y = np.asarray(y, dtype=float)
    steps, done = len(grid) * len(folds) + len(QUANTILES), 0

    def fit(params, out, train, val):
        tr = lgb.Dataset(X[train], y[train], categorical_feature=[UNIT], free_raw_data=False)
        va = lgb.Dataset(X[val], y[val], reference=tr)
        return lgb.train({**BASE_PARAMS, **params, **GenerationModel.objective(out)}, tr, max_rounds,
                         valid_sets=[va], callbacks=[lgb.early_stopping(50, verbose=False)])

    scores = []
    for setting in grid:
        rmse, iters = [], []
        for train, val in folds:
            b = fit(setting, "point", train, val)
            pred = np.clip(b.predict(X[val], num_iteration=b.best_iteration), 0, 1)
            rmse.append(float(np.sqrt(np.mean((pred - y[val]) ** 2))))
            iters.append(b.best_iteration)
            done += 1
            if progress:
                progress(f"validating {setting}", done, steps)
        scores.append({**setting, "rmse": float(np.mean(rmse)), "rmse_folds": rmse, "rounds": int(np.mean(iters))})
    best = min(scores, key=lambda s: s["rmse"])
    params = {k: best[k] for k in grid[0]}
    model = GenerationModel([], params, {"point": best["rounds"]})
    train, val = folds[-1]
    model.boosters["point"] = fit(params, "point", train, val)
    for q in QUANTILES:
        model.boosters[q] = fit(params, q, train, val)
        model.rounds[q] = model.boosters[q].best_iteration
        done += 1
        if progress:
            progress(f"quantile {q}", done, steps)
    return {"params": params, "rounds": dict(model.rounds), "scores": scores, "model": model}


def unit_rounds(X: pd.DataFrame, y: np.ndarray, fold: tuple[np.ndarray, np.ndarray], params: dict,
                max_rounds: int = 3000) -> int:
    """The rounds of the units' own L2 boosters (POINT_MIX "unit"): per unit with UNIT_MIN_ROWS training rows
    in `fold` (train, validation), an L2 booster over the features but the unit, stopped early on the unit's
    validation rows; the median of their rounds (one setting for every unit, also a tenant's)."""
    import lightgbm as lgb

    y = np.asarray(y, dtype=float)
    train, val = fold
    codes, cols = X[UNIT].to_numpy(), [c for c in X.columns if c != UNIT]
    rounds = []
    for code in np.unique(codes[np.isfinite(codes)]):
        tr, va = train & (codes == code), val & (codes == code)
        if tr.sum() < UNIT_MIN_ROWS or not va.any():
            continue
        data = lgb.Dataset(X.loc[tr, cols], y[tr], free_raw_data=False)
        b = lgb.train({**BASE_PARAMS, **params, **GenerationModel.objective("point")}, data, max_rounds,
                      valid_sets=[lgb.Dataset(X.loc[va, cols], y[va], reference=data)],
                      callbacks=[lgb.early_stopping(50, verbose=False)])
        rounds.append(b.best_iteration)
    return int(np.median(rounds))


def pit_join(rows: pd.DataFrame, issues: pd.DataFrame) -> pd.DataFrame:
    """The NWP inputs of `rows` (columns issued_by, target; UTC) from `issues` (target_time, issue_time,
    wind_speed, wind_u, wind_v: every stored issue): per row the latest issue at or before `issued_by` for the
    target (`covariates_at`'s rule), the issue before it (ws_prev) and the latest speeds for target -3 ... +3 h
    (SHIFTS)."""
    iss = issues.sort_values("issue_time")
    out = rows.copy()
    out["_i"] = np.arange(len(out))
    out["issued_by"], out["target"] = (pd.to_datetime(out[c], utc=True) for c in ("issued_by", "target"))

    def asof(frame, on, target_col):
        left = frame[["_i", on, target_col]].sort_values(on)
        right = iss.rename(columns={"target_time": target_col})
        got = pd.merge_asof(left, right, left_on=on, right_on="issue_time", by=target_col, direction="backward",
                            allow_exact_matches=True)
        return got.set_index("_i").sort_index()

    now = asof(out, "issued_by", "target")
    for c in ("issue_time", "wind_speed", "wind_u", "wind_v"):
        out[c] = now[c].to_numpy()
    before = out.assign(_by=pd.to_datetime(out["issue_time"], utc=True) - pd.Timedelta(microseconds=1))
    before = before.dropna(subset=["_by"])
    prev = asof(before, "_by", "target")["wind_speed"] if len(before) else pd.Series(dtype=float)
    out["ws_prev"] = prev.reindex(out["_i"]).to_numpy(dtype=float)
    for shift, name in SHIFTS.items():
        shifted = out.assign(_t=out["target"] + pd.Timedelta(hours=shift))
        out[name] = asof(shifted, "issued_by", "_t")["wind_speed"].to_numpy()
    return out.drop(columns="_i")


def recent(power: pd.Series, origins: pd.Series) -> dict[str, np.ndarray]:
    """Recent power at each origin from `power` (capacity units, indexed by hour start; the origin is the
    start of the last complete hour): that hour and the means of the last 3 and 6 (NaN where none is known)."""
    hourly = power.asfreq("h") if len(power) else power
    rolled = {"power_last": hourly, "power_mean_3h": hourly.rolling(3, min_periods=1).mean(),
              "power_mean_6h": hourly.rolling(6, min_periods=1).mean()}
    at = hourly.index.get_indexer(_times(origins))  # -1: not an hour of power
    return {k: np.append(v.to_numpy(dtype=float), np.nan)[at] for k, v in rolled.items()}


try:  # the pyfunc base class; keep this module importable for pure unit tests without MLflow loaded
    from mlflow.pyfunc import PythonModel
except ImportError:  # pragma: no cover
    PythonModel = object


class GenerationForecaster(PythonModel):
    """The MLflow pyfunc: model input = the design (FEATURES), output p10, p50, p90, point in capacity
    units. Serving multiplies by the unit's capacity (inference/generation.py)."""

    forecast_type = "generation"

    def __init__(self, model: GenerationModel):
        self.model = model
        self.features = list(model.features)

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        features = getattr(self.model, "features", FEATURES_V1)
        missing = [f for f in features if f not in model_input.columns]
        if missing:
            raise ValueError(f"model input lacks column(s) {', '.join(missing)}; expected {', '.join(features)}")
        return self.model.predict(model_input[features].astype(float))
