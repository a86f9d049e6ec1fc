"""Benchmark: the demo build with 1 and 2 jobs, through each executor that runs here.

Prints the wall time of each whole build and of its render+rate stage, and the speed-up of
2 jobs over the serial baseline measured in the same run. SLURM is not timed (it needs a
cluster); submitit-local runs the same identity jobs as SLURM would, as local processes.

    python benchmarks/bench_executors.py [--protocol protocols/demo.yaml] [--jobs 1 2]
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import stimgen
from stimgen.protocol.execution import ExecutionSpec

ROOT = Path(__file__).resolve().parents[1]


def timed_build(protocol, out: Path, execution: ExecutionSpec) -> tuple[float, float]:
    """(whole build, render+rate stage) wall seconds of a build into an empty folder."""
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    result = stimgen.build(protocol, out=out, execution=execution, progress=False)
    return time.perf_counter() - start, result.manifest["timings"]["render_and_rate"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", default=str(ROOT / "protocols" / "demo.yaml"))
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--executors", nargs="+", default=["local", "submitit-local"],
                        choices=["local", "submitit-local"])
    args = parser.parse_args()
    protocol = stimgen.load_protocol(args.protocol)
    n = sum(1 for _ in protocol.identities)
    work = Path(tempfile.mkdtemp(prefix="stimgen-bench-exec-"))
    try:
        timed_build(protocol, work / "warm-up", ExecutionSpec(jobs=1))   # imports, caches
        rows = []
        for executor in args.executors:
            for jobs in args.jobs:
                spec = ExecutionSpec(executor=executor, jobs=jobs)
                rows.append((executor, jobs, *timed_build(protocol, work / f"{executor}{jobs}",
                                                          spec)))
        print(f"{Path(args.protocol).name}: {n} identities, backend {protocol.backend.name}")
        print(f"{'executor':<16} {'jobs':>4} {'build s':>8} {'render s':>9} "
              f"{'speed-up build':>15} {'speed-up render':>16}")
        baseline = {ex: (b, r) for ex, j, b, r in rows if j == min(args.jobs)}
        serial = baseline.get("local", next(iter(baseline.values())))
        for executor, jobs, build_s, render_s in rows:
            print(f"{executor:<16} {jobs:>4} {build_s:>8.2f} {render_s:>9.2f} "
                  f"{serial[0] / build_s:>14.2f}x {serial[1] / render_s:>15.2f}x")
        print(f"speed-ups are against local with {min(args.jobs)} job(s) in this run")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
