"""Each domain error maps to one HTTP status: unreachable dependencies are 503, bad values 422, unknown
things 404, a full job queue 429."""

import pytest

from core.errors import (
    FeaturesUnavailableError,
    InvalidHorizonError,
    JobNotFoundError,
    ModelUnavailableError,
    TooManyJobsError,
    UnknownAssetError,
    error_code,
)
from service.app import _status
from service.auth import AuthError
from warehouse.db import DatabaseUnavailableError


@pytest.mark.parametrize("error, status, code", [
    (DatabaseUnavailableError("postgres at 127.0.0.1:5432 is unreachable"), 503, "database_unavailable"),
    (ModelUnavailableError("registry unreachable"), 503, "model_unavailable"),
    (FeaturesUnavailableError("online store unreachable"), 503, "features_unavailable"),
    (TooManyJobsError("two jobs running"), 429, "too_many_jobs"),
    (JobNotFoundError("no job 'x'"), 404, "job_not_found"),
    (UnknownAssetError("no asset 'z'"), 404, "unknown_asset"),
    (InvalidHorizonError("horizon=200 is out of range 1..168"), 422, "invalid_horizon"),
    (AuthError("missing bearer token", 401), 401, "auth"),
])
def test_status_and_code(error, status, code):
    assert (_status(error), error_code(error)) == (status, code)
