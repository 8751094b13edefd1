"""The README's "HTTP API" curl examples, run as written (bash and the real curl) against `ems serve`
with `$EMS_API` and `$TOKEN` set: each must answer 2xx with a JSON body. The examples name tenant
`demo`, as the README says; the test puts its own tenant in its place."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest

from core.settings import ROOT
from service.auth import ROLES
from tests.helpers.api import Keys, jwks_server, serving, trained_tenant
from tests.helpers.stack import TEST_PORTS

pytestmark = pytest.mark.integration

TENANT = "api-readme"
API_PORT = TEST_PORTS["mlflow"] + 11  # test_api.py +3..+5, _contract +6/+7, _telemetry +8..+10
JWKS_PORT = TEST_PORTS["mlflow"] + 12
PLACEHOLDER = "demo"  # the README examples' tenant
# What the section must show, as (method, path) with the tenant and model id in the README's words.
COVERED = {("GET", "/ai/models"), ("GET", "/ai/models/{id}"), ("PUT", "/ai/models/{id}/promote"),
           ("POST", "/ai/forecast"), ("POST", "/ai/anomaly"), ("POST", "/ai/explain"),
           ("POST", "/ai/features/get"), ("GET", "/ai/features/sets"), ("GET", "/ai/assets"),
           ("PUT", "/ai/assets/zone1")}


def http_api_blocks(readme: str) -> list[str]:
    """The ```bash blocks of the README's "### HTTP API" section, in order."""
    section = re.search(r"^### HTTP API\n(.*?)(?=^##)", readme, flags=re.S | re.M)
    assert section, "README.md has no '### HTTP API' section"
    return re.findall(r"^```bash\n(.*?)^```", section.group(1), flags=re.S | re.M)


def route(block: str) -> tuple[str, str]:
    method = re.search(r"-X (\w+)", block)
    path = re.search(r'"\$EMS_API(/[^"?]*)', block).group(1)
    return (method.group(1) if method else "GET", re.sub(r"/[^/]+:[^/]+:\d+", "/{id}", path))


def test_the_http_api_section_shows_each_call_with_the_shell_variables():
    blocks = http_api_blocks((ROOT / "README.md").read_text())
    assert {route(b) for b in blocks} == COVERED
    for block in blocks:
        assert block.startswith("curl -sS --fail-with-body ") and '"$EMS_API/' in block, block
        assert 'Authorization: Bearer $TOKEN"' in block, block


@pytest.fixture(scope="module")
def readme_api(stack, store, env, tmp_path_factory):
    """`ems serve` over a tenant with a trained (not yet promoted) forecaster: the README promotes it."""
    keys = Keys()
    tmp = tmp_path_factory.mktemp("readme")
    trained_tenant(stack, store, env, tmp, TENANT, "tet-readme", "2017-06-01", "2017-06-29")
    with jwks_server(keys, JWKS_PORT) as jwks_url, \
            serving({**os.environ, **env}, API_PORT, tmp / "serve.log", jwks_url=jwks_url) as base:
        yield base, keys.token(TENANT, list(ROLES))


def test_every_readme_curl_example_answers_2xx_with_json(readme_api):
    base, token = readme_api
    assert shutil.which("curl"), "curl is not installed (.ci/run installs it)"
    blocks = http_api_blocks((ROOT / "README.md").read_text())
    for block in blocks:  # in README order: the promotion comes before the forecast
        script = re.sub(rf"\b{PLACEHOLDER}\b", TENANT, block)
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True,
                              timeout=120, env={**os.environ, "EMS_API": base, "TOKEN": token})
        assert done.returncode == 0, f"{block}\nexit {done.returncode}: {done.stdout} {done.stderr}"
        json.loads(done.stdout)
