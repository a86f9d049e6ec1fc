"""Identity check for refactors: every output file of a set of builds, hashed, to compare.

Builds the demo and a protocol that combines every option the CPU can run (correction,
greyscale + oval mask + histogram+spectrum matching with SSIM steps, clips with PNG frames, a
norming experiment in lists, online), runs `stimgen norms` on simulated ratings and `stimgen
select` (by norms and by model), and an emostyle dry run (tiny random models: seed, latent
and photo identities). Writes the sha256 of every file of every folder into a JSON; with
``--compare before.json`` prints what differs. A refactor "under the tests" leaves it silent.

    python benchmarks/house_identity.py --json before.json
    python benchmarks/house_identity.py --json after.json --compare before.json

What is not compared byte for byte, and why (each records the run, not its outputs):
- manifest.json: the fields `created` (date), `command` (argv) and `timings` (seconds) are
  dropped; `protocol.path` and other absolute paths are written relative to the work folder.
  Its `files` table is kept whole except report.html's hash (see next line); a subset's
  `selection.source.manifest_sha256` (the hash of its source's manifest, which holds a date)
  is dropped too.
- report.html: the build date and the stage timings are replaced by placeholders; the rest
  is compared byte for byte.
- In every file, the work folder's path (the protocol, ratings and tiny models live there)
  is written `<OUT>`. Hashes of files that hold such a path (the dry run's cache keys, a
  subset's hash of the source's norms_summary.json) still differ between work folders: compare
  runs made in the same `--out` (the default).
- .stimgen/files.json (the ledger of files stimgen wrote): the hashes of report.html and
  manifest.json are dropped (both change with the date); every other entry is compared.
- .stimgen/lock (empty, a run's lock) and .stimgen/jobs/ (job logs) are left out.
- OUT/home (the dry run's tiny random models, drawn unseeded by `--dry-run` when missing) is
  kept between runs in the same OUT, its cache emptied; nothing in it is compared.
Every other file: its sha256.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = Path("/tmp/stimgen-house-identity")
RUN_FIELDS = ("created", "command", "timings")
DATE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?[+-]\d\d:\d\d")
TIMINGS = re.compile(r"<dt>Timings</dt><dd>[^<]*</dd>")

EVERY_OPTION = """\
# Every option the CPU can run, combined (benchmarks/house_identity.py).
study:
  name: every-option
  description: Correction, matching, clips, a norming experiment in lists, online.
  authors: [stimgen developers]
seed: 7
backend:
  name: schematic
  options: {supersample: 1, background: [120, 124, 128]}
identities:
  - {id: a1, seed: 4}
  - {id: b2, seed: 5}
  - {id: c3, seed: 11}
targets:
  emotions: [happiness, fear, sadness, circumplex:calm, Tired]
  angles: [300]
  intensities: [0.5, 1.0]
  points: [{label: mild, valence: 0.2, arousal: -0.1}]
  neutral: true
validation:
  rater: geometric
  tolerance: {distance: 0.3, direction: 40}
  weak_region: [240, 330]
  flag_weak_region: always
  correction: {rater: geometric, iterations: 2, tolerance: 0.05, max_request: 0.95}
output:
  image_size: 96
  format: png
  greyscale: true
  mask: oval
  background: 110
  match: histogram+spectrum
  match_scope: identity
  match_ssim_iterations: 2
  dynamic: {frames: 5, fps: 10, hold_ms: 200, ease: sigmoid, png_frames: true}
experiment:
  online: true
  task:
    type: norming
    labels: [Happiness, Fear, Sadness, Calm, Tired, Neutral, {label: Other, emotions: [a300, mild]}]
  practice: {trials: 2, source: repeat}
  breaks: {every: 20}
  design:
    type: random
    participants: 6
    lists: 3
    max_run: {emotion: 3, identity: 4}
"""

DRY_RUN = """\
study: {name: dry-every}
seed: 3
backend:
  name: emostyle
  options: {batch_size: 2, inversion_steps: 2, personalization_steps: 2}
identities:
  - {id: s1, seed: 1}
  - {id: lat, latent: w.npy}
