"""The one way code reaches Feast: `get_store()`, materialization and online reads by feature service."""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import NamedTuple

import pandas as pd
from psycopg import sql

from core.errors import (
    FeaturesUnavailableError,
    OnlineStoreAccessError,
    UnknownAssetError,
    UnknownFeatureServiceError,
)
from core.names import check_asset_id, check_tenant_id
from core.settings import ROOT, Settings
from warehouse.db import DatabaseUnavailableError, connect
from warehouse.freshness import LATEST_COLUMNS

logger = logging.getLogger(__name__)


def get_store(settings: Settings):
    """A FeatureStore for this repo and the Feast yaml in use."""
    from feast import FeatureStore

    store = FeatureStore(repo_path=str(ROOT), fs_yaml_file=settings.feast_yaml)
    # Redis credentials: the yaml's, or EMS_REDIS_USERNAME / EMS_REDIS_PASSWORD (the service's ACL user)
    store.config.online_store.connection_string = settings.redis_connection_string
    if store.config.mlflow is not None:  # Feast's MLflow lineage goes to the server `ems` uses
        store.config.mlflow.tracking_uri = settings.mlflow_tracking_uri
    return store


@contextmanager
def registry_reachable(store) -> Iterator[None]:
    """Feast's SQL registry is a Postgres database: not reaching it is one DatabaseUnavailableError
    naming its address, as for the offline store (SQLAlchemy's own message spans several lines)."""
    from sqlalchemy.exc import OperationalError

    try:
        yield
    except OperationalError as e:
        from sqlalchemy.engine import make_url

        url = make_url(store.config.registry.path)
        raise DatabaseUnavailableError(
            f"cannot reach the Feast registry in Postgres at {url.host}:{url.port}/{url.database} "
            f"({' '.join(str(e.orig).split())}); start the local stack with `ems up` or fix the registry "
            "block of the Feast yaml"
        ) from e


# Feast rebuilds a FeatureService from its proto on every registry lookup (~10 ms here, typeguard
# checks included) even when the registry itself is cached; keep the objects for the registry's
# own cache_ttl_seconds, so staleness is the same as Feast's.
_SERVICES: dict[tuple[int, str], tuple[float, object, tuple[list[str], list[str]], list[str], object]] = {}
TARGET_ENTITY = "target_hour"  # views keyed by it hold covariates for the target hour (feature_repo/views.py)


def _cached_service(store, name: str):
    key = (id(store), name)
    hit = _SERVICES.get(key)
    ttl = getattr(store.config.registry, "cache_ttl_seconds", 60) or 0
    if hit and time.monotonic() - hit[0] < ttl:
        return hit
    from feast.errors import FeatureServiceNotFoundException

    with registry_reachable(store):
        try:
            fs = store.get_feature_service(name, allow_cache=True)
        except FeatureServiceNotFoundException as e:
            known = sorted(fs.name for fs in store.list_feature_services())
            raise UnknownFeatureServiceError(
                f"feature service {name!r} is not registered; known: {', '.join(known) or 'none (run `feast apply`)'}"
            ) from e
        on_demand = {v.name for v in store.list_on_demand_feature_views(allow_cache=True)}
        targeted = {v.name for v in store.list_feature_views(allow_cache=True) if TARGET_ENTITY in v.entities}
    issue, calendar, target = [], [], []
    for projection in fs.feature_view_projections:
        names = [f.name for f in projection.features]
        (calendar if projection.name in on_demand else target if projection.name in targeted else issue).extend(names)
    if target:
        # Target-hour covariates are joined per (issue time, target hour), not on the hourly grid of the
        # other views: every grid read (training grid, online, offline, anomaly frames) gets the service
        # without them, and registry/target_weather.py adds them to each (issue, target) row.
        grid = copy.copy(fs)
        grid.feature_view_projections = [p for p in fs.feature_view_projections if p.name not in targeted]
        fs = grid
    # What get_historical_features joins on the grid: the service itself, or (with target-hour views, which
    # Feast would add back from the registry by the service's name) the references of the rest.
    refs = [f"{p.name_to_use()}:{f.name}" for p in fs.feature_view_projections for f in p.features] if target else fs
    _SERVICES[key] = hit = (time.monotonic(), fs, (issue, calendar), target, refs)
    return hit


