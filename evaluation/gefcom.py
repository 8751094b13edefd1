"""GEFCom2012 wind track, the competition's protocol (../shared/data README §4; Hong, Pinson & Fan 2014).

Test hours: the 157 48-hour windows of task=test (2011-01-01 01:00 - 2011-01-03 00:00, 2011-01-04 13:00 -
2011-01-06 12:00, repeating weekly); each window is forecast from its origin, its first hour - 1 h, with
only the weather forecasts issued at or before the origin (the origins fall on issue times, 00:00 and
12:00, so horizon h uses the issue of the origin at lead h) and only the task=train hours as known power
(a test window's truth is never an input, only the score).

Training: settings chosen once by rolling-origin validation inside the training period (before the first
window; registry/generation.tune, and the farms' own L2 boosters' rounds by unit_rounds on the last fold; the
point forecast mixes them as registry/generation.POINT_MIX says), then the model is retrained every
`retrain_days` on all rows whose target hour is a task=train hour at or before the window's origin (0: trained
once before 2011-01-01).
The p10-p90 band is calibrated (registry/generation.GenerationModel.calibrate) on the last validation fold.
Scores on the test hours: RMSE over all farms and hours and per farm next to the organisers' persistence
benchmark on the same hours (0.3537), pinball loss, p10-p90 coverage, RMSE by horizon bucket, worst windows.

Design rows for every (farm, 12-hourly origin, horizon 1-48) are built once with numpy and cached in
`cache_dir` (the NWP join is the slow part)."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import InvalidArgumentError
from registry import generation as gen

FILES = {"power": "gefcom2012_wind_power.csv.gz", "forecasts": "gefcom2012_wind_forecasts.csv.gz",
         "benchmark": "gefcom2012_wind_benchmark.csv.gz"}
ISSUE_STEP = 12  # hours between NWP issues
MAX_LEAD = 48
PERSISTENCE_RMSE = 0.3537  # the organisers' figure (README §4); recomputed from the benchmark file
FIRST_TEST = pd.Timestamp("2011-01-01T01:00:00", tz="UTC")


def check_data(data_dir: Path) -> Path:
    data_dir = Path(data_dir)
    missing = [f for f in FILES.values() if not (data_dir / f).is_file()]
    if missing:
        raise InvalidArgumentError(f"{data_dir}: missing {', '.join(missing)}; give the folder of the GEFCom2012 "
                                "wind files with --data (default ../shared/data)")
    return data_dir


@dataclass
class Gefcom:
    """The released files as arrays on one hourly axis from t0 (the first issue, 2009-07-01 00:00)."""
    t0: pd.Timestamp
    farms: list[str]
    power: np.ndarray  # (farm, hour) every released value (train and test)
    known: np.ndarray  # (farm, hour) bool: task=train, usable as history and labels
    nwp: dict[str, np.ndarray]  # variable -> (farm, issue k, lead 0..48), NaN where not issued
    benchmark: pd.DataFrame  # farm_id, hour, persistence

    def hour(self, ts) -> np.ndarray:
        return ((pd.to_datetime(ts, utc=True) - self.t0) // pd.Timedelta(hours=1)).to_numpy()

    def time(self, hours) -> pd.DatetimeIndex:
        return self.t0 + pd.to_timedelta(np.asarray(hours), unit="h")


def _utc(s: pd.Series) -> pd.Series:
    return pd.to_datetime(s).dt.tz_localize("UTC")


def load(data_dir: Path) -> Gefcom:
    data_dir = check_data(data_dir)
    power = pd.read_csv(data_dir / FILES["power"])
    fc = pd.read_csv(data_dir / FILES["forecasts"])
    bench = pd.read_csv(data_dir / FILES["benchmark"])
    power["timestamp"], bench["timestamp"] = _utc(power["timestamp"]), _utc(bench["timestamp"])
    fc["issue_time"], fc["target_time"] = _utc(fc["issue_time"]), _utc(fc["target_time"])
    t0 = fc["issue_time"].min()
    farms = sorted(power["farm_id"].unique())
    f_idx = {f: i for i, f in enumerate(farms)}
    n_hours = int(max((power["timestamp"].max() - t0) // pd.Timedelta(hours=1),
                      (fc["target_time"].max() - t0) // pd.Timedelta(hours=1))) + 1
    P = np.full((len(farms), n_hours), np.nan)
    known = np.zeros((len(farms), n_hours), dtype=bool)
    fi, hi = power["farm_id"].map(f_idx).to_numpy(), ((power["timestamp"] - t0) // pd.Timedelta(hours=1)).to_numpy()
    P[fi, hi] = power["power"].to_numpy()
    known[fi, hi] = (power["task"] == "train").to_numpy()
    issue_h = ((fc["issue_time"] - t0) // pd.Timedelta(hours=1)).to_numpy()
    if (issue_h % ISSUE_STEP).any():
        raise ValueError("GEFCom2012 forecasts are issued every 12 h from 00:00; this file has other issue times")
    k = issue_h // ISSUE_STEP
    lead = ((fc["target_time"] - fc["issue_time"]) // pd.Timedelta(hours=1)).to_numpy()
    nwp = {}
    for var, col in (("wind_speed", "ws"), ("wind_u", "u"), ("wind_v", "v")):
        arr = np.full((len(farms), k.max() + 1, MAX_LEAD + 1), np.nan)
        arr[fc["farm_id"].map(f_idx).to_numpy(), k, lead] = fc[col].to_numpy()
        nwp[var] = arr
    bench = bench.assign(hour=((bench["timestamp"] - t0) // pd.Timedelta(hours=1)).to_numpy())
    return Gefcom(t0, farms, P, known, nwp, bench.rename(columns={"power": "persistence"}))


def latest(g: Gefcom, farm: np.ndarray, origin: np.ndarray, target: np.ndarray, nth: int = 0):
    """Per row, the NWP of the `nth` latest issue (0 latest, 1 the one before) at or before `origin` that
    covers `target` (lead 1-48): (issue hour, {variable: value}); NaN where none."""
    k0 = np.minimum(origin // ISSUE_STEP, (target - 1) // ISSUE_STEP)
    n_issues = g.nwp["wind_speed"].shape[1]
    issue = np.full(len(farm), np.nan)
    seen = np.zeros(len(farm), dtype=int)
    values = {v: np.full(len(farm), np.nan) for v in g.nwp}
    for j in range(MAX_LEAD // ISSUE_STEP + 1):
        k = k0 - j
        lead = target - ISSUE_STEP * k
        ok = (k >= 0) & (k < n_issues) & (lead >= 1) & (lead <= MAX_LEAD)
        kk, ll = np.clip(k, 0, n_issues - 1), np.clip(lead, 0, MAX_LEAD)
        ws = g.nwp["wind_speed"][farm, kk, ll]
        found = ok & np.isfinite(ws)
        take = found & (seen == nth)
        issue[take] = (k * ISSUE_STEP)[take]
        for v, arr in g.nwp.items():
            values[v][take] = arr[farm, kk, ll][take]
        seen += found
    return issue, values


def _recent(g: Gefcom, farm: np.ndarray, origin: np.ndarray) -> dict[str, np.ndarray]:
    """Power known at the origin (task=train hours only): the last reading and the means of 3 and 6 hours."""
    hist = np.where(g.known, g.power, np.nan)
    out = {"power_last": hist[farm, origin]}
    for n in (3, 6):
        window = np.stack([hist[farm, np.maximum(origin - i, 0)] for i in range(n)])
        count = np.isfinite(window).sum(axis=0)
        out[f"power_mean_{n}h"] = np.where(count > 0, np.nansum(window, axis=0) / np.maximum(count, 1), np.nan)
    return out


def _others(g: Gefcom, farm: np.ndarray, origin: np.ndarray, target: np.ndarray) -> dict[str, np.ndarray]:
    """registry/generation.others: per row, the other farms' forecasts for its target by the same rule."""
    per = []
    for j in range(len(g.farms)):
        fj = np.full(len(farm), j)
        _, now = latest(g, fj, origin, target)
        before, after = (latest(g, fj, origin, target + k)[1]["wind_speed"] for k in (-1, 1))
        per.append([now["wind_speed"], now["wind_u"], now["wind_v"], before, after])
    stack = np.array(per)  # (farm, variable, row)
    stack[farm, :, np.arange(len(farm))] = np.nan  # a farm is not its own neighbour
    return gen.others(*(stack[:, i] for i in range(5)))


