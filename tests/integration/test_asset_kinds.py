"""Asset kinds in the warehouse on the session's schema path: set and read back, and the table's own check
refuses what `set_kind` would (a generation unit without a capacity, a meter with one)."""

from __future__ import annotations

import psycopg
import pytest

from core.errors import UnknownAssetError
from tests.helpers.data import tetouan_slice
from warehouse.assets import list_assets, set_kind
from warehouse.ingest import ingest_readings
from warehouse.store import asset_states

pytestmark = pytest.mark.integration
TENANT = "kinds"


def test_kinds_are_stored_checked_and_read_with_the_latest_hours(stack, tmp_path):
    ingest_readings(stack, tetouan_slice(tmp_path / "t.csv", "2017-06-01", "2017-06-02"), TENANT, wide=True,
                    columns="meter=zone1_power_consumption,farm=zone2_power_consumption")
    assert set_kind(stack, TENANT, "farm", "generation", 16, "wind")["capacity"] == 16.0
    states = asset_states(stack, TENANT, ["meter", "farm"])
    assert (states["meter"].kind, states["meter"].capacity) == ("consumption", None)  # ingest's default
    assert (states["farm"].kind, states["farm"].capacity, states["farm"].technology) == ("generation", 16.0, "wind")
    assert list_assets(stack, TENANT)[["asset_id", "kind"]].values.tolist() == [["farm", "generation"],
                                                                               ["meter", "consumption"]]
    with pytest.raises(UnknownAssetError, match="tenant 'kinds' has no asset 'nope'"):
        set_kind(stack, TENANT, "nope", "market")
    with psycopg.connect(stack.postgres.conninfo()) as conn:
        for bad in ("UPDATE assets SET kind = 'generation' WHERE asset_id = 'meter'",  # no capacity
                    "UPDATE assets SET capacity = 3 WHERE asset_id = 'meter'",  # a meter with a capacity
                    "UPDATE assets SET capacity = -1 WHERE asset_id = 'farm'",
                    "UPDATE assets SET kind = 'battery' WHERE asset_id = 'meter'"):
            with pytest.raises(psycopg.errors.CheckViolation, match="assets_kind_check"):
                conn.execute(bad)
            conn.rollback()
    assert asset_states(stack, TENANT, ["meter"])["meter"].kind == "consumption"


def test_load_models_train_on_the_consumption_meters_only(stack):
    """After the test above: the tenant has a meter and a wind unit. A load training set takes the meter
    alone by default, and naming the wind unit is one clear error (its forecaster is --type generation)."""
    from registry.training_data import tenant_assets

    assert tenant_assets(stack, TENANT, None) == ["meter"]
    with pytest.raises(UnknownAssetError, match=r"'farm' \(generation\) of tenant 'kinds' are not consumption meters"):
        tenant_assets(stack, TENANT, ["meter", "farm"])
