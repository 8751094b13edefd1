"""The Numenta Anomaly Benchmark (NAB) scoring rules, written from NAB's documentation (pure numpy).

A detector gives one anomaly score in [0, 1] per row of a data file, in file order. For one
threshold, a row is a detection when its score is >= the threshold. Rows of the probationary period
(the first min(floor(0.15 * rows), 750)) are not scored. Each labelled window counts once, at its
earliest detection, with `tpWeight * scaledSigmoid(position) / scaledSigmoid(-1)`, position being
-(rows from the detection to the window's last row, inclusive) / (window width in rows): -1 on the
first row, -1/width on the last. A window with no detection scores -fnWeight. A detection outside
every window scores `fpWeight * scaledSigmoid(rows past the preceding window's last row /
(that window's width - 1))`, or -fpWeight when no window precedes it. Windows are found by exact
timestamp equality on their start, their width from the row positions (first occurrence) of their
start and end, so rows are never sorted or de-duplicated. A window none of whose rows is scored does
not count (NAB builds its window list from scored rows; the corpus has none such).

For each profile one threshold is chosen for the whole corpus: the one that maximises the raw score
summed over all files (evaluated at every distinct score value, plus "no detection"). Normalised
score: 100 * (S - S_null) / (S_perfect - S_null), with S_null = -fnWeight and S_perfect = tpWeight
per counted window.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

PROBATION_PERCENT = 0.15
PROBATION_CAP_ROWS = 5000  # the probationary period is at most 15 % of 5000 rows = 750
NO_DETECTION = 1.1  # a threshold above every score in [0, 1]: the null detector


@dataclass(frozen=True)
class Profile:
    """One NAB cost matrix (config/profiles.json)."""

    name: str
    tp_weight: float
    fp_weight: float
    fn_weight: float


def profiles_from_config(config: Mapping) -> dict[str, Profile]:
    """NAB's profiles.json (`{name: {"CostMatrix": {"tpWeight": ...}}}`) -> {name: Profile}."""
    return {name: Profile(name, float(c["CostMatrix"]["tpWeight"]), float(c["CostMatrix"]["fpWeight"]),
                          float(c["CostMatrix"]["fnWeight"]))
            for name, c in config.items()}


def probationary_rows(n_rows: int) -> int:
    """Leading rows that are not scored: min(floor(0.15 * n), 750)."""
    return int(min(math.floor(PROBATION_PERCENT * n_rows), PROBATION_PERCENT * PROBATION_CAP_ROWS))


def scaled_sigmoid(x: np.ndarray | float) -> np.ndarray:
    """2 / (1 + e^(5x)) - 1 (0.9866 at x = -1, 0 at 0, -0.9866 at 1), and -1 from x = 3 on."""
    x = np.asarray(x, dtype=float)
    with np.errstate(over="ignore"):
        return np.where(x >= 3.0, -1.0, 2.0 / (1.0 + np.exp(5.0 * x)) - 1.0)


MAX_TP = float(scaled_sigmoid(-1.0))


@dataclass(frozen=True)
class FileLabels:
    """Where one file's rows stand against its windows (independent of the profile's weights).

    window: index of the window holding each row, -1 outside every window.
    tp_unit: for window rows, scaledSigmoid(position) / scaledSigmoid(-1) (1.0 on the first row).
    fp_unit: for other rows, scaledSigmoid(rows past the preceding window / (its width - 1)), <= 0.
    """

    name: str
    n_rows: int
    probation: int
    window: np.ndarray
    tp_unit: np.ndarray
    fp_unit: np.ndarray
    windows: tuple[tuple[int, int], ...]  # (first row, last row) of each window

    @property
    def scored(self) -> np.ndarray:
        return np.arange(self.n_rows) >= self.probation

    @property
    def counted_windows(self) -> np.ndarray:
        """Indices of windows with at least one scored row (the ones that count)."""
        return np.unique(self.window[self.scored & (self.window >= 0)])


