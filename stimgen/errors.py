"""Errors a user can cause and fix: each says what is wrong, where, and what to do.

The CLI prints any :class:`StimgenError` without a traceback and exits with status 2;
anything else is a bug and raises normally.
"""
from __future__ import annotations


class StimgenError(Exception):
    """Base class for every error caused by user input or the user's environment."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None):
        self.message = message
        self.hint = hint
        super().__init__(self.render())

    def render(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class ProtocolError(StimgenError):
    """A protocol file that cannot be read or does not validate.

    ``problems`` holds one :class:`ProtocolProblem` per mistake so that a user fixes
    them all in one pass instead of one per run.
    """

    def __init__(self, path, problems: list["ProtocolProblem"]):
        self.path = str(path)
        self.problems = problems
        lines = [f"{self.path}: {len(problems)} problem(s) in the protocol"]
        lines += [f"  {p.render(self.path)}" for p in problems]
        super().__init__("\n".join(lines))


class ProtocolProblem:
    """One mistake in a protocol: where it is, what was expected, how to fix it."""

    def __init__(self, field: str | None, message: str, *, line: int | None = None,
                 column: int | None = None, hint: str | None = None):
        # field: dotted path of the setting ("" for the top level); None for a problem of the
        # text itself (YAML syntax), which has a line but no setting
        self.field = field
        self.message = message
        self.line = line
        self.column = column
        self.hint = hint

    def render(self, path: str | None) -> str:
        """``file:line:column: field: message (hint: ...)``; without a path, from the field on."""
        where = path or ""
        if path and self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        label = "" if self.field is None else f"{self.field or '(top level)'}: "
        text = f"{where + ': ' if where else ''}{label}{self.message}"
        if self.hint:
            text += f" (hint: {self.hint})"
        return text

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"ProtocolProblem({self.field!r}, {self.message!r}, line={self.line})"


class DesignError(StimgenError):
    """An experiment that cannot be planned over the stimuli the protocol makes.

    ``field`` is the protocol path of the setting to change, e.g.
    ``("experiment", "stimuli", "emotions", 1)``; the loader turns it into file:line:column.
    """

    def __init__(self, field: tuple, message: str, *, hint: str | None = None,
                 related: tuple = ()):
        self.field = tuple(field)
        #: further (field, message) pairs that explain this one, e.g. the misspelt choice
        #: labels behind an unanswered emotion; the loader positions each in the file
        self.related = tuple((tuple(f), text) for f, text in related)
        super().__init__(message, hint=hint)

    def render(self) -> str:
        extra = "".join(f"\n  {'.'.join(map(str, f))}: {text}" for f, text in self.related)
        return super().render() + extra

    @property
    def field_path(self) -> str:
        """The field as written in messages: ``experiment.stimuli.emotions.1``."""
        return ".".join(str(part) for part in self.field)

    def render(self) -> str:
        text = f"{self.field_path}: {self.message}" if self.field else self.message
        return text if not self.hint else f"{text}\n  hint: {self.hint}"


class BackendUnavailableError(StimgenError):
    """A backend that cannot run here: missing weights, missing GPU, missing package."""


class WeightsMissingError(BackendUnavailableError):
    """Model files a stage needs are not installed; the message names them and their source."""


class BuildError(StimgenError):
    """A build that cannot proceed: output folder problems, locks, disk errors."""


class SelectionError(StimgenError):
    """A stimulus selection (`stimgen select`) that cannot be made: a bad option, norms that
    are missing or lack what the rule needs, an output folder that is not a subset's."""
