"""The PsychoPy bundle: every task x design loads in PsychoPy without warnings, compiles for
PsychoPy and PsychoJS, names nothing PsychoPy reserves, and keeps protocol text literal."""
from __future__ import annotations

import ast
import errno
import io
import os
import re
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from stimgen.design import plan_design
from stimgen.errors import BuildError
from stimgen.export.psychopy_bundle import conditions_table, experiment_name
from stimgen.export.psyexp import (CHAR_WIDTH, NARROWEST_WINDOW, SIMULATED_MIN_WINDOW_S,
                                   SIMULATED_RT_S, SIMULATED_TIME_SCALE, SLIDER_WIDTH, TEXT_WRAP,
                                   Slider, slider_labels)
from stimgen.export.readme import markdown_block, markdown_text
from stimgen.settings import BundleSpec
from stimgen.protocol.experiment import ExperimentSpec

try:
    from psychopy import experiment as ppexp
    from psychopy import logging as pplogging
except ImportError:
    if os.environ.get("CI"):
        raise
    pytest.skip("PsychoPy is not installed (pip install --no-deps -r requirements-psychopy.txt)",
                allow_module_level=True)

from stimgen.export import write_bundle  # noqa: E402  (needs PsychoPy at call time)

TASKS = ("rating", "categorization", "passive", "norming")
DESIGNS = ("random", "blocked", "latin-square")
EMOTIONS = (("Happy", 8.0), ("Excited", 49.0), ("Sad", 208.0), ("Tired", 268.0))
HOSTILE = "Q\"'\n__import__('os').system('echo pwned') $x ${y} \\$z {expInfo} ');//"


def make_stimuli(identities=("id01", "id02", "id03"), intensities=(0.5, 1.0)) -> pd.DataFrame:
    """A stimuli.tsv-like table: identities x 4 named emotions x intensities."""
    rows = []
    for identity in identities:
        for emotion, angle in EMOTIONS:
            for intensity in intensities:
                stem = f"{identity}_{emotion.lower()}_i{round(intensity * 100):03d}"
                rows.append(dict(stimulus_id=stem, file=f"stimuli/{stem}.png",
                                 identity=identity, target_kind="named", emotion=emotion,
                                 angle=angle, intensity=intensity, target_valence=0.3,
                                 target_arousal=-0.2, achieved_valence=0.25,
                                 achieved_arousal=-0.1))
    return pd.DataFrame(rows)


def make_spec(task_type: str, design_type: str, **overrides) -> ExperimentSpec:
    """An experiment section with 2 practice trials and breaks; ``overrides`` per section."""
    design_section = {"type": design_type}
    if design_type == "random":
        design_section["participants"] = 3
    if design_type == "blocked":
        design_section["max_run"] = {"emotion": None, "identity": None}
    section = {"task": {"type": task_type}, "design": design_section,
               "practice": {"trials": 2}, "breaks": {"every": 5}}
    if task_type in ("passive", "norming"):
        section["task"]["catch"] = {"trials": 2}
    if task_type == "norming":
        section["task"]["labels"] = [e for e, _ in EMOTIONS]
    for key, value in overrides.items():
        section[key] = {**section.get(key, {}), **value}
    return ExperimentSpec.model_validate(section)


def make_bundle(spec: ExperimentSpec, name: str = "Face ratings pilot") -> BundleSpec:
    return BundleSpec(study=SimpleNamespace(name=name, description="", authors=[]),
                      experiment=spec, seed=7)


def build_bundle(root: Path, spec: ExperimentSpec, name: str = "Face ratings pilot",
                 stimuli: pd.DataFrame | None = None):
    stimuli = make_stimuli() if stimuli is None else stimuli
    design = plan_design(spec, stimuli, seed=7)
    root.mkdir(parents=True, exist_ok=True)
    return write_bundle(root, make_bundle(spec, name), stimuli, design), design