def label_file(name: str, timestamps: Sequence, windows: Sequence[Sequence]) -> FileLabels:
    """Lay `windows` ([start, end] timestamps, both inclusive, in order) over the rows of a file.

    Timestamps are compared as given (parse both sides the same way, e.g. pandas Timestamps)."""
    ts = list(timestamps)
    n = len(ts)
    first_row: dict = {}
    for i, t in enumerate(ts):
        first_row.setdefault(t, i)
    window = np.full(n, -1, dtype=np.int64)
    position = np.zeros(n)  # in a window: -(rows to its last row, inclusive) / width; else rows past / (width - 1)
    pending = list(windows)
    spans: list[tuple[int, int]] = []
    current = None  # (index, last row, width, end timestamp)
    prev = None  # (last row, width) of the preceding window
    for i, t in enumerate(ts):
        if pending and t == pending[0][0]:
            start, end = pending.pop(0)
            if end not in first_row:
                raise ValueError(f"{name}: window end {end} is not a timestamp of the file")
            right = first_row[end]
            current = (len(spans), right, right - first_row[start] + 1, end)
            spans.append((i, right))
        if current is not None:
            window[i] = current[0]
            position[i] = -(current[1] - i + 1) / current[2]
        else:
            position[i] = 3.0 if prev is None or prev[1] <= 1 else abs(prev[0] - i) / (prev[1] - 1)
        if current is not None and t == current[3]:  # leave the window after its end row
            prev = (i, current[2])
            current = None
    if pending:
        raise ValueError(f"{name}: window starting {pending[0][0]} is not a timestamp of the file (or overlaps)")
    weight = scaled_sigmoid(position)
    inside = window >= 0
    return FileLabels(name, n, probationary_rows(n), window, np.where(inside, weight / MAX_TP, 0.0),
                      np.where(inside, 0.0, weight), tuple(spans))


@dataclass(frozen=True)
class FileScore:
    """One file at one threshold: raw score and counts (tp/fn in windows, fp in detections)."""

    name: str
    score: float
    tp: int  # windows detected
    fn: int  # windows missed
    fp: int  # scored detections outside every window
    windows: int


def score_file(labels: FileLabels, scores: np.ndarray, threshold: float, profile: Profile) -> FileScore:
    """Raw NAB score of one file's anomaly scores at `threshold` (detection: score >= threshold)."""
    scores = np.asarray(scores, dtype=float)
    if scores.shape != (labels.n_rows,):
        raise ValueError(f"{labels.name}: {scores.shape[0] if scores.ndim else 0} scores for {labels.n_rows} rows")
    detected = labels.scored & (scores >= threshold)
    fp_rows = detected & (labels.window < 0)
    total = profile.fp_weight * float(labels.fp_unit[fp_rows].sum())
    counted = labels.counted_windows
    tp = 0
    for w in counted:
        hits = detected & (labels.window == w)
        if hits.any():
            total += profile.tp_weight * float(labels.tp_unit[hits].max())
            tp += 1
        else:
            total -= profile.fn_weight
    return FileScore(labels.name, total, tp, len(counted) - tp, int(fp_rows.sum()), len(counted))


def null_score(labels: Sequence[FileLabels], profile: Profile) -> float:
    return -profile.fn_weight * sum(len(f.counted_windows) for f in labels)


def perfect_score(labels: Sequence[FileLabels], profile: Profile) -> float:
    return profile.tp_weight * sum(len(f.counted_windows) for f in labels)


def normalise(raw: float, labels: Sequence[FileLabels], profile: Profile) -> float:
    """100 * (raw - null) / (perfect - null): 0 for the null detector, 100 for the perfect one
    (NaN for files without a counted window, where both are 0)."""
    null, perfect = null_score(labels, profile), perfect_score(labels, profile)
    return 100.0 * (raw - null) / (perfect - null) if perfect != null else float("nan")


