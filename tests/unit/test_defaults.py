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