class PsychoPyLog:
    """Collects PsychoPy's log messages (warnings and up) while active."""

    def __enter__(self):
        self.stream = io.StringIO()
        self.target = pplogging.LogFile(self.stream, level=pplogging.WARNING)
        return self

    def __exit__(self, *exc):
        pplogging.flush()
        pplogging.root.removeTarget(self.target)

    @property
    def text(self) -> str:
        pplogging.flush()
        return self.stream.getvalue()


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """One bundle per task x design, built once for the module."""
    root = tmp_path_factory.mktemp("bundles")
    return {(task, design): build_bundle(root / f"{task}_{design}", make_spec(task, design))
            for task in TASKS for design in DESIGNS}


@pytest.mark.parametrize("design", DESIGNS)
@pytest.mark.parametrize("task", TASKS)
def test_bundle_loads_and_compiles_for_psychopy_and_psychojs(bundles, task, design, capfd):
    files, _ = bundles[task, design]
    exp = ppexp.Experiment()
    with PsychoPyLog() as log:
        exp.loadFromXML(str(files["psyexp"]))
        assert log.text == "", f"loadFromXML warned: {log.text}"
        script = exp.writeScript(expPath=str(files["psyexp"]), target="PsychoPy")
        compile(script, str(files["script"]), "exec")
        js = exp.writeScript(expPath=str(files["psyexp"]), target="PsychoJS")
        assert "Error parsing JS" not in log.text, log.text
    assert "experimentInit" in js
    assert "Unknown" not in capfd.readouterr().err
    compile(files["script"].read_text(encoding="utf-8"), str(files["script"]), "exec")


@pytest.mark.parametrize("task", TASKS)
def test_names_avoid_python_and_psychopy_reserved_names(bundles, task):
    files, design = bundles[task, "random"]
    exp = ppexp.Experiment()
    exp.loadFromXML(str(files["psyexp"]))
    reserved = ppexp.Experiment().namespace
    names = [r.name for r in exp.routines.values()]
    names += [c.params["name"].val for r in exp.routines.values() for c in r
              if c is not getattr(r, "settings", None)]
    names += [entry.loop.params["name"].val for entry in exp.flow
              if entry.getType() == "LoopInitiator"]
    names += list(pd.read_csv(files[f"conditions/{design.groups[0]}_trials.csv"]).columns)
    for name in names:
        assert reserved.isValid(name), name
        assert reserved.exists(name) is None, (name, reserved.exists(name))
        assert reserved.isPossiblyDerivable(name) is None, name
    assert len(names) == len(set(names))


def test_start_dialog_offers_groups_and_simulate(bundles):
    files, design = bundles["rating", "blocked"]
    exp = ppexp.Experiment()
    exp.loadFromXML(str(files["psyexp"]))
    info = exp.settings.getInfo()
    assert info["group"].valType == "list"
    assert ast.literal_eval(info["group"].val) == design.groups
    assert info["simulate"].valType == "bool"


@pytest.mark.parametrize("task", TASKS)
def test_conditions_files_hold_each_groups_order_with_relative_paths(bundles, task):
    files, design = bundles[task, "latin-square"]
    folder = files["psyexp"].parent
    for group in design.groups:
        main = pd.read_csv(folder / "conditions" / f"{group}_trials.csv", keep_default_na=False)
        practice = pd.read_csv(folder / "conditions" / f"{group}_practice_trials.csv")
        expected = design.trials[group]
        assert list(main["stim_id"]) == list(expected.loc[~expected["is_practice"], "stim_id"])
        assert len(practice) == 2 and set(practice["is_practice"]) == {1}
        assert all(p.startswith("../stimuli/") and "\\" not in p for p in main["stim_file"])
        assert set(main["break_after"]) <= {0, 1}
    audit = pd.read_csv(folder / "design.csv")
    assert set(audit["group"]) == set(design.groups)
    assert len(audit) == sum(len(t) for t in design.trials.values())
    flags = [c for c in ("is_practice", "break_after", "is_catch") if c in main]
    for column in flags:  # one spelling of booleans in every CSV of the bundle: 1/0
        assert set(audit[column]) == {0, 1} and set(main[column]) <= {0, 1}, column