def rows(g: Gefcom) -> pd.DataFrame:
    """Design inputs for every farm, every issue time as origin and horizons 1-48, with the label
    (`y`, NaN where the target is not a task=train hour) and the truth (`truth`, every released value)."""
    n_issues = g.nwp["wind_speed"].shape[1]
    origins = np.arange(n_issues) * ISSUE_STEP
    grid = np.meshgrid(np.arange(len(g.farms)), origins, np.arange(1, MAX_LEAD + 1), indexing="ij")
    farm, origin, h = (a.ravel() for a in grid)
    target = origin + h
    keep = target < g.power.shape[1]
    farm, origin, h, target = farm[keep], origin[keep], h[keep], target[keep]
    issue, now = latest(g, farm, origin, target)
    _, prev = latest(g, farm, origin, target, nth=1)
    shifted = {name: latest(g, farm, origin, target + k)[1]["wind_speed"] for k, name in gen.SHIFTS.items()}
    frame = pd.DataFrame({
        "farm": farm.astype(np.int8), "origin_h": origin, "target_h": target,
        "unit": np.asarray(g.farms)[farm], "origin": g.time(origin), "target": g.time(target),
        "issue_time": g.time(np.nan_to_num(issue, nan=0).astype(int)).where(np.isfinite(issue)),
        **now, "ws_prev": prev["wind_speed"], **shifted, **_others(g, farm, origin, target),
        **_recent(g, farm, origin),
        "y": np.where(g.known[farm, target], g.power[farm, target], np.nan),
        "truth": g.power[farm, target], "test": ~g.known[farm, target] & np.isfinite(g.power[farm, target]),
    })
    return frame


