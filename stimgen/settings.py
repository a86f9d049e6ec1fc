"""The settings each stage takes, resolved once from the protocol at plan time.

A stage meets its settings here as small typed values, with every ``auto`` and default decided:
:class:`RatingSpec` (which raters, which steers a correction; :func:`rating_spec` is the one
rule), :class:`CheckSpec` (tolerances, weak region, flags), :class:`RenderSpec` (what
drawing an identity's faces needs, in workers and jobs). A new setting is resolved here,
in the function that makes its stage's spec, and nowhere else (docs/ARCHITECTURE.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

#: The registry model (stimgen/data/weights_registry.yaml) each rater loads by default.
RATER_WEIGHTS = {"emonet": "emonet_8", "hsemotion": "hsemotion_enet_b0_8_va_mtl"}
#: The independent rater `auto` prefers: trained on AffectNet, fitted to neither generator.
INDEPENDENT_RATER = "hsemotion"
#: Raters fitted on, or trained against, a backend's faces: their accuracy there is circular.
CIRCULAR_FOR = {
    ("geometric", "schematic"): "its coefficients were fitted on these schematic faces",
    ("emonet", "emostyle"): "EmoStyle was trained against it (its emotion critic)",
}


def installed_model(name: str) -> bool:
    """Whether the registry model ``name`` is installed on this machine."""
    from stimgen.weights import model_status

    return model_status(name).installed


def never_installed(name: str) -> bool:
    """For a preview of the raters that asks nothing of this machine: ``auto`` then means the
    backend's own rater (what :func:`rating_spec` picks where no other weights are installed)."""
    return False


# -- raters ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RatingSpec:
    """The raters of one build, primary first, and what ``auto`` decided (for the user).

    ``primary`` judges (tolerance, flags, accuracy figures); ``others`` are reported beside
    it; ``steering``, with ``validation.correction``, is the rater whose readings drive the
    correction (always among the names).
    """

    primary: str
    others: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()      # one line per decision `auto` made, printed by the build
    steering: str | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return (self.primary, *self.others)


def backend_rater(backend: str) -> str:
    """The rater fitted on, or trained with, ``backend``'s faces (what ``auto`` falls back to).

    >>> backend_rater("emostyle"), backend_rater("schematic")
    ('emonet', 'geometric')
    """
    return "emonet" if backend == "emostyle" else "geometric"


def rating_spec(validation, backend: str, *,
                installed: Callable[[str], bool] = installed_model) -> RatingSpec:
    """The raters of a build: the one rule behind ``validation.rater``, ``validation.also``
    and ``validation.correction.rater``.

    ``validation.rater: auto`` picks, for ``emostyle``, the independent ``hsemotion`` rater
    when its weights are installed, with ``emonet`` (comparable with the published table)
    reported beside it, and ``emonet`` alone otherwise; for ``schematic``, ``geometric``, with
    ``hsemotion`` beside it when installed (:func:`choose_raters`). ``correction.rater: auto``
    steers with the backend's own rater (:func:`backend_rater`); the steering rater joins the
    raters and, where another exists, does not judge (:func:`judge_raters`). On a protocol
    whose raters :func:`stimgen.plan.resolve_raters` made concrete, the same
    names come back, whatever is installed.

    >>> from stimgen.protocol.models import Validation
    >>> rating_spec(Validation(rater="auto"), "schematic", installed=never_installed).names
    ('geometric',)
    >>> spec = rating_spec(Validation(also=["hsemotion"], correction={"rater": "auto"}),
    ...                    "schematic", installed=never_installed)
    >>> spec.names, spec.steering
    (('hsemotion', 'geometric'), 'geometric')
    """
    choice = choose_raters(validation.rater, list(validation.also), backend, installed=installed)
    correction = validation.correction
    if correction is None:
        return choice
    steering = correction.rater if correction.rater != "auto" else backend_rater(backend)
    return judge_raters(choice, steering, backend)


def choose_raters(rater: str, also: list[str] | tuple[str, ...], backend: str, *,
                  installed: Callable[[str], bool] = installed_model) -> RatingSpec:
    """Resolve ``validation.rater``/``validation.also`` to concrete rater names (the first
    step of :func:`rating_spec`). Explicit names are kept as given, in order, without repeats.

    >>> choose_raters("auto", [], "emostyle", installed=lambda name: True).names
    ('hsemotion', 'emonet')
    >>> choose_raters("auto", [], "emostyle", installed=lambda name: False).names
    ('emonet',)
    >>> choose_raters("emonet", ["hsemotion"], "schematic", installed=lambda name: False).names
    ('emonet', 'hsemotion')
    """
    independent = rater == "auto" and installed(RATER_WEIGHTS[INDEPENDENT_RATER])
    fetch = f"`stimgen models fetch {RATER_WEIGHTS[INDEPENDENT_RATER]}`"
    notes: list[str] = []
    if rater != "auto":
        primary, others = rater, []
    elif backend == "emostyle" and independent:
        primary, others = INDEPENDENT_RATER, ["emonet"]
        notes.append("raters: hsemotion (independent of EmoStyle) is the primary rater; emonet "
                     "(EmoStyle's training critic, comparable with the published table) is "
                     "reported beside it")
    elif backend == "emostyle":
        primary, others = "emonet", []
        notes.append("raters: only emonet, the critic EmoStyle was trained against, so its "
                     "accuracy figures are optimistic; for an independent rater run " + fetch)
    else:
        primary = "geometric"
        others = [INDEPENDENT_RATER] if independent else []
        if independent:
            notes.append("raters: geometric (fitted on schematic faces) is the primary rater; "
                         "hsemotion (independent) is reported beside it")
    names = [primary]
    for name in [*others, *also]:
        if name not in names:
            names.append(name)
    return RatingSpec(names[0], tuple(names[1:]), tuple(notes))


