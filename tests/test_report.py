"""Tests of stimgen.report: tables agree with the metrics files, protocol text is escaped, the
page is self-contained and byte-stable, and the command refuses incomplete builds.

A synthetic build folder in the exact build-folder contract is written by
:func:`buildfolders.write_synthetic_build`, so these tests do not depend on the generator.
"""
from __future__ import annotations

import html
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from buildfolders import (EMOTIONS, METRICS, SMALL_PROTOCOL, parse_page,
                          write_synthetic_build)
from stimgen.report import templates_dir, write_report
from stimgen.build_folder import BuildFolderError, read_build_folder
from stimgen.cli.report import report_command
from stimgen.report.figures import spread_label_angles
from stimgen.report.tables import design_summary, format_number


# --- reading the page back ------------------------------------------------------------------------

def read_stimuli_text(build: Path) -> pd.DataFrame:
    """stimuli.tsv as text, with the true/false columns lower-cased."""
    stimuli = pd.read_csv(build / "stimuli.tsv", sep="\t", dtype=str, keep_default_na=False)
    for column in ("weak_region", "out_of_tolerance"):
        stimuli[column] = stimuli[column].str.lower()
    return stimuli


def metric_cells(row) -> dict[str, str]:
    return {cell[1]["data-metric"]: " ".join(cell[2].split())
            for cell in row if "data-metric" in cell[1]}


def mae_sd_text(record, stem: str, decimals: int) -> str:
    """The text of a "MAE ± SD" cell (whitespace normalised): one dash when MAE is undefined."""
    unit = "_deg" if stem == "dir" else ""
    mae = format_number(record[f'{stem}_mae{unit}'], decimals)
    return mae if mae == "–" else f"{mae} ± {format_number(record[f'{stem}_sd{unit}'], decimals)}"


def page_text(path: Path) -> str:
    """What a reader sees of a page: its text and the alt text of its images, tags removed."""
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"<(style|script)\b.*?</\1>", " ", text, flags=re.S)
    alts = re.findall(r'\balt="([^"]*)"', text)
    return html.unescape(" ".join([re.sub(r"<[^>]+>", " ", text), *alts]))


DECIMALS = {"dir": 1, "mag": 2, "val": 2, "aro": 2, "dist": 2}


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """report.html of a real schematic build: 2 identities x (6 emotions + 1 angle) x 2
    intensities, a VA point and neutral; the study name is an HTML injection attempt."""
    import stimgen
    root = tmp_path_factory.mktemp("report")
    (root / "protocol.yaml").write_text(SMALL_PROTOCOL, encoding="utf-8")
    result = stimgen.build(stimgen.load_protocol(root / "protocol.yaml"), out=root / "build",
                           progress=False, command="stimgen build protocol.yaml")
    return write_report(result.out)


# --- tests ------------------------------------------------------------------------------------

def test_templates_dir_holds_the_report_template():
    assert (templates_dir() / "report.html.j2").is_file()


def test_emotion_table_agrees_with_metrics_by_emotion(report):
    assert_emotion_table_matches(report)


def assert_emotion_table_matches(report: Path) -> None:
    """Every row and figure of the per-emotion table equals metrics_by_emotion.csv."""
    expected = pd.read_csv(report.parent / "metrics_by_emotion.csv", keep_default_na=False,
                           dtype={"emotion": str})
    rows = [r for r in parse_page(report).tables["table-by-emotion"] if r[0][0] == "th"
            and "data-label" in r[0][1]]
    assert [r[0][1]["data-label"] for r in rows] == list(expected["emotion"])
    flagged = read_build_folder(report.parent).weak_region_flagged   # emostyle, or `always`
    for row, record in zip(rows, expected.to_dict("records")):
        cells = metric_cells(row)
        for stem, decimals in DECIMALS.items():
            assert cells[stem] == mae_sd_text(record, stem, decimals), (record["emotion"], stem)
        for column in METRICS[10:]:
            assert cells[column] == format_number(record[column], 2), (record["emotion"], column)
        assert int(row[2][2]) == record["n"]
        weak = str(record["weak_region"]).lower() == "true"
        assert ("weak" in row[0][2]) == (weak and flagged), record["emotion"]