def test_hostile_protocol_text_stays_literal(tmp_path):
    spec = make_spec("rating", "random", text={"instructions": HOSTILE, "goodbye": HOSTILE},
                     task={"valence": {"question": HOSTILE, "labels": [HOSTILE, "$high"]}})
    files, _ = build_bundle(tmp_path / "rating", spec, name=HOSTILE)
    cat = make_spec("categorization", "random",
                    task={"prompt": HOSTILE, "choices": [
                        {"label": HOSTILE, "emotions": ["Happy", "Excited"]},
                        {"label": "a $(1/0)", "emotions": ["Sad", "Tired"]}]})
    cat_files, _ = build_bundle(tmp_path / "cat", cat, name="$(1/0)")
    for bundle in (files, cat_files):
        source = bundle["script"].read_text(encoding="utf-8")
        tree = ast.parse(source)
        calls = {node.func.id for node in ast.walk(tree)
                 if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
        assert "__import__" not in calls
        constants = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)
                     and isinstance(n.value, str)]
        assert any(HOSTILE in c for c in constants), "hostile text lost or mangled"
        assert not any("(1/0)" in ast.unparse(n) for n in ast.walk(tree)
                       if isinstance(n, ast.BinOp))
        exp = ppexp.Experiment()
        with PsychoPyLog() as log:
            exp.loadFromXML(str(bundle["psyexp"]))
            exp.writeScript(expPath=str(bundle["psyexp"]), target="PsychoJS")
            assert "Error parsing JS" not in log.text
    assert files["psyexp"].name == "q_import_os_system_echo_pwned_x_y_z_expinfo.psyexp"


@pytest.mark.parametrize("label", ["[__import__('os')]", "$__import__('os')", " $(1/0)"])
def test_label_that_psychopy_would_eval_is_refused(label):
    trials = pd.DataFrame({"stim_file": ["stimuli/a.png"], "emotion": [label],
                           "is_practice": [False]})
    with pytest.raises(BuildError, match="evaluated as Python code"):
        conditions_table(trials)


def test_rebuild_replaces_only_what_stimgen_wrote(tmp_path):
    first, _ = build_bundle(tmp_path, make_spec("passive", "random"))        # 3 groups
    folder = first["psyexp"].parent
    mine = {folder / "conditions" / "mine.csv": "x\n", folder / "data" / "p1.csv": "1\n"}
    for path, text in mine.items():
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    fewer = make_spec("passive", "random", design={"participants": 2})
    second, _ = build_bundle(tmp_path, fewer)
    assert all(path.read_text() == text for path, text in mine.items())   # never stimgen's
    assert not (folder / "conditions" / "g03_trials.csv").exists()      # stimgen's, stale
    assert (folder / "conditions" / "g02_trials.csv").is_file() and second["psyexp"].exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".stimgen", "experiment"]


def test_readme_documents_rule_design_and_columns(bundles):
    files, design = bundles["categorization", "blocked"]
    readme = files["readme"].read_text(encoding="utf-8")
    assert f"**Which group?** {design.rule}\n" in readme  # plain text, nothing escaped
    for group in design.groups:
        assert f"conditions/{group}_trials.csv" in readme
    assert "choice_keys.corr" in readme and "run_simulated.py --group g01" in readme


def test_experiment_name_is_a_module_name():
    for raw in ("Pilot", "2024: faces/feelings", "$(rm -rf)", "   ", "Émotions"):
        name = experiment_name(raw)
        assert name.isidentifier() and name == name.lower(), (raw, name)


