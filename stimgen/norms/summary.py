"""The figures of norms_summary.json that describe a set of stimuli (rater counts, model
agreement, per-emotion means), recomputed for a subset or for the rows that still apply.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from stimgen.metrics import ccc

__all__ = ["subset_summary"]


def _range(values: pd.Series) -> list[int]:
    return [int(values.min()), int(values.max())] if len(values) else [0, 0]


def _finite(value: float) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), 6)


def _model_agreement(norms: pd.DataFrame) -> list[dict]:
    """CCC of human means with each model rater's ratings and with the targets."""
    rows = []
    for rater, part in norms.groupby("model_rater", sort=True):
        rows.append({"rater": str(rater) or "model",
                     "ccc_valence": _finite(ccc(part["valence_mean"], part["model_valence"])),
                     "ccc_arousal": _finite(ccc(part["arousal_mean"], part["model_arousal"])),
                     "mean_distance": _finite(part["distance_to_model"].mean())})
    rows.sort(key=_agreement_order)
    targets = {"rater": "targets",
               "ccc_valence": _finite(ccc(norms["target_valence"], norms["valence_mean"])),
               "ccc_arousal": _finite(ccc(norms["target_arousal"], norms["arousal_mean"])),
               "mean_distance": _finite(norms["distance_to_target"].mean())}
    return rows + [targets]


def _agreement_order(row: dict) -> float:
    """Best-agreeing rater first: the mean of its defined CCCs, descending."""
    defined = [row[k] for k in ("ccc_valence", "ccc_arousal") if row[k] is not None]
    return -sum(defined) / len(defined) if defined else math.inf


def _emotion_rows(norms: pd.DataFrame, hu: dict[str, float] | None) -> list[dict]:
    """``by_emotion`` of norms_summary.json: means over each emotion's stimuli; hit rate and
    Hu (``hu``: emotion -> Hu pooled over its trials) when labels were collected."""
    rows = []
    for emotion, part in norms.groupby("emotion", sort=False):
        row = {"emotion": str(emotion), "stimuli": int(len(part)),
               "valence_mean": _finite(part["valence_mean"].mean()),
               "arousal_mean": _finite(part["arousal_mean"].mean()),
               "target_valence": _finite(part["target_valence"].mean()),
               "target_arousal": _finite(part["target_arousal"].mean()),
               "distance_to_target": _finite(part["distance_to_target"].mean()),
               "distance_to_model": _finite(part["distance_to_model"].mean())}
        if hu is not None:
            row["hit_rate"] = _finite(part["hit_rate"].mean())
            row["unbiased_hit_rate"] = _finite(hu.get(str(emotion), math.nan))
        rows.append(row)
    return rows


def subset_summary(summary: dict, norms: pd.DataFrame, n_stimuli: int) -> dict:
    """norms_summary.json of a subset build (`stimgen select`) from the source build's.

    The norming study stays what it was: participants, exclusions, data files, warnings,
    reliability and each emotion's Hu (pooled over the study's trials, all stimuli) are
    the source's. What describes the stimuli is recomputed over the subset's rows of
    norms.tsv (``norms``, unchanged per stimulus): counts, model agreement and the
    per-emotion means. ``selected_from`` keeps the source's stimulus counts.

    Examples
    --------
    >>> rows = pd.DataFrame({"emotion": ["Happy"], "n_raters": [4], "valence_mean": [0.5],
    ...     "arousal_mean": [0.1], "target_valence": [0.5], "target_arousal": [0.07],
    ...     "distance_to_target": [0.03], "distance_to_model": [0.1], "model_rater": ["geometric"],
    ...     "model_valence": [0.4], "model_arousal": [0.1]})
    >>> subset_summary({"stimuli_rated": 6, "stimuli_in_build": 6}, rows, 1)["selected_from"]
    {'stimuli_rated': 6, 'stimuli_in_build': 6}
    """
    labels = "hit_rate" in norms.columns
    pooled = {str(row.get("emotion")): row.get("unbiased_hit_rate")
              for row in summary.get("by_emotion", [])}
    hu = {e: (math.nan if v is None else float(v)) for e, v in pooled.items()} if labels else None
    return {
        **summary,
        "stimuli_rated": int(len(norms)), "stimuli_in_build": int(n_stimuli),
        "raters_per_stimulus": _range(norms["n_raters"]),
        "model_agreement": _model_agreement(norms),
        "by_emotion": _emotion_rows(norms, hu),
        "selected_from": {"stimuli_rated": summary.get("stimuli_rated"),
                          "stimuli_in_build": summary.get("stimuli_in_build")},
    }
