"""`ems export history` checks the tenant, the range and the target before any I/O (no services here)."""

from typer.testing import CliRunner

from cli import app

runner = CliRunner()


def test_export_history_bad_inputs_are_one_error_before_any_io(tmp_path):
    target = tmp_path / "h"
    cases = [
        (["--tenant", "No Such"], "tenant id 'No Such' is invalid"),
        (["--tenant", "demo", "--since", "2017-01-05", "--until", "2017-01-02"], "is not before until="),
        (["--tenant", "demo", "--table", "secrets"], "unknown table 'secrets'"),
    ]
    for args, message in cases:
        result = runner.invoke(app, ["export", "history", "--to", str(target), *args])
        assert result.exit_code == 1, result.output
        assert message in result.output and "Traceback" not in result.output
    assert not target.exists()
