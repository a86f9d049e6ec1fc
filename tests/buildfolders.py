"""Helpers the build and report tests share: protocols from text, a build folder's comparable
state, a synthetic build folder in the contract format, and a reader of report pages."""
from __future__ import annotations

import hashlib
import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

import stimgen
from stimgen.circumplex import (angle_to_va, emotion_by_name, in_angle_interval, va_to_angle,
                                wrap_angle_difference)
from stimgen.storage import sha256_file

#: Manifest fields that describe the run (when, how long, which command), not its outputs.
RUN_FIELDS = ("created", "timings", "command")


def protocol_from_text(folder: Path, text: str, name: str = "protocol.yaml"):
    """Write ``text`` as ``folder/name`` and load it (relative paths resolve in ``folder``)."""
    path = Path(folder) / name
    path.write_text(text, encoding="utf-8")
    return stimgen.load_protocol(path)


def snapshot(out: Path) -> dict:
    """Every file of a build folder by relative path: its sha256, or, for the two files that
    carry the date and folder of a build, their stable content (report.html: present;
    manifest.json: without run fields and without the report's hash; the ledger
    .stimgen/files.json: without the hashes of those two). Job logs of cluster
    executors (.stimgen/jobs/) are left out: they record a run, not its outputs."""
    files = {}
    for path in sorted(Path(out).rglob("*")):
        relative = path.relative_to(out).as_posix()
        if path.is_dir() or relative.startswith(".stimgen/jobs/"):
            continue
        if relative == "report.html":
            files[relative] = "present"
        elif relative == ".stimgen/files.json":       # the ledger: hashes of the two above
            ledger = json.loads(path.read_text(encoding="utf-8"))
            for volatile in ("report.html", "manifest.json"):
                ledger["files"].pop(volatile, None)
            files[relative] = ledger
        elif relative == "manifest.json":
            manifest = json.loads(path.read_text(encoding="utf-8"))
            for volatile in RUN_FIELDS:
                manifest.pop(volatile)
            manifest["files"].pop("report.html")
            files[relative] = manifest
        else:
            files[relative] = sha256_file(path)
    return files


# --- a synthetic build folder in the contract format -------------------------------------------

#: What :func:`write_synthetic_build` writes: its emotions and intensities, the weak region of its
#: flags, and the aggregate columns of its metrics tables.
EMOTIONS = ("Happy", "Angry", "Sad", "Tired", "Calm")
INTENSITIES = (0.5, 1.0)
WEAK_REGION = (242.0, 328.6)
METRICS = ("dir_mae_deg", "dir_sd_deg", "mag_mae", "mag_sd", "val_mae", "val_sd", "aro_mae",
           "aro_sd", "dist_mae", "dist_sd", "ccc_valence", "ccc_arousal", "sagr_valence",
           "sagr_arousal", "rmse_valence", "rmse_arousal")


def ccc(target: np.ndarray, achieved: np.ndarray) -> float:
    """Lin's concordance correlation coefficient; undefined (NaN) for constant targets."""
    if len(target) < 2 or np.ptp(target) == 0:
        return float("nan")
    covariance = np.mean((target - target.mean()) * (achieved - achieved.mean()))
    denominator = target.var() + achieved.var() + (target.mean() - achieved.mean()) ** 2
    return float(2 * covariance / denominator) if denominator > 0 else float("nan")


def group_metrics(group: pd.DataFrame) -> dict:
    """The aggregate figures of one group of stimuli, as the build writes them."""
    row = {"n": len(group)}
    for stem, column in (("dir", "direction_error"), ("mag", "magnitude_error"),
                         ("val", "valence_error"), ("aro", "arousal_error"),
                         ("dist", "distance_error")):
        unit = "_deg" if stem == "dir" else ""
        values = group[column].dropna()
        row[f"{stem}_mae{unit}"] = values.mean() if len(values) else np.nan
        row[f"{stem}_sd{unit}"] = values.std(ddof=0) if len(values) else np.nan
    for name in ("valence", "arousal"):
        t, a = group[f"target_{name}"].to_numpy(), group[f"achieved_{name}"].to_numpy()
        row[f"ccc_{name}"] = ccc(t, a)
        row[f"sagr_{name}"] = (float(np.mean(np.sign(t) == np.sign(a))) if np.any(t != 0)
                               else float("nan"))     # no target has a sign to agree with
        row[f"rmse_{name}"] = float(np.sqrt(np.mean((t - a) ** 2)))
    return row


