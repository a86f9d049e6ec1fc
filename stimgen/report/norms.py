"""The report's "Human norms" section: what `stimgen norms` wrote (norms.tsv,
norms_summary.json) as a circumplex of human vs target vs model, tables and reliability.

Absent until `stimgen norms` has run on the build; template: templates/report_norms.html.j2.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from stimgen.build_folder import STIMULI_TSV, read_norms, read_stimuli
from stimgen.report.figures import (OKABE_ITO, ReportFigure, _draw_circumplex_frame,
                                    figure_style, render_svg)
from stimgen.wording import quantity

#: Template partial of the section, included by report.html.j2.
TEMPLATE = "report_norms.html.j2"


def current_norms(root: Path) -> tuple | None:
    """norms.tsv's rows whose rated image is still the build's, the summary recomputed over
    them where some are not (:func:`stimgen.norms.subset_summary`), and the
    :class:`stimgen.norms.NormsMatch`; None before `stimgen norms` ran."""
    from stimgen.norms.current import match_norms
    from stimgen.norms.summary import subset_summary

    found = read_norms(root)
    if found is None:
        return None
    norms, summary = found
    stimuli = read_stimuli(Path(root) / STIMULI_TSV)
    match = match_norms(norms, stimuli)
    if match.stale:
        recomputed = subset_summary(summary, match.current, len(stimuli))
        recomputed["selected_from"] = summary.get("selected_from")
        summary = recomputed
    return match.current, summary, match


def norms_figure(root: Path, weak_region: tuple[float, float]) -> ReportFigure | None:
    """Each stimulus's human mean (with its 95 % CI as a cross), target and model rating."""
    found = current_norms(root)
    if found is None or found[0].empty:
        return None
    norms = found[0]
    with figure_style():
        figure = Figure(figsize=(7.6, 6.6))
        axes = figure.add_subplot()
        _draw_circumplex_frame(axes, weak_region)
        human = norms[["valence_mean", "arousal_mean"]].to_numpy(float)
        target = norms[["target_valence", "target_arousal"]].to_numpy(float)
        model = norms[["model_valence", "model_arousal"]].to_numpy(float)
        for (x, y), row in zip(human, norms.itertuples()):
            axes.plot([row.valence_ci_low, row.valence_ci_high], [y, y], color=OKABE_ITO[1],
                      linewidth=0.6, alpha=0.7, zorder=3)
            axes.plot([x, x], [row.arousal_ci_low, row.arousal_ci_high], color=OKABE_ITO[1],
                      linewidth=0.6, alpha=0.7, zorder=3)
        for start in (target, model):
            axes.plot(np.stack([start[:, 0], human[:, 0]]), np.stack([start[:, 1], human[:, 1]]),
                      color="#999999", linewidth=0.5, zorder=2)
        axes.scatter(target[:, 0], target[:, 1], s=18, facecolors="none",
                     edgecolors=OKABE_ITO[7], linewidths=0.8, zorder=4)
        axes.scatter(model[:, 0], model[:, 1], s=14, marker="x", c=OKABE_ITO[5], zorder=4)
        axes.scatter(human[:, 0], human[:, 1], s=16, c=OKABE_ITO[4], zorder=5)
        axes.legend(handles=[
            Line2D([], [], marker="o", markerfacecolor="none", color=OKABE_ITO[7],
                   linestyle="none", label="target"),
            Line2D([], [], marker="x", color=OKABE_ITO[5], linestyle="none",
                   label="model rater"),
            Line2D([], [], marker="o", color=OKABE_ITO[4], linestyle="none",
                   label="human mean (95 % CI)"),
        ], loc="lower left", fontsize=8, frameon=False, bbox_to_anchor=(-0.02, -0.04))
        svg = render_svg(figure)
    median = float(np.nanmedian(norms["distance_to_target"])) if len(norms) else float("nan")
    alt = (f"Valence-arousal circumplex with {quantity(len(norms), 'stimulus')}: targets "
           f"(rings), the model rater's ratings (crosses) and the human mean ratings (dots with "
           f"95 % confidence intervals). Median human-to-target distance {median:.2f}.")
    caption = ("Dots are what people saw, rings what was asked for, crosses what the model "
               "rater saw; grey lines join each human mean to its target and model rating.")
    return ReportFigure(name="norms_circumplex", svg=svg, alt=alt, caption=caption)


def norms_context(root: Path) -> dict | None:
    """What the section shows, or None before `stimgen norms` ran."""
    found = current_norms(root)
    if found is None:
        return None
    norms, summary, match = found
    labels = "hit_rate" in norms.columns
    worst = norms.sort_values("distance_to_target", ascending=False).head(10)
    return {
        "participants": summary.get("participants", {}),
        "reliability": summary.get("reliability", {}),
        "agreement": summary.get("model_agreement", []),
        "by_emotion": summary.get("by_emotion", []),
        "raters_per_stimulus": summary.get("raters_per_stimulus", [0, 0]),
        "stimuli_rated": summary.get("stimuli_rated", len(norms)),
        # a subset (stimgen select): the norming study covered the source build's stimuli
        "selected_from": summary.get("selected_from"),
        "warnings": len(summary.get("warnings", [])),
        "labels": labels,
        "farthest": worst.to_dict("records"),
        # rows whose image was redrawn (or left the build) after the norming study
        "stale": match.stale_message(),
        "stale_count": len(match.stale),
        "unverifiable": match.unverifiable,
    }
