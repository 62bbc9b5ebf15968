"""The full-covariance likelihood (shared.covariance) and training with it: equal to the diagonal one without
correlations, equal to a dense reference with them (value and gradients), fallbacks counted, exact resume,
and the χ² inference path against the float64 reference."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from db.job_status import JobStatus
from shared import covariance
from shared.model import VAEConfig, gaussian_nll
from shared.training import TrainConfig, fit_scatter_vae
from shared.xp import N_CORR, TRIL

SMALL = VAEConfig(input_dim=110, latent_dim=3, hidden=(24, 12))


def random_correlation(rng, strength=0.5) -> np.ndarray:
    """A well-conditioned 55×55 correlation matrix (smallest eigenvalue ≳ 1/(1 + 55·strength²))."""
    a = rng.normal(size=(55, 55)) * strength
    c = a @ a.T + np.eye(55)
    d = np.sqrt(np.diag(c))
    return c / np.outer(d, d)


def correlation_with_smallest_eigenvalue(rng, smallest: float) -> np.ndarray:
    """A random correlation matrix with exactly this smallest eigenvalue: R = (R0 − a·I)/(1 − a) keeps the unit
    diagonal and maps every eigenvalue λ to (λ − a)/(1 − a)."""
    base = random_correlation(rng, 0.8)
    lam0 = np.linalg.eigvalsh(base)[0]
    a = (lam0 - smallest) / (1 - smallest)
    return (base - a * np.eye(55)) / (1 - a)


def star_inputs(rng, n):
    x, xhat = rng.normal(size=(n, 110)), rng.normal(size=(n, 110))
    err, s = rng.uniform(0.2, 1.0, (n, 110)), rng.uniform(0.05, 1.0, (n, 110))
    return x, xhat, err, s


def dense_nll(x, err, xhat, s, r_bp, r_rp) -> torch.Tensor:
    """−log N(x | x̂, Σ + diag ŝ²) + 55·ln√(2π) per band, by a dense solve and slogdet (differentiable)."""
    total = 0.0
    for sl, r in ((slice(0, 55), r_bp), (slice(55, 110), r_rp)):
        e = err[:, sl]
        cov = e[:, :, None] * r * e[:, None, :] + torch.diag_embed(s[:, sl] ** 2)
        d = (x - xhat)[:, sl]
        quad = (d * torch.linalg.solve(cov, d.unsqueeze(-1)).squeeze(-1)).sum(-1)
        total = total + 0.5 * (quad + torch.linalg.slogdet(cov)[1])
    return total


def test_full_equals_diagonal_when_correlations_are_zero_value_and_gradients():
    rng = np.random.default_rng(11)
    x, xhat, err, s = (torch.tensor(a) for a in star_inputs(rng, 7))
    xhat.requires_grad_(True)
    s.requires_grad_(True)
    full = covariance.gaussian_nll_full(x, err, xhat, s, torch.zeros(7, 2, N_CORR, dtype=torch.float64))
    diag = gaussian_nll(x, err, xhat, s)
    assert torch.allclose(full, diag, rtol=1e-12, atol=1e-12)
    g_full = torch.autograd.grad(full.sum(), (xhat, s))
    g_diag = torch.autograd.grad(diag.sum(), (xhat, s))
    for a, b in zip(g_full, g_diag):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)


def test_full_matches_dense_reference_with_correlations_value_and_gradients():
    rng = np.random.default_rng(5)
    n = 4
    x, xhat, err, s = (torch.tensor(a) for a in star_inputs(rng, n))
    rs = [np.stack([random_correlation(rng) for _ in range(n)]) for _ in range(2)]
    flat = torch.tensor(np.stack([r[:, TRIL[0], TRIL[1]] for r in rs], axis=1))
    leaves = [xhat.clone().requires_grad_(True), s.clone().requires_grad_(True)]
    full = covariance.gaussian_nll_full(x, err, leaves[0], leaves[1], flat)
    ref_leaves = [xhat.clone().requires_grad_(True), s.clone().requires_grad_(True)]
    ref = dense_nll(x, err, ref_leaves[0], ref_leaves[1], torch.tensor(rs[0]), torch.tensor(rs[1]))
    assert torch.allclose(full, ref, rtol=1e-10)
    # and the correlations matter: not the diagonal value
    assert not torch.allclose(full, gaussian_nll(x, err, xhat, s), rtol=1e-3)
    weights = torch.tensor(rng.uniform(0.5, 2.0, n))        # a non-uniform upstream gradient
    g = torch.autograd.grad((full * weights).sum(), leaves)
    g_ref = torch.autograd.grad((ref * weights).sum(), ref_leaves)
    for a, b in zip(g, g_ref):
        assert torch.isfinite(a).all() and torch.allclose(a, b, rtol=1e-8, atol=1e-10)


def test_gradients_finite_in_float32_with_tiny_scatter_and_non_positive_definite_gives_nan():
    rng = np.random.default_rng(2)
    x, xhat, err, s = (torch.tensor(a, dtype=torch.float32) for a in star_inputs(rng, 3))
    s = torch.full_like(s, 1e-6).requires_grad_(True)          # C ≈ R: only the correlations keep it definite
    flat = torch.tensor(np.stack([random_correlation(rng, 0.8)[TRIL] for _ in range(6)]).reshape(3, 2, N_CORR),
                        dtype=torch.float32)
    xhat.requires_grad_(True)
    nll = covariance.gaussian_nll_full(x, err, xhat, s, flat)
    nll.sum().backward()
    assert torch.isfinite(nll).all() and torch.isfinite(xhat.grad).all() and torch.isfinite(s.grad).all()
    bad = flat.clone()
    bad[1, 0] = -0.5                                             # ρ = −0.5 everywhere: not positive definite
    out = covariance.gaussian_nll_full(x, err, xhat.detach(), s.detach(), bad)
    assert torch.isfinite(out[[0, 2]]).all() and torch.isnan(out[1])


def symmetric(flat: np.ndarray) -> np.ndarray:
    """(M, 55, 55) symmetric correlation matrices in float64 from (M, 1485) triangles."""
    low = covariance.correlation_matrices(torch.tensor(np.asarray(flat, np.float64))).numpy()
    return low + np.tril(low, -1).transpose(0, 2, 1)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(a.detach().double() - b.detach()) / torch.linalg.vector_norm(b.detach()))


@pytest.mark.parametrize("smallest", [1.5e-3, 2e-2])   # just above MIN_EIGENVALUE; the lowest real DR3 records
def test_ill_conditioned_but_accepted_correlations_give_finite_right_gradients(smallest):
    """Float32 training inputs, tiny scatter (C ≈ R): the likelihood and its gradients stay finite and within
    the float32 rounding bound (κ·ε) of a dense float64 solve, on the CPU kernel and on the torch path CUDA uses."""
    rng = np.random.default_rng(17)
    n = 3
    x, xhat, err, _ = star_inputs(rng, n)
    s = np.full((n, 110), 1e-4)
    flat = np.stack([np.stack([correlation_with_smallest_eigenvalue(rng, smallest)[TRIL] for _ in range(2)])
                     for _ in range(n)]).astype(np.float32)
    assert covariance.usable_correlations(flat.reshape(-1, N_CORR)).all()     # training keeps them all
    r = [torch.tensor(symmetric(flat[:, b])) for b in range(2)]
    kappa = max(float(np.linalg.cond(m)) for band in r for m in band.numpy())
    assert kappa > 1 / smallest                                                # really ill-conditioned
    x32, xhat32, err32, s32 = (torch.tensor(a, dtype=torch.float32) for a in (x, xhat, err, s))
    leaves = [xhat32.clone().requires_grad_(True), s32.clone().requires_grad_(True)]
    got = covariance.gaussian_nll_full(x32, err32, *leaves, torch.tensor(flat))
    g = torch.autograd.grad(got.sum(), leaves)
    ref_leaves = [xhat32.double().requires_grad_(True), s32.double().requires_grad_(True)]
    ref = dense_nll(x32.double(), err32.double(), *ref_leaves, r[0], r[1])
    g_ref = torch.autograd.grad(ref.sum(), ref_leaves)
    tol = 10 * kappa * torch.finfo(torch.float32).eps
    assert torch.isfinite(got).all() and all(torch.isfinite(t).all() for t in g)
    assert rel_err(got, ref) < tol and all(rel_err(a, b) < tol for a, b in zip(g, g_ref))
    # the torch.linalg path in float32 (CUDA's): a float32 Cholesky of C, error within n·κ·ε
    e = covariance._bands_as_rows(err32)
    w = covariance._bands_as_rows(x32 - xhat32) / e
    rr = (covariance._bands_as_rows(s32) / e).square()
    flat_rows = torch.cat([torch.tensor(flat[:, 0]), torch.tensor(flat[:, 1])])
    nll32, alpha32, cinv32 = covariance._whitened_nll_torch(w, rr, flat_rows, grad=True)
    nll64, alpha64, cinv64 = covariance._whitened_nll_torch(w.double(), rr.double(), flat_rows.double(), grad=True)
    assert all(torch.isfinite(t).all() for t in (nll32, alpha32, cinv32))
    bound = 55 * kappa * torch.finfo(torch.float32).eps
    assert all(rel_err(a, b) < bound for a, b in ((nll32, nll64), (alpha32, alpha64), (cinv32, cinv64)))


def test_a_star_with_only_bp_correlations_is_full_in_bp_and_diagonal_in_rp():
    """RP correlations zero (what a band that falls back trains with): the BP half is the full likelihood, the
    RP half exactly the diagonal one, values and gradients."""
    rng = np.random.default_rng(23)
    n = 4
    x, xhat, err, s = (torch.tensor(a) for a in star_inputs(rng, n))
    r_bp = np.stack([random_correlation(rng) for _ in range(n)])
    flat = torch.zeros(n, 2, N_CORR, dtype=torch.float64)
    flat[:, 0] = torch.tensor(r_bp[:, TRIL[0], TRIL[1]])
    leaves = [xhat.clone().requires_grad_(True), s.clone().requires_grad_(True)]
    got = covariance.gaussian_nll_full(x, err, *leaves, flat)
    eye = torch.eye(55, dtype=torch.float64).expand(n, 55, 55)
    ref_leaves = [xhat.clone().requires_grad_(True), s.clone().requires_grad_(True)]
    ref = dense_nll(x, err, *ref_leaves, torch.tensor(r_bp), eye)
    assert torch.allclose(got, ref, rtol=1e-10)
    g = torch.autograd.grad(got.sum(), leaves)
    g_ref = torch.autograd.grad(ref.sum(), ref_leaves)
    diag_leaves = [xhat.clone().requires_grad_(True), s.clone().requires_grad_(True)]
    g_diag = torch.autograd.grad(gaussian_nll(x, err, *diag_leaves).sum(), diag_leaves)
    for a, b, c in zip(g, g_ref, g_diag):
        assert torch.isfinite(a).all() and torch.allclose(a, b, rtol=1e-8, atol=1e-10)
        assert torch.allclose(a[:, 55:], c[:, 55:], rtol=1e-10, atol=1e-12)      # RP: the diagonal gradient
        assert not torch.allclose(a[:, :55], c[:, :55], rtol=1e-3)               # BP: the correlations count


def test_usable_correlations_rule():
    rng = np.random.default_rng(3)
    good = random_correlation(rng)[TRIL]
    near_singular = np.full(N_CORR, 0.9999)             # smallest eigenvalue 1e-4 < MIN_EIGENVALUE
    mild = np.full(N_CORR, 0.99)                        # smallest eigenvalue 0.01: usable
    indefinite = np.full(N_CORR, -0.5)
    with_nan = good.copy()
    with_nan[100] = np.nan
    flat = np.stack([good, near_singular, mild, indefinite, with_nan, np.zeros(N_CORR)])
    assert covariance.usable_correlations(flat).tolist() == [True, False, True, False, False, True]
    with pytest.raises(ValueError, match="1485"):
        covariance.usable_correlations(flat[:, :100])


def survey_like(n=360, seed=0, missing=(), singular=(), only_bp=(), near_singular=(), smallest=None):
    """x, x_err (N, 110) with correlated noise and their correlations (N, 2, 1485); rows in ``missing`` have
    NaN correlations in BP, rows in ``singular`` a non-definite RP matrix, rows in ``only_bp`` no RP ones (NaN,
    as read from the archive), rows in ``near_singular`` a positive definite BP matrix with smallest eigenvalue
    1e-5 (< MIN_EIGENVALUE). ``smallest``: every star's matrix has that smallest eigenvalue."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 3))
    truth = z @ rng.normal(size=(3, 110))
    r = random_correlation(rng, 0.6) if smallest is None else correlation_with_smallest_eigenvalue(rng, smallest)
    chol = np.linalg.cholesky(r)
    err = rng.uniform(0.05, 0.2, size=(n, 110))
    noise = np.concatenate([rng.normal(size=(n, 55)) @ chol.T, rng.normal(size=(n, 55)) @ chol.T], axis=1)
    corr = np.tile(r[TRIL].astype(np.float32), (n, 2, 1))
    corr[list(missing), 0] = np.nan
    corr[list(singular), 1] = -0.5
    corr[list(only_bp), 1] = np.nan
    corr[list(near_singular), 0] = correlation_with_smallest_eigenvalue(rng, 1e-5)[TRIL]
    return truth + err * noise, err, corr


