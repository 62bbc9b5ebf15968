"""Training recipes on small simulated surveys: held-out NLL after the same epochs, published vs auto, and
the (batch, lr) grid the auto rule was read from (shared/recipe.py).

Every run trains the sVAE on the same simulated survey (G-flux normalised, split 80/10/10 with one seed) on
one CPU thread and reports the mean NLL per star on the test split at z = μ (lower is better), as the
trainer's summary does.

python -m bench recipe [--quick]            the comparison (and the grid and checks unless --quick; ~25 min)
"""
from __future__ import annotations

import time

import numpy as np

from shared import recipe as rcp
from shared.preprocessing import normalise_by_flux
from shared.training import TrainConfig, fit_scatter_vae


def survey(n_stars: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from simulator.survey import generate
    batch, _, _, phot = generate(n_stars, seed, mag_range=(9.0, 16.0), with_correlations=False)
    return normalise_by_flux(batch.coefficients110(), batch.errors110(), phot["phot_g_mean_flux"])


def held_out_nll(x: np.ndarray, e: np.ndarray, settings: dict, seed: int = 0) -> tuple[float, float]:
    """(test NLL per star, seconds) for one run with these batch_size/lr/epochs/t0."""
    from trainer.service import _held_out_summary
    cfg = TrainConfig(seed=seed, threads=1, compile=False, checkpoint_every=0, **settings)
    t0 = time.perf_counter()
    result = fit_scatter_vae(x, e, train_config=cfg)
    return _held_out_summary(result, x, e)["test_nll"], time.perf_counter() - t0


def _row(label: str, settings: dict, nll: float, secs: float) -> None:
    print(f"  {label:<34} batch {settings['batch_size']:>5}  lr {settings['lr']:<7g} epochs {settings['epochs']:>4} "
          f"t0 {settings['t0']:>4}  held-out NLL {nll:8.2f}  ({secs:.0f} s)", flush=True)


def compare(n_stars: int, epochs: int, seed: int = 3) -> dict[str, float]:
    """Published vs auto after the same epochs (the user's --epochs)."""
    from shared.preprocessing import finite_rows
    x, e = survey(n_stars, seed)
    n_train = rcp.n_train_rows(int(finite_rows(x, e)[0].sum()), TrainConfig().split)   # as the trainer counts
    print(f"survey of {n_stars:,} stars ({n_train:,} training spectra), {epochs} epochs, survey seed {seed}:")
    out = {}
    for name in rcp.RECIPES:
        r = rcp.choose(name, n_train, {"epochs": epochs})
        nll, secs = held_out_nll(x, e, r.settings)
        _row(f"--recipe {name}", r.settings, nll, secs)
        out[name] = nll
    return out


def grid(n_stars: int, epochs: int, seed: int = 3) -> None:
    """Held-out NLL over batch × lr at fixed epochs (one cosine cycle)."""
    x, e = survey(n_stars, seed)
    print(f"grid on {n_stars:,} stars, {epochs} epochs, one cosine cycle:")
    for batch in (32, 64, 128, 256):
        for lr in (5e-4, 2e-3, 5e-3):
            s = {"batch_size": batch, "lr": lr, "epochs": epochs, "t0": epochs}
            nll, secs = held_out_nll(x, e, s)
            _row("grid", s, nll, secs)


def main(quick: bool = False) -> None:
    compare(3000, 10 if quick else 30)
    if not quick:
        grid(3000, 30)
        compare(20000, 20)
        check(3000, 30, [(64, 2e-3), (128, 2.8e-3), (128, 5e-3), (256, 5e-3)], seed=4)
        check(20000, 20, [(256, 4e-3), (256, 5e-3), (512, 5e-3)], seed=3)


def check(n_stars: int, epochs: int, configs: list[tuple[int, float]], seed: int) -> None:
    """Held-out NLL of a few (batch, lr) pairs on another survey seed: is the grid's optimum robust?"""
    x, e = survey(n_stars, seed)
    print(f"check on {n_stars:,} stars, {epochs} epochs, survey seed {seed}:")
    for batch, lr in configs:
        s = {"batch_size": batch, "lr": lr, "epochs": epochs, "t0": epochs}
        nll, secs = held_out_nll(x, e, s, seed=seed)
        _row("check", s, nll, secs)
