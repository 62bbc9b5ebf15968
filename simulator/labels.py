"""APOGEE DR17-like labels for a fraction of the simulated stars (in-memory keys of shared.xp.APOGEE_COLUMNS).

Realism that readers and cross-match code must cope with (docs/data-formats.md §3):
- label errors that grow with falling S/N (TEFF_ERR ~10–100 K, [M/H] ~0.01–0.05 dex), the label = truth +
  error draw;
- ~5 % duplicate rows of the same star (EXTRATARG bit 4 DUPLICATE, lower SNR, another field/telescope);
- ~2 % STAR_BAD (ASPCAPFLAG bit 23), half of them with NaN chemistry; a few M_H_WARN/VMICRO_WARN and
  BRIGHT_NEIGHBOR/SUSPECT_BROAD_LINES; ~2 % unmatched (GAIAEDR3_SOURCE_ID = 0); ~3 % NaN MG_FE;
- 2MASS J/H/K from Teff-based colours and the CCM extinction, 99.999 for ~1 % bad photometry.
Which stars get labels (``label_probability``) follows APOGEE-like targeting: giants favoured, dwarfs less,
cool dwarfs rare — so a label-dependent model has a label-poor region, as with the real survey.
Also Galactic actions (Lz, jz, jr) for the catalogue layout, drawn per population (thin/thick/halo).
"""
from __future__ import annotations

import numpy as np

from shared.quality import (
    ASPCAP_M_H_WARN_BIT,
    ASPCAP_STAR_BAD_BIT,
    ASPCAP_VMICRO_WARN_BIT,
    EXTRATARG_COMMISSIONING_BIT,
    EXTRATARG_DUPLICATE_BIT,
    STARFLAG_BRIGHT_NEIGHBOR_BIT,
    STARFLAG_SUSPECT_BROAD_LINES_BIT,
)

from .populations import Stars, is_giant

# APOGEE-like targeting weights (relative labelling rates). APOGEE selects mostly red giants by 2MASS colour
# (Zasowski et al. 2013, 2017), so dwarfs are under-represented and cool (K/M) dwarfs rarely observed.
TARGET_WEIGHT_GIANT, TARGET_WEIGHT_DWARF, TARGET_WEIGHT_COOL_DWARF = 1.0, 0.5, 0.05
COOL_DWARF_TEFF, COOL_DWARF_LOGG = 4500.0, 4.0        # Teff below and log g above: the label-poor region
DUPLICATE_RATE, STAR_BAD_RATE, UNMATCHED_RATE = 0.05, 0.02, 0.02
TELESCOPES = np.array(["apo25m", "lco25m", "apo1m"])
FIELDS = np.array(["060+00", "120+18", "K2_C5", "M67", "LMC1", "030-04", "300+10", "N6791", "ROSAT_HYADES",
                   "180+04", "BAADEWIN", "TESS_NEP", "COMMISSIONING", "HD_BULGE", "045+02", "210-10"])


def is_cool_dwarf(teff: np.ndarray, logg: np.ndarray) -> np.ndarray:
    """The label-poor region of the targeting: Teff < 4500 K and log g > 4."""
    return (np.asarray(teff) < COOL_DWARF_TEFF) & (np.asarray(logg) > COOL_DWARF_LOGG)


def targeting_weights(teff: np.ndarray, logg: np.ndarray) -> np.ndarray:
    """Relative labelling rate per star: giant 1, dwarf 0.5, cool dwarf 0.05 (1/20 of the giant rate)."""
    w = np.where(is_giant(teff, logg), TARGET_WEIGHT_GIANT, TARGET_WEIGHT_DWARF)
    return np.where(is_cool_dwarf(teff, logg), TARGET_WEIGHT_COOL_DWARF, w)


def label_probability(teff: np.ndarray, logg: np.ndarray, label_fraction: float) -> np.ndarray:
    """Per-star probability of an APOGEE label: min(1, c·weight) with c chosen so that the mean probability is
    exactly ``label_fraction`` (0 → none, 1 → every star). Capping at 1 moves the surplus to the lower-weight
    stars, so at high fractions the contrast shrinks (at 1 it vanishes) while the total stays right."""
    w = targeting_weights(teff, logg)
    n = w.size
    if n == 0 or label_fraction <= 0.0:
        return np.zeros(n)
    if label_fraction >= 1.0:
        return np.ones(n)
    # mean(min(1, c·w)) is piecewise linear and increasing in c: with the weights sorted in decreasing order and
    # the first k stars capped, c = (n·f − k) / Σ_{i≥k} w_i; the right k is the first one whose c keeps star k
    # (the largest uncapped weight) below the cap.
    ws = np.sort(w)[::-1]
    tail = np.cumsum(ws[::-1])[::-1]                      # tail[k] = Σ_{i≥k} w_i
    target = n * float(label_fraction)
    k = np.arange(n)
    c = (target - k) / tail
    c = c[np.argmax(c * ws <= 1.0)]                       # exists: at k = n−1, c·w = target − n + 1 < 1
    return np.minimum(1.0, c * w)


