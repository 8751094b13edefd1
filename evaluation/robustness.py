"""Robustness of the load forecaster to what real feeds do, on a tenant's ingested data: hours missing
before the issue time, and a level shift (a load multiplied by a factor from one day on).

Design: the backtest's model and rows (evaluation/backtest.py: trained once before the test window,
Feast point-in-time features, shared cutoff). At `origins` daily origins spread over each asset's test
window, the day-ahead forecast (horizons 1-24) is made once from the stored history and once more for
each gap length L with the L hours before the origin hidden: every input read from the load (the
service's lags and rolling statistics as Feast would return them, the target-aligned lags, the GAP
inputs; registry/gaps.py, recompute) is recomputed from the history without those hours; calendar,
weather and peers are kept. The actuals are the stored ones. The bar: the gapped forecast's MAE
within GAP_RATIO x the same origin's MAE without the gap, and never above the MAE of naive-168 with
its fallbacks (the other seasonal-naive forecast, then the last value) on the gapped history.

Level shift: from the end of the test window's first day on (`shift_start`), the asset's load, its
inputs and its actuals are multiplied by each factor; the day-ahead forecasts of the SHIFT_DAYS daily
origins after it are scored against naive-24 on the shifted series. The bar: skill vs naive-24 > 0 from
the SHIFT_BAR_DAY-th day after the shift on.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from core.errors import EmsError
from core.names import DEFAULT_FORECAST_SERVICE
from core.settings import Settings
from registry import train_forecast, training_data
from registry.design import HORIZON, HOUR, baselines
from registry.gaps import LOAD_STATE_COLUMNS, gap_state, hide, recompute, reissue_gap

logger = logging.getLogger(__name__)
Progress = Callable[[str, int, int], None]

GAPS = (6, 18, 30, 72)
SHIFTS = (2.0, 0.5)
GAP_RATIO = 1.25  # the gapped day-ahead MAE may be at most this times the MAE without the gap
SHIFT_DAYS = 7  # origins scored after a level shift
SHIFT_BAR_DAY = 3  # from this day after the shift on, skill vs naive-24 must be above 0
DAY = 24
MIN_TRAIN_DAYS = 21
GAP_COLUMNS = ["asset_id", "issue_time", "gap_h", "model_mae", "clean_mae", "ratio", "naive_168_mae",
               "in_place_mae", "reissued_h", "passed"]
SHIFT_COLUMNS = ["asset_id", "factor", "day", "issue_time", "model_mae", "naive_24_mae", "skill",
                 "unshifted_model_mae", "unshifted_naive_24_mae"]


class InvalidRobustnessError(EmsError, ValueError):
    """Robustness settings out of range (gaps, factors, origins)."""


@dataclass
class RobustnessResult:
    tenant: str
    service: str
    gap_hours: tuple[int, ...]
    factors: tuple[float, ...]
    origins: int
    gaps: pd.DataFrame  # GAP_COLUMNS: one row per asset, origin and gap length
    shifts: pd.DataFrame  # SHIFT_COLUMNS: one row per asset, factor and day after the shift
    features: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def gap_table(self) -> pd.DataFrame:
        """Per gap length: origins, origins within GAP_RATIO, mean and worst ratio, origins worse than
        naive-168 (with fallbacks), pooled MAE with and without the gap."""
        g = self.gaps
        out = g.groupby("gap_h").agg(origins=("ratio", "size"), within=("passed", "sum"),
                                     mean_ratio=("ratio", "mean"), worst_ratio=("ratio", "max"),
                                     model_mae=("model_mae", "mean"), clean_mae=("clean_mae", "mean"),
                                     naive_168_mae=("naive_168_mae", "mean"))
        out["worse_than_naive_168"] = g.assign(w=g["model_mae"] > g["naive_168_mae"]).groupby("gap_h")["w"].sum()
        # issued at the origin with the gap's inputs missing, instead of at the last reading
        out["in_place_mean_ratio"] = (g["in_place_mae"] / g["clean_mae"]).groupby(g["gap_h"]).mean()
        out["clean_worse_than_naive_168"] = g.assign(w=g["clean_mae"] > g["naive_168_mae"]).groupby("gap_h")["w"].sum()
        return out

    def shift_table(self) -> pd.DataFrame:
        """Per factor and day after the shift: skill vs naive-24 pooled over assets (MAE ratio of sums)."""
        s = self.shifts
        out = s.groupby(["factor", "day"]).agg(model_mae=("model_mae", "sum"), naive_24_mae=("naive_24_mae", "sum"),
                                               m0=("unshifted_model_mae", "sum"), n0=("unshifted_naive_24_mae", "sum"))
        out["skill"] = 1 - out["model_mae"] / out["naive_24_mae"]
        # the model's skill on the same days without the shift: a day where it is below 0 there is a day
        # naive-24 wins anyway (a weekday after a holiday, a weather change), not the shift's doing
        out["unshifted_skill"] = 1 - out.pop("m0") / out.pop("n0")
        return out

    @property
    def passed(self) -> dict[str, bool]:
        """The bars: every gapped origin within GAP_RATIO and not worse than naive-168; every factor's
        skill vs naive-24 above 0 on each day from SHIFT_BAR_DAY on."""
        shift = self.shift_table()
        late = shift[shift.index.get_level_values("day") >= SHIFT_BAR_DAY]
        return {"gaps": bool(self.gaps["passed"].all()) if len(self.gaps) else False,
                "level_shift": bool((late["skill"] > 0).all()) if len(late) else False}

    def to_dict(self) -> dict:
        def rows(frame: pd.DataFrame) -> list[dict]:
            return [{k: _plain(v) for k, v in r.items()} for r in frame.reset_index().to_dict(orient="records")]

        return {"tenant": self.tenant, "service": self.service, "gap_hours": list(self.gap_hours),
                "factors": list(self.factors), "origins": self.origins, "gap_ratio_bar": GAP_RATIO,
                "shift_bar_day": SHIFT_BAR_DAY, "passed": self.passed, "gap_table": rows(self.gap_table()),
                "shift_table": rows(self.shift_table()), "gaps": rows(self.gaps), "shifts": rows(self.shifts),
                "features": self.features, "timings": self.timings}


def check(gap_hours: Iterable[int], factors: Iterable[float], origins: int, history_days: int
          ) -> tuple[tuple[int, ...], tuple[float, ...]]:
    gs = tuple(sorted({int(g) for g in gap_hours}))
    fs = tuple(float(f) for f in factors)
    if not gs and not fs:
        raise InvalidRobustnessError("nothing to test: give gap lengths (e.g. 6,18,30,72) or level-shift factors "
                                     "(e.g. 2,0.5)")
    for g in gs:
        if not 1 <= g <= 168:
            raise InvalidRobustnessError(f"gap={g} h is out of range 1..168")
    for f in fs:
        if not (math.isfinite(f) and 0 < f <= 100 and f != 1):
            raise InvalidRobustnessError(f"level-shift factor={f:g} is out of range (0, 100] and not 1")
    if not isinstance(origins, int) or isinstance(origins, bool) or not 1 <= origins <= 60:
        raise InvalidRobustnessError(f"origins={origins!r} is out of range 1..60")
    if not isinstance(history_days, int) or history_days < MIN_TRAIN_DAYS + test_days(origins, fs) + 1:
        raise InvalidRobustnessError(f"history_days={history_days!r} must exceed {MIN_TRAIN_DAYS} training days plus "
                                     f"the {test_days(origins, fs)}-day test window")
    return gs, fs


def test_days(origins: int, factors: tuple[float, ...]) -> int:
    """Days of each asset's test window: a week per gap origin, and the shift's days."""
    return max(7 * origins, (SHIFT_DAYS + 2) if factors else 0)


def run(settings: Settings, store, tenant: str, assets: list[str] | None = None, gap_hours: Iterable[int] = GAPS,
        factors: Iterable[float] = SHIFTS, origins: int = 6, service: str = DEFAULT_FORECAST_SERVICE,
        history_days: int = 400, boosting: train_forecast.BoosterConfig | None = None,
        split: training_data.SplitConfig | None = None, progress: Progress | None = None) -> RobustnessResult:
    """Train once before each asset's last `test_days` days, then score day-ahead forecasts issued after
    hidden gaps (`origins` origins a week apart) and after level shifts (module docstring)."""
    gs, fs = check(gap_hours, factors, origins, history_days)
    tick = progress or (lambda *_: None)
    timings, t0 = {}, time.perf_counter()
    days = test_days(origins, fs)
    base = split or training_data.SplitConfig()
    split = training_data.SplitConfig(**{**vars(base), "history_days": history_days, "holdout_days": days,
                                         "min_history_days": days + MIN_TRAIN_DAYS, "shared_cutoff": True})
    tick("training set", 0, 4)
    p = training_data.plan(settings, store, tenant, assets, service, split)
    ts = training_data.build(store, p)
    tick("fit", 1, 4)
    t1 = time.perf_counter()
    model = train_forecast.fit(ts, boosting or train_forecast.BoosterConfig())
    timings["fit_s"] = time.perf_counter() - t1
    tick("gaps and level shifts", 2, 4)
    gaps, shifts = score(model, ts, gs, fs, origins, point_in_time_inputs(store, ts))
    timings["total_s"] = time.perf_counter() - t0
    tick("done", 4, 4)
    return RobustnessResult(tenant, service, gs, fs, origins, gaps, shifts, ts.features, timings)


def score(model, ts: training_data.TrainingSet, gap_hours: tuple[int, ...], factors: tuple[float, ...],
          origins: int, issue_inputs: Callable[[pd.DataFrame], pd.DataFrame] | None = None
          ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The gap rows (GAP_COLUMNS) and level-shift rows (SHIFT_COLUMNS) of a fitted model on its
    training set's held-out days (module docstring). `issue_inputs`: rows -> the rows with the inputs
    not read from the load (weather) at their issue times (point_in_time_inputs); None keeps them."""
    gs, fs = gap_hours, factors
    rows = ts.holdout[ts.holdout[HORIZON] <= DAY]
    gap_rows = []
    for asset, part in rows.groupby("asset_id", sort=True):
        series = ts.series[asset]
        issues = np.sort(part["issue_time"].unique())
        for o in [pd.Timestamp(issues[k]) for k in range(0, len(issues), 7)][:origins]:
            day = part[part["issue_time"] == o]
            y = day["y"].to_numpy(dtype=float)
            clean = _mae(_point(model, day, asset), y)
            for g in gs:
                hidden = hide(series[series.index <= o], [(o - g * HOUR, o)])
                gapped = recompute(day, hidden, model.features)
                naive = baselines(hidden, gapped["issue_time"].reset_index(drop=True),
                                  gapped[HORIZON].reset_index(drop=True))["naive_168"]
                # served as Client.forecast serves it: past the views' TTL the forecast is issued at the
                # last reading for the same target hours (registry/gaps.py, reissue_gap); `in_place`: issued
                # at o with the inputs that read the gap missing (what the model alone makes of it)
                in_place = _mae(_point(model, gapped, asset), y)
                back = reissue_gap(float(gap_state(hidden, [o])["hours_since_reading"][0]), DAY)
                if back is not None:
                    moved = day.assign(issue_time=o - back * HOUR, **{HORIZON: day[HORIZON] + back})
                    moved = recompute(moved, hidden, model.features)
                    if issue_inputs is not None:  # weather (and other issue-time inputs) at the last reading
                        moved = issue_inputs(moved)
                    m = _mae(_point(model, moved, asset), y)
                else:
                    m = in_place
                n = _mae(naive, y)
                ratio = m / clean if clean > 0 else math.nan
                gap_rows.append({"asset_id": asset, "issue_time": o, "gap_h": g, "model_mae": m, "clean_mae": clean,
                                 "ratio": ratio, "naive_168_mae": n, "in_place_mae": in_place,
                                 "reissued_h": back or 0,
                                 "passed": bool(ratio <= GAP_RATIO and m <= n)})
    shift_rows = []
    for asset, part in rows.groupby("asset_id", sort=True):
        series = ts.series[asset]
        start = pd.Timestamp(np.sort(part["issue_time"].unique())[0]) + pd.Timedelta(days=1)
        for f in fs:
            shifted = series.where(series.index <= start, series * f)
            for k in range(1, SHIFT_DAYS + 1):
                o = start + pd.Timedelta(days=k)
                day = part[part["issue_time"] == o]
                if day.empty:
                    continue
                moved = recompute(day, shifted[shifted.index <= o], model.features)
                y = day["y"].to_numpy(dtype=float) * f
                naive = baselines(shifted[shifted.index <= o], moved["issue_time"].reset_index(drop=True),
                                  moved[HORIZON].reset_index(drop=True))["naive_24"]
                m, n = _mae(_point(model, moved, asset), y), _mae(naive, y)
                y0 = day["y"].to_numpy(dtype=float)  # the same day without the shift
                m0, n0 = _mae(_point(model, day, asset), y0), _mae(day["naive_24"], y0)
                shift_rows.append({"asset_id": asset, "factor": f, "day": k, "issue_time": o, "model_mae": m,
                                   "naive_24_mae": n, "skill": 1 - m / n if n > 0 else math.nan,
                                   "unshifted_model_mae": m0, "unshifted_naive_24_mae": n0})
    return pd.DataFrame(gap_rows, columns=GAP_COLUMNS), pd.DataFrame(shift_rows, columns=SHIFT_COLUMNS)


