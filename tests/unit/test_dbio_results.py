"""db.results and db.photometry on both backends: the reads the services make of tables they do not own."""
from __future__ import annotations

import numpy as np
import pytest
from test_dbio_spectra import make_batch

from db.photometry import read_g_and_colour
from db.results import chi2_coverage, read_anomaly_scores, read_latent_features, read_latents, replace_results
from db.spectra import write_photometry, write_xp_batch
from shared.errors import InputError

IDS = np.array([311, 305, 307, 302, 309], dtype=np.int64)     # stored out of order on purpose


def _model(conn, model_id: int, name: str) -> None:
    conn.exec_driver_sql(f"INSERT INTO models (id, name, kind, path) VALUES ({model_id}, '{name}', 'svae', '/m')")


def _results(model_id: int, ids: np.ndarray, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    n = len(ids)
    cols = {"model_id": np.full(n, model_id, np.int64), "source_id": ids,
            "split": ["test", "train", "test", "validation", "test"][:n]}
    for i in range(1, 4):
        cols[f"z{i}"] = rng.normal(size=n).astype(np.float32)
        cols[f"z{i}_sigma"] = np.where(np.arange(n) == 1, np.nan, rng.random(n)).astype(np.float32)
    cols["anomaly_score"] = np.where(np.arange(n) == 2, np.nan, rng.normal(size=n))
    cols["zscore_rms"] = rng.random(n) + 1
    cols["bp_chi2_dof"] = np.where(np.arange(n) < 2, np.nan, 1.0)
    return cols


@pytest.fixture
def stored(engine):
    with engine.begin() as conn:
        write_xp_batch(conn, make_batch(np.sort(IDS), seed=41, correlations=True), "r.csv")
        conn.exec_driver_sql("DELETE FROM xp_correlations WHERE source_id = 305")
        _model(conn, 7, "seven")
        _model(conn, 8, "eight")
        cols = _results(7, IDS, seed=3)
        replace_results(conn, 7, int(IDS.min()), int(IDS.max()), cols)
        replace_results(conn, 8, 300, 400, _results(8, IDS[:2], seed=4))
    return engine, cols


def test_latents_come_back_in_source_id_order_per_split_and_limit(stored):
    engine, cols = stored
    order = np.argsort(IDS)
    ids, z = read_latents(engine, 7, 3)
    assert ids.tolist() == IDS[order].tolist()
    want = np.column_stack([cols[f"z{i}"][order] for i in (1, 2, 3)])
    assert z.dtype == np.float64 and np.array_equal(z.astype(np.float32), want)     # REAL columns: float32 values
    ids, _ = read_latents(engine, 7, 1, split="test", limit=2)
    assert ids.tolist() == [307, 309]
    ids, feats = read_latent_features(engine, 7, 3)
    assert feats.shape == (5, 6) and ids.tolist() == IDS[order].tolist()
    assert np.isnan(feats[ids == 305, 3:]).all() and np.isfinite(feats[ids != 305]).all()   # NULL width → NaN
    with pytest.raises(InputError, match="--model 9 has no inference results: run `xpvae infer --model 9`"):
        read_latents(engine, 9, 2)
    with pytest.raises(InputError, match="in the nope split"):
        read_latents(engine, 7, 2, split="nope")


def test_a_rerun_replaces_its_range_only(stored):
    engine, _ = stored
    again = _results(7, IDS[:2], seed=5)
    with engine.begin() as conn:
        replace_results(conn, 7, 305, 311, again)
    ids, z = read_latents(engine, 7, 1)
    assert ids.tolist() == [302, 305, 311]
    assert np.float32(z[ids == 311, 0][0]) == again["z1"][0]
    assert read_latents(engine, 8, 1)[0].tolist() == [305, 311]


def test_chi2_coverage_counts_each_cause(stored):
    engine, _ = stored
    # χ² missing for the first two rows (311, 305); 305 has no stored correlations
    assert chi2_coverage(engine, 7) == (5, 3, 1)
    assert chi2_coverage(engine, 99) == (0, 0, 0)


def test_anomaly_scores_of_a_named_model(stored):
    engine, cols = stored
    ids, score, rms = read_anomaly_scores(engine, "seven")
    keep = np.isfinite(cols["anomaly_score"])
    assert sorted(ids.tolist()) == sorted(IDS[keep].tolist())
    by_id = dict(zip(ids.tolist(), score.tolist()))
    for i, s in zip(IDS[keep], cols["anomaly_score"][keep]):
        assert by_id[int(i)] == pytest.approx(s, rel=1e-6)
    assert np.all(rms >= 1)
    assert all(len(a) == 0 for a in read_anomaly_scores(engine, "nobody"))


def test_g_and_colour_aligned_with_the_ids_asked_for(engine):
    asked = np.array([40, 10, 99, 30, 20], dtype=np.int64)
    assert np.isnan(read_g_and_colour(engine, asked)["bp_rp"]).all()       # nothing stored yet
    with engine.begin() as conn:
        write_photometry(conn, {"source_id": np.array([30, 10, 20]), "phot_g_mean_mag": np.array([13.0, 11.0, 12.0]),
                                "phot_bp_mean_mag": np.array([13.5, 11.9, np.nan]),
                                "phot_rp_mean_mag": np.array([12.5, 10.8, 11.2])})
    got = read_g_and_colour(engine, asked)
    assert np.array_equal(got["phot_g_mean_mag"], [np.nan, 11.0, np.nan, 13.0, 12.0], equal_nan=True)
    assert np.allclose(got["bp_rp"], [np.nan, 1.1, np.nan, 1.0, np.nan], equal_nan=True)
