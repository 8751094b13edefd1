"""Staleness: is what the online store serves as new as the readings?

An asset is stale when its online feature row (Redis, the event time Feast stores per view) is older
than the hour of its latest reading: either `ems refresh` has not run since the readings arrived or
`ems materialize` has not run since the refresh. The feed itself stalling shows as an old
`readings_end` (forecast results also carry `feature_age_seconds`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from warehouse import freshness

# The view whose event time stands for an asset's online load features (every load view is written
# by the same refresh and materialize runs).
LOAD_VIEW = "load_lags"


@dataclass(frozen=True)
class Freshness:
    tenant_id: str
    asset_id: str
    online_end: datetime | None  # event time of the online row (None: never materialized)
    features_end: datetime | None
    readings_end: datetime | None

    @property
    def lag_hours(self) -> float:
        """Hours by which the online row trails the latest reading (0 when current)."""
        if self.readings_end is None:
            return 0.0
        if self.online_end is None:
            return float("inf")
        return max((self.readings_end - self.online_end).total_seconds() / 3600, 0.0)

    @property
    def stale(self) -> bool:
        return self.lag_hours > 0

    def warning(self) -> str | None:
        """One sentence with both times and the fix, or None when the online row is current."""
        if not self.stale:
            return None
        online = self.online_end.isoformat() if self.online_end else "never materialized"
        fix = ("run `ems refresh` then `ems materialize`" if self.features_end is None
               or self.features_end < self.readings_end else "run `ems materialize`")
        return (f"online features of {self.asset_id!r} end at {online} but its readings reach "
                f"{self.readings_end.isoformat()}: {fix}")


def check(conn, store, tenant: str | None = None, assets: list[str] | None = None) -> list[Freshness]:
    """Freshness of the given assets (of one tenant, or every asset)."""
    from inference.online import online_reader

    rows = freshness.latest(conn, tenant, assets)
    stamps = online_reader(store).event_times([(r.tenant_id, r.asset_id) for r in rows], LOAD_VIEW)
    return [Freshness(r.tenant_id, r.asset_id, datetime.fromtimestamp(s, UTC) if s else None, r.features_end,
                      r.readings_end)
            for r, s in zip(rows, stamps, strict=True)]


def stale_warnings(settings, tenant: str, assets: list[str], store=None) -> list[str]:
    """One warning per asset whose online features trail its latest reading (see Freshness.warning)."""
    from warehouse.db import connect
    from warehouse.store import get_store

    store = store or get_store(settings)
    with connect(settings) as conn:
        return [w for f in check(conn, store, tenant, assets) if (w := f.warning())]


def materialization_lag(settings, store=None, worst: int = 5) -> dict:
    """Over every asset: how many have online features older than their latest reading, the largest
    lag, and the `worst` assets (for `ems status`)."""
    from warehouse.db import connect
    from warehouse.store import get_store

    store = store or get_store(settings)
    with connect(settings) as conn:
        rows = check(conn, store)
    stale = sorted((f for f in rows if f.stale), key=lambda f: (-f.lag_hours, f.tenant_id, f.asset_id))
    return {
        "assets": len(rows),
        "stale": len(stale),
        "max_lag_hours": _hours(stale[0].lag_hours) if stale else 0.0,
        "worst": [{"tenant_id": f.tenant_id, "asset_id": f.asset_id,
                   "online_end": f.online_end.isoformat() if f.online_end else None,
                   "features_end": f.features_end.isoformat() if f.features_end else None,
                   "readings_end": f.readings_end.isoformat() if f.readings_end else None,
                   "lag_hours": _hours(f.lag_hours)} for f in stale[:worst]],
    }


def _hours(lag: float) -> float | None:
    """A lag for JSON: None for an asset never materialized (infinite lag)."""
    return None if lag == float("inf") else round(lag, 2)
