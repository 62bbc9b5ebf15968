"""Device resolution and thread handling."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from shared.device import configure_threads, resolve_device
from shared.model import VAEConfig
from shared.training import TrainConfig, fit_scatter_vae


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="tpu"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            resolve_device("cuda")


def test_training_leaves_thread_count_and_reports_progress():
    before = torch.get_num_threads()
    target = 1 if before != 1 else 2
    x = np.random.default_rng(0).normal(size=(100, 110))
    seen = []
    fit_scatter_vae(x, np.full_like(x, 0.1), VAEConfig(hidden=(8,)),
                    TrainConfig(epochs=2, batch_size=32, compile=False, checkpoint_every=0, threads=target),
                    progress=lambda done, total, msg: seen.append((done, total, msg)))
    assert torch.get_num_threads() == before
    assert [(d, t) for d, t, _ in seen] == [(1, 2), (2, 2)] and "epoch 1" in seen[0][2]
    assert configure_threads(before) == before


def test_threads_follow_omp_num_threads_when_set(monkeypatch):
    """A worker started with OMP_NUM_THREADS=1 (several workers on one machine) must not be widened to every
    CPU by torch: two-thread training on a loaded 2-core host ran 40-80x slower than one thread."""
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert configure_threads(None) == 1 and torch.get_num_threads() == 1
        monkeypatch.delenv("OMP_NUM_THREADS")
        assert configure_threads(None) >= 1
    finally:
        torch.set_num_threads(before)
