"""The report's figures as byte-stable SVG: the circumplex of targets and achieved ratings,
the distance-error heatmap over angle x intensity, and identity/quality strips if recorded.

Figures are drawn on explicit Agg canvases (no pyplot state) with colour-blind-safe colours:
cividis for intensity, viridis for error, Okabe-Ito for categories.
"""
from __future__ import annotations

import io
import math
from contextlib import contextmanager
from dataclasses import dataclass

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Circle, Wedge

from stimgen.circumplex import (WEAK_REGION_BACKEND, angle_to_va, basic_emotions, in_angle_interval,
                                named_emotions)
from stimgen.build_folder import IDENTITY_SIMILARITY_COLUMN, QUALITY_PREFIX
from stimgen.report.tables import angle_label
from stimgen.wording import quantity

#: Okabe & Ito (2008) colours, distinguishable under the common colour-vision deficiencies.
OKABE_ITO = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#000000")
WEAK_REGION_COLOUR = "#D55E00"
INTENSITY_COLOURMAP = "cividis"
ERROR_COLOURMAP = "viridis"

#: rcParams for every report figure: fixed SVG ids (byte-stable rebuilds), real <text> (small,
#: searchable) and no mathtext, so a "$" in an identity id is printed, not parsed.
FIGURE_STYLE = {
    "svg.hashsalt": "stimgen-report",
    "svg.fonttype": "none",
    "text.parse_math": False,
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.titlesize": 10,
}
#: Named emotions on the rim are spread to at least this many degrees apart.
LABEL_MIN_SEPARATION_DEG = 8.0


@dataclass(frozen=True)
class ReportFigure:
    """One figure of the report: the SVG text and what a screen reader says about it."""

    name: str        # file stem under report_assets/figures/
    svg: str         # the SVG document
    alt: str         # alt text: what the figure shows, with its key numbers
    caption: str     # one sentence under the figure on how to read it


@contextmanager
def figure_style():
    """Apply :data:`FIGURE_STYLE` while a figure is built and saved."""
    with matplotlib.rc_context(FIGURE_STYLE):
        yield


def render_svg(figure: Figure) -> str:
    """The SVG text of ``figure``, identical for identical inputs (no date, fixed ids)."""
    FigureCanvasAgg(figure)
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None}, bbox_inches="tight")
    return buffer.getvalue()


def spread_label_angles(angles, min_separation: float = LABEL_MIN_SEPARATION_DEG,
                        iterations: int = 2000) -> np.ndarray:
    """Angles moved apart so neighbours on the circle are at least ``min_separation`` apart.

    Labels keep their circular order and move as little as the crowding needs; the result
    is in the same order as ``angles``.
    """
    angles = np.asarray(angles, dtype=float)
    if len(angles) * min_separation >= 360.0:
        raise ValueError(f"{len(angles)} labels cannot be {min_separation}° apart on a circle")
    order = np.argsort(angles, kind="stable")
    spread = angles[order].copy()
    for _ in range(iterations):
        gaps = np.diff(np.append(spread, spread[0] + 360.0))
        push = np.clip(min_separation - gaps, 0.0, None) / 2.0
        if not push.any():
            break
        spread += np.roll(push, 1) - push    # gap i separates label i and label i+1
    result = np.empty_like(spread)
    result[order] = spread
    return result


