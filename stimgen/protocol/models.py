"""The protocol: pydantic models that define protocol.yaml, its defaults and its checks.

These models are the single source of truth: the loader validates against them, `stimgen
schema` prints their JSON Schema and docs/protocol.md documents their fields.
"""
from __future__ import annotations

import math
import re
from pathlib import Path, PurePath
from typing import Annotated, Literal, Union

from pydantic import (AfterValidator, Field, PrivateAttr, WithJsonSchema, field_validator,
                      model_validator)
from pydantic_core import PydanticCustomError

from stimgen.circumplex import (WEAK_REGION_DEFAULT,
                                UnknownEmotionError, basic_emotion_sources,
                                canonical_emotion_name, emotion_by_name, resolve_emotion,
                                weak_region_flagged,
                                named_emotions, normalise_emotion_name)
from stimgen.protocol.base import ProtocolModel
from stimgen.protocol.execution import ExecutionSpec
from stimgen.protocol.experiment import ExperimentSpec

IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,47}")   # used with fullmatch


def _check_emotion_name(name: str) -> str:
    try:
        return canonical_emotion_name(resolve_emotion(name))
    except UnknownEmotionError as missing:
        raise PydanticCustomError(
            "unknown_emotion",
            'unknown emotion "{name}": expected one of the 28 named circumplex emotions or '
            "a basic emotion",
            {"name": name, "hint": missing.hint},
        ) from None


EmotionName = Annotated[str, AfterValidator(_check_emotion_name)]
Intensity = Annotated[float, Field(gt=0.0, le=1.0)]


def _check_identifier(value: str) -> str:
    if not IDENTIFIER.fullmatch(value):
        raise PydanticCustomError(
            "bad_identifier",
            'invalid id "{value}": use 1-48 letters, digits, "_" or "-", starting with a '
            "letter or digit (ids become file names)",
            {"value": value, "hint": 'for example "id01" or "p_anna"'},
        )
    return value


Identifier = Annotated[str, AfterValidator(_check_identifier)]


class Study(ProtocolModel):
    """Who made the study and what it is; shown in the report and the experiment bundle."""

    name: str = Field(min_length=1, max_length=200)
    """Study name; also names the default output folder `build/<name>/`."""
    description: str = ""
    """Free text describing the study."""
    authors: list[str] = Field(default_factory=list)
    """Authors, as they should appear in the report."""


class SchematicOptions(ProtocolModel):
    """Options of the embedded `schematic` backend (parametric faces on CPU)."""

    supersample: int = Field(default=2, ge=1, le=4)
    """Anti-aliasing factor: faces are drawn this many times larger, then downsampled."""
    background: tuple[int, int, int] = (128, 128, 128)
    """Background colour as RGB 0-255 (uniform grey is the usual choice for face stimuli)."""

    @field_validator("background")
    @classmethod
    def _rgb_range(cls, value):
        if any(not 0 <= c <= 255 for c in value):
            raise ValueError("each RGB channel must be within 0-255")
        return value


class PersonalizationWeights(ProtocolModel):
    """Loss weights of a photo identity's generator fine-tuning (EmoStyle phase 2)."""

    emotion: float = Field(default=0.3, ge=0.0)
    """EmoNet valence/arousal loss at random targets."""
    pose: float = Field(default=0.001, ge=0.0)
    """Landmark loss on the 14 expression-stable points (head pose must not change)."""
    background: float = Field(default=0.2, ge=0.0)
    """Pixel loss outside the face polygon (the background must not change)."""
    identity: float = Field(default=1.5, ge=0.0)
    """VGGFace2 identity loss (the person must stay recognisable)."""
    reconstruction: float = Field(default=0.2, ge=0.0)
    """0.84 (1 - MS-SSIM) + 0.16 L1 against the photo, on every fifth step."""