def _apogee_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    """2MASS-style designations 2Mhhmmssss±ddmmsss from random sky positions."""
    ra_s = rng.integers(0, 24 * 3600 * 100, n)            # RA in 0.01 s
    dec = rng.integers(-90 * 36000 + 1, 90 * 36000, n)    # Dec in 0.1 arcsec
    hh, rem = divmod(ra_s, 360000)
    mm, ss = divmod(rem, 6000)
    sign = np.where(dec < 0, "-", "+")
    d = np.abs(dec)
    dd, rem = divmod(d, 36000)
    dm, ds = divmod(rem, 600)
    return np.array([f"2M{a:02d}{b:02d}{c:04d}{s}{e:02d}{f:02d}{g:03d}"
                     for a, b, c, s, e, f, g in zip(hh, mm, ss, sign, dd, dm, ds)])


def _absolute_g(teff: np.ndarray, logg: np.ndarray) -> np.ndarray:
    """M_G from L ∝ M·Teff⁴/g with M = 1 M☉ (1.2 for giants) and a crude bolometric correction."""
    mass = np.where(logg < 3.8, 1.2, 1.0)
    log_l = np.log10(mass) + 4 * np.log10(teff / 5772.0) - (logg - 4.438)
    bc = -0.1 - 1.5 * np.clip((4500.0 - teff) / 1000.0, 0, None) ** 1.5
    return 4.74 - 2.5 * log_l - bc


