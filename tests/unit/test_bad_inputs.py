"""Bad-input catalogue, part 1: inputs refused before any service is reached (issue 8, part 5).

Each row is one bad input at one boundary (CLI, SDK, registry functions, ingest) with the error a user
gets: the exit code or exception type, and text that names the bad value (and the allowed range
where there is one). CLI rows also check that no traceback reaches the user. The environment points
every service at a closed port, so a row that reached one would fail instead of passing quietly.
Rows that need data or a model in real services are in tests/integration/test_bad_inputs.py."""

from __future__ import annotations

import ast
from datetime import timedelta

import pandas as pd
import pytest
from typer.testing import CliRunner

import cli
import inference
from core.errors import (
    InvalidArgumentError,
    InvalidHorizonError,
    InvalidRangeError,
    InvalidSeriesError,
    InvalidTransitionError,
    ModelNotFoundError,
)
from core.names import InvalidIdError, InvalidMethodError, InvalidModelIdError
from core.settings import ROOT, Settings
from inference.client import Client
from registry import lifecycle
from registry.severity import InvalidSensitivityError
from tests.helpers.stack import write_feast_yaml
from warehouse.ingest import ingest_readings, ingest_weather
from warehouse.validate import IngestError

INJECTION = "x'; DROP TABLE readings;--"
HEADER = b"asset_id,timestamp,value\n"

# name -> bytes: one bad file each
BAD_FILES = {
    "empty.csv": b"",
    "header_only.csv": HEADER,
    "wrong_columns.csv": b"meter,when,kwh\nm1,2024-01-01T00:00:00Z,1\n",
    "non_numeric.csv": HEADER + b"m1,2024-01-01T00:00:00Z,abc\nm1,2024-01-01T01:00:00Z,12 kW\n",
    "bad_timestamps.csv": HEADER + b"m1,yesterday,1\nm1,2024-13-45T00:00:00,2\n",
    "future.csv": HEADER + b"m1,2100-01-01T00:00:00Z,1\n",
    "conflicting_duplicates.csv": HEADER + b"m1,2024-01-01T00:00:00Z,1\nm1,2024-01-01T00:00:00Z,2\n",
    "injected_asset_ids.csv": HEADER + f'"{INJECTION}",2024-01-01T00:00:00Z,1\n'.encode(),
    "not_gzip.csv.gz": b"asset_id,timestamp,value\n",
    "latin1.csv": HEADER + "compteur_é,2024-01-01T00:00:00Z,1\n".encode("latin-1"),
    "garbage.parquet": b"PAR1 not really",
    "ragged.csv": HEADER + b"m1,2024-01-01T00:00:00Z,1\nm1,2024-01-01T01:00:00Z,1,2,3\n",
    "readings.json": b'[{"asset_id": "m1"}]',
    "good.csv": HEADER + b"m1,2024-01-01T00:00:00Z,1\n",
    "wide_bad_names.csv": b"timestamp,zone 1,zone'2\n2024-01-01T00:00:00Z,1,2\n",
}


@pytest.fixture(autouse=True)
def nowhere(tmp_path, monkeypatch):
    """Every service address is a closed port; settings and the SDK's default client are rebuilt."""
    monkeypatch.setenv("EMS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FEAST_FS_YAML_FILE_PATH", str(write_feast_yaml(tmp_path / "feature_store.yaml", 1, 1, 1)))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setattr(cli._State, "settings", None)
    monkeypatch.setattr(cli._State, "debug", False)
    monkeypatch.setattr(inference, "_default", None)
    for name, content in BAD_FILES.items():
        (tmp_path / name).write_bytes(content)
    return tmp_path


def _one_line(text: str) -> str:
    """Output without rich's box drawing and wrapping."""
    return " ".join(text.replace("│", " ").split())


