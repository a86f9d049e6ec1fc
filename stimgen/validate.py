"""Validation of a build's stimuli: the five errors of each stimulus against its target,
its tolerance check, the weak region, and the flags that stimuli.tsv and the report show.
"""
from __future__ import annotations

from dataclasses import astuple
from typing import Any

import numpy as np
import pandas as pd

from stimgen.build_folder import (CLIP_JITTER_COLUMN, CORRECTION_COLUMNS, DIRECTION_FLAG,
                                  DISTANCE_FLAG, DYNAMIC_COLUMNS, EXTRA_COLUMNS, FLICKER_FLAG,
                                  LOW_LEVEL_COLUMNS, MATCH_SSIM_COLUMN, RATERS_DISAGREE_FLAG,
                                  STIMULI_COLUMNS, WEAK_REGION_FLAG, rater_columns)
from stimgen.circumplex import in_angle_interval, va_to_angle
from stimgen.metrics import stimulus_errors
from stimgen.plan import IdentityUnit, Target
from stimgen.settings import CheckSpec, RatingSpec


def stimulus_table(check: CheckSpec, rating: RatingSpec, units: list[IdentityUnit],
                   records: dict[str, dict]) -> pd.DataFrame:
    """The stimuli.tsv table: targets, achieved VA, the five errors and the flags
    (``check`` from :func:`stimgen.plan.check_spec`, ``rating`` the build's raters)."""
    rows = []
    for unit in units:
        for target in unit.targets:
            sid = target.stimulus_id(unit.identity.id)
            rows.append({"identity": unit.identity.id, **_target_columns(target),
                         **records[sid]})
    table = pd.DataFrame(rows)
    errors = stimulus_errors(table["target_valence"], table["target_arousal"],
                             table["achieved_valence"], table["achieved_arousal"])
    for column, values in errors.items():
        table[column] = values
    achieved_angle, achieved_norm = va_to_angle(table["achieved_valence"].to_numpy(),
                                                table["achieved_arousal"].to_numpy())
    table["achieved_angle"] = achieved_angle
    table["achieved_intensity"] = achieved_norm
    start, end = check.weak_region
    angles = table["angle"].to_numpy(dtype=float)
    table["weak_region"] = ~np.isnan(angles) & in_angle_interval(np.nan_to_num(angles), start, end)
    too_far = table["distance_error"] > check.distance
    off_direction = table["direction_error"].fillna(0.0) > check.direction
    table["out_of_tolerance"] = too_far | off_direction
    # The weak region is EmoStyle's: on other backends it is recorded, not a reason to look.
    weak_flag = table["weak_region"] & check.flag_weak_region
    disagree = raters_disagree(table, rating.names, check.distance)
    flicker = (table[CLIP_JITTER_COLUMN].fillna(0.0) > check.flicker_threshold
               if check.flicker_threshold is not None
               else pd.Series(False, index=table.index))
    table["flags"] = [
        ";".join(name for name, on in ((WEAK_REGION_FLAG, w), (DISTANCE_FLAG, d),
                                       (DIRECTION_FLAG, r), (RATERS_DISAGREE_FLAG, g),
                                       (FLICKER_FLAG, f))
                 if on)
        for w, d, r, g, f in zip(weak_flag, too_far, off_direction, disagree, flicker)
    ]
    table["rater"] = rating.primary
    per_rater = [column for name in rating.names
                 for column in astuple(rater_columns(name)) if column in table.columns]
    extras = [c for c in EXTRA_COLUMNS + DYNAMIC_COLUMNS if c in table.columns]
    extras += [c for c in CORRECTION_COLUMNS if c in table.columns]     # validation.correction
    extras += [c for c in LOW_LEVEL_COLUMNS if c in table.columns]      # every build (issue 17)
    extras += [c for c in (MATCH_SSIM_COLUMN,) if c in table.columns]   # matched builds (issue 30)
    return table[list(STIMULI_COLUMNS) + per_rater + extras]


def raters_disagree(table: pd.DataFrame, raters: tuple[str, ...],
                    tolerance: float | None) -> pd.Series:
    """Stimuli where another rater's reading lies farther than ``tolerance`` from the primary's.

    Without a distance tolerance, or with one rater, no stimulus is flagged.
    """
    flagged = pd.Series(False, index=table.index)
    if tolerance is None:
        return flagged
    primary = table[["achieved_valence", "achieved_arousal"]].to_numpy(dtype=float)
    for name in raters[1:]:
        columns = rater_columns(name)
        if columns.valence not in table.columns:
            continue
        other = table[[columns.valence, columns.arousal]].to_numpy(dtype=float)
        flagged |= np.linalg.norm(other - primary, axis=1) > tolerance
    return flagged


def _target_columns(target: Target) -> dict[str, Any]:
    return {"target_kind": target.kind, "emotion": target.emotion,
            "angle": np.nan if target.angle is None else target.angle,
            "intensity": target.intensity, "target_valence": target.valence,
            "target_arousal": target.arousal}
