"""Benchmark: the demo built locally and through SLURM, on the same machine, as a user runs it.

Each build is its own `stimgen build` command into an empty folder (a fresh Python, as a
user's), local and SLURM in turns so that both meet the same load; prints every wall time,
the render+rate stage of each (from manifest.json), the medians and the ratio SLURM/local
(below 1: the cluster path is faster), and checks that both built the same files.

Needs a SLURM whose nodes see this folder, e.g. the single-node test cluster:

    sudo ../shared/slurm/start_slurm.sh        # or --no-accounting
    python benchmarks/bench_cluster.py [--rounds 3] [--cpus-per-job 2] [-- extra build options]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build_command(protocol: str, out: Path, extra: list[str]) -> list[str]:
    return [sys.executable, "-c", "from stimgen.cli import main; main()", "build", protocol,
            "-o", str(out), "-q", *extra]


def timed(command: list[str], out: Path) -> tuple[float, float, dict]:
    """(wall seconds, render+rate seconds, manifest) of one build into an empty folder."""
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    return wall, manifest["timings"]["render_and_rate"], manifest


def outputs(manifest: dict) -> dict[str, str]:
    """The sha256 of every output file but report.html (which shows the date)."""
    return {f: h for f, h in manifest["files"].items() if f != "report.html"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", default=str(ROOT / "protocols" / "demo.yaml"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cpus-per-job", type=int, default=os.cpu_count() or 1,
                        help="CPUs of each SLURM job (default: this machine's)")
    parser.add_argument("extra", nargs="*", help="further options of the SLURM build")
    args = parser.parse_args()
    if shutil.which("sbatch") is None:
        sys.exit("bench_cluster: sbatch is not on PATH; start a SLURM first (see the docstring)")
    work = Path(tempfile.mkdtemp(prefix="stimgen-bench-cluster-", dir=ROOT / "build"
                                 if (ROOT / "build").is_dir() else None))
    commands = {
        "local": build_command(args.protocol, work / "local", []),
        "slurm": build_command(args.protocol, work / "slurm",
                               ["--executor", "slurm", "--cpus-per-job",
                                str(args.cpus_per_job), *args.extra]),
    }
    for name, command in commands.items():
        print(f"{name}: {' '.join(command[3:])}")
    runs: dict[str, list[tuple[float, float]]] = {"local": [], "slurm": []}
    try:
        timed(commands["local"], work / "local")            # warm-up: file caches, pycache
        for round_ in range(args.rounds):
            manifests = {}
            for name in ("local", "slurm") if round_ % 2 == 0 else ("slurm", "local"):
                wall, render, manifests[name] = timed(commands[name], work / name)
                runs[name].append((wall, render))
                print(f"round {round_ + 1} {name:<5} build {wall:6.2f} s   render+rate "
                      f"{render:6.2f} s", flush=True)
            if outputs(manifests["local"]) != outputs(manifests["slurm"]):
                sys.exit("bench_cluster: the SLURM build differs from the local one")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    median = {name: (statistics.median(w for w, _ in r), statistics.median(x for _, x in r))
              for name, r in runs.items()}
    print(f"median local build {median['local'][0]:.2f} s (render+rate "
          f"{median['local'][1]:.2f} s); slurm build {median['slurm'][0]:.2f} s "
          f"(render+rate {median['slurm'][1]:.2f} s)")
    print(f"ratio slurm/local: whole build {median['slurm'][0] / median['local'][0]:.2f}, "
          f"render+rate {median['slurm'][1] / median['local'][1]:.2f} "
          f"(below 1: the cluster path is faster); outputs identical")


if __name__ == "__main__":
    main()
