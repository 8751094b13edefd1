"""The API's per-caller token bucket and its error codes, without a server."""

from __future__ import annotations

from core.errors import InvalidHorizonError, ModelNotFoundError, ModelUnavailableError, error_code
from service.app import _RateLimit, _status
from service.auth import AuthError


def test_a_caller_gets_its_burst_then_waits_for_the_rate():
    limit = _RateLimit(rate=1.0, burst=2)
    assert limit.take("a") == 0 and limit.take("a") == 0
    wait = limit.take("a")
    assert 0.9 < wait <= 1.0
    assert limit.take("b") == 0  # another caller has its own bucket


def test_errors_map_to_stable_codes_and_statuses():
    assert (error_code(InvalidHorizonError("x")), _status(InvalidHorizonError("x"))) == ("invalid_horizon", 422)
    assert (error_code(ModelNotFoundError("x")), _status(ModelNotFoundError("x"))) == ("model_not_found", 404)
    assert _status(ModelUnavailableError("x")) == 503
    assert (error_code(AuthError("x", 401)), _status(AuthError("x", 401))) == ("auth", 401)