@pytest.mark.parametrize("text, markdown", [
    ("Which emotion does this face show?", "Which emotion does this face show?"),
    ("participant 1 -> g01 (p - 1) + 1, ...", "participant 1 -> g01 (p - 1) + 1, ..."),
    ("[link](http://x) <script>", "`[link](http://x) <script>`"),
    ("a ``b`` c", "```a ``b`` c```"),
    ("`x` ", "`` `x` ``"),
    ("*x*\x07\u202e\r\ny", "`*x* y`"),
    ("see www.example.org", "`see www.example.org`"),
    ("R&D", "`R&D`"),
    ("  \x00 ", ""),
])
def test_markdown_text_is_plain_when_it_can_be_and_a_code_span_otherwise(text, markdown):
    assert markdown_text(text) == markdown


def test_markdown_block_cannot_be_closed_by_its_text():
    assert markdown_block("a\n```\n# b") == "````text\na\n```\n# b\n````"


def outside_code(markdown: str) -> str:
    """``markdown`` without its fenced code blocks and code spans: the text a Markdown reader
    interprets (CommonMark: a fence or span is closed by a run of the same length)."""
    text = re.sub(r"(?ms)^(`{3,})[^\n]*\n.*?^\1[ \t]*$", "", markdown)
    return re.sub(r"(?<!`)(`+)(?!`).*?(?<!`)\1(?!`)", "", text, flags=re.S)


HOSTILE_MARKDOWN = ("Pilot *1* <img src=x onerror=alert(1)> [x](javascript:alert(1)) "
                    "&amp; `tick`\u202e\x07")


def test_readme_reads_as_plain_text_and_shows_hostile_text_literally(tmp_path):
    instructions = "Look at each face.\n\n<script>alert(1)</script>\n```\n# not a heading"
    spec = make_spec("categorization", "random", text={"instructions": instructions},
                     task={"prompt": "Which one? (press 1-4)", "choices": [
                         {"label": "<b>Happy</b>", "emotions": ["Happy", "Excited"]},
                         {"label": "Sad_or_tired", "emotions": ["Sad", "Tired"]}]})
    files, design = build_bundle(tmp_path, spec, name=HOSTILE_MARKDOWN)
    readme = files["readme"].read_text(encoding="utf-8")

    assert readme.splitlines()[0] == ("# `` Pilot *1* <img src=x onerror=alert(1)> "
                                      "[x](javascript:alert(1)) &amp; `tick` ``: "
                                      "PsychoPy experiment")
    assert ("````text\nLook at each face.\n\n<script>alert(1)</script>\n```\n"
            "# not a heading\n````\n") in readme
    assert "- Question: Which one? (press 1-4)\n" in readme
    assert "- key `1`: `<b>Happy</b>`\n" in readme and "- key `2`: `Sad_or_tired`\n" in readme
    # Plain text: no backslash escapes, no HTML entities, no control characters.
    assert not re.search(r"\\[^\s`]", outside_code(readme)), "a backslash escape"
    assert not re.search(r"&(lt|gt|amp|quot|#\d+);", outside_code(readme)), "an HTML entity"
    assert not re.search("[\x00-\x08\x0b-\x1f\u202e]", readme)
    # Markdown: protocol text never becomes HTML, a link or a heading.
    interpreted = outside_code(readme)
    assert "<" not in interpreted.replace("<file>", "") and "](" not in interpreted
    assert "# not a heading" not in interpreted


