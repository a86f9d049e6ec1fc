"""Times the PsychoPy bundle of a demo-sized build: 448 stimuli (4 identities x 28 named
emotions x 4 intensities) and 24 generated participant orders; target under 5 s.

Usage: python benchmarks/bench_bundle.py [--participants 24] [--task rating]
The baseline, measured in the same run, is writing the same trial tables as plain CSV files.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd

from stimgen.circumplex import angle_to_va, named_emotions
from stimgen.design import plan_design
from stimgen.plan import bundle_spec
from stimgen.protocol.experiment import ExperimentSpec

TARGET_S = 5.0


def demo_stimuli(identities: int = 4, intensities=(0.25, 0.5, 0.75, 1.0)) -> pd.DataFrame:
    """A stimuli.tsv-like table of the demo's size."""
    rows = []
    for i in range(1, identities + 1):
        for emotion in named_emotions():
            for r in intensities:
                v, a = angle_to_va(emotion.angle, r)
                stem = f"id{i:02d}_{emotion.key}_i{round(r * 100):03d}"
                rows.append(dict(stimulus_id=stem, file=f"stimuli/{stem}.png",
                                 identity=f"id{i:02d}", target_kind="named",
                                 emotion=emotion.name, angle=emotion.angle, intensity=r,
                                 target_valence=v, target_arousal=a, achieved_valence=v,
                                 achieved_arousal=a))
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=24)
    parser.add_argument("--task", default="rating",
                        choices=["rating", "categorization", "passive"])
    args = parser.parse_args()
    stimuli = demo_stimuli()
    task = {"type": args.task}
    if args.task == "categorization":
        task["choices"] = [{"label": "pleasant", "emotions": [e.name for e in named_emotions()
                                                              if e.unit_va[0] >= 0]},
                           {"label": "unpleasant", "emotions": [e.name for e in named_emotions()
                                                                if e.unit_va[0] < 0]}]
    spec = ExperimentSpec.model_validate(
        {"task": task, "design": {"type": "random", "participants": args.participants},
         "practice": {"trials": 4}, "breaks": {"every": 56}})
    protocol = SimpleNamespace(study=SimpleNamespace(name="Bundle benchmark"), seed=1,
                               experiment=spec)

    start = time.perf_counter()
    from stimgen.export import psychopy_bundle
    psychopy_bundle.psychopy_experiment_module()
    t_import = time.perf_counter() - start

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        design = plan_design(spec, stimuli, seed=1)
        t_design = time.perf_counter() - start

        start = time.perf_counter()
        files = psychopy_bundle.write_bundle(Path(tmp), bundle_spec(protocol), stimuli, design)
        t_bundle = time.perf_counter() - start

        start = time.perf_counter()
        for group, table in design.trials.items():
            table.to_csv(Path(tmp) / f"baseline_{group}.csv", index=False)
        t_baseline = time.perf_counter() - start
        n_conditions = sum(1 for key in files if key.startswith("conditions/"))

    total = t_design + t_bundle
    print(f"stimuli: {len(stimuli)}  orders: {len(design.groups)}  "
          f"trials per order: {len(design.trials[design.groups[0]])}  "
          f"conditions files: {n_conditions}")
    print(f"import psychopy (once per process): {t_import:6.2f} s")
    print(f"plan_design:                        {t_design:6.2f} s")
    print(f"write_bundle:                       {t_bundle:6.2f} s")
    print(f"baseline (trial tables as CSV):     {t_baseline:6.3f} s  "
          f"-> bundle/baseline = {t_bundle / t_baseline:.1f}x")
    verdict = "OK" if total < TARGET_S else "OVER"
    print(f"design + bundle:                    {total:6.2f} s  "
          f"(target < {TARGET_S:.0f} s: {verdict})")


if __name__ == "__main__":
    main()
