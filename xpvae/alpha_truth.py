"""The demo's check of P(high-α) where the simulator knows the answer: the stored probabilities of the stars
APOGEE never labelled, scored against their true α class (truth.parquet's ``high_alpha``: the Patil split of
the true [Fe/H] and [Mg/Fe]) with the same curves as the held-out labelled stars (analysis.calibration)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from analysis.calibration import Calibration, calibration
from db.results import read_alpha_probabilities


def unlabelled_truth_calibration(engine, model_name: str, truth_path: Path) -> Calibration | None:
    """Calibration of the model's stored P(high-α) on the never-labelled simulated stars; None when the model
    has no probabilities or the truth has no never-labelled star among them."""
    import pyarrow.parquet as pq
    truth = pq.read_table(truth_path, columns=["source_id", "high_alpha", "labelled"])
    ids = truth.column("source_id").to_numpy()
    high = truth.column("high_alpha").to_numpy().astype(bool)
    labelled = truth.column("labelled").to_numpy().astype(bool)
    got, p = read_alpha_probabilities(engine, model_name)
    if not len(got):
        return None
    order = np.argsort(ids)
    pos = order[np.searchsorted(ids, got, sorter=order)]
    keep = ~labelled[pos] & np.isfinite(p)
    return calibration(p[keep], high[pos][keep]) if keep.any() else None
