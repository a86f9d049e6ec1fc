"""YAML with positions, and errors that point at lines: the text layer under every YAML file
stimgen reads (the protocol, the user config).

Owns safe parsing (limits against alias bombs and deep nesting), the position of every key and
value, plain-words YAML syntax errors, and the translation of pydantic validation errors into
positioned problems (:class:`~stimgen.errors.ProtocolProblem`), with hints drawn from whichever
model the file was checked against. Imports no model itself.
"""
from __future__ import annotations

import typing
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from stimgen.circumplex import suggest
from stimgen.errors import ProtocolError, ProtocolProblem

MAX_PROTOCOL_BYTES = 2_000_000      # a protocol is a page of text; this is generous
MAX_NODES = 200_000                 # guards against alias bombs ("billion laughs")
MAX_DEPTH = 64                      # guards against absurdly deep nesting

Position = tuple[int, int]          # 1-based (line, column)
FieldPath = tuple[Any, ...]


class PositionedDocument:
    """Plain data from a YAML document plus the position of every key and value in it."""

    def __init__(self, data: Any, key_positions: dict[FieldPath, Position],
                 value_positions: dict[FieldPath, Position]):
        self.data = data
        self.key_positions = key_positions
        self.value_positions = value_positions

    def position(self, path: FieldPath, *, prefer_key: bool = False) -> Position | None:
        """Position of the deepest existing prefix of ``path`` (a key or its value)."""
        path = tuple(path)
        while True:
            first, second = ((self.key_positions, self.value_positions) if prefer_key
                             else (self.value_positions, self.key_positions))
            for table in (first, second):
                if path in table:
                    return table[path]
            if not path:
                return None
            path = path[:-1]


