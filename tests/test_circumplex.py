"""Circumplex maths: named emotions, angle/VA conversions, weak-region membership."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stimgen.circumplex import (WEAK_REGION_DEFAULT, UnknownEmotionError, angle_to_va,
                                basic_emotion_angles, basic_emotions,
                                emotion_by_name, emotion_label_key, in_angle_interval,
                                named_emotions, nearest_basic_emotion,
                                normalise_emotion_name, va_to_angle,
                                wrap_angle_difference)

angles = st.floats(min_value=0.0, max_value=359.999, allow_nan=False)
radii = st.floats(min_value=1e-3, max_value=1.0, allow_nan=False)


def test_28_named_emotions_as_published():
    emotions = named_emotions()
    assert len(emotions) == 28
    # the exact angles of Darne et al.'s code; the paper prints them rounded (8, 268)
    assert emotion_by_name("circumplex:happy").angle == 7.8
    assert emotion_by_name("tired").angle == 267.7
    assert emotion_by_name("AT-EASE").name == "At ease"
    assert [e.angle for e in emotions] == sorted(e.angle for e in emotions)


def test_unknown_emotion_suggests():
    with pytest.raises(KeyError) as caught:
        emotion_by_name("happpy")
    assert caught.value.args[0] == "happy"


@given(angles, radii)
def test_angle_va_round_trip(angle, r):
    v, a = angle_to_va(angle, r)
    assert math.hypot(v, a) == pytest.approx(r)
    back, radius = va_to_angle(v, a)
    assert wrap_angle_difference(back, angle) < 1e-6
    assert radius == pytest.approx(r)


def test_axes():
    assert va_to_angle(1.0, 0.0) == (0.0, 1.0)
    assert va_to_angle(0.0, 1.0) == (90.0, 1.0)
    assert va_to_angle(-1.0, 0.0) == (180.0, 1.0)
    assert va_to_angle(0.0, -1.0) == (270.0, 1.0)


@given(angles, angles)
def test_wrapped_difference_is_symmetric_and_bounded(a, b):
    d = wrap_angle_difference(a, b)
    assert 0.0 <= d <= 180.0
    assert d == pytest.approx(wrap_angle_difference(b, a))
    assert wrap_angle_difference(a + 360.0, b) == pytest.approx(d, abs=1e-9)


def test_wrapped_difference_examples():
    assert wrap_angle_difference(350, 10) == 20
    assert wrap_angle_difference(0, 180) == 180
    assert np.allclose(wrap_angle_difference(np.array([1.0, 359.0]), 0.0), [1.0, 1.0])


def test_weak_region_default_membership():
    inside = [e.name for e in named_emotions() if in_angle_interval(e.angle, *WEAK_REGION_DEFAULT)]
    assert inside[0] == "Bored" and inside[-1] == "Serene" and len(inside) == 10


@given(angles, angles, angles)
def test_interval_membership_matches_arc_walk(start, end, angle):
    span = (end - start) % 360.0
    offset = (angle - start) % 360.0
    assert in_angle_interval(angle, start, end) == (offset <= span + 1e-9)


def test_wrapping_interval():
    assert in_angle_interval(350, 300, 30) and in_angle_interval(10, 300, 30)
    assert not in_angle_interval(180, 300, 30)
    assert list(in_angle_interval(np.array([299.0, 300.0, 0.0, 31.0]), 300, 30)) == \
        [False, True, True, False]


def test_normalise():
    assert normalise_emotion_name("  At  Ease ") == "at_ease"
    assert normalise_emotion_name("at-ease") == normalise_emotion_name("AT_EASE")


def test_names_of_one_emotion_share_a_label_key():
    same = [("Disgust", "disgusted"), ("afraid", "fearful"), ("Fear", "AFRAID"),
            ("happiness", "happy"), ("Sad", "sadness"), ("angry", "Anger"),
            ("surprised", "Surprise")]
    for first, second in same:
        assert emotion_label_key(first) == emotion_label_key(second), (first, second)
    different = [("happy", "glad"), ("afraid", "alarmed"), ("disgusted", "distressed"),
                 ("sad", "gloomy"), ("none of these", "neutral")]
    for first, second in different:
        assert emotion_label_key(first) != emotion_label_key(second), (first, second)
    # every circumplex term a basic emotion names exists, and is a name of that emotion only
    terms = [e.circumplex_term for e in basic_emotions() if e.circumplex_term]
    assert len(terms) == len(set(terms)) == 5
    for emotion in basic_emotions():
        if emotion.circumplex_term:
            assert emotion_by_name(emotion.circumplex_term).vocabulary == "circumplex"
            assert emotion_label_key(emotion.circumplex_term) == emotion.key


def test_nearest_basic_emotion_by_direction():
    angles = basic_emotion_angles()
    assert angles["anger"] == 99.0 and angles["surprise"] == 69.8     # Angry, Astonished
    assert angles["disgust"] == pytest.approx(emotion_by_name("disgust").angle)
    # the circumplex term of a basic emotion is nearest its own basic emotion
    for emotion in basic_emotions():
        if emotion.circumplex_term:
            term = emotion_by_name(emotion.circumplex_term)
            assert nearest_basic_emotion(*term.target_va(0.5)) == emotion.key
    assert nearest_basic_emotion(*angle_to_va(268.0, 1.0)) == "sadness"
    assert nearest_basic_emotion(*angle_to_va(86.0, 1.0)) == "anger"   # 13 from 99, 16 from 70
    assert nearest_basic_emotion(*angle_to_va(83.0, 1.0)) == "surprise"
    assert nearest_basic_emotion(0.0, 0.0) == "neutral"


def test_axis_angles_give_exact_zeros():
    # Exact zeros keep sign agreement (SAGR) honest at 90, 180 and 270 degrees.
    assert angle_to_va(90.0, 1.0) == (0.0, 1.0)
    assert angle_to_va(180.0, 0.5) == (-0.5, 0.0)
    assert angle_to_va(270.0, 1.0) == (0.0, -1.0)
    v, a = angle_to_va(np.array([90.0, 180.0]), 1.0)
    assert v[0] == 0.0 and a[1] == 0.0


def test_the_shipped_published_table_is_the_shared_anchor_and_cites_its_source():
    """The 28 x 4 figures are Darne, Quan & Luo (2025), rated by EmoNet, not the EmoStyle paper."""
    import csv
    from importlib import resources

    from stimgen.circumplex import ANCHORS_FILE, PUBLISHED_TABLE_CITATION, read_anchor_table

    shipped = resources.files("stimgen.data").joinpath(ANCHORS_FILE).read_text(encoding="utf-8")
    header = [line for line in shipped.splitlines() if line.startswith("#")]
    assert any("Darne" in line for line in header) and any("EmoNet" in line for line in header)
    assert "10636" in PUBLISHED_TABLE_CITATION and "Darne" in PUBLISHED_TABLE_CITATION
    anchor = Path(__file__).resolve().parents[2] / "shared" / "anchors" / ANCHORS_FILE
    if not anchor.is_file():
        pytest.skip("../shared/anchors is not beside this checkout")
    with anchor.open(encoding="utf-8") as handle:
        assert read_anchor_table() == list(csv.DictReader(handle))


# ----------------------------------------------------------------------------- one vocabulary

@pytest.mark.parametrize("basic, word", [("Happiness", "happy"), ("Sadness", "sad"),
                                         ("Anger", "angry"), ("Fear", "fearful"),
                                         ("Surprise", "surprised"), ("Disgust", "disgusted"),
                                         ("Contempt", "contemptuous")])
def test_every_form_of_a_basic_emotion_word_names_the_basic_emotion(basic, word):
    from stimgen.circumplex import resolve_emotion

    assert resolve_emotion(word).name == basic
    assert resolve_emotion(basic.lower()).name == basic
    assert resolve_emotion(f"basic:{word}").name == basic


def test_circumplex_terms_keep_their_table_names_or_the_prefix():
    from stimgen.circumplex import canonical_emotion_name, resolve_emotion

    assert resolve_emotion("circumplex:happy").name == "Happy"
    assert resolve_emotion("Afraid").vocabulary == "circumplex"
    assert resolve_emotion("at ease").name == "At ease"
    # what a protocol stores resolves back to the same emotion
    for emotion in named_emotions() + basic_emotions():
        assert resolve_emotion(canonical_emotion_name(emotion)) == emotion
    with pytest.raises(UnknownEmotionError) as err:
        resolve_emotion("basic:excited")
    assert "not a basic emotion" in err.value.hint and "circumplex:excited" in err.value.hint


def test_the_ambiguous_words_warn_with_the_other_meaning():
    from stimgen.circumplex import vocabulary_warning

    for word, term in (("happy", "Happy (7.8°)"), ("sad", "Sad (207.5°)"), ("Angry", "Angry (99°)")):
        note = vocabulary_warning(word)
        assert term in note and f"circumplex:{word.lower()}" in note
    assert vocabulary_warning("fearful") is None and vocabulary_warning("circumplex:sad") is None


def test_contempt_has_both_published_points_and_a_protocol_picks_one():
    from stimgen.circumplex import basic_emotion_sources
    from stimgen.plan import plan_targets
    from stimgen.protocol.models import Targets

    points = basic_emotion_sources("contempt")
    assert points["warriner_2013"].point == pytest.approx((-0.445, -0.0975))
    assert points["russell_mehrabian_1977"].point == (-0.23, 0.31)
    default = plan_targets(Targets(emotions=["contempt"], intensities=[1.0]))[0]
    chosen = plan_targets(Targets(emotions=["contempt"], intensities=[1.0],
                                  basic_sources={"contempt": "russell_mehrabian_1977"}))[0]
    assert round(default.angle) == 192 and round(chosen.angle) == 127
    assert chosen.expression == "contempt"
    with pytest.raises(ValueError, match="has no point from"):
        Targets(emotions=["contempt"], basic_sources={"contempt": "nobody_2020"})


def test_exact_angles_are_the_codes_and_round_to_the_published_table():
    """The 28 terms at Darne et al.'s one-decimal angles; the paper prints them rounded."""
    from importlib import resources

    from stimgen.circumplex import ANGLES_FILE, read_anchor_table

    text = resources.files("stimgen.data").joinpath(ANGLES_FILE).read_text(encoding="utf-8")
    assert "ClementDrn/emostyle" in text and "8c17939090b8e0c46f5c5b745fdc406dec054a9f" in text
    published = {row["emotion"]: float(row["angle_deg"]) for row in read_anchor_table()}
    exact = {e.name: e.angle for e in named_emotions()}
    assert list(exact) == list(published)
    assert all(abs(exact[name] - published[name]) <= 0.5 for name in exact)
    assert (exact["Happy"], exact["Excited"], exact["Serene"], exact["Pleased"]) == \
        (7.8, 48.6, 328.6, 353.2)
    assert WEAK_REGION_DEFAULT == (exact["Bored"], exact["Serene"])
