"""Protocol loading: valid protocols load, and every malformed one gets a precise error."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

import stimgen
from stimgen.cli import main
from stimgen.errors import ProtocolError
from stimgen.plan import plan_targets, rating_of
from stimgen.protocol.loader import load_protocol, protocol_sha256
from stimgen.starter import STARTER_PROTOCOL

ROOT = Path(__file__).resolve().parents[1]

VALID = """\
study: {name: t}
identities:
  - {id: id01, seed: 1}
targets:
  emotions: [happy]
"""


def write(tmp_path: Path, text: str, name: str = "protocol.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems_of(path: Path):
    with pytest.raises(ProtocolError) as caught:
        load_protocol(path)
    return caught.value.problems


def test_example_protocols_validate():
    for path in sorted((ROOT / "protocols").glob("*.yaml")):
        protocol = load_protocol(path)
        assert protocol.identities, path


def test_demo_plans_at_least_448_stimuli():
    protocol = load_protocol(ROOT / "protocols" / "demo.yaml")
    n = len(protocol.identities) * len(plan_targets(protocol.targets))
    assert n >= 448


def test_starter_protocol_validates(tmp_path):
    protocol = load_protocol(write(tmp_path, STARTER_PROTOCOL))
    assert protocol.study.name == "my-study"


@pytest.mark.parametrize("spelling", ["At ease", "at_ease", "at-ease", "AT EASE", " At-Ease "])
def test_emotion_names_ignore_case_and_separators(tmp_path, spelling):
    path = write(tmp_path, VALID.replace("[happy]", f'["{spelling}"]'))
    assert load_protocol(path).targets.emotion_list() == ["At ease"]


def test_all_emotions_and_defaults(tmp_path):
    protocol = load_protocol(write(tmp_path, VALID.replace("[happy]", "all")))
    assert len(protocol.targets.emotion_list()) == 28
    assert protocol.targets.intensities == [0.25, 0.5, 0.75, 1.0]
    assert protocol.validation.weak_region == (242.0, 328.6)
    assert protocol.backend.name == "schematic"
    assert rating_of(protocol).primary == "geometric"
    assert protocol.experiment is None


def test_sha256_ignores_formatting(tmp_path):
    a = load_protocol(write(tmp_path, VALID, "a.yaml"))
    b = load_protocol(write(tmp_path, VALID.replace("[happy]", "[ Happy ]") + "# comment\n",
                            "b.yaml"))
    assert protocol_sha256(a) == protocol_sha256(b)


def test_relative_paths_resolve_against_protocol_folder(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "p.jpg").write_bytes(b"x")
    text = VALID.replace("- {id: id01, seed: 1}", "- {id: p01, image: photos/p.jpg}")
    text = "backend: {name: emostyle}\n" + text
    protocol = load_protocol(write(tmp_path, text))
    assert protocol.resolve(protocol.identities[0].image) == tmp_path / "photos" / "p.jpg"


# (case name, protocol text, field path expected in a problem, line expected, hint fragment)
MALFORMED = [
    ("not_yaml", "study: [unclosed\n", None, 2, "not closed before the end of the file"),
    ("tab_indent", "study:\n\tname: x\n", None, 2, "tabs"),
    ("empty_file", "", "", None, "stimgen init"),
    ("only_comment", "# nothing\n", "", None, "stimgen init"),
    ("top_level_list", "- a\n- b\n", "", 1, "study"),
    ("top_level_scalar", "hello\n", "", 1, None),
    ("unknown_top_key", VALID + "tragets: {}\n", "tragets", 6, 'did you mean "targets"'),
    ("unknown_nested_key", VALID + "output: {imgae_size: 256}\n", "output.imgae_size", 6,
     'did you mean "image_size"'),
    ("unknown_backend_option", "backend: {name: schematic, options: {supersampel: 2}}\n" + VALID,
     "backend.options.supersampel", 1, 'did you mean "supersample"'),
    ("unknown_backend", "backend: {name: stylegan}\n" + VALID, "backend", 1, None),
    ("missing_study", VALID.replace("study: {name: t}\n", ""), "study", None, None),
    ("missing_study_name", VALID.replace("{name: t}", "{description: x}"), "study.name", 1, None),
    ("missing_targets", VALID.split("targets:")[0], "targets", None, None),
    ("no_identities", VALID.replace("  - {id: id01, seed: 1}\n", "").replace(
        "identities:\n", "identities: []\n"), "identities", 2, None),
    ("unknown_emotion", VALID.replace("[happy]", "[happpy]"), "targets.emotions.0", 5,
     'did you mean "happy"'),
    ("emotion_not_string", VALID.replace("[happy]", "[[happy]]"), "targets.emotions.0", 5, None),
    ("duplicate_emotion", VALID.replace("[happy]", "[happy, Happy]"), "targets", None,
     "more than once"),
    ("intensity_zero", VALID + "  intensities: [0, 0.5]\n", "targets.intensities.0", 6, None),
    ("intensity_above_one", VALID + "  intensities: [1.5]\n", "targets.intensities.0", 6, None),
    ("intensity_string", VALID + "  intensities: [strong]\n", "targets.intensities.0", 6, None),
    ("angle_out_of_range", VALID + "  angles: [400]\n", "targets.angles.0", 6, None),
    ("point_outside_circle", VALID + "  points: [{label: x, valence: 0.9, arousal: 0.9}]\n",
     "targets.points.0", 6, "unit circle"),
    ("empty_targets", VALID.replace("  emotions: [happy]\n", "  emotions: []\n"), "targets",
     4, "emotions: all"),
    ("identity_two_sources", VALID.replace("seed: 1}", "seed: 1, latent: w.npy}"),
     "identities.0", 3, None),
    ("identity_no_source", VALID.replace(", seed: 1}", "}"), "identities.0", 3, "seed"),
    ("duplicate_ids", VALID.replace("  - {id: id01, seed: 1}\n",
                                    "  - {id: id01, seed: 1}\n  - {id: id01, seed: 2}\n"),
     "(top level)", None, "unique"),
    ("bad_id_chars", VALID.replace("id: id01", "id: 'a/b'"), "identities.0.id", 3, None),
    ("negative_seed", VALID.replace("seed: 1}", "seed: -1}"), "identities.0.seed", 3, None),
    ("seed_not_int", VALID.replace("seed: 1}", "seed: 1.5}"), "identities.0.seed", 3, None),
    ("missing_image_file", "backend: {name: emostyle}\n" + VALID.replace(
        "seed: 1}", "image: nope.jpg}"), "identities.0.image", 4, "relative to the protocol"),
    ("photo_on_schematic", VALID.replace("seed: 1}", "image: nope.jpg}"), "(top level)", None,
     "emostyle"),
    ("weak_region_range", VALID + "validation: {weak_region: [242, 400]}\n",
     "validation.weak_region", 6, None),
    ("weak_region_length", VALID + "validation: {weak_region: [242]}\n",
     "validation.weak_region", 6, None),
    ("tolerance_type", VALID + "validation: {tolerance: {distance: far}}\n",
     "validation.tolerance.distance", 6, None),
    ("tolerance_negative", VALID + "validation: {tolerance: {direction: -5}}\n",
     "validation.tolerance.direction", 6, None),
    ("unknown_rater", VALID + "validation: {rater: humans}\n", "validation.rater", 6, None),
    ("bad_format", VALID + "output: {format: gif}\n", "output.format", 6, None),
    ("image_size_small", VALID + "output: {image_size: 8}\n", "output.image_size", 6, None),
    ("duplicate_key", VALID + "study: {name: u}\n", "study", 6, "appears twice"),
    ("study_is_list", VALID.replace("study: {name: t}", "study: [t]"), "study", 1, None),
    ("python_tag", VALID.replace("{name: t}", "!!python/object/apply:os.system [ls]"), "study",
     1, None),
    ("merge_key", "base: &b {name: t}\nstudy: {<<: *b}\n" + VALID.split("\n", 1)[1], "study",
     2, None),
]


@pytest.mark.parametrize("name,text,field,line,hint", MALFORMED, ids=[c[0] for c in MALFORMED])
def test_malformed_protocols(tmp_path, name, text, field, line, hint):
    path = write(tmp_path, text)
    problems = problems_of(path)
    assert problems, name
    rendered = "\n".join(p.render(str(path)) for p in problems)
    matching = [p for p in problems if (p.field or "") == (field or "")]  # None: the text
    assert matching, f"no problem at {field!r}:\n{rendered}"
    if line is not None:
        assert any(p.line == line for p in matching), rendered
        assert all(p.column is None or p.column >= 1 for p in matching)
    if hint is not None:
        assert hint in rendered, rendered
    assert str(path) in str(ProtocolError(path, problems))


def test_malformed_cases_get_at_least_25_different_explanations(tmp_path):
    """25 or more mistakes, each explained in its own words: counted on what the loader says
    (message and hint, not where), not on this table's rows. A loader that found the place
    of every mistake but called each one "invalid" passes the test above and fails here."""
    explanations = {tuple(sorted((p.message, p.hint or "")
                                 for p in problems_of(write(tmp_path, text))))
                    for _, text, *_ in MALFORMED}
    assert len(explanations) >= 25, "\n".join(map(str, sorted(explanations)))


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ProtocolError, match="file not found"):
        load_protocol(tmp_path / "nope.yaml")
    with pytest.raises(ProtocolError, match="folder"):
        load_protocol(tmp_path)


def test_not_utf8(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_bytes(b"study: {name: \xff\xfe}\n")
    with pytest.raises(ProtocolError, match="UTF-8"):
        load_protocol(path)


def test_all_problems_reported_together(tmp_path):
    text = VALID.replace("[happy]", "[happpy, sadd]") + "  intensities: [2]\n"
    problems = problems_of(write(tmp_path, text))
    assert {p.field for p in problems} >= {"targets.emotions.0", "targets.emotions.1",
                                           "targets.intensities.0"}


def test_alias_bomb_rejected(tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i-1}"] * 10) + "]")
    path = write(tmp_path, "\n".join(lines) + "\n" + VALID)
    with pytest.raises(ProtocolError, match="aliases"):
        load_protocol(path)


def test_cli_prints_errors_without_traceback_and_exits_2(tmp_path):
    path = write(tmp_path, VALID.replace("[happy]", "[happpy]"))
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2
    assert 'did you mean "happy"' in result.output
    assert "Traceback" not in result.output
    assert f"{path}:5:" in result.output


def test_cli_validate_prints_plan(tmp_path):
    result = CliRunner().invoke(main, ["validate", str(ROOT / "protocols" / "demo.yaml")])
    assert result.exit_code == 0, result.output
    assert "4 identities x 113 targets = 452 stimuli" in result.output
    assert "geometric" in result.output and "schematic" in result.output


def test_cli_plan_counts_in_the_right_number(tmp_path):
    path = write(tmp_path, VALID.replace("[happy]", "[happy]\n  intensities: [1.0]"))
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert "1 identity x 1 target = 1 stimulus" in result.output


def test_cli_init_writes_valid_protocol_and_refuses_overwrite(tmp_path):
    path = tmp_path / "new.yaml"
    runner = CliRunner()
    assert runner.invoke(main, ["init", str(path)]).exit_code == 0
    assert stimgen.load_protocol(path).study.name == "my-study"
    again = runner.invoke(main, ["init", str(path)])
    assert again.exit_code == 2 and "already exists" in again.output


def test_cli_emotions_lists_28_and_the_basic_emotions_with_sources():
    result = CliRunner().invoke(main, ["emotions", "--format", "csv"])
    assert result.exit_code == 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 + 28 + 7 and lines[1].startswith("Happy,happy,circumplex,,7.8,")
    anger = next(line for line in lines if line.startswith("Anger,"))
    assert "Russell & Mehrabian (1977)" in anger
    contempt = next(line for line in lines if line.startswith("Contempt,"))
    assert "Warriner, Kuperman & Brysbaert (2013)" in contempt and '"contempt"' in contempt


def test_cli_emotions_csv_is_valid_csv_with_the_json_fields():
    import csv
    import io
    import json

    runner = CliRunner()
    table = list(csv.DictReader(io.StringIO(
        runner.invoke(main, ["emotions", "--format", "csv"]).output)))
    listed = json.loads(runner.invoke(main, ["emotions", "--format", "json"]).output)
    assert len(table) == len(listed) == 28 + 7
    for row, entry in zip(table, listed):
        assert set(row) == set(entry) - {"published_va"} | {"published_valence",
                                                             "published_arousal"}
        assert row["source"] == entry["source"]          # inner quotes survive the round trip
        assert (row["aliases"].split("|") if row["aliases"] else []) == entry["aliases"]
        assert (float(row["angle"]), float(row["valence"]), float(row["arousal"])) == (
            entry["angle"], entry["valence"], entry["arousal"])
        published = entry["published_va"] or ("", "")
        assert (row["published_valence"], row["published_arousal"]) == tuple(
            str(x) if x != "" else "" for x in published)
        for key in ("name", "key", "vocabulary", "prototype", "circumplex_term", "source_term"):
            assert row[key] == (entry[key] or ""), key
    contempt = next(row for row in table if row["key"] == "contempt")
    assert contempt["source"].endswith('"contempt"') and contempt["aliases"] == "contemptuous"


def test_cli_schema_is_json_schema_of_protocol():
    import json

    import jsonschema
    import yaml

    result = CliRunner().invoke(main, ["schema"])
    schema = json.loads(result.output)
    assert "study" in schema["properties"] and "targets" in schema["required"]
    demo = yaml.safe_load((ROOT / "protocols" / "demo.yaml").read_text())
    jsonschema.validate(demo, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**demo, "tragets": {}}, schema)


def test_version():
    result = CliRunner().invoke(main, ["--version"])
    assert stimgen.__version__ in result.output


@pytest.mark.parametrize("bad_id", ['"a1\\n"', '"a1 "', '"ä1"'])
def test_ids_must_match_entirely(tmp_path, bad_id):
    problems = problems_of(write(tmp_path, VALID.replace("id: id01", f"id: {bad_id}")))
    assert any(p.field == "identities.0.id" for p in problems)


def test_ids_differing_only_in_case_are_duplicates(tmp_path):
    text = VALID.replace("  - {id: id01, seed: 1}\n",
                         "  - {id: A1, seed: 1}\n  - {id: a1, seed: 2}\n")
    rendered = str(ProtocolError("p", problems_of(write(tmp_path, text))))
    assert "used more than once" in rendered


# -- YAML mistakes in plain words -------------------------------------------------------------
BASE = "study: {name: t}\nidentities:\n  - {id: id01, seed: 1}\n"


@pytest.mark.parametrize("text, line, words, hint_words", [
    ("study:\n\tname: x\n", 2, "YAML does not allow tabs for indentation", "spaces"),
    (BASE + "targets:\n  emotions: [happy]\n\t  intensities: [1.0]\n", 6,
     "YAML does not allow tabs for indentation", "line 6"),
    ("study:\n  name: x\n   description: y\n", 3, "line 3 is indented more than line 2",
     "move `description:` to column 3"),
    (BASE + "targets:\n  emotions: [happy]\n intensities: [1.0]\n", 6,
     "line 6 is mis-indented: it starts in column 2", "column 3 or column 1"),
    ("identities:\n  - {id: a, seed: 1}\n   - {id: b, seed: 2}\n", 3,
     "line 3 is mis-indented", "column 3"),
    ("study:\n  name: Faces: pilot\n", 2, "second ': '", 'quote the value'),
    ("study:\n  name: 'x\n", 2, "quote opened on line 2 is never closed", "close it"),
    ("targets:\n  emotions: [happy, sad\nseed: 1\n", 3, "opened on line 2 is not closed",
     "close it with ]"),
])
def test_yaml_mistakes_are_named_in_plain_words(tmp_path, text, line, words, hint_words):
    path = tmp_path / "protocol.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ProtocolError) as caught:
        load_protocol(path)
    (problem,) = caught.value.problems
    assert problem.line == line and words in problem.message and hint_words in problem.hint
    rendered = str(caught.value)
    for jargon in ("<block end>", "<block mapping start>", "could not find expected",
                   "(top level)", "while parsing"):
        assert jargon not in rendered, rendered


@pytest.mark.parametrize("text, hint", [
    (BASE + "targets:\n  emotions: [happy]\nintensities: [1.0]\n",
     '"intensities" belongs under `targets:`; did you mean to indent it?'),
    (BASE + "targets:\n  emotions: [happy]\n  seed: 3\n",
     '"seed" belongs one level up, in the top level; did you mean to dedent it?'),
    (BASE + "targets:\n  emotions: [happy]\nvalidation:\n  rater: geometric\n  distance: 0.3\n",
     '"distance" belongs under `tolerance:`'),
])
def test_key_valid_one_level_away_gets_indent_or_dedent_hint(tmp_path, text, hint):
    path = tmp_path / "protocol.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ProtocolError) as caught:
        load_protocol(path)
    assert any(hint in (p.hint or "") for p in caught.value.problems), str(caught.value)


def test_validate_warns_about_an_emotion_word_with_two_meanings(tmp_path):
    from click.testing import CliRunner

    from stimgen.cli import main

    path = tmp_path / "p.yaml"
    path.write_text("study: {name: v}\nidentities: [{id: a, seed: 1}]\n"
                    "targets:\n  emotions: [happy, excited]\n  intensities: [1.0]\n")
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    # the word, where it is, what it now means and how to write the other meaning
    assert f"{path}:4:14: targets.emotions.0: \"happy\" means the basic emotion Happiness" \
        in result.output
    assert "circumplex:happy" in result.output
    assert "targets mix basic emotions (Happiness" in result.output
    # the hint spells out each list meant; excited has no basic emotion, so no basic-only list
    assert ("(hint: write [circumplex:happy, excited] for circumplex terms only, or "
            "[happiness, circumplex:excited] to keep the mix without this warning)") \
        in " ".join(result.output.split())
    path.write_text("study: {name: v}\nidentities: [{id: a, seed: 1}]\n"
                    "targets:\n  emotions: [circumplex:happy, excited]\n  intensities: [1.0]\n")
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 0 and "warning" not in result.output, result.output


def test_emotions_command_and_starter_state_the_vocabulary_rule():
    from click.testing import CliRunner

    from stimgen.cli import main
    from stimgen.starter import STARTER_PROTOCOL

    listing = CliRunner().invoke(main, ["emotions"]).output
    assert "How to write them: A basic emotion's word in any form" in listing
    assert "basic_sources: {contempt: russell_mehrabian_1977}" in listing
    assert "circumplex:happy" in STARTER_PROTOCOL
