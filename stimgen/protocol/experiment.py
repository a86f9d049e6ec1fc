"""The protocol's `experiment:` section: task, timing, wording, practice, breaks, design.

Pydantic models and the PsychoPy rules their text must meet (key names, text PsychoPy would
evaluate); the schedule they describe is computed by :mod:`stimgen.design` and written as a
PsychoPy bundle by :mod:`stimgen.export`. docs/experiment-design.md documents them.
"""
from __future__ import annotations

import re
from typing import Annotated, Literal, Union

from pydantic import BeforeValidator, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from stimgen.protocol.base import ProtocolModel

# PsychoPy key names we accept for responses: single letters and digits, arrows, space,
# return and the numeric keypad. "escape" is PsychoPy's quit key and is refused.
_KEY = re.compile(r"^(?:[a-z0-9]|space|return|left|right|up|down|num_[0-9])$")

#: Response keys used, in order, for categorization choices that name no key.
DEFAULT_CHOICE_KEYS: tuple[str, ...] = ("1", "2", "3", "4", "5", "6", "7", "8", "9", "0")


def _check_key(value) -> str:
    # YAML reads `key: 1` as an integer; a digit key is meant.
    key = str(value).strip().lower() if isinstance(value, (str, int)) else None
    if isinstance(value, bool) or key is None or not _KEY.match(key):
        raise PydanticCustomError(
            "bad_key",
            'unknown response key "{value}": use a single lower-case letter or digit, '
            "space, return, left, right, up, down or num_0 ... num_9",
            {"value": str(value), "hint": "e.g. key: f, key: 1 or key: space"},
        )
    return key


Key = Annotated[str, BeforeValidator(_check_key)]
"""A PsychoPy keyboard key name, normalised to lower case."""


def evaluated_by_psychopy(text: str) -> bool:
    """Whether PsychoPy would ``eval`` this text as a conditions-file cell.

    PsychoPy runs ``eval`` on conditions cells in two places: ``importConditions`` on any text
    cell that starts with ``[`` and ends with ``]``, and Builder's resource scan (PsychoJS
    export) on any cell that starts with ``$``; surrounding spaces are ignored. The one rule
    for a choice label here, the experiment plan (:mod:`stimgen.design`) and the bundle
    (:mod:`stimgen.export`), which all refuse such text.

    >>> evaluated_by_psychopy("[1, 2]"), evaluated_by_psychopy("$x"), evaluated_by_psychopy("a $")
    (True, True, False)
    """
    stripped = text.strip()
    return stripped.startswith("$") or (stripped.startswith("[") and stripped.endswith("]"))

Milliseconds = Annotated[int, Field(ge=0, le=600_000)]
"""A duration in milliseconds (0 to 10 minutes)."""


def _unique(values: list, what: str) -> None:
    seen = set()
    for value in values:
        if value in seen:
            raise ValueError(f"{what} {value!r} is listed more than once; {what}s must be unique")
        seen.add(value)


# -- task -----------------------------------------------------------------------------------

def plain_labels(value):
    """`[Happy, Sad]` is shorthand for `[{label: Happy}, {label: Sad}]` (choices and labels).

    >>> plain_labels(["Happy", {"label": "Sad", "key": "s"}])
    [{'label': 'Happy'}, {'label': 'Sad', 'key': 's'}]
    """
    if isinstance(value, list):
        return [{"label": v} if isinstance(v, str) else v for v in value]
    return value

class RatingScale(ProtocolModel):
    """One rating slider: the question above it and the labels along it."""

    question: str
    """Text shown above the slider."""
    labels: list[str] = Field(min_length=2, max_length=9)
    """Labels spread evenly along the slider from its low end to its high end (2-9 labels)."""
    low: int = 1
    """Value of the slider's left end."""
    high: int = 9
    """Value of the slider's right end; every integer from `low` to `high` is a tick."""

    @model_validator(mode="after")
    def _range(self):
        if self.high <= self.low:
            raise ValueError(f"high ({self.high}) must be greater than low ({self.low})")
        if self.high - self.low > 100:
            raise ValueError("a slider may have at most 101 ticks (high - low <= 100)")
        return self


def _valence_scale() -> RatingScale:
    return RatingScale(question="How unpleasant or pleasant is this expression?",
                       labels=["very unpleasant", "neutral", "very pleasant"])


def _arousal_scale() -> RatingScale:
    return RatingScale(question="How calm or excited does this face look?",
                       labels=["very calm", "neutral", "very excited"])


