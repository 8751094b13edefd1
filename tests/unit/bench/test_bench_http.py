"""HTTP bench rows (bench/load.py, bench/rows_http.py): load windows, the added-latency and throughput
verdicts (no services, nothing timed)."""

from __future__ import annotations

import asyncio

import pytest

from bench import core
from bench.load import Window, drive, window
from bench.rows_http import CLIENTS, WORKERS, Measured, _rows, added_row


def test_a_window_counts_calls_finished_inside_it_and_times_calls_started_inside_it():
    spans = [(0.5, 1.2),  # started in the warm-up: counted as done, not timed
             (1.0, 1.004), (1.5, 1.502), (2.9, 3.1),  # the last one is cut by the end: timed, not counted
             (3.0, 3.001)]  # after the window
    w = window(spans, start=1.0, end=3.0, clients=2)
    assert w.completed == 3 and w.seconds == 2.0 and w.throughput == 1.5 and w.calls == 5
    assert w.latencies == pytest.approx([4.0, 2.0, 200.0])
    assert w.summary()["per_s"] == 1.5 and w.summary()["clients"] == 2


def test_added_latency_rows_pass_on_the_difference_not_the_ratio():
    ok = added_row("forecast over HTTP", 3.4, 2.0, 1.5)
    assert ok.passed and ok.ratio == pytest.approx(1.7) and ok.target == "<= floor + 1.5 ms"
    assert not added_row("slow", 3.6, 2.0, 1.5).passed
    assert added_row("fast floor", 0.9, 0.1, 1.5).passed  # 9x the floor, 0.8 ms added


def test_the_load_keeps_exactly_the_given_number_of_calls_in_flight():
    in_flight, peak = 0, []

    async def send():
        nonlocal in_flight
        in_flight += 1
        peak.append(in_flight)
        await asyncio.sleep(0)
        in_flight -= 1
        return None

    w = asyncio.run(drive(send, clients=3, warmup_s=0.0, seconds=0.02))
    assert max(peak) == 3 and in_flight == 0 and w.clients == 3 and w.errors == []


def test_failed_calls_are_listed_not_counted():
    async def send():
        await asyncio.sleep(0)
        return "502: bad gateway"

    w = asyncio.run(drive(send, clients=2, warmup_s=0.0, seconds=0.01))
    assert w.completed == 0 and w.latencies == [] and w.errors and set(w.errors) == {"502: bad gateway"}


def test_rows_judge_throughput_against_the_workers_times_the_in_process_rate(tmp_path):
    ctx = core.Context(None, True, tmp_path, log=lambda msg: None)
    local = [Window(1, 2.0, 400, [5.0] * 400), Window(1, 2.0, 360, [5.5] * 360)]  # median 190/s
    many = [Window(CLIENTS, 2.0, 560, [110.0] * 560), Window(CLIENTS, 2.0, 520, [120.0] * 520)]  # median 270/s
    raw = [Window(CLIENTS, 2.0, 9000, [1.0] * 99 + [2.0])]
    feats = [Window(CLIENTS, 2.0, 3000, [4.0] * 99 + [5.0])]
    one = Window(1, 2.0, 350, [5.6] * 350)
    rows = _rows(ctx, Measured([6.0] * 10, [5.0] * 10, local, many, raw, feats, one, [300.0, 310.0], 250.0,
                               "bench:m:1"))
    added, rate, features, rss = rows
    assert added.passed and added.project == 6.0 and added.floor == 5.0
    assert rate.floor == 190.0 * WORKERS and rate.ratio == pytest.approx(270 / 380) and rate.passed  # >= 0.7x
    assert features.ratio == pytest.approx(core.p([4.0] * 99 + [5.0], 99) / core.p([1.0] * 99 + [2.0], 99))
    assert rss.project == 310.0 and rss.floor == 250.0 and rss.details["workers_mb"] == [300.0, 310.0]
    assert rate.target == ">= 0.7x; no failed calls (was 0)"
    slower = [Window(CLIENTS, 2.0, 500, [130.0] * 500)] * 2  # 250/s = 0.66x
    assert not _rows(ctx, Measured([6.0], [5.0], local, slower, raw, feats, one, [300.0], 250.0, "bench:m:1"))[1].passed
    failing = [Window(CLIENTS, 2.0, 9000, [1.0] * 100, errors=["RemoteProtocolError: Server disconnected"])]
    rows = _rows(ctx, Measured([6.0], [5.0], local, many, raw, failing, one, [300.0], 250.0, "bench:m:1"))
    assert not rows[2].passed and rows[2].target == "<= 3x; no failed calls (was 1)"
