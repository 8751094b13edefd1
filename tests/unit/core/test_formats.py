import math

import numpy as np

from core.formats import MISSING, magnitude, number


def test_numbers_follow_the_spec_and_missing_values_show_a_dash():
    assert number(1234.5678) == "1,234.57"
    assert number(0.12345, "+.3f") == "+0.123"
    assert number(np.float64(12345.678), ",.4g") == "1.235e+04"
    assert [number(v) for v in (None, math.nan, math.inf, np.nan)] == [MISSING] * 4
    assert number(None, missing="-") == "-"


def test_text_and_integers_are_shown_as_they_are():
    assert number("zone1") == "zone1"
    assert number(13) == "13" and number(np.int64(13)) == "13" and number(True) == "True"


def test_magnitude_picks_decimals_by_size():
    assert [magnitude(v) for v in (12345.6, 12.345, 0.012345)] == ["12,346", "12.35", "0.0123"]
