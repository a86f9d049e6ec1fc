"""Per-identity contact sheets: small thumbnails of every stimulus laid out as angle x intensity,
with the target and achieved valence/arousal of each and a badge on flagged ones.

Thumbnails (stimgen/thumbnails.py) are JPEG files named by the stimulus image's sha256, so a
page stays small and a regenerated report reuses nothing stale.
"""
from __future__ import annotations

import math
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import pandas as pd
from PIL import UnidentifiedImageError

from stimgen.circumplex import in_angle_interval
from stimgen.build_folder import BuildFolderError
from stimgen.report.tables import angle_label
from stimgen.thumbnails import THUMBNAIL_SIZE, make_thumbnail, thumbnail_name

GRID_KINDS = ("named", "angle")


@dataclass(frozen=True)
class SheetRow:
    """One target angle of a contact sheet: its label and one cell per study intensity."""

    label: str                 # "Happy 8°" or "a123 123°"
    weak_region: bool          # the angle lies in the weak region
    cells: list                # per intensity: a cell dict (see :func:`sheet_cell`) or None


@dataclass(frozen=True)
class ContactSheet:
    """All stimuli of one identity: the angle x intensity grid and the rest (neutral, points)."""

    identity: str
    intensities: list[float]
    rows: list[SheetRow]
    others: list[dict] = field(default_factory=list)


def _thumbnail(source: Path, size: int) -> bytes:
    """:func:`stimgen.thumbnails.make_thumbnail`, its errors as BuildFolderErrors."""
    try:
        return make_thumbnail(source, size)
    except FileNotFoundError:
        raise BuildFolderError(f"{source}: stimulus image listed in stimuli.tsv is missing",
                               hint="rebuild the study; stimuli/ must hold every listed file",
                               ) from None
    except (UnidentifiedImageError, OSError) as error:
        raise BuildFolderError(f"{source}: not a readable image ({error})",
                               hint="rebuild the study to regenerate the stimulus") from None


def write_thumbnails(stimuli: pd.DataFrame, build_root: Path, thumbs_dir: Path,
                     size: int = THUMBNAIL_SIZE, *, reuse: Path | Sequence[Path] = ()
                     ) -> dict[str, str]:
    """Write one thumbnail per stimulus under ``thumbs_dir``; returns stimulus_id -> file name.

    Thumbnails already in a ``reuse`` folder (the previous report's, and the build's own
    ``.stimgen/thumbnails/`` where the drawing processes left them) under the same name are
    copied instead of decoded again, so a report costs little.
    """
    thumbs_dir.mkdir(parents=True, exist_ok=True)
    folders = [reuse] if isinstance(reuse, Path) else [Path(f) for f in reuse]
    records = stimuli.to_dict("records")
    names = {record["stimulus_id"]: thumbnail_name(record, size) for record in records}
    sources = {names[record["stimulus_id"]]: build_root / record["file"] for record in records}

    def write(item):
        name, source = item
        previous = next((f / name for f in folders if (f / name).is_file()), None)
        if previous is not None:
            shutil.copyfile(previous, thumbs_dir / name)
        else:
            (thumbs_dir / name).write_bytes(_thumbnail(source, size))

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        list(pool.map(write, sorted(sources.items())))
    return names


def sheet_cell(stimulus: dict, thumbnail: str) -> dict:
    """What a contact-sheet cell shows: thumbnail, alt text, target vs achieved VA, badge."""
    target = f"V {stimulus['target_valence']:+.2f}, A {stimulus['target_arousal']:+.2f}"
    achieved = (f"V {stimulus['achieved_valence']:+.2f}, A {stimulus['achieved_arousal']:+.2f}"
                if _finite(stimulus["achieved_valence"]) and _finite(stimulus["achieved_arousal"])
                else "not rated")
    distance = (f"{stimulus['distance_error']:.2f}" if _finite(stimulus["distance_error"])
                else "–")
    what = stimulus["emotion"] if stimulus["target_kind"] != "angle" else f"{stimulus['angle']:g}°"
    if stimulus["target_kind"] in GRID_KINDS:
        what += f", intensity {stimulus['intensity']:g}"
    if stimulus["out_of_tolerance"]:
        badge, badge_text = "out", "out of tolerance"
    elif stimulus["flag_list"]:
        badge, badge_text = "flag", ", ".join(f.replace("_", " ") for f in stimulus["flag_list"])
    else:
        badge, badge_text = "", ""
    return {
        "stimulus_id": stimulus["stimulus_id"],
        "thumbnail": thumbnail,
        "alt": f"{stimulus['identity']} {what}",
        "target": target,
        "achieved": achieved,
        "distance": distance,
        "badge": badge,
        "badge_text": badge_text,
        "title": (f"{stimulus['stimulus_id']}: target {target}; achieved {achieved}; "
                  f"distance {distance}" + (f"; {badge_text}" if badge_text else "")),
    }


def contact_sheets(stimuli: pd.DataFrame, thumbnails: dict[str, str],
                   weak_region: tuple[float, float] | None) -> list[ContactSheet]:
    """One sheet per identity (in first-appearance order), rows by angle, columns by intensity.

    All sheets share the study's intensities as columns so they line up when compared.
    """
    gridded = (stimuli["target_kind"].isin(GRID_KINDS) & stimuli["angle"].notna()).tolist()
    intensities = sorted(stimuli.loc[gridded, "intensity"].dropna().unique().tolist())
    # one pass over plain records (a DataFrame per identity and angle costs seconds)
    by_identity: dict[str, tuple[dict, list]] = {}
    for record, aimed in zip(stimuli.to_dict("records"), gridded):
        grid, others = by_identity.setdefault(record["identity"], ({}, []))
        if aimed:
            grid.setdefault((record["angle"], record["emotion"]), {})[record["intensity"]] = record
        else:
            others.append(record)
    sheets = []
    for identity, (grid, others) in by_identity.items():
        rows = [SheetRow(label=angle_label(str(emotion), float(angle)),
                         weak_region=weak_region is not None
                         and bool(in_angle_interval(angle, *weak_region)),
                         cells=[sheet_cell(cells[r], thumbnails[cells[r]["stimulus_id"]])
                                if r in cells else None for r in intensities])
                for (angle, emotion), cells in sorted(grid.items(), key=_by_angle)]
        sheets.append(ContactSheet(identity=str(identity), intensities=intensities, rows=rows,
                                   others=[sheet_cell(r, thumbnails[r["stimulus_id"]])
                                           for r in others]))
    return sheets


def _by_angle(item) -> tuple:
    (angle, emotion), _ = item
    return float(angle), str(emotion)


def _finite(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