def test_intensity_table_agrees_with_metrics_by_intensity(report):
    expected = pd.read_csv(report.parent / "metrics_by_intensity.csv")
    *rows, total = [r for r in parse_page(report).tables["table-by-intensity"]
                    if "data-label" in r[0][1]]
    assert len(rows) == len(expected)
    assert total[0][2] == "all stimuli" and int(total[1][2]) == expected["n"].sum()
    for row, record in zip(rows, expected.to_dict("records")):
        assert float(row[0][2]) == pytest.approx(record["intensity"], abs=0.005)
        cells = metric_cells(row)
        for stem, decimals in DECIMALS.items():
            assert cells[stem] == mae_sd_text(record, stem, decimals)
        assert cells["ccc_valence"] == format_number(record["ccc_valence"], 2)


def test_published_figures_withheld_for_other_intensities(report):
    """The fixture uses intensities 0.5 and 1.0; the published table averages over four."""
    rows = {r[0][1]["data-label"]: metric_cells(r)
            for r in parse_page(report).tables["table-by-emotion"] if "data-label" in r[0][1]}
    assert "dir-published" not in rows["Happy"]
    assert "not comparable with them" in report.read_text(encoding="utf-8")


def test_published_emostyle_figures_sit_beside_matching_angles(tmp_path):
    import stimgen

    protocol_file = tmp_path / "p.yaml"
    protocol_file.write_text(
        "study: {name: anchors}\nidentities: [{id: id01, seed: 1}]\n"
        "targets: {emotions: [circumplex:happy, tired], angles: [130]}\noutput: {image_size: 64}\n")
    out = stimgen.build(stimgen.load_protocol(protocol_file), out=tmp_path / "b",
                        progress=False).out
    report = out / "report.html"
    rows = {r[0][1]["data-label"]: metric_cells(r)
            for r in parse_page(report).tables["table-by-emotion"] if "data-label" in r[0][1]}
    assert rows["Happy"]["dir-published"] == "10.2 ± 8.3"    # anchor row: Happy, 8°
    assert rows["Tired"]["dist-published"] == "0.68 ± 0.09"  # anchor row: Tired, 268°
    assert rows["a130"]["dist-published"] == "–"             # EmoStyle did not evaluate 130°
    text = report.read_text(encoding="utf-8")
    assert "Darne, C. G. D., Quan, C. &amp; Luo, Z. (2025)" in text     # the 28 x 4 table
    assert "Azari, B. &amp; Lim, A. (2024). EmoStyle" in text           # EmoStyle itself
    assert "not comparable with them" not in text


def test_summary_counts_and_model_rating_statement(report):
    stimuli = read_stimuli_text(report.parent)
    text = report.read_text(encoding="utf-8")
    assert "These are model ratings, not human norms." in text
    assert 'id="rater-warning"' not in text
    out = (stimuli["out_of_tolerance"] == "true").sum()
    flagged = (stimuli["flags"] != "").sum()
    assert re.search(rf"<b>{out}</b>out of tolerance", text)
    assert re.search(rf"<b>{flagged}</b>flagged", text)
    assert re.search(rf"<b>{len(stimuli) - flagged}</b>passed", text)


def test_flagged_table_lists_every_flagged_stimulus_with_reasons(report):
    stimuli = read_stimuli_text(report.parent).set_index("stimulus_id")
    tolerance = json.loads((report.parent / "manifest.json").read_text())[
        "protocol"]["normalized"]["validation"]["tolerance"]["distance"]
    table = parse_page(report).tables["table-flagged"][1:]
    reasons = {" ".join(row[1][2].split()).removesuffix("out").strip(): row[-1][2]
               for row in table}
    assert set(reasons) == set(stimuli.index[stimuli["flags"] != ""])
    assert reasons, "the small build should flag something (weak region: tired, calm)"
    for stimulus_id, text in reasons.items():
        flags = stimuli.loc[stimulus_id, "flags"].split(";")
        assert ("weak region 242°–328.6°" in text) == ("weak_region" in flags)
        distance = float(stimuli.loc[stimulus_id, "distance_error"])
        assert (f"VA distance {distance:.2f} exceeds the tolerance {tolerance:g}" in text) == (
            "distance_tolerance" in flags)


