"""Sample cuts and the Patil et al. 2023 high/low-α split on hand-picked stars."""
import numpy as np
import pytest

from analysis.samples import (
    SPLIT_ALPHA_M,
    SPLIT_MG_FE,
    SPLIT_NONE,
    alpha_split,
    cool_giant_mask,
    giant_mask,
    patil_boundary,
    select_samples,
)


def test_patil_boundary_hand_values():
    # 0.1754x³ + 0.1119x² − 0.1253x + 0.1353 evaluated by hand
    assert patil_boundary(0.0) == pytest.approx(0.1353)
    assert patil_boundary(-1.0) == pytest.approx(-0.1754 + 0.1119 + 0.1253 + 0.1353)
    assert patil_boundary(0.5) == pytest.approx(0.1754 / 8 + 0.1119 / 4 - 0.1253 / 2 + 0.1353)


def test_alpha_split_primary_fallback_and_missing():
    nan = np.nan
    labels = {
        # star 0: [Mg/Fe] 0.30 at [Fe/H] −0.5 (boundary 0.204): high
        # star 1: [Mg/Fe] 0.05 at [Fe/H] 0.0 (boundary 0.1353): low
        # star 2: no MG_FE → fallback [α/M] 0.25 at [M/H] −0.3 (boundary 0.178): high
        # star 3: nothing finite → no class
        # star 4: MG_FE decides even though the [α/M] pair would disagree
        "mg_fe": np.array([0.30, 0.05, nan, nan, 0.20]),
        "fe_h": np.array([-0.5, 0.0, -0.3, nan, 0.0]),
        "alpha_m": np.array([0.0, 0.3, 0.25, nan, 0.0]),
        "m_h": np.array([-0.5, 0.0, -0.3, nan, 0.0]),
    }
    s = alpha_split(labels)
    assert s.high.tolist() == [True, False, True, False, True]
    assert s.valid.tolist() == [True, True, True, False, True]
    assert s.source.tolist() == [SPLIT_MG_FE, SPLIT_MG_FE, SPLIT_ALPHA_M, SPLIT_NONE, SPLIT_MG_FE]
    assert s.n_fallback == 1 and any("1 of 5" in n for n in s.notes)
    assert not alpha_split(labels, fallback=False).valid[2]


def test_alpha_split_without_mg_fe_columns_uses_alpha_m():
    s = alpha_split({"alpha_m": np.array([0.3, 0.0]), "m_h": np.array([-0.5, -0.5])})
    assert s.high.tolist() == [True, False] and (s.source == SPLIT_ALPHA_M).all()


def _good_star_labels(n):
    return {"teff": np.full(n, 4500.0), "teff_err": np.full(n, 30.0), "logg": np.full(n, 2.5),
            "logg_err": np.full(n, 0.05), "m_h": np.zeros(n), "m_h_err": np.full(n, 0.02),
            "aspcapflag": np.zeros(n, np.int64), "starflag": np.zeros(n, np.int64)}


def test_each_cut_removes_exactly_its_star():
    n = 9
    lab = _good_star_labels(n)
    phot = {"phot_g_mean_mag": np.full(n, 12.0), "bp_rp": np.full(n, 1.5)}
    lab["teff_err"][1] = 50.0            # Teff/σ = 90: not pristine, still good (> 20)
    lab["logg_err"][2] = 0.2             # not pristine, good
    lab["m_h_err"][3] = 0.3              # neither
    lab["starflag"][4] = 4               # any STARFLAG bit fails
    lab["aspcapflag"][5] = 1 << 3        # M_H_WARN
    lab["aspcapflag"][6] = 1 << 23       # STAR_BAD is not one of the two listed bits: passes this cut
    phot["phot_g_mean_mag"][7] = 17.6    # too faint
    phot["bp_rp"][8] = np.nan            # unknown colour fails
    sel = select_samples(lab, phot)
    assert np.flatnonzero(sel.masks["pristine"]).tolist() == [0, 6]
    assert np.flatnonzero(sel.masks["good"]).tolist() == [0, 1, 2, 6]
    assert sel.notes == []


