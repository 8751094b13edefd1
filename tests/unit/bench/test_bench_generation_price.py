"""The generation and price rows' floors do the forecasters' job: their raw predicts give the models' own numbers
on small seeded data, the bench's market files follow the issue rule, and a model with old settings is retrained."""

import numpy as np
import pandas as pd
import pytest

from bench.generation_price import generation_params, price_files, reusable
from bench.rows_generation_price import generation_predict, price_matrix, price_predict
from core.names import TAG_ARTIFACT_LOCATION
from registry import generation as gen
from registry import price
from registry.train_price import RIDGE_PENALTY, WEIGHTS, PricePyfunc
from tests.helpers.prices import EXOG, hourly

T = pd.Timestamp("2011-01-01T00:00", tz="UTC")


def test_generation_floor_gives_the_models_quantiles_and_point_in_capacity_units():
    rng = np.random.default_rng(3)
    n = 600
    h = rng.integers(1, 49, n)
    ws = rng.gamma(3.0, 2.5, n)
    rows = pd.DataFrame({"unit": np.where(rng.random(n) < 0.5, "a", "b"), "origin": T,
                         "target": T + pd.to_timedelta(h, unit="h"), "issue_time": T, "wind_speed": ws,
                         "wind_u": ws * 0.6, "wind_v": ws * 0.8, "ws_prev": ws + rng.normal(0, 1, n),
                         "ws_before": ws, "ws_after": ws, "power_last": rng.random(n),
                         "power_mean_3h": rng.random(n), "power_mean_6h": rng.random(n)})
    y = np.clip(np.clip((ws - 3) / 9, 0, 1) ** 3 + rng.normal(0, 0.1, n), 0, 1)
    X = gen.design(rows, ["a", "b"])
    model = gen.GenerationModel(["a", "b"], {"num_leaves": 7, "min_data_in_leaf": 20},
                                {o: 30 for o in gen.OUTPUTS}, mix=gen.POINT_MIX)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(gen, "UNIT_MIN_ROWS", 100)  # 600 rows: each unit gets its own booster
        model.fit(X, y)
    assert sorted(model.unit_boosters) == [0, 1]
    model.widen = np.array([0.05, -0.02, 0.1, 0.0, 0.2])  # the band moves, so the floor must widen it too
    expected = model.predict(X)[["p10", "p50", "p90", "point"]].to_numpy() * 250.0
    got = generation_predict(model, X[model.features].to_numpy(dtype=float), X["horizon"].to_numpy(), 250.0)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    assert got[:, 0].min() >= 0 and got[:, 2].max() <= 250.0


def test_price_floor_gives_the_registered_pyfuncs_next_day():
    rows = hourly(40, seed=5)
    days = price.to_days(rows, EXOG)
    forecaster = price.PriceForecaster("zone", dict(WEIGHTS), RIDGE_PENALTY, (30,)).fit(days, len(days) - 1)
    forecaster.residuals = np.random.default_rng(1).normal(0, 2, (7, price.HOURS))
    pyfunc = PricePyfunc(forecaster, EXOG, "Europe/Oslo")
    rows.loc[rows.index[-24:], "price"] = np.nan  # the target day
    expected = pyfunc.predict(None, rows.tail(15 * 24).reset_index(drop=True))
    got = price_predict(pyfunc, price_matrix(pyfunc, rows))
    np.testing.assert_allclose(got, expected[["p10", "p50", "p90", "point"]].to_numpy(), rtol=1e-12, atol=1e-9)
    assert (got[:, 2] > got[:, 0]).all()  # the band offsets are in: p90 above p10 every hour


def test_market_files_issue_each_day_at_10_local_the_day_before_and_hold_back_the_last_days_prices():
    extract = hourly(3)
    prices, cov = price_files(extract)
    assert len(prices) == 48 and prices["timestamp"].max() == pd.Timestamp("2016-01-02 23:00")
    assert len(cov) == 72
    first_of_day3 = cov[cov["target_time"] == pd.Timestamp("2016-01-03 00:00")]["issue_time"].item()
    last_of_day3 = cov[cov["target_time"] == pd.Timestamp("2016-01-03 23:00")]["issue_time"].item()
    assert first_of_day3 == last_of_day3 == pd.Timestamp("2016-01-02 10:00")


def test_a_model_with_other_settings_or_without_its_files_location_is_not_reused():
    current = generation_params("wind01")
    tags = {TAG_ARTIFACT_LOCATION: "s3://bucket/x"}
    assert reusable(tags, {**current, "extra": "1"}, current)
    assert not reusable({}, current, current)
    assert not reusable(tags, {**current, "lgb.num_leaves": "63"}, current)
    assert not reusable(tags, {**current, "assets": "wind02"}, current)
    assert current["rounds.p10"] == str(gen.TUNED_ROUNDS["p10"]) and current["lgb.min_data_in_leaf"] == "200"


@pytest.mark.parametrize("bad", ["lgb.learning_rate", "features"])
def test_every_booster_setting_and_the_feature_list_take_part(bad):
    current = generation_params("wind01")
    assert bad in current
    assert not reusable({TAG_ARTIFACT_LOCATION: "x"}, {k: v for k, v in current.items() if k != bad}, current)
