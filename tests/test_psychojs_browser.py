"""Online bundles in a real browser: a small bundle of every task type runs to its end in headless
Chromium with PsychoJS, served as Pavlovia would (its API mocked) and as a local pilot, with no
console error; the data file that comes back has the group the shelf (or its fallback) chose,
that group's trial order and every answer the simulated participant gave; and the norming
data come back into `stimgen norms`.

Skips, saying why, where Chromium, ../shared/psychojs or the CDN libraries (make browser-deps)
are missing (in CI, missing CDN libraries or Playwright are an error: make test installs
them); see tests/psychojs_browser.py. STIMGEN_SCREENSHOTS=DIR keeps the screenshots
(docs/images/online-*.png come from such a run).
"""
from __future__ import annotations

import ast
import json
import os
import re
from pathlib import Path

import pandas as pd
import pytest

import psychojs_browser as harness

if os.environ.get("CI") and harness.missing(ours=True):   # make test installs these
    raise RuntimeError("PsychoJS browser tests: " + "; ".join(harness.missing(ours=True)))
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(bool(harness.missing()),
                                 reason="PsychoJS browser tests: " + "; ".join(harness.missing()))]

PROTOCOL = """\
study: {{name: online {task}}}
seed: 11
backend: {{name: schematic}}
identities:
  - {{id: id01, seed: 4}}
  - {{id: id02, seed: 5}}
targets: {{emotions: [circumplex:happy, circumplex:sad], intensities: [1.0], neutral: false}}
validation: {{rater: geometric}}
output: {{image_size: 96{dynamic}}}
experiment:
  online: true
  task: {task_section}
  timing: {timing}
  practice: {practice}
  breaks: {breaks}
  display: {display}
  design: {design}
{extra}"""

#: One small protocol per task type; display options, practice, breaks and timings vary
#: between them, so that each is run once without making every run long. Catch prompts wait
#: 8 s: a browser on a loaded test machine draws a few frames a second.
PRACTICE, NO_PRACTICE = "{trials: 1, source: repeat}", "{trials: 0}"
BUNDLES = {
    "rating": dict(task_section="{type: rating, advance: key, advance_key: space}",
                   timing="{fixation_ms: 100, iti_ms: 0}", practice=PRACTICE,
                   breaks="{every: 2}", display="{image_height: 0.4, fullscreen: false}",
                   design="{type: random, participants: 3}"),
    "categorization": dict(task_section="{type: categorization, choices: [Happy, Sad]}",
                           timing="{fixation_ms: 0, iti_ms: 100}", practice=NO_PRACTICE,
                           breaks="{every: 2}", display="{text_height: 0.05}",
                           design="{type: random, participants: 3}"),
    "norming": dict(task_section="{type: norming, labels: [Happy, Sad],"
                                 " catch: {trials: 1, response_ms: 8000},"
                                 " intensity: {question: 'How intense?', labels: [weak, strong]}}",
                    timing="{fixation_ms: 0, iti_ms: 0}", practice=PRACTICE, breaks="{}",
                    display="{image_height: 0.3}",
                    design="{type: random, participants: 4, lists: 2}"),
    "passive": dict(task_section="{type: passive, catch: {trials: 1, response_ms: 8000}}",
                    timing="{fixation_ms: 100, stimulus_ms: 300, iti_ms: 0}",
                    practice=NO_PRACTICE, breaks="{}", display="{image_height: 0.6}",
                    design="{type: latin-square, conditions: emotion}"),
    "clip": dict(task_section="{type: categorization, choices: [Happy, Sad]}",
                 timing="{fixation_ms: 0, iti_ms: 0}", practice=NO_PRACTICE, breaks="{}",
                 display="{}", design="{type: random, participants: 2}",
                 extra="  show: clip\n", dynamic=", dynamic: {frames: 6, fps: 30, hold_ms: 100}"),
}

#: Per task and mode: what the mock shelf answers, the ?group= of the address, and the group
#: and group_source the session must end with (None: any group, drawn at random).
RUNS = {
    ("rating", "pavlovia"): (harness.Shelf(group=1), None, "g02", "shelf"),
    ("rating", "local"): (None, "g03", "g03", "url"),
    ("categorization", "pavlovia"): (harness.Shelf(group="g03"), None, "g03", "shelf"),
    ("categorization", "local"): (None, None, None, "random"),
    ("norming", "pavlovia"): (harness.Shelf(group=7), "g01", "g01", "url"),   # out of range
    ("norming", "local"): (None, "g03", "g03", "url"),
    ("passive", "pavlovia"): (harness.Shelf(status=500), None, None, "random"),
    ("passive", "local"): (None, "g02", "g02", "url"),
    ("clip", "pavlovia"): (harness.Shelf(group="0"), None, "g01", "shelf"),
    ("clip", "local"): (None, "g02", "g02", "url"),
}


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(harness.CHROMIUM),
                                              args=harness.CHROMIUM_FLAGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    """Build folders of the BUNDLES, built when first asked for."""
    import stimgen

    root, made = tmp_path_factory.mktemp("online"), {}

    def build(task: str) -> Path:
        if task not in made:
            fields = {"extra": "", "dynamic": "", **BUNDLES[task]}
            path = root / f"{task}.yaml"
            path.write_text(PROTOCOL.format(task=task, **fields), encoding="utf-8")
            made[task] = stimgen.build(stimgen.load_protocol(path), out=root / task,
                                       progress=False).out
        return made[task]

    return build