def windows(g: Gefcom) -> pd.DataFrame:
    """The test windows: runs of consecutive test hours (the same for every farm), with their origin."""
    test = np.isfinite(g.power[0]) & ~g.known[0]
    hours = np.flatnonzero(test)
    starts = hours[np.r_[True, np.diff(hours) > 1]]
    ends = hours[np.r_[np.diff(hours) > 1, True]]
    return pd.DataFrame({"origin_h": starts - 1, "first_h": starts, "last_h": ends,
                         "origin": g.time(starts - 1), "hours": ends - starts + 1})


def cached_design(data_dir: Path, cache_dir: Path, progress=None) -> tuple[Gefcom, pd.DataFrame]:
    """The loaded files and the design (`rows` + registry/generation.design columns), cached by the
    files' sizes and modification times and this module's version of the design."""
    data_dir = check_data(data_dir)
    stamp = json.dumps([[f, (data_dir / f).stat().st_size, (data_dir / f).stat().st_mtime] for f in FILES.values()]
                       + [gen.FEATURES])
    key = hashlib.sha1(stamp.encode()).hexdigest()[:12]
    path = Path(cache_dir) / f"gefcom_design_{key}.parquet"
    if progress:
        progress("loading the files", 0, 3)
    g = load(data_dir)
    if path.is_file():
        return g, pd.read_parquet(path)
    if progress:
        progress("joining the weather forecasts", 1, 3)
    frame = rows(g)
    X = gen.design(frame, g.farms)
    frame = pd.concat([frame[["farm", "origin_h", "target_h", "y", "truth", "test"]], X], axis=1)
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path)
    if progress:
        progress("design cached", 2, 3)
    return g, frame


@dataclass
class Result:
    scores: pd.DataFrame  # per farm and all: rmse, persistence_rmse, mae, pinball, coverage, rows
    by_horizon: pd.DataFrame  # per horizon bucket: rmse, persistence_rmse, coverage
    worst: pd.DataFrame  # worst windows (farm, origin): rmse vs persistence
    test: pd.DataFrame  # the test rows with predictions (for the plot)
    settings: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)


