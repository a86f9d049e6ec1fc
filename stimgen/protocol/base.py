"""The base class of every protocol model: strict keys, documented fields, and one shorthand.

Every section of protocol.yaml is a subclass of :class:`ProtocolModel`; unknown keys
are errors (with a did-you-mean hint added by the loader). Wherever a list of plain values
is expected, a single value is a list of one (`intensities: 0.5`, `emotions: happy`,
`authors: Ana Silva`), the same rule in every section.
"""
from __future__ import annotations

import types
import typing

from pydantic import BaseModel, ConfigDict, model_validator

_SCALARS = (str, int, float, bool)


class ProtocolModel(BaseModel):
    """Strict pydantic model: unknown keys are rejected, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True,
                              populate_by_name=True, use_attribute_docstrings=True)

    @model_validator(mode="before")
    @classmethod
    def _single_value_is_a_list_of_one(cls, data):
        """``key: value`` where the field is a list of plain values reads as ``key: [value]``.

        Fields with a reading of their own for a single value (``emotions: all``) keep it.
        """
        if not isinstance(data, dict):
            return data
        own = {name for decorator in cls.__pydantic_decorators__.field_validators.values()
               if decorator.info.mode == "before" for name in decorator.info.fields}
        for name, field in cls.model_fields.items():
            key = name if name in data else field.alias
            if (key in data and name not in own and isinstance(data[key], _SCALARS)
                    and list_of_values(field.annotation)):
                data = {**data, key: [data[key]]}
        return data


def list_of_values(annotation) -> bool:
    """Whether ``annotation`` is a list of plain values (numbers, text, choices), possibly
    optional: the fields where a single value stands for a list of one.

    >>> from typing import Literal, Optional
    >>> list_of_values(list[float]), list_of_values(Optional[list[Literal["a", "b"]]])
    (True, True)
    >>> list_of_values(list[ProtocolModel]), list_of_values(float)
    (False, False)
    """
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return list_of_values(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        return len(options) == 1 and list_of_values(options[0])
    if origin is not list:
        return False
    (item,) = typing.get_args(annotation) or (typing.Any,)
    return _plain_value(item)


def _plain_value(annotation) -> bool:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _plain_value(typing.get_args(annotation)[0])
    if origin is typing.Literal:
        return True
    if origin in (typing.Union, types.UnionType):
        return all(_plain_value(a) for a in typing.get_args(annotation))
    return isinstance(annotation, type) and issubclass(annotation, _SCALARS)
