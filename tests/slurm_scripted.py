"""A job function whose faults a test scripts, for the cluster tests (fake and real SLURM).

A test writes ``<build folder>.script.json``, e.g. ``{"id02": {"stall": 1}}``: the first
attempt of identity id02 then stalls inside the job (as a hung GPU job would) until SLURM
ends it; ``{"id02": {"fail": 2}}`` makes its first two attempts raise. Each attempt leaves
``<build folder>.attempts/<identity>.<n>`` holding the job's SLURM id, so the test knows
which job to cancel. Identities the script does not name render normally.

Run as a program, it is ``stimgen build`` with this job function (for tests that must
interrupt a real command line)::

    python tests/slurm_scripted.py build PROTOCOL -o OUT --executor slurm ...
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import cloudpickle

from stimgen import executors

# Jobs unpickle their function in a fresh interpreter, which cannot import this module.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

STALL_SECONDS = 900


def script_path(out: Path) -> Path:
    return Path(f"{out}.script.json")


def attempts_folder(out: Path) -> Path:
    return Path(f"{out}.attempts")


def write_script(out: Path, script: dict) -> None:
    script_path(out).write_text(json.dumps(script), encoding="utf-8")


def attempts(out: Path, identity: str) -> list[str]:
    """The SLURM job ids of the identity's attempts so far, in order."""
    folder = attempts_folder(out)
    found = sorted(folder.glob(f"{identity}.*"), key=lambda p: int(p.suffix[1:]))
    return [p.read_text(encoding="utf-8").strip() for p in found]


def scripted_job(batch):
    """:func:`stimgen.executors.render_identities` with the faults the script asks for."""
    out = Path(batch.out)
    try:
        script = json.loads(script_path(out).read_text(encoding="utf-8"))
    except OSError:
        script = {}
    folder = attempts_folder(out)
    folder.mkdir(exist_ok=True)
    faults = {}
    for identity in batch.identity_ids:
        attempt = len(list(folder.glob(f"{identity}.*"))) + 1
        (folder / f"{identity}.{attempt}").write_text(
            os.environ.get("SLURM_JOB_ID", str(os.getpid())), encoding="utf-8")
        for fault in ("stall", "fail"):
            if attempt <= script.get(identity, {}).get(fault, 0):
                faults[identity] = fault
    if faults:
        real = executors.run_chunks

        def faulty_chunks(protocol, chunks, out, **options):
            for chunk in chunks:          # in order: identities before a fault finish
                identity = chunk.unit.identity.id
                if faults.get(identity) == "stall":
                    print(f"stimgen-test: {identity} stalls", flush=True)
                    time.sleep(STALL_SECONDS)
                if faults.get(identity) == "fail":
                    raise RuntimeError(f"injected fault in {identity}")
                real(protocol, [chunk], out, **options)

        executors.run_chunks = faulty_chunks      # in this job's process only
    return executors.render_identities(batch)


if __name__ == "__main__":
    from stimgen.cli import main

    executors.render_identities = scripted_job
    sys.exit(main(sys.argv[1:]))
