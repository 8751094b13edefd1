"""Backtest scoring on tiny hand-computed forecasts: skill on the same rows, per-asset and pooled
metrics by horizon set, input checks, the report files and the CLI's checks (no services)."""

import json
import math
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app
from core.errors import InvalidHorizonError
from evaluation import backtest, backtest_report
from evaluation.backtest import ALL, BacktestResult, InvalidBacktestError
from registry.train_forecast import BoosterConfig
from registry.training_data import AssetWindow

T0 = pd.Timestamp("2024-03-01", tz="UTC")
T1 = T0 + pd.Timedelta("24h")
NAN = np.nan
SCALES = {"a": 2.0, "b": 10.0}  # in-sample seasonal-naive-168 MAE per asset


def _forecasts() -> pd.DataFrame:
    rows = [  # asset, issue, h, y, point, p10, p50, p90, naive_24, naive_168, their sources
        ("a", T0, 1, 10.0, 12.0, 9.0, 11.0, 13.0, 14.0, 8.0, 0, 0),
        ("a", T0, 2, 20.0, 18.0, 19.0, 19.0, 22.0, 20.0, 25.0, 0, 0),
        ("a", T1, 1, 30.0, 33.0, 31.0, 32.0, 34.0, 24.0, 24.0, 0, 1),  # actual below p10; weekly from naive-24
        ("b", T0, 1, 100.0, 110.0, 90.0, 105.0, 120.0, 130.0, 100.0, 2, 0),  # weekly exact; daily the last value
    ]
    f = pd.DataFrame(rows, columns=["asset_id", "issue_time", "horizon_h", "y", "point", "p10", "p50", "p90",
                                    "naive_24", "naive_168", "naive_24_source", "naive_168_source"])
    f.insert(2, "target_time", f["issue_time"] + pd.to_timedelta(f["horizon_h"], unit="h"))
    return f[backtest.COLUMNS]


def test_skill_is_one_minus_the_mae_ratio_on_rows_where_both_forecasts_exist():
    y, model = [10.0, 20.0, 30.0, 40.0], [12.0, 18.0, 33.0, 40.0]
    assert backtest.skill(y, model, [14.0, 20.0, 24.0, NAN]) == pytest.approx(1 - (2 + 2 + 3) / (4 + 0 + 6))
    assert backtest.skill(y, model, [12.0, 18.0, 33.0, NAN]) == pytest.approx(0.0)  # as good as the baseline
    assert math.isnan(backtest.skill([10.0], [10.0], [10.0]))  # the baseline is exact: no ratio
    assert math.isnan(backtest.skill([10.0], [11.0], [NAN]))


def test_pooled_skill_divides_each_error_by_its_series_scale():
    y, model, naive = [10.0, 100.0], [11.0, 110.0], [13.0, 120.0]
    assert backtest.skill(y, model, naive, [1.0, 10.0]) == pytest.approx(1 - (1 + 1) / (3 + 2))
    assert backtest.skill(y, model, naive) == pytest.approx(1 - 11 / 23)  # unscaled: the big series dominates


def test_scores_of_one_asset_match_hand_computation():
    s = backtest.scores(_forecasts().query("asset_id == 'a'"), SCALES)
    assert s["mae"] == pytest.approx(7 / 3)
    assert s["rmse"] == pytest.approx(math.sqrt((4 + 4 + 9) / 3))
    assert s["mape"] == pytest.approx((0.2 + 0.1 + 0.1) / 3 * 100)
    assert s["smape"] == pytest.approx((4 / 22 + 4 / 38 + 6 / 63) / 3 * 100)
    assert s["mase"] == pytest.approx(7 / 3 / 2)
    assert s["skill_naive_24"] == pytest.approx(1 - 7 / 10)
    assert s["skill_naive_168"] == pytest.approx(1 - 7 / 13)  # its fallback row is scored too
    assert s["naive_24_mae"] == pytest.approx(10 / 3) and s["naive_24_mape"] == pytest.approx(20.0)
    assert s["naive_168_mae"] == pytest.approx(13 / 3) and s["naive_168_mape"] == pytest.approx(65 / 3)
    assert (s["naive_24_fallback_rows"], s["naive_168_fallback_rows"], s["naive_168_last_value_rows"]) == (0, 1, 0)
    pinball = {"p10": (0.1 + 0.1 + 0.9) / 3, "p50": (0.5 + 0.5 + 1.0) / 3, "p90": (0.3 + 0.2 + 0.4) / 3}
    assert s["pinball_mean"] == pytest.approx(sum(pinball.values()) / 3)
    assert s["coverage_p10_p90"] == pytest.approx(2 / 3)
    assert (s["rows"], s["origins"]) == (3.0, 2.0)


