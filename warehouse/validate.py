"""Pure parsing and validation of ingest files: no I/O beyond reading the file, no database.

Row-level problems become rejects with a reason (the rest of the file still loads); file-level
problems (unknown or missing columns, no rows, a bad option) raise `IngestError` before anything
is written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from os import PathLike
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd
import pyarrow as pa

from core.errors import EmsError
from core.names import ASSET_ID_PATTERN

TIDY_REQUIRED = ("asset_id", "timestamp", "value")
TIDY_OPTIONAL = ("unit",)
WEATHER_VARIABLES = ("temperature", "humidity", "solar_irradiance", "wind_speed")

# Reasons written to the reject file.
BAD_TIMESTAMP = "unparseable_timestamp"
NONEXISTENT_LOCAL_TIME = "nonexistent_local_time"
FUTURE = "timestamp_in_future"
NON_NUMERIC = "non_numeric_value"
NAN = "missing_or_nan_value"
BAD_ASSET = "invalid_asset_id"
DUPLICATE = "duplicate_in_file"
CONFLICT = "conflicting_duplicate_in_file"

STR = "string[pyarrow]"  # vectorised string ops (python-backed strings are ~10x slower here)
_OFFSET = re.compile(r"(?:[zZ]|[+-]\d{2}(?::?\d{2})?)$")
_ASSET_RE = re.compile(ASSET_ID_PATTERN)


class IngestError(EmsError, ValueError):
    """The file or an option is unusable as a whole; nothing was written."""


@dataclass
class Validated:
    """Rows ready to load (UTC `ts`) and rejects (`line`, raw fields, `reason`)."""

    rows: pd.DataFrame
    rejects: pd.DataFrame
    rows_read: int


def read_table(path: Path) -> pd.DataFrame:
    """CSV or Parquet (gzip ok) as strings, with `line` = the 1-based line number in the file."""
    if not isinstance(path, str | PathLike) or not str(path):
        raise IngestError(f"path {path!r} is not a file path")
    path = Path(path)
    if not path.is_file():
        raise IngestError(f"file {path} does not exist" if not path.exists() else f"{path} is not a file")
    if path.stat().st_size == 0:
        raise IngestError(f"{path.name}: the file is empty")
    suffixes = [s.lower() for s in path.suffixes]
    try:
        if ".parquet" in suffixes or ".pq" in suffixes:
            df = pd.read_parquet(path)
            df = df.astype({c: STR for c in df.columns if not pd.api.types.is_datetime64_any_dtype(df[c])})
        elif ".csv" in suffixes or ".txt" in suffixes:
            df = pd.read_csv(path, dtype=STR, na_filter=False, skipinitialspace=True)  # no NA markers: "" stays ""
        else:
            raise IngestError(f"{path.name}: unsupported file type {''.join(path.suffixes) or '(none)'!r}; "
                              "use .csv, .csv.gz or .parquet")
    except UnicodeDecodeError as e:
        raise IngestError(f"{path.name}: not UTF-8 text (byte {e.object[e.start:e.start + 1].hex(' ')} at "
                          f"offset {e.start}); save it as UTF-8") from e
    except (pd.errors.ParserError, pd.errors.EmptyDataError, pa.ArrowException, OSError) as e:
        raise IngestError(f"{path.name}: cannot read as a table ({e})") from e
    if df.empty:
        raise IngestError(f"{path.name}: no data rows")
    df.columns = [str(c).strip() for c in df.columns]
    df.insert(0, "line", np.arange(2, len(df) + 2))
    return df


def parse_column_spec(spec: str | None) -> dict[str, str] | None:
    """`a,b=col_b` -> {target: source}: `b=col_b` renames file column col_b to b."""
    if not spec:
        return None
    out: dict[str, str] = {}
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        target, _, source = item.partition("=")
        out[target.strip()] = (source or target).strip()
    return out


def check_timezone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as e:
        raise IngestError(f"time zone {tz!r} is not an IANA time zone (e.g. UTC, Europe/Paris)") from e


def check_period(period: timedelta | None) -> timedelta | None:
    """A period-ending length: more than 0 and at most a day."""
    if period is not None and not (isinstance(period, timedelta) and timedelta(0) < period <= timedelta(days=1)):
        raise IngestError(f"period_ending={period!r} is not a duration between 1s and 1d")
    return period


def select_columns(df: pd.DataFrame, columns: dict[str, str] | None, allowed: tuple[str, ...] | None,
                   required: tuple[str, ...] = ()) -> pd.DataFrame:
    """Keep `line`, `timestamp` and the chosen columns (renamed); refuse unknown and missing ones."""
    if "timestamp" not in df.columns:
        raise IngestError(f"missing column 'timestamp'; the file has {_names(df.columns)}")
    if columns is None:
        keep = {c: c for c in df.columns if c not in ("line", "timestamp")}
        unknown = [c for c in keep if allowed is not None and c not in allowed]
        if unknown:
            raise IngestError(
                f"unknown column(s) {_names(unknown)}; allowed: {_names(dict.fromkeys(('timestamp', *allowed)))}"
            )
    else:
        missing = [src for src in columns.values() if src not in df.columns]
        if missing:
            raise IngestError(f"column(s) {_names(missing)} not in the file; it has {_names(df.columns[1:])}")
        bad = [t for t in columns if allowed is not None and t not in allowed]
        if bad:
            raise IngestError(f"unknown target column(s) {_names(bad)}; allowed: {_names(allowed)}")
        keep = {src: target for target, src in columns.items()}
    absent = [c for c in required if c not in keep.values()]
    if absent:
        raise IngestError(f"missing column(s) {_names(absent)}; the file has {_names(df.columns[1:])}")
    if not keep:
        raise IngestError("no value columns to load")
    return df[["line", "timestamp", *keep]].rename(columns=keep)


def wide_to_tidy(df: pd.DataFrame) -> pd.DataFrame:
    """One asset per value column: (line, timestamp, c1, c2, ...) -> (line, asset_id, timestamp, value)."""
    value_cols = [c for c in df.columns if c not in ("line", "timestamp")]
    tidy = df.melt(id_vars=["line", "timestamp"], value_vars=value_cols, var_name="asset_id", value_name="value")
    return tidy[["line", "asset_id", "timestamp", "value"]]


def parse_timestamps(raw: pd.Series, tz: str, ambiguous_first: np.ndarray | None = None,
                     shift: timedelta | None = None) -> pd.Series:
    """ISO 8601 -> UTC, NaT where unparseable or nonexistent. Naive values are local times in `tz`;
    `shift` is added before localizing them (period-ending labels: the period starts at the label
    minus its length, in wall-clock time), so an ambiguous local time (DST fall-back) is resolved by
    `ambiguous_first`: the first copy is summer time, a repeat is standard time."""
    delta = pd.Timedelta(shift or 0)
    if pd.api.types.is_datetime64_any_dtype(raw):
        ts = pd.Series(raw) + delta
        if ts.dt.tz is None:
            ts = ts.dt.tz_localize(tz, ambiguous=_ambiguous(ambiguous_first, len(ts)), nonexistent="NaT")
        return ts.dt.tz_convert("UTC")
    text = raw.astype(STR).str.strip()
    aware = text.str.contains(_OFFSET, na=False)
    out = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[ns, UTC]")
    if aware.any():
        out[aware] = pd.to_datetime(text[aware], format="ISO8601", utc=True, errors="coerce") + delta
    naive = ~aware
    if naive.any():
        local = pd.to_datetime(text[naive], format="ISO8601", errors="coerce") + delta
        amb = None if ambiguous_first is None else ambiguous_first[naive.to_numpy()]
        out[naive] = local.dt.tz_localize(tz, ambiguous=_ambiguous(amb, len(local)), nonexistent="NaT").dt.tz_convert(
            "UTC"
        )
    return out


def _ambiguous(first: np.ndarray | None, n: int) -> np.ndarray:
    return np.ones(n, dtype=bool) if first is None else first.astype(bool)


def parse_values(raw: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Float values and a reason per bad cell (non-numeric vs missing/NaN/inf).

    Parsed once per distinct text (meter values repeat a lot), then spread back over the rows. This
    is the same as parsing every row: to_numeric's result for a text depends only on which texts
    occur (e.g. whether any is a float), never on how often."""
    codes, texts = pd.factorize(raw, use_na_sentinel=False)
    texts = pd.Series(texts)
    values = pd.to_numeric(texts, errors="coerce").astype("float64")
    reason = pd.Series(pd.NA, index=texts.index, dtype=STR)
    text = texts.astype(STR).str.strip().str.lower()
    nan_like = text.isna() | text.isin(["", "nan", "na", "null", "none", "inf", "-inf", "+inf", "infinity"])
    reason[values.isna() & ~nan_like] = NON_NUMERIC
    reason[(values.isna() & nan_like) | np.isinf(values)] = NAN
    return (pd.Series(values.to_numpy()[codes], index=raw.index, name=raw.name),
            pd.Series(reason.array.take(codes), index=raw.index))