# ------------------------------------------------------------------ CLI (in process)
CLI = [
    # ingest: bad files
    pytest.param(["ingest", "@empty.csv", "-t", "t"], 1, ["empty.csv: the file is empty"], id="ingest-empty-file"),
    pytest.param(["ingest", "@header_only.csv", "-t", "t"], 1, ["header_only.csv: no data rows"],
                 id="ingest-no-rows"),
    pytest.param(["ingest", "@wrong_columns.csv", "-t", "t"], 1,
                 ["missing column 'timestamp'", "meter, when, kwh"], id="ingest-wrong-columns"),
    pytest.param(["ingest", "@non_numeric.csv", "-t", "t"], 1,
                 ["all 2 rows were rejected", "non_numeric_value x2", "value='abc'"], id="ingest-non-numeric"),
    pytest.param(["ingest", "@bad_timestamps.csv", "-t", "t"], 1,
                 ["unparseable_timestamp x2", "timestamp='yesterday'"], id="ingest-bad-timestamps"),
    pytest.param(["ingest", "@future.csv", "-t", "t"], 1, ["timestamp_in_future", "'2100-01-01T00:00:00Z'"],
                 id="ingest-future-timestamps"),
    pytest.param(["ingest", "@conflicting_duplicates.csv", "-t", "t"], 1,
                 ["conflicting_duplicate_in_file x2", "value='1'"], id="ingest-conflicting-duplicates"),
    pytest.param(["ingest", "@injected_asset_ids.csv", "-t", "t"], 1, ["invalid_asset_id", INJECTION],
                 id="ingest-injection-in-asset-ids"),
    pytest.param(["ingest", "@not_gzip.csv.gz", "-t", "t"], 1, ["not_gzip.csv.gz: cannot read as a table",
                                                               "Not a gzipped file"], id="ingest-bad-gzip"),
    pytest.param(["ingest", "@latin1.csv", "-t", "t"], 1, ["latin1.csv: not UTF-8 text (byte e9"],
                 id="ingest-wrong-encoding"),
    pytest.param(["ingest", "@garbage.parquet", "-t", "t"], 1, ["garbage.parquet: cannot read as a table"],
                 id="ingest-corrupt-parquet"),
    pytest.param(["ingest", "@ragged.csv", "-t", "t"], 1, ["ragged.csv: cannot read", "line 3, saw 5"],
                 id="ingest-ragged-rows"),
    pytest.param(["ingest", "@readings.json", "-t", "t"], 1, ["unsupported file type '.json'"],
                 id="ingest-unsupported-type"),
    pytest.param(["ingest", "@missing.csv", "-t", "t"], 1, ["missing.csv does not exist"], id="ingest-missing-file"),
    # ingest: bad ids and options
    pytest.param(["ingest", "@good.csv", "-t", INJECTION], 1, [f'tenant id "{INJECTION}" is invalid', "1-63"],
                 id="ingest-tenant-injection"),
    pytest.param(["ingest", "@good.csv", "-t", "t" * 64], 1, ["tenant id 'tttt", "1-63 lowercase"],
                 id="ingest-tenant-too-long"),
    pytest.param(["ingest", "@good.csv", "-t", "t", "--site", "site 1"], 1, ["site id 'site 1' is invalid"],
                 id="ingest-site-with-space"),
    pytest.param(["ingest", "@good.csv", "-t", "t", "--tz", "Mars/Olympus"], 1,
                 ["time zone 'Mars/Olympus' is not an IANA time zone"], id="ingest-bad-tz"),
    pytest.param(["ingest", "@good.csv", "-t", "t", "--period-ending", "0s"], 2,
                 ["'0s' is not a duration between 1s and 1d"], id="ingest-zero-duration"),
    pytest.param(["ingest-weather", "@good.csv", "--site", "s'; DROP TABLE weather;--"], 1,
                 ["site id \"s'; DROP TABLE weather;--\" is invalid"], id="weather-site-injection"),
    # inference
    pytest.param(["forecast", "-t", "t", "-a", "a", "--horizon", "169"], 1, ["horizon=169 is out of range 1..168"],
                 id="forecast-horizon-169"),
    pytest.param(["forecast", "-t", "t", "-a", "a", "--horizon", "0"], 1, ["horizon=0 is out of range 1..168"],
                 id="forecast-horizon-0"),
    pytest.param(["forecast", "-t", "t", "-a", "a", "-H", str(10**20)], 1,
                 [f"horizon={10**20} is out of range 1..168"], id="forecast-horizon-huge"),
    pytest.param(["forecast", "-t", "t", "-a", "a", "-H", "a day"], 2, ["'--horizon'", "'a day'", "integer"],
                 id="forecast-horizon-not-a-number"),
    pytest.param(["forecast", "-t", "t", "-a", "meter'1"], 1, ["asset id \"meter'1\" is invalid", "1-128"],
                 id="forecast-asset-with-quote"),
    pytest.param(["forecast", "-t", "t", "-a", "a", "--model", "t:load_forecaster"], 1,
                 ["model id 't:load_forecaster' is malformed", "tenant:name:version"], id="forecast-malformed-model"),
    pytest.param(["anomaly", "-t", "t", "-a", "a", "--sensitivity", "6"], 1, ["sensitivity=6 is out of range 1..5"],
                 id="anomaly-sensitivity-6"),
    pytest.param(["anomaly", "-t", "t", "-a", "a", "--method", "prophet"], 1,
                 ["anomaly method 'prophet' is not one of z_score"], id="anomaly-unknown-method"),
    pytest.param(["anomaly", "-t", "t", "-a", "a", "--start", "2024-02-01", "--end", "2024-01-01"], 1,
                 ["start 2024-02-01T00:00:00+00:00 is not before end 2024-01-01"], id="anomaly-reversed-range"),
    pytest.param(["anomaly", "-t", "t", "-a", "a", "--start", "last tuesday"], 2, ["'--start'", "'last tuesday'"],
                 id="anomaly-start-not-a-time"),
    pytest.param(["explain", "-t", "t", "-a", "a", "--horizon", "-1"], 1, ["horizon=-1 is out of range 1..168"],
                 id="explain-horizon-negative"),
    pytest.param(["features", "-t", "t", "-a", "[/]"], 1, ["asset id '[/]' is invalid"], id="features-markup-in-id"),
    # registry and training
    pytest.param(["models", "promote", "t:load_forecaster:1", "--to", "live"], 1,
                 ["stage 'live' is not one of staging, production, archived"], id="promote-unknown-stage"),
    pytest.param(["models", "show", "t:x:0"], 1, ["model id 't:x:0' is malformed"], id="show-version-0"),
    pytest.param(["models", "list", "-t", INJECTION], 1, [f'tenant id "{INJECTION}" is invalid'],
                 id="list-tenant-injection"),
    pytest.param(["train", "forecast", "-t", "t", "--history-days", "5"], 2, ["'--history-days'", "'5'", "21"],
                 id="train-history-too-short"),
    pytest.param(["evaluate", "forecast", "-t", "t", "--horizons", "24,500"], 1,
                 ["horizon=500 is out of range 1..168"], id="evaluate-horizon-500"),
    # benchmarks: checked before the bench tenant is touched
    pytest.param(["bench", "--only", "scale", "--assets", "0"], 1, ["--assets 0 is out of range: 1 to 20,000"],
                 id="bench-assets-0"),
    pytest.param(["bench", "--only", "scale", "--training-rows", "1000000", "--training-rows", "50"], 1,
                 ["--training-rows 50 is out of range: 1,000 to 10,000,000"], id="bench-training-rows-50"),
]


