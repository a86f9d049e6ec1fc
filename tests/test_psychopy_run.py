"""End to end: the compiled experiment runs under Xvfb as a simulated participant and its data
file has one row per trial, the stimulus and response columns, in the chosen group's order;
every column the bundle's README documents is in it, and catch trials are answered."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pandas as pd
import pytest
from PIL import Image

from test_psychopy_bundle import build_bundle, make_spec  # also skips without PsychoPy

XVFB_RUN = shutil.which("xvfb-run")


def run_simulated(folder, group: str) -> pd.DataFrame:
    """Run the bundle's launcher under Xvfb; the data CSV it printed, as a DataFrame."""
    done = subprocess.run(
        [XVFB_RUN, "-a", "-s", "-screen 0 1280x1024x24", sys.executable, "run_simulated.py",
         "--group", group, "--participant", "sim01"],
        cwd=folder, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    data_file = done.stdout.strip().splitlines()[-1]
    return pd.read_csv(data_file, dtype={"choice_keys.keys": str, "correct_key": str,
                                         "catch_keys.keys": str})


def documented_columns(readme: str) -> list[str]:
    """The data-file columns listed in the README's *Data columns* table (a row may name
    several, separated by `` / ``)."""
    section = readme.split("## Data columns", 1)[1].split("\n## ", 1)[0]
    cells = re.findall(r"^\| `([^`]+)` \|", section, flags=re.MULTILINE)
    return [name for cell in cells for name in cell.split(" / ")]


@pytest.mark.slow
@pytest.mark.skipif(XVFB_RUN is None and not os.environ.get("CI"),
                    reason="xvfb-run not installed (run make system-deps)")
@pytest.mark.parametrize("task", ["rating", "categorization", "passive"])
def test_simulated_participant_runs_the_chosen_groups_order(tmp_path, task):
    spec = make_spec(task, "random", timing={"fixation_ms": 300, "iti_ms": 500})
    files, design = build_bundle(tmp_path, spec)
    (tmp_path / "stimuli").mkdir()
    for stim_file in design.table["stim_file"].unique():
        Image.new("RGB", (32, 32), (180, 120, 90)).save(tmp_path / stim_file)

    data = run_simulated(files["psyexp"].parent, "g02")

    documented = documented_columns(files["readme"].read_text(encoding="utf-8"))
    assert len(documented) > 20
    assert [c for c in documented if c not in data.columns] == []
    trials = data[data["stim_id"].notna()]
    expected = design.trials["g02"]
    assert list(trials["stim_id"]) == list(expected["stim_id"])  # practice then main, in order
    assert list(trials["position"].astype(int)) == list(range(1, len(expected) + 1))
    assert set(trials["group"]) == {"g02"} and set(trials["participant"]) == {"sim01"}
    for column in ("stim_file", "identity", "emotion", "angle", "intensity", "target_valence",
                   "target_arousal", "achieved_valence", "achieved_arousal"):
        assert trials[column].notna().all(), column
    if task == "rating":
        for scale in ("valence", "arousal"):
            ratings = trials[f"{scale}_slider.response"]
            assert ratings.between(1, 9).all() and trials[f"{scale}_slider.rt"].gt(0).all()
    elif task == "categorization":
        assert trials["choice_keys.keys"].astype(str).isin(["1", "2", "3", "4"]).all()
        correct = (trials["choice_keys.keys"].astype(str)
                   == trials["correct_key"].astype(str)).astype(int)
        assert list(trials["choice_keys.corr"].astype(int)) == list(correct)
    else:
        catch = trials[trials["is_catch"] == 1]
        assert len(catch) == 2
        assert list(catch["catch_keys.keys"]) == ["space", "space"]
        assert catch["catch_keys.rt"].between(0, 2.0).all()
        assert trials.loc[trials["is_catch"] == 0, "catch_keys.keys"].isna().all()
