"""P(high-α) for every star (issue 15, part 1): calibration where the truth is known, and the job end to end."""
import numpy as np
import pytest
import sqlalchemy as sa

from analysis.alpha_catalogue import ISOTONIC_MIN, fit_alpha_catalogue
from analysis.calibration import purity_completeness, reliability
from analysis.samples import alpha_split
from analysis.synthetic import alpha_sample
from db.job_status import JobStatus

# Calibration tolerance: |mean predicted − observed fraction| < 0.15 in every reliability bin holding ≥ 50
# stars (the observed fraction's binomial standard error there is ≤ 0.071, so 0.15 is > 2σ for a calibrated
# model); on the ≥ 2000 never-labelled stars also the star-weighted mean gap (the expected calibration error)
# < 0.05 (on a few hundred out-of-fold stars binomial noise alone makes it ~0.04, so it is not asserted there).
TOL, MIN_BIN, ECE_TOL = 0.15, 50, 0.05
# Latent noise comparable to the α signal in z1: the classes overlap, so probabilities fill the whole range
# and the reliability bins between 0 and 1 are populated (with the default 0.3 nearly every star is ~0 or ~1).
NOISE = 1.0


def _features(z):
    """Latent means and widths as the job reads them (widths: constant here, one NaN column's worth of test)."""
    return np.column_stack([z, np.full_like(z, 0.1)])


def _check_calibrated(p, y, ece_too=True):
    table = reliability(p, y)
    ece = sum(b.n * abs(b.predicted - b.observed) for b in table) / len(p)
    bins = [b for b in table if b.n >= MIN_BIN]
    assert len(bins) >= 2, table
    assert max(abs(b.predicted - b.observed) for b in bins) < TOL, table
    assert not ece_too or ece < ECE_TOL, (ece, table)


@pytest.mark.parametrize("n_train, method", [(600, "sigmoid"), (1400, "isotonic")])
def test_calibrated_on_held_out_and_unlabelled_stars(n_train, method):
    z, lab, _ = alpha_sample(n_train + 2000, alpha_in_latents=True, seed=4101 + n_train, latent_noise=NOISE)
    truth = alpha_split(lab).high
    train = np.zeros(len(truth), bool)
    train[:n_train] = True
    cat = fit_alpha_catalogue(_features(z), train, truth, sample="pristine", seed=7)
    assert cat.method == method and (method == "isotonic") == (n_train >= ISOTONIC_MIN)
    assert cat.p_all.shape == (len(truth),) and np.all((cat.p_all >= 0) & (cat.p_all <= 1))
    _check_calibrated(cat.p_oof, truth[train], ece_too=False)     # out-of-fold labelled stars
    # never-labelled stars, whose class the simulator knows
    _check_calibrated(cat.p_all[~train], truth[~train])
    h = cat.headline
    base = truth[train].mean() * (1 - truth[train].mean())       # the Brier score of always saying the base rate
    assert 0 < h["brier"] < 0.8 * base
    assert h["threshold_purity_0.9"] is not None
    purity, _, _ = purity_completeness(cat.p_oof, truth[train], h["threshold_purity_0.9"])
    assert purity >= 0.9
    assert h["n_candidates_purity_0.9"] == int(np.sum(cat.p_all >= h["threshold_purity_0.9"]))


def test_latents_without_alpha_give_no_better_than_base_rate_brier():
    """Shuffled classes: a calibrated model must fall back to about the base rate, not invent confidence."""
    z, lab, _ = alpha_sample(1500, alpha_in_latents=True, seed=4202, latent_noise=NOISE)
    y = np.random.default_rng(3).permutation(alpha_split(lab).high)
    cat = fit_alpha_catalogue(_features(z), np.ones(len(y), bool), y, sample="pristine", seed=1)
    base = y.mean() * (1 - y.mean())
    assert cat.headline["brier"] > 0.9 * base
    assert abs(cat.p_oof.mean() - y.mean()) < 0.05


def test_too_few_labelled_stars_of_a_class_is_refused():
    z, lab, _ = alpha_sample(200, alpha_in_latents=True, seed=4303)
    y = np.zeros(200, bool)
    y[:3] = True
    with pytest.raises(ValueError, match="at least 5 of each class"):
        fit_alpha_catalogue(_features(z), np.ones(200, bool), y, sample="pristine")


