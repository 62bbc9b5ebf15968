"""Training recipes (shared/recipe.py): what `auto` and `published` choose for a training set's size, that
explicit settings win, and that `xpvae train` runs and reports the recipe; `infer` reports progress inside a
shard. The held-out NLL each recipe reaches is measured by `python -m bench recipe`, not here."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from shared import recipe as rcp


@pytest.mark.parametrize("n_train", [33, 500, 1023, 2389, 7_777, 16_000, 100_003, 307_199])
def test_auto_gives_enough_steps_with_a_batch_that_fits(n_train):
    r = rcp.choose("auto", n_train, {})
    b = r.settings["batch_size"]
    assert b & (b - 1) == 0 and rcp.BATCH_RANGE[0] <= b <= min(n_train, rcp.BATCH_RANGE[1])
    if n_train >= rcp.MIN_STEPS_PER_EPOCH * rcp.BATCH_RANGE[0]:
        assert n_train // b >= rcp.MIN_STEPS_PER_EPOCH
        assert n_train // (2 * b) < rcp.MIN_STEPS_PER_EPOCH or b == rcp.BATCH_RANGE[1]   # the largest such batch
    steps = (n_train // b) * r.settings["epochs"]
    assert steps >= rcp.TARGET_STEPS or r.settings["epochs"] == rcp.EPOCH_RANGE[1]
    assert r.settings["t0"] == r.settings["epochs"] and r.settings["lr"] == rcp.AUTO_LR
    assert f"{n_train:,} training spectra" in r.reason and r.explicit == []


def test_auto_is_the_published_recipe_at_the_published_scale():
    r = rcp.choose("auto", 360_000, {})
    assert r.settings == rcp.PUBLISHED and "published recipe" in r.reason


def test_explicit_settings_override_either_recipe():
    r = rcp.choose("auto", 2389, {"epochs": 7, "lr": 3e-4})
    assert (r.settings["epochs"], r.settings["lr"], r.settings["t0"]) == (7, 3e-4, 7)   # one cycle over 7 epochs
    assert r.explicit == ["lr", "epochs"] and "given explicitly: lr, epochs" in r.reason
    p = rcp.choose("published", 2389, {"batch_size": 128, "epochs": 3})
    assert p.settings == {"batch_size": 128, "lr": 1e-4, "epochs": 3, "t0": 500}


def test_published_lowers_a_batch_larger_than_the_training_set_and_says_so():
    r = rcp.choose("published", 700, {})
    assert r.settings["batch_size"] == 512 and "batch lowered to 512" in r.reason


def test_an_explicit_batch_larger_than_the_training_set_is_refused_in_one_line():
    with pytest.raises(ValueError, match="larger than the training set"):
        rcp.choose("auto", 700, {"batch_size": 1024})
    with pytest.raises(ValueError, match="unknown recipe"):
        rcp.choose("fast", 700, {})


def test_n_train_rows_matches_the_split():
    from shared.training import make_split
    for n in (10, 2985, 20_001):
        assert rcp.n_train_rows(n, (0.8, 0.1, 0.1)) == make_split(n)["train"].size


@pytest.fixture(scope="module")
def small_survey(tmp_path_factory):
    """600 simulated stars in a SQLite database; the CLI pointed at it in-process."""
    import os

    from db.engine import create_engine
    from db.migrate import upgrade
    from db.spectra import write_photometry, write_xp_batch
    from simulator.survey import generate
    home = tmp_path_factory.mktemp("recipe")
    url = f"sqlite:///{home / 'x.sqlite'}"
    engine = create_engine(url)
    upgrade(engine)
    batch, _, _, phot = generate(600, 11, with_correlations=False)
    with engine.begin() as conn:
        write_xp_batch(conn, batch, "test")
        write_photometry(conn, phot)
    saved = {k: os.environ.get(k) for k in ("XPVAE_DATABASE_URL", "XPVAE_HOME", "XPVAE_BROKER_URL",
                                            "XPVAE_TORCH_THREADS")}
    os.environ.update(XPVAE_DATABASE_URL=url, XPVAE_HOME=str(home), XPVAE_TORCH_THREADS="1")
    os.environ.pop("XPVAE_BROKER_URL", None)
    yield engine
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    engine.dispose()


def _xpvae(*args):
    from xpvae.cli import main
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_train_reports_the_recipe_it_ran_and_refuses_an_oversized_batch(small_survey):
    from db.models_registry import get_model
    r = _xpvae("train", "--name", "auto-1", "--epochs", "2", "--checkpoint-every", "0")
    assert r.exit_code == 0, r.output
    n_train = get_model(small_survey, "auto-1")["n_train"]
    assert "recipe: auto — batch 32, lr 0.002, 2 epochs, t0 2" in r.output, r.output
    assert f"{n_train:,} training spectra" in r.output and "given explicitly: epochs" in r.output
    summary = get_model(small_survey, "auto-1")["summary"]
    assert summary["recipe"]["name"] == "auto" and summary["recipe"]["batch_size"] == 32

    r = _xpvae("train", "--name", "pub-1", "--recipe", "published", "--epochs", "1", "--checkpoint-every", "0")
    assert r.exit_code == 0, r.output
    assert "recipe: published — batch 256, lr 0.0001, 1 epochs, t0 500" in r.output and "batch lowered" in r.output

    r = _xpvae("train", "--name", "big", "--batch-size", "4096", "--epochs", "1")
    assert r.exit_code == 1 and "larger than the training set" in r.output


def test_infer_reports_progress_within_a_shard(small_survey):
    from db import job_store as jobs_db
    from db.job_status import JobStatus
    from db.models_registry import get_model
    from jobqueue import runner
    from shared.settings import Settings
    if not _xpvae("models").output.count("auto-1"):
        assert _xpvae("train", "--name", "auto-1", "--epochs", "1", "--checkpoint-every", "0").exit_code == 0
    calls = []
    settings = Settings.from_env()         # the environment the fixture gave the CLI, read the CLI's way
    job_id = runner.submit("infer", {"model_id": int(get_model(small_survey, "auto-1")["id"]), "selection": {},
                                     "shards": 2, "batch_size": 64}, settings=settings, engine=small_survey,
                           on_progress=lambda d, t, m: calls.append((d, t, m)))
    job = jobs_db.get_job(small_survey, job_id)
    assert job["status"] == JobStatus.SUCCEEDED, job["error"]
    inside = [(d, t, m) for d, t, m in calls if m.startswith("shard ")]
    first = [c for c in inside if c[2].startswith("shard 1/2")]
    assert len(first) >= 4           # ~300 stars in batches of 64: one line per batch, not one per shard
    done = [d for d, _, _ in inside]
    assert done == sorted(done) and inside[-1][0] == job["progress_total"] == job["progress_done"]
    assert job["message"].startswith("shard 2/2")
