"""Point-in-time feature reads: the values a feature service had at a past time (Feast's historical
join: each feature view's latest row at or before that time, within its ttl), for one call or as a
training set exported to S3 as Parquet.

Calendar (on-demand) features describe the hour starting at the requested time, as in training.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime

import pandas as pd

from core.errors import InvalidRangeError, UnknownAssetError
from core.names import check_asset_id, check_tenant_id
from core.settings import Settings
from warehouse.db import connect
from warehouse.store import feature_service, grid_features

logger = logging.getLogger(__name__)
MAX_EXPORT_ROWS = 2_000_000  # assets x hours of one export
BATCH_ROWS = 100_000  # entity rows per historical join (bounds memory; the file is written batch by batch)


def _utc(value: datetime, what: str) -> pd.Timestamp:
    when = pd.Timestamp(value)
    if when.tzinfo is None:
        raise InvalidRangeError(f"{what} {value!r} has no time zone: give an ISO 8601 time with an offset (Z for UTC)")
    return when.tz_convert(UTC)


def tenant_assets(settings: Settings, tenant: str, assets: list[str] | None) -> list[str]:
    """`assets` (each known to the tenant), or every asset of the tenant."""
    check_tenant_id(tenant)
    with connect(settings) as conn:
        known = [a for (a,) in conn.execute("SELECT asset_id FROM assets WHERE tenant_id = %s ORDER BY 1", (tenant,))]
    if assets is None:
        if not known:
            raise UnknownAssetError(f"tenant {tenant!r} has no assets: ingest readings first")
        return known
    for a in assets:
        check_asset_id(a)
    unknown = sorted(set(assets) - set(known))
    if unknown:
        raise UnknownAssetError(f"tenant {tenant!r} has no asset {', '.join(map(repr, unknown))}; it has "
                                f"{', '.join(known[:20]) or 'none'}{' ...' if len(known) > 20 else ''}")
    return list(dict.fromkeys(assets))


def features_at(settings: Settings, store, service: str, tenant: str, assets: list[str],
                at: datetime | dict[str, datetime]) -> pd.DataFrame:
    """The service's features of `assets` as they were at `at` (one time, or one per asset; rows in the
    order of `assets`)."""
    assets = tenant_assets(settings, tenant, assets)
    when = [_utc(at[a] if isinstance(at, dict) else at, "timestamp") for a in assets]
    fs = feature_service(store, service)
    entity_df = pd.DataFrame({"tenant_id": tenant, "asset_id": assets, "event_timestamp": when, "target_time": when})
    out = store.get_historical_features(entity_df=entity_df, features=grid_features(store, service)).to_df()
    ordered = [f.name for p in fs.feature_view_projections for f in p.features]
    out = out.set_index("asset_id").loc[assets].reset_index()
    return out[["tenant_id", "asset_id", "event_timestamp", *ordered]]


def export(settings: Settings, store, service: str, tenant: str, start: datetime, end: datetime,
           assets: list[str] | None, key: str, progress: Callable[[str, int, int], None] | None = None) -> dict:
    """The service's features of each asset at every hour boundary in [start, end) (a training set),
    written as one Parquet file to s3://<bucket>/<key>; returns its uri, rows, bytes and columns."""
    import boto3
    import pyarrow as pa
    import pyarrow.parquet as pq

    lo, hi = _utc(start, "start").ceil("h"), _utc(end, "end").floor("h")
    if hi <= lo:
        raise InvalidRangeError(f"time range {start} .. {end} holds no whole hour: end must be after start")
    assets = tenant_assets(settings, tenant, assets)
    grid = pd.date_range(lo, hi, freq="h", inclusive="left")
    rows = len(grid) * len(assets)
    if rows > MAX_EXPORT_ROWS:
        raise InvalidRangeError(f"{len(assets)} assets x {len(grid)} hours = {rows:,} rows; one export may hold "
                                f"1..{MAX_EXPORT_ROWS:,}: export fewer assets or a shorter range")
    grid_refs = grid_features(store, service)
    per_batch = max(1, BATCH_ROWS // len(grid))
    batches = [assets[i:i + per_batch] for i in range(0, len(assets), per_batch)]
    written, schema = 0, None
    fd, path = tempfile.mkstemp(suffix=".parquet")
    os.close(fd)
    try:
        writer = None
        for i, batch in enumerate(batches):
            if progress:
                progress("point-in-time join", i, len(batches))
            entity_df = pd.DataFrame([(tenant, a, t, t) for a in batch for t in grid],
                                     columns=["tenant_id", "asset_id", "event_timestamp", "target_time"])
            frame = store.get_historical_features(entity_df=entity_df, features=grid_refs).to_df()
            frame = frame.sort_values(["asset_id", "event_timestamp"], kind="stable").reset_index(drop=True)
            table = pa.Table.from_pandas(frame, preserve_index=False)
            if schema is None:
                schema = _typed(table.schema)
                writer = pq.ParquetWriter(path, schema, compression="zstd")
            writer.write_table(table.cast(schema))
            written += table.num_rows
        writer.close()
        if progress:
            progress("upload", len(batches), len(batches))
        size = os.path.getsize(path)
        boto3.client("s3", **settings.s3_client_kwargs()).upload_file(path, settings.s3_bucket, key)
    finally:
        os.unlink(path)
    logger.info("exported %d rows of %s for %s to %s", written, service, tenant, key)
    return {"uri": f"s3://{settings.s3_bucket}/{key}", "rows": written, "bytes": size,
            "columns": schema.names, "assets": len(assets), "start": lo.isoformat(), "end": hi.isoformat()}


def _typed(schema):
    """A writer schema: a column the first batch holds only nulls of is written as float64 (features
    are numbers; a later batch's values then fit)."""
    import pyarrow as pa

    return pa.schema([pa.field(f.name, pa.float64()) if pa.types.is_null(f.type) else f for f in schema])


def _parquet_source(settings: Settings, uri: str):
    """(filesystem, path) of an exported training set: s3://bucket/key on the project's S3 (its endpoint and
    keys, from Settings), or a local path."""
    from urllib.parse import urlsplit

    import pyarrow.fs as pafs

    if not uri.startswith("s3://"):
        return pafs.LocalFileSystem(), str(uri)
    endpoint = urlsplit(settings.s3_endpoint_url)
    fs = pafs.S3FileSystem(access_key=settings.s3_access_key, secret_key=settings.s3_secret_key,
                           region=settings.s3_region, scheme=endpoint.scheme or "http",
                           endpoint_override=endpoint.netloc, connect_timeout=5, request_timeout=30)
    return fs, uri.removeprefix("s3://")


def describe_export(settings: Settings, uri: str) -> dict:
    """Columns, assets and hour range of an exported training set (reads the asset and time columns only);
    one InvalidRangeError naming the uri when it cannot be read."""
    import pyarrow.parquet as pq

    fs, path = _parquet_source(settings, uri)
    try:
        table = pq.read_table(path, filesystem=fs, columns=["asset_id", "event_timestamp"])
        columns = pq.read_schema(path, filesystem=fs).names
    except (OSError, ValueError) as e:  # pyarrow: missing object/file, unreachable endpoint, not Parquet
        raise InvalidRangeError(f"training set {uri!r} cannot be read as Parquet ({str(e).splitlines()[0]}); give "
                                "an export of `POST /jobs` kind export or of `ems train forecast --engine dask` "
                                "(s3://bucket/key or a path)") from e
    times = pd.to_datetime(table.column("event_timestamp").to_pandas(), utc=True)
    return {"columns": columns, "assets": sorted(set(table.column("asset_id").to_pylist())),
            "start": times.min(), "end": times.max(), "rows": table.num_rows}


def read_export(settings: Settings, uri: str, asset: str) -> pd.DataFrame:
    """One asset's rows of an exported training set (row groups of other assets are skipped on their
    statistics: the export is sorted by asset and time), with event_timestamp as UTC nanoseconds, as
    Feast's historical join returns it."""
    import pyarrow.parquet as pq

    fs, path = _parquet_source(settings, uri)
    frame = pq.read_table(path, filesystem=fs, filters=[("asset_id", "==", asset)]).to_pandas()
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True).astype("datetime64[ns, UTC]")
    return frame
