"""Change-driven materialization: the latest feature row of every entity that changed, into the online store.

`ems refresh` queues each entity whose feature rows it changed (online_refresh_queue), with the feature
relation they are in, whatever the event time of those rows: a new asset, late readings, a correction of
the latest hours, a backfill. `materialize` takes a snapshot of the queue, reads the latest row at or
before `end` of each queued entity from the source of every online batch view that reads the changed
relation (a view whose source is `SELECT * FROM <relation>`; any other source, and an entry without a
relation, takes every queued entity) (one LATERAL ... ORDER BY event_timestamp DESC LIMIT 1
per entity over the feature tables' primary key), writes them with Feast's own conversion and online
store, and only then deletes the queue entries it handled. A view that `ems materialize` has never
loaded, or whose definition changed since (features or source), is loaded whole: every asset's
latest row. A run killed part way leaves the queue in place; the next run writes the same rows again
(writes are idempotent), so Redis and the bookkeeping stay consistent.

Feast's Redis store skips a row whose event time is not newer than the stored one; a corrected
latest hour has the same event time, so these writes go with `skip_dedup` (the row read here is the
latest per entity by construction, so nothing newer can be overwritten by an older one).
`feast materialize-incremental` keeps its own bookkeeping (event times after its previous run) and
can still be used alongside.

With `batch_engine: spark.engine` in the Feast yaml (deploy/feature_store.spark.yaml) the rows are read
the same way and written from Spark partitions by Feast's own partition writer (warehouse/spark.py);
the bookkeeping is the same, and a failed Spark job leaves the queue in place like any other failure.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pyarrow as pa
from psycopg import sql

from core.settings import Settings
from warehouse.db import connect
from warehouse.spark import is_spark, write_online

logger = logging.getLogger(__name__)

# Entities per read + write: bounds memory on a whole load and shows progress.
CHUNK = 5_000

_LATEST_SQL = """
    SELECT e.tenant_id, e.asset_id, f.*
    FROM unnest(%(tenants)s::text[], %(assets)s::text[]) AS e(tenant_id, asset_id)
    CROSS JOIN LATERAL (
        SELECT {columns} FROM ({source}) AS s
        WHERE s.tenant_id = e.tenant_id AND s.asset_id = e.asset_id AND s.event_timestamp <= %(end)s
        ORDER BY s.event_timestamp DESC, s.created DESC LIMIT 1
    ) AS f