def test_colour_features_answer_stars_without_colours_with_the_latents_alone(tmp_path):
    """--features latents+colours: the stars without BP−RP are counted and get exactly the probability of the
    latents-only classifier (same seed, same training stars), not the trees' untrained missing-value branch."""
    from analysis.alpha_catalogue import render_catalogue
    from analysis.figures import caption
    z, lab, phot = alpha_sample(1200, alpha_in_latents=True, seed=4505, latent_noise=NOISE)
    y = alpha_split(lab).high
    train = np.arange(len(y)) < 800
    colours = np.asarray(phot["bp_rp"], np.float64).copy()
    missing = np.random.default_rng(4506).random(len(y)) < 0.2
    colours[missing] = np.nan
    with_c = fit_alpha_catalogue(_features(z), train, y, sample="pristine", seed=5, colours=colours)
    plain = fit_alpha_catalogue(_features(z), train, y, sample="pristine", seed=5)
    assert with_c.features == "latents+colours" and with_c.n_without_colours == int(missing.sum())
    assert np.array_equal(with_c.p_all[missing], plain.p_all[missing])
    assert not np.array_equal(with_c.p_all[~missing], plain.p_all[~missing])
    assert with_c.held_out.n == 800 and np.all(np.isfinite(with_c.p_oof))
    assert with_c.headline["n_without_colours"] == int(missing.sum())
    # the report: one calibration figure per set of known classes, the candidates stated
    res = render_catalogue(with_c, tmp_path)
    assert [f.name for f in res.figures] == ["calibration_held_out.png"]
    cap = caption(res.figures[0])
    assert "Wilson interval" in cap and "purity" in cap and f"{with_c.threshold:.2f}" in cap
    text = res.report_path.read_text()
    assert f"High-α candidates: the {with_c.n_candidates:,} stars" in text
    assert "stars have no BP−RP colour" in text and "calibration_held_out.png" in text


# --- the job -------------------------------------------------------------------------------------------------
def _seed_survey(engine, n=1500, n_labelled=900, seed=4404):
    """A model's inference results for n simulated stars, of which n_labelled have APOGEE labels and photometry
    passing the pristine cuts; returns (model id, source ids, true high-α class)."""
    from db import bulk
    from db.models_registry import register_model
    z, lab, phot = alpha_sample(n, alpha_in_latents=True, seed=seed, latent_noise=NOISE)
    mid = register_model(engine, name="cat-m1", kind="svae", path="/nonexistent.pt",
                         config={"latent_dim": 6}).model_id
    sid = np.arange(n, dtype=np.int64) * 7919 + 10**17
    res = {"model_id": [mid] * n, "source_id": sid, "split": ["test"] * n}
    for i in range(6):
        res[f"z{i + 1}"] = z[:, i].astype(np.float32)
        res[f"z{i + 1}_sigma"] = np.full(n, 0.1, np.float32)
    k = n_labelled
    labels = {name: lab[name][:k] for name in ("teff", "teff_err", "logg", "logg_err", "m_h", "m_h_err", "alpha_m",
                                               "fe_h", "mg_fe", "aspcapflag", "starflag")}
    labels.update({"apogee_id": [f"2M{i:08d}" for i in range(k)], "telescope": ["apo25m"] * k, "field": ["f"] * k,
                   "gaia_source_id": sid[:k], "is_primary": [True] * k})
    g = phot["phot_g_mean_mag"][:k]
    photometry = {"source_id": sid[:k], "phot_g_mean_flux": 10 ** (-0.4 * (g - 25.7)), "phot_g_mean_mag": g,
                  "phot_bp_mean_mag": g + 0.5 * phot["bp_rp"][:k], "phot_rp_mean_mag": g - 0.5 * phot["bp_rp"][:k]}
    with engine.begin() as conn:
        bulk.upsert_rows(conn, "inference_results", res, key=("model_id", "source_id"))
        bulk.upsert_rows(conn, "apogee_labels", labels, key=("apogee_id", "telescope", "field"))
        bulk.upsert_rows(conn, "photometry", photometry, key=("source_id",))
    return mid, sid, alpha_split(lab).high