def cfg(**kw):
    base = dict(epochs=4, batch_size=64, lr=1e-3, t0=4, compile=False, checkpoint_every=2, threads=1,
                likelihood="full")
    base.update(kw)
    return TrainConfig(**base)


def test_training_counts_fallbacks_and_reports_them():
    x, e, corr = survey_like(missing=(3, 10, 11), singular=(10, 20))
    res = fit_scatter_vae(x, e, SMALL, cfg(epochs=2, checkpoint_every=0), correlations=corr)
    lk = res.summary()["likelihood"]
    assert lk["kind"] == "full" and lk["stars"] == 360
    assert lk["diagonal_fallback"] == {"bp": 3, "rp": 2, "stars": 4}
    assert all(math.isfinite(m["loss"]) for m in res.history)
    diag = fit_scatter_vae(x, e, SMALL, cfg(epochs=2, checkpoint_every=0, likelihood="diagonal"))
    assert diag.summary()["likelihood"] == {"kind": "diagonal"}
    # same seed, same data: the full likelihood is a different objective
    assert not math.isclose(res.history[-1]["val_nll"], diag.history[-1]["val_nll"], rel_tol=1e-3)


def test_training_counts_per_band_fallbacks_only_bp_and_near_singular_on_ill_conditioned_data():
    """Every star's matrices have smallest eigenvalue 1.5e-3 (accepted); three stars have no RP correlations and
    two a BP matrix below the threshold (one of them both): counted per band and per star, training finite."""
    x, e, corr = survey_like(only_bp=(1, 2, 3), near_singular=(3, 4), smallest=1.5e-3)
    res = fit_scatter_vae(x, e, SMALL, cfg(epochs=2, checkpoint_every=0), correlations=corr)
    assert res.summary()["likelihood"]["diagonal_fallback"] == {"bp": 2, "rp": 3, "stars": 4}
    assert all(math.isfinite(m["loss"]) and math.isfinite(m["val_nll"]) for m in res.history)
    assert all(torch.isfinite(p).all() for p in res.model.parameters())


