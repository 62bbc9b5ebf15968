"""The inference engine: z = μ outputs match the published golden values; streaming in any chunking gives
the same answers; metrics and their 'unavailable' marker; seeded draws."""
from __future__ import annotations

import numpy as np
import pytest

from shared.inference import CHI2_FULL, CHI2_NO_CORRELATIONS, infer, infer_all, infer_stream
from shared.metrics import zscores
from shared.model import load_published

REF = "reference/scatter_vae_apogee"


@pytest.fixture(scope="module")
def model_and_golden(shared_dir):
    with np.load(shared_dir / REF / "golden.npz") as g:
        golden = {k: g[k] for k in g.files}
    return load_published(shared_dir / REF / "weight.pt"), golden


@pytest.mark.parametrize("fold_bn,rel", [(False, 1e-5), (True, 3e-5)])
def test_outputs_at_mu_match_golden(model_and_golden, fold_bn, rel):
    """Default path: 1e-5 of each row's scale, as the model itself. Folded batch norm: the merged weights
    reorder float32 sums, observed ≤ 1.4e-5; 3e-5 still catches any real error (a wrong fold is O(1))."""
    model, g = model_and_golden
    r = infer_all(model, g["x"], g["x_err"], batch_size=10, fold_bn=fold_bn)

    def tol(ref):
        return rel * np.abs(ref).max(axis=-1, keepdims=True) if ref.ndim > 1 else rel * np.abs(ref)

    for ours, key in (("latent_mu", "mu"), ("xhat", "xhat_at_mu"), ("scatter", "scatter_at_mu"), ("nll", "nll_at_mu"),
                      ("kl", "kld")):
        assert (np.abs(r[ours] - g[key]) <= tol(g[key])).all(), ours
    assert np.allclose(r["latent_sigma"], np.exp(0.5 * g["log_var"]), rtol=2e-5)
    z = zscores(g["x"], r["xhat"], g["x_err"], r["scatter"])
    assert np.allclose(r["zscore_rms_scatter"], np.sqrt((z ** 2).mean(1)), rtol=1e-5)
    assert r["chi2_method"] == CHI2_NO_CORRELATIONS
    assert np.isnan(r["chi2_bp"]).all() and np.isnan(r["chi2_dof_rp"]).all()


def test_chunking_does_not_change_results(model_and_golden):
    model, g = model_and_golden
    whole = infer_all(model, g["x"], g["x_err"])
    pieces = list(infer(model, g["x"], g["x_err"], batch_size=9))
    assert [p["start"] for p in pieces] == list(range(0, 64, 9))
    chunks = [{"x": g["x"][a:b], "x_err": g["x_err"][a:b]} for a, b in ((0, 5), (5, 40), (40, 64))]
    streamed = list(infer_stream(model, chunks, batch_size=16))
    assert [s["start"] for s in streamed] == [0, 5, 40]
    joined = np.concatenate([s["xhat"] for s in streamed])
    # equal up to float32 rounding: BLAS blocks sums differently for different batch sizes
    scale = np.abs(whole["xhat"]).max(axis=1, keepdims=True)
    assert (np.abs(joined - whole["xhat"]) <= 1e-5 * scale).all()
    assert np.allclose(np.concatenate([p["nll"] for p in pieces]), whole["nll"], rtol=1e-5)


def test_full_covariance_chi2_when_correlations_given(model_and_golden):
    model, g = model_and_golden
    zero = np.zeros((64, 1485))
    r = infer_all(model, g["x"], g["x_err"], correlations={"bp": zero, "rp": zero})
    assert r["chi2_method"] == CHI2_FULL
    z = zscores(g["x"], r["xhat"], g["x_err"], r["scatter"])
    assert np.allclose(r["chi2_dof_rp_scatter"], (z[:, 55:] ** 2).sum(1) / 55, rtol=1e-6)
    assert np.allclose(r["chi2_rp_scatter"], (z[:, 55:] ** 2).sum(1), rtol=1e-6)       # plain χ², not per dof
    assert (r["chi2_bp"] >= r["chi2_bp_scatter"]).all()      # adding ŝ² to Σ can only lower χ²


def test_draws_are_seeded_and_required_seed(model_and_golden):
    model, g = model_and_golden
    a = infer_all(model, g["x"][:8], draws=3, seed=4)
    b = infer_all(model, g["x"][:8], draws=3, seed=4)
    assert a["xhat_draws"].shape == (8, 3, 110) and np.array_equal(a["xhat_draws"], b["xhat_draws"])
    assert not np.allclose(a["xhat_draws"][:, 0], a["xhat"])
    with pytest.raises(ValueError, match="seed"):
        infer_all(model, g["x"][:8], draws=2)
