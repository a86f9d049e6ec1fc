"""Reading a finished build folder: the only inputs the report ever looks at.

The report re-runs no stage; it reads stimuli.tsv, the two metrics tables, manifest.json,
the stimulus images and, when an experiment bundle exists, experiment/design.csv.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from stimgen.circumplex import WEAK_REGION_DEFAULT
from stimgen.errors import BuildError

STIMULI_TSV = "stimuli.tsv"
METRICS_BY_EMOTION_CSV = "metrics_by_emotion.csv"
METRICS_BY_INTENSITY_CSV = "metrics_by_intensity.csv"
MANIFEST_JSON = "manifest.json"
DESIGN_CSV = "experiment/design.csv"

STIMULI_COLUMNS = (
    "stimulus_id", "file", "identity", "target_kind", "emotion", "angle", "intensity",
    "target_valence", "target_arousal", "achieved_valence", "achieved_arousal",
    "achieved_angle", "achieved_intensity", "direction_error", "magnitude_error",
    "valence_error", "arousal_error", "distance_error", "weak_region", "out_of_tolerance",
    "flags", "rater", "sha256", "width", "height",
)
STIMULI_NUMERIC = (
    "angle", "intensity", "target_valence", "target_arousal", "achieved_valence",
    "achieved_arousal", "achieved_angle", "achieved_intensity", "direction_error",
    "magnitude_error", "valence_error", "arousal_error", "distance_error", "width", "height",
)
#: Aggregate metric columns shared by both metrics tables, in file order.
METRIC_COLUMNS = (
    "dir_mae_deg", "dir_sd_deg", "mag_mae", "mag_sd", "val_mae", "val_sd", "aro_mae",
    "aro_sd", "dist_mae", "dist_sd", "ccc_valence", "ccc_arousal", "sagr_valence",
    "sagr_arousal", "rmse_valence", "rmse_arousal",
)
EMOTION_COLUMNS = ("emotion", "angle", "n", *METRIC_COLUMNS, "weak_region")
INTENSITY_COLUMNS = ("intensity", "n", *METRIC_COLUMNS)

#: Optional per-stimulus columns a backend may add; the report plots them when present.
IDENTITY_SIMILARITY_COLUMN = "identity_similarity"
QUALITY_PREFIX = "quality_"

DEFAULT_TOLERANCE = {"distance": None, "direction": None}


class BuildFolderError(BuildError):
    """A folder the report cannot be made from: not a build, or an incomplete one."""


@dataclass(frozen=True)
class BuildFolder:
    """Everything the report reads from one build folder, parsed and typed."""

    root: Path                                  # the build folder itself
    manifest: dict                              # manifest.json as written by the build
    stimuli: pd.DataFrame                       # stimuli.tsv, numbers as floats, flags as bools
    metrics_by_emotion: pd.DataFrame            # metrics_by_emotion.csv
    metrics_by_intensity: pd.DataFrame          # metrics_by_intensity.csv
    design: pd.DataFrame | None                 # experiment/design.csv, None without a bundle

    @property
    def protocol(self) -> dict:
        """The validated protocol as the build normalised it (may be empty)."""
        return (self.manifest.get("protocol") or {}).get("normalized") or {}

    @property
    def weak_region(self) -> tuple[float, float]:
        """The protocol's weak region (start, end) in degrees, or the EmoStyle default."""
        region = (self.protocol.get("validation") or {}).get("weak_region")
        if isinstance(region, dict):
            region = (region.get("start"), region.get("end"))
        if not region or len(region) != 2 or None in region:
            return WEAK_REGION_DEFAULT
        return float(region[0]), float(region[1])

    @property
    def tolerance(self) -> dict:
        """The protocol's tolerances: ``{"distance": float|None, "direction": float|None}``."""
        given = (self.protocol.get("validation") or {}).get("tolerance") or {}
        return {key: given.get(key, default) for key, default in DEFAULT_TOLERANCE.items()}