class EmoStyleOptions(ProtocolModel):
    """Options of the `emostyle` backend (StyleGAN2-ADA + EmoStyle on a GPU)."""

    truncation_psi: float = Field(default=0.7, gt=0.0, le=1.0)
    """Truncation toward the average face for seed identities (the published setting is 0.7)."""
    batch_size: int = Field(default=16, ge=1, le=256)
    """Edits per GPU batch (halved automatically when the GPU runs out of memory)."""
    inversion_steps: int = Field(default=500, ge=1)
    """Optimisation steps of the inversion of a photo into W (one code shared by every layer)."""
    inversion_wplus_steps: int = Field(default=0, ge=0)
    """Optional W+ refinement steps after the W inversion, held near the W code (0: stay in W)."""
    personalization_steps: int = Field(default=500, ge=0)
    """Generator fine-tuning steps for a photo identity (EmoStyle phase 2; 0 disables it)."""
    personalization_lr: float = Field(default=3e-4, gt=0.0, le=1.0)
    """Adam learning rate of the generator fine-tuning (the published setting is 3e-4)."""
    loss_weights: PersonalizationWeights = Field(default_factory=PersonalizationWeights)
    """Weights of the personalisation losses (defaults: the EmoStyle paper's)."""
    multiple_faces: Literal["largest", "error"] = "largest"
    """A photo with several faces: use the `largest` (with a warning) or stop with an `error`."""
    precision: Literal["fp32", "bf16"] = "fp32"
    """Synthesis precision of the edits on CUDA: `bf16` autocast is faster; on CPU always fp32."""
    device: str = "auto"
    """Torch device: "auto" (CUDA when present), "cuda", "cuda:1", "cpu"."""


class SchematicSpec(ProtocolModel):
    """The embedded `schematic` backend: parametric faces on CPU, no weights needed."""

    name: Literal["schematic"] = "schematic"
    """Backend name."""
    options: SchematicOptions = Field(default_factory=SchematicOptions)
    """Options of the schematic backend."""


class EmoStyleSpec(ProtocolModel):
    """The `emostyle` backend: StyleGAN2-ADA + EmoStyle edits on a GPU (needs model weights)."""

    name: Literal["emostyle"]
    """Backend name."""
    options: EmoStyleOptions = Field(default_factory=EmoStyleOptions)
    """Options of the emostyle backend."""


BackendSpec = Annotated[Union[SchematicSpec, EmoStyleSpec], Field(discriminator="name")]


class Identity(ProtocolModel):
    """One face identity: a generated seed, a real photo, or a stored latent."""

    id: Identifier
    """Short unique name; becomes the prefix of every stimulus file of this identity."""
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)
    """Generate the identity from this seed."""
    image: str | None = None
    """Path to a photo of a real person (relative to the protocol file); emostyle backend."""
    latent: str | None = None
    """Path to a W+ latent (.npy or .pt, relative to the protocol file); emostyle backend."""
    source: str = ""
    """Where the photo comes from (dataset, photographer); recorded in the manifest."""
    consent: str = ""
    """Consent/licence note for a photo of a real person; recorded in the manifest."""

    @model_validator(mode="after")
    def _exactly_one_source(self):
        given = [k for k in ("seed", "image", "latent") if getattr(self, k) is not None]
        if len(given) != 1:
            raise PydanticCustomError(
                "identity_source",
                "identity needs exactly one of seed, image or latent (got {got})",
                {"got": ", ".join(given) or "none",
                 "hint": "e.g. `- {id: id01, seed: 1}` or `- {id: p01, image: photos/p01.jpg}`"},
            )
        return self

    @property
    def kind(self) -> str:
        return "seed" if self.seed is not None else ("image" if self.image else "latent")


class Point(ProtocolModel):
    """An explicit target point in valence-arousal space."""

    label: Identifier
    """Name used in the stimulus file name and the tables."""
    valence: float = Field(ge=-1.0, le=1.0)
    """Target valence in [-1, 1]."""
    arousal: float = Field(ge=-1.0, le=1.0)
    """Target arousal in [-1, 1]."""

    @model_validator(mode="after")
    def _inside_circle(self):
        if math.hypot(self.valence, self.arousal) > 1.0 + 1e-9:
            raise ValueError("the point lies outside the unit circle of the circumplex "
                             "(valence^2 + arousal^2 must be <= 1)")
        return self


def reference_label(path: str) -> str:
    """The target name of a reference image: its file name without extension, made an identifier.

    >>> reference_label("refs/Big smile.jpg")
    'Big_smile'
    """
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", PurePath(path).stem).strip("_-")
    return stem[:48] or "reference"


