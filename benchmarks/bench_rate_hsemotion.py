"""`stimgen rate --rater hsemotion` against HSEmotion's own package, end to end (issue 30).

Both programs rate the same face crops with the same ONNX file, each in a fresh Python
process started from this one (so interpreter start, imports, model loading, decoding,
preprocessing, inference and writing the table all count):

- stimgen: ``stimgen rate --rater hsemotion --framing full --weights MODEL -o OUT FOLDER``
  (which also measures every crop's sharpness);
- the baseline: the authors' ``hsemotion-onnx`` package (PyPI; it ships no weights and
  loads ``~/.hsemotion/enet_b0_8_va_mtl.onnx``, so its HOME points at a folder holding our
  file), used as its README shows: ``cv2.imread``, BGR to RGB, ``predict_multi_emotions``
  32 faces at a time, the categories, probabilities, valence and arousal written to a TSV.

The runs alternate (stimgen first, then the baseline first), and the ratio of the median
wall times is printed with CPU time, peak memory and the agreement of the two tables.

The faces: PsychoPy's demo face photos (inside its wheel), cropped and resized at random
(seeded) into a temporary folder: ``--images`` crops, 64-700 pixels wide, 4 in 5 JPEG.
The network: a random ONNX file with the published interface (input ``input`` float32
[N, 3, 224, 224], output [N, 10]): ``--model linear`` (each output a random linear function
of the pixels, as the tests build; the network is then negligible and everything else is
measured) or ``--model b0`` (an EfficientNet-B0-like network, about the compute of the real
one, exported with torch). Neither is, or stands for, real weights.

    python benchmarks/bench_rate_hsemotion.py [--images 420] [--repeats 3] [--model linear]

Needs ``pip install hsemotion-onnx`` (it also needs opencv-python and onnx); requirements-test.txt
lists it.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
MODEL_NAME = "enet_b0_8_va_mtl"      # what hsemotion-onnx loads from ~/.hsemotion
BATCH = 32

#: The baseline, as the package's README uses it (plus writing the table, as stimgen does).
BASELINE = '''
import csv, sys
from pathlib import Path
import cv2
from hsemotion_onnx.facial_emotions import HSEmotionRecognizer

folder, out = Path(sys.argv[1]), sys.argv[2]
recognizer = HSEmotionRecognizer(model_name="enet_b0_8_va_mtl")
files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".png"))
names = list(recognizer.idx_to_class.values())
with open(out, "w", newline="") as handle:
    writer = csv.writer(handle, delimiter="\\t")
    writer.writerow(["file", "category", *[f"p_{n.lower()}" for n in names], "valence", "arousal"])
    for start in range(0, len(files), 32):
        batch = files[start:start + 32]
        faces = [cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB) for f in batch]
        categories, scores = recognizer.predict_multi_emotions(faces, logits=False)
        for path, category, row in zip(batch, categories, scores):
            writer.writerow([str(path), category.lower(), *[f"{v:.6g}" for v in row]])
'''


# ----------------------------------------------------------------------------- inputs

def demo_photos() -> list[Path]:
    spec = importlib.util.find_spec("psychopy")
    if spec is None or spec.origin is None:
        raise SystemExit("PsychoPy is not installed: its demo face photos are the test images")
    photos = sorted((Path(spec.origin).parent / "demos").rglob("face*.jpg"))
    if not photos:
        raise SystemExit("no face*.jpg under PsychoPy's demos")
    return photos


def make_crops(folder: Path, count: int, seed: int = 0) -> None:
    """``count`` random crops of the demo faces, of varied size and aspect, JPEG and PNG."""
    rng = np.random.default_rng(seed)
    photos = [Image.open(p).convert("RGB") for p in demo_photos()]
    for i in range(count):
        photo = photos[i % len(photos)]
        width, height = photo.size
        fraction = rng.uniform(0.6, 1.0)
        crop_w = int(width * fraction)
        crop_h = min(height, int(height * fraction * rng.uniform(0.85, 1.15)))
        x0, y0 = rng.integers(0, width - crop_w + 1), rng.integers(0, height - crop_h + 1)
        crop = photo.crop((int(x0), int(y0), int(x0) + crop_w, int(y0) + crop_h))
        side = int(rng.choice([64, 96, 128, 160, 224, 256, 320, 400, 512, 700]))
        crop = crop.resize((side, max(16, side * crop_h // crop_w)), Image.BICUBIC)
        if i % 5 == 4:
            crop.save(folder / f"face{i:04d}.png")
        else:
            crop.save(folder / f"face{i:04d}.jpg", quality=90)


def linear_model(path: Path, seed: int = 1) -> None:
    """scores = flatten(input) @ W, W random: the published interface, negligible compute."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = np.random.default_rng(seed).normal(0, 1 / 3000, (3 * 224 * 224, 10))
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["flat"], axis=1),
         helper.make_node("MatMul", ["flat", "W"], ["scores"])], "random-linear",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 224, 224])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 10])],
        [numpy_helper.from_array(weights.astype(np.float32), "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def b0_model(path: Path) -> None:
    """An EfficientNet-B0-like network (benchmarks/rate_bench.py), random, exported."""
    sys.path.insert(0, str(Path(__file__).parent))
    from rate_bench import export

    export(path)


# ----------------------------------------------------------------------------- runs

def run(command: list[str], env: dict[str, str]) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user + system) and peak memory (MiB) of one process."""
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    stderr = process.stderr.read().decode(errors="replace")
    process.stderr.close()
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({process.returncode}):\n{stderr}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def agreement(ours: Path, theirs: Path) -> dict[str, float]:
    a = pd.read_csv(ours, sep="\t").set_index("file")
    b = pd.read_csv(theirs, sep="\t").set_index("file")
    b = b.loc[a.index]
    probabilities = [c for c in a.columns if c.startswith("p_")]
    return {"images": len(a),
            "valence": float((a["valence"] - b["valence"]).abs().max()),
            "arousal": float((a["arousal"] - b["arousal"]).abs().max()),
            "probabilities": float((a[probabilities] - b[probabilities]).abs().to_numpy().max()),
            "same_category": float((a["category"] == b["category"]).mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=420)
    parser.add_argument("--repeats", type=int, default=3, help="paired runs (median)")
    parser.add_argument("--model", choices=("linear", "b0"), default="linear")
    args = parser.parse_args()
    if importlib.util.find_spec("hsemotion_onnx") is None:
        raise SystemExit("the baseline needs HSEmotion's package: pip install hsemotion-onnx")
    with tempfile.TemporaryDirectory(prefix="stimgen-bench-rate-") as tmp:
        tmp = Path(tmp)
        images, home = tmp / "faces", tmp / "home"
        images.mkdir()
        (home / ".hsemotion").mkdir(parents=True)
        model = home / ".hsemotion" / f"{MODEL_NAME}.onnx"
        make_crops(images, args.images)
        (linear_model if args.model == "linear" else b0_model)(model)
        (tmp / "baseline.py").write_text(BASELINE)
        env = dict(os.environ, HOME=str(home),
                   PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
        commands = {
            "stimgen": [sys.executable, "-c", "import sys; from stimgen.cli import main; "
                        "sys.exit(main())", "rate", "--rater", "hsemotion", "--framing",
                        "full", "--weights", str(model), "-q", "-o", str(tmp / "stimgen.tsv"),
                        str(images)],
            "hsemotion-onnx": [sys.executable, str(tmp / "baseline.py"), str(images),
                               str(tmp / "hsemotion.tsv")],
        }
        sizes = [Image.open(p).size for p in images.iterdir()]
        print(f"{args.images} face crops ({min(s[0] for s in sizes)}-{max(s[0] for s in sizes)} "
              f"px wide) of PsychoPy's demo faces; random {args.model} ONNX "
              f"({model.stat().st_size / 1e6:.1f} MB); {os.cpu_count()} cores; "
              f"{args.repeats} paired runs")
        results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in commands}
        for repeat in range(args.repeats):
            order = list(commands) if repeat % 2 == 0 else list(commands)[::-1]
            for name in order:
                results[name].append(run(commands[name], env))
        match = agreement(tmp / "stimgen.tsv", tmp / "hsemotion.tsv")
    print(f"{'program':<16} {'wall s (median)':>16} {'CPU s':>7} {'peak MiB':>9}   all wall s")
    medians = {}
    for name, runs in results.items():
        walls = [r[0] for r in runs]
        medians[name] = statistics.median(walls)
        print(f"{name:<16} {medians[name]:>16.2f} {statistics.median(r[1] for r in runs):>7.2f} "
              f"{max(r[2] for r in runs):>9.0f}   {', '.join(f'{w:.2f}' for w in walls)}")
    paired = [a[0] / b[0] for a, b in zip(results["stimgen"], results["hsemotion-onnx"])]
    print(f"ratio stimgen / hsemotion-onnx: {medians['stimgen'] / medians['hsemotion-onnx']:.2f}x "
          f"(median walls; per pair: {', '.join(f'{r:.2f}' for r in paired)})")
    print(f"agreement on {match['images']} images: valence max |diff| {match['valence']:.2e}, "
          f"arousal {match['arousal']:.2e}, probabilities {match['probabilities']:.2e}, "
          f"same category {match['same_category']:.1%}")


if __name__ == "__main__":
    main()
