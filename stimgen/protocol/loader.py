"""Reading protocol.yaml: validation against the protocol models, and what only a whole plan shows.

Every problem is reported as file:line:column, field path, what was expected and a hint,
and all problems of a file are reported together (the YAML text layer, positions and error
wording live in :mod:`stimgen.protocol.yaml_source`). Besides each field, the loader checks
what only a plan of the whole protocol shows (colliding stimulus ids, an experiment that cannot
be planned over the stimuli the protocol makes), so that nothing a build would refuse is found
after its faces are drawn.
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from pydantic import ValidationError

from stimgen.errors import DesignError, ProtocolError, ProtocolProblem, StimgenError
from stimgen.plan import plan_units
from stimgen.protocol.models import Protocol
from stimgen.protocol.yaml_source import (PositionedDocument, parse_yaml, problem_at,
                                          problems_from_validation)

log = logging.getLogger("stimgen")


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
        (see :func:`plan_experiment`).

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
        raise ProtocolError(path, problems_from_validation(err, doc, Protocol)) from None
    protocol._source_path = Path(path).resolve() if str(path) != "<protocol>" else None
    missing = _missing_files(protocol, doc)
    if missing:
        raise ProtocolError(path, missing)
    unplannable = _plan_problems(protocol, doc)
    if unplannable:
        raise ProtocolError(path, unplannable)
    protocol._warnings = tuple(_vocabulary_warnings(protocol, doc))
    return protocol


def _vocabulary_warnings(protocol: Protocol, doc: PositionedDocument) -> list[ProtocolProblem]:
    """An emotion word that also names the other vocabulary (happy, sad, angry), and a target
    list that mixes basic emotions with circumplex terms, positioned at the word."""
    from stimgen.circumplex import mixed_vocabulary_warning, vocabulary_warning

    targets = doc.data.get("targets")
    raw = targets.get("emotions") if isinstance(targets, dict) else None
    if not isinstance(raw, list) or not all(isinstance(word, str) for word in raw):
        return []        # `all`, or nothing: the 28 circumplex terms or no named emotion
    found = []
    for index, word in enumerate(raw):
        note = vocabulary_warning(word)
        if note:
            found.append(problem_at(doc, ("targets", "emotions", index), note, None))
    mixed = mixed_vocabulary_warning(raw)
    if mixed:
        found.append(problem_at(doc, ("targets", "emotions"), *mixed))
    return found


def _plan_problems(protocol: Protocol, doc: PositionedDocument) -> list[ProtocolProblem]:
    """What only a plan of the whole protocol shows, positioned at the setting to change."""
    try:
        plan_units(protocol)
    except StimgenError as err:     # two targets that would share a file name
        return [problem_at(doc, ("targets",), err.message, err.hint)]
    if protocol.experiment is None:
        return []

    try:
        plan_experiment(protocol)
    except DesignError as err:
        return [problem_at(doc, err.field, err.message, err.hint)] + [
            problem_at(doc, field, text, None) for field, text in err.related]
    return []



def _missing_files(protocol: Protocol, doc: PositionedDocument) -> list[ProtocolProblem]:
    problems = []
    hint = "paths are relative to the protocol file's folder"
    for index, identity in enumerate(protocol.identities):
        for field in ("image", "latent"):
            value = getattr(identity, field)
            if value is None:
                continue
            resolved = protocol.resolve(value)
            if not resolved.is_file():
                line, column = doc.position(("identities", index, field)) or (None, None)
                problems.append(ProtocolProblem(
                    f"identities.{index}.{field}",
                    f'identity "{identity.id}": {_not_a_file(value, resolved)}',
                    line=line, column=column, hint=hint))
    for index, value in enumerate(protocol.targets.from_images):
        resolved = protocol.resolve(value)
        if not resolved.is_file():
            line, column = doc.position(("targets", "from_images", index)) or (None, None)
            problems.append(ProtocolProblem(
                f"targets.from_images.{index}", f"reference face: {_not_a_file(value, resolved)}",
                line=line, column=column, hint=hint))
    return problems


def _not_a_file(value: str, resolved: Path) -> str:
    """Why ``resolved`` (the path ``value`` of a protocol) is not a file a build can read."""
    if resolved.is_symlink():
        leads = resolved.resolve()
        if not resolved.exists():
            return (f'file "{value}" is a symbolic link to {leads}, which does not exist '
                    f"(looked at {resolved})")
        kind = "a folder" if resolved.is_dir() else "not a regular file (a device or pipe)"
        return f'file "{value}" is a symbolic link to {leads}, which is {kind}'
    if resolved.is_dir():
        return f'"{value}" is a folder, not a file (looked at {resolved})'
    if resolved.exists():
        return f'"{value}" is not a regular file (a device or pipe; looked at {resolved})'
    return f'file "{value}" not found (looked at {resolved})'



def protocol_problems(protocol: Protocol, found: list[tuple[tuple, str, str | None]]
                      ) -> ProtocolError:
    """A ProtocolError of problems found after loading (a photo the build would refuse):
    ``found`` holds (field path, message, hint); each is positioned at its field in the
    protocol file, as the loader's own problems are."""
    path = protocol.source_path or "<protocol>"
    try:
        doc = parse_yaml(protocol.source_path.read_text(encoding="utf-8-sig"), str(path))
    except (AttributeError, OSError, UnicodeDecodeError, ProtocolError):
        doc = None                   # built in Python, or the file changed since: no positions
    problems = []
    for field, message, hint in found:
        if doc is not None:
            problems.append(problem_at(doc, field, message, hint))
        else:
            problems.append(ProtocolProblem(".".join(map(str, field)), message, hint=hint))
    return ProtocolError(path, problems)


