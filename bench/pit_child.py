"""One point-in-time retrieval in a fresh process, for `ems bench` (peak RSS is this process's).

    python -m bench.pit_child ours|stock|floor ENTITIES.parquet OUT

ours: get_historical_features(forecast_advanced) through the project's offline store -> Parquet.
stock: the same through stock Feast's Postgres offline store -> Parquet.
floor: hand-written SQL: COPY in, per-view temp tables, LATERAL join, COPY out (bytes to OUT).
Prints one JSON line: seconds (retrieval to file, imports and store setup excluded), rows, peak_rss_mb.
"""

from __future__ import annotations

import io
import json
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from bench.core import Context, peak_rss_mb
from bench.rows_features import SERVICE, stock_store
from core.settings import Settings


def _feast(store, entities: pd.DataFrame, out: Path) -> int:
    from warehouse.store import feature_service

    fs = feature_service(store, SERVICE)
    table = store.get_historical_features(entity_df=entities, features=fs).to_arrow()
    pq.write_table(table, out)
    return table.num_rows


def _views(store):
    """(source query, features, ttl seconds) of the service's batch views."""
    from warehouse.store import feature_service

    fs = feature_service(store, SERVICE)
    batch = {v.name: v for v in store.list_batch_feature_views()}
    return [(batch[p.name].batch_source.get_table_query_string(), [f.name for f in p.features],
             int(batch[p.name].ttl.total_seconds())) for p in fs.feature_view_projections if p.name in batch]


def _floor(settings, views, entities: pd.DataFrame, out: Path) -> int:
    from psycopg import sql

    from warehouse.db import connect

    lo, hi = entities["event_timestamp"].min(), entities["event_timestamp"].max()
    assets = sorted(entities["asset_id"].unique())
    tenants = sorted(entities["tenant_id"].unique())
    with connect(settings) as conn, conn.transaction(), conn.cursor() as cur:
        cur.execute("SET LOCAL TIME ZONE 'UTC'")
        cur.execute("CREATE TEMP TABLE e (tenant_id text, asset_id text, event_timestamp timestamptz, "
                    "target_time timestamptz, row_n bigint) ON COMMIT DROP")
        buf = io.BytesIO()
        table = pa.Table.from_pandas(entities, preserve_index=False)
        table = table.append_column("row_n", pa.array(range(len(entities)), pa.int64()))
        pacsv.write_csv(table, buf, pacsv.WriteOptions(include_header=False))
        with cur.copy("COPY e FROM STDIN WITH (FORMAT csv)") as copy:
            copy.write(buf.getvalue())
        selects, joins = [], []
        for i, (query, feats, ttl) in enumerate(views):
            t = sql.Identifier(f"f{i}")
            cols = sql.SQL(", ").join(map(sql.Identifier, feats))
            cur.execute(sql.SQL(
                "CREATE TEMP TABLE {t} ON COMMIT DROP AS SELECT tenant_id, asset_id, event_timestamp, created, {c} "
                "FROM {q} AS s WHERE tenant_id = ANY(%s) AND asset_id = ANY(%s) "
                "AND event_timestamp BETWEEN %s AND %s").format(t=t, c=cols, q=sql.SQL(query)),
                (tenants, assets, lo - pd.Timedelta(seconds=ttl), hi))
            cur.execute(sql.SQL("CREATE INDEX ON {} (tenant_id, asset_id, event_timestamp)").format(t))
            cur.execute(sql.SQL("ANALYZE {}").format(t))
            alias = sql.Identifier(f"j{i}")
            selects += [sql.SQL("{}.{}").format(alias, sql.Identifier(f)) for f in feats]
            joins.append(sql.SQL(
                "LEFT JOIN LATERAL (SELECT {c} FROM {t} AS f WHERE f.tenant_id = e.tenant_id AND f.asset_id = "
                "e.asset_id AND f.event_timestamp <= e.event_timestamp AND f.event_timestamp >= e.event_timestamp - "
                "make_interval(secs => {ttl}) ORDER BY f.event_timestamp DESC, f.created DESC LIMIT 1) AS {a} "
                "ON TRUE").format(c=cols, t=t, ttl=sql.Literal(ttl), a=alias))
        cur.execute("ANALYZE e")
        query = sql.SQL("SELECT e.tenant_id, e.asset_id, e.event_timestamp, e.target_time, {s} FROM e {j} "
                        "ORDER BY e.row_n").format(s=sql.SQL(", ").join(selects), j=sql.SQL(" ").join(joins))
        with out.open("wb") as f, cur.copy(sql.SQL("COPY ({}) TO STDOUT WITH (FORMAT csv)").format(query)) as copy:
            for chunk in copy:
                f.write(chunk)
    return len(entities)


def main(mode: str, entities_path: str, out_path: str) -> None:
    from warehouse.store import get_store

    settings = Settings()
    entities = pd.read_parquet(entities_path)
    out = Path(out_path)
    if mode == "floor":
        views = _views(get_store(settings))
        t0 = time.perf_counter()
        rows = _floor(settings, views, entities, out)
    else:
        ctx = Context(settings, False, settings.home / "bench")
        store = get_store(settings) if mode == "ours" else stock_store(ctx)
        if store.config.mlflow is not None and store.config.mlflow.enabled:
            import mlflow  # noqa: F401 - Feast's lineage hook imports it on first use; imports are not timed
        t0 = time.perf_counter()
        rows = _feast(store, entities, out)
    seconds = time.perf_counter() - t0
    out.unlink(missing_ok=True)
    sys.stdout.write(json.dumps({"mode": mode, "seconds": seconds, "rows": rows, "peak_rss_mb": peak_rss_mb()}) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:4])