def validate_readings(df: pd.DataFrame, tz: str = "UTC", now: datetime | None = None,
                      period_ending: timedelta | None = None) -> Validated:
    """Tidy (line, asset_id, timestamp, value[, unit]) -> loadable rows and rejects."""
    df = df.reset_index(drop=True)
    reason = pd.Series(pd.NA, index=df.index, dtype=STR)

    asset = df["asset_id"].astype(STR).str.strip()
    reason[~asset.fillna("").str.fullmatch(_ASSET_RE)] = BAD_ASSET

    values, value_reason = parse_values(df["value"])
    reason = reason.fillna(value_reason)

    repeats = None if tz == "UTC" else pd.DataFrame({"a": asset, "t": df["timestamp"].astype(STR)}).duplicated()
    first = None if repeats is None else (~repeats).to_numpy()
    ts, ts_reason = parse_times(df["timestamp"], tz, now, first, period_ending)
    reason = reason.fillna(ts_reason)

    rows = pd.DataFrame({"line": df["line"], "asset_id": asset, "ts": ts, "value": values})
    if "unit" in df.columns:
        unit = df["unit"].astype(STR).str.strip()
        rows["unit"] = unit.mask(unit == "")
    ok = reason.isna()
    reason[ok] = duplicate_reasons(rows[ok], ["asset_id", "ts"], ["value"])
    return split_rejects(df, rows, reason)


