"""A build killed at any moment resumes to a folder identical to an uninterrupted build.

Guarantee (docs/reliability.md): files are written atomically, manifest.json is written last
and marks a complete build, and running the same build again after `kill -9` reuses finished
identities and yields the same files. Builds are killed through the crash hook of
stimgen.storage (STIMGEN_TEST_CRASH_AT, as `kill -9` would: os._exit, no clean-up) in a forked
process, and once with a real SIGKILL of a `stimgen build` process.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import stimgen
from stimgen.build_folder import LOCK_OWNER_JSON, lock_is_free
from buildfolders import protocol_from_text, snapshot
from stimgen.storage import CRASH_ENV

ROOT = Path(__file__).resolve().parents[1]
KILLED = 137
STIMGEN = [sys.executable, "-c", "from stimgen.cli import main; main()"]

PROTOCOL = """\
study: {name: kill test, description: "resume after kill -9", authors: [Tester]}
seed: 11
identities:
  - {id: id01, seed: 1}
  - {id: id02, seed: 2}
targets:
  emotions: [circumplex:happy, circumplex:sad, afraid, tired]
  intensities: [1.0]
  points: [{label: calm, valence: 0.2, arousal: -0.3}]
  neutral: true
output: {image_size: 128}
experiment:
  task: {type: categorization, choices: [Happy, Sad, Afraid, Tired, Calm, Neutral]}
  design: {type: random, participants: 2}
"""

# (crash point, whether the folder already holds a complete build that is being rebuilt).
# Counting: each identity writes 6 stimuli, then its cache record (7 atomic writes).
KILL_POINTS = [
    ("write@1", False),                    # first stimulus written to its temporary file
    ("stimulus@3", False),                 # half of the first identity
    ("stimulus@6", False),                 # all of id01's images, its record not yet stored
    ("write:id01.json", False),            # id01's record in its temporary file
    ("identity@1", False),                 # id01 finished
    ("stimulus@9", False),                 # half of id02
    ("identity@2", False),                 # every image done, no table yet
    ("write:stimuli.tsv", False),          # tables being written
    ("tables", False),                     # tables written, no experiment yet
    ("experiment", False),                 # bundle written, no report yet
    ("write:report.html", False),          # report assets in place, page not yet renamed
    ("report", False),                     # everything but the manifest
    ("write:manifest.json", False),        # manifest in its temporary file
    ("install:experiment@2", False),       # bundle: two of its files moved into place
    ("install:report_assets@2", False),    # report assets: two files in place
    ("write:report.html", True),           # rebuild over a complete build: unchanged files
                                           # stay as they are, the dated report is rewritten
]


@pytest.fixture(scope="module")
def protocol(tmp_path_factory):
    return protocol_from_text(tmp_path_factory.mktemp("protocol"), PROTOCOL, "kill.yaml")


@pytest.fixture(scope="module")
def reference(protocol, tmp_path_factory):
    """An uninterrupted build (also imports PsychoPy once, so forked builds start fast)."""
    out = tmp_path_factory.mktemp("reference") / "build"
    stimgen.build(protocol, out=out, progress=False, jobs=1)
    return snapshot(out)


def build_in_child(protocol, out: Path, crash_at: str | None) -> int:
    """Run a build in a forked process, crashing at ``crash_at``; returns its exit code."""
    pid = os.fork()
    if pid == 0:                                    # child: never return into pytest
        code = 1
        try:
            if crash_at:
                os.environ[CRASH_ENV] = crash_at
            stimgen.build(protocol, out=out, progress=False, jobs=1)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.parametrize("point,prebuilt", KILL_POINTS,
                         ids=[p + ("-rebuild" if r else "") for p, r in KILL_POINTS])
def test_killed_build_resumes_to_identical_folder(protocol, reference, tmp_path, point,
                                                  prebuilt):
    out = tmp_path / "build"
    if prebuilt:
        assert build_in_child(protocol, out, None) == 0
    assert build_in_child(protocol, out, point) == KILLED, f"{point} was never reached"
    assert not (out / "manifest.json").exists()          # never presented as complete
    result = stimgen.build(protocol, out=out, progress=False, jobs=1)
    assert result.repairs == []                           # a kill damages nothing
    assert snapshot(out) == reference
    assert lock_is_free(out) and not (out / LOCK_OWNER_JSON).exists()


def test_resume_reuses_identities_finished_before_the_kill(protocol, reference, tmp_path):
    out = tmp_path / "build"
    assert build_in_child(protocol, out, "identity@1") == KILLED
    result = stimgen.build(protocol, out=out, progress=False, jobs=1)
    assert result.reused_identities == ["id01"]


def test_incomplete_folder_is_refused_by_report_command(protocol, tmp_path):
    from click.testing import CliRunner

    from stimgen.cli import main

    out = tmp_path / "build"
    assert build_in_child(protocol, out, "report") == KILLED
    assert (out / "report.html").is_file() and not (out / "manifest.json").exists()
    result = CliRunner().invoke(main, ["report", str(out)])
    assert result.exit_code == 2
    assert "not a complete build" in result.output and "Traceback" not in result.output


def test_real_sigkill_of_cli_build_then_resume(protocol, reference, tmp_path):
    """`kill -9` of a real `stimgen build` process once its first images are on disk."""
    out = tmp_path / "build"
    process = subprocess.Popen(
        [*STIMGEN, "--quiet", "build", str(protocol.source_path), "-o", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if len(list((out / "stimuli").glob("*.png"))) >= 2:
                break
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL, "the build finished before it was killed"
    assert not (out / "manifest.json").exists()
    stimgen.build(protocol, out=out, progress=False, jobs=1)
    assert snapshot(out) == reference


@pytest.mark.parametrize("spec,written", [("write:b.txt", ["a.txt"]), ("write@2", ["a.txt"]),
                                          ("write:c.txt@1", ["a.txt", "b.txt"])])
def test_crash_points_with_colons_in_their_names(tmp_path, spec, written):
    """`write:<file>` names one file's write (the colon is part of the name, not an action)."""
    from stimgen.storage import atomic_write_text

    pid = os.fork()
    if pid == 0:
        try:
            os.environ[CRASH_ENV] = spec
            for name in ("a.txt", "b.txt", "c.txt"):
                atomic_write_text(tmp_path / name, name)
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == KILLED
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == written