def _mark(node) -> Position:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _check_nesting(text: str, path: str) -> None:
    """Refuse documents nested deeper than MAX_DEPTH, scanning parser events (no recursion)."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                line, column = _mark(event)
                raise ProtocolError(path, [ProtocolProblem(
                    None, f"nesting deeper than {MAX_DEPTH} levels", line=line, column=column,
                    hint="a protocol needs only a few levels of sections and lists")])
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1


def parse_yaml(text: str, path: str) -> PositionedDocument:
    """Safely parse YAML text, recording positions; raises ProtocolError on bad YAML."""
    if len(text.encode("utf-8", errors="replace")) > MAX_PROTOCOL_BYTES:
        raise ProtocolError(path, [ProtocolProblem(
            None, f"file is larger than {MAX_PROTOCOL_BYTES // 1_000_000} MB; a protocol is a short "
            "text file", hint="check that you passed the protocol and not a data file")])
    loader = None
    try:
        _check_nesting(text, path)      # before composing: PyYAML's composer recurses
        loader = yaml.SafeLoader(text)
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as err:
        raise ProtocolError(path, [yaml_problem(text, err)]) from None
    except yaml.YAMLError as err:
        raise ProtocolError(path, [ProtocolProblem("", f"not valid YAML: {err}")]) from None
    finally:
        if loader is not None:
            loader.dispose()
    if node is None:
        raise ProtocolError(path, [ProtocolProblem(
            None, "the file is empty", hint="start from `stimgen init protocol.yaml`")])

    key_positions: dict[FieldPath, Position] = {}
    value_positions: dict[FieldPath, Position] = {}
    problems: list[ProtocolProblem] = []
    budget = [MAX_NODES]
    constructor = yaml.SafeLoader("")

    def build(node, here: FieldPath, depth: int):
        budget[0] -= 1
        if budget[0] < 0:
            raise ProtocolError(path, [ProtocolProblem(
                None, f"the document expands to more than {MAX_NODES} values (YAML aliases?)",
                hint="write the protocol out without anchors/aliases")])
        if depth > MAX_DEPTH:
            raise ProtocolError(path, [ProtocolProblem(
                ".".join(map(str, here)), f"nesting deeper than {MAX_DEPTH} levels",
                line=_mark(node)[0], column=_mark(node)[1])])
        value_positions[here] = _mark(node)
        if isinstance(node, yaml.MappingNode):
            result: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    problems.append(ProtocolProblem(
                        ".".join(map(str, here)), "YAML merge keys (<<) are not supported",
                        line=_mark(key_node)[0], column=_mark(key_node)[1],
                        hint="write the keys out in full"))
                    continue
                key = build(key_node, here + ("<key>",), depth + 1)
                if not isinstance(key, (str, int, float, bool)) or key is None:
                    problems.append(ProtocolProblem(
                        ".".join(map(str, here)), "keys must be plain names",
                        line=_mark(key_node)[0], column=_mark(key_node)[1]))
                    continue
                if key in result:
                    problems.append(ProtocolProblem(
                        ".".join(map(str, here + (key,))), f'key "{key}" appears twice',
                        line=_mark(key_node)[0], column=_mark(key_node)[1],
                        hint="remove one of them (YAML would silently keep the last)"))
                key_positions[here + (key,)] = _mark(key_node)
                result[key] = build(value_node, here + (key,), depth + 1)
            return result
        if isinstance(node, yaml.SequenceNode):
            return [build(child, here + (i,), depth + 1) for i, child in enumerate(node.value)]
        try:
            return constructor.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as err:
            line, column = _mark(node)
            problems.append(ProtocolProblem(
                ".".join(map(str, here)), f"cannot read this value: {err.problem}",
                line=line, column=column, hint="quote it to make it a string"))
            return None

    data = build(node, (), 0)
    if problems:
        raise ProtocolError(path, problems)
    return PositionedDocument(data, key_positions, value_positions)


def yaml_problem(text: str, err: yaml.MarkedYAMLError) -> ProtocolProblem:
    r"""PyYAML's error in plain words, at the line to fix: tabs, mis-indented lines, unquoted
    colons and unclosed quotes or brackets are named as such; anything else keeps PyYAML's
    words without its token jargon (``<block end>`` ...).

    >>> text = "targets:\n  emotions: [happy]\n intensities: [1.0]\n"
    >>> try:
    ...     yaml.safe_load(text)
    ... except yaml.MarkedYAMLError as err:
    ...     problem = yaml_problem(text, err)
    >>> problem.line, problem.message
    (3, 'line 3 is mis-indented: it starts in column 2, where no section above it starts')
    """
    lines = text.splitlines() or [""]
    mark = err.problem_mark or err.context_mark
    row = min(mark.line, len(lines) - 1) if mark else 0
    line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
    at_end = mark is not None and mark.line >= len(lines)
    context = err.context_mark
    problem, where = str(err.problem or ""), str(err.context or "")
    current = lines[row]

    def indent(text_line: str) -> int:
        return len(text_line) - len(text_line.lstrip(" "))

    def key_above(before: int) -> tuple[int, str] | None:
        """(row, text) of the nearest non-blank, non-comment line above ``before``."""
        for r in range(before - 1, -1, -1):
            if lines[r].strip() and not lines[r].lstrip().startswith("#"):
                return r, lines[r]
        return None

    if "'\\t'" in problem or "\t" in current[:indent(current) + 1]:
        tab_row = row if "\t" in current else next(
            (r for r, text_line in enumerate(lines) if "\t" in text_line), row)
        return ProtocolProblem(
            None, "YAML does not allow tabs for indentation", line=tab_row + 1,
            column=lines[tab_row].find("\t") + 1,
            hint=f"replace the tab at the start of line {tab_row + 1} with spaces, two per "
                 "level like the rest of the file; set your editor to insert spaces")
    if "quoted scalar" in where and context is not None:
        return ProtocolProblem(
            None, f"the quote opened on line {context.line + 1} is never closed",
            line=context.line + 1, column=context.column + 1,
            hint="close it with the same quote character, or remove it")
    if "flow sequence" in where or "flow mapping" in where:
        opened = "[" if "sequence" in where else "{"
        closing = "]" if opened == "[" else "}"
        start = context.line + 1 if context else line
        return ProtocolProblem(
            None, f"the {opened} ... {closing} opened on line {start} is not closed before "
                  f"{'the end of the file' if at_end else f'line {line}'}", line=line,
            column=column,
            hint=f"close it with {closing} on the same line, or write the items as indented "
                 "lines")
    if problem == "mapping values are not allowed here":
        above = key_above(row)
        first_colon = current.find(": ") if ": " in current else current.find(":")
        if 0 <= first_colon < mark.column:       # a second colon on the same line
            return ProtocolProblem(
                None, "this line has a second ': ' inside its value", line=line, column=column,
                hint='quote the value, e.g. name: "Faces: pilot 2"')
        if above is not None and indent(current) > indent(above[1]):
            key = current.strip().split(":")[0]
            return ProtocolProblem(
                None, f"line {line} is indented more than line {above[0] + 1} above it, so YAML "
                    "reads it as part of that line's value", line=line,
                column=indent(current) + 1,
                hint=f"keys of one section start in the same column: move `{key}:` to column "
                     f"{indent(above[1]) + 1}, like line {above[0] + 1}")
    if problem.startswith("expected <block end>") and mark is not None:
        columns, deepest = [], indent(current) + 10**6
        for r in range(row - 1, -1, -1):         # the columns of the sections still open here
            text_line = lines[r]
            if text_line.strip() and not text_line.lstrip().startswith("#") \
                    and indent(text_line) < deepest:
                deepest = indent(text_line)
                columns.append(deepest + 1)
        choices = " or ".join(f"column {c}" for c in columns) or "column 1"
        return ProtocolProblem(
            None, f"line {line} is mis-indented: it starts in column {indent(current) + 1}, where "
                "no section above it starts", line=line, column=indent(current) + 1,
            hint=f"start it in {choices}, where the lines above it start; indent with spaces")
    plain = problem
    for jargon, words in (("<block end>", "the end of a section"),
                          ("'<block mapping start>'", "a new key"),
                          ("'<block sequence start>'", "a new list item"),
                          ("<block mapping start>", "a new key"),
                          ("'<scalar>'", "a value"), ("<stream end>", "the end of the file")):
        plain = plain.replace(jargon, words)
    return ProtocolProblem(
        None, f"not valid YAML: {plain or where}", line=line, column=column,
        hint="check indentation (spaces, the same column for keys of one section), colons "
             "and quotes around this position")


def unknown_key_hint(key: str, allowed: list[str]) -> str | None:
    """'did you mean "..."?' for the closest of ``allowed`` to ``key``, else None.

    >>> unknown_key_hint("executer", ["executor", "jobs"])
    'did you mean "executor"?'
    """
    close = suggest(key, allowed)
    return f'did you mean "{close}"?' if close else None


def _allowed_keys(model: type[BaseModel], loc: FieldPath) -> list[str]:
    """Field names of the model reached by following ``loc`` from ``model`` (best effort)."""
    return [name for m in _models_at(model, loc) for name in m.model_fields]


def _models_at(model: type[BaseModel], loc: FieldPath) -> list[type[BaseModel]]:
    """The models that the value at ``loc`` may be, following ``loc`` from ``model``."""
    candidates: list[Any] = [model]
    for part in loc:
        next_candidates: list[Any] = []
        for cand in candidates:
            for m in _models_in(cand):
                field = m.model_fields.get(part) if isinstance(part, str) else None
                if field is not None:
                    next_candidates.append(field.annotation)
            if isinstance(part, int):
                next_candidates.extend(typing.get_args(cand) or [cand])
        candidates = next_candidates
    return [m for cand in candidates for m in _models_in(cand)]


def _section_not_a_mapping(model: type[BaseModel], loc: FieldPath, given: Any
                           ) -> tuple[str, str]:
    """Message and hint for a section given as one value (``study: h``): a section holds
    settings; where it has one required setting, the value is probably that setting."""
    name = str(loc[-1]) if loc else "the protocol"
    shown = f"the text {given!r}" if isinstance(given, str) else f"{given!r}"
    message = (f"`{name}` is empty: it is a section and needs its settings" if given is None
               else f"`{name}` is a section of settings (key: value pairs), not a single "
                    f"value; got {shown}")
    models = _models_at(model, loc)
    required = [field for m in models[:1] for field, info in m.model_fields.items()
                if info.is_required()]
    if len(required) == 1 and isinstance(given, (str, int, float)):
        return message, f"did you mean `{name}: {{{required[0]}: {given}}}`?"
    keys = ", ".join(sorted(_allowed_keys(model, loc))[:8])
    return message, (f"write `{name}:` and its settings indented on the lines below, or "
                     f"`{name}: {{key: value, ...}}`" + (f"; its keys: {keys}" if keys else ""))


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        found.extend(_models_in(arg))
    return found


def _misplaced_key_hint(model: type[BaseModel], doc: PositionedDocument, loc: FieldPath,
                        position: Position | None) -> str | None:
    """"did you mean to indent/dedent it?" for a key that is valid one level down (under the
    section just above it) or one level up."""
    if not loc or not isinstance(loc[-1], str):
        return None
    key, parent = loc[-1], tuple(loc[:-1])
    node: Any = doc.data
    for part in parent:
        node = node[part] if isinstance(node, (dict, list)) else None
    if isinstance(node, dict):
        line = position[0] if position else 10**9
        above = [(doc.key_positions.get(parent + (s,), (0, 0))[0], s) for s, value in node.items()
                 if isinstance(s, str) and s != key and (isinstance(value, dict) or value is None)
                 and key in _allowed_keys(model, parent + (s,))
                 and doc.key_positions.get(parent + (s,), (10**9, 0))[0] < line]
        if above:
            section = max(above)[1]
            return f'"{key}" belongs under `{section}:`; did you mean to indent it?'
        absent = [s for s in _allowed_keys(model, parent)
                  if s not in node and key in _allowed_keys(model, parent + (s,))]
        if absent:
            return (f'"{key}" belongs under `{absent[0]}:`, which is not written here; add '
                    f'`{absent[0]}:` and indent `{key}:` under it')
    if parent and key in _allowed_keys(model, parent[:-1]):
        where = ".".join(map(str, parent[:-1])) or "the top level"
        return f'"{key}" belongs one level up, in {where}; did you mean to dedent it?'
    return None


def _data_path(doc: PositionedDocument, loc: FieldPath, *, keep_missing_last: bool = False,
               ) -> FieldPath:
    """Drop the parts of a pydantic error location that are not in the document.

    Pydantic adds union member and discriminator tags (e.g. ``function-after[...]``,
    ``rating``, ``list[...]``) that are not keys of the YAML document.
    """
    kept: list[Any] = []
    node: Any = doc.data
    for index, part in enumerate(loc):
        if isinstance(node, dict) and part in node:
            kept.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            kept.append(part)
            node = node[part]
        elif keep_missing_last and index == len(loc) - 1:
            kept.append(part)   # the missing field itself, so the message names it
        # otherwise: a union/discriminator tag, skipped
    return tuple(kept)


def _expected(error: dict) -> str:
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
    return message


def problems_from_validation(err: ValidationError, doc: PositionedDocument,
                             model: type[BaseModel]) -> list[ProtocolProblem]:
    """Every error of ``err`` as a problem at its line in ``doc``, the document that was
    validated against ``model``: unknown keys get a did-you-mean or a misplaced-key hint
    among ``model``'s own keys, pydantic's union and discriminator tags are dropped from
    field paths, and one message per field is kept.
    """
    problems = []
    seen = set()
    for error in err.errors(include_url=False):
        ctx = error.get("ctx") or {}
        if ctx.get("field"):    # a check across sections names the setting to change
            field_path = tuple(int(p) if p.isdigit() else p for p in ctx["field"].split("."))
            problems.append(problem_at(doc, field_path, _expected(error), ctx.get("hint")))
            continue
        loc = _data_path(doc, error["loc"], keep_missing_last=error["type"] == "missing")
        field = ".".join(str(p) for p in loc) or "(top level)"
        kind = error["type"]
        hint = (error.get("ctx") or {}).get("hint")
        if kind == "extra_forbidden":
            key = loc[-1] if loc else "?"
            allowed = _allowed_keys(model, tuple(p for p in loc[:-1]))
            message = f'unknown key "{key}"'
            position = doc.position(loc, prefer_key=True)
            hint = hint or _misplaced_key_hint(model, doc, loc, position) or unknown_key_hint(
                str(key), allowed) or (
                f"allowed keys here: {', '.join(sorted(allowed))}" if allowed else None)
        elif kind == "missing" and loc and isinstance(loc[-1], int):
            loc = loc[:-1]
            field = ".".join(str(p) for p in loc)
            message = f"too few values: item {error['loc'][-1] + 1} is missing"
            position = doc.position(loc)
        elif kind in ("model_type", "model_attributes_type", "dict_type") and \
                not isinstance(error.get("input"), (dict, list)):
            message, hint = _section_not_a_mapping(model, loc, error.get("input"))
            position = doc.position(loc)
        elif kind == "list_type" and isinstance(error.get("input"), dict):
            name = loc[-1] if loc else "the protocol"
            message = f"`{name}` is a list: expected its items, got one mapping"
            hint = (f"start each item with `- ` on its own line, or write `{name}: [...]`, "
                    f"e.g. `{name}: [{{...}}, {{...}}]`")
            position = doc.position(loc)
        elif kind == "missing":
            message = "this field is required"
            hint = hint or "see docs/protocol.md or run `stimgen init` for an example"
            position = doc.position(loc[:-1])
        else:
            given = error.get("input")
            message = _expected(error)
            if not isinstance(given, (dict, list)) and f'"{given}"' not in message:
                message += f" (got {given!r})"
            position = doc.position(loc, prefer_key=isinstance(given, (dict, list)))
        line, column = position if position else (None, None)
        key = (field, message)
        if key in seen:
            continue
        seen.add(key)
        problems.append(ProtocolProblem(field, message, line=line, column=column, hint=hint))
    return problems


def problem_at(doc: PositionedDocument, field: FieldPath, message: str,
                hint: str | None) -> ProtocolProblem:
    """A problem at ``field``: a value where it is written; a section, a list or a setting
    left out at the key of the deepest part of ``field`` that the file has."""
    node: Any = doc.data
    for part in field:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = None
            break
    written_value = node is not None and not isinstance(node, (dict, list))
    line, column = doc.position(field, prefer_key=not written_value) or (None, None)
    return ProtocolProblem(".".join(str(p) for p in field), message, line=line,
                           column=column, hint=hint)

