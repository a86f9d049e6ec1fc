"""Plain-word protocol errors for sections written as one value or lists written as one
mapping; one rule for single values where lists are expected; did-you-mean for misspelt
emotions that cannot reverse the valence (issue 27)."""
from __future__ import annotations

import jsonschema
import pytest

from stimgen.errors import ProtocolError
from stimgen.protocol.loader import protocol_from_text
from stimgen.protocol.schema import protocol_json_schema

BASE = {"study": "{name: x}", "identities": "[{id: a, seed: 1}]",
        "targets": "{emotions: [calm]}"}


def text(**sections) -> str:
    return "".join(f"{key}: {value}\n" for key, value in {**BASE, **sections}.items())


def problem(**sections) -> str:
    with pytest.raises(ProtocolError) as err:
        protocol_from_text(text(**sections), "p.yaml")
    assert len(err.value.problems) == 1, err.value.render()
    return err.value.problems[0].render("p.yaml")


def test_a_section_written_as_one_value_says_so_and_suggests_its_setting():
    message = problem(study="h")
    assert message.startswith("p.yaml:1:8: study: `study` is a section of settings")
    assert "got the text 'h'" in message and "did you mean `study: {name: h}`?" in message
    assert "Input should be" not in message


def test_a_section_with_several_settings_lists_its_keys():
    message = problem(targets="happy")
    assert "`targets` is a section of settings" in message
    assert "emotions" in message and "intensities" in message


def test_an_empty_section_is_named_empty():
    assert "`study` is empty" in problem(study="")


def test_a_list_written_as_one_mapping_says_how_to_write_a_list():
    message = problem(identities="{id: a, seed: 1}")
    assert "`identities` is a list: expected its items, got one mapping" in message
    assert "start each item with `- `" in message


@pytest.mark.parametrize("written,field,value", [
    ("{emotions: calm, intensities: 0.5}", "intensities", [0.5]),
    ("{emotions: calm, angles: 30}", "angles", [30.0]),
    ("{emotions: calm}", "emotions", ["Calm"]),
])
def test_one_value_where_a_list_is_expected_is_a_list_of_one(written, field, value):
    protocol = protocol_from_text(text(targets=written))
    assert getattr(protocol.targets, field) == value


def test_the_rule_holds_in_every_section():
    protocol = protocol_from_text(text(study="{name: x, authors: Ana Silva}",
                                       validation="{also: emonet}"))
    assert protocol.study.authors == ["Ana Silva"] and protocol.validation.also == ["emonet"]
    assert len(protocol_from_text(text(targets="{emotions: all}")).targets.emotions) == 28


def test_a_single_value_is_still_checked_like_a_list_item():
    message = problem(targets="{emotions: calm, intensities: 1.5}")
    assert "p.yaml:3:40: targets.intensities: " in message and "(got 1.5)" in message


def test_the_json_schema_accepts_what_the_loader_accepts():
    import yaml

    schema = protocol_json_schema()
    jsonschema.validate(yaml.safe_load(text(targets="{emotions: calm, intensities: 0.5}")),
                        schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(yaml.safe_load(text(study="h")), schema)


def test_a_misspelt_emotion_gets_the_nearest_name():
    assert 'did you mean "disgusted"?' in problem(targets="{emotions: [digusted]}")
    assert "did you mean" not in problem(targets="{emotions: [contnt]}")   # content? contempt?
