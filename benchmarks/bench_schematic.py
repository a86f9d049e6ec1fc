"""Throughput of the schematic backend and the geometric rater, and a contact sheet to eyeball.

Run: ``python benchmarks/bench_schematic.py [--faces 200] [--sheet /tmp/schematic_sheet.png]``.
Prints ms per face and faces/s for rendering (with and without PNG encoding) and rating,
against a baseline measured in the same run (an empty image of the same size, encoded).
``--calibrate`` re-runs the offline fit behind the geometric rater's coefficients and its
accuracy report (about a minute). ``--limits`` measures how the geometric rater reads the
named basic emotions (drawn as FACS prototypes), the numbers of stimgen/raters/limits.py, and
what a calibration that includes the prototypes would trade (docs/raters.md, "Basic emotions").
"""
from __future__ import annotations

import argparse
import io
import time

import numpy as np
from PIL import Image, ImageDraw

from stimgen.backends.schematic import render_face, sample_identity
from stimgen.backends.schematic import face_landmarks
from stimgen.circumplex import angle_to_va, basic_emotions, emotion_by_name, named_emotions
from stimgen.raters.geometric import GeometricModel, fit_coefficients, measurement_array

SHEET_EMOTIONS = ("neutral", "happy", "excited", "afraid", "angry", "sad", "tired", "calm")


def contact_sheet(seeds, emotions=SHEET_EMOTIONS, size: int = 256, intensity: float = 1.0,
                  rater: GeometricModel | None = None) -> Image.Image:
    """Grid of faces: one row per seed, one column per named emotion (plus "neutral").

    Each cell is labelled with the emotion and, if ``rater`` is given, its VA estimate.
    """
    cells = []
    for seed in seeds:
        identity = sample_identity(seed)
        neutral = render_face(identity, 0.0, 0.0, size)
        row = []
        for name in emotions:
            va = (0.0, 0.0) if name == "neutral" else angle_to_va(emotion_by_name(name).angle, intensity)
            face = render_face(identity, *va, size)
            label = f"{name} ({va[0]:+.2f},{va[1]:+.2f})"
            if rater is not None:
                est = rater.rate(face.landmarks, neutral.landmarks)
                label += f" -> ({est[0]:+.2f},{est[1]:+.2f})"
            draw = ImageDraw.Draw(face.image)
            draw.text((4, 4), label, fill=(255, 255, 255))
            row.append(face.image)
        cells.append(row)
    sheet = Image.new("RGB", (size * len(emotions), size * len(seeds)))
    for r, row in enumerate(cells):
        for c, image in enumerate(row):
            sheet.paste(image, (c * size, r * size))
    return sheet


def calibration_targets(seed: int, random_points: int = 28) -> np.ndarray:
    """VA points for one identity: the 28 named emotions x 4 intensities, plus
    ``random_points`` uniform in the unit disc (drawn from ``seed``)."""
    grid = [angle_to_va(e.angle, r) for e in named_emotions() for r in (0.25, 0.5, 0.75, 1.0)]
    rng = np.random.default_rng(seed)
    radius, theta = np.sqrt(rng.uniform(0, 1, random_points)), rng.uniform(0, 2 * np.pi, random_points)
    return np.concatenate([np.array(grid), np.stack([radius * np.cos(theta), radius * np.sin(theta)], 1)])


def calibration_set(seeds, random_points: int = 28):
    """(measurements [N, M], own-neutral measurements [N, M], targets [N, 2]) over ``seeds``."""
    measured, neutral, targets = [], [], []
    for seed in seeds:
        identity = sample_identity(seed)
        va = calibration_targets(seed, random_points)
        m = measurement_array(np.stack([face_landmarks(identity, v, a) for v, a in va]))
        measured.append(m)
        neutral.append(np.broadcast_to(measurement_array(face_landmarks(identity, 0.0, 0.0)), m.shape))
        targets.append(va)
    return np.concatenate(measured), np.concatenate(neutral), np.concatenate(targets)


def calibrate(fit_seeds=range(1000, 1160), test_seeds=range(2000, 2040)) -> None:
    """Fit the geometric rater on schematic faces and report its accuracy on held-out seeds."""
    measured, neutral, targets = calibration_set(fit_seeds)
    population = neutral[:: len(calibration_targets(0))].mean(axis=0)
    relative = fit_coefficients(measured, neutral, targets)
    absolute = fit_coefficients(measured, np.broadcast_to(population, measured.shape), targets)
    np.set_printoptions(precision=4, suppress=True, floatmode="fixed")
    print("RELATIVE_COEFFICIENTS =", repr(relative))
    print("ABSOLUTE_COEFFICIENTS =", repr(absolute))
    print("POPULATION_NEUTRAL =", repr(population))
    rater = GeometricModel(relative, absolute, population)
    measured, neutral, targets = calibration_set(test_seeds, random_points=0)
    for label, estimate in (("with neutral", rater.estimate(measured, neutral)),
                            ("no neutral", rater.estimate(measured, None))):
        distance = np.linalg.norm(estimate - targets, axis=1)
        print(f"held-out seeds {test_seeds}, {label}: distance MAE {distance.mean():.3f}, "
              f"valence MAE {np.abs(estimate[:, 0] - targets[:, 0]).mean():.3f}, "
              f"arousal MAE {np.abs(estimate[:, 1] - targets[:, 1]).mean():.3f}")
        per_emotion = distance.reshape(len(test_seeds), 28, 4).mean(axis=(0, 2))
        print("  per emotion:", ", ".join(f"{e.name} {d:.2f}" for e, d in zip(named_emotions(), per_emotion)))
        print("  per intensity 0.25/0.5/0.75/1:", distance.reshape(-1, 28, 4).mean(axis=(0, 1)).round(3))


