"""The report's "Do the raters agree?" section: each rater's accuracy against the targets,
the distance and concordance between the primary rater and every other one, and the
expression categories a rater with a categorical head saw, per target emotion.

Pure functions from stimuli.tsv and the manifest's rater list to plain rows.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from stimgen.build_folder import RATERS_DISAGREE_FLAG, rater_columns
from stimgen.circumplex import basic_emotion_angles, emotion_label_key, nearest_basic_emotion
from stimgen.metrics import ccc


@dataclass(frozen=True)
class RaterSummary:
    """One rater of the build as the section introduces it."""

    name: str
    primary: bool
    description: str
    circularity: str            # why its numbers are circular here; "" when independent
    weights_sha256: str


@dataclass(frozen=True)
class AgreementRow:
    """One target emotion (or all stimuli): accuracy per rater and agreement per pair."""

    label: str
    n: int
    distance: dict              # rater -> mean VA distance to the target
    between: dict               # other rater -> mean VA distance from the primary rater
    ccc_valence: dict           # other rater -> CCC of its valence with the primary's
    ccc_arousal: dict           # other rater -> CCC of its arousal with the primary's


@dataclass(frozen=True)
class CategoryTable:
    """What a categorical rater saw: per target emotion, the share of each predicted category,
    and the category a reader would expect there (``expected_category``)."""

    rater: str
    categories: list[str]
    rows: list[tuple[str, int, dict, str]]   # (emotion, n, category -> share in [0, 1],
                                              #  nearest basic category)


def build_raters(manifest: dict) -> list[RaterSummary]:
    """The raters the manifest lists, primary first (one entry for builds with a single rater)."""
    entries = manifest.get("raters") or ([manifest["rater"]] if manifest.get("rater") else [])
    summaries = []
    for index, entry in enumerate(entries):
        summaries.append(RaterSummary(
            name=str(entry.get("name") or ""), primary=bool(entry.get("primary", index == 0)),
            description=str(entry.get("description") or ""),
            circularity=str(entry.get("circularity") or ""),
            weights_sha256=str(entry.get("weights_sha256") or "")))
    return summaries


def rated_by(stimuli: pd.DataFrame, rater: str, primary: bool) -> np.ndarray:
    """[N, 2] the valence and arousal ``rater`` gave each stimulus (NaN where it did not rate)."""
    if primary:
        return stimuli[["achieved_valence", "achieved_arousal"]].to_numpy(dtype=float)
    columns = rater_columns(rater)
    if columns.valence not in stimuli.columns:
        return np.full((len(stimuli), 2), np.nan)
    return stimuli[[columns.valence, columns.arousal]].to_numpy(dtype=float)


def agreement_rows(stimuli: pd.DataFrame, raters: list[RaterSummary]) -> list[AgreementRow]:
    """One row per target emotion in file order, then one over all stimuli.

    CCC needs variation: an emotion's few stimuli often barely vary, so its CCC is noisy;
    the row over all stimuli is the figure to quote.
    """
    groups = [(str(label), own) for label, own in stimuli.groupby("emotion", sort=False)]
    groups.append(("all stimuli", stimuli))
    rows = []
    for label, own in groups:
        target = own[["target_valence", "target_arousal"]].to_numpy(dtype=float)
        readings = {r.name: rated_by(own, r.name, r.primary) for r in raters}
        primary = readings[raters[0].name]
        between, ccc_v, ccc_a = {}, {}, {}
        for other in raters[1:]:
            values = readings[other.name]
            between[other.name] = _mean(np.linalg.norm(values - primary, axis=1))
            ccc_v[other.name] = ccc(primary[:, 0], values[:, 0])
            ccc_a[other.name] = ccc(primary[:, 1], values[:, 1])
        rows.append(AgreementRow(
            label=label, n=len(own),
            distance={name: _mean(np.linalg.norm(values - target, axis=1))
                      for name, values in readings.items()},
            between=between, ccc_valence=ccc_v, ccc_arousal=ccc_a))
    return rows


def category_tables(stimuli: pd.DataFrame, raters: list[RaterSummary]) -> list[CategoryTable]:
    """Per rater with categories (``category_<rater>``): shares of each category per emotion."""
    tables = []
    for rater in raters:
        column = rater_columns(rater.name).category
        if column not in stimuli.columns:
            continue
        seen = stimuli[column].astype(str)
        categories = sorted(set(seen) - {""})
        rows = []
        for label, own in stimuli.groupby("emotion", sort=False):
            counts = seen.loc[own.index].value_counts()
            rows.append((str(label), len(own),
                         {c: float(counts.get(c, 0)) / len(own) for c in categories},
                         expected_category(own)))
        tables.append(CategoryTable(rater.name, categories, rows))
    return tables


def expected_category(own: pd.DataFrame) -> str:
    """The basic category nearest one target emotion's stimuli: the basic emotion the name
    means ("Afraid", "fearful" -> fear; ``circumplex.emotion_label_key``), else the basic
    emotion nearest the direction of their mean target (``circumplex.nearest_basic_emotion``;
    "neutral" at the origin)."""
    key = emotion_label_key(str(own["emotion"].iloc[0]))
    if key in basic_emotion_angles():
        return key
    target = own[["target_valence", "target_arousal"]].to_numpy(dtype=float).mean(axis=0)
    return nearest_basic_emotion(float(target[0]), float(target[1]))


def disagreeing(stimuli: pd.DataFrame) -> int:
    """How many stimuli carry the ``raters_disagree`` flag."""
    return int(stimuli["flag_list"].map(lambda flags: RATERS_DISAGREE_FLAG in flags).sum())


def agreement_section(stimuli: pd.DataFrame, manifest: dict) -> dict | None:
    """Everything the section shows, or None for a build with a single rater."""
    raters = build_raters(manifest)
    if len(raters) < 2:
        return None
    return {"raters": raters, "rows": agreement_rows(stimuli, raters),
            "others": [r.name for r in raters[1:]],
            "categories": category_tables(stimuli, raters),
            "disagreeing": disagreeing(stimuli), "flag": RATERS_DISAGREE_FLAG}


def _mean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")
