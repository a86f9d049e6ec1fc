"""Hostile and random protocol files end in a valid protocol or a StimgenError, nothing else.

Guarantee (docs/reliability.md): YAML is loaded safely (no object construction), alias bombs,
huge files and deep nesting are refused with a clear message, and no input makes the loader
crash with another exception.
"""
from __future__ import annotations

import copy

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import stimgen
from stimgen.errors import ProtocolError, StimgenError
from stimgen.protocol.loader import protocol_from_text
from stimgen.protocol.schema import protocol_json_schema
from stimgen.protocol.yaml_source import MAX_DEPTH, MAX_PROTOCOL_BYTES

VALID = {
    "study": {"name": "fuzz", "authors": ["A"]},
    "identities": [{"id": "id01", "seed": 1}, {"id": "id02", "seed": 2}],
    "targets": {"emotions": ["circumplex:happy", "circumplex:sad"], "intensities": [0.5, 1.0],
                "points": [{"label": "p1", "valence": 0.2, "arousal": 0.1}], "neutral": True},
    "output": {"image_size": 128},
    "experiment": {"task": {"type": "categorization",
                            "choices": ["Happy", "Sad", "neutral", "p1"]}},
}


def _schema_keys() -> list[str]:
    keys: set[str] = set()

    def walk(node):
        if isinstance(node, dict):
            keys.update(node.get("properties", {}))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(protocol_json_schema())
    return sorted(keys)


KEYS = _schema_keys()
scalars = (st.none() | st.booleans() | st.integers(-2**70, 2**70)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20)
           | st.sampled_from(["happy", "all", "emostyle", "schematic", "png", "rating",
                              "categorization", "latin_square", "$x", "[1]", "=1+1", "-"]))
keys = st.sampled_from(KEYS) | st.text(max_size=8) | st.integers(-3, 3)
structures = st.recursive(
    scalars, lambda children: st.lists(children, max_size=4)
    | st.dictionaries(keys, children, max_size=5), max_leaves=25)


def _ends_well(text: str) -> None:
    try:
        protocol = protocol_from_text(text)
    except StimgenError as err:
        assert str(err).strip()
    else:
        assert isinstance(protocol, stimgen.Protocol)


def _paths(node, here=()):
    yield here
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, here + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, here + (index,))


PATHS = [p for p in _paths(VALID) if p]
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(structures)
def test_random_structures_validate_or_raise_stimgen_error(data):
    _ends_well(yaml.safe_dump(data))


@pytest.mark.slow
@FUZZ
@given(st.sampled_from(PATHS), structures, st.booleans())
def test_valid_protocol_with_one_part_replaced_or_removed(path, value, remove):
    data = copy.deepcopy(VALID)
    parent = data
    for part in path[:-1]:
        parent = parent[part]
    if remove:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    _ends_well(yaml.safe_dump(data))


@FUZZ
@given(raw=st.binary(max_size=600))
def test_random_bytes_end_in_a_protocol_error(raw, tmp_path_factory):
    path = tmp_path_factory.mktemp("bytes") / "p.yaml"
    path.write_bytes(raw)
    with pytest.raises(StimgenError):
        stimgen.load_protocol(path)


@FUZZ
@given(st.text(alphabet=st.sampled_from(list("[]{}:,-?!&*|>'\"#%@` \n\tab1.")), max_size=200))
def test_random_yaml_punctuation_validates_or_raises_stimgen_error(text):
    _ends_well(text)


def test_valid_base_protocol_is_valid():
    assert protocol_from_text(yaml.safe_dump(VALID)).study.name == "fuzz"


# -- the named attacks -------------------------------------------------------------------------
def test_billion_laughs_is_refused_quickly():
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in "bcdefghi":
        previous = chr(ord(level) - 1)
        lines.append(f"{level}: &{level} [" + ",".join([f"*{previous}"] * 9) + "]")
    with pytest.raises(ProtocolError, match="expands to more than"):
        protocol_from_text("\n".join(lines))


@pytest.mark.parametrize("opener,closer", [("[", "]"), ("{a: ", "}"), ("- ", "")])
def test_deep_nesting_is_refused_without_recursion_error(opener, closer):
    depth = 1000 if opener == "- " else 5000
    if opener == "- ":
        text = "".join("  " * i + "-\n" for i in range(depth)) + "  " * depth + "x\n"
    else:
        text = opener * depth + "1" + closer * depth
    with pytest.raises(ProtocolError, match=f"deeper than {MAX_DEPTH}"):
        protocol_from_text(text)


def test_huge_file_is_refused_before_parsing(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text("study: {name: x}\n" + "# padding\n" * (MAX_PROTOCOL_BYTES // 10 + 1))
    with pytest.raises(ProtocolError, match="larger than"):
        stimgen.load_protocol(path)


@pytest.mark.parametrize("tagged", [
    "!!python/object/apply:os.system ['echo pwned']",
    "!!python/name:os.system",
    "!!python/object:collections.OrderedDict {}",
])
def test_python_tags_never_construct_objects(tagged, tmp_path):
    marker = tmp_path / "pwned"
    text = f"study: {{name: x}}\nseed: {tagged.replace('echo pwned', f'touch {marker}')}\n"
    with pytest.raises(ProtocolError):
        protocol_from_text(text)
    assert not marker.exists()


def test_not_utf8_and_empty_files_are_protocol_errors(tmp_path):
    (tmp_path / "latin1.yaml").write_bytes("study: {name: caf\xe9}".encode("latin-1"))
    (tmp_path / "empty.yaml").write_bytes(b"")
    with pytest.raises(ProtocolError, match="UTF-8"):
        stimgen.load_protocol(tmp_path / "latin1.yaml")
    with pytest.raises(ProtocolError, match="empty"):
        stimgen.load_protocol(tmp_path / "empty.yaml")
