"""Entities: feature rows are keyed by (tenant_id, asset_id), one join key per entity."""

from feast import Entity
from feast.value_type import ValueType

tenant = Entity(
    name="tenant",
    join_keys=["tenant_id"],
    value_type=ValueType.STRING,
    description="Customer organisation (utility, building operator, grid team) owning assets and models.",
)

asset = Entity(
    name="asset",
    join_keys=["asset_id"],
    value_type=ValueType.STRING,
    description="A meter, building or feeder; unique within its tenant.",
)

target_hour = Entity(
    name="target_hour",
    join_keys=["target_hour"],
    value_type=ValueType.INT64,
    description="The hour a covariate forecast is for, as hours since 1970-01-01 UTC (its start).",
)
