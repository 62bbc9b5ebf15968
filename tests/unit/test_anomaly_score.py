"""The anomaly score (shared/anomaly.py): its statistics, its storage by the inference job on both backends
(in-process, sharded, idempotent), the simulator's injected anomalies, and recall of those anomalies after a
brief training against χ² without the learned scatter."""
from __future__ import annotations

import math

import numpy as np
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from db.job_status import JobStatus
from shared.anomaly import (
    AnomalyCalibration,
    band_chi2,
    calibrated,
    recall_at,
    robust_centre_width,
    tail_probability,
    wilson_hilferty,
)
from shared.metrics import zscore_rms, zscores


def _chi2_dict(bp, rp, dof_bp=55, dof_rp=55):
    n = len(bp)
    return {"chi2_diag_bp": np.asarray(bp, float), "chi2_diag_rp": np.asarray(rp, float),
            "dof_bp": np.full(n, dof_bp), "dof_rp": np.full(n, dof_rp)}


def test_band_chi2_adds_up_to_the_rms_zscore_and_skips_a_missing_band():
    rng = np.random.default_rng(11)
    x, xhat = rng.normal(size=(50, 110)), rng.normal(size=(50, 110))
    e, s = rng.uniform(0.1, 1, (50, 110)), rng.uniform(0, 1, (50, 110))
    got = band_chi2(x, xhat, e, s)
    total = got["chi2_diag_bp"] + got["chi2_diag_rp"]
    np.testing.assert_allclose(total, 110 * zscore_rms(zscores(x, xhat, e, s)) ** 2, rtol=1e-12)
    x[3, :55] = np.nan                                          # star 3 lacks BP
    got = band_chi2(x, xhat, e, s)
    assert np.isnan(got["chi2_diag_bp"][3]) and got["dof_bp"][3] == 0 and got["dof_rp"][3] == 55
    centre, width, _ = robust_centre_width(_chi2_dict(rng.chisquare(55, 500), rng.chisquare(55, 500)))
    scores = calibrated(got, centre, width)
    assert np.isnan(scores["bp"][3]) and np.isfinite(scores["rp"][3])
    assert scores["all"][3] == scores["rp"][3]      # combined = the band present, on that band's calibration


def test_wilson_hilferty_is_standard_normal_for_chi2_and_the_tail_is_right():
    rng = np.random.default_rng(2024)
    for dof in (55, 110):
        t = wilson_hilferty(rng.chisquare(dof, 200_000), np.full(200_000, dof))
        assert abs(t.mean()) < 0.01 and abs(t.std() - 1) < 0.01
        assert abs(np.mean(t > 2.326) - 0.01) < 0.001
    assert np.isnan(wilson_hilferty(np.array([3.0]), np.array([0]))).all()
    p = tail_probability(np.array([0.0, 1.0, 3.0, 10.0, 37.0, np.nan, -np.inf, np.inf]))
    np.testing.assert_allclose(p[:4], [0.5, 0.15865525, 0.0013498980, 7.6198530e-24], rtol=1e-6)
    assert 0 < p[4] < 1e-290          # far tail: erfc keeps it, 1 − Φ would give 0
    assert np.isnan(p[5]) and p[6] == 1.0 and p[7] == 0.0


def test_calibration_is_robust_to_anomalies_in_the_reference_and_round_trips():
    rng = np.random.default_rng(5)
    n = 4000
    bp, rp = 1.3 * rng.chisquare(55, n), 0.8 * rng.chisquare(55, n)     # a mis-scaled scatter, per band
    bp[:40] *= 50                                                      # 1 % wild stars in the reference
    centre, width, n = robust_centre_width(_chi2_dict(bp, rp))
    s = calibrated(_chi2_dict(bp, rp), centre, width)
    assert n == 4000
    for k in ("bp", "rp", "all"):
        clean = s[k][40:]
        assert abs(np.median(clean)) < 0.06 and abs(np.std(clean) - 1) < 0.08, k
    assert (s["all"][:40] > 10).all()
    # too few finite values: the χ² distribution's own centre and width, never NaN
    centre, width, _ = robust_centre_width(_chi2_dict([np.nan] * 5, [60.0] * 5))
    assert centre == {"bp": 0.0, "rp": 0.0, "all": 0.0} and width == {"bp": 1.0, "rp": 1.0, "all": 1.0}


