"""The DR3 XP instrument model (ingest/simulate/instrument.py) and the simulator's forward coefficient model.

Measured limits these tests state (docs/simulator.md, "Forward model"): the vendored instrument tables reproduce
a real star's own coefficients from its GaiaXPy-calibrated spectrum to ~0.3 % of c₀ at c₀ and ~0.5–5 % of c₀
at orders 1–15, which is 10–100 of its errors for G ≈ 12–14 stars, not within them; and at orders ≥ 5 that
floor exceeds the real coefficients themselves (0.05–0.3 % of c₀), so forward-simulated shapes there are the
model's, not the stars'.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ingest.simulate import instrument
from ingest.simulate.compare import forward_of_calibrated, shape_gaps
from ingest.simulate.instrument import (COUNT_SCALE, FORWARD_GRID, HERMITE_SCALE, band_model,
                                        extend_sampled_sed, fit_count_scale, forward_operator, hermite_functions)
from ingest.simulate.noise import read_flat_real_sources
from ingest.simulate.populations import draw_stars
from ingest.simulate.spectra import noise_free_coefficients, sed_model, sed_to_coefficients
from ingest.simulate.survey import generate
from ingest.simulate.xp_basis import xp_basis
from shared.xp import BANDS, N_COEFF

REPO = Path(__file__).resolve().parents[2]
REAL_RECORDS = REPO / "reference" / "gaia_xp" / "gaiaxpy_tests" / "XP_CONTINUOUS_RAW.csv"
REAL_2000 = "data/gaia_xp/xp_spectral_lines/xp_continuous_combined_chunk0.fits"


def test_hermite_functions_are_orthonormal():
    x = np.linspace(-25.0, 25.0, 20001)
    phi = hermite_functions(x, 100)
    gram = phi @ phi.T * (x[1] - x[0])
    assert np.abs(gram - np.eye(100)).max() < 1e-9


@pytest.mark.parametrize("band,wavelengths", [("bp", (350.0, 420.0, 500.0, 620.0)),
                                               ("rp", (660.0, 750.0, 850.0, 980.0))])
def test_a_monochromatic_source_lands_at_its_pseudo_wavelength(band, wavelengths):
    """Undo the rotation and the photon/response weight of the kernel: the internal spectrum of a single
    wavelength is the LSF, peaked within 0.1 sample of u(λ) from the dispersion table, ~2 samples wide."""
    model = band_model(band)
    a, b = HERMITE_SCALE[band]
    lam = np.array(wavelengths)
    weight = COUNT_SCALE[band] * lam * np.interp(lam, *model.response)
    hermite = model.rotation.T @ instrument.kernel(band, lam) / weight          # (55, n)
    u = np.linspace(0.0, 60.0, 6001)
    profile = hermite.T @ hermite_functions((u - b) / a, N_COEFF)               # (n, len(u))
    expected = np.interp(lam, *model.dispersion)
    assert np.abs(u[profile.argmax(axis=1)] - expected).max() < 0.1
    for p in profile:
        above = u[p > 0.5 * p.max()]
        assert 1.5 < above.max() - above.min() < 3.5


def test_operator_is_cached_read_only_and_converged():
    """One matrix per grid, shared and read-only; a smooth SED gives the same coefficients on a 1 nm grid as on
    the 2 nm default (the fine integration, not the SED grid, sets the accuracy)."""
    op = forward_operator()
    assert op is forward_operator(FORWARD_GRID.copy()) and op.shape == (FORWARD_GRID.size, 2 * N_COEFF)
    with pytest.raises(ValueError):
        op[0, 0] = 1.0
    stars = draw_stars(np.random.default_rng(41), 20)
    fine_grid = np.arange(FORWARD_GRID[0], FORWARD_GRID[-1] + 1e-9, 1.0)
    sed2 = sed_model("forward")(stars.teff, stars.logg, stars.m_h, stars.alpha_m, stars.ebv, stars.carbon)
    sed1 = np.stack([np.interp(fine_grid, FORWARD_GRID, s) for s in sed2])
    c2, c1 = sed2 @ op, sed1 @ forward_operator(fine_grid)
    assert np.abs(c2 - c1).max() < 1e-9 * np.abs(c2).max()


def test_bad_grids_and_tables_are_refused(tmp_path):
    with pytest.raises(ValueError, match="does not cover"):
        forward_operator(np.arange(340.0, 1000.0, 2.0))
    for bad in (FORWARD_GRID[::-1], np.r_[FORWARD_GRID[:5], np.nan, FORWARD_GRID[5:]], np.array([500.0])):
        with pytest.raises(ValueError, match="strictly increasing"):
            forward_operator(bad)
    with pytest.raises(ValueError, match="band must be"):
        band_model("g")
    with pytest.raises(FileNotFoundError, match="LSFModel_BP.csv"):
        band_model("bp", tmp_path)
    src = instrument.MODEL_DIR
    for name in instrument.FILES["bp"].values():
        (tmp_path / name).write_bytes((src / name).read_bytes())
    (tmp_path / "LSFModel_BP.csv").write_text("__import__('os').system('echo hacked')\n")
    with pytest.raises(ValueError):                    # text is parsed as numbers, never evaluated
        band_model("bp", tmp_path)
    rows = (src / "BasisTransformationMatrix_BP.csv").read_text().splitlines()
    (tmp_path / "LSFModel_BP.csv").write_bytes((src / "LSFModel_BP.csv").read_bytes())
    (tmp_path / "BasisTransformationMatrix_BP.csv").write_text("\n".join(rows[:-1]) + "\n")
    with pytest.raises(ValueError, match="55 × 55"):
        band_model("bp", tmp_path)


def test_count_scale_is_photon_counting_through_the_telescope(shared_dir):
    """COUNT_SCALE is what a refit on the bright real sources gives (its provenance, 1 %), and it is the Gaia
    telescope's photon-collecting constant A/(hc) (A = 0.7278 m²) divided by the LSF's integral over u, within
    5 %: the λ weight turns energy into photons, as it must."""
    basis = xp_basis()
    c, _ = read_flat_real_sources(shared_dir / REAL_2000)
    ok = np.all(np.isfinite(c), axis=1)
    bright = ok & (basis.synthetic_mags(np.where(ok[:, None], c, 1.0))[:, 0] < 13)
    fitted = fit_count_scale(c[bright], basis.sample(c[bright]), basis.wavelength)
    area_over_hc = 0.7278 * 1e-9 / (6.62607015e-34 * 2.99792458e8)       # e⁻ s⁻¹ per (W m⁻² nm⁻¹ · nm · nm)
    u = np.linspace(-20.0, 80.0, 20001)
    for band in BANDS:
        assert fitted[band] == pytest.approx(COUNT_SCALE[band], rel=0.01)
        model = band_model(band)
        a, b = HERMITE_SCALE[band]
        lsf = model.lsf @ hermite_functions(np.array([(30.0 - b) / a]), instrument.N_LSF)
        integral = float((lsf[:, 0] @ hermite_functions((u - b) / a, N_COEFF)).sum() * (u[1] - u[0]))
        assert COUNT_SCALE[band] * integral == pytest.approx(area_over_hc, rel=0.05)


def _calibrated_real_records():
    """The two real DR3 sources of GaiaXPy's test file: GaiaXPy's own calibrate() and their coefficients."""
    from ingest.readers.xp import read_xp
    from ingest.simulate.xp_basis import _import_gaiaxpy_quietly
    _import_gaiaxpy_quietly()
    from gaiaxpy import calibrate
    df, wavelength = calibrate(str(REAL_RECORDS), save_file=False)
    batch = next(read_xp(REAL_RECORDS))
    order = np.argsort(np.asarray(batch["source_id"]))
    flux = np.stack([np.asarray(f, float) for f in df.sort_values("source_id")["flux"]])
    return np.asarray(wavelength, float), flux, batch.coefficients110()[order], batch.errors110()[order]


def test_forward_model_of_a_real_calibrated_spectrum():
    """GaiaXPy's calibrate() of two real sources (G ≈ 12 and 13.5, not among those COUNT_SCALE was fitted on),
    sent back through the instrument model, gives their coefficients: c₀ of each band within 1 %, c₁ and c₂
    (with c₀ the orders that carry > 5 % of the flux signal) within 6 % of c₀, and the first 15 orders within
    2 % of ‖c‖ as a whole. NOT within the errors: residuals are 10–100 σ at orders 0–15 for these bright stars.
    The tables model the instrument to ~1 % of c₀ (the calibration accuracy of Montegriffo et al. 2023; the
    inverse bases GaiaXPy samples are not exactly the inverse of these tables), far above the errors of
    bright sources. A wrong dispersion direction, a missing photon weight or a transposed rotation fails this
    by factors (tested by hand: ≥ 25 % at c₀ or c₁)."""
    wavelength, flux, coefficients, errors = _calibrated_real_records()
    predicted = extend_sampled_sed(wavelength, flux) @ forward_operator()
    for b in range(2):
        c = coefficients[:, b * N_COEFF:(b + 1) * N_COEFF]
        p = predicted[:, b * N_COEFF:(b + 1) * N_COEFF]
        c0 = c[:, :1]
        assert np.all(np.abs(p[:, 0] - c[:, 0]) < 0.01 * c[:, 0])
        assert np.all(np.abs(p[:, 1:3] - c[:, 1:3]) < 0.06 * c0)
        assert np.all(np.linalg.norm(p[:, :15] - c[:, :15], axis=1) < 0.02 * np.linalg.norm(c[:, :15], axis=1))


def test_coefficient_models_share_stars_and_brightness():
    """The option changes only how an SED becomes coefficients: same stars, same synthetic G (= drawn G) and
    BP−RP within 0.05 mag between the two models; an unknown name is refused."""
    stars = draw_stars(np.random.default_rng(99), 400)
    ridge = noise_free_coefficients(stars, coefficients="ridge")
    forward = noise_free_coefficients(stars, coefficients="forward")
    assert np.allclose(ridge.mags[:, 0], stars.g_mag, atol=1e-9)
    assert np.allclose(forward.mags[:, 0], stars.g_mag, atol=1e-9)
    colour = lambda m: m[:, 1] - m[:, 2]                         # noqa: E731
    assert np.abs(colour(ridge.mags) - colour(forward.mags)).max() < 0.05
    with pytest.raises(ValueError, match="coefficients must be one of"):
        sed_to_coefficients("fitted")
    with pytest.raises(ValueError, match="coefficients must be one of"):
        generate(10, seed=1, coefficients="Forward")


@pytest.fixture(scope="module")
def shape_data(shared_dir):
    c, _ = read_flat_real_sources(shared_dir / REAL_2000)
    g = xp_basis().synthetic_mags(c)[:, 0]
    sims = {}
    for model in ("ridge", "forward"):
        batch, truth, _, _ = generate(8000, seed=23, with_correlations=False, coefficients=model)
        ok = ~(batch["bp_missing"] | batch["rp_missing"])
        sims[model] = (batch.coefficients110()[ok], truth["g_mag"][ok])
    return c, g, sims


def test_coefficient_shapes_at_matched_colour(shape_data):
    """Simulated vs real median log10(|c_k|/c₀) in 8 colour bins (log10 RP c₀/BP c₀), 12 < G < 17.

    Met within 0.2 dex: c₁ of both bands with the ridge fit; RP c₁ with the forward model.
    Not met (measured, docs/simulator.md): with the ridge fit orders 3–8 differ by up to ~0.5 dex (mean over
    bins) — smooth schematic SEDs against the real inverse-basis wiggles; with the forward model BP orders 6–15
    differ by 0.6–1.1 dex, the same as the real stars' own calibrated spectra sent through the model (next
    test): the instrument tables' ~1 % of c₀ accuracy floor exceeds the real mid-order amplitudes. The bounds
    below lock today's ridge figures (default output) against regressions."""
    c, g, sims = shape_data
    ridge = shape_gaps(c, g, *sims["ridge"])["per_order"]
    forward = shape_gaps(c, g, *sims["forward"])["per_order"]
    assert ridge[:, 0].max() < 0.2 and forward[1, 0] < 0.2
    assert ridge[:, 2:8].max() < 0.65


def test_forward_gap_is_the_instrument_models_own(shape_data):
    """Simulated forward-model shapes match the real stars' own calibrated spectra through the same model
    within 0.2 dex at BP orders 6–15 and RP orders 7, 10, 12, 13 (the orders where the model's floor dominates):
    there the remaining gap to the real coefficients belongs to the instrument model, not to the SEDs."""
    c, g, sims = shape_data
    through_model = forward_of_calibrated(c)
    gap = shape_gaps(through_model, g, *sims["forward"])["per_order"]
    assert gap[0, 5:15].max() < 0.2
    assert gap[1, [6, 9, 11, 12]].max() < 0.2
