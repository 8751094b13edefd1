"""Bench rows, timing and the report (JSON + markdown).

Every figure is paired with a floor measured in the same run on the same data: the two are timed in
alternation (project, floor, project, ...) after a warm-up, so machine noise hits both alike."""

from __future__ import annotations

import gc
import json
import platform
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from core.formats import number


@dataclass
class Row:
    """One benchmark row. `ratio` = project / floor (for throughput too, then higher is better)."""

    name: str
    unit: str  # ms | s | rows/s
    project: float
    floor: float | None
    target: str  # human-readable, e.g. "<= 2x"
    passed: bool
    ratio: float | None = None
    stock: float | None = None  # stock Feast 0.67 on the same data, same unit, where it applies
    stock_note: str = ""
    floor_desc: str = ""
    details: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def ratio_row(name: str, unit: str, project: float, floor: float, *, max_ratio: float | None = None,
              min_ratio: float | None = None, max_abs: float | None = None, stock: float | None = None,
              stock_note: str = "", floor_desc: str = "", details: dict | None = None) -> Row:
    """A row judged by its ratio to the floor (<= max_ratio, or >= min_ratio for throughput) and
    optionally by an absolute ceiling on the project figure."""
    ratio = project / floor if floor else float("inf")
    checks, parts = [], []
    if max_ratio is not None:
        checks.append(ratio <= max_ratio)
        parts.append(f"<= {max_ratio:g}x")
    if min_ratio is not None:
        checks.append(ratio >= min_ratio)
        parts.append(f">= {min_ratio:g}x")
    if max_abs is not None:
        checks.append(project < max_abs)
        parts.append(f"< {max_abs:g} {unit}")
    return Row(name, unit, project, floor, " and ".join(parts), all(checks), ratio, stock, stock_note,
               floor_desc, details or {})


def absolute_row(name: str, unit: str, project: float, max_abs: float, floor: float | None = None,
                 floor_desc: str = "", details: dict | None = None) -> Row:
    """A row judged by an absolute ceiling (the floor is shown for context)."""
    return Row(name, unit, project, floor, f"< {max_abs:g} {unit}", project < max_abs,
               project / floor if floor else None, floor_desc=floor_desc, details=details or {})


# ---------------------------------------------------------------------------------------- timing
def paired(project: Callable[[], object], floor: Callable[[], object], reps: int,
           warmup: int) -> tuple[list[float], list[float]]:
    """Time both in alternation; returns (project ms, floor ms) samples after the warm-up. Starts from a
    collected heap, so garbage the earlier rows left behind (ingest frames, materialize batches) is not
    swept inside these calls."""
    gc.collect()
    ours, raw = [], []
    for i in range(warmup + reps):
        t0 = time.perf_counter()
        project()
        t1 = time.perf_counter()
        floor()
        t2 = time.perf_counter()
        if i >= warmup:
            ours.append((t1 - t0) * 1e3)
            raw.append((t2 - t1) * 1e3)
    return ours, raw


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    """(seconds, result) of one call."""
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def p(samples: list[float], q: float) -> float:
    return float(np.percentile(samples, q))


def summary(samples: list[float]) -> dict[str, float]:
    return {"p50": p(samples, 50), "p99": p(samples, 99), "mean": statistics.fmean(samples), "n": len(samples)}


def peak_rss_mb() -> float:
    """Peak resident set of this process image: VmHWM, which starts afresh at exec (ru_maxrss would
    carry over the parent's peak into a child started by `ems bench`)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------------------------------- report
def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    spec = ",.0f" if unit == "rows/s" or value >= 100 else ".3g"
    return f"{number(value, spec, missing='-')} {unit}"


def markdown(rows: list[Row], meta: dict) -> str:
    lines = [
        f"`ems bench{' --quick' if meta.get('quick') else ''}` on {meta['host']} ({meta['cpus']} CPUs), "
        f"{meta['started']}, data: {meta.get('data', '-')}",
        "",
        "| row | project | floor (same run) | ratio | stock Feast 0.67 | target | pass |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        stock = fmt(r.stock, r.unit) if r.stock is not None else (r.stock_note or "-")
        if r.stock is not None and r.stock_note:
            stock += f" ({r.stock_note})"
        ratio = f"{r.ratio:.2f}x" if r.ratio is not None else "-"
        lines.append(f"| {r.name} | {fmt(r.project, r.unit)} | {fmt(r.floor, r.unit)} | {ratio} | {stock} "
                     f"| {r.target} | {'pass' if r.passed else 'FAIL'} |")
    lines += ["", "Floors:", ""] + [f"- {r.name}: {r.floor_desc}" for r in rows if r.floor_desc]
    return "\n".join(lines) + "\n"


def meta(quick: bool, data: str) -> dict:
    import os

    return {"started": datetime.now(UTC).isoformat(timespec="seconds"), "host": platform.node(),
            "cpus": os.cpu_count(), "python": platform.python_version(), "quick": quick, "data": data}


def write_report(rows: list[Row], info: dict, out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    stamp = info["started"].replace(":", "").replace("-", "")[:15]
    doc = {"meta": info, "rows": [r.as_dict() for r in rows], "passed": all(r.passed for r in rows)}
    js = out / f"bench-{stamp}.json"
    md = out / f"bench-{stamp}.md"
    js.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    md.write_text(markdown(rows, info))
    (out / "latest.json").write_text(js.read_text())
    (out / "latest.md").write_text(md.read_text())
    return js, md


@dataclass
class Context:
    """What every row function gets: the local stack's settings, the mode and a scratch folder."""

    settings: object  # core.settings.Settings
    quick: bool
    work: Path  # caches and scratch files (settings.home / "bench")
    log: Callable[[str], None] = print
    training_rows: tuple[int, ...] | None = None  # `ems bench --training-rows`: the training-set sizes (scale)

    @property
    def reps(self) -> int:
        """Repetitions for latency rows (p99 needs a few hundred)."""
        return 200 if self.quick else 1000

    @property
    def warmup(self) -> int:
        return 20 if self.quick else 50
