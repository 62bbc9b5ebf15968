"""The project's science claim, proved end to end on the survey simulator where the truth is known.

Two surveys share every star, magnitude and noise draw (same seed) and differ only in the simulator's
``alpha_signal``: 1 (the α-element features follow [α/M]) or 0 (the spectra carry no [α/M] information at all,
while the labels and the Patil high/low-α classes stay exactly the same). An sVAE is trained on each, WITHOUT
labels, and the [α/M] analysis (analysis.alpha.run_alpha_analysis, the function the analysis job calls) asks
whether labels + latents classify high/low-α better than the labels Teff, log g, [M/H] alone.

Sizes are chosen for CI (≈1.5–2.5 min on 2 busy cores): 6000 stars with G < 15 (bright, like APOGEE × XP), every star
labelled (the sVAE never sees labels, so this only enlarges the classified sample), 160 epochs with small
batches and a high learning rate so the latent space is not collapsed. bench/bench_science.py runs the larger
versions; docs/science-validation.md records the figures.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from analysis.alpha import KEY_DIFFERENCE, run_alpha_analysis
from ingest.simulate.survey import labelled_survey
from shared.inference import infer_all
from shared.model import VAEConfig
from shared.training import TrainConfig, fit_scatter_vae

N_STARS, SEED, G_MAX = 6000, 7, 15.0
TRAIN = dict(epochs=160, batch_size=256, lr=2e-3, t0=160, seed=SEED, threads=1, compile=False, checkpoint_every=0)
FEATURES = ("latents", "labels", "labels_latents")


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
                             n_boot=400, n_trees=100, samples=("pristine",), feature_sets=FEATURES,
                             draw_figures=False)
    return res.headline["samples"]["pristine"]


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


def test_latents_add_alpha_information_beyond_labels_when_spectra_carry_it(alpha_on):
    """alpha_signal = 1: on the pristine sample (~4000 stars), labels + latents beat labels alone and the PAIRED
    bootstrap 95 % interval of the balanced-accuracy gain lies above 0. Measured gain ≈ 0.07 with an interval
    ≈ ±0.015; requiring the lower end > 0.02 leaves room for platform-level numerical differences while failing
    if the latents carried no α information."""
    h = alpha_on["headline"]
    gain, lo, hi = h["differences_balanced_accuracy"][KEY_DIFFERENCE]
    assert h["latents_add_alpha_information"] is True
    assert lo > 0.02, (gain, lo, hi)
    assert h["balanced_accuracy"]["labels_latents"][0] > h["balanced_accuracy"]["labels"][0] + 0.03


def test_no_gain_when_spectra_carry_no_alpha_information(alpha_off, alpha_on):
    """alpha_signal = 0 (same stars, labels, classes and noise; only the α features no longer follow [α/M]):
    the latents cannot know [α/M], so the gain must be small and its interval must (nearly) reach 0, and it must
    be far below the gain with the signal on (paired surveys): the positive result above is caused by the α
    features. Measured in repeated runs: gain 0.007 [−0.004, 0.018] and 0.014 [0.003, 0.025] here (training is
    not bit-reproducible from run to run) vs 0.069 [0.057, 0.083] with the signal on. The small positive
    residual is real, not α: the spectra re-measure [M/H] and Teff and so average down label noise. Hence the
    pristine sample (σ_[M/H] < 0.05 dex) and the bounds: point gain < 0.025 and lower end < 0.01 (both fail for
    any α-like effect of the α = 1 size), and on − off > 0.03."""
    diffs_off = alpha_off["headline"]["differences_balanced_accuracy"]
    gain_off, lo_off, _ = diffs_off[KEY_DIFFERENCE]
    gain_on = alpha_on["headline"]["differences_balanced_accuracy"][KEY_DIFFERENCE][0]
    assert gain_off < 0.025 and lo_off < 0.01, diffs_off
    assert gain_on - gain_off > 0.03, (gain_on, gain_off)
    # identical labels and classes in both surveys: the comparison is paired by construction
    assert np.array_equal(alpha_on["truth_high"], alpha_off["truth_high"])