def read_build_folder(build_dir, *, manifest: dict | None = None) -> BuildFolder:
    """Read and check a build folder.

    Parameters
    ----------
    build_dir : str or Path
        A folder written by ``stimgen build``.
    manifest : dict, optional
        The manifest to use instead of ``manifest.json``. The build passes it while the
        manifest is not yet on disk (it is written last); the CLI never does, so the
        command refuses a folder whose build did not complete.

    Raises
    ------
    BuildFolderError
        When the folder or one of its files is missing, unreadable or lacks columns.
    """
    root = Path(build_dir)
    if not root.is_dir():
        raise BuildFolderError(f"{root}: no such build folder",
                               hint="pass the folder `stimgen build` wrote, e.g. build/<study>")
    if manifest is None:
        manifest = read_manifest(root)
    stimuli = read_stimuli(root / STIMULI_TSV)
    return BuildFolder(
        root=root,
        manifest=manifest,
        stimuli=stimuli,
        metrics_by_emotion=read_table(root / METRICS_BY_EMOTION_CSV, EMOTION_COLUMNS, sep=","),
        metrics_by_intensity=read_table(root / METRICS_BY_INTENSITY_CSV, INTENSITY_COLUMNS,
                                        sep=","),
        design=read_design(root / DESIGN_CSV),
    )


def read_manifest(root: Path) -> dict:
    """``manifest.json`` of a complete build; raises BuildFolderError otherwise."""
    path = root / MANIFEST_JSON
    rerun = "run `stimgen build` on the protocol again; it resumes where it stopped"
    if not path.is_file():
        raise BuildFolderError(f"{path}: missing, so {root} is not a complete build", hint=rerun)
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BuildFolderError(f"{path}: not readable JSON ({error})", hint=rerun) from None
    if not isinstance(manifest, dict) or manifest.get("complete") is not True:
        raise BuildFolderError(f"{path}: the build did not complete (\"complete\" is not true)",
                               hint=rerun)
    return manifest


def read_table(path: Path, columns: tuple[str, ...], *, sep: str) -> pd.DataFrame:
    """A table of the build folder with every contract column present; numbers as floats.

    Text stays text ("NA" is an emotion label, not a missing value); empty cells of
    numeric columns become NaN and ``true``/``false`` columns become bools.
    """
    if not path.is_file():
        raise BuildFolderError(f"{path}: missing from the build folder",
                               hint="run `stimgen build` on the protocol again")
    try:
        table = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, encoding="utf-8")
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as error:
        raise BuildFolderError(f"{path}: cannot be parsed ({error})") from None
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise BuildFolderError(f"{path}: missing column(s) {', '.join(missing)}",
                               hint="the folder was written by another stimgen version; rebuild it")
    text = {"emotion", "stimulus_id", "file", "identity", "target_kind", "flags", "rater", "sha256"}
    for column in table.columns:
        if column in ("weak_region", "out_of_tolerance"):
            table[column] = table[column].str.strip().str.lower().isin(("true", "1", "yes"))
        elif column not in text and (column in columns or _looks_numeric(table[column])):
            table[column] = pd.to_numeric(table[column], errors="coerce")
    return table


def read_stimuli(path: Path) -> pd.DataFrame:
    """``stimuli.tsv`` with ``flags`` split into a tuple per stimulus (column ``flag_list``)."""
    stimuli = read_table(path, STIMULI_COLUMNS, sep="\t")
    stimuli["flag_list"] = stimuli["flags"].map(
        lambda text: tuple(f.strip() for f in text.split(";") if f.strip()))
    return stimuli


def read_design(path: Path) -> pd.DataFrame | None:
    """``experiment/design.csv`` as text columns, or None when there is no experiment bundle."""
    if not path.is_file():
        return None
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as error:
        raise BuildFolderError(f"{path}: cannot be parsed ({error})") from None


def _looks_numeric(column: pd.Series) -> bool:
    filled = column[column != ""]
    return len(filled) > 0 and pd.to_numeric(filled, errors="coerce").notna().all()
