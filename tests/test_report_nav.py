"""The report's navigation bar (every section has a link, in page order) and the labels of
its figures (angles rounded, basic-emotion targets named on the circumplex)."""
from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

import stimgen
from buildfolders import protocol_from_text

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"


class _Anchors(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sections, self.links, self._in_nav = [], [], False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "nav":
            self._in_nav = True
        elif tag == "section" and attrs.get("id"):
            self.sections.append(attrs["id"])
        elif tag == "a" and self._in_nav and (attrs.get("href") or "").startswith("#"):
            self.links.append(attrs["href"][1:])

    def handle_endtag(self, tag):
        if tag == "nav":
            self._in_nav = False


def test_every_section_of_the_templates_is_in_the_nav_list():
    # static: also the sections only some builds show (norms, clips, correction, ...)
    ids = {m for path in TEMPLATES.glob("report*.html.j2")
           for m in re.findall(r'<section id="([^"]+)"', path.read_text(encoding="utf-8"))}
    listed = set(re.findall(r'\("([a-z-]+)", "', (TEMPLATES / "report.html.j2").read_text(
        encoding="utf-8")))
    assert ids and ids <= listed, ids - listed


PROTOCOL = """\
study: {name: nav}
seed: 3
backend: {name: schematic}
identities: [{id: id01, seed: 4}]
targets: {emotions: [happiness, circumplex:sad], intensities: [1.0], neutral: true}
validation: {rater: geometric, correction: {iterations: 1}}
output: {image_size: 64, dynamic: {frames: 3, fps: 10}}
experiment:
  task: {type: categorization, choices: [Happiness, Sad, Neutral]}
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("nav")
    return stimgen.build(protocol_from_text(folder, PROTOCOL), out=folder / "out",
                         progress=False).out


def test_every_section_of_a_built_report_has_a_nav_link_in_page_order(built):
    parser = _Anchors()
    parser.feed((built / "report.html").read_text(encoding="utf-8"))
    assert {"correction", "dynamic-stimuli", "au-profile", "design"} <= set(parser.sections)
    assert parser.links == parser.sections


def test_figure_labels_round_angles_and_name_the_basic_emotions(built):
    figures = built / "report_assets" / "figures"
    heatmap = (figures / "distance_heatmap.svg").read_text(encoding="utf-8")
    assert "Happiness 32°" in heatmap and "32.19" not in heatmap
    circumplex = (figures / "circumplex.svg").read_text(encoding="utf-8")
    # the rim names the 28 terms at their exact angles (Sad 207.5°); the basic emotion is named at its target
    assert "Happiness 32°" in circumplex and "Sad 207.5°" in circumplex
