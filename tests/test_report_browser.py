"""The report in a real browser: headless Chromium renders a non-blank page whose plots load
as images with alt text (offline, from the build folder alone).

Skips only where /usr/bin/chromium is absent and the CI variable is unset; in CI it must run.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stimgen.report import write_report

from test_report import SMALL_PROTOCOL, parse_page, write_synthetic_build

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
