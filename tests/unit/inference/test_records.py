"""A forecast's JSON rows come straight from its columns on the serving path: the same records the
DataFrame path gives (times ISO 8601, NaN and inf as None, numpy numbers as Python ones)."""

import numpy as np
import pandas as pd

from inference.results import _column_records, _records


def test_column_records_equal_the_frame_records():
    cols = {"timestamp": pd.date_range("2024-03-31", periods=24, freq="h", tz="UTC"),
            "horizon_h": np.arange(1, 25), "point": np.linspace(-1.5, 40.25, 24),
            "p10": np.r_[np.nan, np.inf, np.linspace(0, 1, 22)]}
    got = _column_records(cols)
    assert got == _records(pd.DataFrame(cols))
    assert got[0] == {"timestamp": "2024-03-31T00:00:00+00:00", "horizon_h": 1, "point": -1.5, "p10": None}
    assert got[1]["p10"] is None and type(got[5]["horizon_h"]) is int