PEER_TAG = "peer_inputs"  # feature service tag: "site" = models trained on it also read their site peers' load


def service_uses_peers(store, service: str) -> bool:
    """Whether models trained on `service` get the peer inputs (registry/design.py PEER): its tag
    peer_inputs=site."""
    return (feature_service(store, service).tags or {}).get(PEER_TAG) == "site"


def feature_service(store, name: str):
    """A registered FeatureService by name (one clear error listing the known ones otherwise), without its
    target-hour covariate views (service_target_columns): what every hourly-grid read joins."""
    return _cached_service(store, name)[1]


def grid_features(store, name: str):
    """The `features` argument of get_historical_features for a service's hourly-grid join (the service, or
    the references of its views other than the target-hour ones)."""
    return _cached_service(store, name)[4]


def service_columns(store, service: str) -> tuple[list[str], list[str]]:
    """(issue-time features, target-time calendar features) of a feature service, in service order."""
    issue, calendar = _cached_service(store, service)[2]
    return list(issue), list(calendar)


def service_target_columns(store, service: str) -> list[str]:
    """The service's covariates for the target hour (views keyed by target_hour, e.g. weather_forecast), as
    the view names them; models read them as `target_<name>` (registry/target_weather.py)."""
    return list(_cached_service(store, service)[3])


def materialize(
    settings: Settings,
    end: datetime | None = None,
    on_view: Callable[[str, int, int], None] | None = None,
    store=None,
    start: datetime | None = None,
    full: bool = False,
):
    """Bring the online store up to date with the feature tables (warehouse/materialize.py): the latest
    row of every entity `ems refresh` changed since the last run, whatever its event time (new assets,
    late data, corrections, backfills); views never loaded or redefined since are loaded whole, and
    `full` reloads every view whole. `start` instead runs Feast's own window materialization from
    that time to `end` for every view (`feast materialize START END`; it skips rows not newer than
    what Redis holds). Returns a MaterializeReport, or {view: (start, end)} with `start`."""
    from warehouse.materialize import materialize_changes

    store = store or get_store(settings)
    end = (end or datetime.now(UTC)).astimezone(UTC)
    with registry_reachable(store):
        views = [fv for fv in store.list_batch_feature_views() if fv.online]
    if not views:
        raise FeaturesUnavailableError("no feature views are registered: run `feast apply` first")
    if start is None:
        return materialize_changes(settings, store, views, end=end, full=full, progress=on_view)
    done: dict[str, tuple[datetime, datetime]] = {}
    for i, fv in enumerate(views):
        if on_view:
            on_view(fv.name, i, len(views))
        begin = start if fv.ttl else _earliest_event(settings, fv.batch_source.get_table_query_string()) or end
        store.materialize(start_date=begin, end_date=end, feature_views=[fv.name])
        done[fv.name] = (begin, end)
    return done


def _earliest_event(settings: Settings, source_query: str) -> datetime | None:
    with connect(settings) as conn:
        row = conn.execute(
            sql.SQL("SELECT min(event_timestamp) FROM {} AS source").format(sql.SQL(source_query))
        ).fetchone()
    return row[0] if row and row[0] else None


LATEST_HOUR_SQL = f"""
    SELECT a.asset_id, {LATEST_COLUMNS}, a.kind, a.capacity, a.technology
    FROM assets a WHERE a.tenant_id = %s AND a.asset_id = ANY(%s)
"""  # the tenant filter as a plain equality: this runs on every forecast call


class AssetState(NamedTuple):
    """What a forecast call needs to know of an asset, read in one query."""

    features_end: datetime | None  # end of its latest complete hour: the issue time of its newest features
    readings_end: datetime | None  # end of the hour of its latest reading
    kind: str  # consumption | generation | market (core.names.ASSET_KINDS)
    capacity: float | None  # generation units
    technology: str | None  # generation units: wind | pv


