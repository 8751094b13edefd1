"""The NAB evaluation report: markdown tables, a JSON of every figure and the per-row scores
(parquet) in one folder, the same folder logged to an MLflow run in the tenant's experiment
(skipped with a warning when MLflow cannot be reached, so the report never depends on it)."""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from core.names import TAG_MODEL_TYPE, TAG_TENANT, experiment_name
from core.settings import Settings
from evaluation.anomaly import NULL, SCOREBOARD, Evaluation
from registry import tracking

logger = logging.getLogger(__name__)

PROFILE_TITLES = {"standard": "standard", "reward_low_FP_rate": "reward low FP", "reward_low_FN_rate": "reward low FN"}


@dataclass
class Report:
    out: Path
    markdown: Path
    json: Path
    scores: Path
    doc: dict = field(repr=False)
    run_id: str | None = None
    warnings: list[str] = field(default_factory=list)


def default_out(settings: Settings, tenant: str, now: datetime | None = None) -> Path:
    now = now or datetime.now(UTC)
    return settings.home / "reports" / "nab" / f"{tenant}-{now:%Y%m%dT%H%M%SZ}"


def publish(settings: Settings, result: Evaluation, out: Path, now: datetime | None = None) -> Report:
    """Write the report into `out` and log it to MLflow when it is reachable."""
    report = write(result, out, now)
    return tracking.publish_report(settings, result.tenant, report,
                                   lambda: log_to_mlflow(settings, result, report), _default)


def write(result: Evaluation, out: Path, now: datetime | None = None) -> Report:
    now = now or datetime.now(UTC)
    out.mkdir(parents=True, exist_ok=True)
    scores = out / "scores.parquet"
    if result.scores is not None:
        result.scores.to_parquet(scores, index=False)
    md = out / "report.md"
    md.write_text(markdown(result, now))
    doc = {"generated": now.isoformat(), **result.to_dict(),
           "report": {"dir": str(out), "markdown": str(md), "json": str(out / "nab.json"), "scores": str(scores)}}
    report = Report(out, md, out / "nab.json", scores, doc)
    tracking.write_json(doc, report.json, _default)
    return report


# ---------------------------------------------------------------- markdown
def markdown(result: Evaluation, now: datetime) -> str:
    profiles = result.profiles
    titles = [PROFILE_TITLES.get(p, p) for p in profiles]
    lines = [f"# NAB evaluation · tenant `{result.tenant}`", "",
             f"Generated {now:%Y-%m-%d %H:%M} UTC from `{result.corpus}`: {len(result.files)} files, "
             f"{sum(f.rows for f in result.files):,} rows, {sum(f.windows for f in result.files)} windows."]
    if not result.complete:
        lines += ["", f"**Partial corpus** ({len(result.files)} of 58 files): these scores cannot be compared with "
                      "NAB's scoreboard."]
    lines += ["", "Streaming: each method sees rows up to t only; one threshold per profile over all files "
                  "(NAB's rule). Normalised: 0 = null detector, 100 = perfect.", "",
              "## Normalised NAB score", "", _row(["method", *titles]), _row(["---"] + ["---:"] * len(titles))]
    for method in [*result.methods, NULL]:
        lines.append(_row([f"**{method}**" if method == result.best() else method,
                           *[f"{result.results[method][p].normalised:.1f}" for p in profiles]]))
    lines += ["", "Published (NAB v1.0 scoreboard): " + "; ".join(
        f"{name} {' / '.join(f'{v:.1f}' for v in vals)}" for name, vals in SCOREBOARD.items()) + ".", "",
        "## Thresholds and counts", "",
        "TP and FN count windows (detected / missed), FP counts scored detections outside every window.", "",
        _row(["method", "profile", "threshold", "raw score", "TP", "FP", "FN"]), _row(["---"] * 2 + ["---:"] * 5)]
    for method in result.methods:
        for p, title in zip(profiles, titles, strict=True):
            r = result.results[method][p]
            lines.append(_row([method, title, f"{r.threshold:.6f}", f"{r.raw:.2f}", r.tp, r.fp, r.fn]))
    lines += ["", "## Per file (standard profile, raw score)", "", _row(["file", "rows", "from file", *result.methods]),
              _row(["---"] + ["---:"] * (2 + len(result.methods)))]
    for i, f in enumerate(result.files):
        cells = [f"{result.results[m]['standard'].files[i].score:.2f}" for m in result.methods]
        lines.append(_row([f.name, f.rows, f.from_file, *cells]))
    lines += ["", "Every file row is fed and scored in file order, repeated timestamps included (as NAB does). "
                  "`from file`: rows whose timestamp the warehouse holds no reading for (conflicting values at one "
                  "timestamp, rejected by ingest), fed with the file's own value.", "",
              "## Run", "", f"Ingest: {result.ingest}", "",
              "Seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in result.seconds.items()), "",
              f"Streaming settings: {result.settings}", ""]
    return "\n".join(lines)


def _row(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


# ---------------------------------------------------------------- MLflow
def log_to_mlflow(settings: Settings, result: Evaluation, report: Report) -> str:
    """A run `nab evaluation` in experiment tenant-{tenant}: params, metrics, the report folder."""
    import mlflow

    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_experiment(experiment_name(result.tenant))
    tags = {TAG_TENANT: result.tenant, TAG_MODEL_TYPE: "anomaly", "run_type": "nab_evaluation"}
    with mlflow.start_run(run_name="nab evaluation", tags=tags) as run:
        mlflow.log_params({"methods": ",".join(result.methods), "files": len(result.files),
                           "complete_corpus": result.complete, "corpus": result.corpus,
                           **{f"streaming.{k}": v for k, v in result.settings.items()}})
        mlflow.log_metrics(metric_dict(result))
        mlflow.log_artifacts(str(report.out))
    return run.info.run_id


def metric_dict(result: Evaluation) -> dict[str, float]:
    """`{method}.{profile}.{score|raw|threshold|tp|fp|fn}` plus `seconds.{step}`."""
    out = {}
    for method, by in result.results.items():
        for p, r in by.items():
            out |= {f"{method}.{p}.score": r.normalised, f"{method}.{p}.raw": r.raw,
                    f"{method}.{p}.threshold": r.threshold, f"{method}.{p}.tp": r.tp,
                    f"{method}.{p}.fp": r.fp, f"{method}.{p}.fn": r.fn}
    out |= {f"seconds.{k}": v for k, v in result.seconds.items()}
    return {k: float(v) for k, v in out.items() if math.isfinite(v)}



def _default(value):
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    return str(value)