def judge_raters(choice: RatingSpec, steering: str, backend: str) -> RatingSpec:
    """The raters of a build whose stimuli the rater ``steering`` corrects.

    The steering rater joins the build's raters when it is not among them. The rater that
    judges, the primary one, whose readings make every accuracy figure of the report, must not
    be the one that steered when another exists: the primary rater stays when it did not
    steer; otherwise the first other rater independent of ``backend`` (else the first other
    rater) becomes primary. With the steering rater alone, it judges itself, and the report
    says its figures are optimistic by construction.

    >>> judge_raters(RatingSpec("geometric", ("hsemotion",)), "geometric", "schematic").names
    ('hsemotion', 'geometric')
    >>> judge_raters(RatingSpec("hsemotion"), "emonet", "emostyle").names
    ('hsemotion', 'emonet')
    >>> judge_raters(RatingSpec("geometric"), "geometric", "schematic").names
    ('geometric',)
    """
    names = list(choice.names) + ([steering] if steering not in choice.names else [])
    others = [name for name in names if name != steering]
    if choice.primary != steering:
        judge = choice.primary
    elif others:
        judge = next((name for name in others if not circularity(name, backend)), others[0])
    else:
        return RatingSpec(steering, (), (*choice.notes, (
            f"correction: {steering} steers and is the only rater, so the corrected accuracy "
            "figures are optimistic by construction; list another rater in validation.also "
            "for a held-out judge")), steering)
    note = (f"correction: {steering} steers; {judge}, which does not steer, is the primary "
            "rater and judges the result")
    return RatingSpec(judge, tuple(name for name in names if name != judge),
                      (*choice.notes, note), steering)


def circularity(rater: str, backend: str) -> str:
    """Why a rater's numbers on ``backend`` faces are circular, or "" when it is independent.

    >>> circularity("emonet", "emostyle")
    'EmoStyle was trained against it (its emotion critic)'
    >>> circularity("hsemotion", "emostyle")
    ''
    """
    return CIRCULAR_FOR.get((rater, backend), "")


# -- checks ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CheckSpec:
    """What makes a stimulus worth a look (stimgen/validate.py): its tolerances, the weak
    region (and whether it flags on this backend), and the clips' flicker threshold."""

    distance: float                       # largest VA distance to the target
    direction: float                      # largest direction error, degrees
    weak_region: tuple[float, float]      # angle interval, degrees (may wrap past 360)
    flag_weak_region: bool                # `auto` decided for the backend
    flicker_threshold: float | None       # None: no clips


# -- drawing --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RenderSpec:
    """What drawing, framing, rating and saving an identity's faces needs (stimgen/render.py,
    the backends, the executors), pickled into worker processes and cluster jobs.

    Made at plan time by :func:`stimgen.plan.render_spec`; the sections it carries are the
    protocol's own typed models, read by the stage that owns them and by no other.
    """

    backend: Any                      # the protocol's `backend:` section (name, options)
    output: Any                       # `output:` (size, format, framing, matching, clips)
    rating: RatingSpec                # the raters, decided once
    correction: Any                   # `validation.correction`, its rater concrete; or None
    seed: int                         # the protocol's seed (a photo's personalisation draws)
    base_dir: Path                    # where identity photos and latents resolve
    study: str                        # the study's name (names cluster jobs)
    models: tuple[str, ...] = ()      # registry weights the backend loads

    def resolve(self, relative: str) -> Path:
        """A path from the protocol, resolved relative to the protocol file."""
        path = Path(relative).expanduser()
        return path if path.is_absolute() else self.base_dir / path


# -- the experiment -------------------------------------------------------------------------------
@dataclass(frozen=True)
class BundleSpec:
    """What planning and writing the experiment needs (stimgen/design/, stimgen/export/, the
    finisher), made by :func:`stimgen.plan.bundle_spec` for a protocol with ``experiment:``."""

    study: Any                        # the protocol's `study:` section (names the experiment)
    experiment: Any                   # its `experiment:` section
    seed: int                         # the protocol's seed (every order derives from it)
    dynamic: Any = None               # `output.dynamic` (the clips' durations), or None