@pytest.fixture(scope="module")
def sessions(browser, builds, tmp_path_factory):
    """Run (task, mode) once, when first asked for; returns (build folder, Session)."""
    done = {}
    keep = os.environ.get("STIMGEN_SCREENSHOTS")

    def run(task: str, mode: str):
        if (task, mode) not in done:
            build = builds(task)
            served = harness.served_copy(build / "experiment",
                                         tmp_path_factory.mktemp(f"served-{task}-{mode}") / "x")
            shots = Path(keep) / f"{task}-{mode}" if keep else None
            if shots:
                shots.mkdir(parents=True, exist_ok=True)
            shelf, url_group, _, _ = RUNS[task, mode]
            done[task, mode] = build, harness.run_session(
                browser, served, answers_for(build / "experiment"), mode=mode,
                participant=f"p_{task}_{mode}", shelf=shelf, url_group=url_group, shots=shots,
                viewport=(1000, 800) if keep else (500, 400))
        return done[task, mode]

    return run


def answers_for(folder: Path) -> harness.Answers:
    """What the participant can answer, read from the bundle's .psyexp: each slider's range,
    height and width, and the keys each keyboard takes."""
    from psychopy import experiment

    exp = experiment.Experiment()
    exp.loadFromXML(str(next(folder.glob("*.psyexp"))))
    sliders, keys = {}, {}
    for routine in exp.routines.values():
        for component in routine:
            name = component.params["name"].val
            if component.type == "Slider":
                ticks = ast.literal_eval(component.params["ticks"].val)
                size = ast.literal_eval(component.params["size"].val)
                pos = ast.literal_eval(component.params["pos"].val)
                sliders[name.removesuffix("_slider")] = (ticks[0], ticks[-1], pos[1], size[0])
            elif component.type == "Keyboard":
                keys[name] = tuple(ast.literal_eval(f"[{component.params['allowedKeys'].val}]"))
    return harness.Answers(sliders=sliders, choice_keys=keys.get("choice_keys", ()),
                           label_keys=keys.get("label_keys", ()),
                           catch_key=keys.get("catch_keys", (None,))[0],
                           advance_key=keys.get("advance_keys", (None,))[0])


def conditions(folder: Path, group: str, loop: str) -> pd.DataFrame:
    return pd.read_csv(folder / "conditions" / f"{group}_{loop}.csv", dtype=str,
                       keep_default_na=False)


def number(cell: str) -> float:
    return float(cell) if cell != "" else float("nan")


