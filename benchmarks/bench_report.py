"""Benchmark: generating report.html for the demo build (452 stimuli).

Prints the time of a cold report (no earlier report_assets/), of a regenerated one (thumbnails
reused), each stage of the cold one, the page size, and the ratio of each to a baseline run in
the same process: decoding every stimulus image once. Target: cold report < 10 s, < 10 MB.

    python benchmarks/bench_report.py [--build build/demo] [--protocol protocols/demo.yaml]
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from PIL import Image

import stimgen
from stimgen.report import ASSETS_DIR, report_figures, render_report, write_report
from stimgen.build_folder import read_build_folder
from stimgen.report.contact_sheets import write_thumbnails

ROOT = Path(__file__).resolve().parents[1]


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    value = function(*args, **kwargs)
    return time.perf_counter() - start, value


def decode_every_stimulus(build: Path) -> None:
    for path in sorted((build / "stimuli").iterdir()):
        with Image.open(path) as image:
            image.load()


def folder_bytes(build: Path) -> int:
    files = [build / "report.html", *(build / ASSETS_DIR).rglob("*")]
    return sum(path.stat().st_size for path in files if path.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", help="an existing build folder (default: build the demo)")
    parser.add_argument("--protocol", default=str(ROOT / "protocols" / "demo.yaml"))
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="bench-report-"))
    try:
        if args.build:
            build = scratch / "build"
            shutil.copytree(args.build, build)
        else:
            print(f"building {args.protocol} ...")
            build = stimgen.build(stimgen.load_protocol(args.protocol), out=scratch / "build",
                                  progress=False).out
        shutil.rmtree(build / ASSETS_DIR, ignore_errors=True)
        (build / "report.html").unlink(missing_ok=True)

        baseline, _ = timed(decode_every_stimulus, build)
        stages = {}
        stages["read"], folder = timed(read_build_folder, build)
        stages["thumbnails"], thumbs = timed(write_thumbnails, folder.stimuli, build,
                                             scratch / "thumbs")
        stages["figures"], figures = timed(report_figures, folder)
        stages["render"], _ = timed(render_report, folder, figures=figures, thumbnails=thumbs)
        cold, _ = timed(write_report, build)
        warm, _ = timed(write_report, build)
        size = folder_bytes(build)

        count = len(folder.stimuli)
        print(f"stimuli: {count}; baseline (decode every image once): {baseline:.2f} s")
        for stage, seconds in stages.items():
            print(f"  stage {stage:<11} {seconds:6.2f} s  ({seconds / baseline:5.2f} x baseline)")
        print(f"cold report:   {cold:6.2f} s  ({cold / baseline:5.2f} x baseline)  target < 10 s")
        print(f"regenerated:   {warm:6.2f} s  ({warm / baseline:5.2f} x baseline)")
        print(f"report.html + {ASSETS_DIR}/: {size / 2**20:.2f} MiB "
              f"({size / count / 1024:.1f} KiB per stimulus)  target < 10 MiB")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