class Targets(ProtocolModel):
    """The expressions to make for every identity."""

    emotions: Annotated[list[EmotionName], WithJsonSchema({
        "anyOf": [{"type": "string", "description": '"all", or one emotion name'},
                  {"type": "array", "items": {"type": "string"}}],
        "examples": ["all", ["happiness", "fear", "circumplex:calm"]]})] = Field(default_factory=list)
    """Named emotions: "all" for the 28 circumplex terms, or a list. The rule: a basic
    emotion's word in any form names the basic emotion (happy/happiness, sad/sadness,
    angry/anger, fear/fearful, surprise/surprised, disgust/disgusted, contempt/contemptuous);
    every other name is one of the 28 circumplex terms of Darne et al.'s table. Happy, Sad and
    Angry are circumplex terms too: write them `circumplex:happy`, `circumplex:sad`,
    `circumplex:angry` (any term may carry the prefix; `basic:` picks a basic emotion). Case
    and separators are ignored; `stimgen validate` warns where a word has both meanings;
    `stimgen emotions` lists every name with its source."""
    basic_sources: dict[str, str] = Field(default_factory=dict)
    """Which published valence-arousal point a basic emotion's target uses, where there is
    more than one: `{contempt: russell_mehrabian_1977}` instead of the default
    `warriner_2013` (see `stimgen emotions` and docs/metrics.md)."""
    angles: list[Annotated[float, Field(ge=0.0, lt=360.0)]] = Field(default_factory=list)
    """Extra target angles in degrees, counter-clockwise from +valence."""
    intensities: list[Intensity] = Field(default_factory=lambda: [0.25, 0.5, 0.75, 1.0])
    """Intensities r in (0, 1]; each emotion/angle is made at every intensity."""
    points: list[Point] = Field(default_factory=list)
    """Explicit (valence, arousal) targets, made once each."""
    from_images: list[str] = Field(default_factory=list)
    """Reference face images (paths relative to the protocol): each is rated by the primary
    rater when the build starts and its (valence, arousal) becomes a target named after the
    file ("make every identity show this face's emotion"). Needs a network rater
    (`hsemotion` or `emonet`)."""
    neutral: bool = False
    """Also make a neutral face (valence = arousal = 0) of every identity."""

    @field_validator("emotions", mode="before")
    @classmethod
    def _all_keyword(cls, value):
        if isinstance(value, str):
            if normalise_emotion_name(value) == "all":
                return [canonical_emotion_name(e) for e in named_emotions()]
            return [value]
        return value

    @model_validator(mode="after")
    def _no_duplicates_and_something_to_make(self):
        for field in ("emotions", "angles", "intensities"):
            values = getattr(self, field)
            if len(set(values)) != len(values):
                dup = next(v for v in values if values.count(v) > 1)
                same = (" (a basic emotion's words in any form name it once: anger = angry; "
                        "write circumplex:angry for the circumplex term)"
                        if field == "emotions" else "")
                raise ValueError(f"{field} lists {dup!r} more than once{same}")
        labels = [p.label for p in self.points]
        if len(set(labels)) != len(labels):
            raise ValueError("two points share a label; labels must be unique")
        stems = [reference_label(path) for path in self.from_images]
        clash = sorted({s for s in stems if stems.count(s) > 1 or s in labels})
        if clash:
            raise ValueError(f"from_images: two targets would be named {clash[0]!r}; reference "
                             f"images need distinct file names, unlike the points' labels")
        if not (self.emotion_list() or self.angles or self.points or self.neutral
                or self.from_images):
            raise PydanticCustomError(
                "no_targets", "targets are empty: nothing to make",
                {"hint": "add `emotions: all`, a list of emotions, angles, points or `neutral: true`"})
        return self

    @field_validator("basic_sources")
    @classmethod
    def _known_sources(cls, value):
        for emotion, source in value.items():
            choices = basic_emotion_sources(normalise_emotion_name(emotion))
            if not choices:
                raise PydanticCustomError(
                    "unknown_basic_source", 'basic_sources: "{emotion}" is not a basic emotion',
                    {"emotion": emotion, "hint": "e.g. {contempt: russell_mehrabian_1977}"})
            if source not in choices:
                raise PydanticCustomError(
                    "unknown_basic_source",
                    'basic_sources: {emotion} has no point from "{source}"',
                    {"emotion": emotion, "source": source,
                     "hint": f"one of: {', '.join(choices)}"})
        return {normalise_emotion_name(k): v for k, v in value.items()}

    def emotion_list(self) -> list[str]:
        """Display names of the requested named emotions, in the order given."""
        return [self.named_emotion(name).name for name in self.emotions]

    def named_emotion(self, name: str):
        """The ``NamedEmotion`` a listed name stands for, with the published point the
        protocol picked in ``basic_sources``."""
        emotion = emotion_by_name(name)
        source = self.basic_sources.get(emotion.key)
        if emotion.vocabulary == "basic" and source is not None:
            return basic_emotion_sources(emotion.key)[source]
        return emotion


