"""Parallel and submitit builds write the same build folder as a serial build, retry failed
identity jobs, report the ones that keep failing with their logs, and resume the rest."""
from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import stimgen
import slurm_scripted
from buildfolders import protocol_from_text, snapshot
from stimgen import executors
from stimgen.cli import main
from stimgen.executors import UnitsFailedError
from stimgen.protocol.execution import ExecutionSpec

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
        assert len(logs) == 2                         # 2 slots: 2 jobs for 3 identities
        done = [line for log in logs for line in log.read_text().splitlines()
                if "done in" in line]
        assert len(done) == 3


@pytest.fixture
def scripted(monkeypatch):
    """Jobs run :func:`slurm_scripted.scripted_job`: faults as each test's script says."""
    monkeypatch.setattr(executors, "render_identities", slurm_scripted.scripted_job)
    return slurm_scripted


@pytest.mark.slow
def test_a_failed_job_is_retried(protocol, serial, tmp_path, scripted):
    out = tmp_path / "build"
    scripted.write_script(out, {"id02": {"fail": 1}})
    result = stimgen.build(protocol, out=out, progress=False,
                           execution=ExecutionSpec(executor="submitit-local", jobs=3,
                                                   max_retries=1))
    assert len(scripted.attempts(out, "id02")) == 2      # failed once, then succeeded
    assert len(scripted.attempts(out, "id01")) == 1
    assert snapshot(result.out) == snapshot(serial.out)


@pytest.mark.slow
def test_failing_job_is_reported_with_its_log_and_the_rerun_resumes(protocol, serial, tmp_path,
                                                                     scripted, monkeypatch):
    out = tmp_path / "build"
    scripted.write_script(out, {"id02": {"fail": 99}})
    spec = ExecutionSpec(executor="submitit-local", jobs=3, max_retries=1)
    with pytest.raises(UnitsFailedError) as info:
        stimgen.build(protocol, out=out, progress=False, execution=spec)
    assert len(scripted.attempts(out, "id02")) == 2      # first attempt + one retry
    [failure] = info.value.failures
    assert failure.identity_id == "id02" and failure.attempts == 2
    assert failure.error == "RuntimeError: injected fault in id02"
    assert str(failure.log) in info.value.render()
    assert "RuntimeError: injected fault in id02" in failure.log.read_text()
    assert "| RuntimeError: injected fault in id02" in info.value.render()   # the log's end
    assert not (out / "manifest.json").exists()       # the build is not complete
    records = sorted(p.stem for p in (out / ".stimgen" / "identities").glob("*.json"))
    assert records == ["id01", "id03"]                # finished identities are kept

    monkeypatch.undo()
    again = stimgen.build(protocol, out=out, progress=False, execution=spec)
    assert again.reused_identities == ["id01", "id03"]   # only id02 ran again
    assert snapshot(again.out) == snapshot(serial.out)


@pytest.mark.slow
def test_identities_share_a_job_and_a_failed_shared_job_keeps_what_it_finished(
        protocol, serial, tmp_path, scripted):
    out = tmp_path / "build"
    scripted.write_script(out, {"id02": {"fail": 1}})
    spec = ExecutionSpec(executor="submitit-local", jobs=1, max_retries=1)
    result = stimgen.build(protocol, out=out, progress=False, execution=spec)
    # one job for all three (auto: one slot); id01 finished before id02 failed, and only
    # id02 and id03 went out again
    assert [len(scripted.attempts(out, i)) for i in ("id01", "id02", "id03")] == [1, 2, 2]
    assert scripted.attempts(out, "id02")[0] == scripted.attempts(out, "id01")[0]
    assert snapshot(result.out) == snapshot(serial.out)
    logs = sorted((out / ".stimgen" / "jobs").glob("*_0_log.out"))
    assert "3 identities (id01, id02, id03)" in logs[0].read_text()
    assert "start-up" in logs[0].read_text()


@pytest.mark.slow
def test_cli_submitit_local_build_and_progress_view(protocol, serial, tmp_path):
    out = tmp_path / "cli"
    result = CliRunner().invoke(main, ["build", str(protocol.source_path), "-o", str(out),
                                       "--executor", "submitit-local", "--jobs", "2"])
    assert result.exit_code == 0, result.output
    assert "3 identities in 2 jobs with submitit-local, 2 identities per job; logs in" \
        in result.output
    assert str(out / ".stimgen" / "jobs") in result.output
    assert json.loads((out / "manifest.json").read_text())["complete"] is True
    rerun = CliRunner().invoke(main, ["build", str(protocol.source_path), "-o", str(out),
                                      "--executor", "submitit-local"])
    assert rerun.exit_code == 0, rerun.output
    assert "reused finished identities: id01, id02, id03" in rerun.output
    assert "submitit-local" not in rerun.output       # nothing was submitted


