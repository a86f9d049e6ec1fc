"""The report's "Low-level image properties" section: mean luminance, RMS contrast and spectral
slope per emotion and intensity, and Kruskal-Wallis tests of each across emotions.

Reads only stimuli.tsv's low-level columns (stimgen/standardise.py measures them in every
build); template: templates/report_low_level.html.j2.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from stimgen.build_folder import LOW_LEVEL_COLUMNS, MATCH_SSIM_COLUMN

#: Template partial of the section, included by report.html.j2.
TEMPLATE = "report_low_level.html.j2"

#: A measure is flagged as a confound when the emotions differ at p < ALPHA *and* the effect
#: is at least SMALL_EFFECT (epsilon-squared) in the test a reviewer runs (stimuli as units),
#: without flagging differences too small to matter that a large set makes "significant".
#: The within-identity test is shown beside it, not flagged (see docs/report.md).
ALPHA = 0.05
SMALL_EFFECT = 0.01

#: What each column is, for the table headings and the flag's sentence.
MEASURES = {
    "mean_luminance": ("mean luminance", 3),
    "rms_contrast": ("RMS contrast", 3),
    "spectral_slope": ("spectral slope", 2),
    MATCH_SSIM_COLUMN: ("SSIM to unmatched", 3),
}


def kruskal_epsilon(groups: list[np.ndarray]) -> dict[str, float]:
    """Kruskal-Wallis H across ``groups``, its p value and the effect size epsilon-squared
    ``H / (n - 1)`` (Tomczak & Tomczak, 2014: 0.01 small, 0.08 medium, 0.26 large).

    Values equal across every group give H = 0 and p = 1 (scipy would return nan).

    >>> r = kruskal_epsilon([np.array([1.0, 2, 3]), np.array([4.0, 5, 6])])
    >>> round(r["h"], 2), round(r["p"], 3), round(r["epsilon_squared"], 2)
    (3.86, 0.05, 0.77)
    >>> kruskal_epsilon([np.array([1.0, 1]), np.array([1.0, 1])])["p"]
    1.0
    """
    from scipy import stats

    groups = [np.asarray(g, float) for g in groups if len(g) > 0]
    n = sum(len(g) for g in groups)
    values = np.concatenate(groups) if groups else np.array([])
    if len(groups) < 2 or n < 3 or np.ptp(values) == 0:
        return {"h": 0.0, "p": 1.0, "epsilon_squared": 0.0, "groups": len(groups), "n": n}
    h, p = stats.kruskal(*groups)
    return {"h": float(h), "p": float(p), "epsilon_squared": float(h / (n - 1)),
            "groups": len(groups), "n": n}


def low_level_context(stimuli: pd.DataFrame, output: dict) -> dict | None:
    """What the section shows; None for builds made before the measures existed.
    ``output`` is the build's ``output:`` section as its manifest records it."""
    measures = [c for c in LOW_LEVEL_COLUMNS if c in stimuli.columns]
    if not measures:
        return None
    output = output or {}
    tests, flagged = [], []
    named = stimuli[stimuli["emotion"].astype(str) != ""]
    for column in measures:
        by_emotion = named.groupby("emotion", sort=False)[column]
        result = kruskal_epsilon([g.dropna().to_numpy(float) for _, g in by_emotion])
        # every emotion is shown by the same identities: without the identities' own
        # differences (skin tone, hair), a small systematic effect of emotion shows
        centred = named[column] - named.groupby("identity")[column].transform("mean")
        within = kruskal_epsilon([g.dropna().to_numpy(float).round(9)
                                  for _, g in centred.groupby(named["emotion"], sort=False)])
        means = by_emotion.mean()
        label, decimals = MEASURES[column]
        result.update(column=column, label=label, decimals=decimals,
                      within_p=within["p"], within_epsilon_squared=within["epsilon_squared"],
                      spread=float(means.max() - means.min()) if len(means) else math.nan,
                      flag=result["p"] < ALPHA and result["epsilon_squared"] >= SMALL_EFFECT)
        tests.append(result)
        if result["flag"]:
            flagged.append(label)
    # what matching cost: not a confound measure, shown beside them (matched builds)
    shown = measures + [c for c in (MATCH_SSIM_COLUMN,) if c in stimuli.columns]
    return {
        "measures": [(c, *MEASURES[c]) for c in shown],
        "by_emotion": _summary(named, "emotion", shown),
        "by_intensity": _summary(stimuli, "intensity", shown),
        "matching_cost": matching_cost(stimuli),
        "tests": tests,
        "flagged": flagged,
        # histogram matching equalises luminance and contrast; the spectrum needs its own step
        "suggestion": "histogram+spectrum" if "spectral slope" in flagged else "histogram",
        "alpha": ALPHA,
        "small_effect": SMALL_EFFECT,
        "framing": {"greyscale": bool(output.get("greyscale", False)),
                    "mask": str(output.get("mask", "none")),
                    "match": str(output.get("match", "none")),
                    "match_scope": str(output.get("match_scope", "set"))},
    }


def matching_cost(stimuli: pd.DataFrame) -> dict | None:
    """Mean, SD, smallest and largest ``ssim_unmatched`` and the stimulus with the smallest;
    None for a build without matching.

    >>> cost = matching_cost(pd.DataFrame({"stimulus_id": ["a", "b"], "ssim_unmatched": [0.9, 0.7]}))
    >>> round(cost["mean"], 2), cost["worst"], cost["min"]
    (0.8, 'b', 0.7)
    """
    if MATCH_SSIM_COLUMN not in stimuli.columns:
        return None
    values = stimuli[MATCH_SSIM_COLUMN].astype(float)
    if values.dropna().empty:
        return None
    worst = values.idxmin()
    return {"mean": float(values.mean()), "sd": float(values.std(ddof=1)) if len(values) > 1
            else math.nan, "min": float(values.min()), "max": float(values.max()),
            "worst": str(stimuli.loc[worst, "stimulus_id"]), "n": int(values.notna().sum())}


def _summary(stimuli: pd.DataFrame, by: str, measures: list[str]) -> list[dict]:
    """One row per condition in file order: n and mean ± SD (ddof=1) of each measure."""
    rows = []
    for value, group in stimuli.groupby(by, sort=False):
        row = {"condition": _label(value), "n": int(len(group))}
        for column in measures:
            values = group[column].dropna().to_numpy(float)
            row[column] = (float(values.mean()) if len(values) else math.nan,
                           float(values.std(ddof=1)) if len(values) > 1 else math.nan)
        rows.append(row)
    return rows


def _label(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
