"""Parallel and submitit builds write the same build folder as a serial build, retry failed
identity jobs, report the ones that keep failing with their logs, and resume the rest."""
from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path

import cloudpickle
import pytest
from click.testing import CliRunner

import stimgen
from buildfolders import protocol_from_text, snapshot
from stimgen import executors
from stimgen.cli import main
from stimgen.executors import UnitsFailedError
from stimgen.protocol.execution import ExecutionSpec

# Jobs unpickle their function in a fresh interpreter, which cannot import this test module:
# ship its functions by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

PROTOCOL = """\
study: {name: cluster, authors: [Tester]}
seed: 5
identities:
  - {id: id01, seed: 1}
  - {id: id02, seed: 2}
  - {id: id03, seed: 3}
targets:
  emotions: [circumplex:happy, afraid, circumplex:sad, tired]
  intensities: [0.5, 1.0]
  neutral: true
output: {image_size: 96}
experiment:
  task: {type: rating, scales: [valence, arousal]}
  design: {type: random, participants: 2}
"""

@pytest.fixture(scope="module")
def protocol(tmp_path_factory):
    return protocol_from_text(tmp_path_factory.mktemp("protocol"), PROTOCOL, "cluster.yaml")


@pytest.fixture(scope="module")
def serial(protocol, tmp_path_factory):
    out = tmp_path_factory.mktemp("serial") / "build"
    return stimgen.build(protocol, out=out, progress=False,
                         execution=ExecutionSpec(executor="local", jobs=1))


@pytest.mark.slow
@pytest.mark.parametrize("execution", [
    ExecutionSpec(executor="local", jobs=2),
    ExecutionSpec(executor="submitit-local", jobs=2),
], ids=["local-2-workers", "submitit-local"])
def test_parallel_builds_equal_the_serial_build_file_for_file(execution, protocol, serial,
                                                              tmp_path):
    result = stimgen.build(protocol, out=tmp_path / "build", progress=False, execution=execution)
    assert snapshot(result.out) == snapshot(serial.out)
    assert (tmp_path / "build" / "experiment").is_dir()
    if execution.executor == "submitit-local":
        logs = sorted((tmp_path / "build" / ".stimgen" / "jobs").glob("*_0_log.out"))
        assert len(logs) == 3
        assert all("done in" in log.read_text() for log in logs)


def flaky_render(job, *, failing: str, failures: int, tally: Path) -> int:
    """Fail ``failures`` times for identity ``failing``, then render for real."""
    count = int(tally.read_text()) if tally.exists() else 0
    if job.identity_id == failing and count < failures:
        tally.write_text(str(count + 1))
        raise RuntimeError(f"injected fault in {job.identity_id}")
    return executors.render_identity(job)


@pytest.mark.slow
def test_a_failed_job_is_retried(protocol, serial, tmp_path, monkeypatch):
    tally = tmp_path / "tally"
    monkeypatch.setattr(executors, "render_identity",
                        functools.partial(flaky_render, failing="id02", failures=1, tally=tally))
    result = stimgen.build(protocol, out=tmp_path / "build", progress=False,
                           execution=ExecutionSpec(executor="submitit-local", jobs=3,
                                                   max_retries=1))
    assert tally.read_text() == "1"                   # failed once, then succeeded
    assert snapshot(result.out) == snapshot(serial.out)


@pytest.mark.slow
def test_failing_job_is_reported_with_its_log_and_the_rerun_resumes(protocol, serial, tmp_path,
                                                                     monkeypatch):
    out = tmp_path / "build"
    tally = tmp_path / "tally"
    monkeypatch.setattr(executors, "render_identity",
                        functools.partial(flaky_render, failing="id02", failures=99, tally=tally))
    spec = ExecutionSpec(executor="submitit-local", jobs=3, max_retries=1)
    with pytest.raises(UnitsFailedError) as info:
        stimgen.build(protocol, out=out, progress=False, execution=spec)
    assert tally.read_text() == "2"                   # first attempt + one retry
    [failure] = info.value.failures
    assert failure.identity_id == "id02" and failure.attempts == 2
    assert failure.error == "RuntimeError: injected fault in id02"
    assert str(failure.log) in info.value.render()
    assert "RuntimeError: injected fault in id02" in failure.log.read_text()
    assert not (out / "manifest.json").exists()       # the build is not complete
    records = sorted(p.stem for p in (out / ".stimgen" / "identities").glob("*.json"))
    assert records == ["id01", "id03"]                # finished identities are kept

    monkeypatch.undo()
    again = stimgen.build(protocol, out=out, progress=False, execution=spec)
    assert again.reused_identities == ["id01", "id03"]   # only id02 ran again
    assert snapshot(again.out) == snapshot(serial.out)


