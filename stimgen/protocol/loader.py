"""Reading protocol.yaml: safe YAML with positions, validation, errors that point at lines.

Every problem is reported as file:line:column, field path, what was expected and a hint,
and all problems of a file are reported together. Besides each field, the loader checks what
only a plan of the whole protocol shows (colliding stimulus ids, an experiment that cannot be
planned over the stimuli the protocol makes), so that nothing a build would refuse is found
after its faces are drawn.
"""
from __future__ import annotations

import hashlib
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from stimgen.errors import DesignError, ProtocolError, ProtocolProblem, StimgenError
from stimgen.plan import plan_units
from stimgen.protocol.models import Protocol, unknown_key_hint

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


def _allowed_keys(model: type[BaseModel], loc: FieldPath) -> list[str]:
    """Field names of the model reached by following ``loc`` from ``model`` (best effort)."""
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
    names: list[str] = []
    for cand in candidates:
        for m in _models_in(cand):
            names.extend(m.model_fields)
    return names


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        found.extend(_models_in(arg))
    return found


def _misplaced_key_hint(doc: PositionedDocument, loc: FieldPath,
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
                 and key in _allowed_keys(Protocol, parent + (s,))
                 and doc.key_positions.get(parent + (s,), (10**9, 0))[0] < line]
        if above:
            section = max(above)[1]
            return f'"{key}" belongs under `{section}:`; did you mean to indent it?'
        absent = [s for s in _allowed_keys(Protocol, parent)
                  if s not in node and key in _allowed_keys(Protocol, parent + (s,))]
        if absent:
            return (f'"{key}" belongs under `{absent[0]}:`, which is not written here; add '
                    f'`{absent[0]}:` and indent `{key}:` under it')
    if parent and key in _allowed_keys(Protocol, parent[:-1]):
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


def problems_from_validation(err: ValidationError, doc: PositionedDocument) -> list[ProtocolProblem]:
    problems = []
    seen = set()
    for error in err.errors(include_url=False):
        loc = _data_path(doc, error["loc"], keep_missing_last=error["type"] == "missing")
        field = ".".join(str(p) for p in loc) or "(top level)"
        kind = error["type"]
        hint = (error.get("ctx") or {}).get("hint")
        if kind == "extra_forbidden":
            key = loc[-1] if loc else "?"
            allowed = _allowed_keys(Protocol, tuple(p for p in loc[:-1]))
            message = f'unknown key "{key}"'
            position = doc.position(loc, prefer_key=True)
            hint = hint or _misplaced_key_hint(doc, loc, position) or unknown_key_hint(
                str(key), allowed) or (
                f"allowed keys here: {', '.join(sorted(allowed))}" if allowed else None)
        elif kind == "missing" and loc and isinstance(loc[-1], int):
            loc = loc[:-1]
            field = ".".join(str(p) for p in loc)
            message = f"too few values: item {error['loc'][-1] + 1} is missing"
            position = doc.position(loc)
        elif kind == "missing":
            message = "this field is required"
            allowed = _allowed_keys(Protocol, loc[:-1])
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


def load_protocol(path: str | Path) -> Protocol:
    """Read and validate a protocol file.

    Parameters
    ----------
    path : str or Path
        A protocol YAML file.

    Returns
    -------
    Protocol
        The validated protocol; relative paths in it resolve against the file's folder.

    Raises
    ------
    ProtocolError
        With every problem found, each with file:line:column, field path and a hint;
        including an ``experiment:`` that cannot be planned over the protocol's stimuli
        (see :func:`stimgen.design.plan_experiment`).

    Examples
    --------
    >>> import stimgen
    >>> protocol = stimgen.load_protocol("protocols/demo.yaml")  # doctest: +SKIP
    >>> protocol.study.name  # doctest: +SKIP
    'demo'
    """
    path = Path(path)
    if not path.exists():
        raise ProtocolError(path, [ProtocolProblem(
            None, "file not found", hint="check the path; `stimgen init` writes a starter protocol")])
    if path.is_dir():
        raise ProtocolError(path, [ProtocolProblem("", "this is a folder, not a protocol file")])
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ProtocolError(path, [ProtocolProblem(
            None, f"not a UTF-8 text file (byte {err.start})",
            hint="save the protocol as UTF-8 text")]) from None
    return protocol_from_text(text, path)


def protocol_from_text(text: str, path: str | Path = "<protocol>") -> Protocol:
    """Validate protocol YAML text; ``path`` anchors relative paths and error messages."""
    doc = parse_yaml(text, str(path))
    if not isinstance(doc.data, dict):
        kind = type(doc.data).__name__
        raise ProtocolError(path, [ProtocolProblem(
            None, f"the top level must be a mapping of sections (got {kind})",
            line=1, column=1, hint="start with `study:`, `identities:` and `targets:`")])
    try:
        protocol = Protocol.model_validate(doc.data)
    except ValidationError as err:
        raise ProtocolError(path, problems_from_validation(err, doc)) from None
    protocol._source_path = Path(path).resolve() if str(path) != "<protocol>" else None
    missing = _missing_files(protocol, doc)
    if missing:
        raise ProtocolError(path, missing)
    unplannable = _plan_problems(protocol, doc)
    if unplannable:
        raise ProtocolError(path, unplannable)
    return protocol


def _plan_problems(protocol: Protocol, doc: PositionedDocument) -> list[ProtocolProblem]:
    """What only a plan of the whole protocol shows, positioned at the setting to change."""
    try:
        plan_units(protocol)
    except StimgenError as err:     # two targets that would share a file name
        return [_problem_at(doc, ("targets",), err.message, err.hint)]
    if protocol.experiment is None:
        return []
    from stimgen.design import plan_experiment   # pandas: only for protocols with an experiment

    try:
        plan_experiment(protocol)
    except DesignError as err:
        return [_problem_at(doc, err.field, err.message, err.hint)]
    return []


def _problem_at(doc: PositionedDocument, field: FieldPath, message: str,
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


def _missing_files(protocol: Protocol, doc: PositionedDocument) -> list[ProtocolProblem]:
    problems = []
    for index, identity in enumerate(protocol.identities):
        for field in ("image", "latent"):
            value = getattr(identity, field)
            if value is None:
                continue
            resolved = protocol.resolve(value)
            if not resolved.is_file():
                line, column = doc.position(("identities", index, field)) or (None, None)
                problems.append(ProtocolProblem(
                    f"identities.{index}.{field}", f'file "{value}" not found (looked at {resolved})',
                    line=line, column=column,
                    hint="paths are relative to the protocol file's folder"))
    return problems


def protocol_sha256(protocol: Protocol) -> str:
    """sha256 of the normalised protocol (defaults filled in), independent of formatting.

    The `execution:` section is left out: where a build runs does not change what it makes.
    """
    content = protocol.model_dump_json(exclude={"execution"})
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


def normalised_json(protocol: Protocol) -> str:
    return protocol.model_dump_json(indent=None, exclude_none=False)