def simulate_labels(rng: np.random.Generator, stars: Stars, source_id: np.ndarray, bp_mag: np.ndarray,
                    rp_mag: np.ndarray, labelled: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Label rows for the stars where ``labelled``; returns (labels dict, star index of each row).

    Duplicates follow all primary rows of the block, so a row's star is ``index[row]``.
    """
    primary = np.flatnonzero(labelled)
    dup = primary[rng.random(primary.size) < DUPLICATE_RATE]
    index = np.concatenate([primary, dup])
    is_dup = np.concatenate([np.zeros(primary.size, bool), np.ones(dup.size, bool)])
    n = index.size
    teff, logg, m_h = stars.teff[index], stars.logg[index], stars.m_h[index]
    g = stars.g_mag[index]

    # S/N falls with magnitude (APOGEE works in H; G is a fair proxy here); duplicates are lower-S/N visits.
    g_primary = stars.g_mag[primary]
    snr_primary = np.clip(10 ** rng.normal(2.2 - 0.12 * (g_primary - 12.0), 0.2), 10, 1500)
    dup_pos = np.searchsorted(primary, dup)                  # primary is sorted: the duplicate's primary row
    snr = np.concatenate([snr_primary, snr_primary[dup_pos] * rng.uniform(0.3, 0.8, dup.size)])
    noise = 100.0 / snr
    hot = np.clip((teff - 6000.0) / 1500.0, 0, 1)         # ASPCAP chemistry is less precise for hot stars
    err = {
        "teff": (8 + 25 * noise) * (1 + hot), "logg": (0.02 + 0.04 * noise) * (1 + hot),
        "m_h": (0.008 + 0.02 * noise) * (1 + 2 * hot), "alpha_m": (0.008 + 0.02 * noise) * (1 + 3 * hot),
        "fe_h": (0.008 + 0.02 * noise) * (1 + 2 * hot), "mg_fe": (0.012 + 0.03 * noise) * (1 + 3 * hot),
    }
    truth = {"teff": teff, "logg": logg, "m_h": m_h, "alpha_m": stars.alpha_m[index], "fe_h": stars.fe_h[index],
             "mg_fe": stars.mg_fe[index]}
    labels: dict[str, np.ndarray] = {}
    for key, e in err.items():
        labels[key] = (truth[key] + e * rng.standard_normal(n)).astype(np.float32)
        labels[f"{key}_err"] = e.astype(np.float32)

    ids = _apogee_ids(rng, primary.size)
    star_pos = {s: i for i, s in enumerate(primary)}
    labels["apogee_id"] = np.array([ids[star_pos[s]] for s in index])
    labels["telescope"] = TELESCOPES[rng.choice(3, n, p=[0.7, 0.25, 0.05])]
    # allStar rows are unique on (APOGEE_ID, TELESCOPE, FIELD): a duplicate observation of a star comes from
    # another field, so give each duplicate a field different from its primary row's (and from each other).
    field_idx = rng.integers(0, FIELDS.size, n)
    primary_field = {s: f for s, f, d in zip(index, field_idx, is_dup) if not d}
    seen: dict[int, int] = {}
    for row in np.flatnonzero(is_dup):
        star = index[row]
        seen[star] = seen.get(star, 0) + 1
        field_idx[row] = (primary_field.get(star, 0) + seen[star]) % FIELDS.size
    labels["field"] = FIELDS[field_idx]
    matched = rng.random(primary.size) >= UNMATCHED_RATE
    labels["gaia_source_id"] = np.where(matched[[star_pos[s] for s in index]], source_id[index], 0).astype(np.int64)

    labels["gaia_g_mag"] = (g + rng.normal(0, 0.003, n)).astype(np.float32)
    labels["gaia_bp_mag"] = (bp_mag[index] + rng.normal(0, 0.005, n)).astype(np.float32)
    labels["gaia_rp_mag"] = (rp_mag[index] + rng.normal(0, 0.005, n)).astype(np.float32)
    a_g = 2.7 * stars.ebv[index]
    distance_pc = 10 ** ((g - _absolute_g(teff, logg) - a_g + 5) / 5)
    plx_err = 0.015 + 0.02 * 10 ** (0.2 * (g - 15.0))
    labels["parallax"] = (1000.0 / distance_pc + plx_err * rng.standard_normal(n)).astype(np.float32)
    labels["parallax_error"] = plx_err.astype(np.float32)

    # 2MASS: (G−Ks)0 and (J−Ks)0 as linear functions of 5040/Teff, CCM extinction ratios for R_V = 3.1.
    theta = 5040.0 / teff
    g_k = 3.35 * theta - 1.32
    j_k = 1.05 * theta - 0.55
    ebv = stars.ebv[index]
    k_mag = g - g_k - (2.7 - 0.35) * ebv
    h_mag = k_mag + 0.2 * j_k + 0.19 * ebv
    j_mag = k_mag + j_k + 0.52 * ebv
    for key, v in (("j", j_mag), ("h", h_mag), ("k", k_mag)):
        v = v + rng.normal(0, 0.025, n)
        v[rng.random(n) < 0.01] = 99.999
        labels[key] = v.astype(np.float32)
    labels["snr"] = snr.astype(np.float32)
    labels["sfd_ebv"] = (ebv * rng.uniform(1.0, 1.4, n) + rng.normal(0, 0.01, n)).clip(0).astype(np.float32)

    aspcap = np.zeros(n, np.int64)
    bad = rng.random(n) < STAR_BAD_RATE
    aspcap[bad] |= 1 << ASPCAP_STAR_BAD_BIT
    aspcap[rng.random(n) < 0.02] |= 1 << ASPCAP_M_H_WARN_BIT
    aspcap[rng.random(n) < 0.03] |= 1 << ASPCAP_VMICRO_WARN_BIT
    starflag = np.zeros(n, np.int64)
    starflag[rng.random(n) < 0.02] |= 1 << STARFLAG_BRIGHT_NEIGHBOR_BIT
    starflag[rng.random(n) < 0.01] |= 1 << STARFLAG_SUSPECT_BROAD_LINES_BIT
    extratarg = np.where(is_dup, 1 << EXTRATARG_DUPLICATE_BIT, 0).astype(np.int32)
    extratarg[rng.random(n) < 0.005] |= 1 << EXTRATARG_COMMISSIONING_BIT
    labels["aspcapflag"], labels["starflag"], labels["extratarg"] = aspcap, starflag, extratarg

    # Missing values are NaN (DR17): half the STAR_BAD rows lose their chemistry, ~3 % lose MG_FE.
    no_chem = bad & (rng.random(n) < 0.5)
    for key in ("m_h", "alpha_m", "fe_h", "mg_fe"):
        labels[key][no_chem] = np.nan
        labels[f"{key}_err"][no_chem] = np.nan
    no_mg = rng.random(n) < 0.03
    labels["mg_fe"][no_mg] = np.nan
    labels["mg_fe_err"][no_mg] = np.nan
    return labels, index


def simulate_actions(rng: np.random.Generator, stars: Stars) -> dict[str, np.ndarray]:
    """Galactic actions (kpc km/s): thin disc cold and prograde, thick disc hotter, halo ~non-rotating."""
    n = len(stars)
    pop = stars.population
    lz_mean = np.array([1800.0, 1400.0, 0.0])[pop]
    lz_sd = np.array([300.0, 450.0, 600.0])[pop]
    jz_scale = np.array([5.0, 40.0, 300.0])[pop]
    jr_scale = np.array([30.0, 150.0, 800.0])[pop]
    return {"Lz": lz_mean + lz_sd * rng.standard_normal(n), "jz": rng.exponential(1.0, n) * jz_scale,
            "jr": rng.exponential(1.0, n) * jr_scale}