def validate_weather(df: pd.DataFrame, tz: str = "UTC", now: datetime | None = None,
                     period_ending: timedelta | None = None) -> Validated:
    """(line, timestamp, <weather variables>) -> loadable rows and rejects. A missing cell (empty, NaN,
    inf) is that variable's NULL and the row's other variables load; a row is rejected for a missing
    value only when every variable of it is missing (a non-numeric cell still rejects its row)."""
    df = df.reset_index(drop=True)
    variables = [c for c in WEATHER_VARIABLES if c in df.columns]
    rows, reason = variable_values(df, variables)
    first = None if tz == "UTC" else (~df["timestamp"].astype(STR).duplicated()).to_numpy()
    ts, ts_reason = parse_times(df["timestamp"], tz, now, first, period_ending)
    reason = reason.fillna(ts_reason)
    rows.insert(1, "ts", ts)
    ok = reason.isna()
    reason[ok] = duplicate_reasons(rows[ok], ["ts"], variables)
    return split_rejects(df, rows, reason)


def variable_values(df: pd.DataFrame, variables: list[str], ranges: dict[str, tuple[float, float]] | None = None,
                    out_of_range: str = "value_out_of_range") -> tuple[pd.DataFrame, pd.Series]:
    """Rows (line + each variable parsed) and a reason per row for files of several variables per row (weather,
    covariate forecasts): a missing cell (empty, NaN, inf) is that variable's NULL and the row's other
    variables load; a row is rejected as missing only when all its variables are; a non-numeric cell, or a
    value outside its `ranges` entry, rejects its row."""
    reason = pd.Series(pd.NA, index=df.index, dtype=STR)
    rows = pd.DataFrame({"line": df["line"]})
    missing = pd.Series(True, index=df.index)
    for col in variables:
        values, col_reason = parse_values(df[col])
        gone = (col_reason == NAN).fillna(False)
        rows[col] = values.mask(gone)
        missing &= gone
        reason = reason.fillna(col_reason.mask(gone))
        if ranges is not None:
            lo, hi = ranges[col]
            reason[((values < lo) | (values > hi)) & reason.isna()] = out_of_range
    if variables:
        reason[missing] = reason[missing].fillna(NAN)
    return rows, reason