def synthetic_stimulus(identity: str, kind: str, emotion: str, angle, intensity, target, achieved,
                       rng) -> dict:
    """One stimuli.tsv row (without file facts) with its errors and flags."""
    tv, ta = target
    av, aa = achieved
    achieved_angle, achieved_intensity = va_to_angle(av, aa)
    direction = "" if kind == "neutral" else wrap_angle_difference(angle, achieved_angle)
    distance = float(np.hypot(tv - av, ta - aa))
    weak = kind != "neutral" and bool(in_angle_interval(angle, *WEAK_REGION))
    out = distance > 0.3
    flags = [f for f, on in (("weak_region", weak), ("distance_tolerance", out)) if on]
    return {
        "identity": identity, "target_kind": kind, "emotion": emotion,
        "angle": "" if kind == "neutral" else angle, "intensity": intensity,
        "target_valence": tv, "target_arousal": ta, "achieved_valence": av,
        "achieved_arousal": aa, "achieved_angle": achieved_angle,
        "achieved_intensity": achieved_intensity, "direction_error": direction,
        "magnitude_error": abs(np.hypot(tv, ta) - achieved_intensity),
        "valence_error": abs(tv - av), "arousal_error": abs(ta - aa), "distance_error": distance,
        "weak_region": "true" if weak else "false", "out_of_tolerance": "true" if out else "false",
        "flags": ";".join(flags), "rater": "geometric",
    }


