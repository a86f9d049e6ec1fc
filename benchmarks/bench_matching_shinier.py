"""Histogram matching, stimgen against shinier (the Python port of SHINE), on the same faces.

Builds 24 greyscale, oval-masked schematic faces (4 identities x the 6 basic emotions,
``--size`` pixels, unmatched), then matches their face regions (mask at 255) to one
histogram with:

- stimgen's ``output.match: histogram`` (stimgen.matching.histogram_match: monotone exact
  specification, ties in the order that keeps SSIM highest) as built by default, and with
  ``match_ssim_iterations: 10`` (ten of Avanaki's SSIM-gradient steps after it);
- random tie-breaking (SHINE's noise option; what stimgen did before issue 30), for reference;
- shinier ``mode=2`` (histMatch) with its defaults (``hist_specification=4``: Coltuc ordering
  with Gaussian filters, noise for the ties left) and with ``hist_optim=True`` (Avanaki's SSIM
  optimisation, 10 iterations), both with ``seed=0``, on the same faces and binary masks.

For each it prints the time, the exactness (largest difference between a face's region
histogram and the mean of the 24, in pixels: 0 or 1 is exact up to whole pixels), and the
mean SSIM of the matched faces to the unmatched ones: over the face region (the pixels
matching changed; Wang et al. 2004, Gaussian window, as stimuli.tsv's ``ssim_unmatched``),
over the whole image, and scikit-image's default (7 x 7 window, whole image) when installed.

    pip install shinier        # source only: needs a C++ compiler; not a stimgen dependency
    python benchmarks/bench_matching_shinier.py [--size 256] [--save-images DIR]

Without shinier the stimgen rows are printed alone.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

import stimgen
from stimgen.build_folder import MASKS_DIR, read_build_folder
from stimgen.matching import (histogram_match, histogram_target, specified_counts,
                              structural_similarity)

PROTOCOL = """
study: {{name: faces24, description: histogram matching benchmark, authors: [stimgen]}}
seed: 2024
backend: {{name: schematic}}
identities:
  - {{id: id01, seed: 4}}
  - {{id: id02, seed: 5}}
  - {{id: id03, seed: 6}}
  - {{id: id04, seed: 9}}
targets: {{emotions: [happiness, sadness, anger, fear, surprise, disgust], intensities: [1.0],
          neutral: false}}
