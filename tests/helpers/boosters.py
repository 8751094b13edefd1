"""Booster stand-ins for forecaster tests without LightGBM fitting."""

from __future__ import annotations

import numpy as np


class Constant:
    """A booster stand-in predicting one value for every row."""

    def __init__(self, value: float):
        self.value = value

    def predict(self, X, num_threads=1):
        return np.full(len(X), self.value)