@pytest.mark.parametrize("labels, low, high", [
    (("very unpleasant", "neutral", "very pleasant"), 1, 9),
    (("not at all", "extremely"), 0, 100),
    (("very unpleasant", "unpleasant", "neither pleasant nor unpleasant", "pleasant",
      "very pleasant"), 1, 9),
    (("Unverhältnismäßigkeit", "b", "c", "d", "e", "f", "g", "h", "i"), 1, 9),
])
def test_slider_labels_stay_apart_inside_the_window_with_whole_words(labels, low, high):
    placed = slider_labels(Slider("valence", "?", labels, low, high), 0.032)
    half = placed.width / 2
    assert len(placed.x) == len(labels) and list(placed.x) == sorted(placed.x)
    assert placed.x[0] == -SLIDER_WIDTH / 2 and placed.x[-1] == SLIDER_WIDTH / 2
    assert all(abs(x) + half <= NARROWEST_WINDOW / 2 for x in placed.x)
    assert all(b - a >= placed.width for a, b in zip(placed.x, placed.x[1:]))
    longest_word = max(len(w) for label in labels for w in label.split())
    assert CHAR_WIDTH * longest_word * placed.letter_height <= placed.width
    assert 0 < placed.letter_height <= 0.032


def test_simulated_answers_come_inside_every_answer_window(tmp_path):
    spec = make_spec("passive", "random", timing={"response_timeout_ms": 500},
                     task={"catch": {"trials": 2, "response_ms": 150}})
    files, _ = build_bundle(tmp_path, spec)
    exp = ppexp.Experiment()
    exp.loadFromXML(str(files["psyexp"]))
    setup = exp.routines["welcome"].getComponentFromName("welcome_code")
    for simulate in (True, False):
        session = {"expInfo": {"simulate": simulate}}
        exec(setup.params["Begin Experiment"].val, session)
        assert session["sim_rt"] == SIMULATED_RT_S
        if simulate:
            assert session["catch_s"] > 2 * SIMULATED_RT_S
            assert session["response_timeout_s"] > 2 * SIMULATED_RT_S
        else:  # a real participant gets the protocol's windows
            assert (session["catch_s"], session["response_timeout_s"]) == (0.15, 0.5)


def test_psychopy_page_states_the_simulation_and_layout_numbers():
    page = " ".join((Path(__file__).resolve().parents[1] / "docs" / "psychopy.md")
                    .read_text(encoding="utf-8").split())
    assert f"shortened {round(1 / SIMULATED_TIME_SCALE)}-fold" in page
    assert f"answers after {SIMULATED_RT_S} s" in page
    assert f"no less than {SIMULATED_MIN_WINDOW_S} s" in page
    assert f"wraps at {TEXT_WRAP} window heights" in page
    assert "at least as wide as 5:4" in page and NARROWEST_WINDOW == 5 / 4


# -- online (PsychoJS / Pavlovia) layout --------------------------------------------------------
_JS_RESOURCE = re.compile(r"^\s*\{'name': '([^'\\]+)', 'path': '([^'\\]+)'\},$")


def write_images(root: Path, stimuli: pd.DataFrame) -> None:
    """Stand-in image files in ``root/stimuli`` (distinct bytes, so copies can be compared)."""
    (root / "stimuli").mkdir(parents=True, exist_ok=True)
    for file in stimuli["file"]:
        (root / file).write_bytes(f"image {file}".encode())


def build_online(root: Path, spec: ExperimentSpec, name: str = "Face ratings pilot"):
    """An online bundle of ``spec`` over images written into ``root/stimuli``."""
    stimuli = make_stimuli()
    write_images(root, stimuli)
    return build_bundle(root, spec.model_copy(update={"online": True}), name, stimuli)


def js_resources(js: str) -> list[str]:
    """The local paths in the ``resources: [...]`` list that a PsychoJS script preloads (its
    URLs, such as PsychoPy's default image on pavlovia.org, left out)."""
    block = js.split("resources: [\n", 1)[1].split("\n  ]", 1)[0]
    lines = [line for line in block.splitlines() if not line.strip().startswith("//")]
    matches = [_JS_RESOURCE.match(line) for line in lines]
    assert all(matches), [line for line, m in zip(lines, matches) if not m]
    local = [m for m in matches if not m[2].startswith("https://")]
    assert all(m[1] == m[2] for m in local)
    return [m[2] for m in local]


