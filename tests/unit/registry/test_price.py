"""The price forecaster's design and model (registry/price.py): small seeded series (tests/helpers/prices.py)."""

import numpy as np
import pytest

from core.errors import InvalidSeriesError
from registry import price
from tests.helpers.prices import EXOG, hourly


def test_to_days_shapes_and_holiday():
    days = price.to_days(hourly(10), EXOG, ("NO",))
    assert days.price.shape == (10, 24) and days.exog.shape == (10, 2, 24)
    assert days.holiday[0] == 1.0 and days.holiday[1:].sum() == 0  # 1 January is a holiday in Norway
    assert days.exog[2, 1, 5] == hourly(10)["wind_forecast"].iloc[2 * 24 + 5]


def test_price_as_text_is_one_clear_error_naming_the_value():
    frame = hourly(3).astype({"price": object})
    frame.loc[30, "price"] = "12,5 EUR"
    with pytest.raises(InvalidSeriesError, match=r"price at 2016-01-02 06:00:00 is '12,5 EUR', not a number"):
        price.to_days(frame, EXOG)


def test_incomplete_day_and_gap_are_refused():
    with pytest.raises(InvalidSeriesError, match="whole days of hours 0..23"):
        price.to_days(hourly(3).iloc[:-1], EXOG)
    frame = hourly(4)
    with pytest.raises(InvalidSeriesError, match="gap in its days"):
        price.to_days(frame.drop(index=range(24, 48)).reset_index(drop=True), EXOG)
    with pytest.raises(InvalidSeriesError, match="no column 'wind_forecast'"):
        price.to_days(frame.drop(columns="wind_forecast"), EXOG)


def test_lear_design_reads_only_the_day_before_and_earlier_prices():
    days = price.to_days(hourly(20), EXOG)
    x = price.lear_design(days, np.array([10, 11]))
    assert x.shape == (2, 4 * 24 + 2 * 3 * 24 + 7 + 1)
    np.testing.assert_array_equal(x[0, :24], days.price[9])  # d-1
    np.testing.assert_array_equal(x[0, 72:96], days.price[3])  # d-7
    np.testing.assert_array_equal(x[0, 96:120], days.exog[10, 0])  # the target day's load forecast
    assert not np.isin(days.price[10], x[0]).any()  # the target day's prices are nowhere in its row
    assert x[0, 96 + 144:96 + 151].sum() == 1  # one day-of-week dummy


def test_lasso_aic_equals_scikit_learn_lassolarsic():
    from sklearn.linear_model import LassoLarsIC

    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 20))
    y = np.column_stack([x[:, :3] @ [1.0, -2.0, 0.5], x[:, 5] * 3.0]) + rng.normal(0, 0.3, (300, 2))
    coef, icpt, _ = price.lasso_aic(x, y)
    for h in range(2):
        ref = LassoLarsIC(criterion="aic").fit(x, y[:, h])
        np.testing.assert_allclose(coef[h], ref.coef_, atol=1e-10)
        assert icpt[h] == pytest.approx(ref.intercept_, abs=1e-10)


def test_invariant_scaling_round_trips():
    x = np.random.default_rng(2).standard_t(2, size=(200, 3)) * 50
    s = price._Invariant().fit(x)
    np.testing.assert_allclose(s.inverse(s.transform(x)), x, rtol=1e-9, atol=1e-9)


def test_lear_and_tree_learn_the_load_effect_and_keep_negative_prices():
    days = price.to_days(hourly(420, level=2.0), EXOG)
    idx = np.arange(400, 420)
    y = days.price[idx]
    naive = days.price[idx - 1]
    lear = price.predict_lear(price.fit_lear(days, 400, windows=(364,)), days, idx)
    tree = price.predict_tree(price.fit_tree(days, 400), days, idx)
    for f in (lear, tree):
        assert np.abs(f - y).mean() < 0.6 * np.abs(naive - y).mean()
    assert (y < 0).any() and (lear < 0).any()  # no clipping at 0


def test_lear_needs_its_window():
    days = price.to_days(hourly(100), EXOG)
    with pytest.raises(InvalidSeriesError, match="at least 343 days"):
        price.fit_lear(days, 100, windows=(364,))


def test_forecaster_weights_its_parts_and_bands_come_from_its_residuals():
    days = price.to_days(hourly(420), EXOG)
    f = price.PriceForecaster("np", weights={"ridge": 0.5, "tree": 0.5}, lear_windows=(364,)).fit(days, 400)
    idx = np.array([405])
    ridge = price.predict_lear(f.models["ridge"], days, idx)
    tree = price.predict_tree(f.models["tree"], days, idx)
    np.testing.assert_allclose(f.point(days, idx), 0.5 * ridge + 0.5 * tree)
    f.residuals = np.tile(np.arange(-5.0, 6.0)[:, None], (1, 24))
    q = f.quantiles(days, idx)
    np.testing.assert_allclose(q["p90"] - q["p50"], 4.0)
    np.testing.assert_allclose(q["p10"] - q["p50"], -4.0)


def test_ridge_is_the_closed_form_in_the_scaled_space():
    days = price.to_days(hourly(400), EXOG)
    fits = price.fit_ridge(days, 390, penalties=(0.1, 10.0), windows=(364,))
    m = fits[0.1][0]
    x = price.lear_design(days, np.arange(26, 390))
    z = np.hstack([m.sx.transform(x[:, :price.N_SCALED]), x[:, price.N_SCALED:]])
    zy = m.sy.transform(days.price[26:390])
    zc, yc = z - z.mean(axis=0), zy - zy.mean(axis=0)
    want = np.linalg.solve(zc.T @ zc / len(z) + 0.1 * np.eye(z.shape[1]), zc.T @ yc / len(z)).T
    np.testing.assert_allclose(m.coef, want, atol=1e-8)
    assert np.abs(fits[10.0][0].coef).sum() < np.abs(m.coef).sum()  # a larger penalty shrinks


def test_the_tree_predicts_the_regressors_numbers_from_one_matrix():
    days = price.to_days(hourly(60), EXOG)
    model = price.fit_tree(days, 50)
    idx = np.arange(50, 60)
    x, level = price.tree_design(days, idx)
    np.testing.assert_allclose(price.predict_tree(model, days, idx).ravel(), model.predict(x) + level, rtol=0,
                               atol=1e-12)


def test_the_registered_model_reads_only_the_target_day_and_the_past_days_before_it():
    from registry.train_price import RIDGE_PENALTY, WEIGHTS, PricePyfunc

    rows = hourly(40, seed=2)
    days = price.to_days(rows, EXOG)
    pyfunc = PricePyfunc(price.PriceForecaster("zone", dict(WEIGHTS), RIDGE_PENALTY, (30,)).fit(days, 39), EXOG,
                         "Europe/Oslo")
    rows.loc[rows.index[-24:], "price"] = np.nan  # the target day
    full = pyfunc.predict(None, rows)
    window = price.forecast_days(rows.tail((pyfunc.past_days + 1) * 24).reset_index(drop=True), EXOG)
    assert pyfunc.past_days == 7 and len(window) == 8
    np.testing.assert_allclose(pyfunc.predict_days(window)["p50"], full["p50"], rtol=0, atol=1e-12)
    before = rows.index[-(pyfunc.past_days + 2) * 24:-(pyfunc.past_days + 1) * 24]  # the day before the window
    rows.loc[before, ["price", "load_forecast"]] += 100.0
    np.testing.assert_allclose(pyfunc.predict(None, rows)["p50"], full["p50"], rtol=0, atol=1e-12)
