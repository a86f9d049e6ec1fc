"""Which raters a build uses: the primary rater (tolerance and flags) and the others reported
beside it, with ``auto`` resolved from what is installed, and what each rater's numbers mean.

:func:`resolve_raters` turns the protocol's ``validation.rater``/``validation.also`` into
concrete names once, at the start of a build; :func:`circularity` says, next to every number,
whether the rater is independent of the generator it rates.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable

import numpy as np

from stimgen.protocol.models import Protocol
from stimgen.raters import RATER_WEIGHTS

#: The independent rater `auto` prefers: trained on AffectNet, fitted to neither generator.
INDEPENDENT_RATER = "hsemotion"
#: Raters fitted on, or trained against, a backend's faces: their accuracy there is circular.
CIRCULAR_FOR = {
    ("geometric", "schematic"): "its coefficients were fitted on these schematic faces",
    ("emonet", "emostyle"): "EmoStyle was trained against it (its emotion critic)",
}


@dataclass(frozen=True)
class RaterChoice:
    """The raters of one build, primary first, and what ``auto`` decided (for the user)."""

    primary: str
    others: tuple[str, ...]
    notes: tuple[str, ...]      # one line per decision `auto` made, printed by the build

    @property
    def names(self) -> tuple[str, ...]:
        return (self.primary, *self.others)


def installed_model(name: str) -> bool:
    """Whether the registry model ``name`` is installed on this machine."""
    from stimgen.weights import model_status

    return model_status(name).installed


def choose_raters(rater: str, also: list[str] | tuple[str, ...], backend: str, *,
                  installed: Callable[[str], bool] = installed_model) -> RaterChoice:
    """Resolve ``validation.rater``/``validation.also`` to concrete rater names.

    ``auto`` picks, for ``emostyle``, the independent ``hsemotion`` rater when its weights are
    installed, with ``emonet`` (comparable with the published table) reported beside it, and
    ``emonet`` alone otherwise; for ``schematic``, ``geometric``, with ``hsemotion`` beside it
    when installed. Explicit names are kept as given, in order, without repeats.

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
    return RaterChoice(names[0], tuple(names[1:]), tuple(notes))


def resolve_raters(protocol: Protocol, *,
                   installed: Callable[[str], bool] = installed_model
                   ) -> tuple[Protocol, RaterChoice]:
    """The protocol with ``validation.rater`` and ``validation.also`` made concrete.

    A build resolves ``auto`` once, here, so that every worker, the cache key, stimuli.tsv
    and the manifest agree on the same raters, whatever is installed where the workers run.
    """
    validation = protocol.validation
    choice = choose_raters(validation.rater, list(validation.also), protocol.backend.name,
                           installed=installed)
    update: dict = {}
    if validation.correction is not None:     # closed-loop correction (stimgen/correction.py)
        steering = validation.correction.resolved_rater(protocol.backend.name)
        choice = judge_raters(choice, steering, protocol.backend.name)
        update["correction"] = validation.correction.model_copy(update={"rater": steering})
    resolved = validation.model_copy(update={"rater": choice.primary,
                                             "also": list(choice.others), **update})
    return protocol.model_copy(update={"validation": resolved}), choice


def judge_raters(choice: RaterChoice, steering: str, backend: str) -> RaterChoice:
    """The raters of a build whose stimuli the rater ``steering`` corrects.

    The steering rater joins the build's raters when it is not among them. The rater that
    judges, the primary one, whose readings make every accuracy figure of the report, must not
    be the one that steered when another exists: the primary rater stays when it did not
    steer; otherwise the first other rater independent of ``backend`` (else the first other
    rater) becomes primary. With the steering rater alone, it judges itself, and the report
    says its figures are optimistic by construction.

    >>> judge_raters(RaterChoice("geometric", ("hsemotion",), ()), "geometric", "schematic").names
    ('hsemotion', 'geometric')
    >>> judge_raters(RaterChoice("hsemotion", (), ()), "emonet", "emostyle").names
    ('hsemotion', 'emonet')
    >>> judge_raters(RaterChoice("geometric", (), ()), "geometric", "schematic").names
    ('geometric',)
    """
    names = list(choice.names) + ([steering] if steering not in choice.names else [])
    others = [name for name in names if name != steering]
    if choice.primary != steering:
        judge = choice.primary
    elif others:
        judge = next((name for name in others if not circularity(name, backend)), others[0])
    else:
        return RaterChoice(steering, (), (*choice.notes, (
            f"correction: {steering} steers and is the only rater, so the corrected accuracy "
            "figures are optimistic by construction; list another rater in validation.also "
            "for a held-out judge")))
    note = (f"correction: {steering} steers; {judge}, which does not steer, is the primary "
            "rater and judges the result")
    return RaterChoice(judge, tuple(name for name in names if name != judge),
                       (*choice.notes, note))


def circularity(rater: str, backend: str) -> str:
    """Why a rater's numbers on ``backend`` faces are circular, or "" when it is independent.

    >>> circularity("emonet", "emostyle")
    'EmoStyle was trained against it (its emotion critic)'
    >>> circularity("hsemotion", "emostyle")
    ''
    """
    return CIRCULAR_FOR.get((rater, backend), "")


def rater_models(names: tuple[str, ...] | list[str]) -> list[str]:
    """Registry models the raters ``names`` load (the geometric rater loads none).

    >>> rater_models(["geometric", "hsemotion"])
    ['hsemotion_enet_b0_8_va_mtl']
    """
    return [RATER_WEIGHTS[name] for name in names if name in RATER_WEIGHTS]


def rater_versions(names: tuple[str, ...] | list[str]) -> dict[str, str | None]:
    """What identifies each rater's readings beyond its name, for the build cache: the
    geometric rater's calibration (a refit changes its readings) and, for the raters with
    weights, the sha256 the registry recorded for them (``None`` when not known).

    >>> versions = rater_versions(["geometric"])
    >>> len(versions["geometric"])
    64
    """
    from stimgen.weights import model_status

    versions: dict[str, str | None] = {}
    for name in names:
        if name == "geometric":
            from stimgen.raters import geometric

            arrays = (geometric.RELATIVE_COEFFICIENTS, geometric.ABSOLUTE_COEFFICIENTS,
                      geometric.POPULATION_NEUTRAL, geometric.COEFFICIENT_SIGNS)
            versions[name] = hashlib.sha256(b"".join(
                np.ascontiguousarray(a, dtype=np.float64).tobytes() for a in arrays)).hexdigest()
        elif name in RATER_WEIGHTS:
            record = model_status(RATER_WEIGHTS[name]).record
            versions[name] = record.sha256 if record else None
        else:
            versions[name] = None
    return versions
