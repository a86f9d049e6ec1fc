"""Tests of the protocol's `experiment:` section (stimgen.protocol.experiment)."""
from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel, ValidationError

import stimgen
from stimgen.errors import ProtocolError
from stimgen.protocol.experiment import (DEFAULT_INSTRUCTIONS, BlockedDesign,
                                         CategorizationTask, ExperimentSpec,
                                         LatinSquareDesign, PassiveTask, RandomDesign,
                                         RatingTask)

EXAMPLES = Path(__file__).resolve().parents[1] / "protocols" / "examples"


def validate(section) -> ExperimentSpec:
    return ExperimentSpec.model_validate(section)


def errors_of(section) -> str:
    with pytest.raises(ValidationError) as raised:
        validate(section)
    return str(raised.value)


def test_empty_section_is_a_sensible_rating_experiment():
    spec = validate({})
    assert isinstance(spec.task, RatingTask) and spec.task.scales == ["valence", "arousal"]
    assert (spec.task.valence.low, spec.task.valence.high) == (1, 9)
    assert isinstance(spec.design, RandomDesign) and spec.design.participants == 24
    assert spec.design.max_run.limits() == {"emotion": 2, "identity": 3}
    assert spec.timing.stimulus_ms == "until_response"
    assert spec.practice.trials == 0 and spec.breaks.every is None
    assert spec.instructions == DEFAULT_INSTRUCTIONS["rating"]
    assert validate({"task": {"type": "rating"}}) == spec


def test_each_task_and_design_type_is_selected_by_its_type():
    assert isinstance(validate({"task": {"type": "categorization"}}).task, CategorizationTask)
    assert isinstance(validate({"task": {"type": "passive"}}).task, PassiveTask)
    assert isinstance(validate({"design": {"type": "blocked"}}).design, BlockedDesign)
    latin = validate({"design": {"type": "latin-square"}}).design
    assert isinstance(latin, LatinSquareDesign) and latin.conditions == "intensity"
    assert "does not match any of the expected tags" in errors_of({"task": {"type": "ratings"}})


def test_stimulus_duration_defaults_per_task():
    assert validate({"task": {"type": "passive"}}).timing.stimulus_ms == 2000
    assert validate({"task": {"type": "categorization"}}).timing.stimulus_ms == "until_response"
    assert validate({"timing": {"stimulus_ms": 800}}).timing.stimulus_ms == 800
    text = errors_of({"task": {"type": "passive"}, "timing": {"stimulus_ms": "until_response"}})
    assert "passive task has no response to wait for" in text
    assert "must be positive" in errors_of({"timing": {"stimulus_ms": 0}})


def test_categorization_choices_get_keys_in_order_and_must_be_distinct():
    task = validate({"task": {"type": "categorization",
                              "choices": ["Happy", {"label": "Sad", "key": 1}, "Calm"]}}).task
    assert [(c.label, c.key) for c in task.choices] == [("Happy", "2"), ("Sad", "1"),
                                                        ("Calm", "3")]
    assert task.choices[0].matches() == ["Happy"]
    assert "choice label 'happy' is listed more than once" in errors_of(
        {"task": {"type": "categorization", "choices": ["Happy", "happy"]}})
    assert "choice key 'f' is listed more than once" in errors_of(
        {"task": {"type": "categorization",
                  "choices": [{"label": "a", "key": "f"}, {"label": "b", "key": "F"}]}})
    assert "at least 2" in errors_of({"task": {"type": "categorization", "choices": ["a"]}})


@pytest.mark.parametrize("key", ["escape", "ab", "", "1.5", True, "ctrl+c"])
def test_unusable_response_keys_are_refused(key):
    text = errors_of({"task": {"type": "categorization",
                               "choices": [{"label": "a", "key": key}, "b"]}})
    assert "unknown response key" in text


def test_rating_scale_checks():
    assert "high (3) must be greater than low (5)" in errors_of(
        {"task": {"valence": {"question": "?", "labels": ["a", "b"], "low": 5, "high": 3}}})
    assert "scale 'valence' is listed more than once" in errors_of(
        {"task": {"scales": ["valence", "valence"]}})
    assert validate({"task": {"scales": ["arousal"]}}).task.scales == ["arousal"]


def test_unknown_keys_and_bad_ranges_are_refused():
    assert "Extra inputs are not permitted" in errors_of({"desing": {}})
    assert "Extra inputs are not permitted" in errors_of({"design": {"type": "random",
                                                                     "factor": "emotion"}})
    assert "greater than or equal to 1" in errors_of({"design": {"max_run": {"emotion": 0}}})
    assert "less than or equal to 1" in errors_of({"display": {"image_height": 1.5}})
    assert "practice.identities cannot be reserved" in errors_of(
        {"practice": {"identities": ["id01"]},
         "design": {"type": "blocked", "factor": "identity"}})