def test_study_name_of_a_real_build_is_escaped(report):
    text = report.read_text(encoding="utf-8")
    assert "<script" not in text.lower()
    assert "<title>&lt;script&gt;alert(1)&lt;/script&gt; · stimgen report</title>" in text
    assert "&lt;b&gt;bold?&lt;/b&gt;" in text


def test_contact_sheets_badge_every_flagged_stimulus(report):
    stimuli = read_stimuli_text(report.parent)
    text = report.read_text(encoding="utf-8")
    assert text.count('class="cell out"') == (stimuli["out_of_tolerance"] == "true").sum()
    flag_only = (stimuli["flags"] != "") & (stimuli["out_of_tolerance"] != "true")
    assert text.count('class="cell flag"') == flag_only.sum()
    assert text.count('<details class="sheet"') == stimuli["identity"].nunique()


def test_every_image_has_alt_text_and_resolves_inside_the_folder(report):
    page = parse_page(report)
    figures = [i for i in page.images if "/figures/" in i["src"]]
    assert {Path(i["src"]).stem for i in figures} == {"circumplex", "distance_heatmap"}
    for image in page.images:
        assert image.get("alt", "").strip(), image
        assert not re.match(r"[a-z]+:", image["src"]), image          # relative, no URL scheme
        assert (report.parent / image["src"]).is_file(), image
    assert all(len(i["alt"]) > 80 for i in figures)
    text = report.read_text(encoding="utf-8")
    assert not re.search(r"(src|href)=\"(https?:)?//", text)          # works offline


def test_figures_are_valid_svg_with_the_weak_region_labelled(report):
    import xml.etree.ElementTree as ElementTree
    circumplex = report.parent / "report_assets" / "figures" / "circumplex.svg"
    ElementTree.parse(circumplex)
    svg = circumplex.read_text(encoding="utf-8")
    assert "weak region" in svg and "Tired 267.7°" in svg and "At ease 321°" in svg


def test_report_is_byte_stable_and_replaces_its_assets(report, tmp_path):
    first = {p.relative_to(report.parent): p.read_bytes()
             for p in report.parent.rglob("*") if p.is_file() and "report" in str(p)}
    write_report(report.parent)
    second = {p.relative_to(report.parent): p.read_bytes()
              for p in report.parent.rglob("*") if p.is_file() and "report" in str(p)}
    assert first == second
    assert not [p for p in report.parent.iterdir() if p.name.startswith(".report")]  # no temps


def test_report_survives_moving_the_folder(report, tmp_path):
    moved = tmp_path / "elsewhere"
    shutil.copytree(report.parent, moved)
    page = parse_page(moved / "report.html")
    assert all((moved / image["src"]).is_file() for image in page.images)


def test_protocol_text_is_escaped_everywhere(tmp_path):
    hostile = "<script>alert(1)</script>"
    identity = "id\"01'<i>"
    build = write_synthetic_build(tmp_path / "b", study_name=hostile, identities=(identity,))
    text = write_report(build).read_text(encoding="utf-8")
    assert hostile not in text and "<script" not in text.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert identity not in text and "<i>" not in text
    assert "id&#34;01&#39;&lt;i&gt;" in text
    assert "A &lt;b&gt;test&lt;/b&gt;" in text
    page = parse_page(build / "report.html")       # the quotes did not end an attribute
    assert any(i["alt"].startswith(identity) for i in page.images)


def test_rater_trained_against_the_generator_raises_a_warning(tmp_path):
    build = write_synthetic_build(tmp_path / "b", trained_against_generator=True)
    text = write_report(build).read_text(encoding="utf-8")
    assert 'id="rater-warning"' in text
    assert "flatter the generator" in text
    assert "ab" * 32 in text                                      # model file sha256 shown