def test_full_likelihood_needs_correlations_and_the_baseline_refuses_it():
    x, e, corr = survey_like(n=100)
    with pytest.raises(ValueError, match="needs the stars' XP correlations"):
        fit_scatter_vae(x, e, SMALL, cfg())
    with pytest.raises(ValueError, match=r"\(N, 2, 1485\)"):
        fit_scatter_vae(x, e, SMALL, cfg(), correlations=corr[:, 0])
    with pytest.raises(ValueError, match="likelihood must be one of"):
        TrainConfig(likelihood="Full")
    from shared.baseline import fit_label_baseline
    with pytest.raises(ValueError, match="diagonal likelihood only"):
        fit_label_baseline(np.zeros((100, 4)), x, e, train_config=cfg())


def test_full_likelihood_training_resumes_bit_identically(tmp_path):
    x, e, corr = survey_like(missing=(5,))
    full = fit_scatter_vae(x, e, SMALL, cfg(), checkpoint_path=tmp_path / "a.pt", correlations=corr)
    calls = []

    def stop_after_two():
        calls.append(1)
        return len(calls) >= 2

    part = fit_scatter_vae(x, e, SMALL, cfg(), checkpoint_path=tmp_path / "b.pt", should_stop=stop_after_two,
                           correlations=corr)
    assert part.stopped and part.epochs_completed == 2
    # another likelihood or other correlations cannot continue this run
    with pytest.raises(ValueError, match="likelihood"):
        fit_scatter_vae(x, e, SMALL, cfg(likelihood="diagonal"), checkpoint_path=tmp_path / "b.pt")
    other = corr.copy()
    other[7] *= 0.5
    with pytest.raises(ValueError, match="data differ"):
        fit_scatter_vae(x, e, SMALL, cfg(), checkpoint_path=tmp_path / "b.pt", correlations=other)
    resumed = fit_scatter_vae(x, e, SMALL, cfg(), checkpoint_path=tmp_path / "b.pt", correlations=corr)
    assert resumed.epochs_completed == 4
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(part.model.state_dict()["to_mu.weight"], b["to_mu.weight"])