def write_synthetic_build(root: Path, *, study_name: str = "Synthetic study",
                          identities=("id01", "id02"), trained_against_generator: bool = False,
                          with_design: bool = False, blocked: bool = False,
                          extra_columns: bool = False, seed: int = 0) -> Path:
    """Write a complete build folder in the contract format, with tiny PNG stimuli.

    ``with_design`` adds experiment/design.csv with two groups of one block each; ``blocked``
    makes it an emotion-blocked design whose groups run the emotion blocks in opposite orders.
    """
    rng = np.random.default_rng(seed)
    (root / "stimuli").mkdir(parents=True)
    rows = []
    for number, identity in enumerate(identities):
        targets = [("named", e, emotion_by_name(e).angle, r) for e in EMOTIONS for r in INTENSITIES]
        targets += [("angle", "a130", 130.0, 0.75), ("point", "mild", None, None),
                    ("neutral", "neutral", None, 0.0)]
        for kind, emotion, angle, intensity in targets:
            if kind == "point":
                target = (0.3, -0.4)
                angle, intensity = va_to_angle(*target)
                stem = f"{identity}_{emotion}"
            elif kind == "neutral":
                target, stem = (0.0, 0.0), f"{identity}_neutral"
            else:
                target = angle_to_va(angle, intensity)
                key = emotion.lower() if kind == "named" else emotion
                stem = (f"{identity}_{key}_i{int(round(intensity * 100)):03d}" if kind == "named"
                        else f"{identity}_{key}_i{int(round(intensity * 100)):03d}")
            weak = kind in ("named", "angle") and in_angle_interval(angle, *WEAK_REGION)
            shrink = 0.4 if weak else 0.9
            achieved = (target[0] * shrink + rng.normal(0, 0.06),
                        target[1] * shrink + rng.normal(0, 0.06))
            row = synthetic_stimulus(identity, kind, emotion, angle, intensity, target, achieved,
                                     rng)
            colour = tuple(int(c) for c in rng.integers(0, 255, size=3))
            image = Image.new("RGB", (40, 48), colour)
            image.paste((255 - colour[0], 80, number * 90), (10, 12, 30, 36))
            path = root / "stimuli" / f"{stem}.png"
            image.save(path)
            row.update(stimulus_id=stem, file=f"stimuli/{stem}.png",
                       sha256=hashlib.sha256(path.read_bytes()).hexdigest(), width=40, height=48)
            if extra_columns:
                row["identity_similarity"] = round(0.9 - 0.2 * achieved[0] ** 2, 4)
                row["quality_sharpness"] = round(float(rng.uniform(0.5, 1.0)), 4)
            rows.append(row)
    columns = ["stimulus_id", "file", "identity", "target_kind", "emotion", "angle", "intensity",
               "target_valence", "target_arousal", "achieved_valence", "achieved_arousal",
               "achieved_angle", "achieved_intensity", "direction_error", "magnitude_error",
               "valence_error", "arousal_error", "distance_error", "weak_region",
               "out_of_tolerance", "flags", "rater", "sha256", "width", "height"]
    if extra_columns:
        columns += ["identity_similarity", "quality_sharpness"]
    stimuli = pd.DataFrame(rows)[columns]
    stimuli.to_csv(root / "stimuli.tsv", sep="\t", index=False)

    numeric = pd.read_csv(root / "stimuli.tsv", sep="\t", keep_default_na=False,
                          dtype={"identity": str, "emotion": str, "flags": str})
    numeric = numeric.replace("", np.nan).infer_objects()
    for column in ("angle", "direction_error"):
        numeric[column] = pd.to_numeric(numeric[column])
    by_emotion = []
    aimed = numeric[numeric["target_kind"] != "neutral"]
    for (angle, emotion), group in aimed.groupby(["angle", "emotion"], sort=True):
        by_emotion.append({"emotion": emotion, "angle": angle, **group_metrics(group),
                           "weak_region": "true" if in_angle_interval(angle, *WEAK_REGION)
                           else "false"})
    neutral = numeric[numeric["target_kind"] == "neutral"]
    by_emotion.append({"emotion": "neutral", "angle": np.nan, **group_metrics(neutral),
                       "weak_region": "false"})
    by_emotion[-1].update(dir_mae_deg=np.nan, dir_sd_deg=np.nan)
    pd.DataFrame(by_emotion)[["emotion", "angle", "n", *METRICS, "weak_region"]].to_csv(
        root / "metrics_by_emotion.csv", index=False)
    by_intensity = [{"intensity": r, **group_metrics(g)}
                    for r, g in numeric.groupby("intensity", sort=True)]
    pd.DataFrame(by_intensity)[["intensity", "n", *METRICS]].to_csv(
        root / "metrics_by_intensity.csv", index=False)

    if with_design:   # the layout of stimgen.design: group + trial columns, groups stacked
        (root / "experiment").mkdir()
        trials = [{"group": group, "position": position, "block": 0 if practice else 1,
                   "is_practice": int(practice), "stim_id": s, "identity": i, "emotion": e}
                  for group in ("g01", "g02")
                  for position, (practice, s, i, e) in enumerate(
                      [(True, *next(stimuli[["stimulus_id", "identity", "emotion"]].itertuples(
                          index=False)))] +
                      [(False, *r) for r in stimuli[["stimulus_id", "identity", "emotion"]]
                       .itertuples(index=False)], start=1)]
        if blocked:   # stimgen.design's blocked layout: block = 1, 2, ..., block_label = level
            order = {"g01": list(EMOTIONS), "g02": list(reversed(EMOTIONS))}
            for trial in trials:
                if trial["block"] and trial["emotion"] in EMOTIONS:
                    trial["block"] = 1 + order[trial["group"]].index(trial["emotion"])
                    trial["block_label"] = trial["emotion"]
                elif trial["block"]:      # the angle, point and neutral targets: a last block
                    trial["block"], trial["block_label"] = len(EMOTIONS) + 1, ""
                else:
                    trial["block_label"] = "practice"
            trials.sort(key=lambda t: (t["group"], t["block"], t["position"]))
        pd.DataFrame(trials).to_csv(root / "experiment" / "design.csv", index=False)

    protocol_text = f"study:\n  name: {json.dumps(study_name)}\n"
    (root / "protocol.yaml").write_text(protocol_text, encoding="utf-8")
    manifest = {
        "stimgen_version": "0.1.0", "created": "2025-01-01T00:00:00Z",
        "command": "stimgen build protocol.yaml",
        "protocol": {"path": "protocol.yaml",
                     "sha256": hashlib.sha256(protocol_text.encode()).hexdigest(),
                     "normalized": {"study": {"name": study_name, "description": "A <b>test</b>",
                                              "authors": ["A. Author", "B & C"]},
                                    "seed": 7, "backend": {"name": "schematic"},
                                    "validation": {"weak_region": list(WEAK_REGION),
                                                   "tolerance": {"distance": 0.3,
                                                                 "direction": 30.0}}}},
        "seed": 7,
        "backend": {"name": "emostyle" if trained_against_generator else "schematic",
                    "options": {"truncation": 0.7},
                    "model_files": [{"name": "generator", "path": "models/g.pt",
                                     "sha256": "ab" * 32}] if trained_against_generator else []},
        "rater": {"name": "emonet" if trained_against_generator else "geometric",
                  "description": "test rater",
                  "trained_against_generator": trained_against_generator},
        "versions": {"python": "3.11", "numpy": np.__version__},
        "files": {"stimuli.tsv": "00"}, "timings": {"edit": 1.5},
        "counts": {"stimuli": len(stimuli)}, "complete": True,
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return root


#: A small real schematic build for the report tests; its study name is an HTML injection attempt.
SMALL_PROTOCOL = """\
study:
  name: "<script>alert(1)</script>"
  description: A small real build for the report tests <b>bold?</b>
  authors: [stimgen tests]
seed: 11
backend: {name: schematic}
identities:
  - {id: id01, seed: 1}
  - {id: id02, seed: 2}
targets:
  emotions: [circumplex:happy, excited, circumplex:angry, circumplex:sad, tired, calm]
  angles: [130]
  intensities: [0.5, 1.0]
  points: [{label: mild, valence: 0.3, arousal: -0.4}]
  neutral: true
validation:
  rater: geometric
  tolerance: {distance: 0.35, direction: 45}
  flag_weak_region: always      # the report's weak-region marks, on a schematic build
output: {image_size: 96}
"""


# --- reading a report page back -------------------------------------------------------------------

class PageParser(HTMLParser):
    """Collects tables by id (rows of (tag, attrs, text) cells), images and element ids."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tables, self.images, self.ids, self.stack = {}, [], set(), []
        self._table = self._row = self._cell = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "table":
            self._table = self.tables.setdefault(attrs.get("id", f"table{len(self.tables)}"), [])
        elif tag == "tr" and self._table is not None:
            self._row = []
            self._table.append(self._row)
        elif tag in ("td", "th") and self._row is not None:
            self._cell = [tag, attrs, ""]
            self._row.append(self._cell)
        elif tag == "img":
            self.images.append(attrs)

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self._cell = None
        elif tag == "tr":
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[2] += data


def parse_page(path: Path) -> PageParser:
    parser = PageParser()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser
