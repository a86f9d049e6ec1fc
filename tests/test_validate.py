"""`stimgen validate` refuses, with file:line:column, everything a build would refuse about a
protocol, prints the experiment plan and warns about designs that undermine themselves; a
build runs the same checks before it draws a face."""
from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

import stimgen
from stimgen.cli import main
from stimgen.design import STIMULUS_COLUMNS, planned_stimuli
from stimgen.errors import DesignError, ProtocolError
from stimgen.plan import check_spec, plan_units, rating_of
from stimgen.validate import stimulus_table
from stimgen.protocol.loader import check_experiment, load_protocol, plan_experiment
from stimgen.protocol.models import Protocol

ROOT = Path(__file__).resolve().parents[1]

BASE = """\
study: {name: plan}
identities:
  - {id: id01, seed: 1}
  - {id: id02, seed: 2}
targets:
  emotions: [circumplex:happy, afraid, circumplex:sad, circumplex:angry]
  intensities: [0.5, 1.0]
  neutral: true
output: {image_size: 64}
"""

# The two examples of the issue: a choice list with no answer for the neutral faces, and a
# selection naming an emotion the protocol does not make.
NO_ANSWER_FOR_NEUTRAL = BASE + """\
experiment:
  task:
    type: categorization
    choices: [Happy, Afraid, Sad, Angry]
"""
EMOTION_NOT_BUILT = BASE + """\
experiment:
  stimuli:
    emotions: [Happy, Tired]
"""


def write(folder: Path, text: str, name: str = "protocol.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def validate(path: Path):
    return CliRunner().invoke(main, ["validate", str(path)])


# -- the two examples ------------------------------------------------------------------
@pytest.mark.parametrize("text,where", [
    (NO_ANSWER_FOR_NEUTRAL, ":13:5: experiment.task.choices: no choice is correct for "
                            "emotion(s) neutral"),
    (EMOTION_NOT_BUILT, ":12:23: experiment.stimuli.emotions.1: 'Tired' is not among the "
                        "built stimuli"),
])
def test_validate_refuses_what_build_would_with_file_line_column(tmp_path, text, where):
    path = write(tmp_path, text)
    result = validate(path)
    assert result.exit_code == 2, result.output
    assert f"{path}{where}" in result.output
    assert ": valid" not in result.output
    assert "Traceback" not in result.output


def test_the_neutral_hint_says_where_the_neutral_faces_come_from(tmp_path):
    result = validate(write(tmp_path, NO_ANSWER_FOR_NEUTRAL))
    assert "targets.neutral: true" in result.output
    assert "include_neutral: false" in result.output


@pytest.mark.parametrize("text", [NO_ANSWER_FOR_NEUTRAL, EMOTION_NOT_BUILT])
def test_cli_build_stops_before_drawing_a_face(tmp_path, text):
    path = write(tmp_path, text)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["build", str(path), "-o", str(out)])
    assert result.exit_code == 2, result.output
    assert f"{path}:1" in result.output and "Traceback" not in result.output
    assert not (out / "stimuli").exists()


def test_python_build_checks_the_experiment_before_drawing_a_face(tmp_path):
    # Made in Python, the protocol never met the loader: build() itself must refuse it.
    data = {"study": {"name": "py"}, "identities": [{"id": "id01", "seed": 1}],
            "targets": {"emotions": ["happy", "sad"], "intensities": [1.0], "neutral": True},
            "output": {"image_size": 64},
            "experiment": {"task": {"type": "categorization", "choices": ["Happy", "Sad"]}}}
    out = tmp_path / "out"
    with pytest.raises(DesignError) as raised:
        stimgen.build(Protocol.model_validate(data), out=out, progress=False, jobs=1)
    assert raised.value.field == ("experiment", "task", "choices")
    assert "experiment.task.choices: no choice is correct for emotion(s) neutral" \
        in raised.value.render()
    assert not (out / "stimuli").exists()