validation: {{rater: geometric}}
output: {{image_size: {size}, format: png, greyscale: true, mask: oval, background: 128}}
"""


def faces24(folder: Path, size: int) -> tuple[list[str], list[np.ndarray], list[np.ndarray]]:
    """The 24 unmatched faces of a fresh build, their names and face regions."""
    protocol_file = folder / "faces24.yaml"
    protocol_file.write_text(PROTOCOL.format(size=size))
    out = folder / "build"
    stimgen.build(stimgen.load_protocol(protocol_file), out=out, progress=False)
    table = read_build_folder(out).stimuli
    names = [Path(f).stem for f in table["file"]]
    faces = [np.asarray(Image.open(out / f).convert("L")) for f in table["file"]]
    regions = [np.asarray(Image.open(out / MASKS_DIR / f"{i}.png")) == 255
               for i in table["identity"]]
    return names, faces, regions


def random_ties(faces, regions, target, seed: int = 0) -> list[np.ndarray]:
    """Exact specification with ties in a random order (SHINE's noise option)."""
    rng = np.random.default_rng(seed)
    out = []
    for face, region in zip(faces, regions):
        flat = np.flatnonzero(region)
        order = flat[np.lexsort((rng.random(flat.size), face.ravel()[flat]))]
        matched = face.copy().ravel()
        matched[order] = np.repeat(np.arange(256, dtype=np.uint8),
                                   specified_counts(target, flat.size))
        out.append(matched.reshape(face.shape))
    return out


def run_shinier(names, faces, regions, folder: Path, optimise: bool) -> list[np.ndarray]:
    from shinier import ImageDataset, ImageProcessor, Options

    inputs, masks, outputs = (folder / name for name in ("in", "masks", "out"))
    for path in (inputs, masks, outputs):
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir()
    for name, face, region in zip(names, faces, regions):
        Image.fromarray(face).save(inputs / f"{name}.png")
        Image.fromarray(region.astype(np.uint8) * 255).save(masks / f"{name}.png")
    options = Options(input_folder=inputs, output_folder=outputs, masks_folder=masks,
                      whole_image=3, mode=2, as_gray=True, seed=0, verbose=-1,
                      **({"hist_optim": True} if optimise else {}))
    with contextlib.redirect_stdout(io.StringIO()):        # it reports every image
        ImageProcessor(dataset=ImageDataset(options=options), verbose=-1)
    return [np.asarray(Image.open(outputs / f"{name}.png").convert("L")) for name in names]


def histogram_spread(outputs, regions) -> float:
    """Largest |count - mean count| over grey levels and faces, in pixels of each region."""
    shares = np.array([np.bincount(o[r], minlength=256) / r.sum() for o, r in zip(outputs, regions)])
    sizes = np.array([r.sum() for r in regions])[:, None]
    return float((np.abs(shares - shares.mean(axis=0)) * sizes).max())


def skimage_default(a, b) -> float | None:
    try:
        from skimage.metrics import structural_similarity as ssim
    except ImportError:
        return None
    return float(ssim(a, b, data_range=255))


def report(label, seconds, outputs, faces, regions, exact=None) -> list[np.ndarray]:
    region = [structural_similarity(f, o, r) for f, o, r in zip(faces, outputs, regions)]
    whole = [structural_similarity(f, o) for f, o in zip(faces, outputs)]
    default = [skimage_default(f, o) for f, o in zip(faces, outputs)]
    unchanged = all(np.array_equal(o[~r], f[~r]) for o, f, r in zip(outputs, faces, regions))
    print(f"{label:<40} {seconds:>7.2f} {histogram_spread(outputs, regions):>7.1f} "
          f"{'' if exact is None else exact:>7} {np.mean(region):>8.4f} "
          f"{np.min(region):>6.3f}-{np.max(region):.3f} "
          f"{np.mean(whole):>8.4f} "
          f"{'-' if default[0] is None else f'{np.mean(default):.4f}':>9} "
          f"{'yes' if unchanged else 'NO':>8}")
    return outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="face image size, pixels")
    parser.add_argument("--save-images", type=Path,
                        help="write each method's matched faces (PNG) into this folder")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="stimgen-bench-shinier-"))
    try:
        names, faces, regions = faces24(work, args.size)
        target = histogram_target(faces, regions)
        print(f"24 schematic faces, {args.size} px, greyscale, oval mask (stimgen "
              f"{stimgen.__version__}); face regions of {min(r.sum() for r in regions)}-"
              f"{max(r.sum() for r in regions)} pixels")
        print(f"{'method':<40} {'time s':>7} {'spread':>7} {'exact':>7} {'SSIM':>8} "
              f"{'range':>12} {'whole':>8} {'skimage':>9} {'outside':>8}")
        print(f"{'':<40} {'':>7} {'(px)':>7} {'(px)':>7} {'region':>8} {'':>12} {'image':>8} "
              f"{'default':>9} {'kept':>8}")
        results = {"unmatched": faces}

        def exactness(outputs) -> int:     # against the specified counts of stimgen's target
            return int(max(np.abs(np.bincount(o[r], minlength=256)
                                  - specified_counts(target, int(r.sum()))).max()
                           for o, r in zip(outputs, regions)))

        for label, iterations in (("stimgen histogram (default)", 0),
                                  ("stimgen, match_ssim_iterations: 10", 10)):
            start = time.perf_counter()
            outputs = histogram_match(faces, regions, target, iterations=iterations)
            seconds = time.perf_counter() - start
            results[label] = report(label, seconds, outputs, faces, regions, exactness(outputs))
        start = time.perf_counter()
        outputs = random_ties(faces, regions, target)
        results["random ties"] = report("random ties (SHINE noise; stimgen < 30)",
                                        time.perf_counter() - start, outputs, faces, regions,
                                        exactness(outputs))
        try:
            import shinier
        except ImportError:
            print("shinier is not installed (pip install shinier): its rows are left out")
        else:
            for label, optimise in ((f"shinier {shinier.__version__} histMatch, defaults", False),
                                    (f"shinier {shinier.__version__} hist_optim=True", True)):
                start = time.perf_counter()
                outputs = run_shinier(names, faces, regions, work, optimise)
                results[label] = report(label, time.perf_counter() - start, outputs, faces,
                                        regions)
        print("spread: largest difference of a face's region histogram from the mean of the "
              "24 (pixels); exact: from stimgen's specified counts; SSIM: mean over the 24 "
              "faces of SSIM to the unmatched face")
        if args.save_images:
            args.save_images.mkdir(parents=True, exist_ok=True)
            for index, label in enumerate(results):
                for name, image in zip(names, results[label]):
                    Image.fromarray(image).save(args.save_images / f"{index}_{name}.png")
            print(f"images: {args.save_images} (prefix: " + ", ".join(
                f"{i} {label}" for i, label in enumerate(results)) + ")")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