def test_design_and_backend_measures_sections_appear_when_present(tmp_path):
    build = write_synthetic_build(tmp_path / "b", with_design=True, extra_columns=True)
    report = write_report(build)
    page = parse_page(report)
    assert {"design", "backend-measures"} <= page.ids
    header, *rows = page.tables["table-design"]
    assert [cell[2] for cell in header] == ["group", "trials", "practice trials", "blocks",
                                            "stimuli", "identities", "emotions",
                                            "trials per emotion (min–max)"]
    stimuli = read_stimuli_text(build)
    per_emotion = stimuli["emotion"].value_counts()
    for row, group in zip(rows, ("g01", "g02")):
        assert [cell[2] for cell in row] == [
            group, str(len(stimuli)), "1", "1", str(len(stimuli)),
            str(stimuli["identity"].nunique()), str(stimuli["emotion"].nunique()),
            f"{per_emotion.min()}–{per_emotion.max()}"]
    assert (build / "report_assets" / "figures" / "backend_measures.svg").is_file()


def test_design_section_lists_each_groups_block_order(tmp_path):
    build = write_synthetic_build(tmp_path / "b", with_design=True, blocked=True)
    page = parse_page(write_report(build))
    header, *rows = page.tables["table-design"]
    assert header[-1][2] == "block order"
    last = f"block {len(EMOTIONS) + 1}"        # its trials have no block label
    expected = {"g01": [*EMOTIONS, last], "g02": [*reversed(EMOTIONS), last]}
    assert {row[0][2]: row[-1][2].split(" → ") for row in rows} == expected
    assert [row[3][2] for row in rows] == [str(len(EMOTIONS) + 1)] * 2     # the blocks column
    assert "runs its blocks in the order shown" in (build / "report.html").read_text("utf-8")


def test_block_order_names_the_factor_of_numeric_levels():
    # An intensity-blocked design labels its blocks "0.5" and "1"; the report says what they are.
    design = pd.DataFrame({
        "group": ["g01"] * 5 + ["g02"] * 4, "position": [1, 2, 3, 4, 5, 1, 2, 3, 4],
        "block": [0, 1, 1, 2, 2, 1, 1, 2, 2], "is_practice": [1, 0, 0, 0, 0, 0, 0, 0, 0],
        "block_label": ["practice", "0.5", "0.5", "1", "1", "1", "1", "0.5", "0.5"],
        "intensity": ["1.0", "0.5", "0.5", "1.0", "1.0", "1.0", "1.0", "0.5", "0.5"],
        "emotion": ["Sad", "Happy", "Sad", "Happy", "Sad", "Happy", "Sad", "Happy", "Sad"],
    }).astype(str)
    groups = {g["group"]: g["block_order"] for g in design_summary(design)["groups"]}
    assert groups == {"g01": ["intensity 0.5", "intensity 1"],
                      "g02": ["intensity 1", "intensity 0.5"]}


def test_design_with_one_block_per_group_shows_no_block_order(tmp_path):
    build = write_synthetic_build(tmp_path / "b", with_design=True)
    text = write_report(build).read_text(encoding="utf-8")
    assert "block order" not in text and "runs its blocks" not in text


UNDEFINED_FOR_NEUTRAL = ("ccc_valence", "ccc_arousal", "sagr_valence", "sagr_arousal")


def test_undefined_agreement_is_an_empty_cell_and_a_dash(report):
    """Neutral targets (intensity 0) do not vary and have no sign: CCC and SAGR are undefined,
    so the tables leave the cell empty and the report shows a dash rather than 0.00."""
    by_emotion = pd.read_csv(report.parent / "metrics_by_emotion.csv", dtype=str,
                             keep_default_na=False).set_index("emotion")
    by_intensity = pd.read_csv(report.parent / "metrics_by_intensity.csv", dtype=str,
                               keep_default_na=False)
    zero = by_intensity[by_intensity["intensity"].astype(float) == 0].iloc[0]
    for row in (by_emotion.loc["neutral"], zero):
        assert [row[c] for c in UNDEFINED_FOR_NEUTRAL] == [""] * 4
        assert float(row["rmse_valence"]) >= 0.0            # RMSE stays defined
    page = parse_page(report)
    tables = {name: {r[0][1]["data-label"]: metric_cells(r) for r in page.tables[name]
                     if "data-label" in r[0][1]}
              for name in ("table-by-emotion", "table-by-intensity")}
    for cells in (tables["table-by-emotion"]["neutral"], tables["table-by-intensity"]["0.00"]):
        assert [cells[c] for c in UNDEFINED_FOR_NEUTRAL] == ["–"] * 4
        assert cells["rmse_valence"] != "–"
    assert tables["table-by-emotion"]["neutral"]["dir"] == "–"     # not "– ± –"


