"""Benchmark: seconds per clip of a build with ``output.dynamic``, against the same build
of stills in the same process (the baseline), on this machine.

The protocol's own ``dynamic:`` section is used; a protocol without one (the demo) gets the
default section (24 frames at 30 fps, 1 s hold). ``--identities``/``--emotions`` cut the
protocol down, since the clips of the whole demo (452 stimuli x 24 frames at 512 px) take a
while on two cores. Both builds run without the experiment bundle, which is timed elsewhere
(bench_bundle.py).

    python benchmarks/bench_dynamic.py [--protocol protocols/demo.yaml] [--identities 1]
        [--emotions happy,sad] [--jobs N]
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import stimgen
from stimgen.protocol.models import DynamicOutput

ROOT = Path(__file__).resolve().parents[1]


def timed_build(protocol, out: Path, jobs):
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    result = stimgen.build(protocol, out=out, jobs=jobs, progress=False)
    return time.perf_counter() - start, result


def cut_down(protocol, identities: int | None, emotions: list[str] | None):
    """The protocol with fewer identities/emotions, no experiment, and a dynamic section."""
    targets = protocol.targets
    if emotions:
        targets = targets.model_copy(update={"emotions": emotions})
    output = protocol.output
    dynamic = output.dynamic or DynamicOutput()
    people = protocol.identities[:identities] if identities else protocol.identities
    stills = protocol.model_copy(update={
        "identities": people, "targets": targets, "experiment": None,
        "output": output.model_copy(update={"dynamic": None})})
    return stills, stills.model_copy(update={
        "output": output.model_copy(update={"dynamic": dynamic})})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", default=str(ROOT / "protocols" / "demo.yaml"))
    parser.add_argument("--identities", type=int, default=None, help="first N identities only")
    parser.add_argument("--emotions", default=None, help="comma-separated emotions only")
    parser.add_argument("--jobs", type=int, default=None, help="worker processes (default: "
                        "as the build chooses)")
    args = parser.parse_args()
    protocol = stimgen.load_protocol(args.protocol)
    emotions = [e.strip() for e in args.emotions.split(",")] if args.emotions else None
    stills, clips = cut_down(protocol, args.identities, emotions)
    work = Path(tempfile.mkdtemp(prefix="stimgen-bench-dynamic-"))
    try:
        # warm-up (imports, rater set-up) so that neither timed build pays for them
        warm, _ = cut_down(stills, 1, None)
        timed_build(warm.model_copy(update={"targets": warm.targets.model_copy(
            update={"emotions": [], "angles": [], "points": [], "neutral": True})}),
            work / "warm-up", 1)
        still_s, baseline = timed_build(stills, work / "stills", args.jobs)
        clip_s, result = timed_build(clips, work / "clips", args.jobs)
        n = len(result.stimuli)
        spec = clips.output.dynamic
        print(f"{args.protocol}: {n} stimuli, {clips.output.image_size}px, backend "
              f"{clips.backend.name}; clips of {spec.frames} frames at {spec.fps} fps, "
              f"hold {spec.hold_ms} ms, {spec.ease}")
        print(f"{'build':<22} {'wall s':>8} {'s/stimulus':>11}")
        print(f"{'stills (baseline)':<22} {still_s:>8.2f} {still_s / n:>11.3f}")
        print(f"{'stills + clips':<22} {clip_s:>8.2f} {clip_s / n:>11.3f}")
        print(f"seconds per clip (difference / clips): {(clip_s - still_s) / n:.3f}")
        print(f"ratio clips build / stills build: {clip_s / still_s:.1f}x")
        print(f"{'stage (s)':<22} {'stills':>8} {'clips':>8}")
        for stage, seconds in result.manifest["timings"].items():
            print(f"  {stage:<20} {baseline.manifest['timings'].get(stage, 0.0):>8.2f} "
                  f"{seconds:>8.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
