"""Spark as Feast's batch engine (`batch_engine: spark.engine` in the Feast yaml, e.g.
deploy/feature_store.spark.yaml): the session built from that block, and the online writes of
`ems materialize` spread over its partitions with Feast's own partition writer.

Feast's SparkComputeEngine, given an offline store that is not Spark's, reads on the driver
(`SparkReadNode`: `retrieval_job.to_arrow()` then `createDataFrame`) and writes from every partition
(`SparkWriteNode`: `mapInArrow(map_in_arrow, mode="online")`, each partition rebuilding the online store
from `SerializedArtifacts` and calling `online_write_batch`). `ems materialize` does the same with the
rows its change-driven bookkeeping selected (warehouse/materialize.py), so both commands write through
the same executor code. pyspark is the optional extra `ems[spark]`; it is imported only here, lazily.
"""

from __future__ import annotations

import logging
import os
import sys
import time

import pyarrow as pa

from core.errors import EmsError, FeaturesUnavailableError

logger = logging.getLogger(__name__)


class SparkUnavailableError(EmsError):
    """The Feast yaml asks for Spark but pyspark or a Java runtime is missing."""


def is_spark(config) -> bool:
    """Whether a Feast RepoConfig names Spark as its batch engine."""
    engine = getattr(config, "batch_engine", None)
    return getattr(engine, "type", None) == "spark.engine"


def session(config):
    """The Spark session of the yaml's `batch_engine.spark_conf` (Feast's own builder, so `feast
    materialize` and `ems` get the same session); executors run this interpreter unless PYSPARK_PYTHON
    or spark.pyspark.python says otherwise. Logs the JVM start cost on first use."""
    try:
        from feast.infra.compute_engines.spark.utils import get_or_create_new_spark_session
        from pyspark.sql import SparkSession
    except ImportError as e:
        raise SparkUnavailableError(f"the Feast yaml's batch_engine is spark.engine but pyspark is not installed "
                                    f"({e}); install the extra: `uv sync --extra spark` (`make install`)") from e
    conf = dict(config.batch_engine.spark_conf or {})
    if "spark.pyspark.python" not in conf:
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    if str(conf.get("spark.master", "")).startswith("local"):  # one machine: stay on loopback
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    started = time.perf_counter()
    fresh = SparkSession.getActiveSession() is None
    try:
        spark = get_or_create_new_spark_session(conf)
    except RuntimeError as e:  # pyspark: "Java gateway process exited before sending its port number"
        raise SparkUnavailableError(f"cannot start Spark (master {conf.get('spark.master')!r}): {e}; it needs a Java "
                                    "17 runtime (`apt-get install openjdk-17-jre-headless`) or JAVA_HOME") from e
    if fresh:
        logger.info("spark session %s started in %.2f s", spark.sparkContext.master, time.perf_counter() - started)
    return spark


def write_online(config, fv, table: pa.Table) -> None:
    """Write `table` (join keys, event_timestamp, created, features) to the online store of `config` from
    Spark partitions with Feast's `map_in_arrow` (the spark.engine's own writer). A partition that fails
    fails the job, and the job's error is raised here: an unreachable online store is one
    FeaturesUnavailableError naming its address."""
    from feast.infra.common.serde import SerializedArtifacts
    from feast.infra.compute_engines.spark.utils import map_in_arrow
    from py4j.protocol import Py4JJavaError
    from pyspark.errors import PySparkException

    spark = session(config)
    artifacts = SerializedArtifacts.serialize(feature_view=fv, repo_config=config)
    frame = spark.createDataFrame(table)
    if config.batch_engine.partitions:
        frame = frame.repartition(config.batch_engine.partitions)
    started = time.perf_counter()
    try:
        frame.mapInArrow(lambda batches: map_in_arrow(batches, artifacts, mode="online"), frame.schema).count()
    except (PySparkException, Py4JJavaError) as e:  # both carry the executor's traceback as text
        raise _online_failure(e, config) from e
    logger.info("spark wrote %d rows of %s in %.2f s", table.num_rows, fv.name, time.perf_counter() - started)


def _online_failure(error: Exception, config) -> Exception:
    """One line for a failed write job: the online store's error when an executor could not reach it,
    else the job's own error (re-raised as it is)."""
    text = str(error)
    for marker in ("redis.exceptions.ConnectionError", "redis.exceptions.TimeoutError",
                   "redis.exceptions.AuthenticationError"):
        if marker in text:
            reason = next(line for line in text.splitlines() if marker in line).strip()
            address = config.online_store.connection_string.split(",")[0]
            return FeaturesUnavailableError(
                f"Spark could not write to the online store (Redis at {address}): {reason.removeprefix(marker + ': ')}"
                "; nothing was marked as materialized, start Redis (`ems up`) and run `ems materialize` again")
    return error
