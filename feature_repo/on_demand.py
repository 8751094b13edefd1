"""Calendar features of the target time, in the asset's local time zone (on-demand, no I/O)."""

import pandas as pd
from feast import Field, RequestSource
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Int64, UnixTimestamp

from feature_repo.views import asset_profile

target_time = RequestSource(
    name="target_time",
    schema=[Field(name="target_time", dtype=UnixTimestamp, description="Start of the hour to describe (UTC).")],
    description="The time calendar features describe: the forecast target hour, or the entity time.",
)


@on_demand_feature_view(
    sources=[asset_profile, target_time],
    schema=[
        Field(name="hour_of_day", dtype=Int64),
        Field(name="day_of_week", dtype=Int64),
        Field(name="is_weekend", dtype=Int64),
        Field(name="day_of_month", dtype=Int64),
        Field(name="month", dtype=Int64),
        Field(name="is_business_hours", dtype=Int64),
    ],
    mode="pandas",
    # No per-field descriptions: Feast 0.67 compares them with the inferred (empty) ones at apply.
    description="Calendar of target_time in the asset's IANA time zone: day_of_week Monday = 0; "
    "is_business_hours = Mon-Fri 08:00-17:59 local. Unknown zones read as UTC.",
)
def calendar(inputs: pd.DataFrame) -> pd.DataFrame:
    # Self-contained: Feast stores this function's source in the registry and runs it without
    # this module's globals.
    from zoneinfo import available_timezones

    import pandas as pd

    known = available_timezones()
    utc = pd.to_datetime(inputs["target_time"], utc=True)
    zones = inputs["timezone"].fillna("UTC").where(inputs["timezone"].isin(known), "UTC")
    parts = {"hour": [], "dow": [], "day": [], "month": []}
    index = []
    for zone, idx in zones.groupby(zones).groups.items():
        local = utc.loc[idx].dt.tz_convert(zone)
        index.extend(idx)
        parts["hour"].extend(local.dt.hour)
        parts["dow"].extend(local.dt.dayofweek)
        parts["day"].extend(local.dt.day)
        parts["month"].extend(local.dt.month)
    cal = pd.DataFrame(parts, index=index, dtype="int64").reindex(inputs.index)
    out = pd.DataFrame(index=inputs.index)
    out["hour_of_day"] = cal["hour"]
    out["day_of_week"] = cal["dow"]
    out["is_weekend"] = (cal["dow"] >= 5).astype("int64")
    out["day_of_month"] = cal["day"]
    out["month"] = cal["month"]
    out["is_business_hours"] = ((cal["dow"] < 5) & (cal["hour"] >= 8) & (cal["hour"] < 18)).astype("int64")
    return out
