"""The GEFCom2012 protocol's pieces on a tiny synthetic release: which weather issue a row may use (never one
issued after its origin), the test windows and their origins, recent power from task=train hours only,
the scores next to persistence; and the organisers' persistence figure from the real files when present."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.errors import InvalidArgumentError
from evaluation import gefcom as G
from registry import generation as gen

T0 = pd.Timestamp("2009-07-01", tz="UTC")
SHARED = Path(__file__).resolve().parents[3] / ".." / "shared" / "data"


def _release(hours: int = 120) -> G.Gefcom:
    """One farm; issue k's forecast for lead l is 100 k + l (so a value names its issue); power = hour / 1000,
    hours 60-107 a test window (task=test)."""
    n_issues = hours // G.ISSUE_STEP
    ws = np.full((1, n_issues, G.MAX_LEAD + 1), np.nan)
    for k in range(n_issues):
        ws[0, k, 1:] = 100 * k + np.arange(1, G.MAX_LEAD + 1)
    power = (np.arange(hours) / 1000.0)[None, :]
    known = np.ones_like(power, dtype=bool)
    known[0, 60:108] = False
    return G.Gefcom(T0, ["wp1"], power, known, {"wind_speed": ws, "wind_u": ws, "wind_v": ws},
                    pd.DataFrame({"farm_id": [], "hour": [], "persistence": []}))


def test_latest_takes_the_newest_issue_at_or_before_the_origin_and_never_a_later_one():
    g = _release()
    farm = np.zeros(4, dtype=int)
    origin = np.array([24, 30, 24, 24])
    target = np.array([25, 40, 24, 80])
    issue, v = G.latest(g, farm, origin, target)
    # origin 24: issue 2 (hour 24) at lead 1; origin 30: still issue 2 (the 36:00 issue is later), lead 16;
    # target = origin 24 itself: issue 1 at lead 12; target 80 from origin 24: lead 56 > 48, none
    assert issue[:3].tolist() == [24, 24, 12] and np.isnan(issue[3])
    assert v["wind_speed"][:3].tolist() == [201, 216, 112] and np.isnan(v["wind_speed"][3])
    _, prev = G.latest(g, farm, origin, target, nth=1)
    assert prev["wind_speed"][:3].tolist() == [113, 128, 24]  # issues 1, 1, 0


def test_rows_use_only_issues_by_the_origin_and_power_from_train_hours():
    g = _release()
    d = G.rows(g)
    assert (d["issue_time"] <= d["origin"]).all()
    assert (pd.to_datetime(d["issue_time"]) == d["origin"]).all()  # origins are issue times
    at_test = d[d["origin_h"] == 72]  # origin inside the test window: its power is not known
    assert at_test["power_last"].isna().all()
    at = d[d["origin_h"] == 48].iloc[0]
    assert at["power_last"] == pytest.approx(0.048)
    assert at["power_mean_3h"] == pytest.approx(0.047)
    assert d.loc[d["test"], "y"].isna().all() and d.loc[d["test"], "truth"].notna().all()


def test_windows_are_runs_of_test_hours_with_the_hour_before_as_origin():
    w = G.windows(_release())
    assert w[["origin_h", "first_h", "last_h", "hours"]].values.tolist() == [[59, 60, 107, 48]]


def test_scores_and_persistence_on_the_same_rows():
    test = pd.DataFrame({"unit": ["wp1", "wp1", "wp2", "wp2"], "origin": T0, "origin_h": 0,
                         "target_h": [1, 2, 1, 2], "truth": [0.0, 1.0, 0.5, 0.5],
                         "point": [0.0, 0.5, 0.5, 0.5], "p10": [0.0, 0.2, 0.4, 0.6], "p50": [0.0, 0.5, 0.5, 0.5],
                         "p90": [0.1, 0.8, 0.6, 0.7], "persistence": [1.0, 1.0, 0.5, 0.5]})
    r = G.score(test)
    assert r.scores.loc["wp1", "rmse"] == pytest.approx(np.sqrt(0.125))
    assert r.scores.loc["wp1", "persistence_rmse"] == pytest.approx(np.sqrt(0.5))
    assert r.scores.loc["all", "rmse"] == pytest.approx(np.sqrt(0.25 / 4))
    assert r.scores.loc["all", "coverage_p10_p90"] == 0.5  # 0.0 in, 1.0 above p90, 0.5 in, 0.5 below p10
    assert r.worst.iloc[0]["unit"] == "wp1"


def test_a_missing_folder_names_the_files():
    with pytest.raises(InvalidArgumentError, match="gefcom2012_wind_power.csv.gz"):
        G.check_data(Path("/nonexistent"))


@pytest.mark.skipif(not (SHARED / G.FILES["benchmark"]).is_file(), reason="../shared/data not present")
def test_the_released_persistence_benchmark_scores_0_3537_and_the_windows_are_the_competitions():
    g = G.load(SHARED)
    w = G.windows(g)
    assert len(w) == 156 and (w["hours"] == 48).all()
    assert w["origin"].iloc[0] == pd.Timestamp("2011-01-01T00:00", tz="UTC")
    assert w["origin"].iloc[1] == pd.Timestamp("2011-01-04T12:00", tz="UTC")
    b = g.benchmark
    farm = b["farm_id"].map({f: i for i, f in enumerate(g.farms)}).to_numpy()
    truth = g.power[farm, b["hour"].to_numpy()]
    assert not g.known[farm, b["hour"].to_numpy()].any()  # every benchmark hour is a test hour
    assert np.sqrt(np.mean((b["persistence"] - truth) ** 2)) == pytest.approx(0.3537, abs=5e-5)


def test_bucket_labels_cover_the_48_hours():
    assert G.BUCKET_LABELS == ["1-6 h", "7-12 h", "13-24 h", "25-36 h", "37-48 h"]
    assert len(gen.BUCKETS) - 1 == len(G.BUCKET_LABELS)
