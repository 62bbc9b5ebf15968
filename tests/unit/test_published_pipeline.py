"""README §"Running the published model": ingest a catalogue in the published layout with its normalisation,
import the authors' released weights (their default, vendored path), infer, through the CLI on the embedded default.

What this proves: the published-catalogue path works end to end with the real released weights, and the
normalisation given at ingest is the one the imported model applies (a wrong or missing one would change the
latents, which the test recomputes independently from the catalogue arrays)."""
from __future__ import annotations

import h5py
import numpy as np
import sqlalchemy as sa
from click.testing import CliRunner


def test_catalogue_published_weights_infer(tmp_path, shared_dir, monkeypatch):
    from db.engine import get_engine
    from shared.model import load_published
    from simulator.survey import simulate_survey
    from xpvae.cli import main
    survey = tmp_path / "survey"
    simulate_survey(800, 11, label_fraction=0.6, out_dir=survey, formats=("catalogue",))
    cat = survey / "xp_apogee_cat.h5"
    with h5py.File(cat, "r") as f:
        table = f["__astropy_table__"][()]
    ids, coeffs, g = table["ids"], table["coeffs"].astype(np.float64), table["phot_g_mean_flux"].astype(np.float64)
    x = coeffs / g[:, None]
    norm = tmp_path / "apogee_norm.npz"
    np.savez(norm, mu=x.mean(axis=0), sig=x.std(axis=0))

    monkeypatch.setenv("XPVAE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XPVAE_DATABASE_URL", raising=False)
    monkeypatch.delenv("XPVAE_BROKER_URL", raising=False)
    monkeypatch.delenv("XPVAE_SHARED", raising=False)      # the weights' default: the vendored copy in reference/
    run = CliRunner()
    assert run.invoke(main, ["db", "upgrade"]).exit_code == 0
    res = run.invoke(main, ["ingest", "catalogue", str(cat), "--norm", str(norm)])
    assert res.exit_code == 0, res.output
    stored = next((tmp_path / "home" / "norms").glob("apogee_norm-*.npz"))
    res = run.invoke(main, ["model", "import-published", "--norm", str(stored)])
    assert res.exit_code == 0 and "published-svae" in res.output, res.output
    res = run.invoke(main, ["infer", "--model", "published-svae"])
    assert res.exit_code == 0, res.output
    # the catalogue has no correlations: χ² is reported unavailable, never silently diagonal
    assert f"unavailable for {len(ids)} of {len(ids)} stars" in res.output, res.output
    home_db = f"sqlite:///{tmp_path / 'home' / 'xpvae.sqlite'}"     # the embedded default under XPVAE_HOME
    with get_engine(home_db).connect() as conn:
        rows = conn.execute(sa.text("SELECT source_id, z1, z2, z3, z4, z5, z6 FROM inference_results "
                                    "ORDER BY source_id")).all()
        n_labelled = conn.execute(sa.text("SELECT count(*) FROM latents WHERE teff IS NOT NULL")).scalar()
    got_ids = np.array([r[0] for r in rows], np.int64)
    got = np.array([r[1:] for r in rows], np.float64)
    assert len(rows) == len(ids) and n_labelled == len(ids)
    # independent recomputation: the published network on the catalogue arrays with that normalisation
    model = load_published(shared_dir / "reference/scatter_vae_apogee/weight.pt").eval()
    order = np.argsort(ids)
    import torch
    with torch.no_grad():
        mu, _ = model.encode(torch.as_tensor(((x - x.mean(0)) / x.std(0))[order], dtype=torch.float32))
    np.testing.assert_array_equal(got_ids, ids[order])
    np.testing.assert_allclose(got, mu.numpy(), rtol=1e-4, atol=1e-4)
