"""One build per folder: a second concurrent build stops clearly, a crashed build's lock is
taken over, and a folder stimgen did not make is refused unless --force.

Guarantee (docs/reliability.md), tested with real `stimgen build` processes.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import stimgen
from stimgen.build_folder import LOCK_FILE, LOCK_OWNER_JSON, lock_is_free
from stimgen.cli import main
from stimgen.errors import BuildError
from stimgen.storage import CRASH_ENV

STIMGEN = [sys.executable, "-c", "from stimgen.cli import main; main()"]
PROTOCOL = """\
study: {name: lock}
identities:
  - {id: id01, seed: 1}
  - {id: id02, seed: 2}
targets: {emotions: [circumplex:happy, circumplex:sad], intensities: [1.0], neutral: true}
output: {image_size: 96}
"""


@pytest.fixture()
def protocol_file(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(PROTOCOL, encoding="utf-8")
    return path


def _wait_for(path: Path, process: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert process.poll() is None, "the first build ended early"
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def test_concurrent_build_is_refused_and_crashed_lock_taken_over(protocol_file, tmp_path):
    out = tmp_path / "build"
    # The first build stalls, holding the lock, once its first identity is finished.
    first = subprocess.Popen([*STIMGEN, "-q", "build", str(protocol_file), "-o", str(out)],
                             env={**os.environ, CRASH_ENV: "identity@1:stall"},
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(out / ".stimgen" / "identities" / "id01.json", first)
        second = subprocess.run([*STIMGEN, "build", str(protocol_file), "-o", str(out)],
                                capture_output=True, text=True, timeout=120)
        assert second.returncode == 2
        assert f"another stimgen build (pid {first.pid}" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        first.send_signal(signal.SIGKILL)           # a crash: the lock file stays behind
        first.wait()
    assert json.loads((out / LOCK_OWNER_JSON).read_text())["pid"] == first.pid
    assert not (out / "manifest.json").exists() and lock_is_free(out)
    result = stimgen.build(stimgen.load_protocol(protocol_file), out=out, progress=False,
                           jobs=1)
    assert result.reused_identities == ["id01"]     # the killed build's work is kept
    assert (out / "manifest.json").is_file() and not (out / LOCK_OWNER_JSON).exists()


def test_lock_held_by_another_process_names_its_holder(protocol_file, tmp_path):
    """Another machine's build on shared storage: its note names it, its OS lock holds."""
    out = tmp_path / "build"
    (out / ".stimgen").mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from filelock import FileLock\n"
        f"lock = FileLock({str(out / LOCK_FILE)!r}); lock.acquire()\n"
        "print('held', flush=True); time.sleep(60)")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        (out / LOCK_OWNER_JSON).write_text(json.dumps({"pid": 4242, "host": "gpu-node-7"}))
        with pytest.raises(BuildError, match="pid 4242 on gpu-node-7") as caught:
            stimgen.build(stimgen.load_protocol(protocol_file), out=out, progress=False)
        assert "wait" in caught.value.hint
        assert json.loads((out / LOCK_OWNER_JSON).read_text())["host"] == "gpu-node-7"
    finally:
        holder.kill()
        holder.wait()
    stimgen.build(stimgen.load_protocol(protocol_file), out=out, progress=False, jobs=1)
    assert (out / "manifest.json").is_file()


def test_cli_refuses_foreign_folder_unless_forced(protocol_file, tmp_path):
    foreign = tmp_path / "thesis"
    foreign.mkdir()
    (foreign / "chapter1.docx").write_text("precious")
    refused = CliRunner().invoke(main, ["build", str(protocol_file), "-o", str(foreign)])
    assert refused.exit_code == 2
    assert "not made by stimgen" in refused.output and "--force" in refused.output
    assert sorted(p.name for p in foreign.iterdir()) == ["chapter1.docx"]
    forced = CliRunner().invoke(main, ["-q", "build", str(protocol_file), "-o", str(foreign),
                                       "--force"])
    assert forced.exit_code == 0, forced.output
    assert (foreign / "chapter1.docx").read_text() == "precious"
    assert (foreign / "manifest.json").is_file()