class RatingTask(ProtocolModel):
    """Rate each face on valence and/or arousal with 1-9 sliders."""

    type: Literal["rating"] = "rating"
    """Task type."""
    scales: list[Literal["valence", "arousal"]] = Field(
        default_factory=lambda: ["valence", "arousal"], min_length=1, max_length=2)
    """Which scales to show, top to bottom on the rating screen."""
    valence: RatingScale = Field(default_factory=_valence_scale)
    """Wording and range of the valence slider."""
    arousal: RatingScale = Field(default_factory=_arousal_scale)
    """Wording and range of the arousal slider."""
    advance: Literal["click", "key"] = "click"
    """How a trial ends: `click` = as soon as every shown slider has a rating; `key` = the
    participant presses `advance_key` after rating every slider."""
    advance_key: Key = "space"
    """Key that confirms the ratings when `advance: key`."""

    @field_validator("scales")
    @classmethod
    def _distinct_scales(cls, value):
        _unique(value, "scale")
        return value


class Choice(ProtocolModel):
    """One response option of a categorization task."""

    label: str = Field(min_length=1, max_length=80)
    """Text shown for the option and recorded as the response."""
    key: Key | None = None
    """Key that selects the option; default: "1", "2", ... in the order of the choices."""
    emotions: list[str] | None = None
    """Stimulus emotions for which this option is correct (names as in stimuli.tsv, case and
    separators ignored; any name of a basic emotion matches all of them: "fearful" is correct
    for Afraid and Fear faces); default: the option's own label."""

    @field_validator("label")
    @classmethod
    def _not_code_for_psychopy(cls, value: str) -> str:
        # A label becomes a conditions cell (correct_label); it must never be run as code.
        if evaluated_by_psychopy(value):
            raise ValueError("a choice label may not start with '$' or be wrapped in [...]: "
                             "PsychoPy would evaluate it as code")
        return value

    def matches(self) -> list[str]:
        """The stimulus emotion names this choice counts as correct."""
        return list(self.emotions) if self.emotions else [self.label]


class CategorizationTask(ProtocolModel):
    """Forced choice among emotion labels, one key per label; the correct answer is recorded."""

    type: Literal["categorization"] = "categorization"
    """Task type."""
    choices: list[Choice] | None = Field(default=None, min_length=2, max_length=10)
    """Response options (2-10). Default: one option per emotion in the experiment, keys "1",
    "2", ... (allowed only when the experiment shows 10 emotions or fewer)."""
    prompt: str = "Which emotion does this face show?"
    """Question shown with the options."""

    _plain_labels = field_validator("choices", mode="before")(plain_labels)

    @model_validator(mode="after")
    def _distinct_and_keyed(self):
        if self.choices is None:
            return self
        _unique([c.label.strip().lower() for c in self.choices], "choice label")
        free = iter(k for k in DEFAULT_CHOICE_KEYS if k not in {c.key for c in self.choices})
        for choice in self.choices:
            if choice.key is None:
                choice.key = next(free)
        _unique([c.key for c in self.choices], "choice key")
        return self


class CatchTrials(ProtocolModel):
    """Attention checks in a passive task: after the face, a prompt asks for a key press."""

    trials: int = Field(default=0, ge=0)
    """Number of main trials per participant that are catch trials (chosen at random)."""
    key: Key = "space"
    """Key the participant must press on a catch trial."""
    prompt: str = "Press SPACE now"
    """Text of the catch prompt."""
    response_ms: Milliseconds = 2000
    """How long the prompt waits for the key press."""


class PassiveTask(ProtocolModel):
    """Fixed-duration viewing without responses, with optional catch trials."""

    type: Literal["passive"] = "passive"
    """Task type."""
    catch: CatchTrials = Field(default_factory=CatchTrials)
    """Catch trials (none by default)."""


