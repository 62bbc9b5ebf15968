"""The project's science claim, proved end to end on the survey simulator where the truth is known.

Two surveys share every star, magnitude and noise draw (same seed) and differ only in the simulator's
``alpha_signal``: 1 (the α-element features follow [α/M]) or 0 (the spectra carry no [α/M] information at all,
while the labels and the Patil high/low-α classes stay exactly the same). An sVAE is trained on each, WITHOUT
labels, and the [α/M] analysis (analysis.alpha.run_alpha_analysis, the function the analysis job calls) gives
its verdict on the two pristine samples: do labels + latents classify high/low-α better than Teff, log g,
[M/H] denoised by the latents' own estimates of them? Without the signal it must say "no"; with it "yes", and
the latents' gain over the labels alone must rise on the same stars. On the forward-model simulator one of these
per-sample properties fails on the pristine sample (KNOWN_FAILURES below, with what was measured).

Sizes are chosen for CI (≈2–3 min on 2 busy cores): 6000 stars with G < 15 (bright, like APOGEE × XP), every star
labelled (the sVAE never sees labels, so this only enlarges the classified sample), 160 epochs with small
batches and a high learning rate so the latent space is not collapsed, forests of 50 trees as in the
calibration benchmark. The seed is used by no other test. bench/bench_alpha_null.py measures the verdict's
false-positive rate and power over 20 surveys; docs/science-validation.md records the figures.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from analysis.alpha import KEY_DIFFERENCE, TEST_DIFFERENCE, run_alpha_analysis
from shared.inference import infer_all
from shared.model import VAEConfig
from shared.training import TrainConfig, fit_scatter_vae
from simulator.survey import labelled_survey

N_STARS, SEED, G_MAX = 6000, 9307, 15.0
TRAIN = dict(epochs=160, batch_size=256, lr=2e-3, t0=160, seed=SEED, threads=1, compile=False, checkpoint_every=0)
FEATURES = ("labels", "labels_latents", "labels_denoised")
SAMPLES = ("pristine", "pristine_cool_giants")


def _survey_and_latents(alpha_signal: float, db_path) -> dict:
    """Simulate, cross-match labels through the database (primary rows, as the pipeline does), train the sVAE on
    the G-flux-normalised spectra and return posterior-mean latents with the labels and photometry."""
    d = labelled_survey(N_STARS, SEED, alpha_signal=alpha_signal, label_fraction=1.0, g_max=G_MAX, db_path=db_path)
    batch, truth, lab, phot, x, e = d["batch"], d["truth"], d["labels"], d["phot"], d["x"], d["e"]
    threads = torch.get_num_threads()
    try:
        res = fit_scatter_vae(x, e, VAEConfig(), TrainConfig(**TRAIN))
    finally:
        torch.set_num_threads(threads)
    ok = np.isfinite(x).all(1) & np.isfinite(e).all(1)
    xs, es = res.normalisation.apply(x[ok], e[ok])
    out = infer_all(res.model, xs, es, include_reconstructions=False)
    z = np.full((len(x), 6), np.nan)
    z[ok] = out["latent_mu"]
    sigma = np.full((len(x), 6), np.nan)
    sigma[ok] = out["latent_sigma"]
    keep = lab["labelled"] & ok
    photometry = {"phot_g_mean_mag": phot["phot_g_mean_mag"][keep],
                  "bp_rp": (phot["phot_bp_mean_mag"] - phot["phot_rp_mean_mag"])[keep]}
    return {"z": z[keep], "sigma": sigma[keep], "labels": {k: v[keep] for k, v in lab.items()},
            "photometry": photometry, "truth_high": truth["high_alpha"][keep], "result": res, "x": x, "e": e,
            "ok": ok, "all_labels": lab, "source_id": np.asarray(batch["source_id"])}


def _analyse(d: dict, out_dir) -> dict:
    res = run_alpha_analysis(d["z"], d["labels"], d["photometry"], out_dir=out_dir, seed=SEED, n_folds=5,
                             n_boot=400, n_trees=50, samples=SAMPLES, feature_sets=FEATURES, draw_figures=False,
                             classifiers_only=True)
    return res.headline["samples"]


@pytest.fixture(scope="module")
def alpha_on(tmp_path_factory):
    d = _survey_and_latents(1.0, tmp_path_factory.mktemp("sci") / "labels_on.sqlite")
    d["headline"] = _analyse(d, tmp_path_factory.mktemp("alpha_on"))
    return d


@pytest.fixture(scope="module")
def alpha_off(tmp_path_factory):
    d = _survey_and_latents(0.0, tmp_path_factory.mktemp("sci") / "labels_off.sqlite")
    d["headline"] = _analyse(d, tmp_path_factory.mktemp("alpha_off"))
    return d


def test_latent_space_is_not_collapsed(alpha_on, alpha_off):
    """A control that passes because the model learnt nothing would prove nothing: both models must use several
    latent dimensions (mean posterior σ well below the prior's 1; a collapsed dimension sits at ≈ 1) and their
    latents must encode the stellar parameters: a cross-validated 25-nearest-neighbour regression from the
    latents recovers Teff with R² > 0.8 (measured ≈ 0.95; an untrained or collapsed encoder gives ≈ 0)."""
    from sklearn.model_selection import cross_val_predict
    from sklearn.neighbors import KNeighborsRegressor
    for d in (alpha_on, alpha_off):
        active = np.nanmean(d["sigma"], axis=0) < 0.5
        assert active.sum() >= 2, np.nanmean(d["sigma"], axis=0)
        z = d["z"][:, active]
        z = (z - z.mean(0)) / z.std(0)
        teff = d["labels"]["teff"]
        ok = np.isfinite(teff)
        pred = cross_val_predict(KNeighborsRegressor(25), z[ok], teff[ok], cv=3)
        r2 = 1 - np.mean((pred - teff[ok]) ** 2) / np.var(teff[ok])
        assert r2 > 0.8, r2


# Measured on the forward-model simulator (the default since 2026-12-01; docs/science-validation.md, "On the
# forward-model simulator"), this seed, deterministic at one thread: one of the six per-sample properties below
# does not hold on the pristine sample — the older gain (e) − (c) rises with the α signal, but by less than the
# 0.03 this test asked for on the earlier simulator (the sweep's median older gain at α = 1 fell from 0.028 to
# 0.018 on 16 surveys: the α signal reaching the latents is weaker, not one seed's bad luck). It stays here as a
# strict known failure with what was measured, so that a fix shows up as a failing unexpected pass; the other
# five are asserted. (The false "yes" at alpha_signal 0 on this sample, p = 0.022 with one cross-validation, is
# gone since the verdict averages three: analysis.classify.NULL_REPEATS.)
KNOWN_FAILURES = {
    ("rise", "pristine"): "forward simulator: old gain rises 0.027 - 0.006 = 0.021 < 0.03 (cool giants 0.034); "
                          "the α signal reaching the latents is weaker (sweep median old gain at α 1: 0.018, "
                          "ridge 0.028)",
}


def _sample_params(kind: str) -> list:
    return [pytest.param(s, marks=pytest.mark.xfail(reason=KNOWN_FAILURES[kind, s], strict=True))
            if (kind, s) in KNOWN_FAILURES else s for s in SAMPLES]


@pytest.mark.parametrize("sample", _sample_params("yes"))
def test_verdict_is_yes_when_spectra_carry_alpha(alpha_on, alpha_off, sample):
    """alpha_signal = 1: the verdict is "yes" (p < 0.025 for (e) − (f), its interval above 0), on the same stars,
    labels and classes as the alpha_signal 0 survey (the comparison is paired by construction)."""
    h = alpha_on["headline"][sample]
    assert h["latents_add_alpha_information"] is True, (sample, h["alpha_test"])
    assert h["alpha_test"]["p_value"] < 0.025 and h["alpha_test"]["gain"][1] > 0, h["alpha_test"]
    assert np.array_equal(alpha_on["truth_high"], alpha_off["truth_high"])


@pytest.mark.parametrize("sample", _sample_params("rise"))
def test_latents_gain_over_labels_rises_with_the_alpha_signal(alpha_on, alpha_off, sample):
    """alpha_signal = 1 against 0 on the same stars: the gain of labels + latents over the labels alone is above 0
    with α and rises by more than 0.03 in balanced accuracy — the α features, not the analysis, make the latents
    informative."""
    on = alpha_on["headline"][sample]["differences_balanced_accuracy"][KEY_DIFFERENCE]
    off = alpha_off["headline"][sample]["differences_balanced_accuracy"][KEY_DIFFERENCE]
    assert on[1] > 0 and on[0] - off[0] > 0.03, (sample, on, off)


@pytest.mark.parametrize("sample", _sample_params("no"))
def test_verdict_is_no_when_spectra_carry_no_alpha(alpha_off, sample):
    """alpha_signal = 0 (same stars, labels, classes and noise; only the α features no longer follow [α/M]):
    the verdict must be "no", while the latents still re-measure the labels (R² of their [M/H] estimate > 0.5)
    — the situation in which the older gain over the labels alone, (e) − (c), can say "yes" without any α."""
    h = alpha_off["headline"][sample]
    assert h["alpha_test"]["latent_estimate_r2"]["m_h"] > 0.5, h["alpha_test"]
    # the older gain is still reported beside it
    assert KEY_DIFFERENCE in h["differences_balanced_accuracy"]
    assert TEST_DIFFERENCE in h["differences_balanced_accuracy"]
    assert h["latents_add_alpha_information"] is False, (sample, h["alpha_test"])
    assert h["alpha_test"]["p_value"] >= 0.025, h["alpha_test"]


# --- P(high-α) for the stars APOGEE never observed (issue 15, part 1) -------------------------------------------
# Half of the stars (random, seeded) keep their labels and train the catalogue's classifier on the pristine ones;
# the other half play the stars APOGEE never observed: their class is known to the simulator only. The seed is
# used by no other test.
CATALOGUE_SEED = 9317


def _catalogue(d: dict, features: np.ndarray | None = None):
    """(catalogue, never-labelled mask, label-based class) with the latent means and widths as features."""
    from analysis.alpha_catalogue import fit_alpha_catalogue
    from analysis.samples import alpha_split, select_samples
    known = np.random.default_rng(CATALOGUE_SEED).random(len(d["z"])) < 0.5
    split = alpha_split(d["labels"])
    train = known & select_samples(d["labels"], d["photometry"]).masks["pristine"] & split.valid
    x = np.column_stack([d["z"], d["sigma"]]) if features is None else features
    return fit_alpha_catalogue(x, train, split.high, sample="pristine", seed=CATALOGUE_SEED), ~known, split.high


def _auc_gain(p: np.ndarray, baseline: np.ndarray, y: np.ndarray, n_boot: int = 500) -> tuple[float, float, float]:
    """AUC(p) − AUC(baseline) for class y on the same stars, with a paired bootstrap 95 % interval."""
    from sklearn.metrics import roc_auc_score
    rng = np.random.default_rng(CATALOGUE_SEED)
    gain = roc_auc_score(y, p) - roc_auc_score(y, baseline)
    draws = []
    for _ in range(n_boot):
        i = rng.integers(0, len(y), len(y))
        if 0 < y[i].sum() < len(i):
            draws.append(roc_auc_score(y[i], p[i]) - roc_auc_score(y[i], baseline[i]))
    lo, hi = np.percentile(draws, [2.5, 97.5])
    return float(gain), float(lo), float(hi)



# Calibration tolerance on the never-labelled half (≈ 3000 stars), as in test_alpha_catalogue.py: every
# reliability bin holding ≥ 50 stars within 0.15 of the diagonal (> 2σ of a bin's binomial noise) and the
# expected calibration error below 0.05 (binomial noise alone gives ≈ 0.015 at this size).
TOL, MIN_BIN, ECE_TOL = 0.15, 50, 0.05
# Without α in the spectra, P(high-α) may know the class only through what the latents know about [M/H]: its
# AUC for the true class on the never-labelled stars may exceed that of the same classifier fed only the labels'
# [M/H] by less than this margin, and not significantly (paired bootstrap interval reaching 0).
AUC_MARGIN = 0.02


def test_catalogue_is_calibrated_on_never_labelled_stars(alpha_on):
    """P(high-α) from the simulator-trained sVAE's latents, fitted on the labelled half's pristine stars, is
    calibrated on the other half against the simulator's true class (not the noisy labels' class)."""
    from analysis.calibration import calibration
    cat, unlabelled, _ = _catalogue(alpha_on)
    cal = calibration(cat.p_all[unlabelled], alpha_on["truth_high"][unlabelled])
    bins = [b for b in cal.bins if b.n >= MIN_BIN]
    assert len(bins) >= 3, cal.bins
    assert max(abs(b.observed - b.predicted) for b in bins) < TOL, cal.bins
    assert cal.ece < ECE_TOL, (cal.ece, cal.bins)
    assert cat.threshold is not None and cat.n_candidates > 0


def test_catalogue_without_alpha_knows_no_more_than_metallicity(alpha_off):
    """alpha_signal 0: the latents' P(high-α) ranks the true classes of the never-labelled stars no better than
    a classifier that sees only the labels' [M/H] (same training stars, same calibration)."""
    cat, unlabelled, _ = _catalogue(alpha_off)
    m_h_only, _, _ = _catalogue(alpha_off, alpha_off["labels"]["m_h"][:, None])
    truth = alpha_off["truth_high"][unlabelled]
    gain, lo, _ = _auc_gain(cat.p_all[unlabelled], m_h_only.p_all[unlabelled], truth)
    assert gain < AUC_MARGIN and lo <= 0, (gain, lo)