def circumplex_figure(stimuli: pd.DataFrame,
                      weak_region: tuple[float, float] | None) -> ReportFigure:
    """Every target and its achieved rating, joined by an error vector coloured by intensity.

    ``weak_region`` is shaded when given (None: the build does not flag it).
    """
    rated = stimuli.dropna(subset=["achieved_valence", "achieved_arousal"])
    with figure_style():
        figure = Figure(figsize=(7.6, 6.6))
        axes = figure.add_subplot()
        _draw_circumplex_frame(axes, weak_region)
        norm, colourmap = Normalize(0.0, 1.0), matplotlib.colormaps[INTENSITY_COLOURMAP]
        colours = colourmap(norm(rated["intensity"].fillna(0.0).to_numpy()))
        targets = rated[["target_valence", "target_arousal"]].to_numpy()
        achieved = rated[["achieved_valence", "achieved_arousal"]].to_numpy()
        axes.add_collection(LineCollection(np.stack([targets, achieved], axis=1), colors=colours,
                                           linewidths=0.8, alpha=0.85, zorder=3))
        axes.scatter(targets[:, 0], targets[:, 1], s=16, facecolors="none", edgecolors=colours,
                     linewidths=0.8, zorder=4)
        axes.scatter(achieved[:, 0], achieved[:, 1], s=6, c=colours, linewidths=0, zorder=5)
        # the basic emotions sit off the rim's 28 labelled terms: name them just inside their
        # outer target, the text running toward the centre, clear of the rim's labels
        for name, (v, a) in basic_target_labels(rated).items():
            axes.text(0.9 * v, 0.9 * a, name, fontsize=7, fontstyle="italic", color="#1f4e79",
                      ha="right" if v >= 0 else "left", va="center", zorder=6,
                      bbox={"facecolor": "white", "alpha": 0.7, "edgecolor": "none",
                            "pad": 0.8})
        figure.colorbar(ScalarMappable(norm, colourmap), ax=axes, shrink=0.55, pad=0.02,
                        label="target intensity")
        axes.legend(handles=[
            Line2D([], [], marker="o", markerfacecolor="none", color="#444444", linestyle="none",
                   label="target"),
            Line2D([], [], marker="o", markersize=3, color="#444444", linestyle="none",
                   label="achieved (rater)"),
            Line2D([], [], color="#444444", linewidth=0.8, label="error vector"),
        ], loc="lower left", fontsize=8, frameon=False, bbox_to_anchor=(-0.02, -0.04))
        svg = render_svg(figure)
    distance = rated["distance_error"].dropna()
    alt = (f"Valence-arousal circumplex with {quantity(len(rated), 'target')} (rings) and the "
           f"rater's achieved valence and arousal (dots), each pair joined by an error vector "
           f"coloured by target intensity. "
           + (f"The weak region {weak_region[0]:g}° to {weak_region[1]:g}° is shaded. "
              if weak_region else "")
           + f"Median distance error {_median_text(distance)}.")
    caption = ("Rings are targets, dots are what the rater saw; the longer the line, the larger "
               "the miss. Lines that bend towards the centre mean the expression came out weaker "
               "than asked; lines along the rim mean a different emotion.")
    return ReportFigure("circumplex", svg, alt, caption)


def basic_target_labels(stimuli: pd.DataFrame) -> dict[str, tuple[float, float]]:
    """Label -> (valence, arousal) of the outermost target of each named basic emotion among
    ``stimuli`` (columns emotion, intensity, target_valence, target_arousal): "Anger 131°".

    >>> rows = pd.DataFrame({"emotion": ["Anger", "Anger", "Happy"], "intensity": [0.5, 1, 1],
    ...                      "target_valence": [-0.33, -0.65, 0.99],
    ...                      "target_arousal": [0.38, 0.76, 0.14]})
    >>> basic_target_labels(rows)
    {'Anger 131°': (-0.65, 0.76)}
    """
    basic = {emotion.name: emotion for emotion in basic_emotions()}
    labels = {}
    for name, rows in stimuli[stimuli["emotion"].isin(list(basic))].groupby("emotion", sort=True):
        outer = rows.loc[rows["intensity"].idxmax()]
        labels[f"{name} {basic[name].angle:.0f}°"] = (float(outer["target_valence"]),
                                                      float(outer["target_arousal"]))
    return labels