def point_in_time_inputs(store, ts: training_data.TrainingSet) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """rows -> a copy with the service's issue-time inputs that are not read from the load (weather)
    as Feast's point-in-time join returns them at each row's issue time, as served."""
    from warehouse.store import grid_features

    names = [c for c in ts.issue_features if c not in LOAD_STATE_COLUMNS]

    def read(rows: pd.DataFrame) -> pd.DataFrame:
        if not names:
            return rows
        keys = rows[["asset_id", "issue_time"]].drop_duplicates()
        entity = pd.DataFrame({"tenant_id": ts.tenant, "asset_id": keys["asset_id"].to_numpy(),
                               "event_timestamp": keys["issue_time"].to_numpy(),
                               "target_time": keys["issue_time"].to_numpy()})  # the calendar view's key
        got = store.get_historical_features(entity_df=entity, features=grid_features(store, ts.service)).to_df()
        got = got.set_index(["asset_id", "event_timestamp"])
        values = got.reindex(pd.MultiIndex.from_arrays([rows["asset_id"], rows["issue_time"]]))
        out = rows.copy()
        for c in names:
            if c in values.columns:
                out[c] = values[c].to_numpy(dtype=float)
        return out

    return read


def _point(model, rows: pd.DataFrame, asset: str) -> np.ndarray:
    return model.predict_matrix(rows[model.features].to_numpy(dtype=float), asset)["point"]


def _mae(forecast, y) -> float:
    forecast, y = np.asarray(forecast, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(forecast) & np.isfinite(y)
    return float(np.mean(np.abs(forecast[keep] - y[keep]))) if keep.any() else math.nan


def _plain(v):
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, pd.Timestamp):
        return v.isoformat()
    return None if isinstance(v, float) and not math.isfinite(v) else v
