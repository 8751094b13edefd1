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


class ModelNotFoundError(EmsError, LookupError):
    """No such model version, or no production version."""


class InvalidTransitionError(EmsError, ValueError):
    """A stage change that the lifecycle does not allow."""