#: Plural nouns the report counts; after a count of 1 each must be singular.
COUNTED_PLURALS = ("stimuli", "identities", "targets", "target angles", "intensities",
                   "trial rows", "groups", "lists", "emotions", "trials", "blocks")


def test_report_text_counts_one_in_the_singular(tmp_path):
    import stimgen
    protocol = tmp_path / "one.yaml"
    protocol.write_text("study: {name: one}\nidentities: [{id: id01, seed: 1}]\n"
                        "targets: {emotions: [circumplex:happy], intensities: [1.0]}\n"
                        "output: {image_size: 64}\n", encoding="utf-8")
    report = stimgen.build(stimgen.load_protocol(protocol), out=tmp_path / "b",
                           progress=False).out / "report.html"
    synthetic = write_synthetic_build(tmp_path / "s", identities=("id01",), with_design=True,
                                      extra_columns=True)
    design = pd.read_csv(synthetic / "experiment" / "design.csv")
    one_trial = design[(design["group"] == "g01") & (design["is_practice"] == 0)].head(1)
    one_trial.to_csv(synthetic / "experiment" / "design.csv", index=False)
    write_report(synthetic)
    one = re.compile(rf"\b1 ({'|'.join(COUNTED_PLURALS)})\b")
    for page in (report, synthetic / "report.html"):
        text = page_text(page)
        assert not one.findall(text), (page, one.findall(text))
    text = page_text(report)
    assert "<b>1</b>stimulus" in report.read_text(encoding="utf-8")
    assert "with 1 target (rings)" in text
    assert "for 1 target angle by 1 intensity" in text
    text = page_text(synthetic / "report.html")
    assert "(1 identity)" in text
    assert "1 trial row in 1 group." in " ".join(text.split())


def test_report_text_has_no_doubled_parentheses(report, tmp_path):
    # The geometric rater's description ends in a parenthesis of its own.
    build = write_synthetic_build(tmp_path / "b", with_design=True, extra_columns=True)
    manifest = json.loads((build / "manifest.json").read_text())
    manifest["rater"]["description"] = "a rater (fitted on (schematic) faces)"
    (build / "manifest.json").write_text(json.dumps(manifest))
    for page in (report, write_report(build)):
        text = page_text(page)
        assert "((" not in text and "))" not in text, re.findall(r".{60}(?:\(\(|\)\)).{0,20}", text)


def test_sections_are_absent_without_their_data(report):
    assert not {"design", "backend-measures"} & parse_page(report).ids


@pytest.mark.parametrize("breakage", ["no_manifest", "incomplete", "no_metrics", "no_image"])
def test_incomplete_build_is_refused_with_a_clear_error(tmp_path, breakage):
    build = write_synthetic_build(tmp_path / "b")
    if breakage == "no_manifest":
        (build / "manifest.json").unlink()
    elif breakage == "incomplete":
        manifest = json.loads((build / "manifest.json").read_text())
        (build / "manifest.json").write_text(json.dumps(dict(manifest, complete=False)))
    elif breakage == "no_metrics":
        (build / "metrics_by_emotion.csv").unlink()
    else:
        next((build / "stimuli").glob("*.png")).unlink()
    with pytest.raises(BuildFolderError) as error:
        write_report(build)
    assert str(build) in str(error.value)
    assert not (build / "report.html").exists()
    assert not [p for p in build.iterdir() if p.name.startswith(".report")]


def test_report_accepts_the_manifest_before_it_is_written(tmp_path):
    build = write_synthetic_build(tmp_path / "b")
    manifest = json.loads((build / "manifest.json").read_text())
    (build / "manifest.json").unlink()
    assert write_report(build, manifest=manifest).is_file()


