"""The report's tables: per-emotion and per-intensity metrics beside the published EmoStyle
figures, the flagged stimuli with their reasons, the counts and the counterbalancing summary.

Pure functions from the build folder's tables to plain rows; the template only lays them out.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from stimgen.circumplex import WEAK_REGION_DEFAULT, read_anchor_table
from stimgen.metrics import overall
from stimgen.build_folder import (DIRECTION_FLAG, DISTANCE_FLAG, METRIC_COLUMNS,
                                  RATERS_DISAGREE_FLAG, WEAK_REGION_FLAG, as_bool, rater_columns)

#: (metric stem, heading, decimals) of the mean ± SD pairs, in the published table's order.
ERROR_METRICS = (
    ("dir", "Direction (°)", 1),
    ("mag", "Magnitude", 2),
    ("val", "Valence", 2),
    ("aro", "Arousal", 2),
    ("dist", "Distance", 2),
)
#: (heading, ((column, dimension heading), ...), decimals) of the agreement figures, which have
#: no published counterpart; each heading spans its valence (V) and arousal (A) columns.
AGREEMENT_METRICS = (
    ("CCC", (("ccc_valence", "V"), ("ccc_arousal", "A")), 2),
    ("SAGR", (("sagr_valence", "V"), ("sagr_arousal", "A")), 2),
    ("RMSE", (("rmse_valence", "V"), ("rmse_arousal", "A")), 2),
)
#: Published angles are whole degrees; ours match one when within this many degrees.
ANCHOR_ANGLE_TOLERANCE = 0.5
#: Columns of experiment/design.csv that name the counterbalancing group, in order of preference.
GROUP_COLUMNS = ("group", "list")
#: Headings of the counterbalancing table's columns.
DESIGN_HEADINGS = {"trials": "trials", "practice": "practice trials", "catch": "catch trials",
                   "blocks": "blocks", "stimuli": "stimuli", "identities": "identities",
                   "emotions": "emotions", "per_emotion": "trials per emotion (min–max)",
                   "block_order": "block order"}
def mae_sd_columns(stem: str) -> tuple[str, str]:
    """The (MAE, SD) column names of a metric stem: "dir" -> ("dir_mae_deg", "dir_sd_deg")."""
    unit = "_deg" if stem == "dir" else ""
    return f"{stem}_mae{unit}", f"{stem}_sd{unit}"


@dataclass(frozen=True)
class MetricsRow:
    """One row of a metrics table: its group, its figures and the published ones if any."""

    label: str                     # emotion display name, "a123", a point label or an intensity
    angle: float                   # degrees; NaN for neutral and for intensity rows
    n: int                         # stimuli in the group
    values: dict                   # metric column -> float (NaN when undefined)
    weak_region: bool = False      # the group's angle lies in the weak region
    published: dict | None = None  # anchor column -> float, for angles EmoStyle evaluated
    published_name: str = ""       # the published emotion name at that angle


def published_anchors() -> pd.DataFrame:
    """The published EmoStyle per-emotion MAE ± SD table (28 emotions x 4 intensities)."""
    table = pd.DataFrame(read_anchor_table())
    numeric = [c for c in table.columns if c != "emotion"]
    table[numeric] = table[numeric].apply(pd.to_numeric)
    return table


#: The intensities of the published evaluation; its figures average over all four.
PUBLISHED_INTENSITIES = (0.25, 0.5, 0.75, 1.0)


def published_comparable(metrics_by_intensity: pd.DataFrame) -> bool:
    """Whether a build's intensities are those the published per-emotion figures average over.

    Magnitude and distance errors grow with intensity, so figures over other intensities
    are not comparable with the published table, whatever the angles.
    """
    used = sorted(float(i) for i in metrics_by_intensity["intensity"] if float(i) > 0.0)
    return len(used) == len(PUBLISHED_INTENSITIES) and all(
        math.isclose(a, b) for a, b in zip(used, PUBLISHED_INTENSITIES))


def match_anchor(angle: float, anchors: pd.DataFrame) -> pd.Series | None:
    """The published row evaluated at ``angle`` (within half a degree), or None."""
    if not math.isfinite(angle):
        return None
    difference = (anchors["angle_deg"] - angle + 180.0) % 360.0 - 180.0
    close = anchors[difference.abs() <= ANCHOR_ANGLE_TOLERANCE]
    return None if close.empty else close.iloc[0]


def emotion_rows(metrics_by_emotion: pd.DataFrame, anchors: pd.DataFrame) -> list[MetricsRow]:
    """Rows of metrics_by_emotion.csv in file order, each with its published counterpart."""
    rows = []
    for record in metrics_by_emotion.to_dict("records"):
        anchor = match_anchor(float(record["angle"]), anchors)
        rows.append(MetricsRow(
            label=str(record["emotion"]),
            angle=float(record["angle"]),
            n=int(record["n"]),
            values={c: float(record[c]) for c in METRIC_COLUMNS},
            weak_region=bool(record["weak_region"]),
            published=None if anchor is None else {c: float(anchor[c]) for c in anchors.columns
                                                   if c not in ("emotion", "angle_deg")},
            published_name="" if anchor is None else str(anchor["emotion"]),
        ))
    return rows


def intensity_rows(metrics_by_intensity: pd.DataFrame) -> list[MetricsRow]:
    """Rows of metrics_by_intensity.csv in file order."""
    return [
        MetricsRow(label=format_number(float(record["intensity"]), 2), angle=math.nan,
                   n=int(record["n"]), values={c: float(record[c]) for c in METRIC_COLUMNS})
        for record in metrics_by_intensity.to_dict("records")
    ]


def angle_label(emotion: str, angle: float) -> str:
    """Heading of a target-angle group: "Happy 8°" for a named emotion, "123°" for target a123;
    the angle rounded to whole degrees (a basic emotion's is the direction of its published
    point, 32.1957° for Happiness).

    >>> angle_label("Happiness", 32.1957), angle_label("a123", 123.0)
    ('Happiness 32°', '123°')
    """
    shown = f"{angle:.0f}°"
    return shown if emotion == f"a{round(angle):03d}" else f"{emotion} {shown}"


def overall_row(stimuli: pd.DataFrame) -> MetricsRow:
    """The figures over every stimulus; its CCC is the one to quote (see docs/metrics.md)."""
    figures = overall(stimuli)
    return MetricsRow(label="all", angle=math.nan, n=int(figures["n"]),
                      values={c: float(figures[c]) for c in METRIC_COLUMNS})


def format_number(value, decimals: int) -> str:
    """``value`` with ``decimals`` decimals, or an en dash when it is missing or not finite."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return "–"
    if not math.isfinite(value):
        return "–"
    text = f"{value:.{decimals}f}"
    return "0" + text[2:] if text.startswith("-0") and float(text) == 0 else text


