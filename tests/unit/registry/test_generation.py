"""The generation forecaster's design and model on small synthetic rows: inputs derived as documented,
predictions bounded to [0, 1] with sorted quantiles, the band calibrated to 80 %, the unit as a category."""

import numpy as np
import pandas as pd
import pytest

from registry import generation as gen

T = pd.Timestamp("2011-01-01T00:00", tz="UTC")


def _rows(n: int = 4000, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """A power curve: 0 below 3 m/s, cubic to capacity at 12 m/s, capacity above; unit b is 70 % of a."""
    rng = np.random.default_rng(seed)
    h = rng.integers(1, 49, n)
    ws = rng.gamma(3.0, 2.5, n)
    angle = rng.uniform(0, 2 * np.pi, n)
    unit = np.where(rng.random(n) < 0.5, "a", "b")
    rows = pd.DataFrame({
        "unit": unit, "origin": T, "target": T + pd.to_timedelta(h, unit="h"),
        "issue_time": T, "wind_speed": ws, "wind_u": ws * np.sin(angle), "wind_v": ws * np.cos(angle),
        "ws_prev": ws + rng.normal(0, 1, n), "ws_before": ws, "ws_after": ws,
        "power_last": rng.random(n), "power_mean_3h": rng.random(n), "power_mean_6h": rng.random(n)})
    curve = np.clip((ws - 3) / 9, 0, 1) ** 3 * np.where(unit == "a", 1.0, 0.7)
    y = np.clip(curve + rng.normal(0, 0.05 + 0.002 * h, n), 0, 1)
    return rows, y


def test_design_derives_powers_direction_lead_horizon_and_codes_the_unit():
    rows, _ = _rows(10)
    rows.loc[0, ["wind_speed", "wind_u", "wind_v"]] = [5.0, 3.0, 4.0]
    rows.loc[0, "issue_time"] = T - pd.Timedelta("12h")
    rows.loc[1, "unit"] = "new"
    X = gen.design(rows, ["a", "b"])
    assert list(X.columns) == gen.FEATURES
    assert X.loc[0, ["ws", "ws2", "ws3", "dir_sin", "dir_cos"]].tolist() == pytest.approx([5, 25, 125, 0.6, 0.8])
    assert X.loc[0, "lead"] == X.loc[0, "horizon"] + 12
    assert np.isnan(X.loc[1, gen.UNIT])  # a unit the model was not trained on takes the shared branches
    assert set(X[gen.UNIT].dropna()) <= {0.0, 1.0}


def test_missing_weather_stays_nan_not_zero():
    rows, _ = _rows(3)
    rows.loc[2, ["wind_speed", "wind_u", "wind_v", "ws_prev"]] = np.nan
    X = gen.design(rows, ["a", "b"])
    assert X.loc[2, ["ws", "ws3", "dir_sin", "ws_delta_prev"]].isna().all()


def test_bucket_edges():
    assert gen.bucket([1, 6, 7, 12, 13, 24, 25, 36, 37, 48]).tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]


@pytest.fixture(scope="module")
def fitted():
    rows, y = _rows()
    X = gen.design(rows, ["a", "b"])
    model = gen.GenerationModel(["a", "b"], {"num_leaves": 15, "min_data_in_leaf": 20},
                                {o: 80 for o in gen.OUTPUTS}).fit(X, y)
    return model, X, y


def test_predictions_are_bounded_and_sorted_and_learn_the_curve(fitted):
    model, X, y = fitted
    far = X.copy()
    far["ws"], far["ws3"] = 40.0, 40.0 ** 3  # beyond anything seen: still within [0, 1]
    for frame in (X, far):
        p = model.predict(frame)
        assert list(p.columns) == list(gen.OUTPUTS)
        assert ((p >= 0) & (p <= 1)).all().all()
        assert (p["p10"] <= p["p50"]).all() and (p["p50"] <= p["p90"]).all()
    p = model.predict(X)
    rmse = np.sqrt(np.mean((p["point"] - y) ** 2))
    assert rmse < 0.5 * np.std(y)  # far better than the mean


