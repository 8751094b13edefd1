"""No credential in the repository except the documented throwaway local defaults (README, "Secrets").

Every file git tracks (or would add: untracked and not ignored) is scanned for well-known token
formats, private keys, passwords inside URLs and secret-named settings with a literal value. The only
literals allowed are the local stack's throwaway defaults below; production values come from the
environment (.env for mlflow-compose.yml, never committed).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

import core.settings
from core.settings import LOCAL_S3_ACCESS_KEY, LOCAL_S3_SECRET_KEY, ROOT, Settings, SettingsError

SECRET_NAME = re.compile(r"(?i)password|secret|access_key|token")
_LOCAL_FEAST = yaml.safe_load((ROOT / "feature_store.yaml").read_text())

# The documented throwaway values (README, "Secrets"), for loopback-only services that `ems up` and the
# test suite start: the local Postgres password in feature_store.yaml and the LOCAL_* credentials of
# core/settings.py. Anything else that looks like a credential fails this test.
THROWAWAY = {
    _LOCAL_FEAST["offline_store"]["password"]: "feature_store.yaml offline_store.password",
    **{value: f"core/settings.py {name}" for name, value in vars(core.settings).items()
       if name.startswith("LOCAL_") and SECRET_NAME.search(name) and isinstance(value, str)},
}
# Values that name no credential: a one-letter password in a parser's unit test and the like.
NOT_SECRETS = {"p"}

TOKENS = {
    "AWS access key id": r"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b",
    "AWS secret access key": r"(?i)aws.{0,20}secret.{0,20}[\s'\"=:][A-Za-z0-9/+]{40}(?![A-Za-z0-9/+])",
    "private key": r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----",
    "GitHub token": r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})",
    "Slack token": r"\bxox[abposr]-[A-Za-z0-9-]{10,}",
    "Google API key": r"\bAIza[0-9A-Za-z_-]{35}\b",
    "API secret key": r"\bsk-(?:ant-|proj-|live_|test_)?[A-Za-z0-9_-]{32,}",
    "JSON web token": r"\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}",
}
URL_PASSWORD = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s:/@'\"`]+:(?P<value>[^\s@/'\"`]+)@")
SECRET_SETTING = re.compile(
    r"(?i)(?<![{$])\b[a-z0-9_.-]*(?:password|passwd|secret|secret_key|access_key|access_key_id|api_key|apikey|token"
    r"|private_key)\b[\"']?[ \t]*[:=][ \t]*(?P<value>\"[^\"\n]*\"|'[^'\n]*'|[^\s,;#)}\]\"'`]+)"
)
CODE_SUFFIXES = {".py", ".ipynb"}  # an unquoted value there is an expression, not a literal
NOT_LITERAL = re.compile(r"^(?:\$|\{|%\(|<|\*+$|true$|false$|null$|none$)", re.I)


def _repo_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=ROOT, capture_output=True, check=True).stdout
    return [ROOT / name for name in out.decode().split("\0") if name and (ROOT / name).is_file()]


def _text(path: Path) -> str | None:
    data = path.read_bytes()
    if b"\0" in data[:8192]:
        return None  # binary (compressed data sets)
    return data.decode("utf-8", errors="replace")


def _literal(value: str, quoted_only: bool) -> str | None:
    """The literal a setting is given, or None when the value is a reference or an expression."""
    quoted = value[:1] in "\"'" and value[-1:] == value[:1] and len(value) >= 2
    if quoted_only and not quoted:
        return None
    value = value[1:-1] if quoted else value
    if not value or NOT_LITERAL.match(value):
        return None
    return value


def find_credentials(path: Path, text: str) -> list[str]:
    """Credential-looking strings in one file, as `path:line: what`."""
    allowed = set(THROWAWAY) | NOT_SECRETS
    code = path.suffix in CODE_SUFFIXES
    found = []

    def report(pos: int, what: str) -> None:
        found.append(f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, pos) + 1}: {what}")

    for what, pattern in TOKENS.items():
        for m in re.finditer(pattern, text):
            report(m.start(), what)
    for m in URL_PASSWORD.finditer(text):
        value = _literal(m["value"], quoted_only=False)
        if value is not None and value not in allowed:
            report(m.start(), "password in a URL")
    for m in SECRET_SETTING.finditer(text):
        value = _literal(m["value"], quoted_only=code)
        if value is not None and value not in allowed:
            report(m.start(), f"literal secret {m.group(0)[:60]!r}")
    return found


def test_no_credential_in_the_repository_except_the_throwaway_local_defaults():
    files = _repo_files()
    assert len(files) > 50, "git ls-files found too few files"
    found = [hit for path in files if (text := _text(path)) is not None for hit in find_credentials(path, text)]
    assert not found, "credentials in the repository (use the environment):\n" + "\n".join(found)


@pytest.mark.parametrize("line", [
    "aws_access_key_id = AKIA" + "Z" * 16,
    "key = ghp_" + "a1" * 18,
    "-----BEGIN RSA " + "PRIVATE KEY-----",
    "-----BEGIN OPENSSH " + "PRIVATE KEY-----",
    "url: postgresql://ems:" + "hunter2" + "@db.internal:5432/ems",
    "MLFLOW_TRACKING_URI=https://alice:" + "s3cr3t" + "@mlflow.example.org",
    "EMS_PG_PASSWORD" + "=hunter2",
    "  password" + ": hunter2",
    "client = connect(password" + '="hunter2")',
    "api_key: sk-" + "x" * 40,
])
def test_scanner_finds_credentials(line):
    suffix = ".py" if "connect(" in line else ".yaml"
    assert find_credentials(ROOT / f"example{suffix}", line + "\n")


@pytest.mark.parametrize("line", [
    "EMS_PG_PASSWORD=",
    "EMS_PG_PASSWORD: ${EMS_PG_PASSWORD:?set EMS_PG_PASSWORD in .env}",
    "path: postgresql+psycopg://${EMS_PG_USER}:${EMS_PG_PASSWORD}@${EMS_PG_HOST}:5432/ems",
    'url = f"postgresql+psycopg2://{quote(self.user)}:{quote(self.password)}@{self.host}"',
    "redis.Redis(host=h, port=p, password=address.password or None)",
    "  password" + ": " + _LOCAL_FEAST["offline_store"]["password"],
    "mc alias set ems http://minio:9000 \"$$EMS_S3_ACCESS_KEY\" \"$$EMS_S3_SECRET_KEY\"",
])
def test_scanner_allows_references_expressions_and_throwaway_defaults(line):
    suffix = ".py" if "(" in line and "mc alias" not in line else ".yaml"
    assert find_credentials(ROOT / f"example{suffix}", line + "\n") == []


def test_local_feast_config_holds_only_throwaway_loopback_values():
    """The root feature_store.yaml is the local stack's: a real database must not be reachable with it."""
    offline = _LOCAL_FEAST["offline_store"]
    assert offline["host"] == "127.0.0.1" and offline["password"] in THROWAWAY
    assert "127.0.0.1:" in _LOCAL_FEAST["registry"]["path"]
    assert _LOCAL_FEAST["online_store"]["connection_string"].startswith("127.0.0.1:")
    assert _LOCAL_FEAST["mlflow"]["tracking_uri"].startswith("http://127.0.0.1:")