def test_model_and_baselines_are_scored_on_the_same_rows():
    """A row whose baseline is unknown (no fallback either) leaves every metric, the model's MAE too: the
    old scorer kept it in the model's MAE and left it out of the baseline's and the skill, so a model
    1 % worse than naive-24 by MAE showed a positive skill."""
    f = _forecasts().query("asset_id == 'a'").copy()
    f.loc[f.index[2], "naive_24"] = NAN  # the row where the model is worst (error 3)
    s = backtest.scores(f, SCALES)
    assert s["rows"] == 2 and s["mae"] == pytest.approx(2.0) and s["naive_24_mae"] == pytest.approx(2.0)
    assert s["skill_naive_24"] == pytest.approx(1 - s["mae"] / s["naive_24_mae"]) == pytest.approx(0.0)
    assert s["skill_naive_168"] == pytest.approx(1 - s["mae"] / s["naive_168_mae"])
    assert s["coverage_p10_p90"] == pytest.approx(1.0)  # the uncovered row left too


def test_days_and_worst_days_name_what_was_missing():
    f = _forecasts()
    series = {"a": pd.Series(1.0, index=pd.date_range(T0 - pd.Timedelta("167h"), T1, freq="h")),
              "b": pd.Series(1.0, index=pd.date_range(T0 - pd.Timedelta("167h"), T0, freq="h"))}
    series["a"] = series["a"].drop(pd.date_range(T1 - pd.Timedelta("17h"), T1, freq="h"))  # 18 h before T1
    inputs = pd.DataFrame({"lag_1h": [1.0, 1.0, NAN, 1.0], "peer": NAN, "horizon_h": f["horizon_h"]}, index=f.index)
    days = backtest.origin_days(f, series, inputs, horizon=1)
    assert list(days.columns) == backtest.DAY_COLUMNS and len(days) == 3
    gap = days[(days["asset_id"] == "a") & (days["issue_time"] == T1)].iloc[0]
    assert gap["model_mae"] == 3 and gap["naive_168_mae"] == 6 and gap["ratio"] == pytest.approx(0.5)
    assert gap["missing_hours"] == 18 and gap["gaps"] == "2024-03-01 06:00–24:00 (18 h)"
    assert gap["missing_inputs"] == "lag_1h"  # never-known inputs (peer) are not named
    b = days[days["asset_id"] == "b"].iloc[0]
    assert math.isnan(b["ratio"])  # naive-168 is exact there
    assert b["naive_24_fallback_rows"] == 1 and b["missing_hours"] == 0 and b["gaps"] == ""
    worst = backtest.worst_days(days, 2)
    assert list(worst["ratio"].round(3)) == [1.0, 0.5]  # a at T0: 2 / min(4, 2); NaN last


def test_gaps_are_runs_of_missing_hours():
    ends = pd.DatetimeIndex([T0 + pd.Timedelta(hours=h) for h in (1, 2, 3, 10)])
    assert backtest.gaps(ends) == "2024-03-01 00:00–03:00 (3 h); 2024-03-01 09:00–10:00 (1 h)"
    assert backtest.gaps(pd.DatetimeIndex([T0 + pd.Timedelta(hours=h) for h in range(20, 50)])) == \
        "2024-03-01 19:00–2024-03-03 01:00 (30 h)"
    assert backtest.gaps(pd.DatetimeIndex([])) == ""