def test_calibration_puts_80_percent_inside_the_band_per_bucket(fitted):
    model, _, _ = fitted
    rows, y = _rows(3000, seed=1)
    X = gen.design(rows, ["a", "b"])
    widen = model.calibrate(X, y)
    assert widen.shape == (len(gen.BUCKETS) - 1,)
    p = model.predict(X)
    inside = (y >= p["p10"]) & (y <= p["p90"])
    b = gen.bucket(X["horizon"])
    for i in range(len(gen.BUCKETS) - 1):
        assert 0.77 <= inside[b == i].mean() <= 0.9
    model.widen = np.zeros_like(widen)


def test_pinball_of_a_perfect_forecast_is_zero_and_of_an_offset_is_half_of_it():
    y = np.array([0.2, 0.4])
    exact = pd.DataFrame({q: y for q in gen.QUANTILES})
    assert gen.pinball(y, exact) == 0
    low = pd.DataFrame({q: y - 0.1 for q in gen.QUANTILES})  # 0.1 under: losses 0.01, 0.05, 0.09
    assert gen.pinball(y, low) == pytest.approx(0.05)


def _issues() -> pd.DataFrame:
    """Issues at 00:00 and 12:00 for 1-48 h; the value names the issue: 100 * issue hour + lead."""
    out = []
    for issue in (T - pd.Timedelta("12h"), T, T + pd.Timedelta("12h")):
        for lead in range(1, 49):
            base = 100 * ((issue - T) / pd.Timedelta("1h")) + lead
            out.append((issue + pd.Timedelta(hours=lead), issue, base, 1.0, 2.0))
    return pd.DataFrame(out, columns=["target_time", "issue_time", "wind_speed", "wind_u", "wind_v"])


def test_pit_join_takes_the_latest_issue_by_the_origin_and_never_a_later_one():
    rows = pd.DataFrame({"issued_by": [T + pd.Timedelta("5h"), T + pd.Timedelta("12h"), T - pd.Timedelta("1h")],
                         "target": [T + pd.Timedelta("13h")] * 3})
    got = gen.pit_join(rows, _issues())
    assert got["issue_time"].tolist() == [T, T + pd.Timedelta("12h"), T - pd.Timedelta("12h")]
    assert got["wind_speed"].tolist() == [13, 1201, -1200 + 25]
    assert got["ws_prev"].tolist()[:2] == [-1200 + 25, 13] and np.isnan(got["ws_prev"].iloc[2])
    assert got["ws_before"].tolist() == [12, 12, -1200 + 24]  # target 12:00: lead 0 of the 12:00 issue is none
    assert got.loc[0, "ws_after"] == 14
    assert got.loc[0, ["ws_before3", "ws_before2", "ws_after2", "ws_after3"]].tolist() == [10, 11, 15, 16]


def test_pit_join_leaves_nan_where_nothing_was_issued():
    rows = pd.DataFrame({"issued_by": [T - pd.Timedelta("13h")], "target": [T]})
    got = gen.pit_join(rows, _issues())
    assert got[["wind_speed", "wind_u", "ws_prev", "ws_before"]].isna().all().all()


def test_recent_power_uses_the_hours_up_to_the_origin_only():
    power = pd.Series([0.1, 0.2, 0.3, 0.4, 0.5], index=pd.date_range(T, periods=5, freq="h"))
    got = gen.recent(power, pd.Series([T + pd.Timedelta("2h"), T + pd.Timedelta("9h")]))
    assert got["power_last"][0] == pytest.approx(0.3) and got["power_mean_3h"][0] == pytest.approx(0.2)
    assert got["power_mean_6h"][0] == pytest.approx(0.2)  # only 3 hours known
    assert np.isnan(got["power_last"][1])


