"""The explanation sentence names each top input with its value, the asset input with the asset id."""

import numpy as np

from inference.client import _explain_sentence


def test_sentence_shows_numbers_missing_values_and_the_asset_id():
    top = [("asset_code", "zone3", 120.0), ("lag_1h", 14_250.5, -80.0), ("temperature", np.nan, 5.0)]
    text = _explain_sentence(15_000.0, 14_000.0, top, None)
    assert "asset_code (zone3) raises it by" in text
    assert "lag_1h (1.425e+04) lowers it by" in text and "temperature (—) raises it by" in text