def test_aggregate_scores_each_horizon_set_per_asset_and_pooled():
    m = backtest.aggregate(_forecasts(), SCALES, [2, 1])
    assert list(m.index) == [(1, "a"), (1, "b"), (1, ALL), (2, "a"), (2, "b"), (2, ALL)]
    assert list(m.columns) == list(backtest.METRICS)
    day = m.loc[1]
    assert day.loc["a", "rows"] == 2 and day.loc["a", "mae"] == pytest.approx((2 + 3) / 2)  # horizon 2 left out
    assert day.loc["b", "skill_naive_24"] == pytest.approx(1 - 10 / 30)
    assert math.isnan(day.loc["b", "skill_naive_168"])  # the baseline is exact there
    pooled = day.loc[ALL]
    assert pooled["mae"] == pytest.approx((2 + 3 + 10) / 3)
    assert pooled["mase"] == pytest.approx((2 / 2 + 3 / 2 + 10 / 10) / 3)
    assert pooled["skill_naive_24"] == pytest.approx(1 - (1 + 1.5 + 1) / (2 + 3 + 3))
    assert pooled["skill_naive_168"] == pytest.approx(1 - (1 + 1.5 + 1) / (1 + 3 + 0))
    assert (pooled["naive_24_fallback_rows"], pooled["naive_24_last_value_rows"]) == (1, 1)
    assert (pooled["rows"], pooled["origins"]) == (3.0, 2.0)
    assert m.loc[(2, "a"), "mae"] == pytest.approx(7 / 3)


def test_by_horizon_gives_model_and_baseline_errors_and_coverage():
    t = backtest.by_horizon(_forecasts(), SCALES)
    a1 = t.loc[("a", 1)]
    assert a1["model_mae"] == pytest.approx(2.5) and a1["model_mase"] == pytest.approx(1.25)
    assert a1["naive_24_mae"] == pytest.approx(5.0) and a1["naive_168_mae"] == pytest.approx(4.0)
    assert a1["coverage_p10_p90"] == pytest.approx(0.5) and a1["rows"] == 2
    pooled = t.loc[(ALL, 1)]
    assert pooled["model_mase"] == pytest.approx((1 + 1.5 + 1) / 3) and pooled["rows"] == 3
    assert t.loc[(ALL, 2), "coverage_p10_p90"] == pytest.approx(1.0)


def test_check_returns_sorted_horizon_sets():
    assert backtest.check([168, 24, 24], 28, 365) == (24, 168)
    assert backtest.check((1,), 1, 22) == (1,)


@pytest.mark.parametrize(("horizons", "origins", "history_days", "error", "message"), [
    ([0], 28, 365, InvalidHorizonError, r"horizon=0 is out of range 1\.\.168"),
    ([24, 169], 28, 365, InvalidHorizonError, r"horizon=169 is out of range 1\.\.168"),
    ([], 28, 365, InvalidHorizonError, "horizons is empty"),
    ([24], 0, 365, InvalidBacktestError, r"origins=0 is out of range 1\.\.344"),
    ([24], 345, 365, InvalidBacktestError, r"origins=345 is out of range 1\.\.344 \(history_days=365 keeps at "
                                           "least 21 training days"),
    ([24], 400, 20_000, InvalidBacktestError, r"origins=400 is out of range 1\.\.365"),
    ([24], 5, 21, InvalidBacktestError, r"history_days=21 is out of range 22\.\.20000"),
])
def test_bad_settings_get_one_clear_error(horizons, origins, history_days, error, message):
    with pytest.raises(error, match=message):
        backtest.check(horizons, origins, history_days)


def _result() -> BacktestResult:
    f, hs = _forecasts(), (1, 2)
    windows = [AssetWindow(a, T0 - pd.Timedelta(days=30), T0, T1 + pd.Timedelta("24h")) for a in ("a", "b")]
    days = backtest.origin_days(f, {}, pd.DataFrame(index=f.index), 2)
    return BacktestResult("t1", "forecast_advanced", hs, 2, 60, BoosterConfig(), windows, ["lag_1h", "horizon_h"],
                          100, SCALES, backtest.aggregate(f, SCALES, hs), backtest.by_horizon(f, SCALES), f, days)