def test_smoothed_speeds_are_means_over_the_neighbouring_hours_issued():
    rows, _ = _rows(2)
    speeds = {"ws_before3": 1.0, "ws_before2": 2.0, "ws_before": 3.0, "wind_speed": 4.0, "ws_after": 5.0,
              "ws_after2": 6.0, "ws_after3": 7.0}
    for c, v in speeds.items():
        rows[c] = v
    rows.loc[1, "ws_after3"] = np.nan  # not issued: the 7-hour mean is over the six that are
    X = gen.design(rows, ["a", "b"])
    assert X.loc[0, ["ws_mean3", "ws_mean5", "ws_mean7"]].tolist() == pytest.approx([4, 4, 4])
    assert X.loc[0, "ws_std5"] == pytest.approx(np.sqrt(2))
    assert X.loc[0, "ws3_mean5"] == pytest.approx((8 + 27 + 64 + 125 + 216) / 5)
    assert X.loc[1, "ws_mean7"] == pytest.approx(3.5)


def test_inputs_the_caller_does_not_give_are_nan():
    """A caller with the first design's columns only (no t-/+2-3 h speeds, no other units): NaN, not zero."""
    rows, _ = _rows(3)
    X = gen.design(rows, ["a", "b"])
    assert X[list(gen.OTHERS)].isna().all().all()
    assert X["ws_mean3"].tolist() == pytest.approx(rows["wind_speed"].tolist())  # t-1, t, t+1 are given


def test_others_are_means_over_the_other_units_and_nan_for_a_unit_alone():
    ws = np.array([[4.0, np.nan], [6.0, 2.0]])  # (other unit, row); unit 0 issued nothing for row 1
    before, after = ws - 1, ws + 4
    got = gen.others(ws, ws / 2, -ws, before, after)
    assert got["ws_others_mean"].tolist() == [5.0, 2.0]
    assert got["ws_others_mean3"].tolist() == pytest.approx([6.0, 3.0])  # each unit's (t-1, t, t+1) mean
    assert got["u_others_mean"].tolist() == [2.5, 1.0] and got["v_others_mean"].tolist() == [-5.0, -2.0]
    alone = gen.others(*(np.empty((0, 2)) for _ in range(5)))
    assert all(np.isnan(v).all() and v.shape == (2,) for v in alone.values())


def test_a_model_trained_with_other_units_forecasts_still_forecasts_a_unit_alone(fitted):
    rows, y = _rows(4000, seed=2)
    rows["ws_others_mean"], rows["ws_others_mean3"] = rows["wind_speed"] * 1.1, rows["wind_speed"]
    rows["u_others_mean"], rows["v_others_mean"] = rows["wind_u"], rows["wind_v"]
    X = gen.design(rows, ["a", "b"])
    model = gen.GenerationModel(["a", "b"], {"num_leaves": 15, "min_data_in_leaf": 20},
                                {o: 60 for o in gen.OUTPUTS}).fit(X, y)
    alone = X.copy()
    alone[list(gen.OTHERS)] = np.nan
    p = model.predict(alone)
    assert p.notna().all().all() and ((p >= 0) & (p <= 1)).all().all()
    assert np.sqrt(np.mean((p["point"] - y) ** 2)) < 0.5 * np.std(y)  # its own forecast still carries it


def test_the_pyfunc_reads_the_features_its_model_was_trained_on(fitted):
    model, X, _ = fitted
    f = gen.GenerationForecaster(model)
    assert f.features == gen.FEATURES
    pd.testing.assert_frame_equal(f.predict(None, X), model.predict(X))
    with pytest.raises(ValueError, match="lacks column.*ws_others_mean"):
        f.predict(None, X.drop(columns="ws_others_mean"))
    _, y = _rows()
    old = gen.GenerationModel(["a", "b"], {"num_leaves": 7}, {o: 5 for o in gen.OUTPUTS},
                              features=gen.FEATURES_V1).fit(X, y)
    del old.features  # as pickled before models carried their features: the first design's inputs
    assert len(old.predict(X)) == len(X)
    served = gen.GenerationForecaster(model)
    served.model = old
    assert len(served.predict(None, X[gen.FEATURES_V1])) == len(X)  # the new inputs are not required
    with pytest.raises(ValueError, match="lacks column.*power_last"):
        served.predict(None, X.drop(columns="power_last"))


