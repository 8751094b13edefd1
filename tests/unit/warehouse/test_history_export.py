"""warehouse/history.py without services: the range rounds out to whole UTC days, bad ranges and targets are
one error naming the value, and the partition layout is the one the Spark profile reads."""

from datetime import UTC, datetime

import pyarrow.fs as pafs
import pytest

from core.errors import InvalidRangeError
from core.settings import Settings
from warehouse.history import HistoryExportError, _day_bounds, partition_path, target


def test_range_rounds_out_to_whole_utc_days():
    lo, hi = _day_bounds(datetime(2017, 1, 2, 6), datetime(2017, 1, 4, 0, 30, tzinfo=UTC))
    assert (lo, hi) == (datetime(2017, 1, 2, tzinfo=UTC), datetime(2017, 1, 5, tzinfo=UTC))
    assert _day_bounds(None, datetime(2017, 1, 4)) == (None, datetime(2017, 1, 4, tzinfo=UTC))


def test_backward_or_empty_range_names_both_ends():
    with pytest.raises(InvalidRangeError, match=r"since=2017-01-05T00:00:00 is not before until=2017-01-05T00:00:00"):
        _day_bounds(datetime(2017, 1, 5), datetime(2017, 1, 5))


def test_targets_s3_and_paths():
    settings = Settings()
    fs, root = target("s3://bucket/history/", settings)
    assert isinstance(fs, pafs.S3FileSystem) and root == "bucket/history"
    fs, root = target("file:///data/history", settings)
    assert isinstance(fs, pafs.LocalFileSystem) and root == "/data/history"
    assert target("/data/h", settings)[1] == "/data/h"
    with pytest.raises(HistoryExportError, match="'gs://b/h': use s3://BUCKET/PREFIX"):
        target("gs://b/h", settings)
    with pytest.raises(HistoryExportError, match="names no bucket"):
        target("s3:///h", settings)


def test_partition_layout_is_hive_style_by_utc_day_and_tenant():
    assert partition_path("b/h", "readings", "2017-01-05", "demo") == "b/h/readings/event_date=2017-01-05/demo.parquet"
