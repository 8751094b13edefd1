"""Calendar features of the target time, in the asset's local time zone (on-demand, no I/O)."""

from zoneinfo import available_timezones

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

KNOWN_ZONES = frozenset(available_timezones())  # ingest validates zones; anything else reads as UTC
BUSINESS_HOURS = range(8, 18)  # 08:00-17:59 local, Monday to Friday


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
    "is_business_hours = Mon-Fri 08:00-17:59 local.",
)
def calendar(inputs: pd.DataFrame) -> pd.DataFrame:
    utc = pd.to_datetime(inputs["target_time"], utc=True)
    zones = inputs["timezone"].fillna("UTC").replace("", "UTC")
    local = pd.DataFrame(index=inputs.index, columns=["hour", "dow", "day", "month"], dtype="int64")
    for zone, idx in zones.groupby(zones).groups.items():
        t = utc.loc[idx].dt.tz_convert(zone if zone in KNOWN_ZONES else "UTC")
        local.loc[idx] = pd.DataFrame(
            {"hour": t.dt.hour, "dow": t.dt.dayofweek, "day": t.dt.day, "month": t.dt.month}, index=idx
        )
    local = local.astype("int64")
    out = pd.DataFrame(index=inputs.index)
    out["hour_of_day"] = local["hour"]
    out["day_of_week"] = local["dow"]
    out["is_weekend"] = (local["dow"] >= 5).astype("int64")
    out["day_of_month"] = local["day"]
    out["month"] = local["month"]
    out["is_business_hours"] = ((local["dow"] < 5) & local["hour"].isin(BUSINESS_HOURS)).astype("int64")
    return out
