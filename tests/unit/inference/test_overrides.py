"""Caller overrides of issue-time inputs: only names the model reads at issue time, finite numbers."""

import math

import pytest

from core.errors import InvalidArgumentError
from inference.checks import overrides

ISSUE, DERIVED = ["lag_1h", "temperature"], ["hour_of_day", "is_holiday"]


def test_issue_time_inputs_are_taken_as_floats():
    assert overrides({"lag_1h": 3, "temperature": "21.5"}, ISSUE, DERIVED) == {"lag_1h": 3.0, "temperature": 21.5}
    assert overrides(None, ISSUE, DERIVED) == {}


@pytest.mark.parametrize("values, message", [
    ({"hour_of_day": 3}, "'hour_of_day' is derived from each target hour and cannot be overridden; "
                         "overridable: lag_1h, temperature"),
    ({"lag_2h": 1}, "'lag_2h' is not one the model takes at issue time; overridable: lag_1h, temperature"),
    ({"lag_1h": math.inf}, "lag_1h=inf must be a finite number"),
    ({"lag_1h": None}, "lag_1h=None must be a finite number"),
    ({"lag_1h": "warm"}, "feature lag_1h='warm' is not a number"),
    ([("lag_1h", 1)], "features must be a dict of input name -> number, not list"),
])
def test_anything_else_is_refused_naming_the_value_and_what_is_allowed(values, message):
    with pytest.raises(InvalidArgumentError) as e:
        overrides(values, ISSUE, DERIVED)
    assert message in str(e.value)
