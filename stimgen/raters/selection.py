"""Which raters a build uses: the primary rater (tolerance and flags) and the others reported
beside it, with ``auto`` resolved from what is installed, and what each rater's numbers mean.

:func:`stimgen.plan.resolve_raters` turns the protocol's ``validation.rater``/``validation.also``
into concrete names once, at the start of a build, by the one rule of
:func:`stimgen.settings.rating_spec`; :func:`circularity` says, next to every number, whether
the rater is independent of the generator it rates.
"""
from __future__ import annotations

import hashlib
import numpy as np

from stimgen.settings import (  # noqa: F401  (the rule lives in stimgen/settings.py)
    CIRCULAR_FOR, INDEPENDENT_RATER, RATER_WEIGHTS, RatingSpec, choose_raters, circularity,
    installed_model, judge_raters, rating_spec)


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
