"""The training engine: exact resume, schedule, metrics, divergence, cooperative stop, split."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from shared.model import VAEConfig
from shared.training import TrainConfig, TrainingDiverged, fit_scatter_vae, make_split

SMALL = VAEConfig(input_dim=110, latent_dim=4, hidden=(32, 16, 8))


def data(n=400, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 3))
    x = z @ rng.normal(size=(3, 110)) + 0.1 * rng.normal(size=(n, 110))
    return x, np.full_like(x, 0.1)


def cfg(**kw):
    base = dict(epochs=4, batch_size=64, lr=1e-3, t0=3, compile=False, checkpoint_every=2, threads=1)
    base.update(kw)
    return TrainConfig(**base)


def test_interrupted_and_resumed_run_is_bit_identical(tmp_path):
    x, e = data()
    full = fit_scatter_vae(x, e, SMALL, cfg(), checkpoint_path=tmp_path / "a.pt")
    calls = []

    def stop_after_two():
        calls.append(1)
        return len(calls) >= 2

    part = fit_scatter_vae(x, e, SMALL, cfg(), checkpoint_path=tmp_path / "b.pt", should_stop=stop_after_two)
    assert part.stopped and part.epochs_completed == 2
    resumed = fit_scatter_vae(x, e, SMALL, cfg(), checkpoint_path=tmp_path / "b.pt")
    assert not resumed.stopped and resumed.epochs_completed == 4
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    def strip(h):
        return [{k: v for k, v in m.items() if k != "seconds"} for m in h]

    assert strip(full.history) == strip(resumed.history)
    # and the partial run really was different from the end state (the test would catch a no-op resume)
    assert not torch.equal(part.model.state_dict()["to_mu.weight"], b["to_mu.weight"])


def test_resume_refuses_changed_data_or_recipe(tmp_path):
    x, e = data()
    fit_scatter_vae(x, e, SMALL, cfg(epochs=2), checkpoint_path=tmp_path / "c.pt")
    x2 = x.copy()
    x2[0] += 1
    with pytest.raises(ValueError, match="data differ"):
        fit_scatter_vae(x2, e, SMALL, cfg(epochs=3), checkpoint_path=tmp_path / "c.pt")
    with pytest.raises(ValueError, match="lr"):
        fit_scatter_vae(x, e, SMALL, cfg(epochs=3, lr=1e-2), checkpoint_path=tmp_path / "c.pt")
    again = fit_scatter_vae(x, e, SMALL, cfg(epochs=3), checkpoint_path=tmp_path / "c.pt")   # more epochs: fine
    assert [m["epoch"] for m in again.history] == [1, 2, 3]


def test_metrics_callback_schedule_and_learning():
    x, e = data()
    seen = []
    res = fit_scatter_vae(x, e, SMALL, cfg(epochs=7, checkpoint_every=0), callback=seen.append)
    assert [m["epoch"] for m in seen] == list(range(1, 8))
    assert set(seen[0]) == {"epoch", "loss", "nll", "kl", "val_loss", "val_nll", "val_kl", "lr", "seconds"}
    for m in seen:
        assert math.isclose(m["loss"], m["nll"] + m["kl"], rel_tol=1e-5, abs_tol=1e-4)
    # warm restarts every t0=3 epochs: lr_e = eta_min + (lr − eta_min)(1 + cos(π·((e−1) mod 3)/3))/2
    expect = [1e-10 + (1e-3 - 1e-10) * (1 + math.cos(math.pi * ((k - 1) % 3) / 3)) / 2 for k in range(1, 8)]
    assert np.allclose([m["lr"] for m in seen], expect, rtol=1e-6)
    assert seen[-1]["val_loss"] < seen[0]["val_loss"]
    assert res.split["train"].size == 320 and res.split["validation"].size == 40 and res.split["test"].size == 40


def test_divergence_raises_clear_error():
    x, e = data()
    with pytest.raises(TrainingDiverged, match="non-finite loss at epoch 1"):
        fit_scatter_vae(x, e, SMALL, cfg(epochs=2, lr=1e8))   # absurd step size: weights blow up


def test_split_is_seeded_disjoint_and_complete():
    a, b = make_split(1000, (0.8, 0.1, 0.1), 7), make_split(1000, (0.8, 0.1, 0.1), 7)
    c = make_split(1000, (0.8, 0.1, 0.1), 8)
    assert all(np.array_equal(a[k], b[k]) for k in a) and not np.array_equal(a["test"], c["test"])
    allrows = np.concatenate(list(a.values()))
    assert np.array_equal(np.sort(allrows), np.arange(1000)) and [v.size for v in a.values()] == [800, 100, 100]


def test_bad_configs_are_rejected():
    with pytest.raises(ValueError, match="split"):
        TrainConfig(split=(0.5, 0.1, 0.1))
    x, e = data(50)
    with pytest.raises(ValueError, match="batch"):
        fit_scatter_vae(x, e, SMALL, cfg(batch_size=1024))
    with pytest.raises(ValueError, match="unknown"):
        TrainConfig.from_dict({"epochz": 3})
    assert TrainConfig.from_dict(TrainConfig().to_dict()) == TrainConfig()
