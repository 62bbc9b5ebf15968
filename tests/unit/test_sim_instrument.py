"""The DR3 XP instrument model (simulator/instrument.py) and the simulator's forward coefficient model.

Measured limits these tests state (docs/simulator.md, "Forward model"): the vendored tables alone reproduce a
real star's coefficients from its GaiaXPy-calibrated spectrum to ≲ 5 % of c₀ per order, above the real
mid-order coefficients (0.05–0.3 % of c₀); with the edge correction fitted on bright real sources, to ~0.02–0.5 %
of c₀ per order (held-out sources). That is still typically 5–40 σ, up to 70 σ, for bright stars: not within
their errors.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shared.xp import BANDS, N_COEFF
from simulator import instrument
from simulator.compare import forward_of_calibrated, shape_gaps
from simulator.instrument import (
    COUNT_SCALE,
    FORWARD_GRID,
    HERMITE_SCALE,
    band_model,
    extend_sampled_sed,
    fit_count_scale,
    forward_operator,
    hermite_functions,
)
from simulator.noise import read_flat_real_sources
from simulator.populations import draw_stars
from simulator.spectra import noise_free_coefficients, sed_model, sed_to_coefficients
from simulator.survey import generate
from simulator.xp_basis import xp_basis

REPO = Path(__file__).resolve().parents[2]
REAL_RECORDS = REPO / "reference" / "data" / "gaia_xp" / "gaiaxpy_tests" / "XP_CONTINUOUS_RAW.csv"
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
    with pytest.raises(ValueError, match="not a numeric"):     # parsed as numbers, never evaluated
        band_model("bp", tmp_path)
    wavelength = xp_basis().wavelength
    with pytest.raises(ValueError, match="too few usable sources"):
        instrument.fit_edge_correction(np.zeros((0, 2 * N_COEFF)), np.zeros((0, wavelength.size)), wavelength)
    rows = (src / "BasisTransformationMatrix_BP.csv").read_text().splitlines()
    (tmp_path / "LSFModel_BP.csv").write_bytes((src / "LSFModel_BP.csv").read_bytes())
    (tmp_path / "BasisTransformationMatrix_BP.csv").write_text("\n".join(rows[:-1]) + "\n")
    with pytest.raises(ValueError, match="55 × 55"):
        band_model("bp", tmp_path)


def test_count_scale_is_photon_counting_through_the_telescope(shared_dir):
    """COUNT_SCALE is what a refit on the calibration sources gives (its provenance, 0.1 %), and it is the Gaia
    telescope's photon-collecting constant A/(hc) (A = 0.7278 m²) divided by the LSF's integral over u, within
    5 %: the λ weight turns energy into photons, as it must."""
    basis = xp_basis()
    c, _ = read_flat_real_sources(shared_dir / REAL_2000)
    use = instrument.calibration_sources(c)
    fitted = fit_count_scale(c[use], basis.sample(c[use]), basis.wavelength)
    area_over_hc = 0.7278 * 1e-9 / (6.62607015e-34 * 2.99792458e8)       # e⁻ s⁻¹ per (W m⁻² nm⁻¹ · nm · nm)
    u = np.linspace(-20.0, 80.0, 20001)
    for band in BANDS:
        assert fitted[band] == pytest.approx(COUNT_SCALE[band], rel=1e-3)
        model = band_model(band)
        a, b = HERMITE_SCALE[band]
        lsf = model.lsf @ hermite_functions(np.array([(30.0 - b) / a]), instrument.N_LSF)
        integral = float((lsf[:, 0] @ hermite_functions((u - b) / a, N_COEFF)).sum() * (u[1] - u[0]))
        assert COUNT_SCALE[band] * integral == pytest.approx(area_over_hc, rel=0.05)


def _calibrated_real_records():
    """The two real DR3 sources of GaiaXPy's test file: GaiaXPy's own calibrate() and their coefficients."""
    from ingest.readers.xp import read_xp
    from simulator.xp_basis import _import_gaiaxpy_quietly
    _import_gaiaxpy_quietly()
    from gaiaxpy import calibrate
    df, wavelength = calibrate(str(REAL_RECORDS), save_file=False)
    batch = next(read_xp(REAL_RECORDS))
    order = np.argsort(np.asarray(batch["source_id"]))
    flux = np.stack([np.asarray(f, float) for f in df.sort_values("source_id")["flux"]])
    return np.asarray(wavelength, float), flux, batch.coefficients110()[order], batch.errors110()[order]


def _relative_residuals(predicted: np.ndarray, coefficients: np.ndarray, band: int) -> np.ndarray:
    """(N, 55) (forward − real) / real c₀ of one band."""
    sl = slice(band * N_COEFF, (band + 1) * N_COEFF)
    return (predicted[:, sl] - coefficients[:, sl]) / coefficients[:, sl][:, :1]


def test_forward_model_of_real_calibrated_spectra():
    """GaiaXPy's calibrate() of the two real sources of its test file (not among the calibration sources), sent
    back through the instrument model, gives their coefficients to: c₀ within 4 % and orders 1–15 within 6 % of
    c₀ (rms sum) for both; for the bluer one (log RP c₀/BP c₀ = −0.38) c₀ within 1 % and orders 1–15 within
    4 % (BP) and 1.5 % (RP). Both lie outside the colours of the calibration sources (5–95 %: −0.03 to 0.55),
    the redder one (1.11) far outside: the edge correction is a median over field colours. Orders 0–15 are the
    ones that carry signal in both sources (|c|/σ > 3 for almost all).

    NOT within the errors: these are G ≈ 12–13.5 stars with errors of 0.01–0.1 % of c₀, and the residuals are
    typically 5–40 σ, up to 70 σ. The instrument tables reproduce real stars to ~0.3–1 % of c₀ after the edge
    correction (the DR3 calibration's own accuracy, and GaiaXPy's inverse bases are not exactly the inverse of these
    tables)."""
    wavelength, flux, coefficients, _ = _calibrated_real_records()
    sed = extend_sampled_sed(wavelength, flux)
    predicted = sed @ forward_operator()
    field_like = np.abs(np.log10(coefficients[:, N_COEFF] / coefficients[:, 0]) + 0.375) < 0.01
    assert field_like.sum() == 1
    for b, tight in ((0, 0.04), (1, 0.015)):
        r = _relative_residuals(predicted, coefficients, b)
        assert np.all(np.abs(r[:, 0]) < 0.04) and np.all(np.linalg.norm(r[:, 1:16], axis=1) < 0.06)
        assert abs(r[field_like, 0][0]) < 0.01 and np.linalg.norm(r[field_like, 1:16]) < tight


def test_edge_correction_on_held_out_real_sources(shared_dir):
    """Real sources with 13.5 < G < 15 (not used to fit the correction): the corrected model reproduces
    orders 1–15 to a median 1.2 % (BP) and 0.5 % (RP) of c₀ (rms sum), at least 5× better than the tables
    alone (measured 8.0 % → 0.9 % BP, 2.8 % → 0.3 % RP); and the stored correction is what a refit gives."""
    basis = xp_basis()
    c, _ = read_flat_real_sources(shared_dir / REAL_2000)
    use = instrument.calibration_sources(c)
    refit = instrument.fit_edge_correction(c[use], basis.sample(c[use]), basis.wavelength)
    from simulator.instrument_calibration import U_GRID, W
    assert np.array_equal(np.asarray(U_GRID, float), instrument.EDGE_U_GRID)
    for band in BANDS:
        assert np.allclose(refit[band], W[band], atol=1e-5)

    ok = np.all(np.isfinite(c), axis=1)
    g = basis.synthetic_mags(np.where(ok[:, None], c, 1.0))[:, 0]
    held = ok & (g > instrument.CALIBRATION_G_MAX) & (g < 15.0)
    assert held.sum() > 200 and not np.any(held & use)
    sed = extend_sampled_sed(basis.wavelength, basis.sample(c[held]))
    for b, bound in ((0, 0.012), (1, 0.005)):
        tables = np.median(np.linalg.norm(_relative_residuals(sed @ forward_operator(corrected=False),
                                                               c[held], b)[:, 1:16], axis=1))
        corrected = np.median(np.linalg.norm(_relative_residuals(sed @ forward_operator(), c[held], b)[:, 1:16],
                                             axis=1))
        assert corrected < bound and corrected < tables / 5


def test_coefficient_models_share_stars_and_brightness():
    """The option changes only how an SED becomes coefficients: same stars, same synthetic G (= drawn G) and
    BP−RP within 0.05 mag between the two models; an unknown name is refused."""
    stars = draw_stars(np.random.default_rng(99), 400)
    ridge = noise_free_coefficients(stars, coefficients="ridge")
    forward = noise_free_coefficients(stars, coefficients="forward")
    assert np.allclose(ridge.mags[:, 0], stars.g_mag, atol=1e-9)
    assert np.allclose(forward.mags[:, 0], stars.g_mag, atol=1e-9)
    bp_rp = {name: m.mags[:, 1] - m.mags[:, 2] for name, m in (("ridge", ridge), ("forward", forward))}
    assert np.abs(bp_rp["ridge"] - bp_rp["forward"]).max() < 0.05
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
    """Simulated vs real median log10(|c_k|/c₀) in 8 colour bins (log10 RP c₀/BP c₀), 12 < G < 17, mean over bins.

    Within 0.2 dex: c₁ of both bands, with either model. RP orders 3–8 within 0.4 dex with either model
    (measured 0.32 ridge, 0.32 forward; 0.52 and 0.60 before the line strengths were set to measured equivalent
    widths: the Ca II triplet was up to 7× too strong). Not met (docs/simulator.md, "Coefficient shapes"): BP
    orders 3–8, largest gap at c₅ (0.45 ridge, 0.54 forward), concentrated in the hottest and the reddest
    colour bins; the forward model adds c₆ (0.43), which the real stars' own spectra through the model share
    (next test). The causes are the schematic SEDs (blue blends and the MgH band of K dwarfs, M-star
    molecular bands) and the instrument model's BP edge, not noise. The BP bounds lock today's figures."""
    c, g, sims = shape_data
    ridge = shape_gaps(c, g, *sims["ridge"])["per_order"]
    forward = shape_gaps(c, g, *sims["forward"])["per_order"]
    assert ridge[:, 0].max() < 0.2 and forward[:, 0].max() < 0.2
    assert ridge[1, 2:8].max() < 0.4 and forward[1, 2:8].max() < 0.4
    assert ridge[0, 2:8].max() < 0.55 and forward[0, 2:8].max() < 0.65


def test_forward_model_reproduces_real_shapes(shape_data):
    """The real stars' own calibrated spectra through the forward model keep their shapes: RP orders 1–15 within
    0.3 dex and BP orders 1–4 within 0.2 dex of the real coefficients (mean over colour bins); BP orders 5–10
    stay 0.2–0.5 dex off (the BP blue edge, the Balmer region, varies with colour more than one median edge
    correction follows). Without the edge correction BP orders 5–15 are 0.5–1 dex off."""
    c, g, _ = shape_data
    through_model = shape_gaps(c, g, forward_of_calibrated(c), g)["per_order"]
    assert through_model[1, :15].max() < 0.3 and through_model[0, :4].max() < 0.2
    basis = xp_basis()
    ok = np.all(np.isfinite(c), axis=1)
    sed = extend_sampled_sed(basis.wavelength, basis.sample(np.where(ok[:, None], c, 0.0)))
    raw = sed @ forward_operator(corrected=False)
    tables_only = shape_gaps(c, g, np.where(ok[:, None], raw, np.nan), g)["per_order"]
    assert tables_only[0, 4:15].mean() > 2 * through_model[0, 4:15].mean()


def test_cli_coefficients_option(tmp_path):
    """`--coefficients forward` writes a survey whose manifest says so and whose noise-free truth differs from
    the default (ridge) one for the same seed, with the same stars; an unknown choice is bad usage (exit 2)."""
    import json

    import pyarrow.parquet as pq
    from click.testing import CliRunner

    from simulator.cli import simulate
    runner = CliRunner()
    truth = {}
    for choice in ("forward", None):
        out = tmp_path / str(choice)
        args = ["--n-stars", "40", "--seed", "5", "--out", str(out)] + (["--coefficients", choice] if choice else [])
        res = runner.invoke(simulate, args)
        assert res.exit_code == 0, res.output
        assert json.loads((out / "manifest.json").read_text())["coefficients"] == (choice or "ridge")
        truth[choice] = pq.read_table(out / "truth.parquet").to_pandas()
    assert (truth["forward"]["teff"] == truth[None]["teff"]).all()
    assert not np.allclose(np.stack(truth["forward"]["coefficients_true"]), np.stack(truth[None]["coefficients_true"]))
    bad = runner.invoke(simulate, ["--out", str(tmp_path / "bad"), "--coefficients", "exact"])
    assert bad.exit_code == 2 and "exact" in bad.output
