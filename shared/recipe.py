"""Training recipes: which batch size, learning rate, epochs and schedule a run uses (docs/science.md §5).

The published recipe (lr 1e-4, batch 1024, 5000 epochs, cosine restarts every 500) was tuned for ~360k
training spectra: ~350 optimiser steps an epoch, ~1.8 M steps in all. On a survey of a few thousand stars
the same settings give 2 steps an epoch, and a few dozen epochs move the weights barely at all. What a run
can learn is set by the number of optimiser steps, so the `auto` recipe chooses from that:

- batch: the largest power of two (32–1024) that still gives at least MIN_STEPS_PER_EPOCH steps an epoch;
- epochs (unless given): enough for about TARGET_STEPS steps, within EPOCH_RANGE;
- learning rate: AUTO_LR (one cosine cycle over the whole run, t0 = epochs), the best of the measured grid
  on small simulated surveys (bench/bench_recipe.py; figures in docs/science.md §5);
- from a training set big enough that the published recipe itself has ≥ PUBLISHED_MIN_STEPS steps an
  epoch, auto keeps its batch and learning rate.

Explicitly given settings always win over the recipe's choice; the choice and its reason go into the
training summary.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from shared.errors import InputError

RECIPES = ("auto", "published")
PUBLISHED = {"batch_size": 1024, "lr": 1e-4, "epochs": 5000, "t0": 500}
MIN_STEPS_PER_EPOCH = 32
TARGET_STEPS = 12_000
EPOCH_RANGE = (20, 1000)
BATCH_RANGE = (32, 1024)
AUTO_LR = 2e-3
PUBLISHED_MIN_STEPS = 300
TUNED = ("batch_size", "lr", "epochs", "t0")


@dataclass
class Recipe:
    """The settings a run uses and why. ``settings`` holds batch_size, lr, epochs and t0."""
    name: str
    settings: dict[str, Any]
    reason: str
    explicit: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **self.settings, "explicit": list(self.explicit), "reason": self.reason}


def n_train_rows(n_usable: int, split: tuple[float, float, float]) -> int:
    """Training rows of a split of ``n_usable`` rows (the same rounding as shared.training.make_split)."""
    return n_usable - int(round(n_usable * split[1])) - int(round(n_usable * split[2]))


def _pow2_floor(x: float) -> int:
    return 1 << max(0, int(math.floor(math.log2(max(x, 1.0)))))


def auto_settings(n_train: int) -> tuple[dict[str, Any], str]:
    """The auto recipe's batch size, lr, epochs and t0 for ``n_train`` training rows, and a one-line reason."""
    if n_train // PUBLISHED["batch_size"] >= PUBLISHED_MIN_STEPS:
        s = {"batch_size": PUBLISHED["batch_size"], "lr": PUBLISHED["lr"], "epochs": PUBLISHED["epochs"],
             "t0": PUBLISHED["t0"]}
        return s, (f"{n_train:,} training spectra give {n_train // s['batch_size']} steps an epoch at the published "
                   f"batch of {s['batch_size']}: the published recipe")
    lo, hi = BATCH_RANGE
    batch = min(hi, max(lo, _pow2_floor(n_train / MIN_STEPS_PER_EPOCH)))
    batch = min(batch, _pow2_floor(n_train))          # never more than the training set
    steps = max(1, n_train // batch)
    epochs = min(EPOCH_RANGE[1], max(EPOCH_RANGE[0], math.ceil(TARGET_STEPS / steps)))
    s = {"batch_size": batch, "lr": AUTO_LR, "epochs": epochs, "t0": epochs}
    return s, (f"{n_train:,} training spectra: batch {batch} gives {steps} steps an epoch (published batch "
               f"{PUBLISHED['batch_size']}: {n_train // PUBLISHED['batch_size']}); lr {AUTO_LR:g} in one cosine cycle")


def published_settings(n_train: int) -> tuple[dict[str, Any], str]:
    s = dict(PUBLISHED)
    reason = "the published recipe (tuned for ~360k training spectra × 5000 epochs)"
    if n_train < s["batch_size"]:
        s["batch_size"] = _pow2_floor(n_train)
        reason += f"; batch lowered to {s['batch_size']}: only {n_train:,} training spectra"
    return s, reason


def choose(recipe: str, n_train: int, given: Mapping[str, Any]) -> Recipe:
    """Resolve ``recipe`` for ``n_train`` training rows; ``given`` are the explicitly set training parameters
    (they override the recipe). A given batch larger than the training set is a ValueError."""
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; choose one of {', '.join(RECIPES)}")
    if n_train < 1:
        raise ValueError("no training rows")
    settings, reason = (auto_settings if recipe == "auto" else published_settings)(n_train)
    explicit = [k for k in TUNED if given.get(k) is not None]
    if "epochs" in explicit and "t0" not in explicit and recipe == "auto":
        settings["t0"] = int(given["epochs"])       # keep one cosine cycle over the run the user asked for
    settings.update({k: given[k] for k in explicit})
    if settings["batch_size"] > n_train:
        raise InputError(f"--batch-size {settings['batch_size']} is larger than the training set "
                         f"({n_train:,} spectra); give a smaller one or leave it to --recipe auto")
    if explicit:
        reason += f"; given explicitly: {', '.join(explicit)}"
    return Recipe(recipe, settings, reason, explicit)
