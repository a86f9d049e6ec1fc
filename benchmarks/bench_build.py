"""Benchmark: the demo build on the embedded schematic backend.

Prints per-stage times, stimuli per second and peak memory (this process and its workers),
and the speed-up of the default parallel build over a serial baseline run in the same
process. Target on a 2-core machine: whole demo <= 30 s wall, < 1 GiB peak memory.

    python benchmarks/bench_build.py [--protocol protocols/demo.yaml] [--skip-serial]
"""
from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

import stimgen

ROOT = Path(__file__).resolve().parents[1]


def peak_rss_mib() -> tuple[float, float]:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    return own, children


def timed_build(protocol, out: Path, jobs):
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    result = stimgen.build(protocol, out=out, jobs=jobs, progress=False)
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", default=str(ROOT / "protocols" / "demo.yaml"))
    parser.add_argument("--skip-serial", action="store_true", help="skip the serial baseline")
    args = parser.parse_args()
    protocol = stimgen.load_protocol(args.protocol)
    work = Path(tempfile.mkdtemp(prefix="stimgen-bench-"))
    try:
        rows = []
        if not args.skip_serial:
            rows.append(("serial baseline (jobs=1)", *timed_build(protocol, work / "serial", 1)))
        rows.append(("default (one worker per core)", *timed_build(protocol, work / "default", None)))
        n = len(rows[-1][2].stimuli)
        print(f"demo build: {n} stimuli, {protocol.output.image_size}px, backend "
              f"{protocol.backend.name}")
        print(f"{'run':<32} {'wall s':>8} {'stimuli/s':>10}")
        for name, seconds, _ in rows:
            print(f"{name:<32} {seconds:>8.2f} {n / seconds:>10.1f}")
        if len(rows) == 2:
            print(f"speed-up default / serial: {rows[0][1] / rows[1][1]:.2f}x")
        print("stages of the default run (s):")
        for stage, seconds in rows[-1][2].manifest["timings"].items():
            print(f"  {stage:<20} {seconds:>8.2f}")
        own, children = peak_rss_mib()
        print(f"peak memory: main process {own:.0f} MiB, largest worker {children:.0f} MiB")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