def _outputs(rng, n, scatter_scale=0.5):
    """Standardised x, x̂, e and ŝ where the residuals follow N(0, e² + ŝ²): a calibrated model."""
    e = rng.uniform(0.05, 1.0, (n, 110))
    s = scatter_scale * rng.uniform(0.5, 1.5, (n, 110))
    xhat = rng.normal(size=(n, 110))
    return xhat + rng.normal(size=(n, 110)) * np.sqrt(e ** 2 + s ** 2), xhat, e, s


def test_a_star_cannot_explain_itself_away_with_a_large_scatter():
    rng = np.random.default_rng(8)
    x, xhat, e, s = _outputs(rng, 3000)
    cal = AnomalyCalibration.fit(x, xhat, e, s, "test")
    np.testing.assert_allclose(cal.scatter_cap, np.median(s, axis=0))
    normal = cal.scores(x, xhat, e, s)["all"]
    assert abs(np.median(normal)) < 0.1 and np.mean(cal.columns(x, xhat, e, s)["anomaly_p"] < 0.01) < 0.03
    # one star off by 2 in every coefficient, which its own (inflated) scatter of 3 would cover
    odd_x, odd_s = x[:1] + 2.0, np.full((1, 110), 3.0)
    assert cal.scores(odd_x, xhat[:1], e[:1], odd_s)["all"][0] > 8
    own = calibrated(band_chi2(odd_x, xhat[:1], e[:1], odd_s), cal.centre, cal.width)["all"][0]
    assert own < 3          # uncapped, the scatter would have hidden it
    # a smaller scatter than the reference's is kept: the cap only ever lowers
    small = cal.chi2(x[:5], xhat[:5], e[:5], s[:5] / 10)
    np.testing.assert_allclose(small["chi2_diag_bp"], band_chi2(x[:5], xhat[:5], e[:5], s[:5] / 10)["chi2_diag_bp"])


def test_calibration_round_trips_through_json_and_refuses_a_partial_one():
    import json
    rng = np.random.default_rng(9)
    x, xhat, e, s = _outputs(rng, 400)
    x[:, :55] = np.nan                     # BP missing for every reference star: no cap, default BP calibration
    cal = AnomalyCalibration.fit(x, xhat, e, s, "test")
    assert all(math.isinf(c) for c in cal.scatter_cap[:55]) and cal.centre["bp"] == 0.0
    again = AnomalyCalibration.from_dict(json.loads(json.dumps(cal.to_dict(), allow_nan=False)))
    assert again == cal
    with pytest.raises(KeyError):
        AnomalyCalibration.from_dict({"scatter_cap": [], "centre": {"bp": 0.0}, "width": {}, "n_reference": 1,
                                      "reference": "x"})


def test_recall_at():
    score = np.array([9.0, 8.0, np.nan, 1.0, 0.5, 7.0, 0.1, 0.2, 0.3, 0.4])
    truth = np.array([1, 0, 1, 0, 0, 1, 0, 0, 0, 0], bool)
    assert recall_at(score, truth, 0.2) == pytest.approx(1 / 3)         # top 2: stars 0, 1
    assert recall_at(score, truth, 0.3) == pytest.approx(2 / 3)         # NaN ranks last
    assert math.isnan(recall_at(score, np.zeros(10, bool), 0.5))


# ---- the simulator's injected anomalies ------------------------------------------------------------------

def test_default_survey_is_unchanged_and_normal_stars_are_identical_with_anomalies():
    from simulator import generate
    b0, t0, l0, p0 = generate(600, 17, with_correlations=False)
    b1, t1, l1, p1 = generate(600, 17, with_correlations=False, anomaly_fraction=0.2)
    bz, tz, _, pz = generate(600, 17, with_correlations=False, anomaly_fraction=0.0)
    assert set(t0) == set(tz) and "anomaly" not in t0
    np.testing.assert_array_equal(b0.coefficients110(), bz.coefficients110())
    kind = t1["anomaly"]
    normal = kind == ""
    assert set(kind) == {"", "emission", "binary", "band", "gflux"} and 0.12 < 1 - normal.mean() < 0.28
    np.testing.assert_array_equal(b0.coefficients110()[normal], b1.coefficients110()[normal])
    np.testing.assert_array_equal(p0["phot_g_mean_flux"][normal], p1["phot_g_mean_flux"][normal])
    assert np.isnan(t1["anomaly_strength"][normal]).all() and np.isfinite(t1["anomaly_strength"][~normal]).all()
    g = kind == "gflux"        # the photometry moved by the stated |ΔG|, the spectrum did not
    dmag = np.abs(2.5 * np.log10(p1["phot_g_mean_flux"][g] / p0["phot_g_mean_flux"][g]))
    np.testing.assert_allclose(dmag, t1["anomaly_strength"][g], rtol=1e-6)
    np.testing.assert_array_equal(b0.coefficients110()[g], b1.coefficients110()[g])
    spectral = np.isin(kind, ("emission", "binary", "band"))
    changed = np.abs(t1["coefficients_true"][spectral] - t0["coefficients_true"][spectral]).max(1)
    assert (changed > 0).all()


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_bad_anomaly_fraction_is_refused(bad, tmp_path):
    from simulator import generate
    from simulator.cli import simulate
    with pytest.raises(ValueError, match="anomaly_fraction"):
        generate(10, 1, anomaly_fraction=bad)
    res = CliRunner().invoke(simulate, ["--n-stars", "10", "--out", str(tmp_path / "s"),
                                        "--anomaly-fraction", str(bad)])
    assert res.exit_code == 2 and "anomaly_fraction" in res.output and not (tmp_path / "s").exists()


