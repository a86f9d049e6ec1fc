"""Per-identity contact sheets: small thumbnails of every stimulus laid out as angle x intensity,
with the target and achieved valence/arousal of each and a badge on flagged ones.

Thumbnails are JPEG files named by the stimulus image's sha256, so a page stays small and a
regenerated report reuses nothing stale.
"""
from __future__ import annotations

import hashlib
import io
import math
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from PIL import Image, UnidentifiedImageError

from stimgen.circumplex import in_angle_interval
from stimgen.build_folder import BuildFolderError
from stimgen.report.tables import angle_label

THUMBNAIL_SIZE = 96        # px, longer side
THUMBNAIL_QUALITY = 80     # JPEG quality; faces at 96 px show no artefacts above ~75
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


def thumbnail_name(stimulus: dict, size: int = THUMBNAIL_SIZE) -> str:
    """File name of a stimulus's thumbnail: its image's sha256 (or a hash of its id) and size.

    The name changes whenever the image or the thumbnail size does, so an earlier report's
    thumbnail of the same name can be reused as is.
    """
    digest = str(stimulus.get("sha256") or "").strip().lower()
    if len(digest) < 16:
        digest = hashlib.sha256(str(stimulus["stimulus_id"]).encode("utf-8")).hexdigest()
    return f"{digest[:20]}-{size}.jpg"


def make_thumbnail(source: Path, size: int = THUMBNAIL_SIZE) -> bytes:
    """JPEG bytes of ``source`` shrunk to ``size`` px on its longer side, on white."""
    try:
        with Image.open(source) as image:
            image.thumbnail((size, size), Image.Resampling.LANCZOS, reducing_gap=2.0)
            if image.mode in ("RGBA", "LA", "P"):
                image = image.convert("RGBA")
                flat = Image.new("RGB", image.size, "white")
                flat.paste(image, mask=image.getchannel("A"))
                image = flat
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, format="JPEG", quality=THUMBNAIL_QUALITY,
                                      optimize=True)
    except FileNotFoundError:
        raise BuildFolderError(f"{source}: stimulus image listed in stimuli.tsv is missing",
                               hint="rebuild the study; stimuli/ must hold every listed file",
                               ) from None
    except (UnidentifiedImageError, OSError) as error:
        raise BuildFolderError(f"{source}: not a readable image ({error})",
                               hint="rebuild the study to regenerate the stimulus") from None
    return buffer.getvalue()


def write_thumbnails(stimuli: pd.DataFrame, build_root: Path, thumbs_dir: Path,
                     size: int = THUMBNAIL_SIZE, *, reuse: Path | None = None) -> dict[str, str]:
    """Write one thumbnail per stimulus under ``thumbs_dir``; returns stimulus_id -> file name.

    Thumbnails already in ``reuse`` (the previous report's folder) under the same name are
    copied instead of decoded again, so regenerating a report costs little.
    """
    thumbs_dir.mkdir(parents=True, exist_ok=True)
    records = stimuli.to_dict("records")
    names = {record["stimulus_id"]: thumbnail_name(record, size) for record in records}
    sources = {names[record["stimulus_id"]]: build_root / record["file"] for record in records}

    def write(item):
        name, source = item
        previous = reuse / name if reuse is not None else None
        if previous is not None and previous.is_file():
            shutil.copyfile(previous, thumbs_dir / name)
        else:
            (thumbs_dir / name).write_bytes(make_thumbnail(source, size))

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
    gridded = stimuli["target_kind"].isin(GRID_KINDS) & stimuli["angle"].notna()
    intensities = sorted(stimuli.loc[gridded, "intensity"].dropna().unique().tolist())
    sheets = []
    for identity, own in stimuli.groupby("identity", sort=False):
        rows = []
        aimed = own[gridded.loc[own.index]]
        for (angle, emotion), group in aimed.groupby(["angle", "emotion"], sort=True):
            by_intensity = {r["intensity"]: r for r in group.to_dict("records")}
            rows.append(SheetRow(
                label=angle_label(str(emotion), float(angle)),
                weak_region=weak_region is not None
                and bool(in_angle_interval(angle, *weak_region)),
                cells=[sheet_cell(by_intensity[r], thumbnails[by_intensity[r]["stimulus_id"]])
                       if r in by_intensity else None for r in intensities],
            ))
        others = [sheet_cell(r, thumbnails[r["stimulus_id"]])
                  for r in own[~gridded.loc[own.index]].to_dict("records")]
        sheets.append(ContactSheet(identity=str(identity), intensities=intensities, rows=rows,
                                   others=others))
    return sheets


def _finite(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