BUCKET_LABELS = [f"{a + 1}-{b} h" for a, b in zip(gen.BUCKETS[:-1], gen.BUCKETS[1:], strict=True)]


def folds(d: pd.DataFrame, g: Gefcom, first_origin: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Two rolling-origin folds inside the training period (targets before the first test origin): train on
    the targets before 2010-07-01 and validate on the origins of 2010-07 - 2010-09, then train before
    2010-10-01 and validate on the origins from there to the first test origin (their targets before it)."""
    labelled = np.isfinite(d["y"].to_numpy())
    cuts = [int(g.hour(pd.Series([pd.Timestamp(c, tz="UTC")]))[0]) for c in ("2010-07-01", "2010-10-01")]
    ends = [cuts[1], first_origin]
    out = []
    for cut, end in zip(cuts, ends, strict=True):
        train = labelled & (d["target_h"].to_numpy() <= cut)
        val = labelled & (d["origin_h"].to_numpy() >= cut) & (d["target_h"].to_numpy() <= end)
        out.append((train, val))
    return out


def tuned(d: pd.DataFrame, g: Gefcom, first_origin: int, cache_dir: Path, progress=None) -> dict:
    """registry/generation.tune on the training period's folds, cached (settings and widening only)."""
    key = hashlib.sha1(json.dumps([gen.FEATURES, gen.GRID, gen.BASE_PARAMS, first_origin, len(d)],
                                  default=str).encode()).hexdigest()[:12]
    path = Path(cache_dir) / f"gefcom_tuning_{key}.json"
    if path.is_file():
        return json.loads(path.read_text())
    X = d[gen.FEATURES]
    fs = folds(d, g, first_origin)
    found = gen.tune(X, d["y"].to_numpy(), fs, progress=progress)
    _, val = fs[-1]
    model = found.pop("model")
    widen = model.calibrate(X[val], d["y"].to_numpy()[val])
    found["widen"] = widen.tolist()
    found["key"] = key
    found["validation"] = {"rows": int(val.sum()), "raw_coverage": _coverage(model.raw(X[val]), d["y"][val])}
    path.write_text(json.dumps(found, indent=1))
    return found


def tuned_units(d: pd.DataFrame, g: Gefcom, first_origin: int, found: dict, cache_dir: Path) -> int:
    """registry/generation.unit_rounds on the last fold with the chosen params, cached next to the settings."""
    path = Path(cache_dir) / f"gefcom_unit_rounds_{found['key']}.json"
    if path.is_file():
        return json.loads(path.read_text())["unit"]
    fold = folds(d, g, first_origin)[-1]
    rounds = gen.unit_rounds(d[gen.FEATURES], d["y"].to_numpy(), fold, found["params"])
    path.write_text(json.dumps({"unit": rounds}))
    return rounds


def _coverage(pred: pd.DataFrame, y) -> float:
    y = np.asarray(y, dtype=float)
    return float(np.mean((y >= pred["p10"].to_numpy()) & (y <= pred["p90"].to_numpy())))


def run(data_dir: Path, cache_dir: Path, retrain_days: int = 0, progress=None) -> Result:
    """The protocol end to end (see the module docstring)."""
    started = time.perf_counter()
    g, d = cached_design(data_dir, cache_dir, progress)
    win = windows(g)
    design_s = time.perf_counter() - started
    first = int(win["origin_h"].iloc[0])
    found = tuned(d, g, first, cache_dir, progress)
    found["rounds"] = {**found["rounds"], "unit": tuned_units(d, g, first, found, cache_dir)}
    mix_key = hashlib.sha1(json.dumps([gen.POINT_MIX, gen.UNIT_MIN_ROWS, found["rounds"]]).encode()).hexdigest()[:8]
    tune_s = time.perf_counter() - started - design_s
    # the test rows: each window's origin, its 48 hours
    is_origin = d["origin_h"].isin(win["origin_h"]).to_numpy()
    test = d[is_origin & d["test"].to_numpy() & (d["target_h"] - d["origin_h"] <= 48).to_numpy()].copy()
    # retraining schedule: at the first window, then at the first window at least retrain_days later
    schedule, last = [], None
    for o in win["origin_h"]:
        if last is None or (retrain_days and o - last >= retrain_days * 24):
            schedule.append(int(o))
            last = o
    labelled = np.isfinite(d["y"].to_numpy())
    preds, fit_s = [], []
    for i, cut in enumerate(schedule):
        nxt = schedule[i + 1] if i + 1 < len(schedule) else np.inf
        train = labelled & (d["target_h"].to_numpy() <= cut)
        part = test[(test["origin_h"] >= cut) & (test["origin_h"] < nxt)]
        cached = Path(cache_dir) / f"gefcom_pred_{found['key']}_{mix_key}_{cut}_{nxt}.parquet"
        if cached.is_file():  # the same settings, training rows and windows: the same forecasts
            preds.append(pd.read_parquet(cached))
            fit_s.append(None)
        else:
            t = time.perf_counter()
            model = gen.GenerationModel(g.farms, found["params"], found["rounds"], mix=gen.POINT_MIX)
            model.fit(d.loc[train, gen.FEATURES], d.loc[train, "y"].to_numpy())
            model.widen = np.asarray(found["widen"])
            fit_s.append(round(time.perf_counter() - t, 1))
            preds.append(model.predict(part[gen.FEATURES]))
            preds[-1].to_parquet(cached)
        if progress:
            progress(f"trained on {int(train.sum())} rows, forecast {part['origin_h'].nunique()} windows",
                     i + 1, len(schedule))
    test = test.join(pd.concat(preds))
    bench = g.benchmark.assign(farm=g.benchmark["farm_id"].map({f: i for i, f in enumerate(g.farms)}))
    bench = bench[["farm", "hour", "persistence"]].rename(columns={"hour": "target_h"})
    test = test.merge(bench, on=["farm", "target_h"], how="left")
    test["unit"] = np.asarray(g.farms)[test["farm"].to_numpy()]
    test["target"] = g.time(test["target_h"])
    test["origin"] = g.time(test["origin_h"])
    result = score(test)
    result.settings = {"retrain_days": retrain_days, "retrains": len(schedule), "params": found["params"],
                       "rounds": found["rounds"], "point_mix": gen.POINT_MIX,
                       "widen": dict(zip(BUCKET_LABELS, found["widen"], strict=True)),
                       "validation": found["validation"], "tuning": found["scores"]}
    result.timings = {"design_s": round(design_s, 1), "tuning_s": round(tune_s, 1),
                      "train_s_each": fit_s, "total_s": round(time.perf_counter() - started, 1)}
    return result


def _rmse(a, b) -> float:
    return float(np.sqrt(np.mean((np.asarray(a, dtype=float) - np.asarray(b, dtype=float)) ** 2)))


def _scores(part: pd.DataFrame) -> dict:
    y = part["truth"].to_numpy()
    return {"rmse": _rmse(part["point"], y), "rmse_p50": _rmse(part["p50"], y),
            "persistence_rmse": _rmse(part["persistence"], y), "mae": float(np.mean(np.abs(part["point"] - y))),
            "pinball": gen.pinball(y, part), "coverage_p10_p90": _coverage(part, y), "rows": int(len(part))}


def score(test: pd.DataFrame, worst: int = 10) -> Result:
    if test["persistence"].isna().any():
        raise ValueError(f"{int(test['persistence'].isna().sum())} test rows have no benchmark value")
    per = {u: _scores(p) for u, p in test.groupby("unit")}
    scores = pd.DataFrame({**per, "all": _scores(test)}).T
    b = gen.bucket(test["target_h"] - test["origin_h"])
    by_h = pd.DataFrame({BUCKET_LABELS[i]: _scores(test[b == i]) for i in np.unique(b)}).T
    w = test.groupby(["unit", "origin"]).apply(
        lambda p: pd.Series({"rmse": _rmse(p["point"], p["truth"]), "persistence_rmse": _rmse(p["persistence"],
                                                                                            p["truth"]),
                             "coverage_p10_p90": _coverage(p, p["truth"]), "mean_power": p["truth"].mean()}),
        include_groups=False)
    return Result(scores, by_h, w.sort_values("rmse", ascending=False).head(worst).reset_index(), test)