def format_mean_sd(mean, sd, decimals: int) -> str:
    """"mean ± SD" with narrow no-break spaces (the pair never splits across lines, and the wide
    per-emotion table stays narrow), or a single en dash when the mean is undefined.

    >>> format_mean_sd(0.1234, 0.05, 2) == "0.12\u202f±\u202f0.05"
    True
    >>> format_mean_sd(float("nan"), float("nan"), 1)
    '–'
    """
    text = format_number(mean, decimals)
    return text if text == "–" else f"{text}\u202f±\u202f{format_number(sd, decimals)}"


def flag_reasons(stimulus: dict, *, tolerance: dict, weak_region: tuple[float, float],
                 others: tuple[str, ...] = ()) -> list[str]:
    """Plain-language reasons a stimulus was flagged, one per entry of its ``flags``;
    ``others`` are the build's raters besides the primary one."""
    start, end = weak_region
    reasons = []
    for flag in stimulus["flag_list"]:
        if flag == WEAK_REGION_FLAG:
            published = (start, end) == WEAK_REGION_DEFAULT
            reasons.append(f"target in the weak region {start:g}°–{end:g}°"
                           + (" (published EmoStyle misses by 0.4–0.7 there)" if published
                              else ""))
        elif flag == DISTANCE_FLAG:
            limit = tolerance.get("distance")
            reasons.append(f"VA distance {format_number(stimulus['distance_error'], 2)}"
                           + (f" exceeds the tolerance {limit:g}" if limit is not None
                              else " exceeds the distance tolerance"))
        elif flag == DIRECTION_FLAG:
            limit = tolerance.get("direction")
            reasons.append(f"direction error {format_number(stimulus['direction_error'], 1)}°"
                           + (f" exceeds the tolerance {limit:g}°" if limit is not None
                              else " exceeds the direction tolerance"))
        elif flag == RATERS_DISAGREE_FLAG:
            reasons.append("raters disagree: " + disagreement_text(stimulus, tolerance, others))
        else:
            reasons.append(flag.replace("_", " "))
    if stimulus["out_of_tolerance"] and not {DISTANCE_FLAG, DIRECTION_FLAG} & set(
            stimulus["flag_list"]):
        reasons.append("out of tolerance")
    return reasons


def disagreement_text(stimulus: dict, tolerance: dict, others: tuple[str, ...]) -> str:
    """Which of the ``others`` raters read a stimulus farther from the primary rater's reading
    than the distance tolerance."""
    primary = (stimulus["achieved_valence"], stimulus["achieved_arousal"])
    parts = []
    for name in others:
        columns = rater_columns(name)
        other = (stimulus.get(columns.valence, math.nan), stimulus.get(columns.arousal, math.nan))
        distance = math.dist(primary, other) if all(map(math.isfinite, (*primary, *other))) \
            else math.nan
        if distance > (tolerance.get("distance") or 0.0):
            parts.append(f"{name} reads V {format_number(other[0], 2)}, A "
                         f"{format_number(other[1], 2)}, {format_number(distance, 2)} away")
    limit = tolerance.get("distance")
    return ("; ".join(parts) or "another rater reads it differently") + (
        f" (tolerance {limit:g})" if limit is not None else "")