@pytest.fixture
def embedded(settings_for, engine):
    """Settings of the embedded mode (jobs run in this process) on the test's database and a home of its own."""
    return settings_for(database_url=engine.url.render_as_string(hide_password=False), broker_url=None)


def test_job_stores_one_calibrated_probability_per_star_and_a_rerun_replaces(engine, embedded):
    from db import job_store as jobs_db
    from db.schema import alpha_probabilities, analysis_statistics
    from jobqueue import runner
    mid, sid, truth = _seed_survey(engine)
    ids = [runner.submit("analyze_alpha_catalogue", {"model_id": mid, "sample": "pristine", "seed": s},
                         settings=embedded, engine=engine)
           for s in (11, 12)]
    done = [jobs_db.get_job(engine, i) for i in ids]
    assert [j["status"] for j in done] == [JobStatus.SUCCEEDED] * 2, [j.get("error") for j in done]
    with engine.connect() as conn:
        rows = conn.execute(sa.select(alpha_probabilities.c.source_id, alpha_probabilities.c.p_high_alpha,
                                      alpha_probabilities.c.job_id)
                            .where(alpha_probabilities.c.model_id == mid)
                            .order_by(alpha_probabilities.c.source_id)).all()
        stats = conn.execute(sa.select(analysis_statistics.c.job_id, analysis_statistics.c.statistic,
                                       analysis_statistics.c.value)
                             .where(analysis_statistics.c.report == "alpha_catalogue")).all()
    assert [r[0] for r in rows] == sid.tolist()                     # one row per inferred star, no duplicates
    assert {r[2] for r in rows} == {ids[1]}                         # the rerun's rows replaced the first run's
    p = np.array([r[1] for r in rows])
    assert np.all((p >= 0) & (p <= 1))
    unlabelled = np.arange(len(sid)) >= 900
    _check_calibrated(p[unlabelled], truth[unlabelled], ece_too=False)    # 600 stars: per bin only
    for job_id in ids:
        names = {s for j, s, _ in stats if j == job_id}
        assert {"brier", "reliability_predicted", "reliability_observed", "purity", "completeness",
                "n_candidates_purity_0.9"} <= names
    headline = done[1]["result"]["headline"]
    assert headline["calibration"] == "sigmoid" and headline["n_labelled"] == 900
    assert done[1]["result"]["n_stars"] == len(sid)
    from xpvae.summaries import describe_result
    text = describe_result("analyze_alpha_catalogue", done[1]["result"])
    assert f"for {len(sid)} stars" in text and "sigmoid calibration" in text and "Brier score" in text
    assert "candidates at purity >= 0.9" in text
    # the README's query: the most probable high-α stars APOGEE never observed
    with engine.connect() as conn:
        top = conn.execute(sa.text(
            "SELECT q.source_id, q.p_high_alpha FROM alpha_probabilities q "
            "LEFT JOIN apogee_labels a ON a.gaia_source_id = q.source_id AND a.is_primary "
            "WHERE q.model_id = (SELECT id FROM models WHERE name = 'cat-m1') AND a.id IS NULL "
            "ORDER BY q.p_high_alpha DESC LIMIT 300")).all()
    assert len(top) == 300 and {r[0] for r in top} <= set(sid[900:].tolist())
    assert [r[1] for r in top] == sorted(p[900:], reverse=True)[:300]


def test_job_without_labels_fails_once_with_a_clear_line(engine, embedded):
    from db import job_store as jobs_db
    from db.schema import apogee_labels
    from jobqueue import runner
    mid, _, _ = _seed_survey(engine, n=60, n_labelled=30)
    with engine.begin() as conn:
        conn.execute(apogee_labels.delete())
    job = jobs_db.get_job(engine, runner.submit("analyze_alpha_catalogue", {"model_id": mid}, settings=embedded,
                                                engine=engine))
    assert job["status"] == JobStatus.FAILED and job["attempts"] == 1
    assert "no star with inference results has APOGEE labels" in job["error"]
