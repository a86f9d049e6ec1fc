"""The SLURM path against a real scheduler: a single-node SLURM 22.05 that
``../shared/slurm/start_slurm.sh`` starts on this machine (as root, in seconds), once with
accounting (slurmdbd, so sacct works) and once without (sacct refuses, as on many small lab
clusters). Each mode checks: results byte-identical to a local build, a job cancelled from
outside (retried; or reported with exit 2 and resumed by the rerun), a job killed at its
time limit, a drained node, Ctrl-C, retries exhausted.

Skipped, with the reason, where that script is missing (set ``STIMGEN_SLURM_SCRIPTS`` to its
folder) or the tests do not run as root. The daemons are stopped at the end when these
tests started them.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import slurm_scripted
import stimgen
from buildfolders import RUN_FIELDS, protocol_from_text, snapshot
from stimgen import executors
from stimgen.build_folder import STIMULUS_JOURNALS_DIR
from stimgen.cli import main
from stimgen.executors import UnitsFailedError
from stimgen.protocol.execution import ExecutionSpec
from stimgen.storage import CRASH_ENV

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = Path(os.environ.get("STIMGEN_SLURM_SCRIPTS") or ROOT.parent / "shared" / "slurm")
NODE = socket.gethostname().split(".")[0]

PROTOCOL = """\
study: {{name: {name}, authors: [Tester]}}
seed: 5
identities:
  - {{id: id01, seed: 1}}
  - {{id: id02, seed: 2}}
  - {{id: id03, seed: 3}}
targets:
  emotions: [happy, afraid]
  intensities: [1.0]
  neutral: true
output: {{image_size: 64}}
execution:                     # a job fits the test node (2 CPUs) twice over
  slurm: {{cpus_per_job: 1, mem_gb: 1, time: 5}}
  identities_per_job: 1
"""


def _unavailable() -> str | None:
    if not (SCRIPTS / "start_slurm.sh").is_file():
        return (f"no test cluster: {SCRIPTS / 'start_slurm.sh'} is missing (set "
                "STIMGEN_SLURM_SCRIPTS to the folder of start_slurm.sh)")
    if os.geteuid() != 0:
        return "starting the test cluster (start_slurm.sh) needs root"
    return None


def _slurm(*command: str, check: bool = True) -> str:
    done = subprocess.run(list(command), capture_output=True, text=True, timeout=60)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(command)}: {done.stderr.strip()}")
    return done.stdout


@pytest.fixture(scope="session")
def _slurm_session():
    """Stops the daemons at the end of the session if no SLURM ran before it."""
    reason = _unavailable()
    if reason:
        pytest.skip(reason)
    running = shutil.which("squeue") is not None and subprocess.run(
        ["squeue", "-h"], capture_output=True, timeout=30).returncode == 0
    yield
    if not running:
        subprocess.run(["bash", str(SCRIPTS / "stop_slurm.sh")], capture_output=True,
                       timeout=300)


@pytest.fixture(scope="module", params=["accounting", "no-accounting"])
def cluster(request, _slurm_session):
    """The test cluster in one mode; switching restarts the daemons (start_slurm.sh)."""
    args = [] if request.param == "accounting" else ["--no-accounting"]
    started = subprocess.run(["bash", str(SCRIPTS / "start_slurm.sh"), *args],
                             capture_output=True, text=True, timeout=900)
    if started.returncode != 0:
        pytest.fail(f"start_slurm.sh {' '.join(args)} failed:\n{started.stdout[-2000:]}\n"
                    f"{started.stderr[-2000:]}")
    accounting = subprocess.run(["sacct", "-n", "-X"], capture_output=True,
                                timeout=60).returncode == 0
    assert accounting == (request.param == "accounting")
    return request.param


@pytest.fixture(scope="module", autouse=True)
def _scripted_jobs():
    """Every job of this module runs :func:`slurm_scripted.scripted_job` (faults on request)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(executors, "render_identities", slurm_scripted.scripted_job)
        yield


@pytest.fixture(scope="module")
def protocol(tmp_path_factory):
    return protocol_from_text(tmp_path_factory.mktemp("protocol"),
                              PROTOCOL.format(name="slurmtest"), "slurmtest.yaml")