def test_photometry_fallback_and_skipping_are_documented():
    lab = _good_star_labels(3)
    lab.update(gaia_g_mag=np.array([12.0, 18.0, 12.0]), gaia_bp_mag=np.array([12.5, 18.5, 14.0]),
               gaia_rp_mag=np.array([11.5, 17.5, 9.0]))
    sel = select_samples(lab)                       # G from labels: star 1 too faint, star 2 BP−RP = 5
    assert sel.masks["pristine"].tolist() == [True, False, False]
    assert any("gaia_g_mag" in n for n in sel.notes)
    bare = {k: v for k, v in _good_star_labels(2).items() if k not in ("starflag", "aspcapflag")}
    sel = select_samples(bare)
    assert not sel.masks["pristine"].any() and not sel.masks["good"].any()     # unknown flags cannot certify
    assert any("photometric cuts" in n and "skipped" in n for n in sel.notes)
    assert any("starflag" in n and "fails" in n for n in sel.notes)
    assert any("aspcapflag" in n and "fails" in n for n in sel.notes)


def test_unknown_flag_values_fail_the_star():
    """-1 (what read_labels gives for NULL), any negative value or NaN is an unknown flag: the star fails."""
    lab = _good_star_labels(6)
    lab["starflag"] = np.array([0, -1, 0, -7, 0, 0], float)
    lab["aspcapflag"] = np.array([0, 0, -1, 0, np.nan, 1 << 23], float)
    sel = select_samples(lab)
    assert sel.masks["pristine"].tolist() == [True, False, False, False, False, True]
    assert sel.masks["good"].tolist() == [True, False, False, False, False, True]


def test_missing_error_column_names_the_field():
    lab = _good_star_labels(2)
    del lab["logg_err"]
    with pytest.raises(KeyError, match="logg_err"):
        select_samples(lab)


def test_giant_and_cool_giant_masks():
    # boundary log g < 5.9 − 4·Teff/1e4: at 4800 K that is 3.98; at 5500 K it is 3.7
    lab = {"teff": np.array([4800.0, 4800.0, 5500.0, 5500.0]), "logg": np.array([2.5, 4.5, 3.0, 3.8])}
    assert giant_mask(lab).tolist() == [True, False, True, False]
    assert cool_giant_mask(lab).tolist() == [True, False, False, False]


def test_fallback_split_approximates_patil_on_real_apogee(shared_dir):
    """On real APOGEE DR17 stars (reference/data/apogee), [α/M] vs [M/H] with the Patil cubic must agree with
    the proper [Mg/Fe] vs [Fe/H] split for the large majority of stars (> 85 %) — the fallback is an
    approximation, not a different population definition. Both splits must find both classes."""
    from astropy.table import Table
    t = Table.read(shared_dir / "data" / "apogee" / "Apogee_data_filtered_1612.fits")
    proper = alpha_split({k: np.asarray(t[k], float) for k in ("mg_fe", "fe_h")})
    fallback = alpha_split({k: np.asarray(t[k], float) for k in ("alpha_m", "m_h")})
    both = proper.valid & fallback.valid
    assert both.sum() > 1500
    assert np.mean(proper.high[both] == fallback.high[both]) > 0.85
    assert 0 < proper.high[both].mean() < 1 and 0 < fallback.high[both].mean() < 1


def test_the_samples_the_cli_offers_are_the_ones_the_analysis_makes():
    from shared.params import ALPHA_CATALOGUE_SAMPLES
    from shared.quality import SAMPLE_NAMES
    assert sorted(select_samples(_good_star_labels(1)).masks) == sorted(SAMPLE_NAMES)
    assert ALPHA_CATALOGUE_SAMPLES == SAMPLE_NAMES
