"""Bench bookkeeping: ratios, pass/fail, the report, and the derived data set (no services)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from bench import core
from bench.data import DAYS, START, DataSet, _real_series, asset_id, frame_for
from bench.rows_features import entity_frame


def test_ratio_rows_judge_latency_throughput_and_absolute_ceilings():
    fast = core.ratio_row("a", "ms", 3.0, 2.0, max_ratio=2.0, max_abs=5.0)
    assert fast.ratio == pytest.approx(1.5) and fast.passed and fast.target == "<= 2x and < 5 ms"
    assert not core.ratio_row("b", "ms", 6.0, 2.0, max_ratio=2.0).passed
    assert not core.ratio_row("c", "ms", 5.5, 5.0, max_ratio=2.0, max_abs=5.0).passed  # ratio ok, too slow
    assert core.ratio_row("d", "rows/s", 60_000, 100_000, min_ratio=0.5).passed
    assert not core.ratio_row("e", "rows/s", 40_000, 100_000, min_ratio=0.5).passed
    assert not core.ratio_row("f", "s", 1.0, 0.0, max_ratio=2.0).passed  # no floor, no pass
    assert core.absolute_row("g", "s", 0.2, 0.3, floor=0.02).passed
    assert not core.absolute_row("h", "s", 0.31, 0.3).passed


def test_paired_alternates_and_drops_the_warmup():
    calls = []
    ours, floor = core.paired(lambda: calls.append("o"), lambda: calls.append("f"), reps=5, warmup=2)
    assert calls == ["o", "f"] * 7 and len(ours) == len(floor) == 5
    assert core.summary([1.0, 2.0, 3.0])["p50"] == 2.0


def test_report_has_every_row_and_the_overall_verdict(tmp_path):
    rows = [core.ratio_row("online, 1 asset, p99", "ms", 0.2, 0.15, max_ratio=2.0, stock=1.4, floor_desc="HGETALL"),
            core.ratio_row("ingest", "rows/s", 10.0, 100.0, min_ratio=0.5)]
    js, md = core.write_report(rows, core.meta(True, "tiny"), tmp_path)
    doc = json.loads(js.read_text())
    assert [r["name"] for r in doc["rows"]] == [r.name for r in rows] and doc["passed"] is False
    text = md.read_text()
    assert "| online, 1 asset, p99 | 0.2 ms | 0.15 ms | 1.33x | 1.4 ms | <= 2x | pass |" in text
    assert "| ingest | 10 rows/s | 100 rows/s | 0.10x | - | >= 0.5x | FAIL |" in text
    assert (tmp_path / "latest.json").read_text() == js.read_text()


def test_bench_assets_are_scaled_windows_of_the_real_series():
    real = _real_series()
    frame = frame_for(range(0, 7), real)
    hours = DAYS * 24
    assert len(frame) == 7 * hours and frame["asset_id"].unique().tolist() == [asset_id(i) for i in range(7)]
    assert frame["timestamp"].min() == START
    for i, source in ((0, "pjm_aep"), (3, "zone2"), (5, "pjm_aep")):
        values = frame.loc[frame["asset_id"] == asset_id(i), "value"].to_numpy()
        series = real[source]
        # some window of the real series, times one constant factor: candidate offsets from the first
        # few hours (vectorised), then each candidate checked over the whole window
        n = len(series) - hours + 1
        ratios = values[0] / series[:n]
        head = np.all([np.abs(series[k:k + n] * ratios - values[k]) <= 1e-3 * abs(values[k]) + 1e-3
                       for k in range(1, 6)], axis=0)
        match = [i for i in np.flatnonzero(head)
                 if np.all(np.abs(series[i:i + hours] * ratios[i] - values) <= 1e-3 * np.abs(values) + 1e-3)]
        assert len(match) >= 1 and 0.1 <= ratios[match[0]] <= 10
    assert not frame_for(range(0, 1), real).equals(frame_for(range(5, 6), real).assign(asset_id="b0000"))


def test_training_entities_span_the_window_after_the_first_week():
    data = DataSet("bench", [asset_id(i) for i in range(10)], START, START + pd.Timedelta(days=DAYS), 10 * DAYS * 24)
    ent = entity_frame(data, 5000)
    assert len(ent) == 5000 and set(ent["asset_id"]) <= set(data.assets)
    assert ent["event_timestamp"].min() >= START + pd.Timedelta(days=8) and ent["event_timestamp"].max() < data.end
    lead = (ent["target_time"] - ent["event_timestamp"].dt.floor("h")) / pd.Timedelta(hours=1)
    assert lead.between(0, 167).all() and (ent["event_timestamp"].dt.minute != 0).any()
