"""Benchmark of counterbalancing: demo-sized stimuli (452), 24 participant orders per design.

Run: .venv/bin/python benchmarks/bench_design.py   (prints seconds per design and the ratio
to a plain numpy shuffle of the same trials, measured in the same run)
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd

from stimgen.design import plan_design
from stimgen.plan import plan_targets
from stimgen.protocol.experiment import ExperimentSpec
from stimgen.protocol.models import Targets

IDENTITIES = ("id01", "id02", "id03", "id04")
PARTICIPANTS = 24


def demo_stimuli() -> pd.DataFrame:
    """A stimuli.tsv-like table for the demo protocol: 4 identities x (28 x 4 + neutral)."""
    targets = plan_targets(Targets(emotions="all", intensities=[0.25, 0.5, 0.75, 1.0],
                                   neutral=True))
    rng = np.random.default_rng(0)
    rows = []
    for identity in IDENTITIES:
        for t in targets:
            sid = t.stimulus_id(identity)
            rows.append(dict(stimulus_id=sid, file=f"stimuli/{sid}.png", identity=identity,
                             target_kind=t.kind, emotion=t.emotion, angle=t.angle,
                             intensity=t.intensity, target_valence=t.valence,
                             target_arousal=t.arousal,
                             achieved_valence=t.valence + rng.normal(0, 0.1),
                             achieved_arousal=t.arousal + rng.normal(0, 0.1)))
    return pd.DataFrame(rows)


def timed(function, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    stimuli = demo_stimuli()
    designs = {
        "random (24 orders)": {"design": {"type": "random", "participants": PARTICIPANTS}},
        "blocked by intensity": {"design": {"type": "blocked", "factor": "intensity",
                                            "groups": 10}},
        "blocked by emotion (29 blocks)": {"design": {"type": "blocked", "factor": "emotion"}},
        "latin-square (intensity)": {"design": {"type": "latin-square",
                                                "conditions": "intensity", "groups": 4}},
    }
    rng = np.random.default_rng(0)
    baseline = timed(lambda: [rng.permutation(len(stimuli)) for _ in range(PARTICIPANTS)])
    print(f"{len(stimuli)} stimuli; baseline: {PARTICIPANTS} plain numpy shuffles "
          f"{baseline * 1e3:.2f} ms")
    for name, section in designs.items():
        spec = ExperimentSpec.model_validate(section)
        design = plan_design(spec, stimuli, seed=2024)
        seconds = timed(lambda: plan_design(spec, stimuli, seed=2024))
        trials = sum(len(t) for t in design.trials.values())
        print(f"{name:32s} {len(design.groups):3d} groups {trials:6d} trials "
              f"{seconds:7.3f} s  ({seconds / baseline:,.0f}x baseline)")


if __name__ == "__main__":
    main()
