"""`xpvae fetch` against a Gaia archive on 127.0.0.1 (tests/gaia_archive.py) through astroquery's real TAP+ client:
batches of at most 5,000 ids, retries on HTTP 5xx, resumption, a rejected query, and fetch → ingest end to end."""
from __future__ import annotations

import warnings
import zipfile

import numpy as np
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from gaia_archive import DATA, TAP, GaiaArchive

from ingest import fetch
from simulator import generate
from simulator.writers import write_allstar_fits

N_FAKE = 4997       # ids the archive has no data for: with the 6 real ones, 5,003 ids = two batches


@pytest.fixture(scope="module")
def sky():
    """Six simulated sources the archive knows (one lacking a band), their photometry and labels."""
    batch, _truth, labels, phot = generate(300, seed=29)
    gap = np.flatnonzero(batch["bp_missing"] | batch["rp_missing"])
    labelled = np.isin(batch["source_id"], labels["gaia_source_id"])
    rows = np.r_[gap[:1], np.flatnonzero(~(batch["bp_missing"] | batch["rp_missing"]) & labelled)[:5]]
    assert len(rows) == 6
    batch = batch.take(rows)
    keep = np.isin(phot["source_id"], batch["source_id"])
    return batch, {k: v[keep] for k, v in phot.items()}, labels


@pytest.fixture
def archive(sky):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with GaiaArchive(sky[0], sky[1]) as server:
            yield server


def _ids(sky) -> np.ndarray:
    # small fake ids sort first: the real sources fall in both batches (3 in the first, 3 in the second)
    return np.r_[np.arange(1, N_FAKE + 1), sky[0]["source_id"]]


def _data_requests(server) -> list[dict]:
    return [form for method, path, form in server.requests if path == DATA]


def test_datalink_in_batches_of_at_most_5000_with_retry_and_resume(archive, sky, tmp_path):
    client = fetch.Archive(archive.url, retries=3, backoff_s=0.01)
    archive.faults[DATA] = [500, 503]             # the first request fails twice, then succeeds
    messages = []
    result = fetch.fetch_xp(client, _ids(sky), tmp_path / "xp", "fits",
                            progress=lambda done, total, message: messages.append((done, total, message)))
    forms = _data_requests(archive)
    assert len(forms) == 4 and result.retries == 2 and result.fetched == 2 and result.skipped == 0
    sizes = [len(f["ID"].split(",")) for f in forms]
    assert sizes == [5000, 5000, 5000, 3]          # the retried request is the same batch
    assert all(f["RETRIEVAL_TYPE"] == "XP_CONTINUOUS" and f["FORMAT"] == "fits" for f in forms)
    assert [(d, t) for d, t, _ in messages] == [(1, 2), (2, 2)] and "5000 sources" in messages[0][2]
    assert sorted(p.name for p in (tmp_path / "xp").iterdir()) == sorted(p.name for p in result.files)  # no .part
    members = [zipfile.ZipFile(p).namelist() for p in result.files]
    assert members == [["XP_CONTINUOUS_RAW.fits"]] * 2
    # a rerun asks the archive for nothing; a new id list refetches only the batch whose ids changed
    again = fetch.fetch_xp(client, _ids(sky)[::-1], tmp_path / "xp", "fits")
    assert (again.fetched, again.skipped, len(_data_requests(archive))) == (0, 2, 4)
    more = np.r_[_ids(sky), 10**18]
    third = fetch.fetch_xp(client, more, tmp_path / "xp", "fits")
    assert (third.fetched, third.skipped) == (1, 1) and len(_data_requests(archive)) == 5
    other_format = fetch.fetch_xp(client, _ids(sky), tmp_path / "xp", "csv")      # another request altogether
    assert (other_format.fetched, other_format.skipped) == (2, 0) and len(_data_requests(archive)) == 7


def test_interrupted_fetch_resumes_with_the_missing_batch_only(archive, sky, tmp_path):
    client = fetch.Archive(archive.url, retries=1, backoff_s=0.01)
    # the first batch arrives, the second keeps failing: the fetch stops, the first batch stays on disk
    original = archive.datalink
    calls = []

    def flaky(form):
        calls.append(len(form["ID"].split(",")))
        return (502, "text/plain", b"Bad Gateway") if len(calls) > 1 else original(form)
    archive.datalink = flaky
    with pytest.raises(fetch.FetchError, match="after 2 attempts") as err:
        fetch.fetch_xp(client, _ids(sky), tmp_path / "xp", "csv")
    assert err.value.transient and calls == [5000, 3, 3]
    assert [p.suffix for p in (tmp_path / "xp").iterdir()] == [".zip"]        # one whole batch, no partial file
    archive.datalink = original
    resumed = fetch.fetch_xp(client, _ids(sky), tmp_path / "xp", "csv")
    assert (resumed.fetched, resumed.skipped) == (1, 1) and len(_data_requests(archive)) == 4