def test_report_writes_markdown_plots_and_json(tmp_path):
    now = datetime(2024, 4, 1, 12, 0, tzinfo=UTC)
    report = backtest_report.write(_result(), tmp_path / "r", now)
    assert {p.name for p in report.plots.values()} == {"mae_by_horizon.png", "coverage_by_horizon.png",
                                                        "example_weeks.png"}
    assert all(p.stat().st_size > 1000 for p in report.plots.values())
    md = report.markdown.read_text()
    assert "Baseline fallbacks" in md and "| a | 3 | 0 | 0 | 1 | 0 |" in md  # horizon set 2, asset a
    assert "## Worst days (3 origins)" in md and "| a | 2024-03-01 00:00 |" in md
    assert "trained **once**" in md and "## 1 h ahead (horizons 1–1 h)" in md
    assert "| a | 2.50 | 2.55 | 15.00 |" in md  # horizon set 1, asset a: MAE, RMSE, MAPE
    assert "| **all assets** |" in md and "![MAE by horizon](plots/mae_by_horizon.png)" in md
    doc = json.loads(report.json.read_text())
    assert doc["generated"] == now.isoformat() and doc["horizons"] == [1, 2]
    assert doc["metrics"]["h1"]["b"]["skill_naive_168"] is None  # NaN -> null
    assert doc["metrics"]["h2"][ALL]["rows"] == 4
    assert doc["by_horizon"]["a"]["horizon_h"] == [1, 2]
    assert len(pd.read_parquet(report.forecasts)) == 4


def test_mlflow_metrics_are_flat_and_finite():
    m = backtest_report.metric_dict(_result())
    assert m["h1.mae"] == pytest.approx(5.0) and m["h2.a.mae"] == pytest.approx(7 / 3)
    assert "h1.b.skill_naive_168" not in m and all(math.isfinite(v) for v in m.values())


def test_cells_are_formatted_by_metric():
    assert backtest_report.fmt("skill_naive_24", 0.1234) == "+0.123"
    assert backtest_report.fmt("mae", 1234.4) == "1,234" and backtest_report.fmt("mae", 12.345) == "12.35"
    assert backtest_report.fmt("mape", 3.456) == "3.46" and backtest_report.fmt("mase", NAN) == "—"


@pytest.mark.parametrize(("args", "code", "message"), [
    (["--horizons", "24,abc"], 2, "'24,abc' is not a comma-separated list of hours"),
    (["--horizons", "24,200"], 1, "horizon=200 is out of range 1..168"),
    (["--origins", "400"], 1, "origins=400 is out of range 1..365"),
    (["--origins", "400", "--history-days", "365"], 1, "origins=400 is out of range 1..344"),
])
def test_cli_checks_settings_before_any_io(args, code, message):
    result = CliRunner().invoke(app, ["evaluate", "forecast", "--tenant", "t", *args])
    assert result.exit_code == code
    assert message in " ".join(result.output.split())


def test_intervals_are_recalibrated_on_earlier_origins_only():
    """A model whose raw p10-p90 band is far too narrow: the first origin keeps the trained widening
    (none here), later origins widen from the residuals of forecasts whose targets ended before them."""
    from evaluation.backtest import predict_recalibrated
    from registry.forecaster import QuantileForecaster
    from tests.helpers.boosters import Constant

    model = QuantileForecaster(["lag_1h", "horizon_h"], {"p10": Constant(0.99), "p50": Constant(1.0),
                                                          "p90": Constant(1.01), "point": Constant(1.0)})
    origins = pd.date_range("2024-01-01", periods=6, freq="D", tz="UTC")
    rng = np.random.default_rng(0)
    rows = pd.DataFrame([{"asset_id": "a", "issue_time": o, "horizon_h": h, "lag_1h": 100.0} for o in origins
                         for h in range(1, 25)])
    rows["target_time"] = rows["issue_time"] + pd.to_timedelta(rows["horizon_h"], unit="h")
    rows["y"] = 100 + rng.normal(0, 5, len(rows))  # level 100: the raw band is [99, 101]
    pred = predict_recalibrated(model, rows)
    first = rows["issue_time"] == origins[0]
    assert np.allclose(pred.loc[first, "p10"], 99) and np.allclose(pred.loc[first, "p90"], 101)
    later = rows["issue_time"] >= origins[4]  # four earlier origins give the 1-6 h bucket its 24 rows
    covered = (rows["y"] >= pred["p10"]) & (rows["y"] <= pred["p90"])
    assert 0.6 <= covered[later].mean() <= 0.95 and (pred.loc[later, "p90"] - pred.loc[later, "p10"] > 5).all()
    # the p50 and point forecasts are untouched
    assert np.allclose(pred["p50"], 100) and np.allclose(pred["point"], 100)