def test_inference_chi2_matches_the_float64_reference_also_for_a_nearly_singular_covariance():
    from shared.inference import infer_batch
    from shared.metrics import chi2_bands
    from shared.model import ScatterVAE
    rng = np.random.default_rng(8)
    n = 40
    x, _, err, _ = star_inputs(rng, n)
    flat = {b: np.stack([random_correlation(rng)[TRIL] for _ in range(n)]).astype(np.float32) for b in ("bp", "rp")}
    # row 0: valid in float64 (smallest eigenvalue ~1e-7) but beyond float32: must be redone, not NaN
    flat["rp"][0] = np.float32(1 - 1e-7)
    model = ScatterVAE(SMALL).eval()
    out = infer_batch(model, x, err, correlations=flat)
    ref = chi2_bands(x, out["xhat"], err, flat, scatter=out["scatter"])
    for b in ("bp", "rp"):
        for got, want in ((out[f"chi2_dof_{b}"], ref[b]), (out[f"chi2_dof_{b}_scatter"], ref[f"{b}_scatter"])):
            assert np.isfinite(got).all() and np.allclose(got, want, rtol=1e-9)
    # the row needs float64: a float32 factorisation of it is far off (what the test guards against)
    w = torch.tensor((out["xhat"][:1, 55:] - x[:1, 55:]) / err[:1, 55:])
    q32 = covariance.whitened_chi2(w, torch.tensor(flat["rp"][:1]), dtype=torch.float32)[0].item()
    assert not math.isclose(q32, ref["rp"][0] * 55, rel_tol=1e-3)


