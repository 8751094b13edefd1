"""Training rows of the generation forecaster from a unit's power and stored issues (no services): each row
reads the other units' forecasts by the same point-in-time rule as its own, and NaN when the unit is alone."""

import numpy as np
import pandas as pd
import pytest

from registry import generation as gen
from registry.train_generation import unit_rows

T = pd.Timestamp("2011-01-01T00:00", tz="UTC")


def _issues(offset: float) -> pd.DataFrame:
    """Issues every 12 h for 1-48 h ahead; the speed is offset + 100 * issue index + lead (it names its issue)."""
    out = []
    for k in range(8):
        issue = T - pd.Timedelta("24h") + pd.Timedelta(hours=12 * k)
        for lead in range(1, 49):
            out.append((issue + pd.Timedelta(hours=lead), issue, offset + 100 * k + lead, 1.0 + offset, 2.0))
    return pd.DataFrame(out, columns=["target_time", "issue_time", "wind_speed", "wind_u", "wind_v"])


def _power() -> pd.Series:
    return pd.Series(np.linspace(0, 1, 48), index=pd.date_range(T, periods=48, freq="h"))


def test_rows_read_the_other_units_forecasts_issued_by_the_origin():
    own, a, b = _issues(0.0), _issues(1000.0), _issues(2000.0)
    rows = unit_rows(_power(), own, "u0", origin_step=6, horizons=12, others=[a, b])
    for other_rows in (gen.pit_join(rows[["issued_by", "target"]], f) for f in (a, b)):
        assert other_rows["issue_time"].equals(rows["issue_time"])  # the same issue as the unit's own
    assert rows["ws_others_mean"].to_numpy() == pytest.approx(rows["wind_speed"].to_numpy() + 1500)
    assert rows["ws_others_mean3"].to_numpy() == pytest.approx(
        (rows["ws_before"] + rows["wind_speed"] + rows["ws_after"]).to_numpy() / 3 + 1500)
    assert rows["u_others_mean"].to_numpy() == pytest.approx(1501.0)
    X = gen.design(rows, ["u0", "u1", "u2"])
    assert X[list(gen.OTHERS)].notna().all().all()


def test_a_unit_alone_has_nan_other_unit_inputs():
    rows = unit_rows(_power(), _issues(0.0), "u0", origin_step=6, horizons=12)
    assert len(rows) > 0 and rows[list(gen.OTHERS)].isna().all().all()
    assert rows["wind_speed"].notna().all()
