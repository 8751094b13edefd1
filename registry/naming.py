"""Names shared across modules: id rules, feature service names, model naming."""

from __future__ import annotations

import re

from inference.errors import EmsError

# Tenants become part of MLflow model names (`{tenant}.{name}`) and Redis keys: lowercase, no dots.
TENANT_ID_PATTERN = r"[a-z0-9][a-z0-9_-]{0,62}"
# Asset and site ids come from meter systems: letters, digits and . _ : - (no spaces, no quotes).
ASSET_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}"

FEATURE_SERVICES = ("forecast_basic", "forecast_advanced", "anomaly_detection")
DEFAULT_FORECAST_SERVICE = "forecast_advanced"


class InvalidIdError(EmsError, ValueError):
    """A tenant, asset or site id breaks the id rules; the message names the value and the rule."""


def check_tenant_id(value: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(TENANT_ID_PATTERN, value):
        raise InvalidIdError(
            f"tenant id {value!r} is invalid: use 1-63 lowercase letters, digits, '_' or '-', "
            "starting with a letter or digit"
        )
    return value


def check_asset_id(value: str, what: str = "asset") -> str:
    if not isinstance(value, str) or not re.fullmatch(ASSET_ID_PATTERN, value):
        raise InvalidIdError(
            f"{what} id {value!r} is invalid: use 1-128 letters, digits, '.', '_', ':' or '-', "
            "starting with a letter or digit"
        )
    return value
