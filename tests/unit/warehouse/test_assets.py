"""Asset kinds: what each kind requires, checked before anything is written."""

from __future__ import annotations

import pytest

from core.errors import InvalidArgumentError
from warehouse.assets import check_kind


@pytest.mark.parametrize(("args", "want"), [
    (("consumption",), ("consumption", None, None)),
    (("market",), ("market", None, None)),
    (("generation", 16, "wind"), ("generation", 16.0, "wind")),
    (("generation", 0.5, "pv"), ("generation", 0.5, "pv")),
])
def test_good_kinds(args, want):
    assert check_kind(*args) == want


@pytest.mark.parametrize(("args", "message"), [
    (("battery",), "kind='battery' is not an asset kind; use one of consumption, generation, market"),
    (("generation", None, "wind"), "capacity=None is not a positive number"),
    (("generation", -3.0, "wind"), "capacity=-3.0 is not a positive number"),
    (("generation", float("nan"), "wind"), "capacity=nan is not a positive number"),
    (("generation", True, "wind"), "capacity=True is not a positive number"),
    (("generation", "16", "wind"), "capacity='16' is not a positive number"),
    (("generation", 16, "hydro"), "technology='hydro' is not known; use one of wind, pv"),
    (("consumption", 16, None), "a consumption asset has no capacity or technology"),
    (("market", None, "wind"), "a market asset has no capacity or technology"),
])
def test_bad_kinds_name_the_value(args, message):
    with pytest.raises(InvalidArgumentError, match=message.replace("(", "\\(").replace(")", "\\)")):
        check_kind(*args)
