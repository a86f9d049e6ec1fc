"""Which raters a build uses: the primary rater (tolerance and flags) and the others reported
beside it, with ``auto`` resolved from what is installed, and what each rater's numbers mean.

:func:`resolve_raters` turns the protocol's ``validation.rater``/``validation.also`` into
concrete names once, at the start of a build, by the one rule of
:func:`stimgen.settings.rating_spec`; :func:`circularity` says, next to every number, whether
the rater is independent of the generator it rates.
"""
from __future__ import annotations

import hashlib
from typing import Callable

import numpy as np

from stimgen.protocol.models import Protocol
from stimgen.settings import (  # noqa: F401  (the rule lives in stimgen/settings.py)
    CIRCULAR_FOR, INDEPENDENT_RATER, RATER_WEIGHTS, RatingSpec, choose_raters, circularity,
    installed_model, judge_raters, rating_spec)


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