class NormingTask(ProtocolModel):
    """A norming study: each face rated on valence and arousal (9-point scales in the
    Self-Assessment Manikin convention), optionally on intensity, optionally named by a forced
    choice with a "none of these" option, with attention checks; read back by `stimgen norms`."""

    type: Literal["norming"] = "norming"
    """Task type."""
    valence: RatingScale = Field(default_factory=_valence_scale)
    """Wording and range of the valence slider."""
    arousal: RatingScale = Field(default_factory=_arousal_scale)
    """Wording and range of the arousal slider."""
    intensity: RatingScale | None = None
    """Also rate intensity on this slider (e.g. `intensity: {question: ..., labels: [...]}`);
    none = no intensity slider. Three sliders need a smaller face: `display.image_height: 0.3`."""
    labels: list[Choice] | None = Field(default=None, min_length=2, max_length=9)
    """After the ratings, name the emotion by a forced choice among these labels (2-9; keys
    "1", "2", ... unless given); none = no forced choice. Each stimulus emotion must be correct
    for one label (see `Choice.emotions`)."""
    none_label: str | None = Field(default="none of these", max_length=80)
    """An extra option that is never correct, shown after the labels; none = no such option."""
    label_prompt: str = "Which emotion does this face show?"
    """Question shown with the labels."""
    catch: CatchTrials = Field(default_factory=lambda: CatchTrials(
        prompt="Attention check: press SPACE now"))
    """Attention checks: after the ratings of this many random main trials a prompt asks for
    a key; `stimgen norms` excludes participants who miss them."""

    _plain_labels = field_validator("labels", mode="before")(plain_labels)

    @field_validator("none_label")
    @classmethod
    def _none_not_code(cls, value):
        if value is not None and evaluated_by_psychopy(value):
            raise ValueError("none_label may not start with '$' or be wrapped in [...]: "
                             "PsychoPy would evaluate it as code")
        return value

    @model_validator(mode="after")
    def _distinct_and_keyed(self):
        if self.labels is None:
            return self
        names = [c.label.strip().lower() for c in self.labels]
        if self.none_label is not None:
            names.append(self.none_label.strip().lower())
        _unique(names, "label")
        free = iter(k for k in DEFAULT_CHOICE_KEYS if k not in {c.key for c in self.labels})
        for choice in self.labels:
            if choice.key is None:
                choice.key = next(free)
        _unique([c.key for c in self.labels], "label key")
        return self

    @property
    def scales(self) -> list[str]:
        """The sliders shown, top to bottom."""
        return ["valence", "arousal"] + (["intensity"] if self.intensity else [])

    @property
    def choices(self) -> list[Choice] | None:
        """The forced-choice options: the labels, then the "none of these" option."""
        if self.labels is None:
            return None
        if self.none_label is None:
            return list(self.labels)
        taken = {c.key for c in self.labels}
        key = next(k for k in DEFAULT_CHOICE_KEYS if k not in taken)
        return [*self.labels, Choice(label=self.none_label, key=key, emotions=[])]


TaskSpec = Annotated[Union[RatingTask, CategorizationTask, PassiveTask, NormingTask],
                     Field(discriminator="type")]
"""One of the task models, chosen by its `type`."""


# -- timing, text, practice, breaks, display -----------------------------------------------
class Timing(ProtocolModel):
    """Durations of one trial, in milliseconds."""

    fixation_ms: Milliseconds = 500
    """Fixation cross before each face; 0 shows none."""
    stimulus_ms: Milliseconds | Literal["until_response"] | None = None
    """How long the face is shown. `until_response`: until the participant responds; a number:
    for that long (responses are still collected after the face disappears). Default: until
    the response for rating and categorization, 2000 ms for passive viewing."""
    response_timeout_ms: Milliseconds | None = None
    """Longest wait for a response, counted from face onset; none waits indefinitely."""
    iti_ms: Milliseconds = 1000
    """Blank inter-trial interval after each trial."""

    @field_validator("stimulus_ms")
    @classmethod
    def _positive(cls, value):
        if value == 0:
            raise ValueError("stimulus_ms must be positive (or `until_response`)")
        return value


PASSIVE_STIMULUS_MS_DEFAULT = 2000


class Text(ProtocolModel):
    """What the participant reads. Shown as plain text, never interpreted."""

    instructions: str | None = None
    """First screen; default: a short task-specific instruction."""
    practice_intro: str = "First, a few practice trials. Press SPACE to start."
    """Shown before the practice trials (only when there are any)."""
    practice_done: str = "Practice is over. Press SPACE to start the experiment."
    """Shown after the practice trials."""
    break_text: str = "Take a short break. Press SPACE to continue."
    """Shown at each break."""
    goodbye: str = "Thank you for taking part!"
    """Last screen."""