@pytest.mark.parametrize(("args", "code", "says"), CLI)
def test_cli_refuses_bad_input_with_one_clear_message(nowhere, args, code, says):
    args = [str(nowhere / a[1:]) if a.startswith("@") else a for a in args]
    result = CliRunner().invoke(cli.app, args)
    output = _one_line(result.output)
    assert result.exit_code == code, output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    for text in says:
        assert text in output
    assert "Traceback" not in result.output


def test_cli_debug_shows_the_traceback_of_a_domain_error():
    plain = CliRunner().invoke(cli.app, ["forecast", "-t", "t", "-a", "a", "-H", "0"])
    debug = CliRunner().invoke(cli.app, ["--debug", "forecast", "-t", "t", "-a", "a", "-H", "0"])
    assert plain.exit_code == debug.exit_code == 1
    assert "Traceback" not in plain.output
    assert "Traceback" in debug.output and "InvalidHorizonError" in debug.output
    assert "horizon=0 is out of range 1..168" in _one_line(debug.output)


def test_an_unexpected_error_is_one_line_unless_debug(capsys):
    """The last resort of the real process (`ems` calls the app): a bug is not shown as a traceback."""
    app = cli._App(cls=cli._Group)
    app.callback()(cli.main)

    @app.command()
    def boom() -> None:
        raise KeyError("asset 'zone1' [/]")

    with pytest.raises(SystemExit) as exit_:
        app(["boom"], prog_name="ems")
    err = capsys.readouterr().err
    assert exit_.value.code == 1 and "Traceback" not in err
    assert "error: unexpected KeyError: \"asset 'zone1' [/]\" (rerun with --debug for the traceback)" in err
    with pytest.raises(KeyError):  # --debug: it propagates to typer's handler, which prints the traceback
        app(["--debug", "boom"], prog_name="ems")


