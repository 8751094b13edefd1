"""An asset's position (a PV unit's sun) and which generation units a model takes: checked before anything is
written or read further, one error naming the bad value and the allowed range or the fix."""

from __future__ import annotations

import pytest

from core.errors import InvalidArgumentError, UnknownAssetError
from warehouse.assets import check_position
from warehouse.generation import _checked


@pytest.mark.parametrize(("lat", "lon", "want"), [
    (None, None, None), ("35.6", "-5.4", (35.6, -5.4)), (-90, 180, (-90.0, 180.0)), (90.0, -180.0, (90.0, -180.0)),
])
def test_good_positions(lat, lon, want):
    assert check_position(lat, lon) == want


@pytest.mark.parametrize(("lat", "lon", "message"), [
    ("91", "0", r"latitude='91' is out of range: a latitude is a number in \[-90, 90\]"),
    (-90.5, 0, r"latitude=-90.5 is out of range: a latitude is a number in \[-90, 90\]"),
    ("north", "0", r"latitude='north' is out of range: a latitude is a number in \[-90, 90\]"),
    ("nan", "0", r"latitude='nan' is out of range"),
    (True, 0, r"latitude=True is out of range"),
    ("10", "180.5", r"longitude='180.5' is out of range: a longitude is a number in \[-180, 180\]"),
    ("10", "", r"longitude='' is out of range"),
    ("10", None, r"latitude='10' without a longitude: give both"),
    (None, 3.0, r"longitude=3.0 without a latitude: give both"),
])
def test_bad_positions_name_the_value_and_the_range(lat, lon, message):
    with pytest.raises(InvalidArgumentError, match=message):
        check_position(lat, lon)


WIND = ("w1", "generation", 10.0, "wind", "site-w", None, None)
PV = ("p1", "generation", 2.5, "pv", "site-p", 35.6, -5.4)
UNPLACED = ("p2", "generation", 2.5, "pv", "site-p", None, None)
METER = ("m1", "consumption", None, None, "site-m", None, None)


def test_a_model_takes_the_units_of_one_technology():
    assert _checked([WIND, METER], "t", None) == [WIND]
    assert _checked([PV], "t", None) == [PV]
    assert _checked([WIND, PV], "t", None, "pv") == [PV]
    assert _checked([WIND, PV], "t", None, "wind") == [WIND]
    with pytest.raises(InvalidArgumentError, match=r"2 technologies \(pv: p1; wind: w1\).*--technology wind"):
        _checked([WIND, PV], "t", None)
    with pytest.raises(InvalidArgumentError, match="generation unit 'w1' is wind, not pv"):
        _checked([WIND, PV], "t", ["w1", "p1"], "pv")
    with pytest.raises(UnknownAssetError, match="tenant 't' has no pv unit"):
        _checked([WIND], "t", None, "pv")
    with pytest.raises(InvalidArgumentError, match="technology='hydro' is not known"):
        _checked([WIND], "t", None, "hydro")


def test_a_pv_unit_without_a_position_names_the_unit_and_the_fix():
    with pytest.raises(InvalidArgumentError, match=r"PV unit 'p2' of tenant 't' has no position, so no sun: set it "
                                                   r"with `ems assets set --tenant t --asset p2 --kind generation "
                                                   r"--capacity 2.5 --technology pv --latitude LAT --longitude LON`"):
        _checked([PV, UNPLACED], "t", None)
    assert _checked([WIND, UNPLACED], "t", None, "wind") == [WIND]  # not read for a wind model