def test_threaded_chunks_give_the_same_chi2():
    rng = np.random.default_rng(4)
    m = 700
    w = torch.tensor(rng.normal(size=(m, 55)))
    r = torch.tensor(rng.uniform(0, 2, (m, 55)))
    base = random_correlation(rng)[TRIL]
    flat = torch.tensor(np.tile(base, (m, 1)) * rng.uniform(0.5, 1.0, (m, 1)))
    one = covariance.whitened_chi2(w, flat, r, threads=1)
    two = covariance.whitened_chi2(w, flat, r, threads=2)
    assert all(torch.equal(a, b) for a, b in zip(one, two))
    stored = flat.float()                     # as stored: the compiled kernel's path, also split across threads
    assert all(torch.equal(a, b) for a, b in zip(covariance.whitened_chi2(w, stored, r, threads=1),
                                                 covariance.whitened_chi2(w, stored, r, threads=2)))
    lower = covariance.correlation_matrices(flat[:3]).numpy()
    full = lower + np.tril(lower, -1).transpose(0, 2, 1) + np.stack([np.diag(v) for v in r[:3].numpy()])
    expect = np.einsum("ni,nij,nj->n", w[:3].numpy(), np.linalg.inv(full), w[:3].numpy())
    assert np.allclose(one[1][:3].numpy(), expect, rtol=1e-10)