# -- every check of the planner, positioned ----------------------------------------------------
UNPLANNABLE = {
    "run limit": ("""\
        experiment:
          stimuli: {emotions: [Happy, neutral]}
          design:
            max_run: {identity: null, emotion: 1}
        """, "experiment.design.max_run.emotion", ":13:40", "at most 1 consecutive"),
    "blocked groups": ("""\
        experiment:
          design:
            type: blocked
            factor: emotion
            groups: 4
        """, "experiment.design.groups", ":14:13", "the balanced square has 10 rows"),
    "latin-square groups": ("""\
        experiment:
          design: {type: latin-square, conditions: intensity, groups: 3}
        """, "experiment.design.groups", ":11:63", "multiple of 2"),
    "latin-square with one condition": ("""\
        experiment:
          stimuli: {intensities: [1.0]}
          design: {type: latin-square}
        """, "experiment.design.conditions", ":12:3", "at least 2 intensity conditions"),
    "practice from unused stimuli": ("""\
        experiment:
          practice: {trials: 4, source: unused}
        """, "experiment.practice.source", ":11:33", "only 0 stimuli are not in the main"),
    "practice identity": ("""\
        experiment:
          practice: {trials: 4, identities: [id03]}
        """, "experiment.practice.identities.0", ":11:38", "'id03' is not among"),
    "catch trials": ("""\
        experiment:
          task:
            type: passive
            catch: {trials: 100}
        """, "experiment.task.catch.trials", ":13:21", "only 18 main trials"),
    "selected identity": ("""\
        experiment:
          stimuli: {identities: [id01, id2]}
        """, "experiment.stimuli.identities.1", ":11:32", "'id2' is not among"),
    "selected intensity": ("""\
        experiment:
          stimuli: {intensities: [1.0, 0.75]}
        """, "experiment.stimuli.intensities.1", ":11:32", "intensity 0.75 is not among"),
    "one emotion, two choices": ("""\
        experiment:
          task:
            type: categorization
            choices:
              - {label: good, emotions: [Happy]}
              - {label: bad, emotions: [Afraid, Sad, Angry, Happy]}
              - {label: neutral}
        """, "experiment.task.choices.1.emotions", ":15:22", "'Happy' is correct for two"),
}


@pytest.mark.parametrize("name", sorted(UNPLANNABLE))
def test_every_planner_check_is_a_positioned_protocol_problem(tmp_path, name):
    section, field, where, message = UNPLANNABLE[name]
    path = write(tmp_path, BASE + textwrap.dedent(section))
    with pytest.raises(ProtocolError) as raised:
        load_protocol(path)
    [problem] = raised.value.problems
    assert problem.field == field
    assert message in problem.message
    assert f"{path}{where}: {field}: " in raised.value.render()


def test_colliding_stimulus_ids_are_refused_at_load(tmp_path):
    path = write(tmp_path, BASE.replace("[0.5, 1.0]", "[0.3331, 0.3332]"))
    with pytest.raises(ProtocolError) as raised:
        load_protocol(path)
    assert f"{path}:5:1: targets: two targets would both be written as" in raised.value.render()


def test_psychopy_code_in_a_trial_cell_is_refused():
    # The models keep such names out of protocols; the planner refuses them all the same,
    # as the bundle would after the build.
    data = {"study": {"name": "x"}, "identities": [{"id": "id01", "seed": 1}],
            "targets": {"emotions": ["happy", "sad"], "intensities": [1.0]},
            "experiment": {"design": {"participants": 2}}}
    protocol = Protocol.model_validate(data)
    # Past the validators, as Python code can go: model_copy does not validate.
    protocol.identities[0] = protocol.identities[0].model_copy(update={"id": "$id01"})
    with pytest.raises(DesignError, match="evaluated as Python code") as raised:
        plan_experiment(protocol)
    assert raised.value.field == ("identities",)


# -- the planned stimuli are the build's ---------------------------------------------------------
def test_planned_stimuli_are_the_rows_the_build_writes(tmp_path):
    protocol = load_protocol(write(tmp_path, BASE.replace(
        "  neutral: true", "  angles: [45]\n  points: [{label: p1, valence: 0.2, arousal: 0.1}]"
                          "\n  neutral: true")))
    units = plan_units(protocol)
    planned = planned_stimuli(units, protocol.output.format)
    records = {sid: {"stimulus_id": sid, "file": f"stimuli/{sid}.png", "sha256": "0",
                     "achieved_valence": 0.0, "achieved_arousal": 0.0, "width": 64, "height": 64}
               for unit in units for sid in unit.stimulus_ids()}
    built = stimulus_table(check_spec(protocol), rating_of(protocol), units, records)
    columns = [c for c in STIMULUS_COLUMNS if not c.startswith("achieved_")]
    pd.testing.assert_frame_equal(planned[columns], built[columns])
    assert planned["achieved_valence"].isna().all() and not planned["out_of_tolerance"].any()


