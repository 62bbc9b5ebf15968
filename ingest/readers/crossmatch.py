"""APOGEE duplicate handling for the Gaia cross-match and the label-quality selections.

Duplicates (data-formats.md §3): a row is the *primary* for its Gaia source when its EXTRATARG bit 4
(DUPLICATE) is clear, its GAIAEDR3_SOURCE_ID is > 0, and it has the highest SNR among the remaining rows of
that source (ties: the first row in file order). Non-primary rows stay in the labels table; they are only
left out of the cross-match.

Selections (science.md §9): "pristine", "good", "giant" and "cool_giant" (giant and Teff < 5000 K).
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

EXTRATARG_DUPLICATE = 1 << 4
ASPCAP_VMICRO_WARN = 1 << 2
ASPCAP_M_H_WARN = 1 << 3
ASPCAP_STAR_BAD = 1 << 23


def primary_mask(gaia_source_id: np.ndarray, extratarg: np.ndarray,
                 snr: np.ndarray | None = None) -> np.ndarray:
    """Bool mask of the rows to cross-match with Gaia (at most one per positive source id)."""
    sid = np.asarray(gaia_source_id, np.int64)
    n = sid.shape[0]
    extratarg = np.asarray(extratarg, np.int64)
    snr = np.full(n, np.nan) if snr is None else np.asarray(snr, np.float64)
    cand = np.flatnonzero((sid > 0) & ((extratarg & EXTRATARG_DUPLICATE) == 0))
    mask = np.zeros(n, bool)
    if cand.size == 0:
        return mask
    s = np.where(np.isnan(snr[cand]), -np.inf, snr[cand])
    order = np.lexsort((-s, sid[cand]))       # by source id, then SNR descending; stable for ties
    sorted_sid = sid[cand][order]
    first = np.ones(order.size, bool)
    first[1:] = sorted_sid[1:] != sorted_sid[:-1]
    mask[cand[order[first]]] = True
    return mask


def primary_mask_from_labels(labels: Mapping[str, np.ndarray]) -> np.ndarray:
    """primary_mask on a read_apogee chunk (or the concatenation of chunks: duplicates can span chunks)."""
    return primary_mask(labels["gaia_source_id"], labels["extratarg"], labels.get("snr"))


def quality_flags(labels: Mapping[str, np.ndarray], bp_rp: np.ndarray | None = None,
                  g: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Boolean selections of science.md §9.

    Photometry: ``bp_rp`` and ``g`` default to the labels' GAIAEDR3 magnitudes (gaia_bp_mag − gaia_rp_mag,
    gaia_g_mag); pass Gaia DR3 photometry explicitly when you have it. NaN anywhere in a cut fails it, so a
    star without photometry is neither pristine nor good. Missing flag columns were read as 0 (= no flag
    set), so files without ASPCAPFLAG/STARFLAG pass those cuts.
    Returns pristine, good, giant, cool_giant, the shared photometric/flag cut as ``clean``, and
    ``star_bad`` (ASPCAPFLAG bit 23), which §9 does not include in the cuts: callers may add it.
    """
    f = {k: np.asarray(labels[k], np.float64) for k in ("teff", "teff_err", "logg", "logg_err", "m_h_err")}
    if bp_rp is None:
        bp_rp = np.asarray(labels["gaia_bp_mag"], np.float64) - np.asarray(labels["gaia_rp_mag"], np.float64)
    if g is None:
        g = np.asarray(labels["gaia_g_mag"], np.float64)
    bp_rp = np.asarray(bp_rp, np.float64)
    g = np.asarray(g, np.float64)
    aspcap = np.asarray(labels["aspcapflag"], np.int64)
    starflag = np.asarray(labels["starflag"], np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        snr_teff = f["teff"] / f["teff_err"]
        clean = ((bp_rp > 0) & (bp_rp < 4) & (g > 6) & (g < 17.5) & (starflag == 0)
                 & ((aspcap & (ASPCAP_VMICRO_WARN | ASPCAP_M_H_WARN)) == 0))
        pristine = clean & (snr_teff > 100) & (f["logg_err"] < 0.1) & (f["m_h_err"] < 0.05)
        good = clean & (snr_teff > 20) & (f["logg_err"] < 0.4) & (f["m_h_err"] < 0.2)
        giant = f["logg"] < 5.9 - 4.0 * (f["teff"] / 1e4)
        cool_giant = giant & (f["teff"] < 5000.0)
    star_bad = (aspcap & ASPCAP_STAR_BAD) != 0
    return {"clean": clean, "pristine": pristine, "good": good, "giant": giant, "cool_giant": cool_giant,
            "star_bad": star_bad}
