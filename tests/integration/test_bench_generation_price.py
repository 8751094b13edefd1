"""The bench's generation and price rows on the real stack: the wind unit and market zone come from data/ and
their models are trained once (a second set-up ingests and trains nothing), and the rows run, with their own
checks that the floor reads and predicts what the forecast does (no timing is asserted here)."""

from __future__ import annotations

import pytest

from bench import core
from bench import generation_price as gp
from bench.rows_generation_price import generation_price_rows
from warehouse.store import get_store

pytestmark = [pytest.mark.integration]


class FewReps(core.Context):
    """A handful of pairs: the rows' checks run, the timing is not the point here."""

    reps = 5
    warmup = 1


def test_units_and_models_are_set_up_once_and_the_rows_run(stack, tmp_path):
    store = get_store(stack)
    said: list[str] = []
    ctx = FewReps(stack, True, tmp_path, said.append)
    units = gp.ensure(ctx)
    ids = gp.ensure_models(ctx, store, units)
    assert [m.split(":")[0] for m in said] == ["bench data", "bench data", "bench model", "bench model"], said
    assert ids[0].startswith("bench:generation_forecaster:") and ids[1].startswith("bench:price_forecaster:")
    said.clear()
    assert gp.ensure(ctx) == units and gp.ensure_models(ctx, store, units) == ids
    assert said == []  # nothing ingested or trained again
    rows = generation_price_rows(ctx, store)
    assert [r.name.split(",")[0] for r in rows] == ["forecast call p99", "forecast call p99"]
    assert [r.details["model"] for r in rows] == list(ids)
    assert all(r.target == "<= 2x" and r.project > 0 and r.floor > 0 for r in rows)
    assert rows[0].details["ours"]["n"] == rows[1].details["floor"]["n"] == 5
