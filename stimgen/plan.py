"""The plan of a build: which stimuli to make for which identity, with stable ids, and the
settings each stage takes (stimgen/settings.py), resolved here from the protocol.

A protocol expands to one :class:`IdentityUnit` per identity (the unit of work that a
worker or a cluster job runs), each holding the same ordered list of :class:`Target`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from stimgen.circumplex import angle_to_va, va_to_angle, weak_region_flagged
from stimgen.errors import StimgenError
from stimgen.protocol.models import Identity, Protocol, Targets
from stimgen.settings import (BundleSpec, CheckSpec, RatingSpec, RenderSpec, installed_model,
                              never_installed, rating_spec)


@dataclass(frozen=True)
class Target:
    """One requested expression."""

    kind: str                # "named", "angle", "point" or "neutral"
    emotion: str             # display name ("Happy", "At ease"), "a123", a point label, "neutral"
    key: str                 # file-name part: "happy", "at_ease", "a123", label, "neutral"
    angle: float | None      # degrees; None for neutral and zero-norm points
    intensity: float         # target norm r; 0 for neutral
    valence: float
    arousal: float
    expression: str | None = None  # FACS prototype a schematic face shows; None: blend by angle

    def stimulus_id(self, identity_id: str) -> str:
        if self.kind in ("neutral", "point"):
            return f"{identity_id}_{self.key}"
        return f"{identity_id}_{self.key}_i{_intensity_code(self.intensity)}"


@dataclass(frozen=True)
class IdentityUnit:
    """All the stimuli of one identity: the unit of work of a build."""

    identity: Identity
    targets: tuple[Target, ...]

    def stimulus_ids(self) -> list[str]:
        return [t.stimulus_id(self.identity.id) for t in self.targets]


def _intensity_code(intensity: float) -> str:
    percent = intensity * 100.0
    if abs(percent - round(percent)) < 1e-6:
        return f"{int(round(percent)):03d}"
    return f"{int(round(intensity * 1000)):04d}"  # per mille when not a whole percent


def _angle_key(angle: float) -> str:
    return f"a{int(angle):03d}" if float(angle).is_integer() else f"a{angle:07.3f}".replace(".", "p")


def plan_targets(targets: Targets) -> list[Target]:
    """Expand the protocol's targets into an ordered list (emotions, angles, points, neutral)."""
    planned: list[Target] = []
    for name in targets.emotions:
        emotion = targets.named_emotion(name)
        for r in targets.intensities:
            v, a = emotion.target_va(r)
            planned.append(Target("named", emotion.name, emotion.key, emotion.angle, r, v, a,
                                  emotion.prototype))
    for angle in targets.angles:
        for r in targets.intensities:
            v, a = angle_to_va(angle, r)
            key = _angle_key(angle)
            planned.append(Target("angle", key, key, float(angle), r, v, a))
    for point in targets.points:
        angle, r = va_to_angle(point.valence, point.arousal)
        planned.append(Target("point", point.label, point.label, angle if r > 0 else None,
                              r, point.valence, point.arousal))
    if targets.neutral:
        planned.append(Target("neutral", "neutral", "neutral", None, 0.0, 0.0, 0.0))
    return planned


def plan_units(protocol: Protocol) -> list[IdentityUnit]:
    """One unit per identity, in protocol order; checks that stimulus ids are unique."""
    targets = tuple(plan_targets(protocol.targets))
    units = [IdentityUnit(identity, targets) for identity in protocol.identities]
    seen: dict[str, Target] = {}
    for unit in units:
        for target, sid in zip(unit.targets, unit.stimulus_ids()):
            if sid.casefold() in seen:
                raise StimgenError(
                    f'two targets would both be written as "{sid}"',
                    hint="file names keep angles to 0.001° and intensities to 0.001, and a "
                         "point label may not repeat an emotion's key; make the targets distinct")
            seen[sid.casefold()] = target
    return units


def check_spec(protocol: Protocol) -> CheckSpec:
    """What makes a stimulus of ``protocol`` worth a look (stimgen/validate.py), with
    ``flag_weak_region: auto`` decided for its backend."""
    validation = protocol.validation
    dynamic = protocol.output.dynamic
    return CheckSpec(
        distance=validation.tolerance.distance, direction=validation.tolerance.direction,
        weak_region=tuple(validation.weak_region),
        flag_weak_region=weak_region_flagged(validation.flag_weak_region, protocol.backend.name),
        flicker_threshold=dynamic.flicker_threshold if dynamic is not None else None)


def rating_of(protocol: Protocol) -> RatingSpec:
    """The raters of a protocol whose ``auto`` :func:`resolve_raters`
    made concrete (a build's, in its workers too); on any other protocol, the preview that
    asks nothing of this machine (``auto``: the backend's own rater)."""
    return rating_spec(protocol.validation, protocol.backend.name, installed=never_installed)


def render_spec(protocol: Protocol) -> RenderSpec:
    """What drawing the protocol's faces needs (stimgen/render.py), from a protocol whose
    raters are resolved (a build's; any other gets the preview of :func:`rating_of`)."""
    from stimgen.backends import backend_models

    rating = rating_of(protocol)
    kinds = {identity.kind for identity in protocol.identities}
    return RenderSpec(
        backend=protocol.backend, output=protocol.output, rating=rating,
        correction=protocol.validation.correction, seed=protocol.seed,
        base_dir=protocol.base_dir, study=protocol.study.name,
        models=tuple(backend_models(protocol.backend.name, kinds, rating.primary)))


def resolve_raters(protocol: Protocol, *,
                   installed: Callable[[str], bool] = installed_model
                   ) -> tuple[Protocol, RatingSpec]:
    """The protocol with ``validation.rater``, ``validation.also`` and the correction's
    ``rater`` made concrete (:func:`stimgen.settings.rating_spec`), and its raters.

    A build resolves ``auto`` once, here, so that every worker, the cache key, stimuli.tsv
    and the manifest agree on the same raters, whatever is installed where the workers run.
    """
    validation = protocol.validation
    spec = rating_spec(validation, protocol.backend.name, installed=installed)
    update: dict = {}
    if validation.correction is not None:     # closed-loop correction (stimgen/correction.py)
        update["correction"] = validation.correction.model_copy(update={"rater": spec.steering})
    resolved = validation.model_copy(update={"rater": spec.primary,
                                             "also": list(spec.others), **update})
    return protocol.model_copy(update={"validation": resolved}), spec


def reference_targets(protocol: Protocol) -> tuple[Protocol, list[dict]]:
    """The protocol with every ``targets.from_images`` reference turned into a point target
    (:func:`stimgen.raters.references.reference_points`: rated by the primary rater of a
    protocol whose raters :func:`resolve_raters` made concrete), and one record per reference;
    the protocol as it is when it has none."""
    from stimgen.raters.references import reference_points

    paths = protocol.targets.from_images
    if not paths:
        return protocol, []
    points, references = reference_points(paths, [protocol.resolve(path) for path in paths],
                                          protocol.validation.rater, protocol.backend.name)
    targets = protocol.targets.model_copy(
        update={"points": [*protocol.targets.points, *points], "from_images": []})
    return protocol.model_copy(update={"targets": targets}), references


def bundle_spec(protocol: Protocol) -> BundleSpec | None:
    """What planning and writing the protocol's experiment needs; None without one."""
    if protocol.experiment is None:
        return None
    return BundleSpec(study=protocol.study, experiment=protocol.experiment, seed=protocol.seed,
                      dynamic=protocol.output.dynamic)
