"""From a point of the valence-arousal circumplex to facial-action strengths (FACS-like).

Each action has a preferred circumplex angle and a tuning width; its strength is the
target's intensity times a cosine lobe around that angle, so intensity scales every action.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from stimgen.errors import StimgenError


class ExpressionRangeError(StimgenError, ValueError):
    """A valence or arousal outside the circumplex square [-1, 1]."""


@dataclass(frozen=True)
class ActionTuning:
    """How one facial action responds to the direction of a VA target."""

    au: str              # FACS action unit(s) this proxy stands for
    angle: float         # preferred circumplex angle, degrees (0 pleasant, 90 aroused)
    sharpness: float     # exponent p of the cosine lobe; larger = narrower tuning
    gain: float          # strength at the preferred angle and intensity 1 (before clipping)


#: The action proxies the schematic face can show, each strength in [0, 1].
ACTION_TUNINGS: dict[str, ActionTuning] = {
    "lip_corner_raise":   ActionTuning("AU12",        0.0, 1.0, 1.0),   # smile
    "cheek_raise":        ActionTuning("AU6",        15.0, 2.0, 0.9),   # Duchenne narrowing
    "mouth_open":         ActionTuning("AU25/26/27", 80.0, 1.5, 1.0),   # lips part, jaw drops
    "upper_lid_raise":    ActionTuning("AU5",        95.0, 1.5, 1.0),   # eyes widen
    "brow_raise":         ActionTuning("AU1+2",      60.0, 2.5, 1.0),   # surprise brows
    "lip_stretch":        ActionTuning("AU20",      120.0, 2.0, 0.8),   # fear mouth
    "brow_lower":         ActionTuning("AU4",       140.0, 1.5, 1.0),   # anger / distress
    "lip_corner_depress": ActionTuning("AU15",      200.0, 1.0, 1.0),   # sad mouth
    "inner_brow_raise":   ActionTuning("AU1",       215.0, 1.5, 1.0),   # sad brows
    "lid_droop":          ActionTuning("AU43",      270.0, 1.5, 0.9),   # tired, sleepy lids
}

ACTION_NAMES: tuple[str, ...] = tuple(ACTION_TUNINGS)


def check_va(valence: float, arousal: float) -> tuple[float, float]:
    """Return (valence, arousal) as floats, or raise ExpressionRangeError naming the bad value."""
    out = []
    for name, value in (("valence", valence), ("arousal", arousal)):
        value = float(value)
        if not math.isfinite(value) or not -1.0 <= value <= 1.0:
            raise ExpressionRangeError(
                f"{name} = {value!r} is outside the circumplex square [-1, 1]",
                hint="targets are intensity * (cos angle, sin angle) with intensity in (0, 1]")
        out.append(value)
    return out[0], out[1]


def expression_actions(valence: float, arousal: float) -> dict[str, float]:
    """Strength of every facial action (see ``ACTION_TUNINGS``) for a VA target.

    With intensity r = |(v, a)| and direction theta, action k has strength

        clip(gain_k * r * max(0, cos(theta - angle_k)) ** p_k, 0, 1)

    so the neutral face (0, 0) shows no action, strengths grow linearly with intensity,
    and the map is continuous everywhere (Lipschitz with constant gain * sqrt(1 + p**2)).
    For p = 1 the lobe is the positive part of a projection: AU12 = max(0, valence).

    >>> actions = expression_actions(1.0, 0.0)
    >>> actions["lip_corner_raise"], actions["lip_corner_depress"]
    (1.0, 0.0)
    """
    valence, arousal = check_va(valence, arousal)
    radius = math.hypot(valence, arousal)
    if radius == 0.0:
        return {name: 0.0 for name in ACTION_TUNINGS}
    actions = {}
    for name, tuning in ACTION_TUNINGS.items():
        rad = math.radians(tuning.angle)
        cosine = (valence * math.cos(rad) + arousal * math.sin(rad)) / radius
        strength = tuning.gain * radius * max(0.0, cosine) ** tuning.sharpness
        actions[name] = min(1.0, strength)
    return actions