def bundle_bytes(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def online_pair(tmp_path_factory):
    """The same rating experiment as an online and as an offline bundle."""
    root = tmp_path_factory.mktemp("online")
    spec = make_spec("rating", "random")
    online = build_online(root / "online", spec)
    offline = build_bundle(root / "offline", spec)
    return online, offline


def test_online_bundle_holds_the_images_it_shows(online_pair):
    (files, design), _ = online_pair
    folder, build_dir = files["psyexp"].parent, files["psyexp"].parent.parent
    shown = set(design.table["stim_file"])
    assert {f"stimuli/{p.name}" for p in (folder / "stimuli").iterdir()} == shown
    for rel in shown:
        assert (folder / rel).read_bytes() == (build_dir / rel).read_bytes()
        assert os.path.samefile(folder / rel, build_dir / rel), "expected a hard link"
    tables = [pd.read_csv(p) for p in (folder / "conditions").glob("*.csv")]
    tables.append(pd.read_csv(folder / "design.csv"))
    for table in tables:
        assert all(p.startswith("stimuli/") and (folder / p).is_file() for p in table["stim_file"])


def test_online_psychojs_script_preloads_every_conditions_file_and_image(online_pair):
    (files, design), _ = online_pair
    folder = files["psyexp"].parent
    conditions = {p.relative_to(folder).as_posix() for p in (folder / "conditions").iterdir()}
    assert len(conditions) == 2 * len(design.groups)
    for key in ("js", "js_legacy"):
        resources = js_resources(files[key].read_text(encoding="utf-8"))
        assert set(design.table["stim_file"]) | conditions <= set(resources), key
        assert all((folder / r).is_file() and not r.startswith("..") for r in resources)
    assert files["js"].name == "face_ratings_pilot.js"
    assert files["js_legacy"].name == "face_ratings_pilot-legacy-browsers.js"
    assert './face_ratings_pilot.js' in files["html"].read_text(encoding="utf-8")


def test_online_first_screen_waits_for_every_preloaded_file(online_pair):
    """A local pilot enables the start dialog's OK before the downloads end: the welcome screen
    holds until every file the script preloads has arrived (the browser test runs it)."""
    (files, _), _ = online_pair
    for key in ("js", "js_legacy"):
        js = files[key].read_text(encoding="utf-8")
        waited = re.search(r"preloaded_files = \[(.*?)\];", js, re.S)
        assert waited, key
        assert set(re.findall(r"'([^']+)'", waited.group(1))) == set(js_resources(js))
        frame = js[js.index("function welcomeRoutineEachFrame"):]
        frame = frame[:frame.index("function welcomeRoutineEnd")]
        assert "getResourceStatus(preloaded_files)" in frame, key
        assert frame.index("getResourceStatus(preloaded_files)") > frame.index("welcome_keys"), \
            "the wait must come after the key that would end the screen"


def test_preload_list_is_a_javascript_literal_whatever_the_name():
    from stimgen.export.psychojs import preload_list_js

    js = preload_list_js(["stimuli/a'b.png", "stimuli/</script>.png", "c\\d\n.png"])
    assert js == ("preloaded_files = ['stimuli/a\\'b.png', 'stimuli/\\x3c/script>.png', "
                  "'c\\\\d\\n.png'];\n")


def test_online_psyexp_lists_its_resources_and_exports_without_warnings(online_pair):
    (files, design), _ = online_pair
    exp = ppexp.Experiment()
    with PsychoPyLog() as log:
        exp.loadFromXML(str(files["psyexp"]))
        js = exp.writeScript(expPath=str(files["js"]), target="PsychoJS")
        assert log.text == "", log.text
    listed = exp.settings.params["Resources"].val
    assert set(design.table["stim_file"]) <= set(listed)
    assert f"conditions/{design.groups[-1]}_trials.csv" in listed
    # Builder's own export (Sync) preloads what the shipped script does, plus design.csv.
    shipped = js_resources(files["js"].read_text(encoding="utf-8"))
    assert set(js_resources(js)) - {"design.csv"} == set(shipped)
    assert "design.csv" not in shipped and len(shipped) == len(set(shipped))


def test_online_python_experiment_is_the_offline_one_plus_counterbalancing(online_pair):
    (online, _), (offline, _) = online_pair
    assert online["launcher"].read_bytes() == offline["launcher"].read_bytes()
    # online, PsychoPy's Counterbalance routine (Pavlovia's shelf) draws the group
    online_script = online["script"].read_text(encoding="utf-8")
    offline_script = offline["script"].read_text(encoding="utf-8")
    assert "data.Counterbalancer(" in online_script and "Counterbalancer" not in offline_script
    assert "group_names = ['g01', 'g02', 'g03']" in online_script
    assert "psychoJS.shelf.counterbalanceSelect" in online["js"].read_text(encoding="utf-8")
    for script in (online_script, offline_script):     # useVersion recorded, never run
        assert "psychopy.useVersion(" not in script and "written for this version" in script
    assert 'name="Use version"' in online["psyexp"].read_text(encoding="utf-8")
    offline_folder = offline["psyexp"].parent
    assert not (offline_folder / "stimuli").exists() and "js" not in offline
    assert not list(offline_folder.glob("*.js")) and not (offline_folder / "index.html").exists()
    rows = pd.read_csv(online["conditions/g01_trials.csv"])
    offline_rows = pd.read_csv(offline["conditions/g01_trials.csv"])
    assert list("../" + rows["stim_file"]) == list(offline_rows["stim_file"])
    assert "../stimuli/" in offline["readme"].read_text(encoding="utf-8")
    readme = online["readme"].read_text(encoding="utf-8")
    assert "Pavlovia" in readme and "`stimuli/<file>.png`" in readme and "../stimuli" not in readme


def test_online_rebuild_elsewhere_is_byte_identical(online_pair, tmp_path):
    (files, _), _ = online_pair
    again, _ = build_online(tmp_path, make_spec("rating", "random"))
    first, second = bundle_bytes(files["psyexp"].parent), bundle_bytes(again["psyexp"].parent)
    assert list(first) == list(second)
    assert [k for k in first if first[k] != second[k]] == []
    assert str(tmp_path) not in second[again["js"].name].decode()


def test_online_images_are_copied_where_hard_links_fail(tmp_path, monkeypatch):
    def no_links(source, target):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_links)
    files, design = build_online(tmp_path, make_spec("passive", "random"))
    for rel in set(design.table["stim_file"]):
        copy = files["psyexp"].parent / rel
        assert copy.read_bytes() == (tmp_path / rel).read_bytes()
        assert not os.path.samefile(copy, tmp_path / rel)