def _draw_circumplex_frame(axes, weak_region: tuple[float, float] | None) -> None:
    """Unit circle, intensity rings, axes, shaded weak region (if any) and the 28 named emotions."""
    axes.set_aspect("equal")
    axes.set_xlim(-1.5, 1.5)
    axes.set_ylim(-1.5, 1.5)
    axes.axis("off")
    for radius in (0.25, 0.5, 0.75):
        axes.add_patch(Circle((0, 0), radius, fill=False, color="#cccccc", linewidth=0.5,
                              linestyle=":"))
    axes.add_patch(Circle((0, 0), 1.0, fill=False, color="#888888", linewidth=0.8))
    axes.plot([-1, 1], [0, 0], color="#bbbbbb", linewidth=0.5)
    axes.plot([0, 0], [-1, 1], color="#bbbbbb", linewidth=0.5)
    axes.text(0.92, -0.03, "valence", ha="right", va="top", color="#666666", fontsize=8)
    axes.text(0.03, 0.92, "arousal", ha="left", va="top", color="#666666", fontsize=8)
    if weak_region is not None:
        start, end = weak_region
        sweep = (end - start) % 360.0 or 360.0
        axes.add_patch(Wedge((0, 0), 1.0, start, start + sweep, facecolor=WEAK_REGION_COLOUR,
                             alpha=0.12, edgecolor=WEAK_REGION_COLOUR, hatch="///",
                             linewidth=0.6, zorder=1))
        label_x, label_y = angle_to_va(start + sweep / 2.0, 0.55)
        axes.text(label_x, label_y, f"weak region\n{start:g}°–{end:g}°", ha="center",
                  va="center", color=WEAK_REGION_COLOUR, fontsize=8, fontweight="bold",
                  zorder=6,
                  bbox={"facecolor": "white", "alpha": 0.75, "edgecolor": "none", "pad": 1.5})
    emotions = named_emotions()
    rim = np.array([emotion.angle for emotion in emotions])
    spread = spread_label_angles(rim)
    for emotion, label_angle in zip(emotions, spread):
        weak = weak_region is not None and bool(in_angle_interval(emotion.angle, *weak_region))
        colour = WEAK_REGION_COLOUR if weak else "#333333"
        x0, y0 = angle_to_va(emotion.angle, 0.97)
        x1, y1 = angle_to_va(emotion.angle, 1.03)
        x2, y2 = angle_to_va(label_angle, 1.09)
        axes.plot([x0, x1, x2], [y0, y1, y2], color=colour, linewidth=0.6)
        x3, y3 = angle_to_va(label_angle, 1.11)
        right_side = math.cos(math.radians(label_angle)) >= 0.0
        # Radial labels: neighbours 7 degrees apart never overlap, whatever their length.
        axes.text(x3, y3, f"{emotion.name} {emotion.angle:g}°", fontsize=7, color=colour,
                  rotation=label_angle if right_side else label_angle - 180.0,
                  rotation_mode="anchor", ha="left" if right_side else "right", va="center")


def distance_heatmap_figure(stimuli: pd.DataFrame, weak_region: tuple[float, float] | None,
                            backend: str = WEAK_REGION_BACKEND) -> ReportFigure | None:
    """Mean VA distance error per target angle (rows) and intensity (columns).

    ``weak_region``: the rows to mark (None: none, the backend is not known to be weak
    there); ``backend`` names the generator in the caption. Returns None when no stimulus
    has an angle target (a study of explicit points only).
    """
    grid = angle_intensity_grid(stimuli, "distance_error")
    if grid.empty:
        return None
    labels = grid.index.get_level_values("emotion")
    angles = grid.index.get_level_values("angle").to_numpy()
    weak = (in_angle_interval(angles, *weak_region) if weak_region is not None
            else np.zeros(len(angles), dtype=bool))
    values = grid.to_numpy(dtype=float)
    with figure_style():
        figure = Figure(figsize=(1.6 + 0.9 * values.shape[1], 1.2 + 0.24 * values.shape[0]))
        axes = figure.add_subplot()
        image = axes.imshow(values, cmap=ERROR_COLOURMAP, aspect="auto",
                            vmin=0.0, vmax=max(float(np.nanmax(values)), 1e-9))
        axes.set_xticks(range(values.shape[1]), [f"{r:g}" for r in grid.columns])
        axes.set_yticks(range(values.shape[0]),
                        [angle_label(label, angle) + ("  (weak)" if w else "")
                         for label, angle, w in zip(labels, angles, weak)])
        for tick, w in zip(axes.get_yticklabels(), weak):
            tick.set_color(WEAK_REGION_COLOUR if w else "#222222")
        axes.set_xlabel("target intensity")
        axes.tick_params(length=0)
        if values.size <= 400:
            threshold = 0.6 * float(np.nanmax(values))
            for (row, column), value in np.ndenumerate(values):
                if math.isfinite(value):
                    axes.text(column, row, f"{value:.2f}", ha="center", va="center", fontsize=6.5,
                              color="black" if value > threshold else "white")
        figure.colorbar(image, ax=axes, shrink=0.6, pad=0.02, label="mean VA distance error")
        svg = render_svg(figure)
    worst_row, worst_column = np.unravel_index(np.nanargmax(values), values.shape)
    worst = angle_label(labels[worst_row], angles[worst_row])
    alt = (f"Heatmap of mean valence-arousal distance error for "
           f"{quantity(values.shape[0], 'target angle')} by "
           f"{quantity(values.shape[1], 'intensity')}. Largest error "
           f"{values[worst_row, worst_column]:.2f} at {worst}, "
           f"intensity {grid.columns[worst_column]:g}.")
    return ReportFigure("distance_heatmap", svg, alt,
                        heatmap_caption(weak_region, backend, bool(weak.any())))


