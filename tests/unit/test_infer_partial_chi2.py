"""The inferencer's χ² when only some stars have stored correlations.

For speed it computes χ² only for the stars that have correlations (and skips reading correlations for a
range that has none). This checks the result against the reference computed directly with
``shared.inference.infer`` over the same standardised inputs: the same χ² for stars with correlations, NaN
for the others, and identical latents — for a range with some, none and all stars carrying correlations.
"""
from __future__ import annotations

import numpy as np
import torch
from testdb import write_spectra_with_some_correlations

from db.bulk import Nullable, upsert_rows
from db.models_registry import register_model
from db.selection import Selection
from db.spectra import read_spectra
from inferencer.service import infer_range
from shared.artifact import ModelArtifact
from shared.inference import infer_all
from shared.model import ScatterVAE, VAEConfig
from shared.preprocessing import Normalisation, normalise_by_flux
from simulator.survey import generate


def _seed(engine, tmp_path):
    batch, _, _, phot = generate(120, 5, with_correlations=True)
    order = np.argsort(batch["source_id"])
    batch = batch.take(order)
    ids = batch["source_id"]
    with_corr = np.zeros(len(ids), bool)
    with_corr[10:50] = True            # the first 10 none, then 40 with, then none again
    write_spectra_with_some_correlations(engine, batch, phot, with_corr)
    data = read_spectra(engine, Selection())
    x, _ = normalise_by_flux(data["coefficients"], data["errors"], data["phot_g_mean_flux"])
    torch.manual_seed(1)
    cfg = VAEConfig()
    art = ModelArtifact(kind="svae", config=cfg.to_dict(), normalisation=Normalisation(x.mean(0), x.std(0)),
                        state_dict=ScatterVAE(cfg).state_dict())
    path = art.save(tmp_path / "m.pt")
    model_id = register_model(engine, name="m", kind="svae", path=str(path)).model_id
    return batch, with_corr, art, model_id


def test_chi2_only_where_correlations_are_stored(engine, tmp_path):
    batch, with_corr, art, model_id = _seed(engine, tmp_path)
    stored = dict(zip(batch["source_id"].tolist(), with_corr.tolist()))
    ids_all = read_spectra(engine, Selection())["source_id"]
    ids_corr = [i for i in ids_all.tolist() if stored[i]]
    for sel in (Selection(),                                                    # some stars
                Selection(source_id_hi=ids_corr[0] - 1),                        # none
                Selection(source_id_lo=ids_corr[0], source_id_hi=ids_corr[-1])):  # all
        cols, _ = infer_range(engine, model_id, sel, chi2=True, batch_size=16)
        data = read_spectra(engine, sel, with_correlations=True)
        assert cols["source_id"].tolist() == data["source_id"].tolist()
        x, e = normalise_by_flux(data["coefficients"], data["errors"], data["phot_g_mean_flux"])
        xs, es = art.normalisation.apply(x, e)
        model = art.build_model()
        ref = infer_all(model, xs, es, correlations={"bp": data["correlations"][:, 0],
                                                     "rp": data["correlations"][:, 1]})
        has = data["has_correlations"]
        assert has.tolist() == [stored[i] for i in data["source_id"].tolist()]
        np.testing.assert_allclose(cols["z1"], ref["latent_mu"][:, 0], rtol=1e-5, atol=1e-6)
        for b in ("bp", "rp"):
            for suffix in ("", "_scatter"):
                got = np.asarray(cols[f"{b}_chi2_dof{suffix}"])
                want = ref[f"chi2_{b}{suffix}"] / 55.0
                assert np.isnan(got[~has]).all()
                np.testing.assert_allclose(got[has], want[has], rtol=1e-6)
                assert np.isfinite(got[has]).any() or not has.any()


def test_job_summary_names_each_cause_of_a_missing_chi2(engine, tmp_path, settings_for):
    """Stars without stored correlations and stars whose stored covariance is singular are counted apart:
    the summary must not tell a user to re-ingest with correlations when they are there (issue 12.5)."""
    from db.results import replace_results
    from inferencer.service import summarise_infer_job
    from jobqueue.runner import JobContext
    batch, with_corr, _, model_id = _seed(engine, tmp_path)
    ids = batch["source_id"]
    singular = np.flatnonzero(with_corr)[:3]
    corr = {b: batch[f"{b}_coefficient_correlations"][singular].copy() for b in ("bp", "rp")}
    for b in corr:
        corr[b][:] = -0.9        # every pair at ρ = -0.9: |ρ| ≤ 1 everywhere, but no 55x55 matrix like that is PD
    with engine.begin() as conn:
        upsert_rows(conn, "xp_correlations", {"source_id": ids[singular], **{
            f"{b}_coefficient_correlations": Nullable(corr[b], batch[f"{b}_missing"][singular]) for b in corr}})
    cols, _ = infer_range(engine, model_id, Selection(), chi2=True, batch_size=32)
    with engine.begin() as conn:
        replace_results(conn, model_id, int(ids.min()), int(ids.max()), cols)
    shards = [{"n_stars": len(ids), "seconds_read": 0.0, "seconds_model": 0.0, "seconds_write": 0.0}]
    ctx = JobContext(0, "infer", {"model_id": model_id}, 1, engine, settings_for())
    got = summarise_infer_job(ctx, shards)["chi2"]
    n_unstored = int((~with_corr).sum())
    assert got == (f"unavailable for {n_unstored + 3} of {len(ids)} stars: {n_unstored} without stored "
                   "correlations (ingested with --no-correlations?); 3 whose covariance is not positive definite "
                   "(correlations as stored)")
