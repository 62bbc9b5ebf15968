"""Per-star APOGEE quality flags and the high/low-α class (docs/science.md §9.1–9.2): the one implementation that
the database loader stores in apogee_labels and that analysis can reuse.

Input: a mapping of the lower-case names of ``shared.xp.APOGEE_COLUMNS`` to (N,) arrays. Missing values are
NaN (floats), negative (bitmasks) or an absent key; DR16's -9999 is read as missing too.

Conventions for missing inputs (per star, because a database row cannot say whether a file lacked a column):
- STARFLAG / ASPCAPFLAG unknown (NULL in the database, negative or NaN in arrays, or the column absent) → the
  star fails the flag cuts: the samples are defined by *clean* flags, and a star whose flags nobody measured
  cannot be certified clean (docs/science.md §9.1). So the 1612-star real subset, which has no flag columns,
  has no pristine or good stars; a full allStar always has the flags.
- Gaia G or BP−RP unknown (NaN) → the star fails the photometric cuts (6 < G < 17.5, 0 < BP−RP < 4), as in
  analysis/samples.py and the readers: the stored flags use the APOGEE row's GAIAEDR3 magnitudes; pass
  ``g``/``bp_rp`` (e.g. Gaia DR3 photometry) to recompute with other photometry.
- Teff, its error, log g, its error, [M/H] and its error unknown → the star is not pristine/good (these define
  the samples); log g or Teff unknown → not a giant.
- high-α: Patil et al. 2023 cubic in ([Fe/H], [Mg/Fe]); where those are unknown, the same cubic in
  ([M/H], [α/M]) — an approximation near the boundary; ``high_alpha_known`` is False when neither pair exists.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

# The APOGEE DR17 bitmask bits this project names (SDSS DR17 APOGEE bitmasks), for the cuts here and the simulator.
ASPCAP_VMICRO_WARN_BIT = 2
ASPCAP_M_H_WARN_BIT = 3
ASPCAP_STAR_BAD_BIT = 23
ASPCAP_SAMPLE_BITS = (1 << ASPCAP_VMICRO_WARN_BIT) | (1 << ASPCAP_M_H_WARN_BIT)   # must be clear
STARFLAG_BRIGHT_NEIGHBOR_BIT = 2
STARFLAG_SUSPECT_BROAD_LINES_BIT = 17
EXTRATARG_COMMISSIONING_BIT = 1
EXTRATARG_DUPLICATE_BIT = 4
COOL_GIANT_TEFF = 5000.0                                            # K
QUALITY_CUTS = {"pristine": (100.0, 0.1, 0.05), "good": (20.0, 0.4, 0.2)}   # Teff/σ >, σ_logg <, σ_[M/H] <
G_RANGE = (6.0, 17.5)
BP_RP_RANGE = (0.0, 4.0)
PATIL_COEFFS = (0.1754, 0.1119, -0.1253, 0.1353)                    # c3, c2, c1, c0 with x = [Fe/H]
FLAG_NAMES = ("pristine", "good", "giant", "cool_giant", "high_alpha")
# The analysis samples (analysis.samples.select_samples): a quality level, alone or restricted to (cool) giants.
SAMPLE_NAMES = tuple(f"{level}{subset}" for subset in ("", "_giants", "_cool_giants") for level in QUALITY_CUTS)


def _length(labels: Mapping[str, np.ndarray]) -> int:
    lengths = {len(np.atleast_1d(v)) for v in labels.values()}
    if len(lengths) != 1:
        raise ValueError(f"labels: fields have different lengths {sorted(lengths)}")
    return lengths.pop()


def _float(labels: Mapping[str, np.ndarray], name: str, n: int) -> np.ndarray:
    if name not in labels:
        return np.full(n, np.nan)
    values = np.asarray(labels[name], dtype=np.float64).copy()
    values[values <= -9999.0] = np.nan
    return values


def _bitmask(labels: Mapping[str, np.ndarray], name: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(values as int64 with 0 where unknown, known mask)."""
    if name not in labels:
        return np.zeros(n, np.int64), np.zeros(n, bool)
    raw = np.asarray(labels[name], dtype=np.float64)
    known = np.isfinite(raw) & (raw >= 0)
    return np.where(known, raw, 0).astype(np.int64), known


def patil_boundary(x: np.ndarray) -> np.ndarray:
    """[Mg/Fe] of the Patil et al. 2023 high/low-α boundary at [Fe/H] = x."""
    c3, c2, c1, c0 = PATIL_COEFFS
    x = np.asarray(x, dtype=np.float64)
    return ((c3 * x + c2) * x + c1) * x + c0


def flag_cuts(labels: Mapping[str, np.ndarray]) -> np.ndarray:
    """STARFLAG = 0 and ASPCAPFLAG bits 2, 3 clear — both flags *known*. An unknown flag fails the star: the
    cut asks for evidence of clean spectra, and a missing flag is no evidence. The ingest-time SQL flags
    (db.labels) and the analysis samples (analysis.samples) both use this one rule."""
    n = _length(labels)
    starflag, star_known = _bitmask(labels, "starflag", n)
    aspcap, aspcap_known = _bitmask(labels, "aspcapflag", n)
    return star_known & (starflag == 0) & aspcap_known & ((aspcap & ASPCAP_SAMPLE_BITS) == 0)


