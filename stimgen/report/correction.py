"""The report's "Closed-loop correction" section: accuracy before and after correction per
emotion (the weak region on its own row), and which rater's figures the report quotes.

Absent for builds without ``validation.correction``; template: templates/report_correction.html.j2.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from stimgen.build_folder import CORRECTION, BuildFolder

#: Template partial of the section, included by report.html.j2.
TEMPLATE = "report_correction.html.j2"


@dataclass(frozen=True)
class CorrectionRow:
    """One target emotion (or a group of stimuli): mean errors before and after correction."""

    label: str
    n: int
    weak_region: bool           # every stimulus of the row targets the weak region
    rounds: float               # mean correction rounds
    corrected: int              # stimuli whose kept face is not the first one
    steering_before: float      # mean VA distance to target, steering rater
    steering_after: float
    held_out_before: float      # the judge's (NaN without one)
    held_out_after: float


def correction_rows(stimuli: pd.DataFrame, weak_region: tuple[float, float],
                    judged: bool) -> list[CorrectionRow]:
    """One row per target emotion in file order, then the weak region, then all stimuli.

    Neutral targets are left out: they are not corrected.
    """
    corrected = stimuli[stimuli["target_kind"] != "neutral"]
    groups = [(str(label), own) for label, own in corrected.groupby("emotion", sort=False)]
    start, end = weak_region
    groups.append((f"weak region ({start:.0f}°–{end:.0f}°)",
                   corrected[corrected["weak_region"].astype(bool)]))
    groups.append(("all corrected stimuli", corrected))
    rows = []
    for label, own in groups:
        rows.append(CorrectionRow(
            label=label, n=len(own), weak_region=bool(len(own)) and bool(own["weak_region"].all()),
            rounds=_mean(own[CORRECTION.rounds]),
            corrected=int((own[CORRECTION.steering_after] < own[CORRECTION.steering_before]).sum()),
            steering_before=_mean(own[CORRECTION.steering_before]),
            steering_after=_mean(own[CORRECTION.steering_after]),
            held_out_before=_mean(own[CORRECTION.held_out_before]) if judged else np.nan,
            held_out_after=_mean(own["distance_error"]) if judged else np.nan))
    return rows


def correction_context(folder: BuildFolder) -> dict | None:
    """What the section shows, or None for a build without correction."""
    stimuli = folder.stimuli
    if CORRECTION.rounds not in stimuli.columns:
        return None
    settings = (folder.protocol.get("validation") or {}).get("correction") or {}
    steering = str(settings.get("rater") or "")
    judge = str((folder.manifest.get("rater") or {}).get("name") or "")
    judged = bool(judge) and judge != steering and CORRECTION.held_out_before in stimuli.columns
    return {"steering": steering, "judge": judge if judged else "", "settings": settings,
            "rows": correction_rows(stimuli, folder.weak_region, judged)}


def _mean(values: pd.Series) -> float:
    finite = values.to_numpy(dtype=float)
    finite = finite[np.isfinite(finite)]
    return float(finite.mean()) if finite.size else float("nan")