@pytest.mark.slow
def test_cli_submitit_local_build_and_progress_view(protocol, serial, tmp_path):
    out = tmp_path / "cli"
    result = CliRunner().invoke(main, ["build", str(protocol.source_path), "-o", str(out),
                                       "--executor", "submitit-local", "--jobs", "2"])
    assert result.exit_code == 0, result.output
    assert "3 identity job(s) with submitit-local; logs in" in result.output
    assert str(out / ".stimgen" / "jobs") in result.output
    assert json.loads((out / "manifest.json").read_text())["complete"] is True
    rerun = CliRunner().invoke(main, ["build", str(protocol.source_path), "-o", str(out),
                                      "--executor", "submitit-local"])
    assert rerun.exit_code == 0, rerun.output
    assert "reused finished identities: id01, id02, id03" in rerun.output
    assert "identity job(s)" not in rerun.output      # nothing was submitted


# --------------------------------------------------------------------------------------
# The SLURM path end to end, with stand-ins for sbatch and srun that run the job script's
# tasks on this machine (submitit itself is real: its scripts, array ids, pickles, logs).
# --------------------------------------------------------------------------------------
FAKE_SBATCH = r"""#!/bin/bash
# sbatch stand-in: keeps a copy of the script and runs each array task in the background.
script="$1"; here="$(dirname "$0")"
id=$(( $(cat "$here/next_id" 2>/dev/null || echo 700) + 1 )); echo "$id" > "$here/next_id"
cp "$script" "$here/script_$id.sh"
last=$(sed -n 's/^#SBATCH --array=0-\([0-9]*\).*/\1/p' "$script")
if [ -n "$last" ]; then
  for i in $(seq 0 "$last"); do
    SLURM_JOB_ID=$id SLURM_ARRAY_JOB_ID=$id SLURM_ARRAY_TASK_ID=$i \
      bash "$script" </dev/null >/dev/null 2>&1 &
  done
else
  SLURM_JOB_ID=$id bash "$script" </dev/null >/dev/null 2>&1 &
fi
echo "Submitted batch job $id"
"""

FAKE_SRUN = r"""#!/bin/bash
# srun stand-in: fills the job and task ids into --output/--error, runs the command.
while [ $# -gt 0 ]; do
  case "$1" in
    --output) out="$2"; shift 2;; --error) err="$2"; shift 2;; --*) shift;; *) break;;
  esac
done
ids() {
  local p="${1//%A/$SLURM_ARRAY_JOB_ID}"; p="${p//%a/$SLURM_ARRAY_TASK_ID}"; p="${p//%t/0}"
  echo "${p//%j/$SLURM_JOB_ID}"
}
exec "$@" >>"$(ids "$out")" 2>>"$(ids "$err")"
"""

FAKE_SACCT = """#!/bin/sh
echo 'JobID|State|NodeList'
"""


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    bin_dir = tmp_path / "slurm-bin"
    bin_dir.mkdir()
    for name, text in (("sbatch", FAKE_SBATCH), ("srun", FAKE_SRUN), ("sacct", FAKE_SACCT)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setitem(executors.POLL_SECONDS, "slurm", 0.25)
    return bin_dir


def test_slurm_array_with_a_retry_equals_the_serial_build(protocol, serial, tmp_path,
                                                           fake_slurm, monkeypatch):
    tally = tmp_path / "tally"
    monkeypatch.setattr(executors, "render_identity",
                        functools.partial(flaky_render, failing="id03", failures=1, tally=tally))
    spec = ExecutionSpec(executor="slurm", max_retries=2,
                         slurm={"partition": "gpu", "array_parallelism": 2, "time": "0:30:00"})
    result = stimgen.build(protocol, out=tmp_path / "build", progress=False, execution=spec)
    assert snapshot(result.out) == snapshot(serial.out)
    first, retry = sorted(fake_slurm.glob("script_*.sh"))
    assert "#SBATCH --array=0-2%2" in first.read_text()       # one array, 2 at a time
    assert "#SBATCH --partition=gpu" in first.read_text()
    assert "--array" not in retry.read_text()                 # id03 alone, resubmitted
    logs = result.out / ".stimgen" / "jobs"
    assert "injected fault in id03" in (logs / "701_2_0_log.err").read_text()
    assert "identity id03 done" in (logs / "702_0_log.out").read_text()
