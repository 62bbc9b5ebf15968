"""No file the project reads may run code: weights, artifacts and training checkpoints are read as tensors and
plain data only (shared.torchio). A crafted pickle whose payload creates a file is refused — by
`xpvae model import-published --weights`, by ModelArtifact.load and where a training checkpoint is expected
(the engine, and a real train job through the CLI) — with one line, and the file is never created. Corrupt or
unreadable weights give one line and exit 2, never a traceback. Checkpoints of both models still resume
bit-identically and load with weights_only=True."""
from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from shared.artifact import ModelArtifact
from shared.baseline import BaselineConfig, fit_label_baseline
from shared.model import VAEConfig
from shared.torchio import TorchFileError, load_plain
from shared.training import TrainConfig, fit_scatter_vae, load_checkpoint

REF = "reference/scatter_vae_apogee"


class _CreatesFile:
    """Unpickling this calls open(path, 'w'): the file appears only if the loader runs the payload."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _evil(path, marker, fmt: str):
    """A weights-shaped file carrying the payload, in torch's zip format, its legacy format or a bare pickle."""
    obj = {"model_state_dict": {"mu.weight": torch.zeros(6, 10)}, "epoch": _CreatesFile(marker),
           "format": "xpvae-train-checkpoint/1"}
    if fmt == "zip":
        torch.save(obj, path)
    elif fmt == "legacy":
        torch.save(obj, path, _use_new_zipfile_serialization=False)
    else:   # no tensor in a bare pickle: it would be refused at the tensor's own global before the payload's
        obj["model_state_dict"] = {"mu.weight": [0.0] * 60}
        path.write_bytes(pickle.dumps(obj, protocol=2))
    return path


@pytest.fixture(params=["zip", "legacy", "pickle"])
def evil(request, tmp_path):
    """(malicious file, marker path it would create); the payload is proven live first."""
    marker = tmp_path / "PAYLOAD_RAN"
    path = _evil(tmp_path / f"evil-{request.param}.pt", marker, request.param)
    if request.param == "pickle":
        pickle.loads(path.read_bytes())
    else:
        torch.load(path, weights_only=False)
    assert marker.exists(), "the payload must be live, or the refusal below proves nothing"
    marker.unlink()
    return path, marker


def test_loader_refuses_payload(evil):
    path, marker = evil
    with pytest.raises(TorchFileError, match=r"refused as .*could run code") as info:
        load_plain(path, "sVAE weights file")
    assert "\n" not in str(info.value) and "open" in str(info.value)
    with pytest.raises(ValueError, match="refused"):
        ModelArtifact.load(path)
    assert not marker.exists()


def test_checkpoint_payload_refused_by_the_engine(evil):
    path, marker = evil
    rng = np.random.default_rng(4)
    x = rng.normal(size=(96, 110))
    e = np.full_like(x, 0.1)
    with pytest.raises(ValueError, match=r"refused as training checkpoint.*delete it to train from the first epoch"):
        fit_scatter_vae(x, e, VAEConfig(hidden=(8, 4)), TrainConfig(epochs=1, batch_size=32, compile=False, threads=1),
                        checkpoint_path=path)
    assert not marker.exists()


@pytest.fixture
def cli(tmp_path, monkeypatch):
    """Invoke the CLI on the embedded default in a fresh XPVAE_HOME; returns (invoke, home)."""
    from db.engine import get_engine
    from xpvae.cli import main
    home = tmp_path / "home"
    monkeypatch.setenv("XPVAE_HOME", str(home))
    monkeypatch.delenv("XPVAE_SHARED", raising=False)   # the default: the vendored reference/
    monkeypatch.setenv("XPVAE_RETRY_BACKOFF_S", "0")
    for var in ("XPVAE_DATABASE_URL", "XPVAE_BROKER_URL"):
        monkeypatch.delenv(var, raising=False)
    runner = CliRunner()
    assert runner.invoke(main, ["db", "upgrade"]).exit_code == 0
    yield (lambda *args: runner.invoke(main, [str(a) for a in args])), home
    get_engine(_home_db(home)).dispose()


def _home_db(home) -> str:
    """The embedded default database under XPVAE_HOME, which the CLI uses here."""
    return f"sqlite:///{home / 'xpvae.sqlite'}"


def _one_line_error(res, code: int, *needles: str) -> None:
    assert res.exit_code == code, res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert "Traceback" not in res.output
    for n in needles:
        assert n in lines[0], lines[0]


def test_import_published_refuses_payload(evil, cli):
    path, marker = evil
    invoke, home = cli
    res = invoke("model", "import-published", "--weights", path)
    _one_line_error(res, 2, "refused as sVAE weights file", str(path))
    assert not marker.exists()
    assert invoke("models", "--json").output.strip() == "[]"
    assert not (home / "models").exists() or not any((home / "models").iterdir())


def test_train_job_refuses_payload_where_its_checkpoint_is_expected(tmp_path, cli):
    """A real train job through the CLI: its checkpoint path holds the crafted file."""
    import sqlalchemy as sa

    from db.engine import get_engine
    from db.spectra import write_photometry, write_xp_batch
    from simulator.survey import generate
    invoke, home = cli
    batch, _, _, phot = generate(80, 9, with_correlations=False)
    engine = get_engine(_home_db(home))
    with engine.begin() as conn:
        write_xp_batch(conn, batch, "t")
        write_photometry(conn, phot)
        next_job = (conn.execute(sa.text("SELECT max(id) FROM jobs")).scalar() or 0) + 1
    marker = tmp_path / "PAYLOAD_RAN"
    _evil((home / "checkpoints").mkdir(parents=True) or home / "checkpoints" / f"train-job-{next_job}.pt",
          marker, "zip")
    res = invoke("train", "--name", "evil-ckpt", "--epochs", "1", "--batch-size", "16", "--hidden", "8,4")
    assert res.exit_code == 1, res.output
    assert f"job {next_job} failed" in res.stderr and "refused as training checkpoint" in res.stderr, res.stderr
    assert "Traceback" not in res.output
    assert not marker.exists()
    assert invoke("models", "--json").output.strip() == "[]"


