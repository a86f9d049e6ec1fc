"""Benchmark: what closed-loop correction (validation.correction) costs and what it buys.

Builds a protocol in the same process without and with correction (after a warm-up build,
alternately, ``--repeat`` times each, keeping the fastest), and prints the wall and CPU time
of each (whole build and the render-and-rate stage) as ratios, the rounds made, and the
mean VA distance to the target before and after correction, overall and in the weak region,
for the steering rater and, when the build has another rater, for the held-out judge.
The experiment bundle is left out (it costs the same in both builds).

    python benchmarks/bench_correction.py [--protocol protocols/demo.yaml] [--rater geometric]
        [--iterations 4] [--max-request 1.0] [--tolerance 0.05] [--jobs N] [--dry-run]
        [--repeat 2]

``--dry-run`` builds an emostyle protocol on tiny random models (the loop's cost, not its
accuracy); on a GPU with the published weights leave it out (docs/correction.md).
"""
from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

import stimgen
from stimgen.build_folder import CORRECTION
from stimgen.protocol.models import Correction

ROOT = Path(__file__).resolve().parents[1]


def cpu_seconds() -> float:
    """CPU time of this process and its finished worker processes: steadier than wall time
    on a machine shared with other jobs."""
    own, workers = (resource.getrusage(who) for who in (resource.RUSAGE_SELF,
                                                         resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + workers.ru_utime + workers.ru_stime


def timed_build(protocol, out: Path, jobs, dry_run: bool):
    """(wall s, CPU s, result) of one build into the empty folder ``out``."""
    shutil.rmtree(out, ignore_errors=True)
    start, cpu = time.perf_counter(), cpu_seconds()
    result = stimgen.build(protocol, out=out, jobs=jobs, progress=False, dry_run=dry_run)
    return time.perf_counter() - start, cpu_seconds() - cpu, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", default=str(ROOT / "protocols" / "demo.yaml"))
    parser.add_argument("--rater", default="auto", help="steering rater (default: auto)")
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument("--max-request", type=float, default=1.0)
    parser.add_argument("--tolerance", type=float, default=0.05)
    parser.add_argument("--jobs", type=int, default=None)
    parser.add_argument("--dry-run", action="store_true", help="tiny random emostyle models")
    parser.add_argument("--repeat", type=int, default=2, help="timed builds of each kind")
    args = parser.parse_args()
    protocol = stimgen.load_protocol(args.protocol).model_copy(update={"experiment": None})
    settings = Correction(rater=args.rater, iterations=args.iterations,
                          max_request=args.max_request, tolerance=args.tolerance)
    validation = protocol.validation.model_copy(update={"correction": settings})
    corrected_protocol = protocol.model_copy(update={"validation": validation})
    work = Path(tempfile.mkdtemp(prefix="stimgen-bench-correction-"))
    try:
        timed_build(protocol, work / "warm-up", args.jobs, args.dry_run)   # imports, caches
        runs = [(timed_build(protocol, work / "plain", args.jobs, args.dry_run),
                 timed_build(corrected_protocol, work / "corrected", args.jobs, args.dry_run))
                for _ in range(args.repeat)]        # alternated; the fastest of each counts
        (plain_s, plain_cpu, plain), (fixed_s, fixed_cpu, fixed) = (
            min((run[k] for run in runs), key=lambda r: r[0]) for k in (0, 1))
        table = fixed.stimuli
        named = table[table["target_kind"] != "neutral"]
        weak = named["weak_region"].astype(bool)
        rounds = named[CORRECTION.rounds].to_numpy(int)
        print(f"{protocol.study.name}: {len(table)} stimuli, {protocol.output.image_size}px, "
              f"backend {protocol.backend.name}{' (dry run)' if args.dry_run else ''}; "
              f"correction {settings.model_dump()}")
        print(f"raters: {fixed.manifest['rater']['name']} (primary, judges)"
              f"{'' if len(fixed.manifest['raters']) > 1 else ' alone: it also steers'}")
        stage = "render_and_rate"
        plain_stage, fixed_stage = plain.manifest["timings"][stage], fixed.manifest["timings"][stage]
        print(f"{'build':<22} {'wall s':>8} {'CPU s':>8} {stage + ' s':>20}")
        print(f"{'uncorrected':<22} {plain_s:>8.2f} {plain_cpu:>8.2f} {plain_stage:>20.2f}")
        print(f"{'corrected':<22} {fixed_s:>8.2f} {fixed_cpu:>8.2f} {fixed_stage:>20.2f}")
        print(f"cost ratio corrected / uncorrected: wall {fixed_s / plain_s:.2f}x, "
              f"CPU {fixed_cpu / plain_cpu:.2f}x, {stage} {fixed_stage / plain_stage:.2f}x")
        renders = len(named) + rounds.sum()
        print(f"rounds per corrected stimulus: mean {rounds.mean():.2f}, "
              f"histogram {np.bincount(rounds).tolist()}; renders {renders} = "
              f"{renders / len(named):.2f}x the uncorrected build's")
        print(f"{'mean VA distance':<34} {'before':>8} {'after':>8} {'n':>5}")
        rows = [("steering rater, all", named[CORRECTION.steering_before],
                 named[CORRECTION.steering_after], named),
                ("steering rater, weak region", named[CORRECTION.steering_before][weak],
                 named[CORRECTION.steering_after][weak], named[weak])]
        if CORRECTION.held_out_before in named:
            rows += [("held-out judge, all", named[CORRECTION.held_out_before],
                      named["distance_error"], named),
                     ("held-out judge, weak region", named[CORRECTION.held_out_before][weak],
                      named["distance_error"][weak], named[weak])]
        for label, before, after, rows_ in rows:
            print(f"{label:<34} {before.mean():>8.4f} {after.mean():>8.4f} {len(rows_):>5}")
        out_before = int((plain.stimuli["out_of_tolerance"]).sum())
        out_after = int((table["out_of_tolerance"]).sum())
        print(f"out of tolerance: {out_before} uncorrected, {out_after} corrected")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