def sweep(labels: Sequence[FileLabels], scores: Sequence[np.ndarray], profile: Profile) -> tuple[np.ndarray,
                                                                                                  np.ndarray]:
    """Raw corpus score at every candidate threshold, highest threshold first: (thresholds, totals).

    The first candidate is NO_DETECTION; the others are the distinct scored values. Rows are taken
    in descending score order: a row outside a window adds its FP weight, a row inside a window
    raises that window from -fnWeight (or its earlier best) to the row's TP weight if higher."""
    values, gains, groups = [], [], []
    offset = 0
    for f, s in zip(labels, scores, strict=True):
        s = np.asarray(s, dtype=float)
        if s.shape != (f.n_rows,):
            raise ValueError(f"{f.name}: {s.shape[0] if s.ndim else 0} scores for {f.n_rows} rows")
        keep = f.scored
        win = f.window[keep]
        values.append(s[keep])
        gains.append(np.where(win >= 0, profile.tp_weight * f.tp_unit[keep], profile.fp_weight * f.fp_unit[keep]))
        groups.append(np.where(win >= 0, win + offset, -1))
        offset += len(f.windows)
    value, gain, group = np.concatenate(values), np.concatenate(gains), np.concatenate(groups)
    order = np.argsort(-value, kind="stable")
    value, gain, group = value[order], gain[order], group[order]
    step = np.where(group < 0, gain, 0.0)
    inside = np.flatnonzero(group >= 0)
    if len(inside):
        # Per window, the running best TP weight in sweep order; each row adds its improvement.
        g = group[inside]
        by_window = np.argsort(g, kind="stable")  # rows of one window, still in sweep order
        gw, vw = g[by_window], gain[inside][by_window]
        starts = np.r_[True, gw[1:] != gw[:-1]]
        seg = np.cumsum(starts) - 1
        best = np.maximum(_segment_cummax(vw, seg), -profile.fn_weight)
        prev = np.where(starts, -profile.fn_weight, np.r_[-np.inf, best[:-1]])
        improvement = best - prev
        step[inside[by_window]] = improvement
    total = null_score(labels, profile) + np.cumsum(step)
    last_of_value = np.r_[value[1:] != value[:-1], True]
    thresholds = np.r_[NO_DETECTION, value[last_of_value]]
    totals = np.r_[null_score(labels, profile), total[last_of_value]]
    return thresholds, totals


def _segment_cummax(values: np.ndarray, segment: np.ndarray) -> np.ndarray:
    """Cumulative maximum restarting at each new segment id (segments contiguous and increasing)."""
    shift = (segment.astype(float)) * (np.abs(values).max() * 4 + 4)  # lift each segment above the previous
    return np.maximum.accumulate(values + shift) - shift


@dataclass(frozen=True)
class ProfileResult:
    """A detector under one profile: the chosen threshold, raw and normalised corpus score, counts."""

    profile: str
    threshold: float
    raw: float
    normalised: float
    tp: int
    fp: int
    fn: int
    files: tuple[FileScore, ...]

    def as_dict(self, files: bool = False) -> dict:
        out = {"profile": self.profile, "threshold": self.threshold, "raw": self.raw,
               "normalised": self.normalised, "tp": self.tp, "fp": self.fp, "fn": self.fn}
        if files:
            out["files"] = {f.name: {"score": f.score, "tp": f.tp, "fp": f.fp, "fn": f.fn} for f in self.files}
        return out


def optimise(labels: Sequence[FileLabels], scores: Sequence[np.ndarray], profile: Profile) -> ProfileResult:
    """Pick the corpus-wide threshold with the highest summed raw score (ties: the highest threshold)
    and score every file at it."""
    thresholds, totals = sweep(labels, scores, profile)
    best = int(np.argmax(totals))
    return evaluate(labels, scores, profile, float(thresholds[best]))


def evaluate(labels: Sequence[FileLabels], scores: Sequence[np.ndarray], profile: Profile,
             threshold: float) -> ProfileResult:
    """Score every file at a given threshold and normalise the corpus total."""
    files = tuple(score_file(f, s, threshold, profile) for f, s in zip(labels, scores, strict=True))
    raw = float(sum(f.score for f in files))
    return ProfileResult(profile.name, threshold, raw, normalise(raw, labels, profile),
                         sum(f.tp for f in files), sum(f.fp for f in files), sum(f.fn for f in files), files)