def _truncated(tmp_path, shared_dir):
    data = (shared_dir / REF / "weight.pt").read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 3])
    return tmp_path / "trunc.pt"


@pytest.mark.parametrize("case,needle", [
    ("text", "not a readable sVAE weights file"),
    ("empty", "not a readable sVAE weights file"),
    ("truncated", "not a readable sVAE weights file"),
    ("tensor", "no model_state_dict of tensors"),
    ("strings", "no model_state_dict of tensors"),
    ("wrong_keys", "not the published sVAE's weights"),
    ("wrong_shape", "not the published sVAE's weights"),
])
def test_bad_weights_file_is_one_line_exit_2(case, needle, tmp_path, cli, shared_dir):
    invoke, _ = cli
    p = tmp_path / f"{case}.pt"
    good = torch.load(shared_dir / REF / "weight.pt", map_location="cpu", weights_only=True)["model_state_dict"]
    if case == "text":
        p.write_text("not a weights file\n")
    elif case == "empty":
        p.write_bytes(b"")
    elif case == "truncated":
        p = _truncated(tmp_path, shared_dir)
    elif case == "tensor":
        torch.save(torch.zeros(3), p)
    elif case == "strings":
        torch.save({"model_state_dict": {"encoder.0.0.weight": "abc"}}, p)
    elif case == "wrong_keys":
        torch.save({"model_state_dict": {**good, "extra.weight": torch.zeros(2)}}, p)
    else:
        torch.save({"model_state_dict": {**good, "mu.bias": torch.zeros(99)}}, p)
    res = invoke("model", "import-published", "--weights", p)
    _one_line_error(res, 2, needle)
    assert invoke("models", "--json").output.strip() == "[]"


@pytest.mark.parametrize("case", ["text", "object_array", "npy"])
def test_bad_norm_file_is_one_line_exit_2(case, tmp_path, cli):
    invoke, _ = cli
    p = tmp_path / f"norm-{case}.npz"
    if case == "text":
        p.write_text("mu,sig\n")
    elif case == "object_array":     # np.load must not unpickle it
        np.savez(p, mu=np.array([{"a": 1}] * 110, dtype=object), sig=np.ones(110))
    else:
        with open(p, "wb") as f:
            np.save(f, np.ones(110))
    res = invoke("model", "import-published", "--norm", p)
    _one_line_error(res, 2, str(p))


def _small_data(seed=2):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(160, 110))
    e = np.full_like(x, 0.1)
    labels = rng.normal(size=(160, 4))
    return x, e, labels


@pytest.mark.parametrize("kind", ["svae", "label_baseline"])
def test_checkpoints_are_plain_data_and_resume_bit_identically(kind, tmp_path):
    x, e, labels = _small_data()
    cfg = TrainConfig(epochs=4, batch_size=32, lr=1e-3, t0=3, compile=False, checkpoint_every=2, threads=1, seed=77)

    def fit(ckpt, **kw):
        if kind == "svae":
            return fit_scatter_vae(x, e, VAEConfig(hidden=(16, 8)), cfg, checkpoint_path=ckpt, **kw)
        return fit_label_baseline(labels, x, e, BaselineConfig(hidden=(16, 16)), cfg, checkpoint_path=ckpt, **kw)

    full = fit(tmp_path / "full.pt")
    calls = iter(range(100))
    part = fit(tmp_path / "part.pt", should_stop=lambda: next(calls) >= 1)
    assert part.stopped and part.epochs_completed == 2
    raw = torch.load(tmp_path / "part.pt", map_location="cpu", weights_only=True)   # no allow-list needed
    assert isinstance(raw["rng"]["shuffle"], torch.Tensor) and raw["optimizer"]["state"]
    assert isinstance(raw["extra"]["split"]["train"], torch.Tensor)
    resumed = fit(tmp_path / "part.pt")
    assert resumed.epochs_completed == 4
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k


def test_checkpoint_of_an_older_version_with_numpy_is_refused_not_run(tmp_path):
    """A checkpoint holding numpy arrays (as earlier versions wrote) needs numpy's pickle globals: refused."""
    p = tmp_path / "old.pt"
    torch.save({"format": "xpvae-train-checkpoint/1", "extra": {"split": np.arange(3)}}, p)
    with pytest.raises(ValueError, match="refused as training checkpoint.*delete it"):
        load_checkpoint(p)


def test_published_weights_and_artifacts_still_load(tmp_path, shared_dir):
    art = ModelArtifact.from_published(shared_dir / REF / "weight.pt")
    assert art.training["epochs_completed"] == 5000 and art.lacks_normalisation
    back = ModelArtifact.load(art.save(tmp_path / "a.pt"))
    assert back.lacks_normalisation and back.config == art.config
    buf = io.BytesIO()
    torch.save(back.to_dict(), buf)
    buf.seek(0)
    assert torch.load(buf, weights_only=True)["format"] == "xpvae-model/1"