"""


@dataclass
class MaterializeReport:
    """Entities written per view, and which views were loaded whole."""

    written: dict[str, int] = field(default_factory=dict)
    full: list[str] = field(default_factory=list)
    queued: int = 0  # distinct entities taken from the queue
    end: datetime | None = None


def fingerprint(fv) -> str:
    """A view's online-relevant definition: its features with types, its source query, its entities."""
    parts = [fv.batch_source.get_table_query_string(), *sorted(f"{f.name}:{f.dtype}" for f in fv.features),
             *sorted(fv.join_keys)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def materialize_changes(settings: Settings, store, views: list, end: datetime | None = None,
                        full: bool = False, progress: Callable[[str, int, int], None] | None = None
                        ) -> MaterializeReport:
    """Write the latest row of each changed entity (every entity for views never loaded, changed or
    when `full`) of `views` (online batch views) to the online store."""
    end = (end or datetime.now(UTC)).astimezone(UTC)
    report = MaterializeReport(end=end)
    with connect(settings) as conn:
        ids = [i for (i,) in conn.execute("SELECT id FROM online_refresh_queue")]
        queued = conn.execute("SELECT DISTINCT tenant_id, asset_id, relation FROM online_refresh_queue"
                              " WHERE id = ANY(%s) ORDER BY 1, 2", (ids,)).fetchall() if ids else []
        loaded = dict(conn.execute("SELECT feature_view, fingerprint FROM online_views").fetchall())
        everyone = None
        report.queued = len({(t, a) for t, a, _ in queued})
        conn.commit()
        for fv in views:
            whole = full or loaded.get(fv.name) != fingerprint(fv)
            if whole and everyone is None:
                everyone = conn.execute("SELECT tenant_id, asset_id FROM assets ORDER BY 1, 2").fetchall()
            entities = everyone if whole else _changed_in(queued, relation(fv))
            if whole:
                report.full.append(fv.name)
            report.written[fv.name] = _write_view(conn, store, fv, entities, end, progress)
            conn.commit()
        with conn.transaction():
            if ids:
                conn.execute("DELETE FROM online_refresh_queue WHERE id = ANY(%s)", (ids,))
            for fv in views:
                if fv.name in report.full:
                    conn.execute(
                        "INSERT INTO online_views (feature_view, fingerprint, loaded_at) VALUES (%s, %s, now())"
                        " ON CONFLICT (feature_view) DO UPDATE SET fingerprint = EXCLUDED.fingerprint,"
                        " loaded_at = EXCLUDED.loaded_at", (fv.name, fingerprint(fv)))
    logger.info("materialized %s", report)
    return report


def write_views(settings: Settings, store, views: list, entities: list[tuple[str, str]], end: datetime,
                progress: Callable[[str, int, int], None] | None = None) -> dict[str, int]:
    """The write path of `materialize_changes` without its bookkeeping (the queue and `online_views` are left
    as they are): the latest row at or before `end` of each (tenant, asset) of each view, to the online
    store. Rows written per view. `ems bench --only scale` times it on each engine."""
    with connect(settings) as conn:
        return {fv.name: _write_view(conn, store, fv, entities, end.astimezone(UTC), progress) for fv in views}


def relation(fv) -> str | None:
    """The one relation a view's source reads whole (`SELECT * FROM name`), else None."""
    match = re.fullmatch(r"\s*SELECT \* FROM (\w+)\s*", fv.batch_source.get_table_query_string().strip("()"),
                         re.IGNORECASE)
    return match.group(1) if match else None


def _changed_in(queued: list[tuple], name: str | None) -> list[tuple[str, str]]:
    """Queued entities whose rows in relation `name` changed (an entry without a relation: all of them;
    a view of unknown relation: every queued entity)."""
    return sorted({(t, a) for t, a, r in queued if name is None or r is None or r == name})


def _write_view(conn, store, fv, entities: list[tuple[str, str]], end: datetime,
                progress: Callable[[str, int, int], None] | None) -> int:
    from feast.utils import _convert_arrow_to_proto

    features = [f.name for f in fv.features]
    columns = sql.SQL(", ").join(map(sql.Identifier, ["event_timestamp", "created", *features]))
    query = sql.SQL(_LATEST_SQL).format(columns=columns, source=sql.SQL(fv.batch_source.get_table_query_string()))
    join_keys = {entity.name: entity.dtype.to_value_type() for entity in fv.entity_columns}
    config = _no_dedup(store.config)
    online = store._get_provider().online_store  # Feast's own writer for the configured store
    spark = is_spark(config)  # batch_engine: spark.engine -> the writes run on Spark partitions
    written = 0
    for start in range(0, len(entities), CHUNK):
        chunk = entities[start:start + CHUNK]
        cur = conn.execute(query, {"tenants": [t for t, _ in chunk], "assets": [a for _, a in chunk], "end": end})
        names = [d.name for d in cur.description]
        rows = cur.fetchall()
        if progress:
            progress(fv.name, start + len(chunk), len(entities))
        if not rows:
            continue
        table = pa.Table.from_pylist([dict(zip(names, row, strict=True)) for row in rows])
        if spark:
            write_online(config, fv, table)
        else:
            online.online_write_batch(config, fv, _convert_arrow_to_proto(table, fv, join_keys), None)
        written += len(rows)
    return written


def _no_dedup(config):
    """The repo config with the online store's timestamp dedup off (Redis; other stores have no such
    switch and are returned as they are)."""
    online = config.online_store
    if not hasattr(online, "skip_dedup") or online.skip_dedup:
        return config
    copy = config.model_copy()
    copy._online_store = online.model_copy(update={"skip_dedup": True})
    return copy