@pytest.fixture(scope="module")
def local_build(protocol, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "build"
    return stimgen.build(protocol, out=out, progress=False,
                         execution=ExecutionSpec(executor="local", jobs=1))


def slurm_spec(**changes) -> ExecutionSpec:
    return ExecutionSpec(executor="slurm", identities_per_job=1, max_retries=1,
                         slurm={"cpus_per_job": 1, "mem_gb": 1, "time": 5}).model_copy(
        update=changes)


def cancel_when_stalled(out: Path, identity: str, attempt: int = 1, wait: float = 120.0):
    """A thread that scancels the identity's job once it stalls (its attempt file exists);
    ``.cancelled_at`` holds time.monotonic() of the scancel."""
    def run():
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            ids = slurm_scripted.attempts(out, identity)
            if len(ids) >= attempt:
                _slurm("scancel", ids[attempt - 1])
                thread.cancelled_at = time.monotonic()
                return
            time.sleep(0.2)

    thread = threading.Thread(target=run, daemon=True)
    thread.cancelled_at = None
    thread.start()
    return thread


def _retry_seen_after(out: Path, identity: str, cancelled_at: float) -> float:
    """Seconds from the scancel until the retry's job started (its attempt file)."""
    second = sorted(slurm_scripted.attempts_folder(out).glob(f"{identity}.*"))[-1]
    age = time.time() - second.stat().st_mtime
    return (time.monotonic() - age) - cancelled_at


# --------------------------------------------------------------------------------------
# A job killed at its time limit: a 1-minute limit runs out only after a minute, so this
# build starts first, in the background, and is checked last.
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module", autouse=True)
def time_limit_build(cluster, tmp_path_factory):
    folder = tmp_path_factory.mktemp("late")
    protocol = protocol_from_text(folder, PROTOCOL.format(name="late").replace(
        "  - {id: id02, seed: 2}\n  - {id: id03, seed: 3}\n", ""), "late.yaml")
    out = folder / "build"
    slurm_scripted.write_script(out, {"id01": {"stall": 9}})
    run = {"error": None, "ended": None, "started": time.monotonic()}

    def build():
        try:
            stimgen.build(protocol, out=out, progress=False, execution=ExecutionSpec(
                executor="slurm", max_retries=0,
                slurm={"cpus_per_job": 1, "mem_gb": 1, "time": 1}))
        except Exception as err:            # noqa: BLE001 - checked by the test
            run["error"] = err
        run["ended"] = time.monotonic()

    thread = threading.Thread(target=build, daemon=True)
    thread.start()
    run["thread"], run["out"] = thread, out
    yield run
    thread.join(timeout=300)


# --------------------------------------------------------------------------------------
# The checks, in each mode
# --------------------------------------------------------------------------------------
def test_slurm_build_equals_the_local_build(cluster, protocol, local_build, tmp_path):
    out = tmp_path / "build"
    result = stimgen.build(protocol, out=out, progress=False, execution=slurm_spec())
    assert snapshot(result.out) == snapshot(local_build.out)
    # the manifests differ only in when, how long and by which command (and so in the hash
    # of report.html, which shows the date)
    ours, theirs = (json.loads((o / "manifest.json").read_text())
                    for o in (out, local_build.out))
    assert {k for k in ours if ours[k] != theirs[k]} <= {*RUN_FIELDS, "files"}
    assert {f for f in ours["files"] if ours["files"][f] != theirs["files"][f]} \
        <= {"report.html"}


def test_cancelled_job_is_retried_and_the_build_equals_the_local_one(cluster, protocol,
                                                                     local_build, tmp_path):
    out = tmp_path / "build"
    slurm_scripted.write_script(out, {"id02": {"stall": 1}})
    canceller = cancel_when_stalled(out, "id02")
    result = stimgen.build(protocol, out=out, progress=False, execution=slurm_spec())
    canceller.join()
    assert len(slurm_scripted.attempts(out, "id02")) == 2
    assert snapshot(result.out) == snapshot(local_build.out)
    seconds = _retry_seen_after(out, "id02", canceller.cancelled_at)
    print(f"\n[{cluster}] scancel -> retried job running: {seconds:.1f} s")


def test_cancelled_job_without_retries_exits_2_naming_it_and_the_rerun_completes(
        cluster, protocol, local_build, tmp_path):
    out = tmp_path / "build"
    slurm_scripted.write_script(out, {"id02": {"stall": 1}})
    command = ["build", str(protocol.source_path), "-o", str(out), "--executor", "slurm",
               "--max-retries", "0"]
    canceller = cancel_when_stalled(out, "id02")
    failed = CliRunner().invoke(main, command)
    canceller.join()
    reported = time.monotonic()
    assert failed.exit_code == 2, failed.output
    assert "1 of 3 identities failed every attempt:" in failed.output
    assert "id02 (1 attempt(s)): was cancelled from outside stimgen" in failed.output
    if cluster == "accounting":
        assert "(SLURM state CANCELLED by root)" in failed.output
    assert "Traceback" not in failed.output
    print(f"\n[{cluster}] scancel -> exit 2: {reported - canceller.cancelled_at:.1f} s")

    rerun = CliRunner().invoke(main, command)     # the script stalls the first attempt only
    assert rerun.exit_code == 0, rerun.output
    assert "reused finished identities: id01, id03" in rerun.output
    assert snapshot(out) == snapshot(local_build.out)


def test_cancelled_job_keeps_its_finished_stimuli_and_the_retry_draws_the_rest(
        cluster, tmp_path, monkeypatch):
    """scancel sends the job SIGTERM while it holds after its 2nd of 3 stimuli, whose files
    are written but not yet journaled: it journals both, stops and exits; the retry (whose
    count of batches starts again, so it does not hold) draws only the 3rd, and the build
    equals a local one."""
    if cluster != "accounting":
        pytest.skip("checked once, with accounting")
    protocol = protocol_from_text(tmp_path, PROTOCOL.format(name="journal").replace(
        "  - {id: id02, seed: 2}\n  - {id: id03, seed: 3}\n", ""), "journal.yaml")
    local = stimgen.build(protocol, out=tmp_path / "local", progress=False,
                          execution=ExecutionSpec(executor="local", jobs=1))
    out = tmp_path / "build"
    monkeypatch.setenv(CRASH_ENV, "batch@2:stall")         # the jobs inherit it (sbatch)

    cancelled = []

    def cancel_when_held():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if len([p for p in (out / "stimuli").glob("*.png")]) == 2:
                time.sleep(0.5)            # held: the 2nd image is written, not yet journaled
                _slurm("scancel", slurm_scripted.attempts(out, "id01")[0])
                cancelled.append(time.monotonic())
                return
            time.sleep(0.1)

    threading.Thread(target=cancel_when_held, daemon=True).start()
    result = stimgen.build(protocol, out=out, progress=False, execution=slurm_spec())
    assert cancelled, "the job never held at its 2nd stimulus"
    first, second = slurm_scripted.attempts(out, "id01")
    logs = out / ".stimgen" / "jobs"
    assert "TIME LIMIT" not in (logs / f"{first}_0_log.err").read_text()
    assert "stopped by SIGTERM; finished stimuli are kept" in \
        (logs / f"{first}_0_log.out").read_text()
    assert "(2 finished by an earlier attempt)" in (logs / f"{second}_0_log.out").read_text()
    assert result.kept_stimuli == 0 and not (out / STIMULUS_JOURNALS_DIR).exists()
    assert snapshot(result.out) == snapshot(local.out)


def test_retries_exhausted_exit_2_with_the_error_and_the_log(cluster, protocol, tmp_path):
    out = tmp_path / "build"
    slurm_scripted.write_script(out, {"id03": {"fail": 9}})
    result = CliRunner().invoke(main, ["build", str(protocol.source_path), "-o", str(out),
                                       "--executor", "slurm", "--max-retries", "1"])
    assert result.exit_code == 2, result.output
    assert "id03 (2 attempt(s)): RuntimeError: injected fault in id03" in result.output
    log = next(line.split("log: ", 1)[1] for line in result.output.splitlines()
               if "log: " in line)
    assert "RuntimeError: injected fault in id03" in Path(log).read_text()
    assert sorted(p.stem for p in (out / ".stimgen" / "identities").glob("*.json")) \
        == ["id01", "id02"]


def test_drained_node_waits_says_why_and_resumes(cluster, protocol, local_build, tmp_path,
                                                 monkeypatch, capsys):
    monkeypatch.setattr(executors, "QUIET_SECONDS", 3.0)
    out = tmp_path / "build"
    _slurm("scontrol", "update", f"NodeName={NODE}", "State=DRAIN", "Reason=stimgen-test")
    try:
        result = {}
        thread = threading.Thread(target=lambda: result.update(build=stimgen.build(
            protocol, out=out, progress=True, execution=slurm_spec())), daemon=True)
        thread.start()
        deadline, said = time.monotonic() + 60, ""
        while "no progress for" not in said and time.monotonic() < deadline:
            time.sleep(0.5)
            said += capsys.readouterr().err
    finally:
        _slurm("scontrol", "update", f"NodeName={NODE}", "State=RESUME")
    thread.join(timeout=120)
    notice = next((line for line in said.splitlines() if "no progress for" in line), "")
    assert "pending: " in notice, said
    print(f"\n[{cluster}] {notice.strip()}")
    assert "build" in result, "the build did not finish after the node was resumed"
    assert snapshot(out) == snapshot(local_build.out)


def test_ctrl_c_cancels_the_jobs(cluster, tmp_path):
    protocol = protocol_from_text(tmp_path, PROTOCOL.format(name="ctrlc"), "ctrlc.yaml")
    out = tmp_path / "build"
    slurm_scripted.write_script(out, {i: {"stall": 9} for i in ("id01", "id02", "id03")})
    command = [sys.executable, str(Path(slurm_scripted.__file__)), "build",
               str(protocol.source_path), "-o", str(out), "--executor", "slurm"]
    build = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(
                                 [str(ROOT), str(ROOT / "tests")])})
    try:
        deadline = time.monotonic() + 90
        while (not list(slurm_scripted.attempts_folder(out).glob("*"))
               and time.monotonic() < deadline):
            time.sleep(0.2)
        ours = _slurm("squeue", "-h", "-n", "stimgen-ctrlc", "-o", "%i").split()
        assert len(ours) == 3, ours
        build.send_signal(signal.SIGINT)
        output, _ = build.communicate(timeout=30)
    finally:
        if build.poll() is None:
            build.kill()
    assert build.returncode != 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        left = _slurm("squeue", "-h", "-n", "stimgen-ctrlc", "-t", "PENDING,RUNNING",
                      "-o", "%i|%T").split()
        if not left:
            break
        time.sleep(0.5)
    assert not left, f"jobs still queued after Ctrl-C: {left}\n{output}"


