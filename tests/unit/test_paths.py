"""One rule for path arguments (shared.paths): ~ expanded, globs expanded and sorted, nothing matched = error;
the CLI refuses what the loader would refuse, before any job exists."""
from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from shared.paths import expand_path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for rel in ("b.csv", "a.csv", "sub/c.csv", "sub/deeper/d.csv", "notes.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x\n")
    return tmp_path


def test_globs_expand_sorted_and_double_star_crosses_folders(tree):
    assert [p.name for p in expand_path(tree / "*.csv")] == ["a.csv", "b.csv"]
    assert [p.relative_to(tree).as_posix() for p in expand_path(f"{tree}/**/*.csv")] == \
        ["a.csv", "b.csv", "sub/c.csv", "sub/deeper/d.csv"]
    assert expand_path(tree / "sub") == [tree / "sub"]          # a folder is named as it is; the loader walks it


def test_tilde_is_expanded_in_paths_and_globs(tree, monkeypatch):
    monkeypatch.setenv("HOME", str(tree))
    assert expand_path("~/notes.txt") == [tree / "notes.txt"]
    assert [p.name for p in expand_path("~/[ab].csv")] == ["a.csv", "b.csv"]


def test_nothing_matched_is_an_error_naming_the_argument(tree):
    with pytest.raises(FileNotFoundError, match=r"nothing\*\.csv: no file or directory matches"):
        expand_path(f"{tree}/nothing*.csv")
    with pytest.raises(FileNotFoundError, match=r"gone\.csv: no such file or directory"):
        expand_path(tree / "gone.csv")


def test_cli_refuses_an_unmatched_glob_before_any_job(tree, monkeypatch):
    from xpvae.cli import main
    monkeypatch.setenv("XPVAE_DATABASE_URL", "sqlite:///" + str(tree / "never-created.db"))
    res = CliRunner().invoke(main, ["ingest", "gaia-xp", f"{tree}/nothing*.csv"])
    assert res.exit_code == 2 and "nothing*.csv: no file or directory matches" in res.output, res.output
    assert not (tree / "never-created.db").exists()
