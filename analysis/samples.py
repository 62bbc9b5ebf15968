"""Star selections of the [α/M] analysis (docs/science.md §9.1) and the Patil et al. 2023 high/low-α split (§9.2).

Inputs are plain arrays: ``labels`` maps the lower-case APOGEE names of ``shared.xp.APOGEE_COLUMNS`` to (N,)
arrays; ``photometry`` (optional) maps ``phot_g_mean_mag`` and ``bp_rp`` (or ``phot_bp_mean_mag`` and
``phot_rp_mean_mag``) to (N,) arrays.

Documented behaviour when inputs are missing (each case is recorded in ``SampleSelection.notes``):
- photometry: taken from ``photometry`` when given; otherwise from the APOGEE columns ``gaia_g_mag``,
  ``gaia_bp_mag``, ``gaia_rp_mag`` (the EDR3 photometry APOGEE carries, identical to DR3's); when neither is
  there the two photometric cuts are *skipped*, not failed. A star whose G or BP−RP is NaN fails the cut.
- flags: one rule, shared with the database's stored flags (``shared.quality.flag_cuts``): a star whose
  ``starflag`` / ``aspcapflag`` is unknown (negative, e.g. the -1 ``db.labels.read_labels`` fills NULL with, or
  the column absent, as in the small real APOGEE subset) fails the flag cuts — unknown flags cannot certify it.
- the label-error columns (teff_err, logg_err, m_h_err) are the definition of the samples: missing → KeyError.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

# The cut values, the giant definition and the Patil et al. 2023 boundary are defined once, in
# shared.quality (the database flags use them too); this module adds the analysis' sample bookkeeping.
from shared import quality
from shared.quality import COOL_GIANT_TEFF, QUALITY_CUTS, patil_boundary

Arrays = Mapping[str, np.ndarray]

SPLIT_NONE, SPLIT_MG_FE, SPLIT_ALPHA_M = 0, 1, 2


def _column(labels: Arrays, name: str) -> np.ndarray:
    if name not in labels:
        raise KeyError(f"labels: required field {name!r} is missing (have {sorted(labels)})")
    return np.asarray(labels[name], dtype=np.float64)


def _length(labels: Arrays) -> int:
    lengths = {k: len(v) for k, v in labels.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"labels: fields have different lengths: {lengths}")
    if not lengths:
        raise ValueError("labels: no fields given")
    return next(iter(lengths.values()))


@dataclass
class SampleSelection:
    """Boolean masks by sample name, and what was skipped or assumed while building them."""
    masks: dict[str, np.ndarray]
    notes: list[str] = field(default_factory=list)


def photometry_arrays(labels: Arrays, photometry: Arrays | None) -> tuple[np.ndarray, np.ndarray] | None:
    """(G, BP−RP) from ``photometry`` or, failing that, the APOGEE gaia_* columns; None when neither exists."""
    if photometry is not None:
        g = np.asarray(photometry["phot_g_mean_mag"], dtype=np.float64)
        if "bp_rp" in photometry:
            bp_rp = np.asarray(photometry["bp_rp"], dtype=np.float64)
        else:
            bp_rp = (np.asarray(photometry["phot_bp_mean_mag"], dtype=np.float64)
                     - np.asarray(photometry["phot_rp_mean_mag"], dtype=np.float64))
        return g, bp_rp
    if all(k in labels for k in ("gaia_g_mag", "gaia_bp_mag", "gaia_rp_mag")):
        return (np.asarray(labels["gaia_g_mag"], np.float64),
                np.asarray(labels["gaia_bp_mag"], np.float64) - np.asarray(labels["gaia_rp_mag"], np.float64))
    return None


def _common_cuts(labels: Arrays, photometry: Arrays | None = None,
                notes: list[str] | None = None) -> np.ndarray:
    """The photometric and flag cuts shared by the pristine and good samples (shared.quality' cuts; only the
    choice of photometry and the notes are the analysis' own)."""
    n = _length(labels)
    notes = notes if notes is not None else []
    ok = quality.flag_cuts(labels)
    for name in ("starflag", "aspcapflag"):
        if name not in labels:
            notes.append(f"no {name} column: every star fails the {name.upper()} cut (unknown flags)")
    phot = photometry_arrays(labels, photometry)
    if phot is None:
        notes.append("no photometry (G, BP-RP) given or in labels: photometric cuts 6<G<17.5, 0<BP-RP<4 skipped")
        return ok
    g, bp_rp = phot
    if len(g) != n:
        raise ValueError(f"photometry: {len(g)} rows but labels have {n}")
    if photometry is None:
        notes.append("photometric cuts used the APOGEE gaia_g_mag/gaia_bp_mag/gaia_rp_mag columns")
    return ok & quality.photometric_cuts(g, bp_rp)


def _require(labels: Arrays, *names: str) -> None:
    for name in names:
        _column(labels, name)      # the analysis insists: a missing defining column is a KeyError naming it


def quality_mask(labels: Arrays, level: str) -> np.ndarray:
    """The label-precision part of the 'pristine' or 'good' definition (docs/science.md §9.1)."""
    _require(labels, "teff", "teff_err", "logg", "logg_err", "m_h", "m_h_err")
    return quality.quality_mask(labels, level)


def giant_mask(labels: Arrays) -> np.ndarray:
    """Giants: log g < 5.9 − 4·(Teff / 10⁴)."""
    _require(labels, "logg", "teff")
    return quality.giant_mask(labels)


def cool_giant_mask(labels: Arrays, teff_max: float = COOL_GIANT_TEFF) -> np.ndarray:
    """Giants cooler than ``teff_max`` (5000 K: the subset the papers' abstract makes its claim for)."""
    return giant_mask(labels) & (_column(labels, "teff") < teff_max)


def select_samples(labels: Arrays, photometry: Arrays | None = None) -> SampleSelection:
    """Masks 'pristine', 'good', 'pristine_giants', 'good_giants', 'pristine_cool_giants', 'good_cool_giants'."""
    notes: list[str] = []
    common = _common_cuts(labels, photometry, notes)
    giants, cool = giant_mask(labels), cool_giant_mask(labels)
    masks: dict[str, np.ndarray] = {}
    for level in QUALITY_CUTS:
        base = common & quality_mask(labels, level)
        masks[level] = base
        masks[f"{level}_giants"] = base & giants
        masks[f"{level}_cool_giants"] = base & cool
    return SampleSelection(masks, notes)


@dataclass
class AlphaSplit:
    """The high/low-α class per star.

    high: True for high-α (meaningful only where valid). valid: a class could be assigned.
    source: per star, SPLIT_MG_FE (1) when [Mg/Fe] vs [Fe/H] decided, SPLIT_ALPHA_M (2) when the fallback
    [α/M] vs [M/H] decided, SPLIT_NONE (0) when neither pair was finite.
    """
    high: np.ndarray
    valid: np.ndarray
    source: np.ndarray
    notes: list[str] = field(default_factory=list)

    @property
    def n_fallback(self) -> int:
        return int(np.sum(self.source == SPLIT_ALPHA_M))


def alpha_split(labels: Arrays, *, fallback: bool = True) -> AlphaSplit:
    """High/low-α by Patil et al. 2023 from MG_FE and FE_H.

    Fallback (per star, only when ``fallback``): where MG_FE or FE_H is missing or non-finite but ALPHA_M and
    M_H are finite, the *same* cubic is applied with x = [M/H] and y = [α/M]. ASPCAP's [α/M] averages several
    α elements and [M/H] differs from [Fe/H] by a few hundredths of a dex in the disc, so this boundary is an
    approximation: stars near it may swap class. On the 1612 real DR17 stars of reference/data/apogee the two
    splits agree for 91.5 % of stars, the fallback calling slightly more stars high-α (73.6 % vs 70.4 %).
    How many stars used it is in ``source`` and ``notes``.
    """
    n = _length(labels)
    def pair(a: str, b: str) -> tuple[np.ndarray, np.ndarray]:
        if a in labels and b in labels:
            return np.asarray(labels[a], np.float64), np.asarray(labels[b], np.float64)
        nan = np.full(n, np.nan)
        return nan, nan
    mg_fe, fe_h = pair("mg_fe", "fe_h")
    alpha_m, m_h = pair("alpha_m", "m_h")
    primary = np.isfinite(mg_fe) & np.isfinite(fe_h)
    secondary = ~primary & np.isfinite(alpha_m) & np.isfinite(m_h) if fallback else np.zeros(n, bool)
    source = np.where(primary, SPLIT_MG_FE, np.where(secondary, SPLIT_ALPHA_M, SPLIT_NONE)).astype(np.int8)
    y = np.where(primary, mg_fe, alpha_m)
    x = np.where(primary, fe_h, m_h)
    with np.errstate(invalid="ignore"):
        high = np.where(source > 0, y > patil_boundary(x), False)
    notes = []
    n_sec = int(secondary.sum())
    if n_sec:
        notes.append(f"{n_sec} of {n} stars lack MG_FE/FE_H: classified by [alpha/M] vs [M/H] with the same "
                     "Patil cubic (approximate boundary)")
    n_none = int(np.sum(source == SPLIT_NONE))
    if n_none:
        notes.append(f"{n_none} of {n} stars have no finite abundance pair: no alpha class, excluded")
    return AlphaSplit(high=high.astype(bool), valid=source > 0, source=source, notes=notes)