def prototype_set(seeds, intensities=(0.25, 0.5, 0.75, 1.0)):
    """(measurements, own-neutral measurements, targets, emotion keys) of the named basic
    emotions drawn as their prototypes, as a build draws them, over ``seeds``."""
    measured, neutral, targets, keys = [], [], [], []
    for seed in seeds:
        identity = sample_identity(seed)
        rest = measurement_array(face_landmarks(identity, 0.0, 0.0))
        for emotion in basic_emotions():
            for r in intensities:
                va = emotion.target_va(r)
                measured.append(measurement_array(
                    face_landmarks(identity, *va, prototype=emotion.prototype)))
                neutral.append(rest), targets.append(va), keys.append(emotion.key)
    return np.array(measured), np.array(neutral), np.array(targets), np.array(keys)


def limits(fit_seeds=range(1000, 1040), test_seeds=range(2000, 2040)) -> None:
    """The geometric rater on the basic-emotion prototypes: distance per emotion at intensity 1
    (KNOWN_LIMITS), then held-out MAE of blends and prototypes for fits without and with the
    prototype faces (weights 1 and 3)."""
    measured, neutral, targets, keys = prototype_set(test_seeds, (1.0,))
    distance = np.linalg.norm(GeometricModel().estimate(measured, neutral) - targets, axis=1)
    print(f"shipped coefficients, seeds {test_seeds}, intensity 1, mean (max) distance:")
    for key in dict.fromkeys(keys):
        print(f"  {key:10s} {distance[keys == key].mean():.2f} ({distance[keys == key].max():.2f})")
    blends, prototypes = calibration_set(fit_seeds), prototype_set(fit_seeds)[:3]
    held_blends, held_prototypes = calibration_set(test_seeds, 0), prototype_set(test_seeds)
    for weight in (0, 1, 3):
        parts = [blends] + [prototypes] * weight
        model = GeometricModel(fit_coefficients(*(np.concatenate(p) for p in zip(*parts))))
        errors = [np.linalg.norm(model.estimate(m, n) - t, axis=1).mean()
                  for m, n, t in (held_blends, held_prototypes[:3])]
        print(f"fit on blends + prototypes x{weight} (seeds {fit_seeds}): held-out distance MAE "
              f"blends {errors[0]:.3f}, prototypes {errors[1]:.3f}")


def _timed(fn, repeats: int) -> float:
    start = time.perf_counter()
    for i in range(repeats):
        fn(i)
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--faces", type=int, default=200, help="faces to time per measurement")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--sheet", default="/tmp/schematic_sheet.png", help="contact sheet path ('' = none)")
    parser.add_argument("--calibrate", action="store_true", help="re-fit the geometric rater")
    parser.add_argument("--limits", action="store_true",
                        help="measure the geometric rater on the basic-emotion prototypes")
    args = parser.parse_args()
    if args.calibrate:
        calibrate()
        return
    if args.limits:
        limits()
        return

    identities = [sample_identity(seed) for seed in range(8)]
    angles = np.linspace(0.0, 360.0, args.faces, endpoint=False)

    def render(i):
        v, a = angle_to_va(angles[i], 0.25 + 0.75 * (i % 4) / 3)
        return render_face(identities[i % 8], v, a, args.size)

    def render_png(i):
        render(i).image.save(io.BytesIO(), format="PNG")

    def baseline(i):
        Image.new("RGB", (args.size, args.size), (128, 128, 128)).save(io.BytesIO(), format="PNG")

    render(0)  # warm caches
    faces = [render(i) for i in range(args.faces)]
    landmarks = np.stack([f.landmarks for f in faces])
    rater = GeometricModel()

    t_base = _timed(baseline, args.faces)
    t_render = _timed(render, args.faces)
    t_png = _timed(render_png, args.faces)
    start = time.perf_counter()
    rater.rate_many(landmarks, landmarks[:1].repeat(len(landmarks), 0))
    t_rate = (time.perf_counter() - start) / args.faces

    print(f"schematic {args.size}px, {args.faces} faces, one core")
    print(f"  baseline (blank image + PNG): {t_base * 1e3:7.2f} ms/face")
    print(f"  render_face:                  {t_render * 1e3:7.2f} ms/face  {1 / t_render:7.1f} faces/s")
    print(f"  render_face + PNG encode:     {t_png * 1e3:7.2f} ms/face  {1 / t_png:7.1f} faces/s"
          f"  ({t_png / t_base:.1f}x baseline)")
    print(f"  geometric rate_many:          {t_rate * 1e6:7.2f} us/face  {1 / t_rate:7.0f} faces/s")
    demo = 4 * (28 * 4 + 1)
    print(f"  demo estimate ({demo} stimuli, 1 core): {demo * (t_png + t_rate):.1f} s")
    if args.sheet:
        contact_sheet(range(4), rater=rater).save(args.sheet)
        print(f"  contact sheet: {args.sheet}")


if __name__ == "__main__":
    main()
