"""Domain errors. Each message names the bad value and the allowed range or the fix; the CLI prints
it as one line and exits 1."""


class EmsError(Exception):
    """Base of every error a user can fix (bad input, missing data, unreachable service)."""


class UnknownAssetError(EmsError, LookupError):
    """The tenant has no such asset."""


class UnknownFeatureServiceError(EmsError, LookupError):
    """No feature service of that name is registered (run `feast apply`)."""


class FeaturesUnavailableError(EmsError):
    """Features cannot be read (online store unreachable, nothing materialized)."""


class OnlineStoreAccessError(FeaturesUnavailableError):
    """The online store (Redis) refused this process's credentials; the message names the user and the fix."""


class ModelNotFoundError(EmsError, LookupError):
    """No such model version, or no production version."""


class InvalidTransitionError(EmsError, ValueError):
    """A stage change that the lifecycle does not allow."""


class InvalidHorizonError(EmsError, ValueError):
    """A forecast horizon outside 1..168 hours."""


class InvalidRangeError(EmsError, ValueError):
    """A time range that is empty, reversed or too long."""


class InvalidArgumentError(EmsError, ValueError):
    """An argument of the wrong type, or a value that cannot be parsed (a time, a time zone)."""


class InvalidSeriesError(EmsError, ValueError):
    """A caller-supplied series that cannot be used (empty, not hourly-resolvable, no time index)."""


class ModelUnavailableError(EmsError):
    """The model registry cannot be reached and no model is cached."""


class JobNotFoundError(EmsError, LookupError):
    """No job of that id."""


class TooManyJobsError(EmsError):
    """A tenant already has as many jobs queued or running as it may."""


def error_code(e: Exception) -> str:
    """The stable code of an error: its class name in snake case without `Error` (`UnknownAssetError`
    -> `unknown_asset`)."""
    import re

    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(e).__name__.removesuffix("Error")).lower() or "error"
