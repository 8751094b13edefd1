"""The champion/challenger rule: promote only on MAE better by the margin with coverage in the band."""

from __future__ import annotations

import pandas as pd
import pytest

from core.errors import InvalidArgumentError
from pipelines.challenger import KEPT, PROMOTED, Rule, decide, scores

RULE = Rule()


def test_a_challenger_better_by_the_margin_with_coverage_in_the_band_is_promoted():
    decision, reason = decide({"mae": 100.0, "coverage": 0.6}, {"mae": 97.9, "coverage": 0.80}, RULE)
    assert decision == PROMOTED and "-2.1%" in reason


def test_a_challenger_better_by_less_than_the_margin_is_refused():
    decision, reason = decide({"mae": 100.0, "coverage": 0.8}, {"mae": 98.5, "coverage": 0.80}, RULE)
    assert decision == KEPT and "not 2% below the champion's 100" in reason


@pytest.mark.parametrize("coverage", [0.74, 0.86])
def test_coverage_outside_the_band_is_refused_however_good_the_mae(coverage):
    decision, reason = decide({"mae": 100.0, "coverage": 0.8}, {"mae": 50.0, "coverage": coverage}, RULE)
    assert decision == KEPT and f"coverage {coverage:.3f} is outside 0.75..0.85" in reason


def test_a_challenger_worse_than_seasonal_naive_is_refused():
    assert decide({"mae": 100.0, "coverage": 0.8}, {"mae": 50.0, "coverage": 0.8}, RULE, True)[0] == KEPT


def test_a_refusal_names_every_condition_missed():
    decision, reason = decide({"mae": 100.0, "coverage": 0.8}, {"mae": 120.0, "coverage": 0.9}, RULE, True)
    assert decision == KEPT and reason.count(";") == 2
    assert "seasonal naive" in reason and "coverage 0.900 is outside" in reason and "+20.0%" in reason


def test_no_champion_promotes_a_valid_challenger():
    assert decide(None, {"mae": 50.0, "coverage": 0.8}, RULE)[0] == PROMOTED


@pytest.mark.parametrize(("rule", "message"), [(Rule(margin=1.5), "margin=1.5 is out of range 0..1"),
                                               (Rule(coverage_min=0.9, coverage_max=0.8), "0 <= min < max <= 1")])
def test_bad_rules_are_one_clear_error(rule, message):
    with pytest.raises(InvalidArgumentError, match=message):
        rule.check()


def test_scores_are_mae_of_the_point_and_share_inside_p10_p90():
    rows = pd.DataFrame({"y": [10.0, 20.0, 30.0, float("nan")]})
    pred = pd.DataFrame({"point": [11.0, 18.0, 30.0, 5.0], "p10": [9.0, 19.0, 25.0, 0.0],
                         "p90": [12.0, 21.0, 29.0, 9.0]})
    assert scores(rows, pred) == {"mae": pytest.approx(1.0), "coverage": pytest.approx(2 / 3), "rows": 3}
