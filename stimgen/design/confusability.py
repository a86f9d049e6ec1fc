"""Answer choices of a categorization task whose faces are too alike to tell apart.

For schematic faces the expression of every stimulus is known before drawing (its FACS
action-unit intensities), so two choices are compared on those: see ``confusable_choices``.
"""
from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pandas as pd

from stimgen.facs import (AU_NAMES, expression_units,
                                                   prototype_units)
from stimgen.circumplex import UnknownEmotionError, angle_to_va, emotion_by_name
from stimgen.errors import ProtocolProblem

#: Two choices are confusable when, at full intensity, no action unit of one choice's faces
#: differs from the other's by this much. FACS scores intensity on five levels (A trace ...
#: E maximum), about 0.2 apart on our 0-1 scale, and trained coders agree on intensity only
#: to about one level; a difference under 0.25 is within that one-level disagreement.
CONFUSABLE_AU_DIFFERENCE = 0.25


def full_intensity_units(emotion: str, angle: float | None) -> np.ndarray:
    """AU intensities ``[len(AU_NAMES)]`` of a stimulus's expression at intensity 1.

    Basic emotions show their prototype; other targets the blend at their angle; neutral
    faces (no angle) show none.

    >>> float(full_intensity_units("Angry", 99.0)[AU_NAMES.index("AU04")])
    1.0
    """
    try:
        prototype = emotion_by_name(emotion).prototype
    except UnknownEmotionError:
        prototype = None
    if prototype is not None:
        units = prototype_units(prototype, 1.0)
    elif angle is None or (isinstance(angle, float) and math.isnan(angle)):
        units = dict.fromkeys(AU_NAMES, 0.0)
    else:
        units = expression_units(*angle_to_va(float(angle), 1.0))
    return np.array([units[au] for au in AU_NAMES])


def confusable_choices(table: pd.DataFrame) -> list[ProtocolProblem]:
    """Warnings for pairs of answer choices whose schematic faces differ too little.

    Parameters
    ----------
    table : DataFrame
        Main trials of a categorization design, with ``correct_label``, ``emotion`` and
        ``angle`` columns.

    Returns
    -------
    list of ProtocolProblem
        One per confusable pair, naming both choices and the closest pair of emotions.
    """
    faces: dict[str, dict[str, np.ndarray]] = {}
    for (label, emotion), rows in table.groupby(["correct_label", "emotion"], sort=False):
        angle = pd.to_numeric(rows["angle"], errors="coerce").iloc[0]   # "" for points, neutral
        faces.setdefault(label, {})[emotion] = full_intensity_units(
            emotion, None if pd.isna(angle) else float(angle))
    found = []
    for first, second in combinations(faces, 2):
        difference, pair = min(
            (float(np.abs(a - b).max()), (e1, e2))
            for e1, a in faces[first].items() for e2, b in faces[second].items())
        if difference < CONFUSABLE_AU_DIFFERENCE:
            found.append(ProtocolProblem(
                "experiment.task.choices",
                f'choices "{first}" and "{second}" show near-identical schematic faces '
                f"({pair[0]} and {pair[1]}: no action unit differs by "
                f"{CONFUSABLE_AU_DIFFERENCE} or more at full intensity, largest difference "
                f"{difference:.2f}), so participants cannot tell them apart",
                hint="merge the two choices, or pick emotions further apart on the circumplex "
                     "(`stimgen emotions`; the basic emotions show distinct FACS prototypes)"))
    return found
