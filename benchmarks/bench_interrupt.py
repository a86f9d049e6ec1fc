"""Benchmark: stopping the demo build half-way with Ctrl-C (SIGINT) and SIGTERM, then resuming.

For each signal, a `stimgen build` process is started on the demo protocol, the signal is sent
once half of its stimuli are on disk (SIGINT to its process group, as Ctrl-C in a terminal;
SIGTERM to the build's process alone, as `kill PID`), and the rerun of the same command
finishes the build. Prints how long the process took to stop after the signal, its exit
status, the rerun's time as a ratio of an uninterrupted build's (run just before, in the same
run; wall-clock and CPU time, the latter unaffected by other load on a shared machine), and
whether the resumed folder holds byte-identical files. Targets (issue 27): stopped within 3 s, exit status 130 /
143, rerun <= 0.7 of a full build, every stimulus byte-identical.

    python benchmarks/bench_interrupt.py [--protocol protocols/demo.yaml] [--at 0.5] [-j N]
"""
from __future__ import annotations

import argparse
import hashlib
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STIMGEN = [sys.executable, "-c", "from stimgen.cli import main; main()"]
#: Files that record a run (its date, timings, command, lock holder), not its outputs.
RUN_FILES = ("report.html", "manifest.json")


def command(protocol: str, out: Path, jobs: int | None) -> list[str]:
    return [*STIMGEN, "--quiet", "build", protocol, "-o", str(out),
            *(["-j", str(jobs)] if jobs else [])]


def timed_build(protocol: str, out: Path, jobs: int | None) -> tuple[float, float]:
    """Wall-clock and CPU seconds (the build and its workers) of one `stimgen build`."""
    before = _children_cpu()
    start = time.perf_counter()
    subprocess.run(command(protocol, out, jobs), check=True, stdout=subprocess.DEVNULL,
                   cwd=ROOT)
    return time.perf_counter() - start, _children_cpu() - before


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def outputs(out: Path) -> dict[str, str]:
    """sha256 of every output file of a build folder, by relative path (bookkeeping under
    .stimgen/ and the two files that carry the run's date left out)."""
    return {path.relative_to(out).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(out.rglob("*")) if path.is_file()
            and path.relative_to(out).parts[0] != ".stimgen"
            and path.relative_to(out).as_posix() not in RUN_FILES}


def interrupted_build(protocol: str, out: Path, jobs: int | None, signum: int, at: int
                      ) -> tuple[float, int, int]:
    """Start a build, send ``signum`` once ``at`` stimuli are on disk; returns the seconds
    from the signal to the process's end, its exit status and the stimuli on disk then."""
    process = subprocess.Popen(command(protocol, out, jobs), cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               start_new_session=True)
    stimuli = out / "stimuli"
    try:
        while process.poll() is None:
            if stimuli.is_dir() and sum(1 for p in stimuli.iterdir()
                                        if not p.name.startswith(".")) >= at:
                break
            time.sleep(0.01)
        sent = time.perf_counter()
        if signum == signal.SIGINT:      # Ctrl-C: the terminal signals the whole group
            os.killpg(process.pid, signum)
        else:                            # `kill PID`: the build alone, which stops its workers
            process.send_signal(signum)
        _, error = process.communicate(timeout=60)
        stopped = time.perf_counter() - sent
    finally:
        if process.poll() is None:
            process.kill()
    if process.returncode == 0:
        raise SystemExit(f"the build finished before {signal.Signals(signum).name} was sent; "
                         "use a larger protocol or a smaller --at")
    on_disk = sum(1 for p in stimuli.iterdir() if not p.name.startswith("."))
    last = error.decode(errors="replace").strip().splitlines()[-1:] or [""]
    print(f"    {signal.Signals(signum).name}: {last[0]}")
    return stopped, process.returncode, on_disk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", default=str(ROOT / "protocols" / "demo.yaml"))
    parser.add_argument("--at", type=float, default=0.5,
                        help="fraction of the stimuli on disk when the signal is sent")
    parser.add_argument("-j", "--jobs", type=int, help="worker processes (default: stimgen's)")
    args = parser.parse_args()
    os.environ.setdefault("PYTHONPATH", str(ROOT))
    work = Path(tempfile.mkdtemp(prefix="stimgen-interrupt-"))
    try:
        rows = []
        for signum in (signal.SIGINT, signal.SIGTERM):
            name = signal.Signals(signum).name
            # an uninterrupted build right before each interrupted one: on a shared machine
            # the load changes, and a ratio is only fair between neighbouring runs
            full_out = work / f"full-{name}"
            full, full_cpu = timed_build(args.protocol, full_out, args.jobs)
            reference = outputs(full_out)
            total = sum(1 for _ in (full_out / "stimuli").iterdir())
            out = work / name
            stopped, status, on_disk = interrupted_build(
                args.protocol, out, args.jobs, signum, max(1, round(total * args.at)))
            rerun, rerun_cpu = timed_build(args.protocol, out, args.jobs)
            rows.append((name, full, stopped, status, on_disk, total, rerun,
                         rerun_cpu / full_cpu, outputs(out) == reference))
        print(f"{'signal':<8} {'full s':>7} {'stopped after s':>15} {'status':>7} "
              f"{'on disk':>9} {'rerun s':>8} {'rerun/full':>10} {'CPU ratio':>9} "
              f"{'identical':>9}")
        for name, full, stopped, status, on_disk, total, rerun, cpu, same in rows:
            print(f"{name:<8} {full:>7.2f} {stopped:>15.2f} {status:>7} "
                  f"{f'{on_disk}/{total}':>9} {rerun:>8.2f} {rerun / full:>10.2f} "
                  f"{cpu:>9.2f} {'yes' if same else 'NO':>9}")
        print("rerun/full: wall-clock time; CPU ratio: CPU seconds of the build and its "
              "workers, which the machine's other load does not change")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