def asset_states(settings: Settings, tenant: str, assets: list[str], conn=None) -> dict[str, AssetState]:
    """Per asset its AssetState. Raises UnknownAssetError for an asset the tenant does not have. `conn`: an
    open connection to reuse (the SDK keeps one), else a new one."""
    if conn is not None:
        rows = conn.execute(LATEST_HOUR_SQL, (tenant, assets)).fetchall()
    else:
        with connect(settings) as c:
            rows = c.execute(LATEST_HOUR_SQL, (tenant, assets)).fetchall()
    known = {asset: AssetState(*rest) for asset, *rest in rows}
    missing = [a for a in assets if a not in known]
    if missing:
        raise UnknownAssetError(f"tenant {tenant!r} has no asset(s) {', '.join(map(repr, missing))}")
    return known


def latest_times(settings: Settings, tenant: str, assets: list[str], conn=None
                 ) -> dict[str, tuple[datetime | None, datetime | None]]:
    """Per asset: (end of its latest complete hour in the hourly aggregate = the issue time of its newest
    features, end of the hour of its latest reading); see asset_states."""
    return {a: state[:2] for a, state in asset_states(settings, tenant, assets, conn).items()}


def latest_feature_time(settings: Settings, tenant: str, assets: list[str], conn=None) -> dict[str, datetime | None]:
    """End of each asset's latest complete hour (the issue time of its newest features); see latest_times."""
    return {a: times[0] for a, times in latest_times(settings, tenant, assets, conn).items()}


def behind_readings(asset: str, features_end: datetime | None, readings_end: datetime | None) -> str | None:
    """A warning when the asset's readings reach past its newest feature hour (`ems refresh` has not run
    since they arrived), with both times and the fix; None when the features are current."""
    if readings_end is None or (features_end is not None and features_end >= readings_end):
        return None
    have = features_end.isoformat() if features_end else "none"
    return (f"features of {asset!r} end at {have} but its readings reach {readings_end.isoformat()}: "
            "run `ems refresh` then `ems materialize`")


def online_features(
    settings: Settings,
    service: str,
    tenant: str,
    assets: list[str],
    target_time: datetime | None = None,
    store=None,
) -> pd.DataFrame:
    """Online features of a feature service for some assets. Calendar features describe
    `target_time` (default: each asset's latest complete hour)."""
    import redis
    from redis.exceptions import RedisClusterException

    check_tenant_id(tenant)
    for a in assets:
        check_asset_id(a)
    if not assets:
        raise UnknownAssetError("no asset given: pass at least one asset id")
    store = store or get_store(settings)
    fs = feature_service(store, service)
    latest = latest_feature_time(settings, tenant, assets)
    rows = []
    for a in assets:
        when = pd.Timestamp(target_time or latest[a] or datetime.now(UTC))
        when = when.tz_convert("UTC") if when.tzinfo else when.tz_localize("UTC")
        rows.append({"tenant_id": tenant, "asset_id": a, "target_time": when})
    try:
        frame = store.get_online_features(features=grid_features(store, service), entity_rows=rows).to_df()
    except (redis.AuthenticationError, redis.exceptions.NoPermissionError) as e:
        raise redis_refused(e, settings.redis) from e
    except (redis.RedisError, RedisClusterException, ConnectionError) as e:  # a cluster's errors are not RedisErrors
        raise FeaturesUnavailableError(f"online store unreachable ({e}); run `ems up`") from e
    ordered = [f.name for projection in fs.feature_view_projections for f in projection.features]
    return frame[["tenant_id", "asset_id", *ordered]]


def redis_refused(error: Exception, address) -> OnlineStoreAccessError:
    """Redis refused the credentials (or a command) of `address` (core.settings.RedisAddress): one error
    naming the user, the server and where the credentials come from."""
    user = address.username or "default"
    return OnlineStoreAccessError(
        f"Redis at {address.host}:{address.port} refused user {user!r} ({error}): set EMS_REDIS_USERNAME and "
        "EMS_REDIS_PASSWORD, or username= and password= in the Feast yaml's online_store.connection_string")