# ------------------------------------------------------------------ SDK, registry and ingest functions
DEAD_MLFLOW = "http://127.0.0.1:1"


def _series(n: int = 48) -> pd.Series:
    return pd.Series(range(n), index=pd.date_range("2024-01-01", periods=n, freq="h"), dtype=float)


SDK = [
    # forecast / detect_anomalies / explain (module-level functions and Client)
    pytest.param(lambda c, d: inference.forecast("t", "a", horizon=0), InvalidHorizonError,
                 ["horizon=0 is out of range 1..168"], id="sdk-forecast-horizon-0"),
    pytest.param(lambda c, d: c.forecast("t", "a", 24.0), InvalidHorizonError,
                 ["horizon=24.0 is not a whole number of hours", "1..168"], id="sdk-horizon-float"),
    pytest.param(lambda c, d: c.forecast("t", "a", "24"), InvalidHorizonError, ["horizon='24'", "1..168"],
                 id="sdk-horizon-string"),
    pytest.param(lambda c, d: c.forecast(7, "a"), InvalidIdError, ["tenant id 7 is invalid"], id="sdk-tenant-int"),
    pytest.param(lambda c, d: c.forecast("Demo", "a"), InvalidIdError, ["tenant id 'Demo' is invalid", "lowercase"],
                 id="sdk-tenant-uppercase"),
    pytest.param(lambda c, d: c.forecast("t", 'a"b'), InvalidIdError, ["asset id 'a\"b' is invalid"],
                 id="sdk-asset-with-quote"),
    pytest.param(lambda c, d: c.forecast("t", "a" * 129), InvalidIdError, ["asset id 'aaaa", "1-128"],
                 id="sdk-asset-too-long"),
    pytest.param(lambda c, d: c.forecast("t", "a", quantiles=[0.05, 0.95]), InvalidArgumentError,
                 ["quantiles=[0.05, 0.95]", "True", "False"], id="sdk-quantiles-list"),
    pytest.param(lambda c, d: c.forecast("t", "a", model=3), InvalidModelIdError, ["model name 3 is invalid"],
                 id="sdk-model-int"),
    pytest.param(lambda c, d: c.forecast("t", "a", model="other:load_forecaster:1"), ModelNotFoundError,
                 ["other:load_forecaster:1 belongs to tenant 'other', not 't'"], id="sdk-model-of-other-tenant"),
    pytest.param(lambda c, d: c.forecast("t", "a", as_of="last tuesday"), InvalidArgumentError,
                 ["as_of='last tuesday' is not a time"], id="sdk-as-of-not-a-time"),
    pytest.param(lambda c, d: c.forecast("t", "a", history=[1.0, 2.0]), InvalidSeriesError,
                 ["history must be a pandas Series", "not list"], id="sdk-history-list"),
    pytest.param(lambda c, d: c.forecast("t", "a", history=_series(), timezone="Mars/Olympus"), InvalidArgumentError,
                 ["timezone='Mars/Olympus' is not an IANA time zone"], id="sdk-history-bad-timezone"),
    pytest.param(lambda c, d: inference.detect_anomalies("t", "a", sensitivity=2.5), InvalidSensitivityError,
                 ["sensitivity=2.5 is out of range 1..5"], id="sdk-sensitivity-float"),
    pytest.param(lambda c, d: c.detect_anomalies("t", "a", method="Z-Score"), InvalidMethodError,
                 ["anomaly method 'Z-Score' is not one of"], id="sdk-method-wrong-case"),
    pytest.param(lambda c, d: c.detect_anomalies("t", "a", lookback_hours=10**6), InvalidRangeError,
                 ["lookback_hours=1000000 is out of range 1..2208"], id="sdk-lookback-huge"),
    pytest.param(lambda c, d: c.detect_anomalies("t", "a", start="2024-01-01", end="2025-01-01"), InvalidRangeError,
                 ["spans 8784 h", "the limit is 2208 h"], id="sdk-range-a-year"),
    pytest.param(lambda c, d: c.detect_anomalies("t", "a", start=20240101), InvalidArgumentError,
                 ["start=20240101 is not a time"], id="sdk-start-int"),
    pytest.param(lambda c, d: inference.explain("t", features="lag_1h=3"), InvalidArgumentError,
                 ["features must be a dict", "not str"], id="sdk-explain-features-str"),
    pytest.param(lambda c, d: inference.explain_global("t.load_forecaster.3"), InvalidModelIdError,
                 ["model id 't.load_forecaster.3' is malformed"], id="sdk-explain-global-dotted-id"),
    # registry functions
    pytest.param(lambda c, d: lifecycle.promote(lifecycle.client(DEAD_MLFLOW), "t:m:1", None), InvalidTransitionError,
                 ["stage None is not one of staging, production, archived"], id="registry-promote-stage-none"),
    pytest.param(lambda c, d: lifecycle.promote(lifecycle.client(DEAD_MLFLOW), "t:m:1", "Production "),
                 InvalidTransitionError, ["stage 'Production ' is not one of"], id="registry-promote-stage-space"),
    pytest.param(lambda c, d: lifecycle.show(lifecycle.client(DEAD_MLFLOW), "t:m:1:2"), InvalidModelIdError,
                 ["model id 't:m:1:2' is malformed"], id="registry-show-four-parts"),
    pytest.param(lambda c, d: lifecycle.resolve_production(lifecycle.client(DEAD_MLFLOW), "t", "m'--"),
                 InvalidModelIdError, ["model name \"m'--\" is invalid"], id="registry-resolve-name-quote"),
    pytest.param(lambda c, d: lifecycle.list_models(lifecycle.client(DEAD_MLFLOW), "t%"), InvalidIdError,
                 ["tenant id 't%' is invalid"], id="registry-list-tenant-wildcard"),
    # ingest functions
    pytest.param(lambda c, d: ingest_readings(c.settings, d / "good.csv", INJECTION), InvalidIdError,
                 [INJECTION], id="ingest-sdk-tenant-injection"),
    pytest.param(lambda c, d: ingest_readings(c.settings, None, "t"), IngestError, ["path None is not a file path"],
                 id="ingest-sdk-path-none"),
    pytest.param(lambda c, d: ingest_readings(c.settings, d / "good.csv", "t", tz=1), IngestError,
                 ["time zone 1 is not an IANA time zone"], id="ingest-sdk-tz-int"),
    pytest.param(lambda c, d: ingest_readings(c.settings, d / "good.csv", "t", period_ending=timedelta(hours=-1)),
                 IngestError, ["period_ending=datetime.timedelta(days=-1, seconds=82800)", "1s and 1d"],
                 id="ingest-sdk-negative-period"),
    pytest.param(lambda c, d: ingest_readings(c.settings, d / "wide_bad_names.csv", "t", wide=True), IngestError,
                 ["invalid_asset_id x2", "asset_id='zone 1'"], id="ingest-sdk-wide-bad-asset-names"),
    pytest.param(lambda c, d: ingest_weather(c.settings, d / "good.csv", "s", tz="Europe/Pariss"), IngestError,
                 ["time zone 'Europe/Pariss' is not an IANA time zone"], id="weather-sdk-bad-tz"),
]


