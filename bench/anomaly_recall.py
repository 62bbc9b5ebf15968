"""Recall of injected anomalies by the anomaly score (shared/anomaly.py), where the truth is known.

A survey with ``anomaly_fraction`` of anomalous stars (simulator/anomalies.py) is simulated, an sVAE is
trained on all of it without labels or truth (as on real data, anomalies included), and every star is scored
as inference scores it: χ² with the learned scatter capped at its held-out median, calibrated on the held-out
split. The baseline ranks by χ² *without* the learned scatter (same diagonal errors, same transform); a third
ranking uses each star's own scatter uncapped, to show what the cap is for. Recall of a kind = the share of that
kind's injected stars found among the top ``f`` of all stars by score. Used by ``python -m bench anomaly``
and by the fast test in tests/unit/test_anomaly_score.py.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

TOP = (0.01, 0.05)


@dataclass
class RecallResult:
    n_stars: int
    n_scored: int
    seed: int
    epochs: int
    counts: dict[str, int]                                   # injected stars per kind (scored ones)
    recall: dict[str, dict[str, dict[float, float]]]        # method → kind ('any' too) → top fraction → recall
    normal_p_below: dict[float, float]                       # share of normal stars with p < threshold
    seconds_train: float
    extra: dict = field(default_factory=dict)


def measure(n_stars: int, seed: int, *, anomaly_fraction: float = 0.01, epochs: int = 60, batch_size: int = 256,
            lr: float = 2e-3, g_max: float = 16.0, top: tuple[float, ...] = TOP) -> RecallResult:
    from shared.anomaly import AnomalyCalibration, band_chi2, calibrated, recall_at, robust_centre_width
    from shared.inference import infer_all
    from shared.model import VAEConfig
    from shared.preprocessing import normalise_by_flux
    from shared.training import TrainConfig, fit_scatter_vae
    from simulator import generate
    from simulator.anomalies import KINDS

    batch, truth, _, phot = generate(n_stars, seed, mag_range=(9.0, g_max), with_correlations=False,
                                     anomaly_fraction=anomaly_fraction)
    x, e = normalise_by_flux(batch.coefficients110(), batch.errors110(), phot["phot_g_mean_flux"])
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, t0=epochs, seed=seed, threads=1, compile=False,
                      checkpoint_every=0)
    t0 = time.perf_counter()
    res = fit_scatter_vae(x, e, VAEConfig(), cfg)
    seconds = time.perf_counter() - t0

    ok = np.isfinite(x).all(1) & np.isfinite(e).all(1)
    xs, es = res.normalisation.apply(x[ok], e[ok])
    out = infer_all(res.model, xs, es)
    xhat, scatter = out["xhat"], out["scatter"]
    rows = np.flatnonzero(ok)
    held = np.isin(rows, np.concatenate([res.split["validation"], res.split["test"]]))
    cal = AnomalyCalibration.fit(xs[held], xhat[held], es[held], scatter[held], "held-out split")
    cols = cal.columns(xs, xhat, es, scatter)

    def same_calibration(chi2: dict) -> np.ndarray:         # the other rankings, calibrated the same way
        centre, width, _ = robust_centre_width({k: v[held] for k, v in chi2.items()})
        return calibrated(chi2, centre, width)["all"]

    methods = {"score": cols["anomaly_score"],
               "uncapped scatter": same_calibration(band_chi2(xs, xhat, es, scatter)),
               "chi2 without scatter": same_calibration(band_chi2(xs, xhat, es))}
    kind = np.asarray(truth["anomaly"])[ok]
    truth_sets = {**{k: kind == k for k in KINDS}, "any": kind != ""}
    recall = {m: {k: {f: recall_at(s, hit, f) for f in top} for k, hit in truth_sets.items()}
              for m, s in methods.items()}
    normal = kind == ""
    p = cols["anomaly_p"][normal]
    return RecallResult(n_stars=n_stars, n_scored=int(ok.sum()), seed=seed, epochs=epochs,
                        counts={k: int((kind == k).sum()) for k in KINDS}, recall=recall,
                        normal_p_below={t: float(np.mean(p < t)) for t in (0.05, 0.01, 0.001)},
                        seconds_train=seconds,
                        extra={"strength": np.asarray(truth["anomaly_strength"])[ok], "kind": kind,
                               "score": cols["anomaly_score"]})


def table(results: list[RecallResult], top: tuple[float, ...] = TOP) -> str:
    """Mean recall over the runs, per kind and method, for people."""
    from simulator.anomalies import KINDS
    methods = list(results[0].recall)
    head = "kind (injected per run)".ljust(30) + "".join(f"{m} top {f:.0%}".rjust(28) for m in methods for f in top)
    lines = [head]
    for k in (*KINDS, "any"):
        n = np.mean([sum(r.counts.values()) if k == "any" else r.counts[k] for r in results])
        cells = "".join(f"{np.mean([r.recall[m][k][f] for r in results]):.2f}".rjust(28) for m in methods for f in top)
        lines.append(f"{k} ({n:.0f})".ljust(30) + cells)
    return "\n".join(lines)