def test_online_missing_image_keeps_the_previous_bundle(tmp_path):
    spec = make_spec("categorization", "random")
    files, design = build_online(tmp_path, spec)
    before = bundle_bytes(files["psyexp"].parent)
    missing = tmp_path / design.table["stim_file"].iloc[-1]
    missing.unlink()
    with pytest.raises(BuildError, match="shown by the experiment but is not in the build"):
        build_bundle(tmp_path, spec.model_copy(update={"online": True}))
    assert bundle_bytes(files["psyexp"].parent) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [".stimgen", "experiment", "stimuli"]


def test_online_hostile_protocol_text_stays_literal(tmp_path):
    spec = make_spec("rating", "random", text={"instructions": HOSTILE, "goodbye": HOSTILE},
                     task={"valence": {"question": HOSTILE, "labels": [HOSTILE, "$high"]}})
    files, design = build_online(tmp_path, spec, name=HOSTILE)
    # In JavaScript, the text occurs only as a whole single-quoted string literal.
    as_js_string = "'" + HOSTILE.replace("\\", "\\\\").replace("'", "\\'").replace(
        "\n", "\\n") + "'"
    for key in ("js", "js_legacy"):
        js = files[key].read_text(encoding="utf-8")
        assert js.count(as_js_string) == 4, key  # instructions, goodbye, question, label
        assert "__import__" not in js.replace(as_js_string, "")
        assert set(design.table["stim_file"]) <= set(js_resources(js))
    tree = ast.parse(files["script"].read_text(encoding="utf-8"))
    assert any(isinstance(n, ast.Constant) and isinstance(n.value, str) and HOSTILE in n.value
               for n in ast.walk(tree))
    assert not any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
                   and n.func.id == "__import__" for n in ast.walk(tree))