def test_survey_files_flag_anomalies_only_when_asked(tmp_path):
    import json

    import pyarrow.parquet as pq

    from simulator import simulate_survey
    simulate_survey(300, 3, out_dir=tmp_path / "plain")
    simulate_survey(300, 3, out_dir=tmp_path / "odd", anomaly_fraction=0.1)
    plain = pq.read_table(tmp_path / "plain" / "truth.parquet")
    odd = pq.read_table(tmp_path / "odd" / "truth.parquet")
    assert "anomaly" not in plain.column_names
    assert "anomaly_fraction" not in (tmp_path / "plain" / "manifest.json").read_text()
    kinds = odd.column("anomaly").to_numpy(zero_copy_only=False)
    manifest = json.loads((tmp_path / "odd" / "manifest.json").read_text())
    assert manifest["anomaly_fraction"] == 0.1
    assert manifest["anomalies"] == {k: int((kinds == k).sum()) for k in set(kinds) - {""}}


# ---- the inference job stores the score, on both backends -------------------------------------------------

def _seed_model(engine, tmp_path, *, with_splits: bool):
    import torch

    from db.models_registry import register_model
    from db.spectra import write_photometry, write_xp_batch
    from shared.artifact import ModelArtifact
    from shared.model import ScatterVAE, VAEConfig
    from shared.preprocessing import Normalisation, normalise_by_flux
    from simulator import generate
    batch, truth, _, phot = generate(900, 23, with_correlations=False, anomaly_fraction=0.05)
    with engine.begin() as conn:
        write_xp_batch(conn, batch, "t")
        write_photometry(conn, phot)
    x, _ = normalise_by_flux(batch.coefficients110(), batch.errors110(), phot["phot_g_mean_flux"])
    ok = np.isfinite(x).all(1)
    torch.manual_seed(3)
    cfg = VAEConfig()
    ids = np.sort(batch["source_id"])
    splits = {"train": ids[::3], "validation": ids[1::3], "test": ids[2::3]} if with_splits else {}
    art = ModelArtifact(kind="svae", config=cfg.to_dict(), normalisation=Normalisation(x[ok].mean(0), x[ok].std(0)),
                        state_dict=ScatterVAE(cfg).state_dict(), splits=splits)
    path = art.save(tmp_path / "m.pt")
    return register_model(engine, name="m", kind="svae", path=str(path)).model_id, art, batch, phot


def _stored(engine, model_id):
    with engine.connect() as conn:
        return conn.execute(sa.text(
            "SELECT source_id, anomaly_score, anomaly_score_bp, anomaly_score_rp, anomaly_p, anomaly_p_bp, "
            "anomaly_p_rp, nll FROM inference_results WHERE model_id = :m ORDER BY source_id"), {"m": model_id}).all()


