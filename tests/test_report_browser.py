"""The report in a real browser: headless Chromium renders a non-blank page whose plots load
as images with alt text (offline, from the build folder alone), and its widest table fits a
1280 px window.

Skips only where /usr/bin/chromium is absent and the CI variable is unset; in CI it must run.
"""
from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from buildfolders import SMALL_PROTOCOL, parse_page, write_synthetic_build
from stimgen.report import write_report

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--hide-scrollbars")

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).is_file() and not os.environ.get("CI"),
    reason="headless Chromium not installed (apt-get install -y chromium); required in CI")


def screenshot(page: Path, png: Path, profile: Path, *, width=1280, height=2000) -> Image.Image:
    """Render ``page`` in headless Chromium and return the screenshot."""
    command = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={png}",
               f"--window-size={width},{height}", page.resolve().as_uri()]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert png.is_file(), (f"chromium wrote no screenshot (exit {result.returncode}): "
                           f"{result.stderr[-2000:]}")
    return Image.open(png).convert("RGB")


@pytest.mark.slow
def test_report_renders_in_headless_chromium(tmp_path):
    import stimgen
    (tmp_path / "protocol.yaml").write_text(SMALL_PROTOCOL, encoding="utf-8")
    result = stimgen.build(stimgen.load_protocol(tmp_path / "protocol.yaml"),
                           out=tmp_path / "build", progress=False)
    write_report(result.out)
    moved = tmp_path / "moved"        # the page must not depend on where it was built
    shutil.move(result.out, moved)
    image = screenshot(moved / "report.html", tmp_path / "page.png", tmp_path / "profile")
    pixels = np.asarray(image, dtype=float)
    assert image.size == (1280, 2000)
    assert pixels.std() > 20, "screenshot is blank"
    # The top of the page (header and summary) and the circumplex further down both drew ink.
    assert (pixels[:300] < 128).mean() > 0.003
    assert (pixels[900:1700] < 200).mean() > 0.01
    plots = [i for i in parse_page(moved / "report.html").images if "/figures/" in i["src"]]
    assert {Path(i["src"]).stem for i in plots} == {"circumplex", "distance_heatmap"}
    assert all(len(i["alt"]) > 80 for i in plots)


def test_circumplex_svg_renders_as_an_image(tmp_path):
    build = write_synthetic_build(tmp_path / "build")
    write_report(build)
    svg = build / "report_assets" / "figures" / "circumplex.svg"
    image = screenshot(svg, tmp_path / "svg.png", tmp_path / "profile", width=800, height=700)
    pixels = np.asarray(image, dtype=float)
    assert pixels.std() > 20
    blue = (pixels[..., 2] - pixels[..., 0]) > 40      # cividis blues of the error vectors
    assert blue.mean() > 0.0005


#: Appended to a copy of the page (the report itself has no script): writes the laid-out
#: width of the page and of every scrolling table box, and of the content inside it.
MEASURE = """<script>
window.addEventListener("load", () => {
  const boxes = {page: [document.documentElement.clientWidth, document.documentElement.scrollWidth]};
  document.querySelectorAll(".scroll > table").forEach(t => {
    boxes[t.id] = [t.parentElement.clientWidth, t.parentElement.scrollWidth]; });
  document.body.setAttribute("data-layout", JSON.stringify(boxes));
});
</script>"""


def layout(page: Path, profile: Path, *, width: int) -> dict[str, tuple[int, int]]:
    """(visible width, content width) in px of the page and of each table's scrolling box, as
    headless Chromium lays the page out in a window ``width`` px wide."""
    measured = page.with_name(f".measure-{width}-{page.name}")
    measured.write_text(page.read_text(encoding="utf-8").replace("</body>", MEASURE + "</body>"),
                        encoding="utf-8")
    command = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom",
               f"--window-size={width},1200", measured.resolve().as_uri()]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    measured.unlink()
    found = re.search(r'data-layout="([^"]*)"', result.stdout)
    assert found, f"chromium laid out nothing (exit {result.returncode}): {result.stderr[-2000:]}"
    return {name: tuple(sizes) for name, sizes in json.loads(html.unescape(found.group(1))).items()}


WIDE_PROTOCOL = """\
study: {name: wide table}
identities: [{id: id01, seed: 3}]
targets:
  emotions: [satisfied, distressed, frustrated, astonished, sleepy, circumplex:happy]
  intensities: [0.25, 0.5, 0.75, 1.0]
  points: [{label: mildly_pleasant_and_calm, valence: 0.3, arousal: -0.4}]
  neutral: true
output: {image_size: 64}
"""


@pytest.mark.slow
def test_emotion_table_fits_a_1280_pixel_window_and_scrolls_in_its_box_below(tmp_path):
    """The per-emotion table at its widest (the published EmoStyle columns shown, weak tags, a
    long point label) shows every column at 1280 px; narrower, it scrolls inside its own box
    and the page itself never scrolls sideways."""
    import stimgen
    (tmp_path / "wide.yaml").write_text(WIDE_PROTOCOL, encoding="utf-8")
    result = stimgen.build(stimgen.load_protocol(tmp_path / "wide.yaml"), out=tmp_path / "build",
                           progress=False)
    page = write_report(result.out)
    assert "dir-published" in page.read_text(encoding="utf-8")    # the widest layout
    wide = layout(page, tmp_path / "profile", width=1280)
    visible, content = wide["table-by-emotion"]
    assert content <= visible, f"at 1280 px the table needs {content} px of {visible}"
    assert wide["page"][1] <= wide["page"][0]
    narrow = layout(page, tmp_path / "profile", width=900)
    assert narrow["table-by-emotion"][1] > narrow["table-by-emotion"][0]   # scrolls in its box
    assert narrow["page"][1] <= narrow["page"][0]                          # the page does not
