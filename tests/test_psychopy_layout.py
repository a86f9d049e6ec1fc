"""Screen layout: every screen of every task type, run as a simulated participant in a real
1024x768 PsychoPy window under Xvfb, keeps its text inside the window, apart from the face,
the sliders and other text, and never breaks a word across lines. What each screen drew is
measured by psychopy_screen_probe.py, inside the experiment's process.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from test_psychopy_bundle import build_bundle, make_spec, make_stimuli  # skips w/o PsychoPy

PROBE = Path(__file__).with_name("psychopy_screen_probe.py")
XVFB_RUN = shutil.which("xvfb-run")
WINDOW = [1024, 768]  # the compiled script's window when not full screen
LONG_INSTRUCTIONS = (
    "In this study you will see a series of faces, one at a time, each showing an emotional "
    "expression of varying intensity; please look at every face carefully and then rate how "
    "unpleasant or pleasant and how calm or excited the expression looks to you, using the "
    "two scales below the face, taking as much time as you need. Press SPACE to start.")
SEVEN_CHOICES = [
    {"label": "Happiness", "emotions": ["Happy"]}, {"label": "Excitement", "emotions": ["Excited"]},
    {"label": "Sadness", "emotions": ["Sad"]}, {"label": "Tiredness", "emotions": ["Tired"]},
    {"label": "Anger"}, {"label": "Fear"}, {"label": "Disgust"}]
FIVE_LABELS = ["very unpleasant", "unpleasant", "neither pleasant nor unpleasant", "pleasant",
               "very pleasant"]

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(XVFB_RUN is None and not os.environ.get("CI"),
                                 reason="xvfb-run not installed (run make system-deps)")]

CASES = {
    "rating": make_spec("rating", "random"),
    "rating, 5 long labels, key, long instructions": make_spec(
        "rating", "random", text={"instructions": LONG_INSTRUCTIONS},
        task={"valence": {"question": "How unpleasant or pleasant is this expression?",
                          "labels": FIVE_LABELS}, "advance": "key"}),
    "categorization, 7 choices": make_spec("categorization", "random",
                                           task={"choices": SEVEN_CHOICES}),
    "passive with catch trials": make_spec("passive", "random"),
}


def drawn_screens(tmp_path: Path, spec) -> list[dict]:
    """Build ``spec``'s bundle (12 stimuli), run its simulated participant under the probe,
    return the screens it drew."""
    files, design = build_bundle(tmp_path, spec, stimuli=make_stimuli(intensities=(1.0,)))
    (tmp_path / "stimuli").mkdir()
    for stim_file in design.table["stim_file"].unique():
        Image.new("RGB", (32, 32), (180, 120, 90)).save(tmp_path / stim_file)
    out = tmp_path / "screens.json"
    done = subprocess.run(
        [XVFB_RUN, "-a", "-s", "-screen 0 1280x1024x24", sys.executable, str(PROBE),
         str(files["psyexp"].parent), design.groups[0], str(out)],
        cwd=files["psyexp"].parent, capture_output=True, text=True, timeout=180,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(out.read_text(encoding="utf-8"))


def broken_words(text: str, lines: list[str]) -> list[str]:
    """Pieces of the rendered ``lines`` that are not whole words of ``text`` (words are split
    at spaces and line breaks only: a no-break space holds its neighbours together).

    >>> broken_words("very unpleasant", ["very unpl", "easant"])
    ['unpl', 'easant']
    """
    words = set(re.split(r"[ \n]+", text))
    return [piece for line in lines for piece in re.split(r"[ \n]+", line)
            if piece and piece not in words]


def overlapping(a: list[float], b: list[float]) -> bool:
    """Whether boxes [left, right, bottom, top] share more than a pixel's edge."""
    return min(a[1], b[1]) - max(a[0], b[0]) > 1 and min(a[3], b[3]) - max(a[2], b[2]) > 1


@pytest.mark.parametrize("case", list(CASES))
def test_every_screen_fits_the_window_and_keeps_words_whole(tmp_path, case):
    screens = drawn_screens(tmp_path, CASES[case])

    names = {m["name"] for screen in screens for m in screen["drawn"]}
    assert {"welcome_text", "face_image", "goodbye_text"} <= names, names
    problems = []
    for screen in screens:
        assert screen["window"] == WINDOW
        half_w, half_h = WINDOW[0] / 2, WINDOW[1] / 2
        shown = [m for m in screen["drawn"] if m["box"] is not None]
        for m in shown:
            left, right, bottom, top = m["box"]
            if left < -half_w or right > half_w or bottom < -half_h or top > half_h:
                problems.append(f"{m['name']} leaves the window: {m['box']}")
            if m["kind"] == "text":
                if m["hyphens"] or broken_words(m["text"], m["lines"]):
                    problems.append(f"{m['name']} breaks a word: {m['lines']}")
        for i, a in enumerate(shown):
            for b in shown[i + 1:]:
                if "text" in (a["kind"], b["kind"]) and overlapping(a["box"], b["box"]):
                    problems.append(f"{a['name']} {a['box']} overlaps {b['name']} {b['box']}")
    assert problems == []
    if case.startswith("rating"):
        assert {"valence_label_1", "arousal_label_3"} <= names  # the labels were measured
    if case.startswith("categorization"):
        assert "choice_legend" in names
    if case.startswith("passive"):
        assert "catch_text" in names