class Tolerance(ProtocolModel):
    """How far an achieved expression may miss its target before it is flagged."""

    distance: float = Field(default=0.35, gt=0.0, le=2.0 * math.sqrt(2.0))
    """Largest acceptable Euclidean VA distance between target and achieved."""
    direction: float = Field(default=45.0, gt=0.0, le=180.0)
    """Largest acceptable direction error in degrees (not applied to neutral targets)."""


class Correction(ProtocolModel):
    """Closed-loop accuracy correction: re-request each stimulus's (valence, arousal) until the
    steering rater sees the target (docs/correction.md). Off unless this section is given."""

    rater: Literal["auto", "geometric", "emonet", "hsemotion"] = "auto"
    """The rater that steers: its reading of each face drives the next request. `auto`: the
    backend's own rater (`geometric` for schematic, `emonet` for emostyle), so that an
    independent rater is left to judge. Added to the build's raters when not among them; when
    the build has another rater, that one becomes the primary rater and judges the result."""
    iterations: int = Field(default=4, ge=1, le=20)
    """Most correction rounds (re-render + re-rate) per stimulus after the first rendering."""
    max_request: float = Field(default=1.0, gt=0.0, le=1.0)
    """Largest radius of a requested (valence, arousal): the generator was trained inside the
    unit circle and extrapolates beyond it, so requests are clipped to this radius."""
    tolerance: float = Field(default=0.05, gt=0.0, le=2.0)
    """A stimulus stops being corrected once the steering rater's VA distance to its target is
    at most this."""


class Validation(ProtocolModel):
    """How achieved expressions are rated and checked."""

    rater: Literal["auto", "geometric", "emonet", "hsemotion"] = "auto"
    """The primary rater, whose achieved valence/arousal drive tolerance and flags. `auto`,
    decided when the build starts from what is installed on that machine: for emostyle,
    `hsemotion` (independent of the generator) when its weights are installed, with `emonet`
    reported beside it, else `emonet` alone; for schematic, `geometric`, with `hsemotion`
    beside it when installed. With `correction`, a rater that steers does not judge where
    another rater exists: that one becomes the primary rater (docs/correction.md). `stimgen
    validate` prints the raters a build would use (the rule: stimgen/settings.py,
    `rating_spec`)."""
    also: list[Literal["geometric", "emonet", "hsemotion"]] = Field(default_factory=list)
    """More raters reported beside the primary one (stimuli.tsv columns `valence_<rater>`,
    `arousal_<rater>`, and the report's "Do the raters agree?" section); e.g. `[hsemotion]`."""
    tolerance: Tolerance = Field(default_factory=Tolerance)
    """Per-stimulus tolerances; stimuli outside them are flagged `out_of_tolerance`."""
    weak_region: tuple[float, float] = WEAK_REGION_DEFAULT
    """Angle interval [start, end] in degrees (may wrap past 360) where the generator is known
    to be weak; the `weak_region` column of stimuli.tsv marks targets inside. Default: 242-328.6
    (bored ... serene), where published EmoStyle misses by 0.4-0.7 (Darne, Quan & Luo, 2025)."""
    flag_weak_region: Literal["auto", "always", "never"] = "auto"
    """Whether a target in the weak region is a reason to look at its stimulus (a flag in
    stimuli.tsv and the report): `auto` = only on the emostyle backend, whose weakness the
    published region describes; `always`; `never`. The `weak_region` column is written either way."""
    correction: Correction | None = None
    """Closed-loop accuracy correction (docs/correction.md); omit it to render each target once.
    Example: `correction: {rater: geometric, iterations: 4}`."""

    @field_validator("weak_region")
    @classmethod
    def _interval(cls, value):
        start, end = value
        if not (0.0 <= start < 360.0 and 0.0 <= end < 360.0):
            raise ValueError("weak_region angles must lie in [0, 360); a region that wraps past "
                             "360 is written e.g. [300, 30]")
        return value

    @field_validator("also")
    @classmethod
    def _distinct_raters(cls, value):
        repeated = sorted({name for name in value if value.count(name) > 1})
        if repeated:
            raise ValueError(f"rater {repeated[0]} is listed twice; list each rater once")
        return value

    @model_validator(mode="after")
    def _primary_not_also(self):
        if self.rater in self.also:
            raise ValueError(f"{self.rater} is the primary rater (validation.rater); remove it "
                             f"from validation.also")
        return self


