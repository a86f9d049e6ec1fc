"""The report's "Low-level image properties" section (stimgen/report/low_level.py): the
Kruskal-Wallis tests, the flag's threshold and the section in report.html."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from stimgen.report.low_level import (ALPHA, SMALL_EFFECT, kruskal_epsilon,
                                      low_level_context)

EMOTIONS = ("Happy", "Sad", "Afraid", "Calm")


def table(luminance_by_emotion: dict[str, float], seed: int = 0) -> pd.DataFrame:
    """4 identities x 4 intensities per emotion; luminance = identity + emotion + noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for emotion, shift in luminance_by_emotion.items():
        for identity, base in zip("abcd", (0.35, 0.45, 0.5, 0.6)):
            for intensity in (0.25, 0.5, 0.75, 1.0):
                rows.append({"identity": identity, "emotion": emotion, "intensity": intensity,
                             "mean_luminance": base + shift + rng.normal(0, 0.002),
                             "rms_contrast": 0.2, "spectral_slope": -1.2})
    return pd.DataFrame(rows)


def test_kruskal_epsilon_agrees_with_scipy():
    rng = np.random.default_rng(1)
    groups = [rng.normal(m, 1, 12) for m in (0, 0.5, 1.5)]
    result = kruskal_epsilon(groups)
    h, p = stats.kruskal(*groups)
    assert result["h"] == pytest.approx(h) and result["p"] == pytest.approx(p)
    assert result["epsilon_squared"] == pytest.approx(h / (36 - 1))


def test_conditions_that_differ_are_flagged_with_the_suggestion():
    context = low_level_context(table({"Happy": 0.2, "Sad": 0.0, "Afraid": 0.1, "Calm": 0.0}),
                                {})
    tests = {t["column"]: t for t in context["tests"]}
    assert tests["mean_luminance"]["flag"]
    assert tests["mean_luminance"]["p"] < ALPHA
    assert tests["mean_luminance"]["epsilon_squared"] >= SMALL_EFFECT
    assert tests["mean_luminance"]["spread"] == pytest.approx(0.2, abs=0.01)
    assert not tests["rms_contrast"]["flag"] and tests["rms_contrast"]["p"] == 1.0
    assert context["flagged"] == ["mean luminance"]
    assert context["suggestion"] == "histogram"


def test_small_systematic_differences_show_within_identity_without_a_flag():
    """The identities differ far more than the emotions: the between-stimuli test (the flag)
    stays quiet, the within-identity one finds the emotions' own small shift."""
    context = low_level_context(table({"Happy": 0.01, "Sad": 0.0, "Afraid": 0.01, "Calm": 0.0}),
                                {})
    luminance = context["tests"][0]
    assert not luminance["flag"] and luminance["p"] > ALPHA
    assert luminance["within_p"] < 0.001


def test_summary_rows_per_emotion_and_intensity():
    context = low_level_context(table({e: 0.0 for e in EMOTIONS}), {"mask": "oval"})
    assert [r["condition"] for r in context["by_emotion"]] == list(EMOTIONS)
    assert [r["condition"] for r in context["by_intensity"]] == ["0.25", "0.5", "0.75", "1"]
    assert context["by_emotion"][0]["n"] == 16
    mean, sd = context["by_emotion"][0]["rms_contrast"]
    assert mean == pytest.approx(0.2) and sd == pytest.approx(0.0)
    assert context["framing"]["mask"] == "oval"


def test_builds_without_the_columns_have_no_section():
    assert low_level_context(pd.DataFrame({"emotion": ["Happy"]}), {}) is None


def test_the_page_shows_the_flag_and_the_suggestion(tmp_path):
    from stimgen.build_folder import STIMULI_TSV
    from stimgen.report import write_report
    from buildfolders import parse_page, write_synthetic_build

    root = write_synthetic_build(tmp_path / "b", identities=("id01", "id02", "id03"))
    stimuli = pd.read_csv(root / STIMULI_TSV, sep="\t", dtype=str, keep_default_na=False)
    brighter = stimuli["emotion"].isin(["Happy", "Calm"])
    stimuli["mean_luminance"] = np.where(brighter, 0.6, 0.4) + np.arange(len(stimuli)) * 1e-4
    stimuli["rms_contrast"] = 0.2
    stimuli["spectral_slope"] = -1.2
    stimuli.to_csv(root / STIMULI_TSV, sep="\t", index=False)
    html = write_report(root).read_text(encoding="utf-8")
    assert 'id="low-level"' in html and 'href="#low-level"' in html
    warning = html.split('data-key="low-level-confound"')[1].split("</div>")[0]
    assert "mean luminance" in warning and "match: histogram" in warning
    assert "contrast" not in warning
    parse_page(root / "report.html")           # well-formed
