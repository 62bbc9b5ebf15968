"""The HTML report as a person sees it: rendered by a real headless Chromium (`apt-get install chromium`;
.ci/run installs it) from a folder that holds nothing but report.html, so every figure must be embedded.

A script added to a copy of the page measures, after load, whether every figure decoded and whether any
number or interval in a table broke over two lines; the screenshot must show the figure's red high-α points."""
from __future__ import annotations

import io
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from analysis import figures as figs
from analysis.report import Report, fmt_ci, fmt_p

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")
PROBE = """<script>
window.addEventListener('load', () => {
  const imgs = [...document.images];
  const broken = imgs.filter(i => !(i.complete && i.naturalWidth > 0)).length;
  const wrapped = [...document.querySelectorAll('td.num, td.range')].filter(td => {
    const r = document.createRange(); r.selectNodeContents(td);
    return new Set([...r.getClientRects()].map(x => Math.round(x.top))).size > 1; }).length;
  const out = document.createElement('pre'); out.id = 'probe';
  out.textContent = `images=${imgs.length} broken=${broken} wrapped=${wrapped}`;
  document.body.appendChild(out);
});
</script>"""


def _browser() -> str:
    for name in BROWSERS:
        if shutil.which(name):
            return shutil.which(name)
    pytest.fail("a headless Chromium renders the HTML report in this test: `apt-get install chromium` "
                "(.ci/run installs it)")


def _run(browser: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--allow-file-access-from-files", *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    """A report with a figure and a narrow table of intervals and p-values, then moved alone to another folder."""
    work = tmp_path_factory.mktemp("report")
    rng = np.random.default_rng(8)
    z = rng.normal(size=(600, 3))
    high = rng.random(600) < 0.3
    z[high, 0] += 2.5
    rep = Report("Browser check")
    rep.paragraph("A table whose first column holds long prose, so the browser must squeeze the numeric columns.")
    long_text = "a long explanation of the row that could easily take the whole width of the page " * 3
    rep.table(["what", "balanced accuracy", "difference", "dip p"],
              [[long_text, fmt_ci(0.8123, 0.7912, 0.8333), fmt_ci(-0.0123, -0.0345, 0.0101), fmt_p(0.0)],
               ["short", fmt_ci(0.5, 0.45, 0.55), fmt_ci(1e-5, -2e-5, 3e-5), fmt_p(0.0312)]])
    fig = figs.latent_pairs(z, high, work / "latents.png", sample="pristine")
    rep.image(fig, figs.caption(fig))
    rep.write(work)
    alone = tmp_path_factory.mktemp("elsewhere") / "report.html"
    shutil.copy(work / "report.html", alone)
    return alone


def test_report_opens_alone_in_a_browser_with_figures_decoded_and_intervals_unbroken(page, tmp_path):
    html = page.read_text(encoding="utf-8")
    assert not re.search(r"(src|href)\s*=\s*['\"](?!data:)", html), "the report refers to a file or address"
    probed = tmp_path / "probed.html"
    probed.write_text(html.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    # a narrow window: tables are squeezed as on a laptop beside another window
    res = _run(_browser(), "--window-size=700,1200", "--virtual-time-budget=5000", "--dump-dom", probed.as_uri())
    found = re.search(r"images=(\d+) broken=(\d+) wrapped=(\d+)", res.stdout)
    assert found, res.stderr[-2000:]
    images, broken, wrapped = map(int, found.groups())
    assert images == 1 and broken == 0
    assert wrapped == 0, "a number or interval in a table broke over two lines"


def test_screenshot_shows_the_embedded_figure(page, tmp_path):
    shot = tmp_path / "shot.png"
    res = _run(_browser(), "--window-size=1200,1600", f"--screenshot={shot}", page.as_uri())
    assert shot.exists(), res.stderr[-2000:]
    im = np.asarray(Image.open(io.BytesIO(shot.read_bytes())).convert("RGB"), np.int16)
    assert im.shape[:2] == (1600, 1200)
    r, g, b = im[..., 0], im[..., 1], im[..., 2]
    # the figure's high-α red (#c0392b) and low-α blue (#2c6fbb) points must be on screen, not a broken image
    red = np.sum((r - b > 60) & (r - g > 60))
    blue = np.sum((b - r > 60) & (b > 120))
    assert red > 500 and blue > 500, (red, blue)
    assert len(np.unique(im.reshape(-1, 3), axis=0)) > 50     # more than text on white