PHOTO
targets: {emotions: [circumplex:happy, circumplex:sad], intensities: [1.0], neutral: true}
output: {image_size: 64}
"""


def stimgen(*args: str, env: dict | None = None, cwd: Path | None = None) -> None:
    """Run the stimgen CLI of this checkout in a child process (as a user would)."""
    command = [sys.executable, "-c", "from stimgen.cli import main; main()", "--quiet", *args]
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    done = subprocess.run(command, cwd=cwd or ROOT, env=environment, capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise SystemExit(f"stimgen {' '.join(args)} failed ({done.returncode}):\n"
                         f"{done.stdout}\n{done.stderr}")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def stable_text(text: str, out: Path) -> str:
    """``text`` without the date and seconds of a run, the work folder written ``<OUT>``."""
    text = TIMINGS.sub("<dt>Timings</dt><dd><TIMINGS></dd>", text)
    return DATE.sub("<DATE>", text.replace(str(out), "<OUT>"))


def folder_hashes(folder: Path, out: Path) -> dict:
    """Every file of ``folder`` by relative path -> sha256 (or a stable digest; see above)."""
    files = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if path.is_dir() or relative == ".stimgen/lock" or relative.startswith(".stimgen/jobs/"):
            continue
        data = path.read_bytes()
        if relative.endswith("report.html"):
            files[relative] = sha256(stable_text(data.decode("utf-8"), out).encode())
        elif relative == "manifest.json":
            manifest = json.loads(data)
            for field in RUN_FIELDS:
                manifest.pop(field, None)
            if "report.html" in manifest.get("files", {}):
                manifest["files"]["report.html"] = "<report>"
            if "selection" in manifest:               # the source's manifest has a date
                manifest["selection"]["source"]["manifest_sha256"] = "<source manifest>"
            files[relative] = json.loads(stable_text(json.dumps(manifest, sort_keys=True), out))
        elif relative == ".stimgen/files.json":
            ledger = json.loads(data)
            for volatile in ("report.html", "manifest.json"):
                ledger.get("files", {}).pop(volatile, None)
            files[relative] = sha256(stable_text(json.dumps(ledger, sort_keys=True), out).encode())
        elif str(out).encode() in data:          # a path of this run's work folder
            files[relative] = sha256(data.replace(str(out).encode(), b"<OUT>"))
        else:
            files[relative] = sha256(data)
    return files


def simulated_ratings(build: Path, path: Path, labels: list[str]) -> None:
    """A tidy CSV of 8 participants' ratings (1-9) of every stimulus, from a fixed seed."""
    stimuli = pd.read_csv(build / "stimuli.tsv", sep="\t")
    rng = np.random.default_rng(11)
    rows = []
    for participant in range(1, 9):
        for _, s in stimuli.iterrows():
            noise = rng.normal(0, 0.25, 2)
            valence = float(np.clip(5 + 4 * (s["target_valence"] + noise[0]), 1, 9))
            arousal = float(np.clip(5 + 4 * (s["target_arousal"] + noise[1]), 1, 9))
            emotion = str(s["emotion"])
            label = emotion if rng.random() < 0.7 else labels[int(rng.integers(len(labels)))]
            rows.append({"participant": f"p{participant:02d}", "stimulus": s["stimulus_id"],
                         "valence": round(valence, 2), "arousal": round(arousal, 2),
                         "label": label, "rt": round(float(rng.uniform(0.5, 3)), 3)})
    pd.DataFrame(rows).to_csv(path, index=False)


def psychopy_photo(name: str = "face01.jpg") -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec("psychopy")
    if not (spec and spec.origin):
        return None
    found = sorted((Path(spec.origin).parent / "demos").rglob(name))
    return found[0] if found else None


