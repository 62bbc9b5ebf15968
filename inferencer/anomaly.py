"""The anomaly score's reference population for an inference job (the score itself: shared/anomaly.py).

The calibration is fitted once, when the job plans its shards, and stored in the job's params: every shard
of the job — in-process or on any worker, first run or redelivered — scores with the same numbers, so rows
written twice are identical. The reference is the model's held-out stars (validation and test splits): their
χ² shows how well the model fits stars it never trained on, which training stars (fitted, so χ² biased low)
would not. A model without recorded held-out stars in this database (an imported one) falls back to an even
sample of the job's selection.
"""
from __future__ import annotations

import numpy as np
from sqlalchemy.engine import Engine

from db.spectra import read_spectra
from shared.anomaly import AnomalyCalibration
from shared.inference import infer
from shared.preprocessing import normalise_by_flux

#: At most this many reference stars (an even pick by source_id): the median and MAD are then known to
#: ~1 % of the width, in well under a second of model time.
REFERENCE_MAX = 20_000
#: Fewer held-out stars than this in the database: use the selection instead.
REFERENCE_MIN = 200
HELD_OUT = ("validation", "test")


def even_pick(ids: np.ndarray, n_max: int) -> np.ndarray:
    """At most n_max of the sorted ids, evenly spaced (deterministic)."""
    ids = np.unique(np.asarray(ids, dtype=np.int64))
    if ids.size <= n_max:
        return ids
    return ids[np.linspace(0, ids.size - 1, n_max).round().astype(np.int64)]


def reference_outputs(engine: Engine, art, model, ids: np.ndarray) -> tuple[np.ndarray, ...]:
    """(x, x̂, e, ŝ) in standardised units for the stored stars among ``ids``: what the calibration needs."""
    data = read_spectra(engine, ids)
    x, e = normalise_by_flux(data["coefficients"], data["errors"], data["phot_g_mean_flux"])
    xs, es = art.normalisation.apply(x, e)
    parts = list(infer(model, xs, es)) if len(xs) else []

    def cat(k: str) -> np.ndarray:
        return np.concatenate([p[k] for p in parts]) if parts else np.zeros((0, xs.shape[1]))

    return xs, cat("xhat"), es, cat("scatter")


def fit_calibration(engine: Engine, art, model, splits: dict[str, np.ndarray],
                    selection_ids: np.ndarray) -> AnomalyCalibration:
    """The job's calibration: on the model's held-out stars, else on an even sample of the selection."""
    held = [splits[k] for k in HELD_OUT if k in splits]
    if held:
        out = reference_outputs(engine, art, model, even_pick(np.concatenate(held), REFERENCE_MAX))
        if np.isfinite(out[0]).all(1).sum() >= REFERENCE_MIN:
            return AnomalyCalibration.fit(*out, "held-out stars of the model (validation and test splits)")
    out = reference_outputs(engine, art, model, even_pick(selection_ids, REFERENCE_MAX))
    return AnomalyCalibration.fit(*out, "stars of an even sample of the inferred selection (none of the model's "
                                        "validation or test stars in this database)")


def summary(params: dict) -> dict:
    """The job result's line about the score."""
    cal = params.get("anomaly_calibration")
    if not cal:
        return {}
    return {"anomaly_reference": f"{cal['n_reference']} {cal['reference']}"}
