"""Check that the demo build is complete: manifest, stimuli table, report and experiment bundle.

Usage: python .ci/check_demo.py BUILD_FOLDER   (exits 1 naming what is missing)
"""
import json
import sys
from pathlib import Path

folder = Path(sys.argv[1])
problems = []
manifest_path = folder / "manifest.json"
if not manifest_path.is_file():
    sys.exit(f"ci: {manifest_path} is missing: the demo build did not finish")
manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
if manifest.get("complete") is not True:
    problems.append("manifest.json does not say complete: true")
files = manifest.get("files", {})
for required in ("stimuli.tsv", "metrics_by_emotion.csv", "report.html"):
    if required not in files:
        problems.append(f"{required} is not in the manifest")
if not any(f.startswith("experiment/") and f.endswith(".psyexp") for f in files):
    problems.append("no experiment/*.psyexp in the manifest")
if not any(f.startswith("experiment/") and f.endswith(".py") for f in files):
    problems.append("no compiled experiment/*.py in the manifest")
stimuli = [f for f in files if f.startswith("stimuli/")]
expected = manifest.get("counts", {}).get("stimuli")
if not stimuli or len(stimuli) != expected:
    problems.append(f"{len(stimuli)} stimulus files, manifest counts {expected}")
for relative in files:
    if not (folder / relative).is_file():
        problems.append(f"{relative} is in the manifest but not on disk")
if problems:
    sys.exit("ci: the demo build is incomplete:\n  " + "\n  ".join(problems))
print(f"ci: demo build complete: {len(stimuli)} stimuli, experiment and report in {folder}")