# -- the plan ------------------------------------------------------------------------------------
def test_validate_prints_the_experiment_plan():
    result = validate(ROOT / "protocols" / "demo.yaml")
    assert result.exit_code == 0, result.output
    lines = {line[:12].strip(): line[12:] for line in result.output.splitlines()}
    assert lines["experiment"] == "rating task, random design"
    assert lines["groups"].startswith("24 orders (g01 ... g24)")
    assert "uses order ((p - 1) mod 24) + 1" in lines["assignment"]
    assert lines["trials"].startswith("456 per participant: 4 practice")
    assert "452 main" in lines["trials"]
    assert lines["breaks"] == "7 per participant, after every 60 main trials"
    # 456 trials x (0.5 s fixation + 2 x 2.5 s rating + 0.8 s blank) = 47.9 min
    assert lines["session"].startswith("about 48 min of trials per participant")
    assert "assumed 2.5 s per slider" in result.output
    assert "warning" not in result.stderr


def test_plan_counts_catch_trials_and_lists(tmp_path):
    path = write(tmp_path, BASE + """\
experiment:
  task: {type: passive, catch: {trials: 3}}
  timing: {fixation_ms: 0, stimulus_ms: 1000, iti_ms: 500}
  design: {type: latin-square, conditions: intensity}
""")
    result = validate(path)
    assert result.exit_code == 0, result.output
    assert "2 lists (g01 ... g02): each identity in one of 2 intensity conditions" \
        in result.output
    # 2 identities x 4 emotions at one intensity + 2 neutral faces
    assert "10 per participant: 10 main" in result.output
    assert "3 of the main trials are catch trials" in result.output
    assert "one trial: 1 s face + 0.5 s blank; each catch prompt answered in 1 s" \
        in result.output


