"""Tests of the schematic backend: identities, the VA -> action-unit map, landmarks and pixels."""
from __future__ import annotations

import dataclasses
import io
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stimgen.backends.schematic import (
    AU_NAMES, BLEND_ANGLES, HAIR_STYLES, PROTOTYPES, ExpressionRangeError, SchematicBackend,
    expression_units, face_landmarks, render_face, sample_identity)
from stimgen.backends.schematic import RenderSettingsError
from stimgen.errors import StimgenError
from stimgen.raters.geometric import action_measurements

va = st.floats(-1.0, 1.0, allow_nan=False)


def png_bytes(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# ----------------------------------------------------------------------------- identities

def test_same_seed_draws_byte_identical_png():
    first = render_face(sample_identity(42), 0.4, 0.6, size=256)
    second = render_face(sample_identity(42), 0.4, 0.6, size=256)
    assert png_bytes(first.image) == png_bytes(second.image)
    np.testing.assert_array_equal(first.landmarks, second.landmarks)


def test_different_seeds_are_different_people():
    a, b = sample_identity(1), sample_identity(2)
    numeric = [f.name for f in dataclasses.fields(a) if isinstance(getattr(a, f.name), float)]
    changed = [n for n in numeric if not math.isclose(getattr(a, n), getattr(b, n))]
    assert len(changed) >= len(numeric) - 1
    pixels = [np.asarray(render_face(s, 0.0, 0.0, size=128).image, dtype=float) for s in (a, b)]
    assert np.abs(pixels[0] - pixels[1]).mean() > 5.0


def test_identities_span_skin_tones_and_hair_styles():
    people = [sample_identity(seed) for seed in range(60)]
    tones = [p.skin_tone for p in people]
    assert min(tones) < 0.1 and max(tones) > 0.9
    assert len({p.hair_style for p in people}) >= 6
    assert {p.hair_style for p in people} <= set(HAIR_STYLES)
    assert len({p.iris for p in people}) >= 4


# ----------------------------------------------------------------------------- VA -> actions

def test_neutral_shows_no_action_and_poles_show_the_expected_ones():
    assert all(v == 0.0 for v in expression_units(0.0, 0.0).values())
    happy, sad = expression_units(1.0, 0.0), expression_units(-0.88, -0.47)
    assert happy["AU12"] > 0.85 and happy["AU15"] == 0.0
    assert sad["AU15"] > 0.85 and sad["AU01"] > 0.85
    aroused, tired = expression_units(0.0, 1.0), expression_units(0.0, -1.0)
    # 90 degrees blends surprise (5B = 0.4) and anger (5 at 0.6)
    assert aroused["AU26"] > 0.25 and aroused["AU05"] > 0.45
    assert tired["AU43"] > 0.8 and tired["AU26"] == 0.0
    angry = expression_units(-0.16, 0.99)
    assert angry["AU04"] > 0.8 > angry["AU02"]


def _lipschitz_bound() -> float:
    """Steepest change of the blend per unit of VA distance: radial (at most 1 per unit) and
    around the circle (the largest AU change between neighbouring prototypes over their
    angular distance in radians)."""
    order = sorted(BLEND_ANGLES.items(), key=lambda item: item[1])
    steepest = 0.0
    for (first, a0), (second, a1) in zip(order, order[1:] + order[:1]):
        span = math.radians((a1 - a0) % 360.0)
        change = max(abs(PROTOTYPES[first].units.get(au, 0.0) - PROTOTYPES[second].units.get(au, 0.0))
                     for au in AU_NAMES)
        steepest = max(steepest, change / span)
    return math.sqrt(1.0 + steepest**2)


@settings(max_examples=300, deadline=None)
@given(v=va, a=va)
def test_actions_are_named_and_bounded(v, a):
    actions = expression_units(v, a)
    assert tuple(actions) == AU_NAMES
    assert all(0.0 <= s <= 1.0 for s in actions.values())


@settings(max_examples=300, deadline=None)
@given(v1=va, a1=va, dv=st.floats(-0.05, 0.05), da=st.floats(-0.05, 0.05))
def test_actions_are_lipschitz_continuous(v1, a1, dv, da):
    v2, a2 = float(np.clip(v1 + dv, -1, 1)), float(np.clip(a1 + da, -1, 1))
    step = math.hypot(v2 - v1, a2 - a1)
    first, second = expression_units(v1, a1), expression_units(v2, a2)
    bound = _lipschitz_bound() * step
    for name in AU_NAMES:
        assert abs(first[name] - second[name]) <= bound + 1e-12, name


@settings(max_examples=200, deadline=None)
@given(angle=st.floats(0, 360), intensity=st.floats(0.01, 1.0), scale=st.floats(0.0, 1.0))
def test_intensity_scales_every_action(angle, intensity, scale):
    v, a = intensity * math.cos(math.radians(angle)), intensity * math.sin(math.radians(angle))
    full, scaled = expression_units(v, a), expression_units(v * scale, a * scale)
    for name in AU_NAMES:
        assert scaled[name] == pytest.approx(scale * full[name], abs=1e-9)


@pytest.mark.parametrize("v, a", [(1.2, 0.0), (0.0, -1.01), (float("nan"), 0.0)])
def test_out_of_range_va_is_a_user_error(v, a):
    with pytest.raises(ExpressionRangeError, match=r"\[-1, 1\]") as info:
        expression_units(v, a)
    assert isinstance(info.value, StimgenError)


# ----------------------------------------------------------------------------- landmarks

@pytest.mark.parametrize("seed, v, a", [(0, 0.0, 0.0), (3, 0.9, 0.4), (8, -0.5, 0.85), (9, 0.1, -1.0)])
def test_landmarks_follow_ibug_order_inside_the_image(seed, v, a):
    face = render_face(sample_identity(seed), v, a, size=300)
    p = face.landmarks
    assert p.shape == (68, 2) and p.dtype == np.float64
    assert (p >= 0).all() and (p < 300).all()
    x, y = p[:, 0], p[:, 1]
    assert x[36] < x[39] < x[42] < x[45]                      # eye corners left to right
    assert y[37] < y[41] and y[44] < y[46]                    # upper lids above lower lids
    assert x[17] < x[21] < x[22] < x[26]                      # brows left to right
    assert y[17:27].max() < y[36:48].min()                    # brows above the eyes
    assert np.all(np.diff(y[27:31]) > 0)                      # nose bridge runs down to the tip
    assert x[31] < x[33] < x[35] and y[30] < y[33]
    assert x[48] < x[51] < x[54] and x[48] < x[57] < x[54]    # mouth corners 48 (left), 54
    assert y[51] <= y[62] <= y[66] <= y[57]                   # upper lip above lower lip
    assert y[33] < y[51] and y[57] < y[8]                     # nose, mouth, chin
    assert np.argmax(y[:17]) == 8 and x[0] == x[:17].min() and x[16] == x[:17].max()


def _colour_at(image, point):
    return np.asarray(image, dtype=float)[int(round(point[1])), int(round(point[0]))]


@pytest.mark.parametrize("seed", [0, 3, 12])
def test_landmarks_sit_on_the_drawn_contours(seed):
    person = sample_identity(seed)
    face = render_face(person, 0.5, 0.5, size=512)
    p, image = face.landmarks, face.image
    for i in range(17, 27):   # brows are drawn around their landmarks
        assert np.abs(_colour_at(image, p[i]) - person.brow).max() < 40, i
    centre = p[30]
    for i in range(17):       # jaw points lie on the drawn face outline, skin just inside
        inward = (centre - p[i]) / np.linalg.norm(centre - p[i])
        inside = _colour_at(image, p[i] + 5 * inward)
        assert np.abs(inside - person.skin).max() < 12, i
        assert np.abs(_colour_at(image, p[i]) - inside).sum() > 12, i   # the outline stroke
    for i in (51, 57):        # lip centres lie on the lip border: lip colour on the inner side
        inner = p[i] + (0, 3 if i == 51 else -3)
        assert np.abs(_colour_at(image, inner) - person.lips).max() < 40, i


def test_face_landmarks_match_render_face_without_drawing():
    person = sample_identity(6)
    np.testing.assert_allclose(face_landmarks(person, -0.2, 0.3, size=256),
                               render_face(person, -0.2, 0.3, size=256).landmarks)


def test_expressions_move_landmarks_monotonically():
    person = sample_identity(5)
    def measure(v, a):
        return action_measurements(face_landmarks(person, v, a))
    valences = [measure(v, 0.0)["lip_corner_height"] for v in np.linspace(-1, 1, 9)]
    assert np.all(np.diff(valences) > 0)
    arousal = [measure(0.0, a) for a in np.linspace(-1, 1, 9)]
    # lids close steadily toward low arousal (AU43); at 90 degrees the face blends surprise
    # with anger, whose lid tightening (AU7) offsets the widening (AU5), so the eyes are
    # widest toward surprise (70 degrees), not straight up
    apertures = [m["eye_aperture"] for m in arousal]
    assert np.all(np.diff(apertures[:5]) > 0)
    assert measure(0.34, 0.94)["eye_aperture"] > apertures[4] + 0.02
    # the mouth opens with arousal (sleepiness only slackens the lips, AU25 0.2)
    assert np.all(np.diff([m["mouth_opening"] for m in arousal[4:]]) >= 0)
    assert measure(0.34, 0.94)["mouth_opening"] > 0.1 > arousal[0]["mouth_opening"]
    assert measure(0.3, 0.9)["brow_height"] > measure(0.0, 0.0)["brow_height"]
    assert measure(-0.16, 0.99)["brow_height"] < measure(0.0, 0.0)["brow_height"]   # Angry, 99 deg
    assert measure(-0.85, -0.5)["brow_obliqueness"] > measure(0.0, 0.0)["brow_obliqueness"]


# ----------------------------------------------------------------------------- backend

def test_backend_renders_at_its_size_on_its_background():
    backend = SchematicBackend(image_size=160, supersample=1, background=(90, 100, 110))
    person = backend.identity_from_seed(7)
    assert person == sample_identity(7) and backend.name == "schematic"
    face = backend.render(person, -0.3, 0.2)
    assert face.image.size == (160, 160) and face.image.mode == "RGB"
    assert face.image.getpixel((0, 0)) == (90, 100, 110)
    assert face.landmarks[:, 0].max() < 160


def test_default_background_is_neutral_grey():
    face = render_face(sample_identity(1), 0.0, 0.0, size=96)
    assert face.image.getpixel((1, 1)) == (128, 128, 128)


@pytest.mark.parametrize("kwargs", [{"image_size": 10}, {"supersample": 9},
                                    {"background": (300, 0, 0)}, {"background": (1, 2)}])
def test_bad_render_settings_are_user_errors(kwargs):
    with pytest.raises(RenderSettingsError):
        SchematicBackend(**kwargs)
