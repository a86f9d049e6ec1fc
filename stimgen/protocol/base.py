"""The base class of every protocol model: strict keys, documented fields.

Every section of protocol.yaml is a subclass of :class:`ProtocolModel`; unknown keys
are errors (with a did-you-mean hint added by the loader).
"""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ProtocolModel(BaseModel):
    """Strict pydantic model: unknown keys are rejected, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True,
                              populate_by_name=True, use_attribute_docstrings=True)