def test_plan_of_an_online_norming_study_with_lists_says_what_to_upload(tmp_path):
    path = write(tmp_path, BASE + """\
experiment:
  online: true
  task: {type: norming, catch: {trials: 1}}
  design: {participants: 6, lists: 3}
""")
    result = CliRunner().invoke(main, ["validate", str(path), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    lines = {line[:12].strip(): line[12:] for line in result.output.splitlines()}
    # 2 identities x 4 emotions x 2 intensities + 2 neutral faces = 18, in 3 lists of 6
    assert "6 main (one of 3 lists of 6 of the 18 stimuli)" in lines["trials"]
    assert "drawn by Pavlovia's shelf" in lines["assignment"]
    assert "each stimulus is rated by 2 of every 6 participants" in lines["assignment"]
    assert lines["online"].startswith(f"upload the folder {tmp_path / 'out' / 'experiment'}/ "
                                      "as a whole to Pavlovia (open plan.psyexp")
    offline = validate(write(tmp_path, BASE + "experiment: {}\n", "offline.yaml"))
    assert "which Pavlovia would not get (set experiment.online: true" in offline.output


def test_lists_that_cannot_fill_equally_are_refused_at_the_field(tmp_path):
    result = validate(write(tmp_path, BASE + """\
experiment:
  task: {type: norming}
  design: {participants: 5, lists: 2}
"""))
    assert result.exit_code == 2
    assert "experiment.design" in result.output and "multiple of lists (2)" in result.output
    assert "participants: 6" in result.output


# -- warnings ------------------------------------------------------------------------------------
BLOCKED_CATEGORIZATION = BASE + """\
experiment:
  task: {type: categorization}
  design: {type: blocked, factor: emotion}
"""


def test_validate_warns_about_designs_that_undermine_themselves(tmp_path):
    path = write(tmp_path, BLOCKED_CATEGORIZATION)
    result = validate(path)
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 3, result.stderr
    predictable, added_choice, more_groups = warnings
    assert f"{path}: experiment.design.factor: a categorization task blocked by emotion: " \
           "in every block all trials have the same correct answer" in predictable
    assert "targets.neutral: the neutral faces add a choice 'neutral' (key 5)" in added_choice
    assert "targets.neutral: the neutral faces form a block of their own (5 emotion blocks " \
           "in all), so the design needs 10 groups instead of 4" in more_groups
    assert result.stdout.strip().endswith(f"{path}: valid (3 warnings)")


def test_no_warnings_without_neutral_faces_in_a_random_design(tmp_path):
    path = write(tmp_path, BASE + """\
experiment:
  task: {type: categorization, choices: [Happy, Afraid, Sad, Angry]}
  stimuli: {include_neutral: false}
""")
    result = validate(path)
    assert result.exit_code == 0, result.output
    assert "warning" not in result.stderr and result.output.endswith(": valid\n")


def test_build_prints_the_warnings_before_drawing(tmp_path, monkeypatch):
    import stimgen.pipeline

    def no_faces(protocol):
        raise stimgen.StimgenError("stopped where the faces would be drawn")

    monkeypatch.setattr(stimgen.pipeline, "create_backend", no_faces)
    path = write(tmp_path, BLOCKED_CATEGORIZATION)
    result = CliRunner().invoke(main, ["-q", "build", str(path), "-o", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "stopped where the faces would be drawn" in result.stderr
    assert result.stderr.count("warning: ") == 3
    assert "a categorization task blocked by emotion" in result.stderr


def test_python_build_logs_the_vocabulary_warnings_of_a_loaded_protocol(tmp_path, monkeypatch,
                                                                        caplog):
    import stimgen.pipeline

    def no_faces(protocol):
        raise stimgen.StimgenError("stopped where the faces would be drawn")

    monkeypatch.setattr(stimgen.pipeline, "create_backend", no_faces)
    path = write(tmp_path, BASE.replace("circumplex:happy, afraid", "happy, afraid"))
    with caplog.at_level(logging.WARNING, logger="stimgen"), pytest.raises(stimgen.StimgenError):
        stimgen.build(load_protocol(path), out=tmp_path / "o", progress=False, jobs=1)
    logged = [r.getMessage() for r in caplog.records]
    assert f'{path}:6:14: targets.emotions.0: "happy" means the basic emotion Happiness' \
        in logged[0]
    assert any("targets mix basic emotions (Happiness" in line for line in logged)


def test_check_experiment_logs_what_plan_experiment_returns(tmp_path, caplog):
    protocol = load_protocol(write(tmp_path, BLOCKED_CATEGORIZATION))
    with caplog.at_level(logging.WARNING, logger="stimgen"):
        plan = check_experiment(protocol)
    assert [r.getMessage() for r in caplog.records] == \
        [w.render(str(protocol.source_path)) for w in plan.warnings]
    assert len(plan.design.groups) == 10


# --- the weak region is EmoStyle's: flagged on emostyle, recorded elsewhere ---------------------

WEAK_TARGETS = """\
study: {name: weak}
identities: [{id: id01, seed: 1}]
targets: {emotions: [tired, circumplex:happy], intensities: [1.0]}
output: {image_size: 64}
"""


@pytest.mark.parametrize("backend, setting, flagged", [
    ("schematic", "auto", False), ("schematic", "always", True), ("schematic", "never", False),
    ("emostyle", "auto", True), ("emostyle", "never", False)])
def test_weak_region_is_flagged_only_where_the_protocol_says(tmp_path, backend, setting, flagged):
    text = (WEAK_TARGETS + f"backend: {{name: {backend}}}\n"
            + f"validation: {{flag_weak_region: {setting}}}\n")
    protocol = load_protocol(write(tmp_path, text))
    units = plan_units(protocol)
    records = {sid: {"stimulus_id": sid, "file": f"stimuli/{sid}.png", "sha256": "0" * 64,
                     "width": 64, "height": 64, "achieved_valence": 0.0, "achieved_arousal": -1.0}
               for sid in (t.stimulus_id(u.identity.id) for u in units for t in u.targets)}
    table = stimulus_table(check_spec(protocol), rating_of(protocol), units,
                           records).set_index("stimulus_id")
    tired, happy = table.loc["id01_tired_i100"], table.loc["id01_happy_i100"]
    assert bool(tired["weak_region"]) and not bool(happy["weak_region"])   # always recorded
    assert ("weak_region" in tired["flags"].split(";")) == flagged
    assert "weak_region" not in happy["flags"]


MISSPELT_CHOICES = """\
study: {name: typos}
identities: [{id: id01, seed: 1}]
targets: {emotions: [contempt, disgust, fear, happiness, surprise], intensities: [1.0],
          neutral: true}
experiment:
  task:
    type: categorization
    choices: [disgustd, fearful, happiness, contemptous, astonished, neutral]
"""


def test_misspelt_choice_labels_get_a_did_you_mean_at_their_line(tmp_path):
    result = validate(write(tmp_path, MISSPELT_CHOICES))
    assert result.exit_code == 2
    assert ":8:5: experiment.task.choices: no choice is correct for emotion(s) Contempt, " \
           "Disgust" in result.output
    assert ':8:15: experiment.task.choices.0: choice "disgustd" names no emotion: did you ' \
           'mean "disgusted"?' in result.output
    assert ':8:45: experiment.task.choices.3: choice "contemptous" names no emotion: did you ' \
           'mean "contemptuous"?' in result.output
    # known names that answer another emotion (astonished = Surprise) are not typos
    assert "astonished" not in result.output and "fearful" not in result.output.split("(hint")[1]


def test_a_misspelling_is_never_answered_with_the_opposite_valence(tmp_path):
    # "contnt" is as close to pleasant "content" as to unpleasant "contempt", and both are
    # unanswered: no guess that could reverse the valence
    text = MISSPELT_CHOICES.replace("contemptous", "contnt").replace(
        "[contempt, disgust,", "[content, contempt, disgust,")
    result = validate(write(tmp_path, text))
    assert "no choice is correct for emotion(s) Contempt, Content, Disgust" in result.output
    line = next(line for line in result.output.splitlines() if '"contnt"' in line)
    assert line.endswith('choice "contnt" names no emotion')


# -- what the build will do: raters, model files, clips --------------------------------------
JUDGED_CORRECTION = BASE + """\
validation:
  rater: auto
  also: [hsemotion]
  correction: {rater: auto, iterations: 4}
"""


def plan_lines(output: str) -> list[tuple[str, str]]:
    return [(line[:12].strip(), line[12:]) for line in output.splitlines()]


@pytest.fixture
def empty_home(tmp_path, monkeypatch):
    """A stimgen home with no model file installed."""
    monkeypatch.setenv("STIMGEN_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_validate_prints_each_rater_with_the_role_the_build_gives_it(tmp_path, empty_home):
    # docs/correction.md: geometric steers the schematic faces, so hsemotion judges them
    result = validate(write(tmp_path, JUDGED_CORRECTION))
    assert result.exit_code == 0, result.output
    lines = plan_lines(result.output)
    first = next(i for i, (label, _) in enumerate(lines) if label == "raters")
    assert lines[first][1].split()[:2] == ["hsemotion", "primary"]
    assert lines[first][1].endswith("judges the correction")
    assert lines[first + 1] == ("", "geometric  steers the correction")
    assert ("correction", "geometric steers, up to 4 rounds per stimulus, requests within "
                          "radius 1, stop within 0.05") in lines
    # the manifest's order: what the build resolves, primary first
    from stimgen.plan import resolve_raters

    names = resolve_raters(load_protocol(tmp_path / "protocol.yaml"))[1].names
    assert names == ("hsemotion", "geometric")


def test_a_rater_that_steers_and_judges_alone_is_said_to_be_optimistic(tmp_path):
    result = validate(write(tmp_path, BASE + "validation: {rater: geometric, correction: {}}\n"))
    rater = dict(plan_lines(result.output))["raters"]
    assert rater.startswith("geometric  primary") and "optimistic" in rater


def test_validate_warns_of_missing_model_files_with_the_command_the_build_gives(
        tmp_path, empty_home):
    path = write(tmp_path, JUDGED_CORRECTION)
    result = validate(path)
    assert result.exit_code == 0 and result.output.endswith("valid (1 warning)\n")
    assert "warning: a build on this machine would stop:" in result.stderr
    assert "hsemotion_enet_b0_8_va_mtl" in result.stderr
    with pytest.raises(stimgen.StimgenError) as build_error:
        stimgen.build(load_protocol(path), tmp_path / "out", progress=False)
    assert build_error.value.hint in " ".join(result.stderr.split())
    assert "stimgen models fetch hsemotion_enet_b0_8_va_mtl" in build_error.value.hint
    assert not (tmp_path / "out" / "stimuli").exists()


def test_no_model_warning_when_the_build_needs_no_model_file(tmp_path, empty_home):
    result = validate(write(tmp_path, BASE + "validation: {rater: geometric, correction: {}}\n"))
    assert result.exit_code == 0 and "warning" not in result.stderr


CLIP_TRIALS = BASE.replace("output: {image_size: 64}", """\
output:
  image_size: 64
  dynamic: {frames: 24, fps: 30, hold_ms: 1000}""") + """\
experiment:
  show: clip
  task: {type: categorization}
"""


def test_the_session_estimate_counts_the_clip_of_every_trial(tmp_path):
    from stimgen.dynamic import hold_frames

    clips = plan_experiment(protocol_from(tmp_path, CLIP_TRIALS, "clips.yaml"))
    stills = plan_experiment(protocol_from(tmp_path, CLIP_TRIALS.replace("show: clip",
                                                                         "show: still")))
    clip_s = (24 + hold_frames(1000, 30)) / 30                 # 24 onset + 30 hold frames
    assert clips.session.seconds_per_trial == pytest.approx(
        stills.session.seconds_per_trial + clip_s)
    assert clips.session.minutes == pytest.approx(
        stills.session.minutes + clips.session.trials * clip_s / 60, abs=0.01)
    assert " + 1.8 s clip + the face until the key press" in clips.session.assumption
    assert "clip" not in stills.session.assumption


def protocol_from(folder, text, name="protocol.yaml"):
    return load_protocol(write(folder, text, name))


@pytest.mark.parametrize("frames, warned", [(4, True), (5, False)])
def test_validate_warns_that_short_onsets_are_never_checked_for_flicker(tmp_path, frames,
                                                                       warned):
    text = CLIP_TRIALS.replace("frames: 24", f"frames: {frames}")
    result = validate(write(tmp_path, text))
    assert result.exit_code == 0, result.output
    warning = (f"output.dynamic.frames: {frames} onset frames are too few to measure "
               "clip_jitter (it needs at least 5)")
    assert (warning in result.stderr) is warned


# `stimgen validate` is the quick check a researcher runs after every edit: naming the model
# files an emostyle build needs is data, so it must not pay for importing torch (~4 s of CPU).
NO_TORCH_SCRIPT = """\
import sys
from click.testing import CliRunner
from stimgen.cli import main
result = CliRunner().invoke(main, ["validate", sys.argv[1]])
assert result.exit_code == 0, result.output
assert "valid" in result.output, result.output
heavy = sorted(name for name in ("torch", "torchvision") if name in sys.modules)
print("imported:", " ".join(heavy) or "nothing heavy")
"""


def test_validate_of_an_emostyle_protocol_does_not_import_torch(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "STIMGEN_HOME": str(tmp_path / "home")}   # no model files installed
    done = subprocess.run([sys.executable, "-c", NO_TORCH_SCRIPT,
                           str(ROOT / "protocols" / "emostyle-28x4.yaml")], env=env,
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "imported: nothing heavy" in done.stdout, done.stdout


def test_backend_models_name_the_emostyle_files_photos_included():
    from stimgen.backends.model_needs import CORE_MODELS, PHOTO_MODELS
    from stimgen.plan import render_spec

    def backend_models(protocol):              # decided at plan time, into the render spec
        return list(render_spec(protocol).models)

    seeds = load_protocol(ROOT / "protocols" / "emostyle-28x4.yaml")
    assert backend_models(seeds) == list(CORE_MODELS)
    photos = seeds.model_copy(update={"identities": [
        seeds.identities[0].model_copy(update={"seed": None, "image": "p01.jpg"})]})
    assert backend_models(photos) == list(CORE_MODELS) + list(PHOTO_MODELS)
    assert backend_models(load_protocol(ROOT / "protocols" / "demo.yaml")) == []