def photometric_cuts(g: np.ndarray, bp_rp: np.ndarray) -> np.ndarray:
    """6 < G < 17.5 and 0 < BP−RP < 4 (NaN fails)."""
    g, bp_rp = np.asarray(g, np.float64), np.asarray(bp_rp, np.float64)
    with np.errstate(invalid="ignore"):
        return (g > G_RANGE[0]) & (g < G_RANGE[1]) & (bp_rp > BP_RP_RANGE[0]) & (bp_rp < BP_RP_RANGE[1])


def common_cuts(labels: Mapping[str, np.ndarray], g: np.ndarray | None = None,
                bp_rp: np.ndarray | None = None) -> np.ndarray:
    """Photometric and flag cuts shared by the pristine and good samples. ``g``/``bp_rp`` default to the
    labels' gaia_g_mag and gaia_bp_mag − gaia_rp_mag."""
    n = _length(labels)
    g = _float(labels, "gaia_g_mag", n) if g is None else g
    bp_rp = (_float(labels, "gaia_bp_mag", n) - _float(labels, "gaia_rp_mag", n)) if bp_rp is None else bp_rp
    return photometric_cuts(g, bp_rp) & flag_cuts(labels)


def quality_mask(labels: Mapping[str, np.ndarray], level: str) -> np.ndarray:
    """The label-precision part of 'pristine' or 'good' (NaN anywhere → False)."""
    n = _length(labels)
    min_teff_snr, max_logg_err, max_m_h_err = QUALITY_CUTS[level]
    teff, teff_err = _float(labels, "teff", n), _float(labels, "teff_err", n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return ((teff / teff_err > min_teff_snr) & (_float(labels, "logg_err", n) < max_logg_err)
                & (_float(labels, "m_h_err", n) < max_m_h_err)
                & np.isfinite(_float(labels, "logg", n)) & np.isfinite(_float(labels, "m_h", n)))


def giant_mask(labels: Mapping[str, np.ndarray]) -> np.ndarray:
    """Giants: log g < 5.9 − 4·(Teff/10⁴)."""
    n = _length(labels)
    with np.errstate(invalid="ignore"):
        return _float(labels, "logg", n) < 5.9 - 4.0 * _float(labels, "teff", n) / 1e4


def alpha_class(labels: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(high_alpha, known): Patil et al. 2023 from [Mg/Fe] vs [Fe/H], falling back to [α/M] vs [M/H]."""
    n = _length(labels)
    mg_fe, fe_h = _float(labels, "mg_fe", n), _float(labels, "fe_h", n)
    alpha_m, m_h = _float(labels, "alpha_m", n), _float(labels, "m_h", n)
    primary = np.isfinite(mg_fe) & np.isfinite(fe_h)
    fallback = ~primary & np.isfinite(alpha_m) & np.isfinite(m_h)
    x, y = np.where(primary, fe_h, m_h), np.where(primary, mg_fe, alpha_m)
    known = primary | fallback
    with np.errstate(invalid="ignore"):
        high = known & (y > patil_boundary(x))
    return high, known


def quality_flags(labels: Mapping[str, np.ndarray], g: np.ndarray | None = None,
                  bp_rp: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per-star flags: pristine, good, giant, cool_giant (bool), high_alpha (bool) and high_alpha_known.

    giant / cool_giant are the log g / Teff cuts alone: combine them with pristine or good (``pristine AND
    cool_giant`` is the abstract's sample)."""
    n = _length(labels)
    common = common_cuts(labels, g, bp_rp)
    giant = giant_mask(labels)
    with np.errstate(invalid="ignore"):
        cool = giant & (_float(labels, "teff", n) < COOL_GIANT_TEFF)
    high, known = alpha_class(labels)
    return {"pristine": common & quality_mask(labels, "pristine"), "good": common & quality_mask(labels, "good"),
            "giant": giant, "cool_giant": cool, "high_alpha": high, "high_alpha_known": known}


def primary_mask(gaia_source_id: np.ndarray, extratarg: np.ndarray, snr: np.ndarray,
                 order_key: np.ndarray | None = None) -> np.ndarray:
    """The cross-match primary per Gaia source (docs/data-formats.md §3), in numpy: among rows with
    gaia_source_id > 0 and EXTRATARG bit 4 clear (negative/NaN extratarg = unknown = clear), the highest SNR
    (unknown SNR last); ties go to the smallest ``order_key`` (default: row order). The database computes the
    same in SQL (db.labels); this version serves arrays not yet stored and tests."""
    gid = np.asarray(gaia_source_id, np.int64)
    n = len(gid)
    et = np.asarray(extratarg, np.float64)
    et_known = np.isfinite(et) & (et >= 0)
    dup = et_known & ((np.where(et_known, et, 0).astype(np.int64) >> EXTRATARG_DUPLICATE_BIT) & 1).astype(bool)
    cand = (gid > 0) & ~dup
    snr = np.asarray(snr, np.float64)
    snr_key = np.where(np.isfinite(snr), -snr, np.inf)
    tie = np.arange(n) if order_key is None else np.asarray(order_key)
    idx = np.flatnonzero(cand)
    order = idx[np.lexsort((tie[idx], snr_key[idx], gid[idx]))]
    first = np.ones(len(order), bool)
    first[1:] = gid[order][1:] != gid[order][:-1]
    out = np.zeros(n, bool)
    out[order[first]] = True
    return out
