"""Defaults a user sees agree between code, `--help` and the README: each is defined once, in shared.defaults."""
from __future__ import annotations

import inspect
import re
from pathlib import Path

from click.testing import CliRunner

from shared import defaults as D
from xpvae.cli import main

README = Path(__file__).resolve().parents[2] / "README.md"


def _help(*cmd: str) -> str:
    res = CliRunner().invoke(main, [*cmd, "--help"], catch_exceptions=False, terminal_width=200)
    assert res.exit_code == 0, res.output
    return " ".join(res.output.split())          # click wraps lines: compare on single spaces


def _shown_default(text: str, flag: str) -> str:
    m = re.search(re.escape(flag) + r"\b.*?\[default: ([^\];]+)", text)
    assert m, f"{flag}: no [default: ...] in help"
    return m.group(1).strip()


def test_cli_help_shows_the_code_defaults():
    assert f"about {D.STARS_PER_SHARD:,} stars each" in _help("infer")
    alpha = _help("analyze", "alpha")
    assert _shown_default(alpha, "--bootstrap") == str(D.ALPHA_BOOTSTRAP)
    assert _shown_default(alpha, "--folds") == str(D.ALPHA_FOLDS)
    assert _shown_default(alpha, "--seed") == str(D.SEED)
    for cmd in (("train",), ("train-baseline",), ("simulate",)):
        assert _shown_default(_help(*cmd), "--seed") == str(D.SEED), cmd


def test_jobs_and_library_use_the_same_defaults():
    """A job submitted without the value, and a direct library call, get what --help promises."""
    from analysis.alpha import run_alpha_analysis
    from analysis.classify import compare_feature_sets
    from shared.training import TrainConfig, make_split
    for fn in (run_alpha_analysis, compare_feature_sets):
        params = inspect.signature(fn).parameters
        assert params["n_boot"].default == D.ALPHA_BOOTSTRAP and params["n_folds"].default == D.ALPHA_FOLDS
        assert params["seed"].default == D.SEED
    assert TrainConfig().seed == D.SEED and inspect.signature(make_split).parameters["seed"].default == D.SEED


def test_readme_states_the_shard_size():
    text = " ".join(README.read_text(encoding="utf-8").split())
    sizes = re.findall(r"shards \(default ~([\d,]+) stars each", text)
    assert sizes == [f"{D.STARS_PER_SHARD:,}"]


def test_cli_help_shows_the_model_and_job_defaults():
    """Options whose default a job handler or a library class also applies: one constant each."""
    from shared.baseline import BaselineConfig
    from shared.model import VAEConfig
    from shared.training import TrainConfig
    train = _help("train")
    assert _shown_default(train, "--latent-dim") == str(D.LATENT_DIM) == str(VAEConfig().latent_dim)
    assert _shown_default(train, "--hidden") == ",".join(map(str, D.HIDDEN)) == ",".join(map(str, VAEConfig().hidden))
    assert float(_shown_default(train, "--weight-decay")) == D.WEIGHT_DECAY == TrainConfig().weight_decay
    assert int(_shown_default(train, "--checkpoint-every")) == D.CHECKPOINT_EVERY == TrainConfig().checkpoint_every
    assert f"({D.SPLIT[0] * 100:g} % of the selection)" in train and TrainConfig().split == D.SPLIT
    baseline = _help("train-baseline")
    labels = _shown_default(baseline, "--labels TEXT")
    assert labels == ",".join(D.BASELINE_LABELS) == ",".join(BaselineConfig().label_names)
    assert _shown_default(baseline, "--epochs") == str(D.BASELINE_EPOCHS)
    assert _shown_default(_help("infer"), "--batch-size") == str(D.INFER_BATCH_SIZE)
    assert _shown_default(_help("analyze", "reconstruction"), "--max-stars") == str(D.RECONSTRUCTION_MAX_STARS)


def test_published_recipe_agrees_in_code_help_and_readme():
    from shared.recipe import PUBLISHED
    help_text = _help("train")
    assert f"lr {PUBLISHED['lr']:.0e}, batch {PUBLISHED['batch_size']}, {PUBLISHED['epochs']} epochs" in help_text
    readme = " ".join(README.read_text(encoding="utf-8").split())
    stated = re.findall(r"published recipe \(lr ([\de.-]+), batch (\d+), (\d+) epochs, cosine restarts every (\d+)\)",
                        readme)
    assert stated, "README: the published recipe's settings are not stated"
    for lr, batch, epochs, t0 in stated:
        assert (float(lr), int(batch), int(epochs), int(t0)) == \
            (PUBLISHED["lr"], PUBLISHED["batch_size"], PUBLISHED["epochs"], PUBLISHED["t0"])