def heatmap_caption(weak_region: tuple[float, float] | None, backend: str,
                    marked: bool) -> str:
    """What the distance heatmap's caption says about the weak region, per backend.

    >>> heatmap_caption(None, "schematic", False)
    'Brighter cells missed their target by more.'
    >>> heatmap_caption((242, 329), "emostyle", True).split("; ")[1]
    'a bright band there is the known EmoStyle weakness, not a build fault.'
    """
    caption = "Brighter cells missed their target by more."
    if weak_region is None:
        return caption
    where = f"{weak_region[0]:g}°–{weak_region[1]:g}°"
    if not marked:
        return f"{caption} No target angle lies in the weak region ({where})."
    if backend == WEAK_REGION_BACKEND:
        return (f"{caption} Rows in the weak region ({where}) are marked (weak); a bright band "
                "there is the known EmoStyle weakness, not a build fault.")
    return (f"{caption} Rows in the weak region ({where}) are marked (weak), as the protocol "
            f"asks (flag_weak_region); the region is where EmoStyle is weak, which says "
            f"nothing in advance about the {backend} backend.")


def angle_intensity_grid(stimuli: pd.DataFrame, column: str) -> pd.DataFrame:
    """Mean of ``column`` over identities, indexed by (angle, emotion) rows x intensity columns."""
    aimed = stimuli[stimuli["target_kind"].isin(("named", "angle"))
                    & stimuli["angle"].notna() & stimuli["intensity"].notna()]
    if aimed.empty:
        return pd.DataFrame()
    means = aimed.groupby(["angle", "emotion", "intensity"], sort=True)[column].mean()
    return means.unstack("intensity")


def backend_measure_columns(stimuli: pd.DataFrame) -> list[str]:
    """Optional per-stimulus measures the backend wrote: identity similarity, quality_*."""
    columns = [IDENTITY_SIMILARITY_COLUMN] + sorted(
        c for c in stimuli.columns if c.startswith(QUALITY_PREFIX))
    return [c for c in columns if c in stimuli.columns
            and pd.api.types.is_numeric_dtype(stimuli[c]) and stimuli[c].notna().any()]


def backend_measures_figure(stimuli: pd.DataFrame) -> ReportFigure | None:
    """Identity-similarity and quality measures per identity, one strip panel per measure.

    Returns None when the backend wrote none (the schematic backend has none to report).
    """
    columns = backend_measure_columns(stimuli)
    if not columns:
        return None
    identities = sorted(stimuli["identity"].unique())
    positions = {identity: index for index, identity in enumerate(identities)}
    with figure_style():
        figure = Figure(figsize=(max(4.0, 1.2 + 0.5 * len(identities)), 2.4 * len(columns)))
        for panel, column in enumerate(columns, start=1):
            axes = figure.add_subplot(len(columns), 1, panel)
            measured = stimuli.dropna(subset=[column])
            x = measured["identity"].map(positions).to_numpy(dtype=float)
            jitter = (np.arange(len(measured)) % 7 - 3) * 0.04  # deterministic spread, no RNG
            colours = [OKABE_ITO[int(i) % len(OKABE_ITO)] for i in x]
            axes.scatter(x + jitter, measured[column], s=8, c=colours, alpha=0.8, linewidths=0)
            axes.set_xticks(range(len(identities)), identities, rotation=45, ha="right")
            axes.set_ylabel(column.replace("_", " "))
            axes.grid(axis="y", color="#dddddd", linewidth=0.5)
        figure.tight_layout()
        svg = render_svg(figure)
    summary = "; ".join(f"{c.replace('_', ' ')} median {_median_text(stimuli[c].dropna())}"
                        for c in columns)
    alt = (f"Strip plots of {', '.join(c.replace('_', ' ') for c in columns)} for every stimulus, "
           f"one column of dots per identity ({quantity(len(identities), 'identity')}). {summary}.")
    caption = ("Each dot is one stimulus. Low identity similarity means the edit changed who the "
               "face looks like; compare identities before choosing a stimulus set. Identity "
               "similarity is the cosine of VGGFace2 embeddings, the network personalisation "
               "optimises, so for photo identities it is partly circular; it is not the ArcFace "
               "identity score of the EmoStyle paper.")
    return ReportFigure("backend_measures", svg, alt, caption)


def _median_text(values: pd.Series) -> str:
    return "not available" if values.empty else f"{float(values.median()):.2f}"