@pytest.mark.parametrize(("call", "error", "says"), SDK)
def test_sdk_refuses_bad_input_with_one_clear_error(nowhere, call, error, says):
    client = Client(Settings())
    with pytest.raises(error) as info:
        call(client, nowhere)
    for text in says:
        assert text in str(info.value)


# ------------------------------------------------------------------ SQL is never built from Python strings
SQL_CALLS = {"execute", "executemany", "copy", "SQL"}  # cursor/connection methods and psycopg.sql.SQL


def _built_from_strings(node: ast.expr) -> bool:
    """An f-string, `"..." % x`, `"..." + x` or `"...".format(x)`: text a value could be pasted into."""
    if isinstance(node, ast.JoinedStr):
        return any(isinstance(v, ast.FormattedValue) for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod | ast.Add):
        return any(isinstance(side, ast.Constant) and isinstance(side.value, str) or _built_from_strings(side)
                   for side in (node.left, node.right))
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format"
            and isinstance(node.func.value, ast.Constant))


def test_no_sql_statement_is_built_from_python_strings():
    """Values go in as driver parameters and identifiers through psycopg.sql (STYLE: SQL)."""
    offenders = []
    for path in [ROOT / "cli.py", *(p for d in ("stack", "warehouse", "registry", "inference", "feature_repo",
                                                "bench") for p in sorted((ROOT / d).rglob("*.py")))]:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and node.args and (
                    getattr(node.func, "attr", None) in SQL_CALLS or getattr(node.func, "id", None) == "SQL") \
                    and _built_from_strings(node.args[0]):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []
