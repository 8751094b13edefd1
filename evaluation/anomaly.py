"""NAB evaluation through the product's own path: the corpus is ingested into a tenant with the
project's ingest (one asset per data file), each series is read back from the warehouse, every
streaming method (registry/streaming.py) scores it row by row, and registry/nab.py scores the
result under the three NAB profiles.

NAB feeds every row of a file to a detector in file order, repeated timestamps included, and scores
each. So do we: the detectors run on the file's rows in file order, each row carrying the stored
reading at its timestamp (the warehouse holds one reading per (asset, time), so identical copies of a
row share it). Where the warehouse holds no reading for a timestamp (copies whose values conflict:
ingest rejects them all) the row carries the file's own value; `FileInfo.from_file` counts those rows.
The detectors' usual step ignores repeated timestamps (evaluation/streaming.py, period_steps).
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import EmsError
from core.names import check_tenant_id
from core.settings import Settings
from evaluation import nab, nab_corpus, streaming
from warehouse.db import connect
from warehouse.ingest import ingest_readings

logger = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]  # (step, done, total)
DEFAULT_TENANT = "nab"
NULL = "null"  # the baseline that never detects (normalises to 0 by construction)
CORPUS_FILES = 58  # scores are comparable with NAB's scoreboard only on the full corpus
SCOREBOARD = {  # NAB README (normalised standard / reward low FP / reward low FN)
    "ARTime": (74.9, 65.1, 80.4), "Numenta HTM": (70.5, 62.6, 75.2), "CAD OSE": (69.9, 67.0, 73.2),
    "Random Cut Forest": (51.7, 38.4, 59.7), "Windowed Gaussian": (39.6, 20.9, 47.4), "Null": (0.0, 0.0, 0.0),
}


class InvalidMethodsError(EmsError, ValueError):
    """A streaming method that does not exist."""


@dataclass(frozen=True)
class FileInfo:
    name: str
    asset_id: str
    rows: int  # rows of the data file (the rows NAB scores)
    stored: int  # readings the warehouse holds for the asset
    from_file: int  # file rows without a stored reading at their timestamp (fed with the file's value)
    windows: int


@dataclass
class Evaluation:
    tenant: str
    corpus: str
    methods: list[str]
    files: list[FileInfo]
    results: dict[str, dict[str, nab.ProfileResult]]  # method (and NULL) -> profile -> result
    ingest: dict = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    settings: dict = field(default_factory=lambda: asdict(streaming.DEFAULT))
    scores: pd.DataFrame | None = field(default=None, repr=False)  # per row: file, timestamp, window, methods

    @property
    def complete(self) -> bool:
        return len(self.files) == CORPUS_FILES

    @property
    def profiles(self) -> list[str]:
        return list(next(iter(self.results.values())))

    def best(self, profile: str = "standard") -> str:
        return max(self.methods, key=lambda m: self.results[m][profile].normalised)

    def table(self) -> pd.DataFrame:
        """One row per (method, profile): normalised and raw score, threshold, TP/FP/FN."""
        return pd.DataFrame([{"method": m, **r.as_dict()} for m, by in self.results.items() for r in by.values()])

    def to_dict(self) -> dict:
        return {
            "tenant": self.tenant, "corpus": self.corpus, "files": len(self.files), "complete": self.complete,
            "methods": self.methods, "best": {p: self.best(p) for p in self.profiles},
            "results": {m: {p: r.as_dict() for p, r in by.items()} for m, by in self.results.items()},
            "per_file": {m: by["standard"].as_dict(files=True)["files"] for m, by in self.results.items()},
            "file_rows": [asdict(f) for f in self.files], "ingest": self.ingest, "seconds": self.seconds,
            "streaming_settings": self.settings, "scoreboard": SCOREBOARD,
        }


def check_methods(methods: Iterable[str] | None) -> list[str]:
    """The methods to run (all by default), validated before any I/O."""
    chosen = list(dict.fromkeys(methods or streaming.METHODS))
    unknown = [m for m in chosen if m not in streaming.METHODS]
    if unknown:
        raise InvalidMethodsError(f"method(s) {', '.join(map(repr, unknown))} unknown; choose from "
                                  f"{', '.join(streaming.METHODS)}")
    return chosen


def run(settings: Settings, corpus_dir: Path, tenant: str = DEFAULT_TENANT, methods: Iterable[str] | None = None,
        rejects: Path | None = None, progress: Progress | None = None) -> Evaluation:
    """Ingest the corpus into `tenant` (idempotent), run each method on every file row in file order (the
    stored readings, `feed`), score."""
    check_tenant_id(tenant)
    methods = check_methods(methods)
    corpus = nab_corpus.load(corpus_dir)
    step = progress or (lambda *_: None)
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    files = {name: corpus.read(name) for name in corpus.names}
    assets = {name: nab_corpus.asset_id(name) for name in corpus.names}
    report = ingest(settings, files, assets, tenant, rejects, step)
    seconds["ingest"] = time.perf_counter() - started

    lap = time.perf_counter()
    step("read back", 0, 1)
    stored = read_series(settings, tenant, list(assets.values()))
    seconds["read"] = time.perf_counter() - lap
    infos, labels, rows_of = [], [], []
    for name, frame in files.items():
        series = stored.get(assets[name])
        if series is None:
            raise EmsError(f"no readings of asset {assets[name]} in tenant {tenant} after ingest")
        fed = feed(frame, series)
        labels.append(corpus.labels(name, frame["timestamp"]))
        rows_of.append(fed)
        infos.append(FileInfo(name, assets[name], len(frame), len(series), fed.attrs["from_file"],
                              len(corpus.windows[name])))

    per_method: dict[str, list[np.ndarray]] = {}
    for method in methods:
        lap = time.perf_counter()
        out = []
        for i, fed in enumerate(rows_of):
            step(method, i, len(infos))
            out.append(streaming.detect(method, fed["value"].to_numpy(), fed["ts"].to_numpy()))
        per_method[method] = out
        seconds[method] = time.perf_counter() - lap
        logger.info("%s: %d files in %.1f s", method, len(infos), seconds[method])

    step("score", 0, 1)
    results = {m: {p.name: nab.optimise(labels, s, p) for p in corpus.profiles.values()}
               for m, s in per_method.items()}
    null = [np.zeros(f.n_rows) for f in labels]
    results[NULL] = {p.name: nab.evaluate(labels, null, p, nab.NO_DETECTION) for p in corpus.profiles.values()}
    seconds["total"] = time.perf_counter() - started
    scores = _score_frame(files, labels, per_method)
    return Evaluation(tenant, str(corpus_dir), methods, infos, results, _ingest_summary(report), seconds,
                      scores=scores)


def ingest(settings: Settings, files: dict[str, pd.DataFrame], assets: dict[str, str], tenant: str,
           rejects: Path | None, step: Progress):
    """All files as one tidy CSV (asset_id, timestamp, value; naive times read as UTC) through
    warehouse.ingest: validated, written in one transaction, a rerun changes nothing."""
    tidy = pd.concat([pd.DataFrame({"asset_id": assets[name], "timestamp": frame["timestamp"],
                                    "value": frame["value"]}) for name, frame in files.items()])
    with tempfile.TemporaryDirectory(prefix="ems-nab-") as tmp:
        path = Path(tmp) / "nab_readings.csv"
        tidy.to_csv(path, index=False, date_format=nab_corpus.TIME_FORMAT)
        return ingest_readings(settings, path, tenant, tz="UTC", reject_file=rejects,
                               progress=lambda done, total: step("ingest", done, total))


def read_series(settings: Settings, tenant: str, assets: list[str]) -> dict[str, pd.DataFrame]:
    """The stored readings of each asset in time order: {asset_id: frame(ts naive UTC, value)}."""
    with connect(settings) as conn:
        rows = conn.execute(
            "SELECT asset_id, ts, value FROM readings WHERE tenant_id = %(tenant)s AND asset_id = ANY(%(assets)s) "
            "ORDER BY asset_id, ts", {"tenant": tenant, "assets": assets}).fetchall()
    frame = pd.DataFrame(rows, columns=["asset_id", "ts", "value"])
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True).dt.tz_localize(None).astype("datetime64[ns]")
    frame["value"] = frame["value"].astype(float)
    return {asset: part[["ts", "value"]].reset_index(drop=True) for asset, part in frame.groupby("asset_id")}


def align(file_times: pd.Series, stored_times: pd.Series, repeats: bool = False) -> tuple[np.ndarray, int]:
    """For each file row, the position of the stored reading with its timestamp (-1 for a timestamp the
    warehouse does not hold, and for a repeat of an earlier row's timestamp unless `repeats`), and how
    many are -1."""
    ft = pd.to_datetime(file_times).to_numpy(dtype="datetime64[ns]")
    st = pd.to_datetime(stored_times).to_numpy(dtype="datetime64[ns]")
    pos = np.searchsorted(st, ft)
    found = (pos < len(st)) & (st[np.minimum(pos, len(st) - 1)] == ft)
    if not repeats:
        found &= ~pd.Series(ft).duplicated().to_numpy()
    rows = np.where(found, pos, -1)
    return rows, int((rows < 0).sum())


def feed(frame: pd.DataFrame, stored: pd.DataFrame) -> pd.DataFrame:
    """The rows a detector is fed for one file, in file order (ts, value): the stored reading at each
    row's timestamp, the file's value where the warehouse holds none (`attrs["from_file"]` counts them)."""
    rows, _ = align(frame["timestamp"], stored["ts"], repeats=True)
    own = pd.to_numeric(frame["value"], errors="coerce").to_numpy(dtype=float)
    values = np.where(rows >= 0, stored["value"].to_numpy(dtype=float)[np.maximum(rows, 0)], own)
    out = pd.DataFrame({"ts": pd.to_datetime(frame["timestamp"]).to_numpy(dtype="datetime64[ns]"), "value": values})
    out.attrs["from_file"] = int((rows < 0).sum())
    return out


def _ingest_summary(report) -> dict:
    keys = ("rows_read", "inserted", "updated", "unchanged", "rejected", "reject_file", "seconds")
    return {k: getattr(report, k) for k in keys} | {"assets": len(report.assets)}


def _score_frame(files: dict[str, pd.DataFrame], labels: list[nab.FileLabels],
                 per_method: dict[str, list[np.ndarray]]) -> pd.DataFrame:
    parts = []
    for i, (name, frame) in enumerate(files.items()):
        part = pd.DataFrame({"file": name, "timestamp": frame["timestamp"], "window": labels[i].window,
                             "scored": labels[i].scored})
        for method, scores in per_method.items():
            part[method] = scores[i].astype(np.float32)
        parts.append(part)
    return pd.concat(parts, ignore_index=True)