def test_compiled_chi2_kernel_agrees_with_lapack_including_bad_rows():
    assert covariance.COMPILED, "shared._wchi2 is not built: install gcc and re-run `make venv`"
    rng = np.random.default_rng(21)
    m = 203                                   # not a multiple of the kernel's eight lanes
    w = torch.tensor(rng.normal(size=(m, 55)))
    r = torch.tensor(rng.uniform(0, 3, (m, 55)))
    flat = torch.tensor(np.stack([random_correlation(rng, rng.uniform(0.1, 0.6))[TRIL] for _ in range(m)]),
                        dtype=torch.float32)
    flat[5] = -0.5                            # not positive definite in either variant
    flat[9, 17] = float("nan")
    w[12, 3] = float("inf")
    got = covariance._quadratic_forms_compiled(w, flat, r)
    want = covariance._quadratic_forms_torch(w, flat, r, torch.float64)
    for a, b in zip(got, want):
        nan = torch.isnan(b)
        assert torch.equal(torch.isnan(a), nan) and nan[[5, 9, 12]].all() and nan.sum() == 3
        assert torch.allclose(a[~nan], b[~nan], rtol=1e-12, atol=0)
    only_plain = covariance._quadratic_forms_compiled(w, flat, None)
    assert len(only_plain) == 1 and torch.equal(only_plain[0].nan_to_num(-1.0), got[0].nan_to_num(-1.0))
    with pytest.raises(ValueError, match="inconsistent buffer sizes"):
        covariance._c_quadratic_forms(flat.numpy(), w.numpy(), None, np.empty(m + 1))


def test_compiled_likelihood_kernel_agrees_with_lapack_and_marks_bad_rows():
    assert covariance.COMPILED, "shared._wchi2 is not built: install gcc and re-run `make venv`"
    rng = np.random.default_rng(31)
    m = 19
    w = torch.tensor(rng.normal(size=(m, 55)))
    r = torch.tensor(rng.uniform(0.01, 2, (m, 55)))
    flat = torch.tensor(np.stack([random_correlation(rng)[TRIL] for _ in range(m)]), dtype=torch.float32)
    flat[4] = -0.5
    got = covariance._whitened_nll_compiled(w, r, flat, grad=True)
    want = covariance._whitened_nll_torch(w, r, flat, grad=True)
    ok = torch.ones(m, dtype=torch.bool)
    ok[4] = False
    assert torch.isnan(got[0][4]) and torch.isnan(got[1][4]).all() and torch.isnan(got[2][4]).all()
    for a, b in zip(got, want):
        assert torch.allclose(a[ok], b[ok], rtol=1e-10, atol=1e-12)
    nll, alpha, cinv = covariance._whitened_nll_compiled(w, r, flat, grad=False)
    assert cinv is None and torch.equal(nll[ok], got[0][ok])