def run_all(out: Path, only: set[str] | None) -> dict:
    # The tiny random models of the dry run are drawn afresh (unseeded) when missing: the
    # first run's stay in OUT/home, so that later runs compare; their cache goes.
    out.mkdir(parents=True, exist_ok=True)
    for entry in out.iterdir():
        if entry.name != "home":
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    shutil.rmtree(out / "home" / "dry-run" / "cache", ignore_errors=True)
    (out / "protocols").mkdir(parents=True)
    results: dict[str, dict] = {}

    def want(name: str) -> bool:
        return only is None or name in only

    if want("demo"):
        shutil.copy(ROOT / "protocols" / "demo.yaml", out / "protocols" / "demo.yaml")
        stimgen("build", str(out / "protocols" / "demo.yaml"), "-o", str(out / "demo"))
        results["demo"] = folder_hashes(out / "demo", out)
        stimgen("select", str(out / "demo"), "--per-target", "2", "--by", "model",
                "-o", str(out / "demo-best"))
        results["demo-best"] = folder_hashes(out / "demo-best", out)

    if want("every"):
        protocol = out / "protocols" / "every-option.yaml"
        protocol.write_text(EVERY_OPTION, encoding="utf-8")
        stimgen("build", str(protocol), "-o", str(out / "every"), "-j", "2")
        results["every"] = folder_hashes(out / "every", out)
        ratings = out / "protocols" / "ratings.csv"
        simulated_ratings(out / "every", ratings,
                          ["Happiness", "Fear", "Sadness", "Calm", "Tired", "Neutral", "none of these"])
        stimgen("norms", str(out / "every"), str(ratings))
        results["every+norms"] = folder_hashes(out / "every", out)
        stimgen("select", str(out / "every"), "--per-target", "2", "--max-distance", "0.6",
                "--min-hit-rate", "0.3", "-o", str(out / "every-selected"))
        results["every-selected"] = folder_hashes(out / "every-selected", out)
        stimgen("report", str(out / "every"))
        results["every+report"] = folder_hashes(out / "every", out)

    if want("dry"):
        study = out / "protocols" / "dry"
        study.mkdir()
        np.save(study / "w.npy", np.random.default_rng(0).standard_normal(64).astype(np.float32))
        photo = psychopy_photo()
        line = ""
        if photo is not None:
            shutil.copy(photo, study / "face.jpg")
            line = '  - {id: photo, image: face.jpg, source: "PsychoPy demo photo"}'
        (study / "protocol.yaml").write_text(DRY_RUN.replace("PHOTO\n", line + "\n" if line else ""),
                                             encoding="utf-8")
        env = {"STIMGEN_HOME": str(out / "home")}
        try:
            stimgen("build", "protocol.yaml", "--dry-run", "-o", str(out / "dry"), env=env,
                    cwd=study)
        except SystemExit as failed:
            if not line:
                raise
            print(f"the photo identity failed in the dry run; built without it:\n{failed}",
                  file=sys.stderr)
            (study / "protocol.yaml").write_text(DRY_RUN.replace("PHOTO\n", ""), encoding="utf-8")
            shutil.rmtree(out / "dry", ignore_errors=True)
            stimgen("build", "protocol.yaml", "--dry-run", "-o", str(out / "dry"), env=env,
                    cwd=study)
        results["dry"] = folder_hashes(out / "dry", out)
    return results


def compare(before: dict, after: dict) -> int:
    differences = 0
    for build in sorted(set(before) | set(after)):
        old, new = before.get(build), after.get(build)
        if old is None or new is None:
            print(f"{build}: only {'after' if old is None else 'before'}")
            differences += 1
            continue
        for name in sorted(set(old) | set(new)):
            if old.get(name) != new.get(name):
                differences += 1
                if name in old and name in new and isinstance(old[name], dict):
                    keys = sorted(k for k in set(old[name]) | set(new[name])
                                  if old[name].get(k) != new[name].get(k))
                    print(f"{build}: {name} differs in {', '.join(keys)}")
                else:
                    state = ("only before" if name not in new else
                             "only after" if name not in old else "differs")
                    print(f"{build}: {name} {state}")
    files = sum(len(v) for v in after.values())
    print(f"{len(after)} folders, {files} files: "
          + ("identical" if not differences else f"{differences} differences"))
    return differences


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="work folder (emptied)")
    parser.add_argument("--json", type=Path, help="write the hashes here")
    parser.add_argument("--compare", type=Path, help="hashes of an earlier run to compare with")
    parser.add_argument("--only", help="comma-separated: demo, every, dry")
    args = parser.parse_args()
    only = set(args.only.split(",")) if args.only else None
    results = run_all(args.out, only)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, sort_keys=True), encoding="utf-8")
    print(textwrap.shorten(", ".join(f"{k}: {len(v)} files" for k, v in results.items()), 400))
    if args.compare:
        before = json.loads(args.compare.read_text(encoding="utf-8"))
        if only:
            before = {k: v for k, v in before.items() if k.split("+")[0].split("-")[0] in only}
        sys.exit(1 if compare(before, results) else 0)


if __name__ == "__main__":
    main()
