"""`ems export history`: a tenant's feature tables and readings as date-partitioned Parquet (issue 22),
the history that Feast's Spark offline store reads (warehouse/spark_offline.py) and distributed training uses.

Layout under the target URI (`s3://bucket/prefix` through pyarrow's S3 client, or a local / shared-filesystem
path): `{table}/event_date=YYYY-MM-DD/{tenant}.parquet`, one object per table, UTC day of the row's time and
tenant; timestamps in microseconds (Spark 4 rejects nanosecond Parquet timestamps). Each table and tenant has
a manifest, `{table}/_manifests/{tenant}.json` (Spark skips paths starting with `_`), with each exported day's
row count and fingerprint: a sum of 64-bit hashes of the rows' text computed in Postgres, so a late or
corrected hour changes its day's fingerprint and only that day is read and written again; a rerun with
nothing changed reads the fingerprints only and writes nothing. A day whose rows are all gone is deleted.

Nothing is half-written: the tenant, the range and the target are checked before anything is read; changed
days are written to `_staging/{run}/` first (outside every table's folder), then each is moved to its place
(one object replaced whole: readers see the old day or the new one) and the manifest is written last. A failure
before the moves leaves the export as it was; one during the moves leaves every day whole, and the manifest
still names the old fingerprints, so the next run writes those days again.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from psycopg import sql

from core.errors import EmsError, InvalidRangeError, UnknownAssetError
from core.names import check_tenant_id
from warehouse.db import connect
from warehouse.offline_store import _copy_out

logger = logging.getLogger(__name__)

PARTITION = "event_date"  # the Hive-style partition folder: the UTC day of the row's time, as YYYY-MM-DD
PARTITION_FORMAT = "%Y-%m-%d"


@dataclass(frozen=True)
class Table:
    name: str  # a relation of feature_repo/sql (the Feast sources select from these)
    time: str  # the column that picks the day
    keys: tuple[str, ...]  # row order inside a file
    static: bool = False  # attributes valid for all time (one partition, exported whole whatever the range)


TABLES = {t.name: t for t in (
    Table("load_lag_features", "event_timestamp", ("asset_id", "event_timestamp")),
    Table("load_rolling_features", "event_timestamp", ("asset_id", "event_timestamp")),
    Table("asset_weather_features", "event_timestamp", ("asset_id", "event_timestamp")),
    Table("asset_covariate_forecasts", "event_timestamp", ("asset_id", "target_hour", "event_timestamp")),
    Table("asset_profile_features", "event_timestamp", ("asset_id",), static=True),
    Table("load_features_30min", "event_timestamp", ("asset_id", "event_timestamp")),
    Table("load_features_15min", "event_timestamp", ("asset_id", "event_timestamp")),
    Table("readings", "ts", ("asset_id", "ts")),
)}


class HistoryExportError(EmsError):
    """The export target cannot be reached or written; the message names it and the cause."""


@dataclass
class ExportResult:
    uri: str
    written: dict[str, list[str]] = field(default_factory=dict)  # table -> days written
    deleted: dict[str, list[str]] = field(default_factory=dict)  # table -> days removed (no rows left)
    unchanged: int = 0  # days whose fingerprint matched the manifest
    rows: int = 0  # rows written


def target(uri: str, settings) -> tuple[pafs.FileSystem, str]:
    """The filesystem and root path of an export URI: `s3://bucket/prefix` (the S3 server of `settings`),
    `file:///path` or a plain path."""
    parts = urlsplit(uri)
    if parts.scheme in ("s3", "s3a"):
        if not parts.netloc:
            raise HistoryExportError(f"export target {uri!r} names no bucket: use s3://BUCKET/PREFIX")
        endpoint = urlsplit(settings.s3_endpoint_url)
        fs = pafs.S3FileSystem(access_key=settings.s3_access_key, secret_key=settings.s3_secret_key,
                               endpoint_override=endpoint.netloc, scheme=endpoint.scheme or "https",
                               region=settings.s3_region, connect_timeout=5, request_timeout=30,
                               retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=2))
        return fs, f"{parts.netloc}{parts.path}".rstrip("/")
    if parts.scheme in ("", "file"):
        return pafs.LocalFileSystem(), (parts.path if parts.scheme else uri).rstrip("/") or "/"
    raise HistoryExportError(f"export target {uri!r}: use s3://BUCKET/PREFIX, file:///PATH or a local path")


def _day_bounds(since: datetime | None, until: datetime | None) -> tuple[datetime | None, datetime | None]:
    """Whole UTC days covering [since, until): a partition is always written whole."""
    def floor(t):
        t = t if t.tzinfo else t.replace(tzinfo=UTC)
        return datetime.combine(t.astimezone(UTC).date(), datetime.min.time(), UTC)

    lo = floor(since) if since else None
    hi = None
    if until:
        hi = floor(until)
        if hi < (until if until.tzinfo else until.replace(tzinfo=UTC)):
            hi += timedelta(days=1)
    if lo and hi and lo >= hi:
        raise InvalidRangeError(f"since={since.isoformat()} is not before until={until.isoformat()}: "
                                "give an empty or forward range")
    return lo, hi


def _where(table: Table, tenant: str, lo, hi) -> tuple[sql.Composable, dict]:
    conds = [sql.SQL("tenant_id = %(tenant)s")]
    if not table.static:
        if lo:
            conds.append(sql.SQL("{} >= %(lo)s").format(sql.Identifier(table.time)))
        if hi:
            conds.append(sql.SQL("{} < %(hi)s").format(sql.Identifier(table.time)))
    return sql.SQL(" AND ").join(conds), {"tenant": tenant, "lo": lo, "hi": hi}


def fingerprints(cur, table: Table, tenant: str, lo, hi) -> dict[str, dict]:
    """Per UTC day of the table's rows (in range): row count and an order-free sum of the rows' hashes."""
    where, params = _where(table, tenant, lo, hi)
    cur.execute(sql.SQL(
        "SELECT to_char(({time} AT TIME ZONE 'UTC')::date, 'YYYY-MM-DD'), count(*), "
        "sum(hashtextextended(t::text, 0)::numeric)::text FROM {table} AS t WHERE {where} GROUP BY 1").format(
        time=sql.Identifier(table.time), table=sql.Identifier(table.name), where=where), params)
    return {day: {"rows": n, "fingerprint": f"{n}:{digest}"} for day, n, digest in cur.fetchall()}


def _day_rows(cur, table: Table, tenant: str, day: str) -> pa.Table:
    start = datetime.strptime(day, PARTITION_FORMAT).replace(tzinfo=UTC)
    query = sql.SQL("SELECT * FROM {table} WHERE tenant_id = {tenant} AND {time} >= {lo} AND {time} < {hi} "
                    "ORDER BY {keys}").format(
        table=sql.Identifier(table.name), tenant=sql.Literal(tenant), time=sql.Identifier(table.time),
        lo=sql.Literal(start), hi=sql.Literal(start + timedelta(days=1)),
        keys=sql.SQL(", ").join(map(sql.Identifier, table.keys)))
    return _copy_out(cur, query)  # timestamps as timestamp[us, UTC]


def _manifest_path(root: str, table: str, tenant: str) -> str:
    return f"{root}/{table}/_manifests/{tenant}.json"


def partition_path(root: str, table: str, day: str, tenant: str) -> str:
    return f"{root}/{table}/{PARTITION}={day}/{tenant}.parquet"


def _read_manifest(fs, path: str) -> dict:
    try:
        with fs.open_input_stream(path) as f:
            return json.loads(f.read())
    except FileNotFoundError:
        return {"partitions": {}}


def _write_bytes(fs, path: str, data: bytes) -> None:
    if isinstance(fs, pafs.LocalFileSystem):  # a rename is atomic on one filesystem; one S3 PUT is atomic
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        tmp = f"{path}.{uuid.uuid4().hex}.tmp"
        with fs.open_output_stream(tmp) as f:
            f.write(data)
        fs.move(tmp, path)
    else:
        with fs.open_output_stream(path) as f:
            f.write(data)


def schema_path(root: str, table: str) -> str:
    """An empty file with the relation's columns: what Spark reads for a relation that has no rows yet."""
    return f"{root}/{table}/_schema/columns.parquet"  # Spark skips `_` folders in the table, reads it by name