@pytest.mark.parametrize("with_splits", [True, False])
def test_inference_job_stores_scores_calibrated_once_per_job(engine, tmp_path, with_splits, settings_for):
    from db import job_store as jobs_db
    from inferencer.service import run_infer_shard
    from jobqueue import runner
    from shared.inference import infer_all
    from shared.preprocessing import normalise_by_flux
    model_id, art, batch, phot = _seed_model(engine, tmp_path, with_splits=with_splits)
    settings = settings_for(database_url=engine.url.render_as_string(hide_password=False), broker_url=None)
    job_id = runner.submit("infer", {"model_id": model_id, "selection": {}, "shards": 3}, settings=settings,
                           engine=engine)
    job = jobs_db.get_job(engine, job_id)
    assert job["status"] == JobStatus.SUCCEEDED, job["error"]
    cal = AnomalyCalibration.from_dict(job["params"]["anomaly_calibration"])
    assert ("held-out" in cal.reference) == with_splits and cal.n_reference > 500
    assert job["result"]["anomaly_reference"].startswith(str(cal.n_reference))
    rows = _stored(engine, model_id)
    ids = np.array([r[0] for r in rows])
    stored = np.array([[np.nan if v is None else v for v in r[1:]] for r in rows], dtype=float)
    # every star the model scored has a score and p in [0, 1]; the others (a band missing) none
    scored = np.isfinite(stored[:, 6])
    assert scored.mean() > 0.98 and (np.isfinite(stored[:, 0]) == scored).all()
    assert ((stored[scored, 3] >= 0) & (stored[scored, 3] <= 1)).all()
    # the same numbers as scoring the stars directly with the job's calibration
    order = np.argsort(batch["source_id"])
    sel = np.searchsorted(batch["source_id"][order], ids)
    x, e = normalise_by_flux(batch.coefficients110()[order][sel], batch.errors110()[order][sel],
                             phot["phot_g_mean_flux"][order][sel])
    xs, es = art.normalisation.apply(x, e)
    out = infer_all(art.build_model(), xs, es)
    want = cal.columns(xs, out["xhat"], es, out["scatter"])
    np.testing.assert_allclose(stored[:, 0], want["anomaly_score"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(stored[:, 3], want["anomaly_p"], rtol=1e-4, atol=1e-30)
    # a shard run again (redelivery) rewrites the same rows: no duplicates, the same values
    shard = jobs_db.get_shards(engine, job_id)[1]
    ctx = runner.JobContext(job_id, "infer", dict(job["params"]), 2, engine, settings, None)
    run_infer_shard(ctx, shard)
    again = _stored(engine, model_id)
    assert [r[0] for r in again] == ids.tolist()
    np.testing.assert_array_equal(np.array([[np.nan if v is None else v for v in r[1:]] for r in again], float),
                                  stored)
    # people's query: the worst-explained stars first
    with engine.connect() as conn:
        top = conn.execute(sa.text(
            "SELECT source_id, anomaly_score FROM inference_results WHERE model_id = :m "
            "AND anomaly_score IS NOT NULL ORDER BY anomaly_score DESC LIMIT 5"), {"m": model_id}).all()
    assert [t[1] for t in top] == sorted(stored[scored, 0], reverse=True)[:5]


# ---- recall of injected anomalies after a brief training (the full measurement: python -m bench anomaly) ----

SEEDS = (8, 9, 10, 11)      # recall is averaged over these surveys: one 4,000-star survey is too noisy a judge


def test_score_finds_injected_anomalies_better_than_chance_and_than_chi2_without_scatter():
    """4,000 stars, 3 % anomalous, 30 epochs, four surveys: a model far from converged (the benchmark trains
    20,000 stars for 100 epochs). Stated minimums for the mean recall in the top 5 % of the score (chance:
    0.05): any kind ≥ 0.5 and emission lines ≥ 0.6, both above χ² without the scatter (whose top ranks are
    bright normal stars the model fits to within its scatter but not within their errors); corrupted bands
    ≥ 0.6; a wrong G flux ≥ 0.8; and on every survey the tail probability no worse than ~5× off at 1 % on the
    normal stars (0.5–6 % of them below p = 1 %).
    Measured on the simulator's current SEDs over 24 such surveys (seeds 8–31): mean recall any 0.68 vs
    χ² 0.64, emission 0.74 vs 0.65, corrupted band 0.87 vs 0.85; single surveys scatter (the score ranked
    'any' above χ² on 11 of 16), and means over four surveys put the score above χ² for 'any' and emission in
    every window tried but for corrupted bands in only half: a whole band off is as plain to χ² without the
    scatter, so that kind asserts the minimum only."""
    from bench.anomaly_recall import measure
    runs = [measure(4000, seed, anomaly_fraction=0.03, epochs=30) for seed in SEEDS]

    def mean(method: str, kind: str) -> float:
        return float(np.mean([r.recall[method][kind][0.05] for r in runs]))

    score = {k: mean("score", k) for k in ("any", "emission", "band", "gflux")}
    base = {k: mean("chi2 without scatter", k) for k in ("any", "emission")}
    for kind, minimum in (("any", 0.5), ("emission", 0.6)):
        assert score[kind] >= minimum and score[kind] > base[kind], (kind, score, base)
    assert score["band"] >= 0.6 and score["gflux"] >= 0.8, score
    for r in runs:
        assert 0.005 <= r.normal_p_below[0.01] <= 0.06, r.normal_p_below