def test_serving_shortcuts_give_the_frames_numbers(fitted):
    """design on a mapping of arrays (serving's) and predict_matrix on its matrix give design on the frame and
    predict, exactly; recent of a gap-ridden series at one origin is its value at that origin among many."""
    model, _, _ = fitted
    rows, _ = _rows(30, seed=4)
    rows.loc[3, "wind_speed"] = np.nan
    frame = gen.design(rows, ["a", "b"])
    given = gen.design({c: rows[c].to_numpy() for c in rows.columns}, ["a", "b"])
    np.testing.assert_array_equal(given.to_numpy(), frame.to_numpy())
    np.testing.assert_array_equal(model.predict_matrix(model.matrix(given), given["horizon"].to_numpy()),
                                  model.predict(frame).to_numpy())
    power = pd.Series([0.11, np.nan, 0.37, 0.29, 0.53, 0.41], index=pd.date_range(T, periods=6, freq="h")).drop(
        T + pd.Timedelta("1h"))
    origins = pd.Series(pd.date_range(T, periods=8, freq="h"))
    many = gen.recent(power, origins)
    for i, origin in enumerate(origins):
        one = gen.recent(power, pd.Series([origin]))
        assert all(np.array_equal(one[k], many[k][i:i + 1], equal_nan=True) for k in many)


def test_the_point_mix_averages_the_l2_p50_and_the_units_own_booster():
    """POINT_MIX: each booster predicts once over the one matrix (a unit's booster over that unit's rows);
    the point is the weighted mean of the clipped outputs; a unit the model has no booster of (unknown, or
    too few rows) gets the mean of the pooled two; the model pickled before the mix is the L2 booster alone."""
    rows, y = _rows(3000, seed=5)
    rows.loc[:5, "unit"] = "new"
    X = gen.design(rows, ["a", "b"])
    model = gen.GenerationModel(["a", "b"], {"num_leaves": 15, "min_data_in_leaf": 20},
                                {**{o: 40 for o in gen.OUTPUTS}, "unit": 30}, mix=gen.POINT_MIX).fit(X, y)
    assert sorted(model.unit_boosters) == [0, 1]
    assert model.unit_boosters[0].num_trees() == 30
    x = model.matrix(X)
    raw = {o: model.boosters[o].predict(x).clip(0, 1) for o in ("point", "p50")}
    own = np.full(len(x), np.nan)
    for code, booster in model.unit_boosters.items():
        own[x[:, 0] == code] = booster.predict(x[x[:, 0] == code, 1:]).clip(0, 1)
    expected = np.where(np.isnan(own), (raw["point"] + raw["p50"]) / 2, (raw["point"] + raw["p50"] + own) / 3)
    np.testing.assert_allclose(model.predict(X)["point"].to_numpy(), expected)
    np.testing.assert_allclose(model.predict_matrix(x, X["horizon"].to_numpy())[:, 3], expected)
    assert np.isnan(own[:6]).all() and np.isfinite(own[6:]).all()
    model.mix = {"point": 0.5, "p50": 0.5}  # a mix without the units' boosters leaves them out
    np.testing.assert_allclose(model.predict(X)["point"].to_numpy(), (raw["point"] + raw["p50"]) / 2)
    del model.mix, model.unit_boosters  # as pickled before the mix
    np.testing.assert_allclose(model.predict(X)["point"].to_numpy(), raw["point"])
    small = gen.GenerationModel(["a", "b"], {"num_leaves": 7, "min_data_in_leaf": 20}, {o: 5 for o in gen.OUTPUTS},
                                mix=gen.POINT_MIX).fit(X.head(gen.UNIT_MIN_ROWS), y[:gen.UNIT_MIN_ROWS])
    assert small.unit_boosters == {}  # fewer than UNIT_MIN_ROWS rows per unit: the pooled two only
    assert small.predict(X).notna().all().all()
