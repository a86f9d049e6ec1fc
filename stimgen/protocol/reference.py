"""The protocol reference of docs/protocol.md, generated from the pydantic models.

Run ``python -m stimgen.protocol.reference docs/protocol.md`` after changing a model; a test
fails while the committed page and the models disagree.
"""
from __future__ import annotations

import sys
import typing
from pathlib import Path

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from stimgen.protocol.models import Protocol

BEGIN = "<!-- BEGIN GENERATED REFERENCE (python -m stimgen.protocol.reference docs/protocol.md) -->"
END = "<!-- END GENERATED REFERENCE -->"


def _type_name(annotation) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        names = [_type_name(a) for a in args if a is not type(None)]
        optional = any(a is type(None) for a in args)
        return " or ".join(names) + (" (optional)" if optional else "")
    if origin in (list, tuple):
        inner = ", ".join(_type_name(a) for a in args if a is not Ellipsis)
        return f"list of {inner}" if origin is list else f"[{inner}]"
    if origin is dict:
        return "mapping"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"[{annotation.__name__}](#{annotation.__name__.lower()})"
    return getattr(annotation, "__name__", str(annotation))


def _default(field) -> str:
    if field.is_required():
        return "**required**"
    if field.default_factory is not None:
        value = field.default_factory()
    else:
        value = field.default
    if value is PydanticUndefined:
        return "**required**"
    if isinstance(value, BaseModel):
        return "(see section)"
    if value is None:
        return "none"
    return f"`{value!r}`" if not isinstance(value, str) else f'`"{value}"`'


def _models(root: type[BaseModel]) -> list[type[BaseModel]]:
    seen: list[type[BaseModel]] = []

    def visit(annotation):
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if annotation not in seen:
                seen.append(annotation)
                for field in annotation.model_fields.values():
                    visit(field.annotation)
            return
        for arg in typing.get_args(annotation):
            visit(arg)

    visit(root)
    return seen


def render_reference() -> str:
    """Markdown: one table per protocol section (field, type, default, meaning)."""
    parts = [BEGIN, ""]
    for model in _models(Protocol):
        doc = (model.__doc__ or "").strip().splitlines()[0]
        parts += [f"### {model.__name__}", "", doc, "",
                  "| field | type | default | meaning |", "| --- | --- | --- | --- |"]
        for name, field in model.model_fields.items():
            meaning = " ".join((field.description or "").split()).replace("|", "\\|")
            parts.append(f"| `{name}` | {_type_name(field.annotation)} | {_default(field)} "
                         f"| {meaning} |")
        parts.append("")
    parts.append(END)
    return "\n".join(parts)


def update_page(path: Path) -> bool:
    """Replace the generated block of ``path``; returns whether the file changed."""
    text = path.read_text(encoding="utf-8")
    start, end = text.index(BEGIN), text.index(END) + len(END)
    new = text[:start] + render_reference() + text[end:]
    if new != text:
        path.write_text(new, encoding="utf-8")
    return new != text


if __name__ == "__main__":  # pragma: no cover - maintenance entry point
    changed = update_page(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/protocol.md"))
    print("updated" if changed else "up to date")