def protocol_sha256(protocol: Protocol) -> str:
    """sha256 of the normalised protocol (defaults filled in), independent of formatting.

    The `execution:` section is left out: where a build runs does not change what it makes.
    """
    content = protocol.model_dump_json(exclude={"execution"})
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


def normalised_json(protocol: Protocol) -> str:
    return protocol.model_dump_json(indent=None, exclude_none=False)


# -- the experiment of a whole protocol -------------------------------------------------------
def plan_experiment(protocol: Protocol):
    """Plan the protocol's experiment over the stimuli it will make, without making them.

    Runs :func:`plan_design` on :func:`planned_stimuli`, so every check the build makes
    when it writes the experiment (selection, choices, balance, run limits, practice, catch
    trials, cells PsychoPy would evaluate) fails here first. Stimuli that
    ``exclude_out_of_tolerance`` would drop are only known after rating; the plan assumes
    none is dropped.

    Parameters
    ----------
    protocol : Protocol
        A validated protocol.

    Returns
    -------
    ExperimentPlan or None
        None when the protocol has no ``experiment:`` section.

    Raises
    ------
    DesignError
        The experiment cannot be planned; ``field`` is the protocol setting to change.

    Examples
    --------
    >>> from stimgen.protocol.models import Protocol
    >>> protocol = Protocol.model_validate({"study": {"name": "x"},
    ...     "identities": [{"id": "id01", "seed": 1}, {"id": "id02", "seed": 2}],
    ...     "targets": {"emotions": ["happy", "sad"], "intensities": [1.0]},
    ...     "experiment": {"design": {"participants": 4}}})
    >>> plan = plan_experiment(protocol)
    >>> plan.design.groups, plan.session.trials
    (['g01', 'g02', 'g03', 'g04'], 4)
    """
    experiment = protocol.experiment
    if experiment is None:
        return None
    # loading a protocol, the CLI's plan summary and the build's fail-fast check all plan
    # the same protocol: plan it once (a plan is read, never changed)
    key = protocol.model_dump_json()
    if key not in _RECENT_PLANS:
        from stimgen.design.plan import plan_experiment_over, planned_stimuli  # pandas: lazily
        from stimgen.plan import bundle_spec

        stimuli = planned_stimuli(plan_units(protocol), protocol.output.format)
        _RECENT_PLANS[key] = plan_experiment_over(bundle_spec(protocol), stimuli,
                                                  protocol.backend.name)
        while len(_RECENT_PLANS) > 4:
            _RECENT_PLANS.pop(next(iter(_RECENT_PLANS)))
    return _RECENT_PLANS[key]


#: The last few plans by protocol (its JSON): see plan_experiment.
_RECENT_PLANS: dict = {}


def check_experiment(protocol: Protocol):
    """:func:`plan_experiment`, with its warnings logged on the ``stimgen`` logger (the CLI
    prints them as ``warning: ...``); what a build runs before it draws a face."""
    plan = plan_experiment(protocol)
    source = str(protocol.source_path) if protocol.source_path else None
    for warning in plan.warnings if plan else ():
        log.warning(warning.render(source))
    return plan
