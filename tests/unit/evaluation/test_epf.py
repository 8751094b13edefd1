"""The epftoolbox protocol's metrics, test and bands (evaluation/epf.py), and the shared reference figures."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.errors import InvalidArgumentError
from evaluation import epf

SHARED = Path(__file__).resolve().parents[3] / ".." / "shared" / "data"


def test_point_metrics_exact():
    y, f = np.array([10.0, -2.0, 0.0]), np.array([12.0, -1.0, 0.0])
    assert epf.mae(y, f) == pytest.approx(1.0)
    assert epf.rmse(y, f) == pytest.approx(np.sqrt(5 / 3))
    # sMAPE: |2|/11 and |1|/1.5; the 0/0 hour counts as 0
    assert epf.smape(y, f) == pytest.approx(100 * (2 / 11 + 1 / 1.5) / 3)


def test_pinball_loss():
    y = np.array([10.0, 10.0])
    q = {0.1: np.array([8.0, 11.0]), 0.9: np.array([12.0, 9.0])}
    # 0.1: 0.1*2=0.2 and 0.9*1=0.9 → 0.55; 0.9: 0.1*2=0.2 and 0.9*1=0.9 → 0.55
    assert epf.pinball(y, q) == pytest.approx(0.55)


def test_dm_test_sides():
    rng = np.random.default_rng(0)
    y = rng.normal(30, 5, (200, 24))
    good = y + rng.normal(0, 1, y.shape)
    bad = y + rng.normal(0, 2, y.shape)
    better = epf.dm_test(y, good, bad)
    assert better["p_ours_better"] < 0.01 and better["p_ref_better"] > 0.99
    worse = epf.dm_test(y, bad, good)
    assert worse["p_ours_better"] > 0.99
    assert better["p_ours_better"] + better["p_ref_better"] == pytest.approx(1.0)


def test_conformal_band_uses_only_past_days():
    rng = np.random.default_rng(1)
    point = np.zeros((5, 24))
    actual = rng.normal(0, 1, (5, 24))
    seed = rng.normal(0, 1, (epf.RESIDUAL_DAYS, 24))
    lo, hi = epf.conformal(point, actual, seed)
    changed = actual.copy()
    changed[3:] += 100  # a shock on day 3 must not move days 0..3's bands
    lo2, hi2 = epf.conformal(point, changed, seed)
    np.testing.assert_array_equal(lo[:4], lo2[:4])
    np.testing.assert_array_equal(hi[:4], hi2[:4])
    assert (hi2[4] > hi[4]).all()
    np.testing.assert_allclose(hi[0], np.quantile(seed, 0.9, axis=0))


def test_bad_market_and_cadence():
    with pytest.raises(InvalidArgumentError, match="market='de' is not one of np, pjm"):
        epf.check("de", 7)
    with pytest.raises(InvalidArgumentError, match="recalibrate_days=0 is out of range 1..91"):
        epf.check("np", 0)
    with pytest.raises(InvalidArgumentError, match="does not exist"):
        epf.load("np", Path("/nonexistent"))


@pytest.mark.skipif(not (SHARED / "epf_np_benchmark_forecasts.csv.gz").exists(), reason="needs ../shared/data")
@pytest.mark.parametrize("market,lear,dnn", [("np", 1.738, 1.683), ("pjm", 3.013, 2.862)])
def test_reference_maes_reproduced_from_the_shared_file(market, lear, dnn):
    bench = pd.read_csv(SHARED / f"epf_{market}_benchmark_forecasts.csv.gz")
    assert len(bench) == epf.TEST_DAYS * 24
    assert epf.mae(bench["price"], bench["lear_ensemble"]) == pytest.approx(lear, abs=5e-4)
    assert epf.mae(bench["price"], bench["dnn_ensemble"]) == pytest.approx(dnn, abs=5e-4)


def test_cli_refuses_an_unknown_market_before_reading_anything():
    from typer.testing import CliRunner

    from cli import app

    result = CliRunner().invoke(app, ["evaluate", "forecast", "--protocol", "epf", "--market", "de"])
    assert result.exit_code == 1 and "market='de' is not one of np, pjm" in result.output
    result = CliRunner().invoke(app, ["evaluate", "forecast", "--protocol", "nab"])
    assert result.exit_code == 1 and "--protocol 'nab' is not one of" in result.output


def test_rolling_forecasts_never_read_the_day_they_forecast_or_later():
    """Prices from day 405 on are changed: the forecasts of days 400..404 (models fit before day 400, lags up to
    the day before) do not move; those of 405 on do (their d-1 lag moved)."""
    from registry import price
    from tests.helpers.prices import EXOG, hourly

    frame = hourly(420)
    days = price.to_days(frame, EXOG)
    shocked = frame.copy()
    shocked.loc[405 * 24:, "price"] += 50.0
    days2 = price.to_days(shocked, EXOG)
    for part in ("tree", "ridge"):
        if part == "tree":
            a = epf.rolling(days, 400, 410, 5, "tree", None, epf._quiet, "t")
            b = epf.rolling(days2, 400, 410, 5, "tree", None, epf._quiet, "t")
        else:
            a = epf.rolling_ridge(days, 400, 410, None, epf._quiet, "t", block=5)[0.3]
            b = epf.rolling_ridge(days2, 400, 410, None, epf._quiet, "t", block=5)[0.3]
        np.testing.assert_array_equal(a[:5], b[:5], err_msg=part)
        assert np.abs(a[5:] - b[5:]).mean() > 1.0, part