def test_rejected_query_fails_at_once_and_ids_come_from_adql(archive, sky, tmp_path):
    client = fetch.Archive(archive.url, retries=3, backoff_s=0.01)
    with pytest.raises(fetch.FetchError) as err:
        client.query_ids("SELECT nonsense FROM nowhere")
    assert not err.value.transient and archive.count(f"{TAP}/async") == 1      # not retried
    g = sky[1]["phot_g_mean_mag"]
    cut = float(np.median(g))
    got = client.query_ids(f"SELECT source_id FROM gaiadr3.gaia_source WHERE phot_g_mean_mag < {cut}")
    np.testing.assert_array_equal(got, np.sort(sky[1]["source_id"][g < cut]))
    assert 0 < len(got) < 6


def test_empty_batch_is_kept_as_done_but_not_ingested(archive, tmp_path):
    client = fetch.Archive(archive.url, retries=0)
    result = fetch.fetch_xp(client, np.arange(1, 11), tmp_path / "xp", "csv")
    assert result.empty == result.files and result.with_data == []
    again = fetch.fetch_xp(client, np.arange(1, 11), tmp_path / "xp", "csv")
    assert again.skipped == 1 and again.empty == again.files


def test_id_files_and_apogee_ids(tmp_path, sky):
    plain = tmp_path / "ids.txt"
    plain.write_text("# my stars\n30, 10\n20 10\n\n")
    np.testing.assert_array_equal(fetch.read_id_file(plain), [10, 20, 30])
    table = tmp_path / "ids.csv"
    table.write_text("source_id,ra\n7,1.0\n5,2.0\n")
    np.testing.assert_array_equal(fetch.read_id_file(table), [5, 7])
    bad = tmp_path / "bad.txt"
    bad.write_text("12\n1e5\n")
    with pytest.raises(ValueError, match="line 2"):
        fetch.read_id_file(bad)
    labels = sky[2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_allstar_fits(labels, tmp_path / "allStar.fits")
    want = np.unique(labels["gaia_source_id"][labels["gaia_source_id"] > 0])
    np.testing.assert_array_equal(fetch.apogee_ids(tmp_path / "allStar.fits"), want)
    assert len(fetch.batches(np.arange(1, 12001))) == 3
    with pytest.raises(ValueError):
        fetch.batches(np.arange(1, 10), size=5001)


def test_cli_fetch_then_ingest_end_to_end(archive, sky, sqlite_url, tmp_path, monkeypatch):
    from testdb import _empty_tables

    from db.engine import get_engine
    from xpvae.cli import main
    monkeypatch.setenv("XPVAE_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("XPVAE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XPVAE_GAIA_TAP_URL", archive.url)        # the setting; --tap-url below
    _empty_tables(get_engine(sqlite_url))
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(str(i) for i in _ids(sky)))
    runner = CliRunner()
    xp = runner.invoke(main, ["fetch", "gaia-xp", "--source-ids", str(ids), "--out", str(tmp_path / "xp"),
                              "--format", "votable", "--ingest"])
    assert xp.exit_code == 0, xp.output
    lines = xp.stdout.splitlines()
    assert lines[0] == f"5003 sources, 2 batch(es), from {archive.url}"
    assert lines[1].startswith("batch 1/2: 5000 sources -> XP_CONTINUOUS_b00000_")
    assert any(line.startswith("ingest gaia-xp: files ok 2, failed 0; rows read 6, loaded 6") for line in lines)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_allstar_fits({k: v for k, v in sky[2].items()}, tmp_path / "allStar.fits")
    phot = runner.invoke(main, ["fetch", "photometry", "--from-apogee", str(tmp_path / "allStar.fits"),
                                "--out", str(tmp_path / "phot"), "--tap-url", archive.url, "--ingest"])
    assert phot.exit_code == 0, phot.output
    with get_engine(sqlite_url).connect() as conn:
        stored = dict(conn.execute(sa.text("SELECT source_id, phot_g_mean_flux FROM photometry")).all())
        n_xp = conn.execute(sa.text("SELECT COUNT(*) FROM xp_spectra")).scalar_one()
    assert n_xp == 6
    labelled = set(sky[2]["gaia_source_id"].tolist()) & set(sky[1]["source_id"].tolist())
    assert set(stored) == labelled and len(labelled) >= 5
    for sid, flux in zip(sky[1]["source_id"], sky[1]["phot_g_mean_flux"]):
        if sid in stored:
            assert stored[sid] == pytest.approx(flux, rel=1e-15)
    # rerun: nothing fetched; bad usage and an unreachable archive get their exit codes
    again = runner.invoke(main, ["fetch", "gaia-xp", "--source-ids", str(ids), "--out", str(tmp_path / "xp"),
                                 "--format", "votable"])
    assert again.exit_code == 0 and "0 downloaded now, 2 already on disk" in again.stdout
    both = runner.invoke(main, ["fetch", "gaia-xp", "--source-ids", str(ids), "--adql", "SELECT 1",
                                "--out", str(tmp_path / "x")])
    assert both.exit_code == 2 and "exactly one of" in both.output
    down = runner.invoke(main, ["fetch", "photometry", "--source-ids", str(ids), "--out", str(tmp_path / "y"),
                                "--tap-url", "http://127.0.0.1:9/", "--retries", "0"])
    assert down.exit_code == 3, down.output
