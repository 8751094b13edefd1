"""Explanations name each top input with its value, the asset input with the asset id (sentence and plot)."""

import numpy as np

from inference.explaining import sentence


def test_sentence_shows_numbers_missing_values_and_the_asset_id():
    top = [("asset_code", "zone3", 120.0), ("lag_1h", 14_250.5, -80.0), ("temperature", np.nan, 5.0)]
    text = sentence(15_000.0, 14_000.0, top, None)
    assert "asset_code (zone3) raises it by" in text
    assert "lag_1h (1.425e+04) lowers it by" in text and "temperature (—) raises it by" in text
    assert "(base 14,000.0):" in text
    # an anchored model's base starts from the same hour on the last observed day
    anchored = sentence(15_000.0, 14_000.0, top, None, anchor=14_100.0)
    assert "(base 14,000.0 = same hour on the last observed day 14,100.0 - average change 100.0):" in anchored


def test_waterfall_plot_labels_numbers_and_the_asset_id():
    import pandas as pd

    from inference.results import Explanation

    contributions = pd.DataFrame({"feature": ["lag_1h", "asset_code", "temperature"],
                                  "value": [14_250.5, "zone3", None], "contribution": [-80.0, 120.0, 5.0]})
    fig = Explanation("t:load_forecaster:1", None, 1045.0, 1000.0, contributions, "").plot()
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert "asset_code = zone3" in labels and "lag_1h = 1.425e+04" in labels and "temperature" in labels
