"""Figures and report text for people: display labels, p-values, captions, no empty panels, high-α on top,
a self-contained HTML report with left-aligned text and unbreakable intervals."""
from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from analysis import figures as figs
from analysis.alpha import DEFAULT_SAMPLES, KEY_DIFFERENCE
from analysis.classify import FEATURE_SETS, PAIRS
from analysis.display import label
from analysis.report import NBSP, Report, fmt_ci, fmt_p
from analysis.tracks import Track


@pytest.mark.parametrize("name", [*DEFAULT_SAMPLES, *FEATURE_SETS, KEY_DIFFERENCE, *(f"{a}-{b}" for a, b in PAIRS),
                                  "fixed_m_h-0.4", "fixed_m_h+0.1", "high_alpha", "latent_fisher", "alpha_m",
                                  "balanced_accuracy", "heldout"])
def test_internal_names_become_words(name):
    shown = label(name)
    assert shown and "_" not in shown and shown != name


def test_known_labels_and_unknown_names():
    assert label(KEY_DIFFERENCE) == "(e) − (c)"
    assert label("fixed_m_h-0.4") == "stars at [M/H] ≈ −0.4"
    assert label("some_new_thing") == "some new thing"      # never a raw column name, even when unmapped


@pytest.mark.parametrize("p, text", [(0.0, "< 1e-4"), (3e-7, "< 1e-4"), (9.99e-5, "< 1e-4"), (1e-4, "0.0001"),
                                     (0.00042, "0.0004"), (0.0312, "0.031"), (1.0, "1.000"), (float("nan"), "–"),
                                     (None, "–")])
def test_p_values(p, text):
    assert fmt_p(p).replace(NBSP, " ") == text


def test_interval_is_held_together():
    text = fmt_ci(0.81234, 0.79, 0.83)
    assert " " not in text and text.replace(NBSP, " ") == "0.812 [0.790, 0.830]"


def _report(tmp_path, figure=None):
    rep = Report("t")
    rep.table(["sample", "value", "interval", "p", "bin", "bins"],
              [["pristine stars", 12, fmt_ci(0.5, 0.4, 0.6), fmt_p(0), "[-0.4, -0.2)", "all"]])
    if figure is not None:
        rep.image(figure, figs.caption(figure))
    rep.write(tmp_path)
    return (tmp_path / "report.html").read_text(encoding="utf-8")


def test_html_is_self_contained_and_aligns_text_left(tmp_path):
    fig = figs.msz_ratio_plot(np.ones(110), np.full(110, 0.9), np.full(110, 1.1), tmp_path / "r.png", a="x", b="y")
    html = _report(tmp_path, fig)
    assert "data:image/png;base64," in html
    assert not re.search(r"(src|href)\s*=\s*['\"](?!data:)", html) and "r.png" not in html
    cells = re.findall(r"<td(?: class='(\w+)')?>([^<]*)</td>", html)
    assert [c for c, _ in cells] == ["", "num", "num", "num", "range", ""]   # prose left, numbers right
    assert "td.num{text-align:right;white-space:nowrap}td.range{white-space:nowrap}" in html
    assert "text-align:left" in html
    assert "Ratio of the mean squared" in html                               # the caption, not the file name


def test_every_figure_has_a_caption_that_says_what_it_shows(tmp_path):
    rng = np.random.default_rng(3)
    z, high = rng.normal(size=(200, 4)), rng.random(200) < 0.3
    path = figs.latent_pairs(z, high, tmp_path / "latents_pristine_cool_giants.png", sample="pristine_cool_giants")
    text = figs.caption(path)
    assert "pristine giants, Teff < 5000 K" in text and "high-α" in text and "_" not in text


def _panels(path) -> tuple[int, int]:
    with Image.open(path) as im:
        return im.size


def test_empty_inputs_say_so_or_leave_the_panel_out(tmp_path):
    one = figs.zscore_profiles({"m": {"bias": np.zeros(110), "width": np.ones(110)}}, tmp_path / "a.png",
                               sample="heldout")
    two = figs.zscore_profiles({"m": {"bias": np.zeros(110), "width": np.ones(110), "bias_scatter": np.zeros(110),
                                      "width_scatter": np.ones(110)}}, tmp_path / "b.png", sample="heldout")
    assert _panels(one)[1] < 0.7 * _panels(two)[1]                          # no empty "with scatter" panel
    assert "left out" in figs.caption(one)
    for path in (figs.bimodality_per_bin([], tmp_path / "c.png", sample="good", min_stars=30),
                 figs.cell_map([], tmp_path / "d.png", a="x", b="y", min_stars=20)):
        assert _ink(path) > 0.002                                          # words, not a blank canvas
    nan = np.full((3, 2), np.nan)
    seq = [Track(n, "m_h", np.arange(3.0), np.arange(3.0) + 1, np.zeros(3, int), nan, nan)
           for n in ("high_alpha", "low_alpha")]
    fixed = Track("fixed_m_h-0.4", "alpha_m", np.arange(3.0), np.arange(3.0) + 1, np.zeros(3, int), nan, nan)
    tr = figs.latent_tracks(seq, fixed, tmp_path / "e.png", sample="good")
    assert "left out" in figs.caption(tr)


def _ink(path) -> float:
    with Image.open(path) as im:
        a = np.asarray(im.convert("L"))
    return float(np.mean(a < 128))


def test_high_alpha_is_drawn_over_the_majority(tmp_path):
    """Every high-α star exactly on a low-α one: the overlaps must show high-α red, not low-α blue."""
    z0 = np.random.default_rng(11).normal(size=(1500, 2))
    z = np.concatenate([z0, z0])
    high = np.arange(3000) >= 1500
    path = figs.latent_pairs(z, high, tmp_path / "p.png", sample="good")
    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB"), np.int16)
    red = np.sum((rgb[..., 0] - rgb[..., 2] > 40) & (rgb[..., 0] - rgb[..., 1] > 40))
    blue = np.sum(rgb[..., 2] - rgb[..., 0] > 40)
    assert red > 1000 and red > 5 * blue, (red, blue)   # drawn below the blue, red shows in < 100 pixels