def test_report_command_writes_the_page_and_refuses_a_non_build(tmp_path):
    build = write_synthetic_build(tmp_path / "b")
    result = CliRunner().invoke(report_command, [str(build)])
    assert result.exit_code == 0, result.output
    assert (build / "report.html").is_file()
    assert "stimgen report" in (build / "report.html").read_text(encoding="utf-8")
    result = CliRunner().invoke(report_command, [str(tmp_path / "missing")])
    assert isinstance(result.exception, BuildFolderError)
    assert "no such build folder" in str(result.exception)


def test_report_stays_small(report):
    assets = (report.parent / "report_assets").rglob("*")
    size = sum(p.stat().st_size for p in assets if p.is_file())
    size += report.stat().st_size
    stimuli = len(pd.read_csv(report.parent / "stimuli.tsv", sep="\t"))
    assert size / stimuli < 20_000    # bytes per stimulus; 452 stimuli stay far under 10 MB


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0, 360, exclude_max=True), min_size=1, max_size=30))
def test_spread_label_angles_keeps_order_and_separation(angles):
    spread = spread_label_angles(angles, min_separation=7.0)
    order = np.argsort(angles, kind="stable")
    ordered = spread[order]
    assert np.all(np.diff(ordered) >= -1e-9)
    gaps = np.diff(np.append(ordered, ordered[0] + 360.0))
    assert gaps.min() >= 7.0 - 0.05


@pytest.mark.slow
def test_demo_report_agrees_and_stays_under_ten_megabytes(tmp_path):
    import stimgen
    demo = Path(__file__).resolve().parents[1] / "protocols" / "demo.yaml"
    result = stimgen.build(stimgen.load_protocol(demo), out=tmp_path / "demo", progress=False)
    page = write_report(result.out)
    assert_emotion_table_matches(page)
    assets = [p for p in (result.out / "report_assets").rglob("*") if p.is_file()]
    assert len([p for p in assets if p.suffix == ".jpg"]) == len(result.stimuli) == 452
    size = page.stat().st_size + sum(p.stat().st_size for p in assets)
    assert size < 10 * 2**20
    docs = " ".join((demo.parents[1] / "docs" / "report.md").read_text(encoding="utf-8").split())
    stated = re.search(r"For the demo \((\d+) stimuli\) page and assets take about ([\d.]+) MB",
                       docs)
    assert stated and int(stated.group(1)) == len(result.stimuli)
    assert abs(float(stated.group(2)) - size / 1e6) <= 0.3 * size / 1e6, f"{size / 1e6:.1f} MB"


PUBLISHED_GRID = """\
study: {name: published grid}
seed: 3
backend: {name: schematic}
identities: [{id: id01, seed: 1}]
targets:
  emotions: [circumplex:happy, tired, serene]
  intensities: [0.25, 0.5, 0.75, 1.0]
validation: {rater: geometric}
output: {image_size: 64}
"""


def test_a_schematic_build_records_but_does_not_flag_emostyles_weak_region(tmp_path):
    from stimgen.cli import main

    (tmp_path / "protocol.yaml").write_text(PUBLISHED_GRID, encoding="utf-8")
    result = CliRunner().invoke(main, ["build", str(tmp_path / "protocol.yaml"), "-o",
                                       str(tmp_path / "build"), "--quiet"])
    assert result.exit_code == 0, result.output
    build = tmp_path / "build"
    stimuli = pd.read_csv(build / "stimuli.tsv", sep="\t", keep_default_na=False)
    weak = stimuli["weak_region"].astype(str).str.lower() == "true"
    assert weak.sum() == 8                                    # tired and serene x 4 intensities
    assert not stimuli["flags"].str.contains("weak_region").any()
    text = (build / "report.html").read_text(encoding="utf-8")
    assert "in the weak region</div>" not in text and '<span class="tag">weak</span>' not in text
    assert "not flagged: the published weak region is a property of EmoStyle" in text
    svg = (build / "report_assets" / "figures" / "circumplex.svg").read_text(encoding="utf-8")
    assert "weak region" not in svg
    # The published figures stand beside it, but labelled as another generator and rater.
    assert 'id="published-other-generator"' in text
    assert "* EmoStyle, another generator (EmoNet)" in text
    assert "Darne, C. G. D., Quan, C. &amp; Luo, Z. (2025)" in text
    assert "rated by EmoNet, the critic EmoStyle was trained" in " ".join(text.split())