def test_online_start_dialog_asks_only_what_a_participant_fills_in(online_pair):
    (files, _), _ = online_pair
    exp = ppexp.Experiment()
    exp.loadFromXML(str(files["psyexp"]))
    assert list(exp.settings.getInfo()) == ["participant", "session"]
    js = files["js"].read_text(encoding="utf-8")
    assert "'simulate'" not in js.split("let expInfo = {", 1)[1].split("};", 1)[0]


@pytest.mark.parametrize("task", ["categorization", "norming"])
def test_online_keyboards_take_a_flat_list_of_keys(tmp_path, task):
    # a list literal in allowedKeys compiles to [['1', '2']] in PsychoJS: no key ever matches
    files, _ = build_online(tmp_path, make_spec(task, "random"))
    for key in ("js", "js_legacy"):
        js = files[key].read_text(encoding="utf-8")
        key_lists = re.findall(r"keyList: typeof (\[.*?\]) === 'string'", js)
        assert key_lists and all(not k.startswith("[[") for k in key_lists), key_lists
        assert "['1', '2', '3'" in js.replace('"', "'") or "['1','2','3'" in js


def test_online_script_is_checked_for_python_left_in_it(tmp_path, monkeypatch):
    # without PsychoPy's JavaScript translator, Python literals reach the script; the build
    # stops instead of shipping a script that crashes in the browser
    import psychopy.experiment.py2js_transpiler as transpiler

    monkeypatch.setattr(transpiler, "translates", None)
    with pytest.raises(BuildError, match="Python into the JavaScript") as caught:
        build_online(tmp_path, make_spec("rating", "random"))
    assert "requirements-psychopy.txt" in caught.value.hint
    assert not (tmp_path / "experiment").exists()


@pytest.mark.parametrize("js, found", [
    ("draggable: False,", [(1, "draggable: False,")]),
    ("units: win.units, x = 'None'; // True", [(1, "units: win.units, x = 'None'; // True")]),
    ("a = \"False\"; /* None\n True */ b = psychoJS.window.units;", []),
    ("s = `True ${x}`;\nt = None", [(2, "t = None")]),
])
def test_python_left_in_js_looks_outside_strings_and_comments(js, found):
    from stimgen.export.psychojs import python_left_in_js

    assert python_left_in_js(js) == found


@pytest.mark.parametrize("answer, simulated, group, source", [
    (2, False, "g03", "shelf"),            # PsychoPy's local Counterbalancer: a 0-based number
    ("g02", False, "g02", "shelf"),
    (3, False, "g01", "random"),           # out of range: not trusted
    (None, False, "g01", "random"),
    (0, True, "g02", "launcher"),          # run_simulated.py's group is kept
])
def test_python_group_assignment_takes_only_a_group_of_the_design(answer, simulated, group,
                                                                   source):
    from stimgen.export.psychojs import assign_group_code

    added = {}
    session = {"counterbalance": SimpleNamespace(group=answer), "simulated": simulated,
               "expInfo": {"group": "g02"} if simulated else {},
               "thisExp": SimpleNamespace(addData=added.__setitem__),
               "randchoice": lambda names: names[0]}
    exec(assign_group_code(("g01", "g02", "g03"), "counterbalance")["py"], session)
    assert (session["expInfo"]["group"], session["expInfo"]["group_source"]) == (group, source)
    assert added == {"group": group}
