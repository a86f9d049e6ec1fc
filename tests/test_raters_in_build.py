"""Several raters per build: `auto` resolved from what is installed, per-rater columns in
stimuli.tsv, the raters_disagree flag, every rater in the manifest with its circularity, and
the report's "Do the raters agree?" section."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import stimgen
from buildfolders import parse_page, protocol_from_text
from stimgen.build_folder import read_build_folder
from stimgen.raters.selection import choose_raters

TWO_RATERS = """\
study: {name: two raters}
seed: 5
backend: {name: schematic}
identities: [{id: id01, seed: 1}, {id: id02, seed: 2}]
targets: {emotions: [circumplex:happy, circumplex:sad, tired], intensities: [0.5, 1.0], neutral: true}
validation:
  rater: geometric
  also: [emonet]
  tolerance: {distance: 0.4}
output: {image_size: 64}
"""



@pytest.fixture
def two_rater_build(tmp_path, tiny_home, monkeypatch):
    monkeypatch.setenv("STIMGEN_HOME", str(tiny_home))
    protocol = protocol_from_text(tmp_path, TWO_RATERS)
    return stimgen.build(protocol, out=tmp_path / "out", progress=False)


def test_auto_prefers_the_independent_rater_when_it_is_installed():
    with_it = choose_raters("auto", [], "emostyle", installed=lambda name: True)
    without = choose_raters("auto", [], "emostyle", installed=lambda name: False)
    assert with_it.names == ("hsemotion", "emonet") and "independent" in with_it.notes[0]
    assert without.names == ("emonet",) and "stimgen models fetch" in without.notes[0]
    assert choose_raters("auto", [], "schematic", installed=lambda n: True).names == (
        "geometric", "hsemotion")
    assert choose_raters("auto", ["emonet"], "schematic", installed=lambda n: False).names == (
        "geometric", "emonet")
    called = []
    choose_raters("geometric", [], "schematic", installed=lambda n: called.append(n))
    assert not called                     # explicit raters never depend on what is installed


def test_every_rater_gets_its_columns_and_the_primary_drives_the_flags(two_rater_build):
    table = two_rater_build.stimuli
    for name in ("geometric", "emonet"):
        assert {f"valence_{name}", f"arousal_{name}"} <= set(table.columns)
    np.testing.assert_array_equal(table["valence_geometric"], table["achieved_valence"])
    assert not np.allclose(table["valence_emonet"], table["achieved_valence"])
    assert (table["rater"] == "geometric").all()
    distance = np.hypot(table["valence_emonet"] - table["achieved_valence"],
                        table["arousal_emonet"] - table["achieved_arousal"])
    flagged = table["flags"].str.contains("raters_disagree")
    assert (flagged == (distance > 0.4)).all() and flagged.any()
    written = pd.read_csv(two_rater_build.out / "stimuli.tsv", sep="\t")
    np.testing.assert_allclose(written["valence_emonet"], table["valence_emonet"], atol=1e-6)


def test_the_manifest_lists_every_rater_with_its_circularity(two_rater_build):
    manifest = json.loads((two_rater_build.out / "manifest.json").read_text())
    raters = {r["name"]: r for r in manifest["raters"]}
    assert [r["name"] for r in manifest["raters"]] == ["geometric", "emonet"]
    assert raters["geometric"]["primary"] and not raters["emonet"]["primary"]
    assert "fitted on these schematic faces" in raters["geometric"]["circularity"]
    assert raters["emonet"]["independent"] and raters["emonet"]["weights_sha256"]
    assert manifest["rater"]["name"] == "geometric"


def test_the_report_shows_whether_the_raters_agree(two_rater_build):
    out = two_rater_build.out
    page = parse_page(out / "report.html")
    text = (out / "report.html").read_text(encoding="utf-8")
    assert 'id="raters"' in text and "Do the raters agree?" in text
    assert "Circular here: its coefficients were fitted on these schematic faces" in text
    assert "Independent of this generator." in text
    rows = {r[0][2]: r for r in page.tables["table-raters"] if r and r[0][0] == "th"}
    table = read_build_folder(out).stimuli
    happy = table[table["emotion"] == "Happy"]
    between = np.hypot(happy["valence_emonet"] - happy["achieved_valence"],
                       happy["arousal_emonet"] - happy["achieved_arousal"]).mean()
    cells = [c[2] for c in rows["Happy"][1:]]
    assert cells[0] == str(len(happy))
    assert cells[3] == f"{between:.2f}"
    assert "raters disagree: emonet reads V" in text


def test_one_rater_builds_keep_their_columns_and_have_no_agreement_section(tmp_path):
    protocol = protocol_from_text(tmp_path, TWO_RATERS.replace("  also: [emonet]\n", ""))
    result = stimgen.build(protocol, out=tmp_path / "out", progress=False)
    assert "valence_geometric" not in result.stimuli.columns
    assert 'id="raters"' not in (result.out / "report.html").read_text(encoding="utf-8")


def test_a_rater_listed_twice_or_also_as_primary_is_refused(tmp_path):
    from stimgen.errors import ProtocolError

    with pytest.raises(ProtocolError, match="listed twice"):
        protocol_from_text(tmp_path, TWO_RATERS.replace("[emonet]", "[emonet, emonet]"))
    with pytest.raises(ProtocolError, match="primary rater"):
        protocol_from_text(tmp_path, TWO_RATERS.replace("[emonet]", "[geometric]"))


# --- targets taken from reference faces -------------------------------------------------------

def psychopy_photo(name: str) -> Path:
    """One of PsychoPy's demo photos, used in place (its licence is PsychoPy's)."""
    import importlib.util

    spec = importlib.util.find_spec("psychopy")
    found = sorted((Path(spec.origin).parent / "demos").rglob(name)) if spec and spec.origin else []
    if not found:
        pytest.skip(f"PsychoPy's demo photo {name} is not installed")
    return found[0]


def test_a_reference_face_becomes_a_target_of_every_identity(tmp_path, monkeypatch):
    """The reference is rated by the primary rater (hsemotion, here a tiny ONNX network whose
    valence and arousal are known functions of the face crop's mean colour) and its VA is the
    target; the report shows the reference beside what was made."""
    from test_hsemotion_rater import CHANNEL_WEIGHTS, channel_mean_model

    from stimgen.raters import create_rater
    from stimgen.raters.images import rate_images
    from stimgen.weights import add_model

    monkeypatch.setenv("STIMGEN_HOME", str(tmp_path / "home"))
    add_model("hsemotion_enet_b0_8_va_mtl",
              channel_mean_model(tmp_path / "channels.onnx", CHANNEL_WEIGHTS))
    photo = psychopy_photo("face01.jpg")
    expected = rate_images([photo], create_rater("hsemotion", "schematic")).iloc[0]
    text = (TWO_RATERS.replace("  also: [emonet]\n", "").replace("rater: geometric",
                                                                 "rater: hsemotion")
            .replace("targets: {emotions: [circumplex:happy, circumplex:sad, tired], intensities: [0.5, 1.0], "
                     "neutral: true}", f"targets: {{from_images: ['{photo}'], neutral: true}}"))
    result = stimgen.build(protocol_from_text(tmp_path, text), out=tmp_path / "out",
                           progress=False)
    made = result.stimuli[result.stimuli["emotion"] == "face01"]
    assert list(made["stimulus_id"]) == ["id01_face01", "id02_face01"]
    assert made["target_valence"].tolist() == pytest.approx([expected["valence"]] * 2)
    assert made["target_arousal"].tolist() == pytest.approx([expected["arousal"]] * 2)
    manifest = json.loads((result.out / "manifest.json").read_text())
    reference = manifest["reference_faces"][0]
    assert reference["label"] == "face01" and reference["rater"] == "hsemotion"
    assert (result.out / reference["image"]).is_file()
    page = (result.out / "report.html").read_text(encoding="utf-8")
    assert 'id="references"' in page and 'src="references/face01.png"' in page


def test_reference_faces_need_a_rater_that_can_rate_a_photo(tmp_path):
    from stimgen.errors import StimgenError

    photo = psychopy_photo("face01.jpg")
    text = TWO_RATERS.replace("  also: [emonet]\n", "").replace(
        "targets: {emotions: [circumplex:happy, circumplex:sad, tired], intensities: [0.5, 1.0], neutral: true}",
        f"targets: {{from_images: ['{photo}']}}")
    with pytest.raises(StimgenError, match="geometric, which cannot rate a photo"):
        stimgen.build(protocol_from_text(tmp_path, text), out=tmp_path / "out", progress=False)


def test_a_missing_reference_image_is_named_at_load(tmp_path):
    from stimgen.errors import ProtocolError

    text = TWO_RATERS.replace(
        "targets: {emotions: [circumplex:happy, circumplex:sad, tired], intensities: [0.5, 1.0], neutral: true}",
        "targets: {from_images: [refs/smile.jpg]}")
    with pytest.raises(ProtocolError, match=r"targets.from_images.0.*smile.jpg"):
        protocol_from_text(tmp_path, text)


def test_the_category_table_frames_the_nearest_basic_category(two_rater_build):
    # a categorical second rater (as hsemotion writes it): its table marks, per target, the
    # category a reader expects there
    from stimgen.report import write_report
    from stimgen.report.agreement import build_raters, category_tables

    out = two_rater_build.out
    table = pd.read_csv(out / "stimuli.tsv", sep="\t", keep_default_na=False)
    seen = {"Happy": "happiness", "Sad": "sadness", "Tired": "neutral", "neutral": "neutral"}
    table["category_emonet"] = table["emotion"].map(seen)
    table.to_csv(out / "stimuli.tsv", sep="\t", index=False)
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    folder = read_build_folder(out)
    expected = {row[0]: row[3] for row in
                category_tables(folder.stimuli, build_raters(manifest))[0].rows}
    # by name (Happy: happiness), by direction (Tired 268 degrees: sadness), neutral at (0, 0)
    assert expected == {"Happy": "happiness", "Sad": "sadness", "Tired": "sadness",
                        "neutral": "neutral"}
    write_report(out)
    page = parse_page(out / "report.html")
    rows = {r[0][2]: r for r in page.tables["table-categories-emonet"] if r and r[0][0] == "th"}
    assert [c[2] for c in rows["Tired"][1:3]] == [str((table["emotion"] == "Tired").sum()),
                                                   "sadness"]
    text = (out / "report.html").read_text(encoding="utf-8")
    assert text.count('class="num nearest"') == 4