def parse_times(raw: pd.Series, tz: str, now: datetime | None, first: np.ndarray | None,
           period_ending: timedelta | None = None) -> tuple[pd.Series, pd.Series]:
    """UTC timestamps (period starts) and a reason per row whose time is unusable or in the future.
    `first` marks first copies of a repeated local time (not needed in UTC, which has no repeats)."""
    check_timezone(tz)
    now = pd.Timestamp(now or datetime.now().astimezone()).tz_convert("UTC")
    period = pd.Timedelta(period_ending or 0)
    ts = parse_timestamps(raw, tz, first, shift=-period)
    reason = timestamp_reasons(raw, ts)
    late = ts + period > now  # the labelled moment (end of a period) is after now
    reason[late] = reason[late].fillna(FUTURE)
    return ts, reason


def timestamp_reasons(raw: pd.Series, ts: pd.Series) -> pd.Series:
    """For rows whose timestamp did not parse: unparseable text vs a local time that does not exist."""
    reason = pd.Series(pd.NA, index=raw.index, dtype=STR)
    missing = ts.isna()
    if missing.any():
        unparsed = _unparseable(raw[missing])
        reason[missing] = np.where(unparsed, BAD_TIMESTAMP, NONEXISTENT_LOCAL_TIME)
    return reason


def _unparseable(raw: pd.Series) -> pd.Series:
    """True where the text is not ISO 8601 at all (as opposed to a local time that does not exist)."""
    if pd.api.types.is_datetime64_any_dtype(raw):
        return raw.isna()
    text = raw.astype(STR).str.strip().str.replace(_OFFSET, "", regex=True)
    return pd.to_datetime(text, format="ISO8601", errors="coerce").isna()


def duplicate_reasons(rows: pd.DataFrame, key: list[str], values: list[str]) -> pd.Series:
    """Within the file: identical copies keep the first; copies that disagree are all rejected."""
    reason = pd.Series(pd.NA, index=rows.index, dtype=STR)
    dup = rows.duplicated(key, keep=False)
    if not dup.any():
        return reason
    d = rows[dup]
    distinct = d.groupby(key, dropna=False)[values].transform(lambda s: s.nunique(dropna=False)).max(axis=1)
    reason[d.index[distinct.to_numpy() > 1]] = CONFLICT
    later = d.duplicated(key, keep="first") & (distinct <= 1)
    reason[later[later].index] = DUPLICATE
    return reason


def split_rejects(raw: pd.DataFrame, rows: pd.DataFrame, reason: pd.Series) -> Validated:
    bad = reason.notna()
    rejects = raw[bad].astype(STR).copy()
    rejects["reason"] = reason[bad]
    return Validated(rows=rows[~bad].drop(columns="line").reset_index(drop=True),
                     rejects=rejects.reset_index(drop=True), rows_read=len(raw))


def describe_rejects(rejects: pd.DataFrame, examples: int = 3) -> str:
    """Rejects in one line: each reason with its count and first row, e.g. `non_numeric_value x2
    (first: line 2, asset_id='m1', timestamp='2024-01-01T00:00:00Z', value='abc')`."""
    parts = []
    for reason, group in list(rejects.groupby("reason", sort=False))[:examples]:
        first = group.iloc[0]
        fields = ", ".join(f"{c}={first[c]!r}" for c in group.columns if c not in ("line", "reason"))
        parts.append(f"{reason} x{len(group)} (first: line {first['line']}, {fields})")
    return "; ".join(parts)


def _names(cols) -> str:
    return ", ".join(map(str, cols))
