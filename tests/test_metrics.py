"""Evaluation metrics: per-stimulus errors, aggregates, CCC, SAGR, RMSE."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stimgen.metrics import (ccc, metrics_by_emotion, metrics_by_intensity, rmse, sagr,
                             stimulus_errors, summarise)

unit = st.floats(min_value=-1.0, max_value=1.0, allow_nan=False)


@given(unit, unit, unit, unit)
def test_errors_properties(tv, ta, av, aa):
    e = {k: float(v[0]) for k, v in stimulus_errors([tv], [ta], [av], [aa]).items()}
    assert e["distance_error"] == pytest.approx(np.hypot(tv - av, ta - aa))
    assert e["valence_error"] == pytest.approx(abs(tv - av))
    assert e["arousal_error"] == pytest.approx(abs(ta - aa))
    # The magnitude error never exceeds the distance (triangle inequality).
    assert e["magnitude_error"] <= e["distance_error"] + 1e-12
    if np.hypot(tv, ta) > 1e-12:
        assert 0.0 <= e["direction_error"] <= 180.0
    else:
        assert np.isnan(e["direction_error"])


def test_errors_known_values():
    e = stimulus_errors([0.5], [0.0], [0.0], [-0.25])
    assert e["direction_error"][0] == pytest.approx(90.0)
    assert e["magnitude_error"][0] == pytest.approx(0.25)
    assert e["distance_error"][0] == pytest.approx(np.hypot(0.5, 0.25))
    opposite = stimulus_errors([1.0], [0.0], [-0.5], [0.0])
    assert opposite["direction_error"][0] == pytest.approx(180.0)


def test_ccc():
    x = np.array([0.1, 0.4, 0.7, 0.9])
    assert ccc(x, x) == pytest.approx(1.0)
    assert ccc(x, -x) < 0
    # A constant offset lowers CCC (unlike Pearson's r).
    assert ccc(x, x + 0.5) < 0.7
    assert np.isnan(ccc([0.3], [0.3]))


def test_ccc_is_undefined_for_constant_targets():
    # A neutral group: the formula would read 0 however close the ratings are.
    assert np.isnan(ccc([0.0, 0.0, 0.0], [0.01, -0.02, 0.03]))
    assert np.isnan(ccc([0.4, 0.4], [0.1, 0.7]))
    # A constant rating of varying targets is a real failure, not an undefined figure.
    assert ccc([0.1, 0.5, 0.9], [0.2, 0.2, 0.2]) == 0.0


def test_sagr_and_rmse():
    assert sagr([0.5, -0.5], [0.1, -0.1]) == 1.0
    assert sagr([0.5, -0.5], [-0.1, -0.1]) == 0.5
    # Zero is its own sign: an axis target among others agrees only with an exact zero.
    assert sagr([0.0, 0.5], [0.1, 0.2]) == 0.5
    # Every target zero (neutral): no sign to agree with.
    assert np.isnan(sagr([0.0, 0.0], [0.1, -0.1]))
    assert rmse([0, 0], [0.3, 0.4]) == pytest.approx(np.sqrt((0.09 + 0.16) / 2))


def table():
    rows = []
    for emotion, angle in (("Happy", 8.0), ("Tired", 268.0)):
        for r in (0.5, 1.0):
            tv, ta = r * np.cos(np.deg2rad(angle)), r * np.sin(np.deg2rad(angle))
            av, aa = tv * 0.8, ta * 0.6
            rows.append({"emotion": emotion, "angle": angle, "intensity": r,
                         "target_kind": "named", "target_valence": tv, "target_arousal": ta,
                         "achieved_valence": av, "achieved_arousal": aa,
                         "weak_region": angle == 268.0})
    rows.append({"emotion": "neutral", "angle": np.nan, "intensity": 0.0,
                 "target_kind": "neutral", "target_valence": 0.0, "target_arousal": 0.0,
                 "achieved_valence": 0.05, "achieved_arousal": -0.02, "weak_region": False})
    frame = pd.DataFrame(rows)
    errors = stimulus_errors(frame.target_valence, frame.target_arousal,
                             frame.achieved_valence, frame.achieved_arousal)
    for k, v in errors.items():
        frame[k] = v
    return frame


def test_aggregate_by_emotion_matches_hand_computation():
    frame = table()
    by_emotion = metrics_by_emotion(frame)
    assert list(by_emotion.emotion) == ["Happy", "Tired", "neutral"]
    happy = frame[frame.emotion == "Happy"]
    row = by_emotion.iloc[0]
    assert row["n"] == 2
    assert row["dist_mae"] == pytest.approx(happy.distance_error.mean())
    assert row["dist_sd"] == pytest.approx(happy.distance_error.std(ddof=0))
    assert row["val_mae"] == pytest.approx(happy.valence_error.mean())
    assert bool(by_emotion.iloc[1]["weak_region"]) is True
    assert np.isnan(by_emotion.iloc[2]["dir_mae_deg"])


def test_aggregate_by_intensity():
    by_intensity = metrics_by_intensity(table())
    assert list(by_intensity.intensity) == [0.0, 0.5, 1.0]
    assert list(by_intensity.n) == [1, 2, 2]


UNDEFINED_FOR_NEUTRAL = ("ccc_valence", "ccc_arousal", "sagr_valence", "sagr_arousal")


def test_agreement_is_undefined_for_neutral_and_intensity_zero():
    frame = pd.concat([table()] * 2, ignore_index=True)      # two neutral stimuli
    frame.loc[frame.target_kind == "neutral", "achieved_valence"] = [0.05, -0.03]
    neutral = metrics_by_emotion(frame).set_index("emotion").loc["neutral"]
    zero = metrics_by_intensity(frame).set_index("intensity").loc[0.0]
    for row in (neutral, zero):
        assert all(np.isnan(row[c]) for c in UNDEFINED_FOR_NEUTRAL), row
        assert np.isfinite(row["rmse_valence"]) and np.isfinite(row["rmse_arousal"])
    # Over every stimulus the targets vary, so the figures are defined.
    assert all(np.isfinite(summarise(frame)[c]) for c in UNDEFINED_FOR_NEUTRAL)


def test_summarise_scales_with_error():
    frame = table()
    worse = frame.copy()
    worse["achieved_valence"] = worse["achieved_valence"] * 0.5
    errors = stimulus_errors(worse.target_valence, worse.target_arousal,
                             worse.achieved_valence, worse.achieved_arousal)
    for k, v in errors.items():
        worse[k] = v
    assert summarise(worse)["val_mae"] > summarise(frame)["val_mae"]
    assert summarise(worse)["rmse_valence"] > summarise(frame)["rmse_valence"]
