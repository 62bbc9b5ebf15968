"""The command line as a careless user meets it: bad arguments refused before any job exists (exit 2),
deterministic failures reported once in one line that names the flag (exit 1), configuration mistakes in one
line with their exit code (2, 3, 4), and never a traceback."""
from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from db import job_store as jobs_db
from db.job_status import JobStatus

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def cli(sqlite_url, tmp_path, monkeypatch):
    """Run `xpvae ARGS` in this process against the emptied test SQLite database (embedded mode)."""
    from db.engine import create_engine
    from db.schema import metadata
    from xpvae.cli import main
    monkeypatch.setenv("XPVAE_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("XPVAE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XPVAE_RETRY_BACKOFF_S", "0")
    monkeypatch.delenv("XPVAE_BROKER_URL", raising=False)
    eng = create_engine(sqlite_url)
    with eng.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(table.delete())

    def run(*args: str, shows_traceback: bool = False, **env: str):
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        result = CliRunner().invoke(main, list(args))
        assert shows_traceback or "Traceback" not in result.output, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
        return result
    run.engine = eng
    yield run
    eng.dispose()


def _seed(engine, n: int = 120) -> None:
    from db.spectra import write_photometry, write_xp_batch
    from simulator.survey import generate
    batch, _, _, phot = generate(n, 11, label_fraction=0.5, with_correlations=False)
    with engine.begin() as conn:
        write_xp_batch(conn, batch, "seed")
        write_photometry(conn, phot)


def _register(engine, name: str, kind: str) -> int:
    from db.models_registry import register_model
    return register_model(engine, name=name, kind=kind, path="/nonexistent/never-read.pt").model_id


# --- item 9: bad arguments never reach a job ------------------------------------------------------------------
BAD_ARGUMENTS = [
    (["train", "--epochs", "0"], "--epochs"), (["train", "--epochs", "-1"], "--epochs"),
    (["train", "--batch-size", "0"], "--batch-size"), (["train", "--lr", "-1"], "--lr"),
    (["train", "--lr", "0"], "--lr"), (["train", "--lr", "nan"], "--lr"), (["train", "--lr", "inf"], "--lr"),
    (["train", "--weight-decay", "-0.5"], "--weight-decay"), (["train", "--t0", "0"], "--t0"),
    (["train", "--latent-dim", "0"], "--latent-dim"), (["train", "--latent-dim", "17"], "--latent-dim"),
    (["train", "--hidden", "90,0,10"], "--hidden"), (["train", "--hidden", "abc"], "--hidden"),
    (["train", "--hidden", ""], "--hidden"), (["train", "--hidden", "90,,10"], "--hidden"),
    (["train", "--hidden", "1e9"], "--hidden"), (["train", "--seed", "-1"], "--seed"),
    (["train", "--seed", str(2 ** 32)], "--seed"), (["train", "--checkpoint-every", "-1"], "--checkpoint-every"),
    (["train", "--limit", "-3"], "--limit"), (["train", "--limit", "0"], "--limit"),
    (["train", "--source-id-min", "-5"], "--source-id-min"),
    (["train", "--source-id-max", "99999999999999999999999"], "--source-id-max"),
    (["train", "--source-id-min", "9", "--source-id-max", "3"], "--source-id-min 9 is above --source-id-max 3"),
    (["train-baseline", "--epochs", "0"], "--epochs"), (["train-baseline", "--labels", "teff,teff"], "--labels"),
    (["infer", "--model", "m", "--shards", "-2"], "--shards"),
    (["infer", "--model", "m", "--batch-size", "0"], "--batch-size"),
    (["analyze", "alpha", "--model", "m", "--folds", "1"], "--folds"),
    (["analyze", "alpha", "--model", "m", "--bootstrap", "0"], "--bootstrap"),
    (["analyze", "reconstruction", "--model", "m", "--max-stars", "0"], "--max-stars"),
    (["analyze", "reconstruction", "--model", "m", "--split", "train"], "--split"),
    (["jobs", "--limit", "0"], "--limit"),
]


@pytest.mark.parametrize("args, named", BAD_ARGUMENTS, ids=[" ".join(a) for a, _ in BAD_ARGUMENTS])
def test_bad_arguments_exit_2_before_any_job(cli, args, named):
    out = cli(*args)
    assert out.exit_code == 2, out.output
    assert named in out.output
    assert jobs_db.list_jobs(cli.engine) == []


def test_bad_arguments_are_refused_before_the_broker_is_asked(cli):
    """Stack mode used to queue the job and exit 0; the refusal comes first, whatever the broker."""
    out = cli("train", "--epochs", "0", XPVAE_BROKER_URL="amqp://guest:guest@127.0.0.1:1//")
    assert out.exit_code == 2 and "--epochs" in out.output


def test_model_of_the_wrong_kind_is_refused_at_the_cli(cli):
    _register(cli.engine, "base", "label_baseline")
    _register(cli.engine, "sv", "svae")
    for args in (["infer", "--model", "base"], ["analyze", "alpha", "--model", "base"],
                 ["analyze", "reconstruction", "--model", "sv", "--baseline", "sv"]):
        out = cli(*args)
        assert out.exit_code == 2 and "of kind" in out.output, out.output
    assert jobs_db.list_jobs(cli.engine) == []
    assert cli("infer", "--model", "99999999999999999999999").exit_code == 4


# --- item 10: deterministic failures fail once, in one line naming the flag -----------------------------------
def _only_job(engine) -> dict:
    (job,) = jobs_db.list_jobs(engine)
    return job


def _error_line(output: str) -> str:
    lines = [ln for ln in output.splitlines() if ln.startswith("job ")]
    assert lines, output
    return lines[-1]


def test_empty_selection_fails_once_naming_the_flags(cli):
    out = cli("train", "--epochs", "1", "--limit", "5")
    assert out.exit_code == 1
    line = _error_line(out.output)
    assert "no spectra with photometry match the selection (--limit 5)" in line and "--source-id-min" in line
    assert "{" not in line and "Error:" not in line         # neither a dict nor a class name
    job = _only_job(cli.engine)
    assert job["status"] == JobStatus.FAILED and job["attempts"] == 1
    assert "Traceback" in cli("job", "show", str(job["id"]), shows_traceback=True).output   # for those who ask


def test_batch_larger_than_the_data_fails_once_naming_the_flag(cli):
    _seed(cli.engine, 120)
    out = cli("train", "--epochs", "1", "--batch-size", "5000")
    assert out.exit_code == 1
    line = _error_line(out.output)
    assert "--batch-size 5000 is larger than the training" in line and "Error" not in line
    assert _only_job(cli.engine)["attempts"] == 1


def test_model_of_the_wrong_kind_fails_once_through_the_api(cli, sqlite_url, settings_for):
    """API callers skip the CLI's checks: the service refuses, once, naming the flag."""
    from jobqueue import runner
    settings = settings_for(database_url=sqlite_url, broker_url=None)
    _seed(cli.engine, 120)
    base = _register(cli.engine, "base", "label_baseline")
    for kind, params in (("infer", {"model_id": base}), ("analyze_alpha", {"model_id": base}),
                         ("analyze_reconstruction", {"model_id": 12345})):
        job = jobs_db.get_job(cli.engine, runner.submit(kind, params, settings=settings, engine=cli.engine))
        assert job["status"] == JobStatus.FAILED and job["attempts"] == 1, job
        first = job["error"].splitlines()[0]
        assert first.startswith("--model base: a model of kind label_baseline") or \
            first == "no model id 12345 (see `xpvae models`)", first


# --- item 11 (the CLI side): a partly failed ingest is 'partial', exit 1 ----------------------------------------
def test_partly_failed_ingest_is_partial_and_exits_1(cli, shared_dir, tmp_path):
    good = shared_dir / "data/gaia_xp/gaiaxpy_tests/XP_CONTINUOUS_RAW.csv"
    broken = tmp_path / "broken.csv.gz"
    broken.write_bytes(gzip.compress(good.read_bytes())[:500])
    out = cli("ingest", "gaia-xp", str(good), str(broken), "--no-correlations")
    assert out.exit_code == 1
    assert "files ok 1, failed 1" in out.output and "partial: 1 of 2 files failed" in out.output
    job = _only_job(cli.engine)
    assert job["status"] == JobStatus.PARTIAL and job["attempts"] == 1 and job["result"]["rows_loaded"] == 2
    listing = cli("jobs")
    assert listing.exit_code == 0 and "partial" in listing.output and "succeeded" not in listing.output
    only_broken = cli("ingest", "gaia-xp", str(broken))
    assert only_broken.exit_code == 1 and "failed: 1 of 1 files failed" in only_broken.output


# --- item 12: configuration and lookup mistakes: one line, documented code -----------------------------------
@pytest.mark.parametrize("env, args, code, says", [
    ({"XPVAE_DATABASE_URL": "notaurl"}, ["jobs"], 3, "XPVAE_DATABASE_URL 'notaurl' is not a database URL"),
    ({"XPVAE_DATABASE_URL": "mysql://u@127.0.0.1/x"}, ["jobs"], 3, "cannot use the database URL"),
    ({"XPVAE_DATABASE_URL": "postgresql+psycopg2://u:secret@127.0.0.1:1/x"}, ["jobs"], 3, "cannot reach the database"),
    ({"XPVAE_DEVICE": "tpu"}, ["jobs"], 2, "XPVAE_DEVICE"),
    ({"XPVAE_RETRY_BACKOFF_S": "soon"}, ["jobs"], 2, "XPVAE_RETRY_BACKOFF_S"),
    ({"XPVAE_READ_STREAMS": "0"}, ["jobs"], 2, "XPVAE_READ_STREAMS"),
    ({}, ["job", "show", "99999999999999999999999"], 4, "no job 99999999999999999999999"),
    ({}, ["job", "show", "abc"], 2, "is not a valid integer"),
    ({}, ["job", "wait", "424242"], 4, "no job 424242"),
    ({}, ["infer", "--model", "nope"], 4, "no model named 'nope'"),
    ({}, ["train", "--hidden", "abc"], 2, "--hidden"),
])
def test_mistakes_get_one_line_and_their_code(cli, env, args, code, says):
    out = cli(*args, **env)
    assert out.exit_code == code, out.output
    assert says in out.output and "secret" not in out.output


def test_unreadable_weights_file_is_one_line(cli, tmp_path):
    junk = tmp_path / "weight.pt"
    junk.write_bytes(b"this is not a torch file")
    out = cli("model", "import-published", "--weights", str(junk), "--name", "junk")
    assert out.exit_code == 2 and f"{junk}: not a readable" in out.output


def test_real_process_prints_no_traceback(tmp_path):
    """The installed entry point, not just CliRunner: stderr holds the one line and nothing else."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("XPVAE_")}
    exe = Path(sys.executable).with_name("xpvae")
    for extra, args, code in (({"XPVAE_DATABASE_URL": "notaurl"}, ["jobs"], 3),
                              ({"XPVAE_HOME": str(tmp_path / "h")}, ["train", "--hidden", "abc"], 2)):
        proc = subprocess.run([str(exe), *args], env={**env, **extra}, capture_output=True, text=True, timeout=120,
                              cwd=REPO)
        assert proc.returncode == code, proc.stderr
        assert "Traceback" not in proc.stderr and proc.stdout == ""


# --- item 14: read-only commands create nothing for a mistyped SQLite path ------------------------------------
@pytest.mark.parametrize("var", ["XPVAE_HOME", "XPVAE_DATABASE_URL"])
def test_mistyped_sqlite_path_creates_nothing(cli, tmp_path, var):
    typo = tmp_path / "tpyo" / "deeper"
    value = str(typo) if var == "XPVAE_HOME" else f"sqlite:///{typo / 'x.sqlite'}"
    env = {var: value, **({"XPVAE_DATABASE_URL": ""} if var == "XPVAE_HOME" else {})}
    for args in (["jobs"], ["models"], ["job", "show", "1"], ["db", "status"]):
        out = cli(*args, **env)
        assert out.exit_code == 3 and "no database file at" in out.output, (args, out.output)
    assert not (tmp_path / "tpyo").exists()
    assert cli("db", "upgrade", **env).exit_code == 0         # the one command that creates a database
    assert cli("jobs", **env).exit_code == 0


def test_an_unexpected_error_is_one_line_unless_debugging(cli, monkeypatch):
    """The last line of defence: a bug anywhere (simulated in the models listing) prints one line, exit 1;
    XPVAE_DEBUG=1 lets the traceback through for a bug report."""
    import db.models_registry

    def broken(engine):
        raise ZeroDivisionError("division by zero")
    monkeypatch.setattr(db.models_registry, "list_models", broken)
    out = cli("models")
    assert out.exit_code == 1 and "unexpected ZeroDivisionError: division by zero" in out.output
    assert "XPVAE_DEBUG=1" in out.output
    from xpvae.cli import main
    monkeypatch.setenv("XPVAE_DEBUG", "1")
    raw = CliRunner().invoke(main, ["models"])
    assert isinstance(raw.exception, ZeroDivisionError)
