"""FACS-driven schematic faces (issue 15): prototypes, blending, basic-emotion names, AU
columns in a build, and the confusable-choices warning."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import stimgen
from stimgen.backends.schematic import (AU_NAMES, BLEND_ANGLES, PROTOTYPES, expression_units,
                                        face_landmarks, sample_identity)
from stimgen.circumplex import (angle_to_va, basic_emotions, emotion_by_name, named_emotions,
                                suggest_emotion)
from stimgen.protocol.loader import plan_experiment
from stimgen.landmarks import inter_ocular_distance
from stimgen.protocol.loader import protocol_from_text
from stimgen.protocol.models import Protocol
from stimgen.raters.geometric import action_measurements


def units_of(name: str, intensity: float = 1.0) -> dict[str, float]:
    emotion = emotion_by_name(name)
    return expression_units(*emotion.target_va(intensity), prototype=emotion.prototype)


def landmarks_of(name: str, seed: int = 4) -> np.ndarray:
    emotion = emotion_by_name(name)
    return face_landmarks(sample_identity(seed), *emotion.target_va(1.0),
                          prototype=emotion.prototype)


# ----------------------------------------------------------------------------- action units

@pytest.mark.parametrize("angry, afraid, surprised", [("angry", "afraid", "astonished"),
                                                      ("anger", "fearful", "surprised")])
def test_angry_afraid_surprised_show_the_units_their_prototypes_name(angry, afraid, surprised):
    a, f, s = units_of(angry), units_of(afraid), units_of(surprised)
    # anger (4+5*+7+10*+23+25): brows lowered and drawn together, lids tightened, lips
    # tightened and parted under a raised upper lip
    assert a["AU04"] > 0.9 and a["AU07"] > 0.7 and a["AU23"] > 0.9 and a["AU10"] > 0.5
    assert a["AU01"] == a["AU20"] == a["AU26"] == 0.0
    # fear: inner and outer brows raised and drawn together, upper lid raised, lips stretched
    assert f["AU01"] > 0.9 and f["AU04"] > 0.5 and f["AU05"] > 0.9 and f["AU20"] > 0.9
    assert f["AU23"] == 0.0
    # surprise: brows raised, not drawn together; jaw dropped; no stretch
    assert s["AU01"] > 0.9 and s["AU02"] > 0.9 and s["AU26"] > 0.9
    assert s["AU04"] == s["AU20"] == 0.0


@pytest.mark.parametrize("seed", [4, 11, 77])
def test_angry_afraid_surprised_differ_in_those_features_on_the_landmarks(seed):
    m = {name: action_measurements(landmarks_of(name, seed))
         for name in ("angry", "afraid", "astonished")}
    neutral = action_measurements(face_landmarks(sample_identity(seed), 0.0, 0.0))
    points = {name: landmarks_of(name, seed) for name in ("angry", "afraid", "astonished")}
    iod = inter_ocular_distance(points["angry"])
    width = {n: np.linalg.norm(p[54] - p[48]) / iod for n, p in points.items()}
    # AU4 draws the brows together in anger (and in fear), not in surprise
    assert m["angry"]["inner_brow_gap"] < neutral["inner_brow_gap"] - 0.03
    assert m["astonished"]["inner_brow_gap"] >= neutral["inner_brow_gap"] - 0.005
    # brows: lowered in anger, raised in fear and most in surprise
    assert m["angry"]["brow_height"] < neutral["brow_height"] < m["afraid"]["brow_height"]
    assert m["afraid"]["brow_height"] < m["astonished"]["brow_height"]
    # mouth: tightened (narrowed, barely parted) in anger, stretched wide in fear, dropped
    # open in surprise
    assert m["angry"]["mouth_opening"] < m["afraid"]["mouth_opening"] - 0.1
    assert width["afraid"] > width["angry"] + 0.05
    # both drop the jaw (26); the surprised mouth opens round and narrow, the afraid one
    # is stretched wide (20)
    assert m["astonished"]["mouth_opening"] > m["angry"]["mouth_opening"] + 0.1
    assert width["afraid"] > width["astonished"] + 0.2
    # eyes: wide in fear and surprise, narrowed in anger (AU7)
    assert m["afraid"]["eye_aperture"] > m["angry"]["eye_aperture"] + 0.03


@pytest.mark.parametrize("seed", [4, 11, 77])
def test_contempt_tightens_and_lifts_one_mouth_corner_only(seed):
    units = units_of("contempt")
    assert units["AU14"] == 1.0 and sum(units.values()) == 1.0
    person = sample_identity(seed)
    face, neutral = landmarks_of("contempt", seed), face_landmarks(person, 0.0, 0.0)
    iod = inter_ocular_distance(neutral)
    # the subject's right corner (48, image left) moves in and up; the left one (54) stays
    right, left = (face[48] - neutral[48]) / iod, (face[54] - neutral[54]) / iod
    assert right[0] > 0.02 and right[1] < -0.03
    assert np.abs(left).max() < 1e-9
    # every landmark outside the mouth stays where the neutral face has it
    outside = np.r_[0:48]
    np.testing.assert_array_equal(face[outside], neutral[outside])


def test_contempt_stays_off_the_blend_circle():
    # named only: no VA target, whatever its angle, shows the one-sided dimpler
    assert "contempt" in PROTOTYPES and "contempt" not in BLEND_ANGLES
    for angle in np.linspace(0.0, 359.5, 720):
        assert expression_units(*angle_to_va(angle, 1.0))["AU14"] == 0.0


def test_a_target_at_a_prototype_angle_shows_exactly_that_prototype():
    for name, angle in BLEND_ANGLES.items():
        units = expression_units(*angle_to_va(angle, 0.6))
        expected = {au: 0.6 * PROTOTYPES[name].units.get(au, 0.0) for au in AU_NAMES}
        assert units == pytest.approx(expected, abs=1e-9), name


def test_the_named_circumplex_terms_show_the_prototypes_at_their_exact_angles():
    # Happy 7.8, Astonished 69.8, Angry 99, Afraid 116, Sad 207.5: the angles targets use
    for term, prototype in (("circumplex:happy", "happiness"), ("astonished", "surprise"),
                            ("circumplex:angry", "anger"), ("afraid", "fear"),
                            ("circumplex:sad", "sadness")):
        assert BLEND_ANGLES[prototype] == emotion_by_name(term).angle, term
        assert units_of(term) == pytest.approx(
            {au: PROTOTYPES[prototype].units.get(au, 0.0) for au in AU_NAMES}, abs=1e-9)


@pytest.mark.parametrize("seed", range(30))
def test_a_raised_brow_stays_below_the_hairline(seed):
    from stimgen.backends.schematic.geometry import face_layout, hairline

    identity = sample_identity(seed)
    if identity.hair_style == "bald":
        pytest.skip("no hairline")
    for prototype in ("surprise", "fear"):
        layout = face_layout(identity, expression_units(0.0, 1.0, prototype=prototype))
        w = identity.face_half_width
        for brow, width in zip(layout.brows, layout.brow_widths):
            top = brow[:, 1] - width / 2
            assert (top > hairline(identity, layout.eye_y, (brow[:, 0] - 0.5) / (0.97 * w))).all()


def test_disgust_lowers_the_brows_less_than_anger_and_does_not_draw_them_together():
    for seed in (1, 4, 9):
        rest, anger, disgust = (action_measurements(face_landmarks(
            sample_identity(seed), *((0.0, 0.0) if p is None else (0.0, 1.0)), prototype=p))
            for p in (None, "anger", "disgust"))
        assert rest["inner_brow_height"] > disgust["inner_brow_height"] > anger["inner_brow_height"]
        assert disgust["inner_brow_gap"] == pytest.approx(rest["inner_brow_gap"], abs=1e-9)
        assert anger["inner_brow_gap"] < rest["inner_brow_gap"]
        # the eyes narrow from below (the lower lid pushed up), not by a glare
        assert disgust["lower_lid_height"] < rest["lower_lid_height"]
        assert disgust["eye_aperture"] < rest["eye_aperture"] < anger["eye_aperture"]


def test_blending_is_continuous_around_the_circle():
    angles = np.linspace(0.0, 360.0, 3601)
    vectors = np.array([[expression_units(*angle_to_va(a, 1.0))[au] for au in AU_NAMES]
                        for a in angles])
    assert np.abs(np.diff(vectors, axis=0)).max() < 0.02       # 0.1 degree steps
    np.testing.assert_allclose(vectors[0], vectors[-1], atol=1e-9)
    assert all(v == 0.0 for v in expression_units(0.0, 0.0).values())


# ----------------------------------------------------------------------------- vocabulary

def test_basic_emotions_carry_their_published_points():
    basics = {e.key: e for e in basic_emotions()}
    assert set(basics) == {"happiness", "sadness", "anger", "fear", "surprise", "disgust",
                           "contempt"}
    assert basics["anger"].point == (-0.51, 0.59)
    assert all("Russell & Mehrabian (1977)" in e.source for k, e in basics.items()
               if k != "contempt")
    # contempt: Warriner et al. (2013), lemma "contempt", valence 3.22 and arousal 4.61 on 1-9
    assert "Warriner, Kuperman & Brysbaert (2013)" in basics["contempt"].source
    assert basics["contempt"].point == pytest.approx(((3.22 - 5) / 4, (4.61 - 5) / 4))
    assert emotion_by_name("contemptuous") == basics["contempt"]
    assert emotion_by_name("fearful") == emotion_by_name("FEAR")
    v, a = emotion_by_name("disgusted").target_va(0.5)      # half the unit vector toward it
    assert (v, a) == pytest.approx(0.5 * np.array([-0.60, 0.35]) / np.hypot(0.60, 0.35))
    assert emotion_by_name("Angry") in named_emotions()       # a display name names itself
    assert emotion_by_name("circumplex:angry") in named_emotions()


@pytest.mark.parametrize("typo", ["disgustd", "digusted", "disgustet", "angr", "sadnes",
                                  "feerful", "afriad", "miserble", "depresed"])
def test_did_you_mean_never_proposes_the_opposite_valence(typo):
    unpleasant = suggest_emotion(typo)
    assert unpleasant is None or emotion_by_name(unpleasant).unit_va[0] < 0, unpleasant


def test_unknown_emotion_hints_in_a_protocol():
    def problem(name):
        with pytest.raises(stimgen.errors.ProtocolError) as err:
            protocol_from_text(f"study: {{name: x}}\nidentities: [{{id: a, seed: 1}}]\n"
                               f"targets: {{emotions: [{name}]}}\n")
        return str(err.value)
    assert "delighted" not in problem("disgustd")
    assert 'did you mean "disgusted"' in problem("disgustd")
    assert "neutral: true" in problem("neutral")
    assert "content" not in problem("contnt")     # content or contempt: no guess


# ----------------------------------------------------------------------------- build

def test_basic_emotion_names_build_with_action_unit_columns(tmp_path):
    protocol = Protocol.model_validate({
        "study": {"name": "basic"}, "identities": [{"id": "id01", "seed": 3}],
        "targets": {"emotions": ["anger", "fearful", "surprised", "disgusted", "happiness",
                                 "sadness", "circumplex:angry", "contemptuous"],
                    "intensities": [1.0],
                    "neutral": True},
        "output": {"image_size": 128}})
    stimgen.build(protocol, out=tmp_path / "b", progress=False, jobs=1)
    table = pd.read_csv(tmp_path / "b" / "stimuli.tsv", sep="\t").set_index("emotion")
    assert set(AU_NAMES) <= set(table.columns)
    assert table.loc["Anger", "AU04"] == pytest.approx(1.0)
    direction = table.loc["Anger", ["target_valence", "target_arousal"]].to_numpy(float)
    np.testing.assert_allclose(direction, np.array([-0.51, 0.59]) / np.hypot(0.51, 0.59), atol=1e-5)
    assert table.loc["Fear", "AU20"] == pytest.approx(1.0)
    assert table.loc["Surprise", "AU26"] == pytest.approx(1.0)
    assert table.loc["Disgust", "AU09"] == pytest.approx(1.0)
    assert table.loc["Contempt", "AU14"] == pytest.approx(1.0)
    assert (table.drop(index="Contempt")["AU14"] == 0.0).all()
    assert table.loc["neutral", list(AU_NAMES)].sum() == 0.0
    # the circumplex "Angry" and the basic "Anger" show the same prototype
    assert table.loc["Angry", list(AU_NAMES)].tolist() == table.loc["Anger", list(AU_NAMES)].tolist()
    report = (tmp_path / "b" / "report.html").read_text(encoding="utf-8")
    assert 'id="table-au-profile"' in report


# ----------------------------------------------------------------------------- confusability

def _categorization(choices, emotions=None):
    return Protocol.model_validate({
        "study": {"name": "c"}, "identities": [{"id": "a", "seed": 1}, {"id": "b", "seed": 2}],
        "targets": {"emotions": emotions or choices, "intensities": [1.0]},
        "experiment": {"task": {"type": "categorization", "choices": choices}}})


def test_near_identical_choices_get_the_confusability_warning():
    plan = plan_experiment(_categorization(["sad", "gloomy", "angry", "afraid"]))
    messages = [w.message for w in plan.warnings if w.field == "experiment.task.choices"]
    assert len(messages) == 1
    assert '"sad" and "gloomy"' in messages[0] or '"gloomy" and "sad"' in messages[0]


def test_distinct_prototypes_get_no_confusability_warning():
    plan = plan_experiment(_categorization(["angry", "afraid", "astonished", "happy", "sad",
                                            "disgust"]))
    assert not [w for w in plan.warnings if w.field == "experiment.task.choices"]


def test_choices_naming_the_targets_by_other_names_are_checked_for_confusability():
    # "sad" answers Sadness, "fearful" Fear, "angry" Anger: the plan resolves every answer and
    # still finds the one near-identical pair (the sadness prototype and gloomy, 209 degrees)
    plan = plan_experiment(_categorization(["sad", "gloomy", "angry", "fearful"],
                                           emotions=["Sadness", "Gloomy", "Anger", "Fear"]))
    answers = plan.design.table.drop_duplicates("emotion").set_index("emotion")["correct_label"]
    assert answers.to_dict() == {"Sadness": "sad", "Gloomy": "gloomy", "Anger": "angry",
                                 "Fear": "fearful"}
    messages = [w.message for w in plan.warnings if w.field == "experiment.task.choices"]
    assert len(messages) == 1 and '"sad"' in messages[0] and '"gloomy"' in messages[0]
