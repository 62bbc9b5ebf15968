"""ModelArtifact: round trip, the published release, clear errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from shared.artifact import ModelArtifact
from shared.model import VAEConfig
from shared.preprocessing import Normalisation
from shared.training import TrainConfig, fit_scatter_vae

REF = "reference/scatter_vae_apogee"


def test_trained_model_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 110))
    e = np.full_like(x, 0.1)
    res = fit_scatter_vae(x, e, VAEConfig(hidden=(16, 8)),
                          TrainConfig(epochs=1, batch_size=32, compile=False, threads=1, checkpoint_every=0))
    art = ModelArtifact.from_training(res)
    path = art.save(tmp_path / "m" / "model.pt")
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]          # no temp file left behind
    back = ModelArtifact.load(path)
    assert back.kind == "svae" and back.config == art.config and back.created == art.created
    assert np.array_equal(back.normalisation.sig, res.normalisation.sig)
    assert torch.equal(back.splits["test"], torch.from_numpy(res.split["test"]))
    assert back.training["epochs_completed"] == 1 and back.version
    xs = torch.randn(5, 110)
    with torch.no_grad():
        assert torch.equal(back.build_model()(xs)[0], res.model(xs)[0])


def test_published_artifact_reproduces_golden(shared_dir, tmp_path):
    art = ModelArtifact.from_published(shared_dir / REF / "weight.pt")
    assert "identity normalisation" in art.training["note"] and art.training["epochs_completed"] == 5000
    Normalisation(np.arange(110.0), np.full(110, 2.0)).save_npz(tmp_path / "norm.npz")
    with_norm = ModelArtifact.from_published(shared_dir / REF / "weight.pt", tmp_path / "norm.npz")
    assert np.array_equal(with_norm.normalisation.mu, np.arange(110.0))
    model = ModelArtifact.load(art.save(tmp_path / "pub.pt")).build_model()
    with np.load(shared_dir / REF / "golden.npz") as g:
        with torch.no_grad():
            mu = model(torch.from_numpy(g["x"]))[2].numpy()
        assert np.allclose(mu, g["mu"], rtol=0, atol=2e-5)


def test_load_rejects_other_files(tmp_path):
    p = tmp_path / "x.pt"
    torch.save({"something": 1}, p)
    with pytest.raises(ValueError, match="x.pt"):
        ModelArtifact.load(p)
    with pytest.raises(ValueError, match="kind"):
        ModelArtifact(kind="nope", config={}, normalisation=Normalisation([0.0], [1.0]), state_dict={})
