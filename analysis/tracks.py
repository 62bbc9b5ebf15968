"""Latent tracks (docs/science.md §9.5): where the high-α and low-α sequences run through latent space as [M/H]
changes, and how the latents move with [α/M] at fixed [M/H] — the mean latent position per bin with its
standard error (std / √n over stars; the latent posterior widths are not added, they are per-star noise that
the scatter between stars already contains)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analysis.bimodality import bin_masks
from analysis.rows import make_row

DEFAULT_TRACK_M_H_EDGES = tuple(np.round(np.arange(-1.0, 0.51, 0.1), 2))
FIXED_M_H = (-0.4, 0.2)                          # centre, half width
DEFAULT_ALPHA_EDGES = tuple(np.round(np.arange(0.0, 0.401, 0.05), 3))


@dataclass
class Track:
    """Mean latent position per bin. mean, se: (n_bins, d); bins with fewer than min_n stars are NaN."""
    name: str
    bin_var: str
    bin_lo: np.ndarray
    bin_hi: np.ndarray
    n: np.ndarray
    mean: np.ndarray
    se: np.ndarray

    def rows(self, sample: str) -> list[dict]:
        out = []
        for b in range(len(self.n)):
            for d in range(self.mean.shape[1]):
                half = 1.96 * self.se[b, d]
                out.append(make_row("alpha", sample, "latent_mean", f"{self.name}:z{d + 1}", self.mean[b, d],
                                    ci=(self.mean[b, d] - half, self.mean[b, d] + half), n=int(self.n[b]),
                                    bin_var=self.bin_var, bin_lo=self.bin_lo[b], bin_hi=self.bin_hi[b]))
        return out


def binned_track(name: str, latents: np.ndarray, values: np.ndarray, edges, bin_var: str, *,
                 select: np.ndarray | None = None, min_n: int = 5) -> Track:
    """Mean and standard error of the latents of the ``select``-ed stars in bins of ``values``."""
    latents = np.asarray(latents, np.float64)
    select = np.ones(len(latents), bool) if select is None else np.asarray(select, bool)
    bins = bin_masks(values, edges)
    d = latents.shape[1]
    mean = np.full((len(bins), d), np.nan)
    se = np.full((len(bins), d), np.nan)
    n = np.zeros(len(bins), np.int64)
    for b, (_, _, in_bin) in enumerate(bins):
        z = latents[in_bin & select]
        n[b] = len(z)
        if len(z) >= max(min_n, 2):
            mean[b] = z.mean(0)
            se[b] = z.std(0, ddof=1) / np.sqrt(len(z))
    return Track(name, bin_var, np.array([b[0] for b in bins]), np.array([b[1] for b in bins]), n, mean, se)


def sequence_tracks(latents: np.ndarray, m_h: np.ndarray, high: np.ndarray, *,
                    edges=DEFAULT_TRACK_M_H_EDGES, min_n: int = 5) -> list[Track]:
    """The high-α and low-α sequences through latent space, binned in [M/H]."""
    high = np.asarray(high, bool)
    return [binned_track("high_alpha", latents, m_h, edges, "m_h", select=high, min_n=min_n),
            binned_track("low_alpha", latents, m_h, edges, "m_h", select=~high, min_n=min_n)]


def fixed_metallicity_track(latents: np.ndarray, m_h: np.ndarray, alpha_m: np.ndarray, *,
                            m_h_window: tuple[float, float] = FIXED_M_H, edges=DEFAULT_ALPHA_EDGES,
                            min_n: int = 5) -> Track:
    """Latents against [α/M] for stars with |[M/H] − centre| < half width (default −0.4 ± 0.2)."""
    centre, half = m_h_window
    near = np.abs(np.asarray(m_h, np.float64) - centre) < half
    return binned_track(f"fixed_m_h{centre:+g}", latents, alpha_m, edges, "alpha_m", select=near, min_n=min_n)
