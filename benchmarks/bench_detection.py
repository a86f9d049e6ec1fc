"""Time of the embedded MTCNN face detector per photo, on PsychoPy's demo photos.

Run: ``python benchmarks/bench_detection.py [--repeats 5] [--device cpu] [photo ...]``.
Prints, per photo, seconds per detection (median of the repeats) split by cascade stage,
the faces found, and the ratio to decoding the same photo (the baseline, measured in the
same run). Without photo arguments it uses face01.jpg and party.jpg from PsychoPy's demos.
"""
from __future__ import annotations

import argparse
import importlib.util
import math
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from stimgen.photos import load_photo
from stimgen.detection import detect_faces, load_detector
from stimgen.nets import mtcnn as cascade


def demo_photos(names=("face01.jpg", "party.jpg")) -> list[Path]:
    spec = importlib.util.find_spec("psychopy")
    if spec is None or spec.origin is None:
        raise SystemExit("PsychoPy is not installed: pass photo paths instead")
    demos = Path(spec.origin).parent / "demos"
    return [sorted(demos.rglob(name))[0] for name in names]


def timed(function, repeats: int) -> tuple[float, object]:
    """Median seconds of ``repeats`` calls, and the last result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


@torch.no_grad()
def stage_times(image: np.ndarray, device: str) -> dict[str, float]:
    """Seconds in each cascade stage for one run with the published settings."""
    nets = load_detector(device)
    photo = Image.fromarray(image)
    scales = cascade.pyramid_scales(*image.shape[:2])
    times = {}
    start = time.perf_counter()
    boxes = cascade._propose(nets, photo, scales, cascade.THRESHOLDS[0])
    times["PNet (pyramid)"] = time.perf_counter() - start
    start = time.perf_counter()
    if len(boxes):
        boxes = cascade._refine(nets, photo, boxes, cascade.THRESHOLDS[1])
    times["RNet"] = time.perf_counter() - start
    start = time.perf_counter()
    if len(boxes):
        cascade._output(nets, photo, boxes, cascade.THRESHOLDS[2])
    times["ONet"] = time.perf_counter() - start
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", nargs="*", type=Path)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    photos = args.photos or demo_photos()

    load_detector.cache_clear()
    start = time.perf_counter()
    load_detector(args.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}")
    print(f"loading the detector (hash check + weights_only load): "
          f"{time.perf_counter() - start:.3f} s, once per process")
    for path in photos:
        decode, image = timed(lambda: load_photo(path), args.repeats)
        detect_faces(image, device=args.device)            # warm-up
        seconds, faces = timed(lambda: detect_faces(image, device=args.device), args.repeats)
        stages = stage_times(image, args.device)
        height, width = image.shape[:2]
        print(f"\n{path.name}: {width}x{height} px, {len(faces)} face(s), "
              f"{len(cascade.pyramid_scales(height, width))} pyramid levels")
        print(f"  detect_faces: {seconds:.3f} s per photo (median of {args.repeats}); "
              f"{seconds / decode:.1f}x the {decode * 1000:.0f} ms it takes to decode the photo")
        print("  stages: " + ", ".join(f"{name} {value:.3f} s" for name, value in stages.items()))
        for face in faces:
            print(f"    box {face.box_text()}  score {face.score:.4f}  side "
                  f"{math.sqrt(face.area):.0f} px")


if __name__ == "__main__":
    main()
