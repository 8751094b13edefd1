"""CLI wiring through typer's CliRunner (no services)."""

from typer.testing import CliRunner

from cli import app

runner = CliRunner()


def test_help_lists_the_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("up", "down", "status", "ingest", "ingest-weather", "refresh", "materialize", "features"):
        assert command in result.output


def test_bad_tenant_is_one_clear_error_before_any_io(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("asset_id,timestamp,value\nm,2024-01-01T00:00:00Z,1\n")
    result = runner.invoke(app, ["ingest", str(path), "--tenant", "No Such"])
    assert result.exit_code == 1
    assert "tenant id 'No Such' is invalid" in result.output
    assert "Traceback" not in result.output


def test_bad_duration_is_a_usage_error(tmp_path):
    result = runner.invoke(app, ["ingest", str(tmp_path / "x.csv"), "--tenant", "t", "--period-ending", "soon"])
    assert result.exit_code == 2
    assert "'soon' is not a duration" in result.output


def test_cli_module_does_not_import_heavy_libraries():
    import subprocess
    import sys

    code = "import sys, cli; print(','.join(m for m in ('feast', 'mlflow', 'pandas', 'psycopg') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_models_promote_with_malformed_id_fails_before_reaching_mlflow():
    result = runner.invoke(app, ["models", "promote", "demo-x-1", "--to", "production"])
    assert result.exit_code == 1
    assert "model id 'demo-x-1' is malformed" in result.output


def test_train_commands_are_wired_and_check_the_method_before_any_io():
    result = runner.invoke(app, ["train", "--help"])
    assert result.exit_code == 0 and "forecast" in result.output and "anomaly" in result.output
    result = runner.invoke(app, ["train", "anomaly", "--tenant", "t", "--method", "prophet"])
    assert result.exit_code == 1
    assert "anomaly method 'prophet' is not one of z_score, iqr, isolation_forest, local_outlier_factor" \
        in result.output


def test_train_holdout_range_is_a_usage_error():
    result = runner.invoke(app, ["train", "forecast", "--tenant", "t", "--holdout-days", "0"])
    assert result.exit_code == 2


def test_inference_commands_check_horizon_and_sensitivity_before_any_io():
    result = runner.invoke(app, ["forecast", "--tenant", "t", "--asset", "a", "--horizon", "169"])
    assert result.exit_code == 1 and "horizon=169 is out of range 1..168" in result.output
    result = runner.invoke(app, ["anomaly", "--tenant", "t", "--asset", "a", "--sensitivity", "6"])
    assert result.exit_code == 1 and "sensitivity=6 is out of range 1..5" in result.output


def test_forecast_commands_default_to_the_registry_default_feature_service():
    import inspect

    import cli
    from core.names import DEFAULT_FORECAST_SERVICE, FEATURE_SERVICES

    for command in (cli.train_forecast, cli.evaluate_forecast):
        assert inspect.signature(command).parameters["features"].default == DEFAULT_FORECAST_SERVICE
    assert DEFAULT_FORECAST_SERVICE in FEATURE_SERVICES


def test_an_unreachable_registry_is_one_error_line(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # discard port: nothing answers
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    import cli

    monkeypatch.setattr(cli._State, "settings", None)
    result = runner.invoke(app, ["models", "list"])
    assert result.exit_code == 1
    assert "model registry at http://127.0.0.1:9 did not answer" in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_ids_are_printed_as_they_are():
    import cli

    with cli.console.capture() as captured:
        cli.console.print("ta:m:1 :smile:")
    assert captured.get().strip() == "ta:m:1 :smile:"


def test_the_feature_service_names_are_the_registered_ones():
    from core.names import FEATURE_SERVICES
    from feature_repo import services

    registered = {v.name for v in vars(services).values() if type(v).__name__ == "FeatureService"}
    assert set(FEATURE_SERVICES) == registered