def _write_schema(fs, root: str, table: Table, cur) -> None:
    """Written once, and again only when the relation's columns changed (a migration)."""
    empty = _copy_out(cur, sql.SQL("SELECT * FROM {} LIMIT 0").format(sql.Identifier(table.name)))
    path = schema_path(root, table.name)
    try:
        with fs.open_input_file(path) as f:
            if pq.read_schema(f).equals(empty.schema, check_metadata=False):
                return
    except FileNotFoundError:
        pass
    sink = pa.BufferOutputStream()
    pq.write_table(empty, sink, coerce_timestamps="us")
    _write_bytes(fs, path, sink.getvalue().to_pybytes())


def _check_target(fs, root: str, uri: str) -> None:
    """Reach the target before reading anything: a missing bucket or an unreachable server is one error."""
    try:
        if isinstance(fs, pafs.S3FileSystem):
            bucket = root.split("/", 1)[0]
            if fs.get_file_info(bucket).type == pafs.FileType.NotFound:
                raise HistoryExportError(f"export target {uri}: bucket {bucket!r} does not exist; create it first")
            probe = f"{root}/_staging/.probe-{uuid.uuid4().hex}"
            _write_bytes(fs, probe, b"")
            fs.delete_file(probe)
        else:
            fs.create_dir(root, recursive=True)
    except OSError as e:
        raise HistoryExportError(f"cannot write to the export target {uri}: {' '.join(str(e).split())}") from e


def export_history(settings, tenant: str, uri: str, since: datetime | None = None, until: datetime | None = None,
                   tables: list[str] | None = None, progress: Callable[[str, int, int], None] | None = None
                   ) -> ExportResult:
    """Write the tenant's rows of `tables` (default: all of TABLES) with times in [since, until) to `uri`,
    only the days whose rows changed since the last export; `progress(table, done, total)` after each day."""
    check_tenant_id(tenant)
    lo, hi = _day_bounds(since, until)
    unknown = sorted(set(tables or []) - set(TABLES))
    if unknown:
        raise HistoryExportError(f"unknown table {', '.join(map(repr, unknown))}: export one of {', '.join(TABLES)}")
    chosen = [TABLES[t] for t in (tables or TABLES)]
    fs, root = target(uri, settings)
    result = ExportResult(uri=uri)
    run = f"{root}/_staging/{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    staged: list[tuple[str, str, str]] = []  # (table, day, staging path)
    manifests: dict[str, tuple[str, dict]] = {}
    with connect(settings) as conn, conn.cursor() as cur:
        if cur.execute("SELECT NOT EXISTS (SELECT 1 FROM assets WHERE tenant_id = %s)", (tenant,)).fetchone()[0]:
            raise UnknownAssetError(f"tenant {tenant!r} has no assets: nothing to export (ingest readings first)")
        _check_target(fs, root, uri)
        try:
            cur.execute("SET TIME ZONE 'UTC'")
            for table in chosen:
                if cur.execute("SELECT to_regclass(%s) IS NULL", (table.name,)).fetchone()[0]:
                    logger.info("%s: not in this warehouse (migration not applied), skipped", table.name)
                    continue
                _write_schema(fs, root, table, cur)
                path = _manifest_path(root, table.name, tenant)
                manifest = _read_manifest(fs, path)
                current = fingerprints(cur, table, tenant, lo, hi)
                old = manifest["partitions"]
                in_range = {d for d in old if table.static or _in_range(d, lo, hi)}
                changed = sorted(d for d, fp in current.items()
                                 if old.get(d, {}).get("fingerprint") != fp["fingerprint"])
                gone = sorted(in_range - set(current))
                result.unchanged += len(current) - len(changed)
                for i, day in enumerate(changed, 1):
                    rows = _day_rows(cur, table, tenant, day)
                    staging = f"{run}/{table.name}/{day}.parquet"
                    sink = pa.BufferOutputStream()
                    pq.write_table(rows, sink, coerce_timestamps="us", compression="zstd")
                    _write_bytes(fs, staging, sink.getvalue().to_pybytes())
                    staged.append((table.name, day, staging))
                    result.rows += rows.num_rows
                    if progress:
                        progress(table.name, i, len(changed))
                if changed or gone:
                    new = {d: v for d, v in old.items() if d not in gone}
                    new.update({d: current[d] for d in changed})
                    manifests[table.name] = (path, {"table": table.name, "tenant": tenant, "time": table.time,
                                                    "partition": PARTITION, "partitions": dict(sorted(new.items()))})
                    result.written[table.name], result.deleted[table.name] = changed, gone
                elif progress:
                    progress(table.name, 0, 0)
            # commit: each day replaced whole, then the manifests
            for name, day, staging in staged:
                final = partition_path(root, name, day, tenant)
                if isinstance(fs, pafs.LocalFileSystem):  # S3 has no folders to create
                    fs.create_dir(final.rsplit("/", 1)[0], recursive=True)
                fs.move(staging, final)
            for name, days in result.deleted.items():
                for day in days:
                    _delete(fs, partition_path(root, name, day, tenant))
            for path, manifest in manifests.values():
                manifest["exported_at"] = datetime.now(UTC).isoformat()
                _write_bytes(fs, path, json.dumps(manifest, indent=1).encode())
        except OSError as e:
            raise HistoryExportError(f"export to {uri} failed ({' '.join(str(e).split())}); days already moved "
                                     "are whole, the manifests are as before: run the export again") from e
        finally:
            _delete_dir(fs, run)
    logger.info("exported %s to %s: %d days written, %d unchanged, %d rows", tenant, uri,
                sum(map(len, result.written.values())), result.unchanged, result.rows)
    return result


def _in_range(day: str, lo, hi) -> bool:
    start = datetime.strptime(day, PARTITION_FORMAT).replace(tzinfo=UTC)
    return (lo is None or start >= lo) and (hi is None or start < hi)


def _delete(fs, path: str) -> None:
    try:
        fs.delete_file(path)
    except FileNotFoundError:
        pass


def _delete_dir(fs, path: str) -> None:
    try:
        fs.delete_dir(path)
    except (FileNotFoundError, OSError):  # nothing staged, or the target went away: nothing to clean
        logger.debug("no staging to remove at %s", path)