@pytest.mark.parametrize("mode", ["pavlovia", "local"])
@pytest.mark.parametrize("task", list(BUNDLES))
def test_online_bundle_runs_to_the_end_in_chromium(sessions, task, mode):
    build, session = sessions(task, mode)
    folder = build / "experiment"
    _, _, expected_group, expected_source = RUNS[task, mode]

    shelf = RUNS[task, mode][0]
    if shelf is not None and shelf.status != 200:     # the browser reports the failed call
        assert session.errors == [f"Failed to load resource: the server responded with a "
                                  f"status of {shelf.status} (Internal Server Error)"]
    else:
        assert session.errors == [], session.errors
    data = session.data
    assert re.fullmatch(rf"p_{task}_{mode}_online_{task}_\d{{4}}-\d\d-\d\d_\d\dh\d\d\.\d\d\.\d+"
                        r"\.csv", session.file_name), session.file_name
    # the start dialog asked only for the session (the participant came in the address)
    assert session.dialog_fields == ["session"], session.dialog_fields
    assert "simulate" not in data.columns

    # the group: one per session, written in every row, with where it came from
    groups = sorted(p.name.removesuffix("_trials.csv") for p in (folder / "conditions").glob(
        "*_trials.csv") if not p.name.endswith("_practice_trials.csv"))
    assert set(data["group"]) == {expected_group or data["group"].iloc[0]} <= set(groups)
    assert set(data["group_source"]) == {expected_source}
    group = data["group"].iloc[0]

    # the trial order is the group's, practice first; every trial was answered as given
    trials = data[data["stim_id"] != ""]
    practice, main = trials[trials["is_practice"] == "1"], trials[trials["is_practice"] == "0"]
    if (folder / "conditions" / f"{group}_practice_trials.csv").is_file():
        assert list(practice["stim_id"]) == list(
            conditions(folder, group, "practice_trials")["stim_id"])
    else:
        assert practice.empty
    assert list(main["stim_id"]) == list(conditions(folder, group, "trials")["stim_id"])
    assert len(trials) == len(session.given) or task == "passive"
    for _, row in trials.iterrows():
        given = session.given.get(int(row["position"]), {})
        for scale in ("valence", "arousal", "intensity"):
            if f"{scale}_slider.response" in row and scale in given:
                assert number(row[f"{scale}_slider.response"]) == given[scale], (row["position"],
                                                                                 scale)
        if "choice" in given:
            assert row["choice_keys.keys"] == given["choice"]
            assert row["choice_keys.corr"] == str(int(given["choice"] == row["correct_key"]))
        if "label" in given:
            assert row["label_keys.keys"] == given["label"]
        assert (row.get("catch_keys.keys", "") != "") == (row.get("is_catch") == "1")
    answered = [g for g in session.given.values() if set(g) - {"catch"}]
    if task in ("rating", "norming"):   # both end ticks were clicked exactly, and registered
        assert all(set(g) >= {"valence", "arousal"} for g in answered)
        assert {1, 9} <= {g["valence"] for g in answered} | {g["arousal"] for g in answered}
    if task != "passive":
        assert len(answered) == len(trials)
        assert '"Noto Sans"' in session.fonts or "Noto Sans" in session.fonts, session.fonts

    # the data file came back the way it does: uploaded to Pavlovia, or downloaded locally
    calls = [(method, path) for method, path, _ in session.api_calls]
    if mode == "pavlovia":
        assert calls[0] == ("POST", "experiments/4242/sessions")
        assert ("PUT", "shelf/session-token/counterbalance/select") in calls
        assert ("POST", "experiments/4242/sessions/session-token/results") in calls
        close = [body for method, path, body in session.api_calls if method == "DELETE"]
        assert len(close) == 1 and "true" in close[0]            # isCompleted
        confirmed = ("PUT", "shelf/session-token/counterbalance/confirm") in calls
        assert confirmed == (RUNS[task, mode][0].status == 200)  # nothing to confirm otherwise
    else:
        assert calls == []


def test_online_norming_data_come_back_into_stimgen_norms(sessions, tmp_path):
    from click.testing import CliRunner

    from stimgen.cli import main

    runs = [sessions("norming", mode) for mode in ("pavlovia", "local")]
    build = runs[0][0]
    data = tmp_path / "downloaded"            # as a researcher downloads them from Pavlovia
    data.mkdir()
    for _, session in runs:
        (data / session.file_name).write_text(session.csv, encoding="utf-8")
    result = CliRunner().invoke(main, ["norms", str(build), str(data)])
    assert result.exit_code == 0, result.output

    norms = pd.read_csv(build / "norms.tsv", sep="\t")
    summary = json.loads((build / "norms_summary.json").read_text(encoding="utf-8"))
    assert summary["participants"]["kept"] == 2 and summary["participants"]["excluded"] == 0
    # both sessions showed list 1 (groups g01 and g03): its stimuli have two raters each
    design = pd.read_csv(build / "experiment" / "design.csv")
    list_one = set(design.loc[(design["stimulus_list"] == 1) & (design["is_practice"] == 0),
                              "stim_id"])
    assert set(norms["stimulus_id"]) == list_one and set(norms["n_raters"]) == {2}
    # each stimulus's mean is the mean of what the two participants clicked, rescaled to [-1, 1]
    clicked: dict[str, list[float]] = {}
    for _, session in runs:
        rows = session.data
        for _, row in rows[(rows["stim_id"] != "") & (rows["is_practice"] == "0")].iterrows():
            given = session.given[int(row["position"])]
            clicked.setdefault(row["stim_id"], []).append((given["valence"] - 5) / 4)
    for _, row in norms.iterrows():
        assert row["valence_mean"] == pytest.approx(sum(clicked[row["stimulus_id"]]) / 2)
    assert norms["hit_rate"].between(0, 1).all() and "rated_intensity_mean" in norms
    reliability = summary["reliability"]["valence"]      # ICC per list of the design
    assert [row["list"] for row in reliability["by_list"]] == ["1"]
    assert reliability["by_list"][0]["raters"] == 2
    assert reliability["by_list"][0]["stimuli"] == len(list_one)


def test_shipped_web_font_carries_its_licence(builds):
    folder = builds("rating") / "experiment"
    font = folder / "fonts" / "NotoSans-Regular.woff"
    assert font.read_bytes()[:4] == b"wOFF"
    licence = (folder / "fonts" / "OFL.txt").read_text(encoding="utf-8")
    assert "SIL OPEN FONT LICENSE Version 1.1" in licence and "Noto Project Authors" in licence
