"""The two entry points end to end on small synthetic inputs: rows, headline, figures and report written."""
import json
import re

import numpy as np
import pytest

from analysis import ROW_FIELDS, run_alpha_analysis, run_reconstruction_report
from analysis.synthetic import alpha_sample, reconstruction_sample


def _check_rows(rows):
    assert rows
    for r in rows:
        assert tuple(r) == ROW_FIELDS
        for k in ("value", "ci_lo", "ci_hi", "bin_lo", "bin_hi"):
            assert r[k] is None or (type(r[k]) is float and np.isfinite(r[k]))
    json.dumps(rows)


def test_alpha_analysis_end_to_end(tmp_path):
    """Latents carrying α: the headline must say the latents add information for all pristine stars AND for
    the Teff < 5000 K giants, both samples appear in rows and report, and every figure is a real PNG."""
    z, lab, phot = alpha_sample(700, alpha_in_latents=True, seed=21)
    calls = []
    res = run_alpha_analysis(z, lab, phot, out_dir=tmp_path, n_trees=20, n_boot=200, min_bin=30,
                             samples=("pristine", "pristine_cool_giants"),
                             progress=lambda d, t, m: calls.append((d, t, m)))
    _check_rows(res.rows)
    json.dumps(res.headline)
    for sample in ("pristine", "pristine_cool_giants"):
        info = res.headline["samples"][sample]
        assert info["latents_add_alpha_information"] is True
        assert 0 < info["n_high"] < info["n"]
        assert res.select(sample=sample, statistic="balanced_accuracy", subject="labels_latents")
        assert res.select(sample=sample, statistic="dip_p", subject="alpha_m", bin_var="m_h")
        assert res.select(sample=sample, statistic="dip_p", subject="latent_fisher", bin_var="m_h")
        assert res.select(sample=sample, statistic="ari", subject="latent_gmm2", bin_var=None)
        assert res.select(sample=sample, statistic="latent_mean", bin_var="alpha_m")
    giants = res.headline["samples"]["pristine_cool_giants"]["n"]
    expected = int(np.sum((lab["logg"] < 5.9 - 4 * lab["teff"] / 1e4) & (lab["teff"] < 5000)))
    assert giants == expected
    assert calls[-1][0] == calls[-1][1] and all(d <= t for d, t, _ in calls)
    md = (tmp_path / "report.md").read_text()
    assert "pristine_cool_giants" in md and "(e) − (c)" in md
    assert (tmp_path / "report.html").read_text().startswith("<!doctype html>")
    assert len(res.figures) == 1 + 3 * 2
    for f in res.figures:
        assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f.name in md


def test_alpha_analysis_reports_a_too_small_sample_instead_of_failing(tmp_path):
    z, lab, phot = alpha_sample(300, alpha_in_latents=False, seed=22)
    res = run_alpha_analysis(z, lab, phot, out_dir=tmp_path, n_trees=10, n_boot=50, min_stars=1000,
                             samples=("pristine",), draw_figures=False)
    assert "skipped" in res.headline["samples"]["pristine"]
    assert res.select(statistic="n_stars")[0]["value"] == 300
    assert "skipped" in (tmp_path / "report.md").read_text()


def test_alpha_analysis_rejects_misaligned_inputs(tmp_path):
    z, lab, phot = alpha_sample(50, alpha_in_latents=False, seed=23)
    with pytest.raises(ValueError, match="teff"):
        run_alpha_analysis(z, dict(lab, teff=lab["teff"][:-1]), phot, out_dir=tmp_path)


def test_reconstruction_report_end_to_end(tmp_path):
    """The label model is worse only in its label-poor corner: the headline's 'cells where label is worse'
    must all lie inside that corner, and no cell may show the calibrated model worse."""
    models, labels, truth = reconstruction_sample(1500, seed=5)
    res = run_reconstruction_report(models, labels, out_dir=tmp_path, pairs=[("label", "svae")], n_boot=100,
                                    train_labels={"teff": labels["teff"][:50], "logg": labels["logg"][:50]})
    _check_rows(res.rows)
    json.dumps(res.headline)
    cmp = res.headline["comparisons"]["label/svae"]
    assert cmp["cells_a_worse"] and not cmp["cells_b_worse"]
    teff_max, logg_max = truth["region"]
    assert all(c["teff"][1] <= teff_max and c["logg"][1] <= logg_max for c in cmp["cells_a_worse"])
    assert cmp["coefficients_b_better"] == 110            # every coefficient: label's msz is higher overall
    for band in ("bp", "rp"):
        (row,) = res.select(statistic="chi2_dof_scatter", subject=f"svae:{band}", bin_var=None)
        assert row["ci_lo"] < 1.0 < row["ci_hi"]
    assert res.select(statistic="msz_scatter", bin_var="teff")
    assert res.select(statistic="n_train_labels")
    md = (tmp_path / "report.md").read_text()
    assert "label/svae" in md
    for f in res.figures:
        assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f.name in md


def test_reconstruction_report_refuses_different_stars(tmp_path):
    models, labels, _ = reconstruction_sample(40, seed=6)
    other = dict(models["label"], x=models["label"]["x"] + 1.0)
    with pytest.raises(ValueError, match="same stars"):
        run_reconstruction_report({"svae": models["svae"], "label": other}, labels, out_dir=tmp_path)


def test_report_embeds_model_names_as_text(tmp_path):
    """A model name is data: in report.md and report.html it must read as itself, never become markup
    (raw HTML, a link, a table cell break, a heading)."""
    evil = "<img src=x onerror=alert(1)>|[click](javascript:alert(2)) *x*\n# owned"
    models, labels, _ = reconstruction_sample(300, seed=8)
    models = {evil: models["label"], "svae": models["svae"]}
    run_reconstruction_report(models, labels, out_dir=tmp_path, pairs=[(evil, "svae")], n_boot=20)
    md = (tmp_path / "report.md").read_text()

    def unescaped(pattern: str):
        return re.search(r"(?<!\\)" + pattern, md)

    assert not unescaped("<img") and not unescaped(r"\]\(javascript") and not unescaped(r"\|\[")
    assert "\n# owned" not in md
    assert "\\<img src=x onerror=alert(1)\\>\\|\\[click\\](javascript:alert(2)) \\*x\\* \\# owned" in md
    page = (tmp_path / "report.html").read_text()
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert all("<" not in f.name and "/" not in f.name.replace(".png", "") for f in tmp_path.glob("*.png"))