# --------------------------------------------------------------------------------------
# The SLURM path end to end, with stand-ins for sbatch and srun that run the job script's
# tasks on this machine (submitit itself is real: its scripts, array ids, pickles, logs).
# --------------------------------------------------------------------------------------
FAKE_SBATCH = r"""#!/bin/bash
# sbatch stand-in: keeps a copy of the script and runs each task in the background, in a
# process group of its own whose id it notes in jobs/<job id> (for squeue and scancel).
script="$1"; here="$(dirname "$0")"; mkdir -p "$here/jobs"
id=$(( $(cat "$here/next_id" 2>/dev/null || echo 700) + 1 )); echo "$id" > "$here/next_id"
cp "$script" "$here/script_$id.sh"
last=$(sed -n 's/^#SBATCH --array=0-\([0-9]*\).*/\1/p' "$script")
if [ -n "$last" ]; then
  for i in $(seq 0 "$last"); do
    SLURM_JOB_ID=${id}_$i SLURM_ARRAY_JOB_ID=$id SLURM_ARRAY_TASK_ID=$i \
      setsid bash "$script" </dev/null >/dev/null 2>&1 &
    echo $! > "$here/jobs/${id}_$i"
  done
else
  SLURM_JOB_ID=$id setsid bash "$script" </dev/null >/dev/null 2>&1 &
  echo $! > "$here/jobs/$id"
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

# squeue stand-in: a job whose process group lives is RUNNING; one that ended is gone at
# once, as on a cluster whose queue forgot it (MinJobAge) and which keeps no accounting.
FAKE_SQUEUE = r"""#!/bin/bash
here="$(dirname "$0")"
for f in "$here"/jobs/*; do
  [ -e "$f" ] || continue
  kill -0 "$(cat "$f")" 2>/dev/null && echo "$(basename "$f")|RUNNING|None"
done
exit 0
"""

FAKE_SCANCEL = r"""#!/bin/bash
here="$(dirname "$0")"
for id in "$@"; do
  for f in "$here/jobs/$id" "$here/jobs/${id}"_*; do
    [ -e "$f" ] && kill -KILL -- -"$(cat "$f")" 2>/dev/null
  done
done
exit 0
"""

FAKE_SACCT = """#!/bin/sh
echo 'sacct: error: Slurm accounting storage is disabled' >&2
exit 1
"""

FAKE_SINFO = """#!/bin/sh
echo 'debug*|0/4/0/4'
"""


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    bin_dir = tmp_path / "slurm-bin"
    bin_dir.mkdir()
    for name, text in (("sbatch", FAKE_SBATCH), ("srun", FAKE_SRUN), ("squeue", FAKE_SQUEUE),
                       ("scancel", FAKE_SCANCEL), ("sacct", FAKE_SACCT), ("sinfo", FAKE_SINFO)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    yield bin_dir
    subprocess.run([bin_dir / "scancel", *(p.name for p in (bin_dir / "jobs").glob("*"))])


def test_slurm_array_with_a_retry_equals_the_serial_build(protocol, serial, tmp_path,
                                                           fake_slurm, scripted):
    out = tmp_path / "build"
    scripted.write_script(out, {"id03": {"fail": 1}})
    spec = ExecutionSpec(executor="slurm", max_retries=2, identities_per_job=1,
                         slurm={"partition": "gpu", "array_parallelism": 2, "time": "0:30:00"})
    result = stimgen.build(protocol, out=out, progress=False, execution=spec)
    assert snapshot(result.out) == snapshot(serial.out)
    first, retry = sorted(fake_slurm.glob("script_*.sh"))
    assert "#SBATCH --array=0-2%2" in first.read_text()       # one array, 2 at a time
    assert "#SBATCH --partition=gpu" in first.read_text()
    assert "--array" not in retry.read_text()                 # id03 alone, resubmitted
    logs = result.out / ".stimgen" / "jobs"
    assert "injected fault in id03" in (logs / "701_2_0_log.err").read_text()
    assert "identity id03 done" in (logs / "702_0_log.out").read_text()


def test_a_job_that_vanishes_without_accounting_is_retried(protocol, serial, tmp_path,
                                                           fake_slurm, scripted, monkeypatch):
    """A job killed from outside on a cluster without accounting: it leaves the queue with
    no result and no record anywhere; the build fails it after the grace period, says why
    and what it waited for, retries it and finishes identical."""
    monkeypatch.setattr(executors, "GONE_GRACE", 1.0)
    monkeypatch.setattr(executors, "QUIET_SECONDS", 2.0)
    out = tmp_path / "build"
    scripted.write_script(out, {"id02": {"stall": 1}})

    def kill_the_stalled_job():
        deadline = time.monotonic() + 60
        while not scripted.attempts(out, "id02") and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(3)          # long enough for the build to say what it is waiting for
        subprocess.run([fake_slurm / "scancel", scripted.attempts(out, "id02")[0]])

    killer = threading.Thread(target=kill_the_stalled_job)
    killer.start()
    result = CliRunner().invoke(main, ["build", str(protocol.source_path), "-o", str(out),
                                       "--executor", "slurm", "--max-retries", "1",
                                       "--identities-per-job", "1"])
    killer.join()
    assert result.exit_code == 0, result.output
    output = result.output
    assert "SLURM keeps no accounting here (sacct: sacct: error: Slurm accounting storage " \
           "is disabled)" in output
    assert re.search(r"no progress for \d+ s; waiting for job \d+ \(id02\) running for", output)
    assert ("identity id02 failed (attempt 1 of 2): left the queue without a result, and this "
            "cluster keeps no accounting (sacct) to say why; retrying") in output
    assert len(scripted.attempts(out, "id02")) == 2
    assert snapshot(out) == snapshot(serial.out)