def test_time_limit_kill_is_reported(cluster, time_limit_build):
    run = time_limit_build
    run["thread"].join(timeout=300)
    assert run["ended"] is not None, "the build still waits for a job past its time limit"
    error = run["error"]
    assert isinstance(error, UnitsFailedError), error
    [failure] = error.failures
    assert failure.identity_id == "id01"
    assert failure.error.startswith("reached its time limit of 1 min")
    if cluster == "accounting":
        assert "SLURM state TIMEOUT" in failure.error
    assert any("DUE TO TIME LIMIT" in line for line in failure.log_tail)
    print(f"\n[{cluster}] 1-min time limit -> reported after "
          f"{run['ended'] - run['started']:.0f} s")


def test_demo_built_on_slurm_equals_the_local_demo(cluster, tmp_path):
    if cluster != "accounting":
        pytest.skip("the demo is compared once, with accounting")
    demo = stimgen.load_protocol(ROOT / "protocols" / "demo.yaml")
    local = stimgen.build(demo, out=tmp_path / "local", progress=False,
                          execution=ExecutionSpec(executor="local"))
    on_slurm = stimgen.build(demo, out=tmp_path / "slurm", progress=False,
                             execution=ExecutionSpec(executor="slurm", slurm={
                                 "cpus_per_job": 2, "mem_gb": 2}))
    assert snapshot(on_slurm.out) == snapshot(local.out)