HOSTILE = ['"; import os; os.system("rm -rf ~") #', "line one\nline two", "__import__('os')",
           "$(whoami) ${expInfo['participant']}", "' + win.close() + '", "{{ 7*7 }}"]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_text_is_kept_verbatim_as_data(text):
    label = text[:80].lstrip("$") or "x"
    spec = validate({"text": {"instructions": text, "goodbye": text},
                     "task": {"type": "categorization", "prompt": text,
                              "choices": [{"label": label}, "other"]}})
    assert spec.instructions == text and spec.text.goodbye == text
    assert spec.task.prompt == text and spec.task.choices[0].label == label


@pytest.mark.parametrize("label", ["$x", " $(whoami)", "[1, 2]", "[__import__('os')]"])
def test_choice_labels_psychopy_would_evaluate_are_refused(label):
    message = errors_of({"task": {"type": "categorization", "choices": [{"label": label}, "b"]}})
    assert "evaluate it as code" in message


def _fields(model: type[BaseModel], seen=None):
    seen = seen if seen is not None else set()
    if model in seen:
        return
    seen.add(model)
    for name, info in model.model_fields.items():
        yield model, name, info
        for arg in _nested_models(info.annotation):
            yield from _fields(arg, seen)


def _nested_models(annotation):
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        yield from _nested_models(arg)


def test_every_field_is_documented_for_the_schema_and_the_docs():
    undocumented = [f"{m.__name__}.{n}" for m, n, info in _fields(ExperimentSpec)
                    if not (info.description or "").strip()]
    assert undocumented == []
    schema = ExperimentSpec.model_json_schema()
    assert set(schema["$defs"]) >= {"RatingTask", "CategorizationTask", "PassiveTask",
                                    "RandomDesign", "BlockedDesign", "LatinSquareDesign"}


def test_every_field_is_in_the_reference_page():
    page = (Path(__file__).resolve().parents[1] / "docs" / "experiment-design.md")
    text = page.read_text(encoding="utf-8")
    missing = [f"{m.__name__}.{n}" for m, n, _ in _fields(ExperimentSpec)
               if f"`{n}`" not in text]
    assert missing == []


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("experiment-*.yaml")),
                         ids=lambda p: p.stem)
def test_example_experiment_sections_validate(example):
    """Each example is a whole protocol (built by test_protocol_files.py) whose experiment:
    section a researcher copies into their own protocol."""
    document = yaml.safe_load(example.read_text(encoding="utf-8"))
    assert {"study", "identities", "targets", "experiment"} <= set(document)
    validate(document["experiment"])


def test_examples_cover_every_task_and_design():
    sections = [yaml.safe_load(p.read_text(encoding="utf-8"))["experiment"]
                for p in EXAMPLES.glob("experiment-*.yaml")]
    specs = [validate(s) for s in sections]
    assert {s.task.type for s in specs} == {"rating", "categorization", "passive"}
    assert {s.design.type for s in specs} == {"random", "blocked", "latin-square"}


def test_protocol_loader_reports_experiment_problems_with_line_numbers(tmp_path):
    path = tmp_path / "protocol.yaml"
    path.write_text(textwrap.dedent("""\
        study: {name: t}
        identities: [{id: id01, seed: 1}]
        targets: {emotions: [circumplex:happy], intensities: [1.0]}
        experiment:
          design:
            type: blocked
            factr: emotion
          task:
            type: categorization
            choices: [{label: a, key: escape}, b]
        """), encoding="utf-8")
    with pytest.raises(ProtocolError) as raised:
        stimgen.load_protocol(path)
    text = raised.value.render()
    assert ':7:5: experiment.design.factr: unknown key "factr"' in text
    assert 'did you mean "factor"' in text
    assert "experiment.task.choices.0.key" in text and "escape" in text


PAGE = Path(__file__).resolve().parents[1] / "docs" / "experiment-design.md"


def test_reference_page_yaml_examples_validate():
    blocks = re.findall(r"```yaml\n(.*?)```", PAGE.read_text(encoding="utf-8"), re.S)
    assert len(blocks) >= 5
    for block in blocks:
        validate(yaml.safe_load(block)["experiment"] or {})


def test_reference_page_python_example_runs_and_prints_what_it_says(capsys):
    code = re.search(r"```python\n(.*?)```", PAGE.read_text(encoding="utf-8"), re.S).group(1)
    exec(compile(code, str(PAGE), "exec"), {})
    printed = capsys.readouterr().out
    assert "[[0, 1, 3, 2], [1, 2, 0, 3], [2, 3, 1, 0], [3, 0, 2, 1]]" in printed
    assert "['Happy', 'Afraid', 'Calm', 'Sad']" in printed
    assert "participant number p" in printed