DEFAULT_INSTRUCTIONS = {
    "rating": ("You will see faces. Rate each expression on the scales shown by clicking on "
               "them.\n\nPress SPACE to start."),
    "categorization": ("You will see faces. Press the key of the emotion each face shows, as "
                       "quickly and accurately as you can.\n\nPress SPACE to start."),
    "passive": ("You will see faces. Just look at each one. When asked, press the key shown "
                "on screen.\n\nPress SPACE to start."),
    "norming": ("You will see faces. Rate how unpleasant or pleasant and how calm or excited "
                "each expression looks by clicking on the scales. Sometimes you will be asked "
                "to press a key: please do.\n\nPress SPACE to start."),
}


class Practice(ProtocolModel):
    """Practice trials before the main trials; their data rows are marked `is_practice`."""

    trials: int = Field(default=0, ge=0, le=100)
    """Number of practice trials (0 = no practice)."""
    source: Literal["auto", "unused", "repeat"] = "auto"
    """Where practice faces come from: `unused` = stimuli of the build not used in the main
    trials (e.g. `identities` below or ones left out by `stimuli:`); `repeat` = main-set
    stimuli shown again; `auto` = unused ones when there are enough, else repeats."""
    identities: list[str] = Field(default_factory=list)
    """Identities reserved for practice: removed from the main trials, used for practice."""


class Breaks(ProtocolModel):
    """Self-paced rest screens between main trials."""

    every: int | None = Field(default=None, ge=1)
    """A break after every this many main trials (none after the last trial); none = no breaks."""
    between_blocks: bool = True
    """In a blocked design, also a break between consecutive blocks."""


class Display(ProtocolModel):
    """Screen layout, in PsychoPy `height` units (1.0 = the window's height)."""

    image_height: float = Field(default=0.5, gt=0.0, le=1.0)
    """Height of the face image on screen."""
    text_height: float = Field(default=0.04, gt=0.0, le=0.2)
    """Height of text letters."""
    fullscreen: bool = True
    """Run in a full-screen window."""


class StimulusSelection(ProtocolModel):
    """Which stimuli of the build enter the experiment (default: all of them)."""

    emotions: list[str] | None = None
    """Only these emotions (names as in stimuli.tsv's `emotion` column, case and separators
    ignored, other names of a basic emotion accepted; `neutral` for neutral faces)."""
    identities: list[str] | None = None
    """Only these identities."""
    intensities: list[Annotated[float, Field(gt=0.0, le=1.0)]] | None = None
    """Only these intensities (neutral faces, intensity 0, are kept unless excluded)."""
    include_neutral: bool = True
    """Keep neutral faces."""
    exclude_out_of_tolerance: bool = False
    """Leave out stimuli flagged `out_of_tolerance` by validation."""


