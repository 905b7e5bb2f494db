"""What a forecaster hands to the scorer: the three heads in the units the metrics read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

# A dataset as loaded from disk: array name -> array with the sample axis first (docs/data-format.md).
Arrays = Mapping[str, np.ndarray]


@dataclass
class Predictions:
    """One forecaster's output on n samples. A head it does not predict is None.

    pace_quantiles [n, 3]: P10/P50/P90 of the next lap's fuel-corrected time, absolute seconds.
    risk_probs     [n, 3]: probabilities over contract.RISK_CLASSES.
    tire_health    [n]:    0 (dead) .. 1 (new).
    """

    pace_quantiles: np.ndarray | None = None
    risk_probs: np.ndarray | None = None
    tire_health: np.ndarray | None = None

    def subset(self, mask: np.ndarray) -> Predictions:
        """The same predictions restricted to the samples where mask [n] is True."""
        return Predictions(
            pace_quantiles=None if self.pace_quantiles is None else self.pace_quantiles[mask],
            risk_probs=None if self.risk_probs is None else self.risk_probs[mask],
            tire_health=None if self.tire_health is None else self.tire_health[mask],
        )
