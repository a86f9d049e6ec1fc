"""The protocol's JSON Schema, generated from the pydantic models (editor completion)."""
from __future__ import annotations

from stimgen.version import __version__
from stimgen.protocol.models import Protocol


def protocol_json_schema() -> dict:
    """JSON Schema (draft 2020-12) of protocol.yaml."""
    schema = Protocol.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "stimgen protocol"
    schema["description"] = (f"Protocol file of stimgen {__version__}: identities, target "
                             "emotions, validation and experiment design. See docs/protocol.md.")
    return schema