class DynamicOutput(ProtocolModel):
    """A video of every stimulus: the identity's neutral face turning into the target
    expression, then holding it (see docs/outputs.md, "Dynamic stimuli")."""

    frames: int = Field(default=24, ge=2, le=240)
    """Frames of the onset, the neutral first frame and the target last frame included.
    Below 5 the landmark jitter cannot be measured, so no clip is flagged `flicker` (validate
    and build warn)."""
    fps: int = Field(default=30, ge=1, le=120)
    """Frames per second of the video."""
    hold_ms: int = Field(default=1000, ge=0, le=60_000)
    """How long the target expression (the apex) stays on screen after the onset, in ms."""
    ease: Literal["linear", "sigmoid"] = "sigmoid"
    """How intensity grows over the onset: `linear`, or `sigmoid` (slow start and end, as
    natural expressions do)."""
    format: Literal["mp4"] = "mp4"
    """Video format: H.264 MP4 (yuv420p), which PsychoPy and every browser play."""
    png_frames: bool = False
    """Also write the onset's frames as PNG files into a folder per stimulus."""
    flicker_threshold: float = Field(default=0.01, gt=0.0, le=1.0)
    """A clip is flagged `flicker` when its landmark jitter (RMS residual of the landmark
    paths around their smooth motion, as a fraction of the inter-ocular distance) exceeds this."""


class Output(ProtocolModel):
    """Where and how stimuli are written, framed and matched (docs/standardise.md)."""

    folder: str | None = None
    """Output folder (relative to the protocol file); default `build/<study name>/`."""
    image_size: int = Field(default=512, ge=64, le=2048)
    """Width and height of every stimulus in pixels."""
    format: Literal["png", "jpg"] = "png"
    """Image format: lossless `png` (default) or `jpg` (quality 95)."""
    dynamic: DynamicOutput | None = None
    """Also make a video clip of every stimulus, neutral to target (none: stills only)."""
    # -- standardisation and low-level matching (stimgen/standardise.py, docs/standardise.md)
    greyscale: bool = False
    """Convert every face to grey levels (PIL "L": 0.299 R + 0.587 G + 0.114 B) before rating."""
    mask: Literal["none", "oval"] = "none"
    """`oval`: show the face through a soft-edged oval placed from the identity's neutral-face
    landmarks (one mask per identity, saved in `masks/`); `none`: the whole image."""
    background: int | tuple[int, int, int] = 128
    """Grey level (0-255) or RGB colour outside the oval mask; greyscale builds use its grey
    level. Unused without a mask."""
    match: Literal["none", "luminance", "histogram", "spectrum", "histogram+spectrum"] = "none"
    """Match low-level statistics over the face region as SHINE does: `luminance` (mean and
    SD), `histogram` (exact grey-level histogram), `spectrum` (Fourier amplitude spectrum),
    `histogram+spectrum` (both). Needs `greyscale: true`; faces are rated after matching."""
    match_scope: Literal["set", "identity"] = "set"
    """Match across the whole stimulus set (`set`) or within each identity (`identity`)."""
    match_ssim_iterations: int = Field(default=0, ge=0, le=100)
    """Histogram matching's SSIM-gradient steps (Avanaki, 2009) after the best ordering: each
    keeps the histogram exact and brings the face a little closer to its unmatched look."""

    @field_validator("background")
    @classmethod
    def _grey_or_rgb(cls, value):
        channels = (value,) if isinstance(value, int) else value
        if any(not 0 <= c <= 255 for c in channels):
            raise ValueError("background: a grey level or each RGB channel must be within 0-255")
        return value

    @model_validator(mode="after")
    def _match_needs_greyscale(self):
        if self.match != "none" and not self.greyscale:
            raise PydanticCustomError(
                "match_needs_greyscale",
                "output.match: {match} matches grey levels, but output.greyscale is false",
                {"match": self.match,
                 "hint": "add `greyscale: true` under `output:` (matching each colour channel "
                         "on its own would shift the faces' hues), or set `match: none`"})
        return self


