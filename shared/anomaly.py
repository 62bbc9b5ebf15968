"""The anomaly score: how badly a model explains a star's spectrum, given its errors and the learned scatter.

Per band b, the chi-square of the model's own likelihood (docs/science.md §4: diagonal errors plus the
learned scatter, at z = μ), summed over the band's finite coefficients ν_b (55 for a present band):

    χ²_b = Σ_j (x̂_j − x_j)² / (e_j² + ŝ_j²)

Diagonal, not the full covariance, on purpose: it is the quantity the scatter was fitted against, and it
exists for every star, including those ingested without correlations, so one definition ranks them all.

The Wilson–Hilferty transform t = ((χ²/ν)^⅓ − (1 − 2/(9ν))) / √(2/(9ν)) is ~N(0, 1) for a χ²_ν variable,
which puts a band (ν = 55) and both bands together (ν = 110) on one scale. A learned scatter is never exactly
calibrated, so t is re-centred and re-scaled on a reference population — the model's held-out stars — by
their median and 1.4826·MAD (robust: the reference's own anomalies do not move them):

    score = (t − median_ref) / width_ref,     p = P(N(0,1) ≥ score)

``score`` orders stars (no underflow, unlike p); ``p`` reads as the fraction of the model's population
expected to fit at least this badly. "Combined" uses both bands when both are present, else the present one.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy.special import erfc

from shared.metrics import BAND_SLICES, zscores

#: The score keys: per band, and combined over the bands present.
KEYS = ("bp", "rp", "all")
#: 1.4826·MAD estimates a normal distribution's standard deviation.
MAD_TO_SD = 1.4826


def band_chi2(x, xhat, x_err, scatter=None) -> dict[str, np.ndarray]:
    """χ²_b and ν_b per band (keys 'chi2_diag_bp', 'dof_bp', …) over finite coefficients; with ``scatter`` the
    variance is e² + ŝ². Torch tensors are reduced on their device; the results are float64 numpy."""
    z = zscores(x, xhat, x_err, scatter)
    if not isinstance(z, torch.Tensor):
        z = torch.as_tensor(z)
    out: dict[str, np.ndarray] = {}
    for band, sl in BAND_SLICES.items():
        zb = z[:, sl].double()
        ok = torch.isfinite(zb)
        chi2 = torch.where(ok, zb, torch.zeros_like(zb)).square().sum(-1)
        dof = ok.sum(-1)
        chi2 = torch.where(dof > 0, chi2, torch.full_like(chi2, float("nan")))
        out[f"chi2_diag_{band}"], out[f"dof_{band}"] = chi2.cpu().numpy(), dof.cpu().numpy().astype(np.int64)
    return out


def wilson_hilferty(chi2: np.ndarray, dof: np.ndarray) -> np.ndarray:
    """~N(0, 1) for χ² with ``dof`` degrees of freedom; NaN where dof is 0 or χ² is not finite."""
    chi2 = np.asarray(chi2, dtype=np.float64)
    dof = np.asarray(dof, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        a = 2.0 / (9.0 * dof)
        t = (np.cbrt(chi2 / dof) - (1.0 - a)) / np.sqrt(a)
    return np.where(dof > 0, t, np.nan)


def transformed(chi2: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Wilson–Hilferty values per key of KEYS from ``band_chi2`` output ('all': both bands when both are
    present, else the present band)."""
    t = {b: wilson_hilferty(chi2[f"chi2_diag_{b}"], chi2[f"dof_{b}"]) for b in ("bp", "rp")}
    both = (chi2["dof_bp"] > 0) & (chi2["dof_rp"] > 0)
    joint = wilson_hilferty(np.nansum([chi2["chi2_diag_bp"], chi2["chi2_diag_rp"]], axis=0), chi2["dof_bp"] + chi2["dof_rp"])
    t["all"] = np.where(both, joint, np.where(chi2["dof_bp"] > 0, t["bp"], t["rp"]))
    return t


def tail_probability(score: np.ndarray) -> np.ndarray:
    """P(N(0, 1) ≥ score), accurate far into the tail (erfc, not 1 − Φ)."""
    return 0.5 * erfc(np.asarray(score, dtype=np.float64) / math.sqrt(2.0))     # NaN stays NaN


@dataclass(frozen=True)
class AnomalyCalibration:
    """Centre and width of the Wilson–Hilferty values on the reference stars, per key of KEYS."""
    centre: dict[str, float]
    width: dict[str, float]
    n_reference: int
    reference: str          # which stars, for people: e.g. "held-out stars of the model"

    @classmethod
    def fit(cls, chi2: dict[str, np.ndarray], reference: str) -> "AnomalyCalibration":
        """From ``band_chi2`` output on the reference stars. A key with fewer than 10 finite values (e.g. a
        band missing everywhere) keeps the χ² distribution's own centre 0 and width 1."""
        t = transformed(chi2)
        both = (chi2["dof_bp"] > 0) & (chi2["dof_rp"] > 0)
        centre, width = {}, {}
        for k in KEYS:
            v = t[k][np.isfinite(t[k]) & (both if k == "all" else True)]
            med = float(np.median(v)) if v.size >= 10 else 0.0
            mad = MAD_TO_SD * float(np.median(np.abs(v - med))) if v.size >= 10 else 1.0
            centre[k], width[k] = med, (mad if mad > 0 else 1.0)
        n = int(np.isfinite(t["all"]).sum())
        return cls(centre=centre, width=width, n_reference=n, reference=reference)

    def scores(self, chi2: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """{'all': …, 'bp': …, 'rp': …} calibrated scores (NaN where a band is missing)."""
        t = transformed(chi2)
        s = {k: (t[k] - self.centre[k]) / self.width[k] for k in KEYS}
        # one band only: that band's own calibration (the combined one is fitted on two-band stars)
        both = (chi2["dof_bp"] > 0) & (chi2["dof_rp"] > 0)
        s["all"] = np.where(both, s["all"], np.where(chi2["dof_bp"] > 0, s["bp"], s["rp"]))
        return s

    def columns(self, chi2: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The inference_results columns (db/schema.py): anomaly_score[_bp|_rp] and anomaly_p[_bp|_rp]."""
        out = {}
        for k, s in self.scores(chi2).items():
            suffix = "" if k == "all" else f"_{k}"
            out[f"anomaly_score{suffix}"] = s
            out[f"anomaly_p{suffix}"] = tail_probability(s)
        return out

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "AnomalyCalibration":
        return cls(centre={k: float(d["centre"][k]) for k in KEYS}, width={k: float(d["width"][k]) for k in KEYS},
                   n_reference=int(d["n_reference"]), reference=str(d["reference"]))


def recall_at(score: np.ndarray, is_anomaly: np.ndarray, top_fraction: float) -> float:
    """The fraction of true anomalies among the ``top_fraction`` highest scores (NaN scores rank last)."""
    score = np.nan_to_num(np.asarray(score, dtype=np.float64), nan=-np.inf)
    is_anomaly = np.asarray(is_anomaly, dtype=bool)
    if not is_anomaly.any():
        return float("nan")
    k = max(1, int(round(top_fraction * score.size)))
    top = np.argsort(-score, kind="stable")[:k]
    return float(is_anomaly[top].sum() / is_anomaly.sum())
