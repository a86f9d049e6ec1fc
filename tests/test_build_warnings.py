"""Warnings during `stimgen build` (logged by stimgen, or raised with `warnings.warn`, in this
process or in a worker process) start on a line of their own, never after the progress bar."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROTOCOL = """\
study: {name: warnings under the bar}
identities:
  - {id: id01, seed: 1}
  - {id: id02, seed: 2}
targets: {emotions: [circumplex:happy, circumplex:sad], intensities: [1.0]}
output: {image_size: 64}
"""
# Every rendered chunk logs a warning and raises a MultipleFacesWarning while the bar shows.
# A file, not `-c`, so that "spawn" workers (GPU builds use them) re-run the patch on import.
NOISY_BUILD = """\
import logging, multiprocessing, sys, warnings
import stimgen.executors as executors
from stimgen.detection import MultipleFacesWarning

original = executors.render_and_rate

def noisy(protocol, chunk, out, **kwargs):
    logging.getLogger("stimgen").warning("logged note for %s", chunk.unit.identity.id)
    warnings.warn(f"2 faces found in {chunk.unit.identity.id}.jpg", MultipleFacesWarning)
    return original(protocol, chunk, out, **kwargs)

executors.render_and_rate = noisy
if __name__ == "__main__":
    multiprocessing.set_start_method(sys.argv.pop(1))
    from stimgen.cli import main
    main()
"""


def screen_lines(stream: str) -> list[str]:
    """What a terminal shows for ``stream``: "\\r" returns to the start of the line and
    what follows overwrites it; "\\n" starts a new line.

    >>> screen_lines("bar 0%\\rbar 50%\\nnext")
    ['bar 50%', 'next']
    >>> screen_lines("faces 0%warning: x\\n")
    ['faces 0%warning: x', '']
    """
    lines, line, column = [], [], 0
    for char in stream:
        if char == "\n":
            lines.append("".join(line).rstrip())
            line, column = [], 0
        elif char == "\r":
            column = 0
        else:
            if column < len(line):
                line[column] = char
            else:
                line.append(char)
            column += 1
    lines.append("".join(line).rstrip())
    return lines


@pytest.mark.parametrize("jobs, start", [("1", "fork"), ("2", "fork"), ("2", "spawn")])
def test_build_warnings_never_share_a_line_with_the_progress_bar(tmp_path, jobs, start):
    protocol = tmp_path / "protocol.yaml"
    protocol.write_text(PROTOCOL, encoding="utf-8")
    script = tmp_path / "noisy_build.py"
    script.write_text(NOISY_BUILD, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHONWARNINGS")}
    run = subprocess.run([sys.executable, str(script), start, "build", str(protocol), "-o",
                          str(tmp_path / "out"), "-j", jobs], capture_output=True, text=True,
                         cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "faces:" in run.stderr                     # the bar was drawn
    lines = screen_lines(run.stderr)
    shown = [line for line in lines if "logged note" in line or "faces found" in line]
    assert len(shown) >= 4, run.stderr                # both identities, both kinds
    assert all(line.startswith("warning: ") for line in shown), shown
    assert {"id01", "id02"} <= {word.rstrip(".jpg") for line in shown for word in line.split()}