def flagged_stimuli(stimuli: pd.DataFrame, *, tolerance: dict,
                    weak_region: tuple[float, float], others: tuple[str, ...] = ()) -> list[dict]:
    """Stimuli with a flag or out of tolerance, worst distance first, each with its reasons."""
    flagged = stimuli[(stimuli["flag_list"].map(len) > 0) | stimuli["out_of_tolerance"]]
    flagged = flagged.sort_values(["out_of_tolerance", "distance_error", "stimulus_id"],
                                  ascending=[False, False, True], na_position="last")
    return [dict(record, reasons=flag_reasons(record, tolerance=tolerance, weak_region=weak_region,
                                              others=others))
            for record in flagged.to_dict("records")]


def stimulus_counts(stimuli: pd.DataFrame, manifest: dict) -> dict:
    """Counts of stimuli, passed, flagged, out of tolerance and in the weak region.

    The manifest's counts are the build's verdict and win; those it lacks are counted
    from stimuli.tsv (passed = no flag at all).
    """
    flagged = stimuli["flag_list"].map(len) > 0
    counted = {
        "stimuli": len(stimuli),
        "passed": int((~flagged & ~stimuli["out_of_tolerance"]).sum()),
        "flagged": int(flagged.sum()),
        "out_of_tolerance": int(stimuli["out_of_tolerance"].sum()),
        "weak_region": int(stimuli["weak_region"].sum()),
    }
    given = manifest.get("counts") or {}
    return {key: int(given.get(key, value)) for key, value in counted.items()}


def design_summary(design: pd.DataFrame | None) -> dict | None:
    """What experiment/design.csv counterbalances, per group: trials, practice trials, blocks,
    distinct stimuli, identities and emotions, how evenly the emotions are spread and, when a
    group has more than one block, the order of its blocks.

    Returns None without an experiment bundle. Figures whose column the design lacks are left out.
    """
    if design is None:
        return None
    group_column = next((c for c in GROUP_COLUMNS if c in design.columns), None)
    stimulus_column = next((c for c in ("stim_id", "stimulus_id") if c in design.columns), None)
    groups = design.groupby(group_column, sort=True) if group_column else [("all", design)]
    counted = {"stimuli": stimulus_column, "identities": "identity", "emotions": "emotion"}
    counted = {name: column for name, column in counted.items() if column in design.columns}
    entries = []
    for name, trials in groups:
        practice = (trials["is_practice"].map(as_bool).astype(bool) if "is_practice" in trials
                    else None)
        main = trials[~practice] if practice is not None else trials
        entry = {"group": str(name), "trials": len(main),
                 "practice": int(practice.sum()) if practice is not None else None,
                 "catch": (int(main["is_catch"].map(as_bool).sum()) if "is_catch" in main
                           else None),
                 "blocks": int(main["block"].nunique()) if "block" in main else None}
        entry.update({n: int(main[c].nunique()) for n, c in counted.items()})
        if "emotion" in main and len(main):
            per_emotion = main["emotion"].value_counts()
            entry["per_emotion"] = f"{int(per_emotion.min())}–{int(per_emotion.max())}"
        entry["block_order"] = block_order(main)
        entries.append(entry)
    if not any(len(entry["block_order"] or ()) > 1 for entry in entries):
        for entry in entries:     # one block per group: there is no order to show
            entry["block_order"] = None
    shown = [key for key in ("trials", "practice", "catch", "blocks", *counted, "per_emotion",
                             "block_order")
             if any(entry.get(key) is not None for entry in entries)]
    return {"rows": len(design), "group_column": group_column or "design", "groups": entries,
            "columns": shown}


def block_order(trials: pd.DataFrame) -> list[str] | None:
    """The blocks of one group's trials in the order they run (``block`` numbers them so),
    each by its ``block_label``: an emotion as it stands ("Happy"), a number with the factor
    it is a level of ("intensity 0.5"), "block 2" for a block without a label. None when the
    design has no ``block`` column."""
    if "block" not in trials:
        return None
    labels = trials["block_label"] if "block_label" in trials else pd.Series("", trials.index)
    numbers = pd.to_numeric(trials["block"], errors="coerce")
    order = []
    for number in sorted(numbers.dropna().unique()):
        rows = trials[numbers == number]
        label = next((str(text).strip() for text in labels[numbers == number]
                      if str(text).strip()), "")
        order.append(_level_name(label, rows) if label else f"block {number:g}")
    return order


#: Numeric columns of design.csv a block may be a level of, named with the level.
NUMERIC_BLOCK_FACTORS = ("intensity", "angle")


def _level_name(label: str, rows: pd.DataFrame) -> str:
    """``label`` with the factor it is a level of when it is a bare number: "intensity 0.5"."""
    try:
        level = float(label)
    except ValueError:
        return label
    for column in NUMERIC_BLOCK_FACTORS:
        values = pd.to_numeric(rows[column], errors="coerce") if column in rows else None
        if values is not None and values.notna().all() and bool((values == level).all()):
            return f"{column} {label}"
    return label