# -- design ---------------------------------------------------------------------------------
class MaxRun(ProtocolModel):
    """Longest allowed run of consecutive main trials sharing a value; none = unconstrained."""

    emotion: int | None = Field(default=2, ge=1)
    """At most this many consecutive trials with the same emotion."""
    identity: int | None = Field(default=3, ge=1)
    """At most this many consecutive trials with the same identity."""
    intensity: int | None = Field(default=None, ge=1)
    """At most this many consecutive trials with the same intensity."""

    def limits(self) -> dict[str, int]:
        """The constraints that are set, as ``{column: max run}``."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


class _DesignBase(ProtocolModel):
    type: str
    """Design type."""
    repetitions: int = Field(default=1, ge=1, le=20)
    """How many times each stimulus is shown to a participant."""
    max_run: MaxRun = Field(default_factory=MaxRun)
    """Run-length limits on the trial order (within each block for blocked designs)."""


class RandomDesign(_DesignBase):
    """A different random order for each of `participants` orders, all from the seed."""

    type: Literal["random"] = "random"
    """Design type."""
    participants: int = Field(default=24, ge=1, le=1000)
    """Number of orders generated ahead; participant p uses order ((p - 1) mod N) + 1."""
    lists: int | None = Field(default=None, ge=2, le=100)
    """Split the stimuli into this many lists of (nearly) equal size, each with about the same
    share of every emotion and intensity, so that each participant rates one list (a part of
    the stimuli, as large norming studies do); order g shows list ((g - 1) mod lists) + 1.
    `participants` must be a multiple of `lists`: each stimulus is then rated by
    participants / lists people per round of orders. None = every participant sees every
    stimulus."""

    @model_validator(mode="after")
    def _lists_fill_equally(self):
        if self.lists is not None and self.participants % self.lists:
            raise PydanticCustomError(
                "lists_unbalanced",
                "participants ({participants}) must be a multiple of lists ({lists}), so "
                "that every list is shown to the same number of participants",
                {"participants": self.participants, "lists": self.lists,
                 "hint": f"e.g. participants: {self.participants + self.lists - self.participants % self.lists}"})
        return self


class BlockedDesign(_DesignBase):
    """Trials blocked by a factor; block order balanced across groups by a Williams square."""

    type: Literal["blocked"] = "blocked"
    """Design type."""
    factor: Literal["emotion", "intensity", "identity"] = "emotion"
    """The factor whose levels form the blocks."""
    groups: int | None = Field(default=None, ge=1, le=1000)
    """Number of groups; default: the rows of the balanced square (n levels: n if n is even,
    2n if odd). Must be a multiple of that number so that every row is used equally often."""


class LatinSquareDesign(_DesignBase):
    """List assignment: each participant sees each identity in one condition only; across the
    lists every identity x condition pair occurs equally often."""

    type: Literal["latin-square"] = "latin-square"
    """Design type."""
    conditions: Literal["intensity", "emotion"] = "intensity"
    """The factor whose levels are the conditions rotated over identities."""
    groups: int | None = Field(default=None, ge=1, le=1000)
    """Number of lists; default: the number of conditions k. Must be a multiple of k."""


DesignSpec = Annotated[Union[RandomDesign, BlockedDesign, LatinSquareDesign],
                       Field(discriminator="type")]
"""One of the design models, chosen by its `type`; planned by :func:`stimgen.design.plan_design`."""


# -- the section ----------------------------------------------------------------------------
class ExperimentSpec(ProtocolModel):
    """The PsychoPy experiment built from the stimuli: task, timing, text and design."""

    task: TaskSpec = Field(default_factory=RatingTask)
    """What participants do: `rating`, `categorization`, `passive` or `norming` (valence and
    arousal ratings, optional labels and attention checks, read back by `stimgen norms`)."""
    timing: Timing = Field(default_factory=Timing)
    """Trial durations."""
    text: Text = Field(default_factory=Text)
    """Instructions, break and goodbye text."""
    practice: Practice = Field(default_factory=Practice)
    """Practice trials."""
    breaks: Breaks = Field(default_factory=Breaks)
    """Rest breaks."""
    display: Display = Field(default_factory=Display)
    """Sizes on screen."""
    stimuli: StimulusSelection = Field(default_factory=StimulusSelection)
    """Which stimuli enter the experiment."""
    design: DesignSpec = Field(default_factory=RandomDesign)
    """Trial order and counterbalancing: `random`, `blocked` or `latin-square`."""
    show: Literal["still", "clip"] = "still"
    """What a trial shows: the `still` image, or the `clip` (the stimulus's video of
    `output.dynamic`, played once, then the response screen with the apex frame)."""
    online: bool = False
    """Make `experiment/` self-contained for PsychoJS / Pavlovia: the images it shows are
    copied into `experiment/stimuli/`, listed as resources to preload, and the PsychoJS
    script is compiled into it. When false, images stay in the build's `stimuli/`."""

    @field_validator("task", "design", mode="before")
    @classmethod
    def _default_type(cls, value, info):
        # `design: {participants: 30}` means the default type, as `design: {}` does.
        if isinstance(value, dict) and "type" not in value:
            return {"type": "rating" if info.field_name == "task" else "random", **value}
        return value

    @model_validator(mode="after")
    def _task_fits_timing_and_design(self):
        if self.timing.stimulus_ms is None:
            self.timing.stimulus_ms = (PASSIVE_STIMULUS_MS_DEFAULT if self.task.type == "passive"
                                       else "until_response")
        if self.task.type == "passive" and self.timing.stimulus_ms == "until_response":
            raise PydanticCustomError(
                "passive_duration",
                "a passive task has no response to wait for: timing.stimulus_ms must be a "
                "number of milliseconds",
                {"hint": "e.g. `timing: {stimulus_ms: 2000}`"})
        blocked_by = getattr(self.design, "factor", None)
        if blocked_by == "identity" and self.practice.identities:
            raise ValueError("practice.identities cannot be reserved in a design blocked by "
                             "identity; use practice.source: repeat")
        return self

    @property
    def instructions(self) -> str:
        """The first screen's text: `text.instructions` or the task's default."""
        return self.text.instructions or DEFAULT_INSTRUCTIONS[self.task.type]
