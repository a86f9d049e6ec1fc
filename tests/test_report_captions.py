"""The report's words fit the build: the heatmap caption speaks of the EmoStyle weakness only
where weak rows are marked on an emostyle build, and sentences joined by the template keep
their space ("arousal (A). Grey columns")."""
from __future__ import annotations

import json
import re

import pytest

from buildfolders import write_synthetic_build
from stimgen.report import write_report
from stimgen.report.figures import heatmap_caption


def caption(page: str) -> str:
    match = re.search(r"distance_heatmap\.svg.*?<figcaption>(.*?)</figcaption>", page, re.S)
    assert match, "no heatmap caption in the page"
    return match.group(1)


@pytest.mark.parametrize("emostyle", [False, True], ids=["schematic", "emostyle"])
def test_heatmap_caption_names_the_emostyle_weakness_only_on_emostyle(tmp_path, emostyle):
    build = write_synthetic_build(tmp_path / "build", trained_against_generator=emostyle)
    page = write_report(build).read_text(encoding="utf-8")
    text = caption(page)
    if emostyle:       # flag_weak_region: auto flags it on emostyle, and rows are marked
        assert "known EmoStyle weakness" in text and "(weak)" in text
    else:
        assert text == "Brighter cells missed their target by more."
        assert "EmoStyle weakness" not in page


def test_a_protocol_that_flags_the_region_on_another_backend_is_told_what_it_means():
    text = heatmap_caption((242.0, 329.0), "schematic", marked=True)
    assert "as the protocol asks (flag_weak_region)" in text
    assert "nothing in advance about the schematic backend" in text
    assert "known EmoStyle weakness" not in text
    assert "No target angle lies in the weak region" in heatmap_caption((242, 329), "emostyle",
                                                                        marked=False)


def test_sentences_joined_by_the_template_keep_their_space(tmp_path):
    build = write_synthetic_build(tmp_path / "build")
    manifest = json.loads((build / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["backend"]["name"] == "schematic"
    text = re.sub(r"<[^>]+>", "", write_report(build).read_text(encoding="utf-8"))
    assert "arousal (A).Grey" not in text
    assert not re.search(r"[a-z)]\.[A-Z][a-z]", text.replace("e.g.", "")), \
        re.search(r".{30}[a-z)]\.[A-Z][a-z].{10}", text)
