"""The compiled experiment script in the README's environment, and the build's last lines.

Without a GUI toolkit, `python <study>.py` stops at once with a message saying how to run the
experiment instead of PsychoPy's "module 'psychopy.gui' has no attribute 'DlgFromDict'"; a
build on a machine without PsychoPy monitor files ends with its output folder, not with
PsychoPy's queued "Monitor specification not found" warning (issue 27).
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from test_psychopy_bundle import build_bundle, make_spec  # also skips without PsychoPy

ROOT = Path(__file__).resolve().parents[1]
XVFB_RUN = shutil.which("xvfb-run")
HAS_TOOLKIT = any(importlib.util.find_spec(name) for name in ("wx", "PyQt6", "PyQt5"))


def test_the_start_dialog_is_guarded_in_the_compiled_script(tmp_path):
    files, _ = build_bundle(tmp_path, make_spec("rating", "random"))
    script = files["script"].read_text(encoding="utf-8")
    guard = script.index("if not hasattr(gui, 'DlgFromDict')")
    assert guard < script.index("dlg = gui.DlgFromDict(")
    assert "python run_simulated.py --group g01" in script[guard:guard + 800]


@pytest.mark.slow
@pytest.mark.skipif(XVFB_RUN is None, reason="xvfb-run not installed (run make system-deps)")
@pytest.mark.skipif(HAS_TOOLKIT, reason="a GUI toolkit is installed: the dialog would open")
def test_running_the_script_without_a_gui_toolkit_says_how_to_run_it(tmp_path):
    files, _ = build_bundle(tmp_path, make_spec("rating", "random"))
    script = files["script"]
    done = subprocess.run([XVFB_RUN, "-a", sys.executable, script.name], cwd=script.parent,
                          capture_output=True, text=True, timeout=180,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    output = done.stdout + done.stderr
    assert done.returncode == 1, output[-2000:]
    assert "Traceback" not in output and "has no attribute 'DlgFromDict'" not in output
    assert f"{script.name} opens a start dialog" in output
    assert "PsychoPy app" in output and "run_simulated.py" in output


@pytest.mark.slow
def test_the_build_ends_with_its_folder_not_with_psychopy_log_lines(tmp_path):
    """A fresh HOME has no ~/.psychopy3/monitors: PsychoPy queues 'Monitor specification not
    found' and would print it at exit, below the build's output."""
    protocol = tmp_path / "protocol.yaml"
    protocol.write_text("study: {name: last line}\nidentities: [{id: id01, seed: 1}]\n"
                        "targets: {emotions: [calm, tired], intensities: [1.0]}\n"
                        "output: {image_size: 64}\n"
                        "experiment: {task: {type: rating}, design: {type: random, "
                        "participants: 1}}\n", encoding="utf-8")
    home = tmp_path / "home"
    home.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", "from stimgen.cli import main; main()", "build", str(protocol),
         "-o", str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Monitor specification" not in done.stdout + done.stderr
    assert done.stdout.strip().splitlines()[-1] == str(tmp_path / "out")