class Protocol(ProtocolModel):
    """A whole stimgen protocol: what to make, how to check it, how to run it."""

    study: Study
    """Study metadata."""
    seed: int = Field(default=0, ge=0, le=2**32 - 1)
    """Global seed; every random choice of the build derives from it."""
    backend: BackendSpec = Field(default_factory=SchematicSpec)
    """The face generator."""
    identities: list[Identity] = Field(min_length=1)
    """The face identities; every identity is made at every target."""
    targets: Targets
    """The expressions to make."""
    validation: Validation = Field(default_factory=Validation)
    """Rating and tolerances."""
    output: Output = Field(default_factory=Output)
    """Output folder, image format, framing and low-level matching."""
    experiment: ExperimentSpec | None = None
    """The PsychoPy experiment to emit (see docs/experiment-design.md); omit for stimuli only."""
    execution: ExecutionSpec | None = None
    """Where the work runs: local worker processes or a SLURM cluster (see docs/cluster.md);
    usually set on the command line or in the user config file instead."""

    _source_path: Path | None = PrivateAttr(default=None)
    _warnings: tuple = PrivateAttr(default=())

    @model_validator(mode="after")
    def _unique_ids_and_backend_fit(self):
        # Case-insensitive: "A1" and "a1" name the same files on macOS and Windows disks.
        ids = [i.id.casefold() for i in self.identities]
        for index, ident in enumerate(ids):
            if ids.index(ident) != index:
                raise PydanticCustomError(
                    "duplicate_id", 'identity id "{id}" is used more than once',
                    {"id": self.identities[index].id,
                     "hint": "give every identity a unique id (ids differing only in case "
                             "count as the same, since they name the same files)"})
        if self.experiment is not None and self.experiment.show == "clip" \
                and self.output.dynamic is None:
            raise PydanticCustomError(
                "clip_without_dynamic",
                "`clip` needs clips, but output.dynamic is not set: no clips are made",
                {"field": "experiment.show",
                 "hint": "add `output: {dynamic: {frames: 24, fps: 30}}`, or show `still`"})
        if self.backend.name == "schematic":
            for ident in self.identities:
                if ident.seed is None:
                    raise PydanticCustomError(
                        "backend_identity",
                        'identity "{id}" uses {kind}, but the schematic backend draws '
                        "identities from seeds only",
                        {"id": ident.id, "kind": ident.kind,
                         "hint": "use `seed:` or switch to `backend: {name: emostyle}`"})
        return self

    @property
    def warnings(self) -> tuple:
        """What loading the file found worth a look but not wrong (``ProtocolProblem``s):
        an emotion word with two meanings, a target list mixing the two vocabularies."""
        return self._warnings

    # -- paths -------------------------------------------------------------------------
    @property
    def source_path(self) -> Path | None:
        """The protocol file this was loaded from (None when built in Python)."""
        return self._source_path

    @property
    def base_dir(self) -> Path:
        return self._source_path.parent if self._source_path else Path.cwd()

    def resolve(self, relative: str) -> Path:
        """A path from the protocol, resolved relative to the protocol file."""
        path = Path(relative).expanduser()
        return path if path.is_absolute() else (self.base_dir / path)

    def default_output(self) -> Path:
        """`output.folder` relative to the protocol file, else `build/<study>/` in the CWD."""
        if self.output.folder:
            return self.resolve(self.output.folder)
        return Path("build") / study_slug(self.study.name)

    def flags_weak_region(self) -> bool:
        """Whether weak-region targets are flagged on this protocol's backend."""
        return weak_region_flagged(self.validation.flag_weak_region, self.backend.name)


def study_slug(name: str) -> str:
    """A file-system-safe version of a study name: "My study!" -> "My_study"."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_")
    return slug[:64] or "study"
