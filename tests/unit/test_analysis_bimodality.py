"""Bimodality statistics, unsupervised clustering scores and latent tracks on data with a known answer."""
import numpy as np
import pytest

from analysis.bimodality import bimodality_by_bin, delta_bic, dip_test, fisher_oof_coordinate, unsupervised_by_bin
from analysis.classify import fold_ids
from analysis.tracks import fixed_metallicity_track, sequence_tracks


def test_dip_and_bic_separate_bimodal_from_unimodal():
    """Two unit Gaussians 5σ apart (n = 800) are unmistakably bimodal: the dip p-value is ~0 and ΔBIC is in the
    hundreds. One Gaussian: the dip test must not reject at 5 % and the BIC must prefer one component (the
    second component costs 3 parameters × ln 800 ≈ 20 BIC units, far more than any chance gain)."""
    rng = np.random.default_rng(0)
    bimodal = np.r_[rng.normal(0, 1, 400), rng.normal(5, 1, 400)]
    unimodal = rng.normal(0, 1, 800)
    d_bi, p_bi = dip_test(bimodal)
    d_uni, p_uni = dip_test(unimodal)
    assert p_bi < 1e-3 and p_uni > 0.05 and d_bi > d_uni
    assert delta_bic(bimodal) > 50 and delta_bic(unimodal) < 0


def test_per_bin_tests_only_in_populated_bins():
    rng = np.random.default_rng(1)
    m_h = np.r_[np.full(200, -0.6), np.full(200, 0.1), np.full(10, 0.4)]
    alpha = np.r_[rng.normal(0, 0.02, 100), rng.normal(0.25, 0.02, 100), rng.normal(0, 0.02, 210)]
    tests = bimodality_by_bin({"alpha_m": alpha}, m_h, edges=(-1.0, -0.5, 0.0, 0.25, 0.5), min_n=30)
    assert [(t.bin_lo, t.bin_hi, t.n) for t in tests] == [(-1.0, -0.5, 200), (0.0, 0.25, 200)]
    assert tests[0].dip_p < 1e-3 and tests[0].delta_bic > 10
    assert tests[1].dip_p > 0.05 and tests[1].delta_bic < 10


def test_fisher_coordinate_does_not_invent_a_second_mode():
    """α continuous and unimodal, cut in two by a threshold; latents = α + noise. The out-of-fold Fisher
    projection is linear, so it stays unimodal (dip p > 0.05) — a threshold alone must not create bimodality.
    With a genuinely bimodal α the same coordinate is bimodal (p < 0.001)."""
    rng = np.random.default_rng(4)
    n = 1500
    for alpha, bimodal in ((rng.normal(0, 1, n), False),
                           (np.where(rng.random(n) < 0.3, 3.0, -1.5) + rng.normal(0, 0.6, n), True)):
        y = alpha > 0.5
        z = np.column_stack([alpha + rng.normal(0, 0.3, n), rng.normal(size=(n, 5))])
        coord = fisher_oof_coordinate(z, y, fold_ids(y, 5, 0))
        assert np.isfinite(coord).all()
        assert np.corrcoef(coord, alpha)[0, 1] > 0.9
        _, p = dip_test(coord)
        assert (p < 1e-3) if bimodal else (p > 0.05)


def test_unsupervised_mixture_recovers_separable_populations():
    """Two well-separated Gaussian clouds in 6-D (6σ apart along one axis) with the class = cloud: ARI ≈ 1 and
    purity ≈ 1, against a majority baseline of 0.7. Overlapping identical clouds: ARI ≈ 0."""
    rng = np.random.default_rng(2)
    n = 400
    high = rng.random(n) < 0.3
    z = rng.normal(size=(n, 6))
    z[high, 0] += 6.0
    m_h = rng.uniform(-0.9, 0.4, n)
    scores = unsupervised_by_bin(z, m_h, high, edges=(-1.0, -0.25, 0.5), min_n=30)
    whole = scores[0]
    assert whole.bin_lo is None and whole.n == n
    assert whole.ari > 0.95 and whole.purity > 0.98
    assert whole.purity_baseline == pytest.approx(max(high.mean(), 1 - high.mean()))
    assert all(s.ari > 0.9 for s in scores[1:])
    noise = unsupervised_by_bin(rng.normal(size=(n, 6)), m_h, high, edges=(-1.0, 0.5), min_n=30)
    assert abs(noise[0].ari) < 0.05


def test_tracks_means_and_standard_errors():
    """Latents built as z = (2·[M/H], +1 for high-α / −1 for low-α, noise σ = 0.5): the track means must follow
    2·[M/H] and ±1 within 4 standard errors, and the s.e. must be σ/√n: with n ≈ 130 per bin the sample std has a
    relative error of 1/√(2n) ≈ 6 %, so 25 % (4 of those) holds for all 30 bins."""
    rng = np.random.default_rng(3)
    n = 4000
    m_h = rng.uniform(-1.0, 0.5, n)
    high = rng.random(n) < 0.5
    z = np.column_stack([2 * m_h + rng.normal(0, 0.5, n), np.where(high, 1.0, -1.0) + rng.normal(0, 0.5, n)])
    tracks = sequence_tracks(z, m_h, high, edges=np.linspace(-1.0, 0.5, 16))
    for tr in tracks:
        centre = 0.5 * (tr.bin_lo + tr.bin_hi)
        sign = 1.0 if tr.name == "high_alpha" else -1.0
        # uniform [M/H] in a 0.1-wide bin adds 2·0.1/√12 to the spread of dimension 1
        assert np.all(np.abs(tr.mean[:, 0] - 2 * centre) < 4 * tr.se[:, 0])
        assert np.all(np.abs(tr.mean[:, 1] - sign) < 4 * tr.se[:, 1])
        np.testing.assert_allclose(tr.se[:, 1], 0.5 / np.sqrt(tr.n), rtol=0.25)
    alpha = rng.uniform(0, 0.4, n)
    fixed = fixed_metallicity_track(np.column_stack([alpha * 10, m_h]), m_h, alpha)
    assert np.all(np.abs(fixed.mean[:, 0] - 10 * 0.5 * (fixed.bin_lo + fixed.bin_hi)) < 0.1)
    assert np.all(np.abs(fixed.mean[:, 1] + 0.4) < 0.05)          # only stars with |[M/H] + 0.4| < 0.2
    rows = fixed.rows("pristine")
    assert rows[0]["bin_var"] == "alpha_m" and rows[0]["subject"].endswith(":z1")
