"""A reduced `xpvae demo`, end to end in a subprocess on the embedded default (SQLite, in-process jobs), as a
newcomer would run it: the reports, figures and tables must exist and hold finite numbers.

This checks the plumbing of the whole pipeline, not the science (3 epochs on 2000 stars learn little; the
science is tested in test_science_*.py and docs/science-validation.md)."""
from __future__ import annotations

import json
import math
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

from analysis.alpha import CONTROLS_FOR

REPO = Path(__file__).resolve().parents[2]


def test_reduced_demo_produces_reports_figures_and_finite_tables(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("XPVAE_")}
    # XPVAE_SHARED unset: the vendored reference/ is the default
    env.update(XPVAE_HOME=str(tmp_path), OMP_NUM_THREADS="2")
    res = subprocess.run([sys.executable, "-m", "xpvae", "demo", "--n-stars", "2500", "--epochs", "3",
                          "--baseline-epochs", "3", "--bootstrap", "30", "--anomaly-fraction", "0.01"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = res.stdout
    assert "demo finished" in out and "SELECT" in out and "balanced accuracy" in out
    # the verdict says what it controls for and gives its p-value
    assert "latents add [α/M] information " + CONTROLS_FOR in out and "one-sided p =" in out

    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert math.isfinite(summary["svae"]["test_nll"]) and math.isfinite(summary["svae"]["test_zscore_std"])
    for report in summary["reports"]:
        report = Path(report)
        assert report.exists() and report.with_suffix(".html").exists()
        pngs = list(report.parent.glob("*.png"))
        assert pngs and all(p.stat().st_size > 5000 and p.read_bytes()[:4] == b"\x89PNG" for p in pngs)
        links = re.findall(r"\]\(([^()\s]+\.png)\)", report.read_text())   # captions may hold parentheses
        assert links
        for name in links:
            assert (report.parent / name).exists(), f"{report} links a missing figure {name}"
        page = report.with_suffix(".html").read_text()
        assert page.count("src='data:image/png;base64,") == len(links) and ".png" not in page   # self-contained

    db = sqlite3.connect(tmp_path / "xpvae.sqlite")
    n_res, n_finite = db.execute("SELECT count(*), sum(z1 IS NOT NULL AND nll IS NOT NULL AND zscore_rms "
                                 "IS NOT NULL AND bp_chi2_dof IS NOT NULL) FROM inference_results").fetchone()
    assert n_res > 2000 and n_finite == n_res
    # every star scored; the 1 % injected anomalies reported with their recall
    assert db.execute("SELECT count(*) FROM inference_results WHERE anomaly_score IS NULL").fetchone()[0] == 0
    recall = summary["anomaly_recall"]
    assert recall["counts"]["any"] >= 10 and "injected anomalies found by the anomaly score" in out
    assert all(0 <= recall["score"]["any"][f] <= 1 for f in ("0.01", "0.05"))
    # P(high-α) for every star: the candidates at purity 0.9 and the simulator's check on never-labelled stars
    cat = summary["alpha_catalogue_headline"]
    assert cat["n_stars"] == n_res and "P(high-α) for" in out
    assert ("high-α candidates at purity ≥ 0.9" in out) == (cat["threshold_purity_0.9"] is not None)
    truth = summary["alpha_catalogue_simulated_truth"]
    assert truth["n"] > 1000 and 0 <= truth["ece"] <= 1 and Path(truth["figure"]).read_bytes()[:4] == b"\x89PNG"
    assert "never-labelled simulated stars vs their true class" in out
    n_stats, n_null = db.execute("SELECT count(*), sum(value IS NULL) FROM analysis_statistics "
                                 "WHERE statistic IN ('balanced_accuracy', 'msz', 'zscore_width')").fetchone()
    assert n_stats > 100 and n_null == 0
    # the queries the demo prints run as printed
    queries = [line.strip() for line in out.splitlines() if line.strip().startswith("SELECT")]
    assert len(queries) == 5
    for q in queries:
        assert db.execute(q).fetchall(), q
    assert db.execute("SELECT count(*) FROM jobs WHERE status != 'succeeded'").fetchone()[0] == 0