def store_survey_with_some_correlations(engine) -> int:
    """300 simulated stars in the database, correlations stored for two in three of those with both bands;
    returns how many stars with both bands have none stored (the expected diagonal fallbacks)."""
    from testdb import write_spectra_with_some_correlations

    from simulator.survey import generate
    batch, _, _, phot = generate(300, 4, with_correlations=True)
    ok = ~batch["bp_missing"] & ~batch["rp_missing"]
    with_corr = ok & (np.arange(len(ok)) % 3 != 0)
    write_spectra_with_some_correlations(engine, batch, phot, with_corr)
    return int((ok & ~with_corr).sum())


def test_train_job_with_full_likelihood_reads_correlations_and_counts_stars_without(engine, tmp_path, settings_for):
    """Through the trainer service on a database (both backends): correlations stored for some stars only;
    the job trains, registers, and counts the others as diagonal fallbacks. An unknown likelihood fails."""
    from db import job_store as jobs_db
    from jobqueue import registry, runner
    settings = settings_for(home=tmp_path / "home")
    without = store_survey_with_some_correlations(engine)
    params = {"name": "full-m", "selection": {}, "model": {"latent_dim": 3, "hidden": [16, 8]},
              "train": {"epochs": 2, "batch_size": 64, "lr": 1e-3, "t0": 2, "compile": False, "threads": 1,
                        "checkpoint_every": 0, "likelihood": "full"}}
    job = jobs_db.create_job(engine, "train", registry.KINDS["train"].queue, params, max_attempts=1)
    status = runner.execute(job, settings=settings, engine=engine)
    assert status == JobStatus.SUCCEEDED, jobs_db.get_job(engine, job)["error"]
    result = jobs_db.get_job(engine, job)["result"]
    assert result["likelihood"] == "full"
    assert result["diagonal_fallback_stars"] == without > 0
    bad = dict(params, name="full-x", train=dict(params["train"], likelihood="exact"))
    job = jobs_db.create_job(engine, "train", registry.KINDS["train"].queue, bad, max_attempts=1)
    assert runner.execute(job, settings=settings, engine=engine) == JobStatus.FAILED
    assert "likelihood must be one of" in jobs_db.get_job(engine, job)["error"]


def test_cli_train_likelihood_full_prints_the_fallback_count_and_demo_offers_it(sqlite_url, tmp_path, monkeypatch):
    """`xpvae train --likelihood full --wait` (embedded SQLite) trains and its summary says the likelihood and
    how many stars fell back; `xpvae demo` takes --likelihood too."""
    import re

    from click.testing import CliRunner

    from db.engine import create_engine
    from db.schema import metadata
    from xpvae.cli import main
    monkeypatch.setenv("XPVAE_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("XPVAE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XPVAE_BROKER_URL", raising=False)
    eng = create_engine(sqlite_url)
    with eng.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(table.delete())
    without = store_survey_with_some_correlations(eng)
    eng.dispose()
    out = CliRunner().invoke(main, ["train", "--name", "cli-full", "--epochs", "2", "--batch-size", "64", "--lr",
                                    "1e-3", "--t0", "2", "--latent-dim", "3", "--hidden", "16,8",
                                    "--likelihood", "full", "--wait"])
    assert out.exit_code == 0, out.output
    assert re.search(r"likelihood: full$", out.output, re.M), out.output
    assert re.search(rf"diagonal_fallback_stars: {without}$", out.output, re.M), out.output
    demo = CliRunner().invoke(main, ["demo", "--help"])
    assert demo.exit_code == 0 and "--likelihood [diagonal|full]" in demo.output