def test_throwaway_values_are_the_documented_ones():
    assert {LOCAL_S3_ACCESS_KEY, LOCAL_S3_SECRET_KEY, _LOCAL_FEAST["offline_store"]["password"]} <= set(THROWAWAY)
    readme = (ROOT / "README.md").read_text()
    secrets_section = readme[readme.index("## Secrets"):].split("\n## ")[0]
    for value in (LOCAL_S3_ACCESS_KEY, LOCAL_S3_SECRET_KEY, _LOCAL_FEAST["offline_store"]["password"]):
        assert f"`{value}`" in secrets_section, value


def test_settings_secrets_have_no_default_but_a_throwaway_one():
    for name, field in Settings.model_fields.items():
        if SECRET_NAME.search(name) and isinstance(field.default, str) and field.default:
            assert field.default in THROWAWAY, f"Settings.{name} defaults to an undocumented value"


@pytest.mark.parametrize("endpoint", ["https://minio.example.org", "http://10.0.0.5:9000", "http://minio:9000"])
def test_throwaway_s3_credentials_are_refused_off_loopback(endpoint, monkeypatch):
    for name in ("EMS_S3_ACCESS_KEY", "EMS_S3_SECRET_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("EMS_S3_ENDPOINT_URL", endpoint)
    with pytest.raises(SettingsError, match="EMS_S3_ACCESS_KEY and EMS_S3_SECRET_KEY"):
        Settings().check_credentials()
    monkeypatch.setenv("EMS_S3_ACCESS_KEY", LOCAL_S3_ACCESS_KEY + "-rotated")
    with pytest.raises(SettingsError):  # one throwaway value is enough to refuse
        Settings().check_credentials()


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:18333", "http://localhost:18333", "http://[::1]:18333"])
def test_throwaway_s3_credentials_are_accepted_on_loopback(endpoint, monkeypatch):
    for name in ("EMS_S3_ACCESS_KEY", "EMS_S3_SECRET_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("EMS_S3_ENDPOINT_URL", endpoint)
    Settings().check_credentials()


def test_dotenv_is_never_tracked():
    tracked = subprocess.run(["git", "ls-files", "--", ".env", "**/.env"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout
    assert tracked == ""
