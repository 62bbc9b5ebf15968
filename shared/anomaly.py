"""The anomaly score: how badly a model explains a star's spectrum, given its errors and the learned scatter.

Per band b, the chi-square of the model's own likelihood (docs/science.md §4: diagonal errors plus the
learned scatter, at z = μ), summed over the band's finite coefficients ν_b (55 for a present band):

    χ²_b = Σ_j (x̂_j − x_j)² / (e_j² + min(ŝ_j, ŝ_ref,j)²)

Diagonal, not the full covariance, on purpose: it is the quantity the scatter was fitted against, and it
exists for every star, including those ingested without correlations, so one definition ranks them all.
The scatter is capped at ŝ_ref, the median learned scatter of the reference stars per coefficient: an
unusual spectrum tends to be encoded where the model predicts a large scatter (on the simulator the injected
anomalies got 3–5× the normal stars' median), which would explain the anomaly away. The cap keeps what the
scatter is for — the model's typical misfit, so that bright stars with tiny errors do not dominate — and
takes away the star's own excuse (measured: `python -m bench anomaly`, README "Anomalies").

The Wilson–Hilferty transform t = ((χ²/ν)^⅓ − (1 − 2/(9ν))) / √(2/(9ν)) is ~N(0, 1) for a χ²_ν variable,
which puts a band (ν = 55) and both bands together (ν = 110) on one scale. The scatter is never exactly
calibrated, so t is re-centred and re-scaled on a reference population — the model's held-out stars — by
their median and 1.4826·MAD (robust: the reference's own anomalies do not move them):

    score = (t − median_ref) / width_ref,     p = P(N(0,1) ≥ score)

``score`` orders stars (no underflow, unlike p); ``p`` reads as the fraction of the model's population
expected to fit at least this badly. "Combined" uses both bands when both are present, else the present one.
"""
from __future__ import annotations

import math
import warnings
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
    joint = wilson_hilferty(np.nansum([chi2["chi2_diag_bp"], chi2["chi2_diag_rp"]], axis=0),
                            chi2["dof_bp"] + chi2["dof_rp"])
    t["all"] = np.where(both, joint, np.where(chi2["dof_bp"] > 0, t["bp"], t["rp"]))
    return t


def tail_probability(score: np.ndarray) -> np.ndarray:
    """P(N(0, 1) ≥ score), accurate far into the tail (erfc, not 1 − Φ)."""
    return 0.5 * erfc(np.asarray(score, dtype=np.float64) / math.sqrt(2.0))     # NaN stays NaN


def robust_centre_width(chi2: dict[str, np.ndarray]) -> tuple[dict[str, float], dict[str, float], int]:
    """Median and 1.4826·MAD of the Wilson–Hilferty values per key of KEYS ('all' over two-band stars), and
    how many stars had a combined value. A key with fewer than 10 finite values (a band missing everywhere)
    keeps the χ² distribution's own centre 0 and width 1."""
    t = transformed(chi2)
    both = (chi2["dof_bp"] > 0) & (chi2["dof_rp"] > 0)
    centre, width = {}, {}
    for k in KEYS:
        v = t[k][np.isfinite(t[k]) & (both if k == "all" else True)]
        med = float(np.median(v)) if v.size >= 10 else 0.0
        mad = MAD_TO_SD * float(np.median(np.abs(v - med))) if v.size >= 10 else 1.0
        centre[k], width[k] = med, (mad if mad > 0 else 1.0)
    return centre, width, int(np.isfinite(t["all"]).sum())


def calibrated(chi2: dict[str, np.ndarray], centre: dict[str, float], width: dict[str, float]) -> dict:
    """{'all', 'bp', 'rp'} scores; a star with one band gets that band's own score as 'all'."""
    t = transformed(chi2)
    s = {k: (t[k] - centre[k]) / width[k] for k in KEYS}
    both = (chi2["dof_bp"] > 0) & (chi2["dof_rp"] > 0)
    s["all"] = np.where(both, s["all"], np.where(chi2["dof_bp"] > 0, s["bp"], s["rp"]))
    return s


@dataclass(frozen=True)
class AnomalyCalibration:
    """What a job scores with: the scatter cap per coefficient and the centre and width per key of KEYS,
    all from the reference stars."""
    scatter_cap: tuple[float, ...]      # 110: median learned scatter of the reference stars (standardised units)
    centre: dict[str, float]
    width: dict[str, float]
    n_reference: int
    reference: str          # which stars, for people: e.g. "held-out stars of the model"

    @classmethod
    def fit(cls, x, xhat, x_err, scatter, reference: str) -> "AnomalyCalibration":
        """From the reference stars' standardised inputs and model outputs (N, 110) at z = μ."""
        seen = np.isfinite(np.asarray(x, dtype=np.float64)) & np.isfinite(np.asarray(x_err, dtype=np.float64))
        scatter = np.where(seen, np.asarray(scatter, dtype=np.float64), np.nan)     # only where observed
        with warnings.catch_warnings():        # a coefficient NaN for every star (a band missing everywhere)
            warnings.simplefilter("ignore", RuntimeWarning)
            cap = np.nanmedian(scatter, axis=0) if len(scatter) else np.full(scatter.shape[1], np.nan)
        cap = np.where(np.isfinite(cap), cap, np.inf)            # no cap where nothing is known
        chi2 = band_chi2(x, xhat, x_err, np.minimum(scatter, cap))
        centre, width, n = robust_centre_width(chi2)
        return cls(scatter_cap=tuple(float(c) for c in cap), centre=centre, width=width, n_reference=n,
                   reference=reference)

    def chi2(self, x, xhat, x_err, scatter) -> dict[str, np.ndarray]:
        """``band_chi2`` with each star's learned scatter capped at the reference median: the scatter cannot
        explain away an anomaly (an unusual spectrum tends to land where the model predicts a large scatter)."""
        return band_chi2(x, xhat, x_err, np.minimum(np.asarray(scatter, dtype=np.float64),
                                                    np.asarray(self.scatter_cap)))

    def scores(self, x, xhat, x_err, scatter) -> dict[str, np.ndarray]:
        """{'all': …, 'bp': …, 'rp': …} calibrated scores (NaN where a band is missing)."""
        return calibrated(self.chi2(x, xhat, x_err, scatter), self.centre, self.width)

    def columns(self, x, xhat, x_err, scatter) -> dict[str, np.ndarray]:
        """The inference_results columns (db/schema.py): anomaly_score[_bp|_rp] and anomaly_p[_bp|_rp]."""
        out = {}
        for k, s in self.scores(x, xhat, x_err, scatter).items():
            suffix = "" if k == "all" else f"_{k}"
            out[f"anomaly_score{suffix}"] = s
            out[f"anomaly_p{suffix}"] = tail_probability(s)
        return out

    def to_dict(self) -> dict:
        d = asdict(self)
        d["scatter_cap"] = [c if math.isfinite(c) else None for c in self.scatter_cap]     # JSON has no inf
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "AnomalyCalibration":
        return cls(scatter_cap=tuple(math.inf if c is None else float(c) for c in d["scatter_cap"]),
                   centre={k: float(d["centre"][k]) for k in KEYS}, width={k: float(d["width"][k]) for k in KEYS},
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
