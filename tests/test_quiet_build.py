"""A build that writes a PsychoPy experiment prints stimgen's lines only, none of PsychoPy's
import noise (ioHub's "pytables package not found", wx/Qt/psychtoolbox backend messages)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("psychopy")

ROOT = Path(__file__).resolve().parents[1]
PROTOCOL = """\
study: {{name: quiet build, description: "no noise", authors: [Tester]}}
seed: 5
identities:
  - {{id: id01, seed: 1}}
targets: {{emotions: [circumplex:happy, circumplex:sad], intensities: [1.0], neutral: true}}
output: {{image_size: 96}}
experiment:
  online: {online}
  task: {{type: categorization, choices: [Happy, Sad, Neutral]}}
  design: {{type: random, participants: 2}}
"""
NOISE = ("pytables", "hdf5", "wx", "qt", "psychtoolbox", "ptb", "pyo", "iohub", "deprecat",
         "warning", "traceback")


@pytest.mark.slow
@pytest.mark.parametrize("online", ["false", "true"])
def test_build_with_experiment_prints_no_psychopy_noise(tmp_path, online):
    protocol = tmp_path / "quiet.yaml"
    protocol.write_text(PROTOCOL.format(online=online), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHONWARNINGS")}
    run = subprocess.run([sys.executable, "-c", "from stimgen.cli import main; main()",
                          "build", str(protocol), "-o",
                          str(tmp_path / "out")], capture_output=True, text=True, cwd=ROOT,
                         env={**env, "DISPLAY": ""}, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = [line.strip() for line in (run.stdout + run.stderr).replace("\r", "\n").splitlines()]
    noisy = [line for line in lines if any(word in line.lower() for word in NOISE)]
    assert not noisy, noisy
    assert (tmp_path / "out" / "experiment" / "quiet_build.psyexp").is_file()
