"""The protocol's JSON Schema, generated from the pydantic models (editor completion)."""
from __future__ import annotations

from stimgen.version import __version__
from stimgen.protocol.models import Protocol

_SCALAR_TYPES = {"string", "number", "integer", "boolean"}
_OUTER_KEYS = ("title", "description", "default", "examples")


def protocol_json_schema() -> dict:
    """JSON Schema (draft 2020-12) of protocol.yaml."""
    schema = _single_values_allowed(Protocol.model_json_schema(mode="validation"))
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "stimgen protocol"
    schema["description"] = (f"Protocol file of stimgen {__version__}: identities, target "
                             "emotions, validation and experiment design. See docs/protocol.md.")
    return schema


def _single_values_allowed(node):
    """The schema with every list of plain values also accepting one value, as the models do
    (stimgen/protocol/base.py: `intensities: 0.5` is `intensities: [0.5]`)."""
    if isinstance(node, list):
        return [_single_values_allowed(item) for item in node]
    if not isinstance(node, dict):
        return node
    if any(_scalar(option) for option in node.get("anyOf", [])):
        return node                  # a single value is already one of the options
    node = {key: _single_values_allowed(value) for key, value in node.items()}
    if node.get("type") == "array" and _scalar(node.get("items")):
        outer = {key: node.pop(key) for key in _OUTER_KEYS if key in node}
        return {**outer, "anyOf": [node["items"], node]}
    return node


def _scalar(schema) -> bool:
    if not isinstance(schema, dict):
        return False
    if "anyOf" in schema:
        return all(_scalar(option) for option in schema["anyOf"])
    return "enum" in schema or "const" in schema or schema.get("type") in _SCALAR_TYPES
