"""EMS AI Hub SDK: `from inference import ...` (forecast, anomaly and explain calls come with the
registry issue). Kept import-light: heavy modules load on first use."""

from inference.errors import (
    EmsError,
    FeaturesUnavailableError,
    UnknownAssetError,
    UnknownFeatureServiceError,
)

__all__ = ["EmsError", "FeaturesUnavailableError", "UnknownAssetError", "UnknownFeatureServiceError"]
