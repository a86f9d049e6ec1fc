"""The report's "Dynamic stimuli" section: a filmstrip of one clip per emotion and the
temporal consistency of every clip (landmark jitter, identity across frames, flicker flags).

Present only for builds with ``output.dynamic``; template: templates/report_clips.html.j2.
"""
from __future__ import annotations

import io
import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from stimgen.build_folder import (CLIP_IDENTITY_COLUMN, CLIP_JITTER_COLUMN, FLICKER_FLAG,
                                  VIDEO_COLUMN, BuildFolder)

#: Template partial of the section, included by report.html.j2.
TEMPLATE = "report_clips.html.j2"
#: Folder of the filmstrips inside report_assets/.
FILMSTRIPS = "filmstrips"
#: Frames per filmstrip, evenly spaced over the onset, and their height in pixels.
STRIP_FRAMES, STRIP_HEIGHT = 6, 96


def dynamic_settings(folder: BuildFolder) -> dict | None:
    """The build's ``output.dynamic`` section, or None for a build of stills."""
    settings = (folder.protocol.get("output") or {}).get("dynamic")
    if not settings or VIDEO_COLUMN not in folder.stimuli.columns:
        return None
    return settings


def strip_stimuli(stimuli: pd.DataFrame) -> pd.DataFrame:
    """One clip per emotion (neutral excluded): the first identity's, at the strongest
    intensity the build made of that emotion, in the order of stimuli.tsv."""
    named = stimuli[(stimuli["target_kind"] != "neutral") & stimuli[VIDEO_COLUMN].ne("")]
    strongest = named[named["intensity"] == named.groupby("emotion")["intensity"]
                      .transform("max")]
    return strongest.drop_duplicates("emotion")


def filmstrip(frames: np.ndarray, onset: int, count: int = STRIP_FRAMES,
              height: int = STRIP_HEIGHT) -> bytes:
    """PNG of ``count`` frames evenly spaced over the first ``onset`` frames, side by side.

    >>> frames = np.stack([np.full((40, 40, 3), v, np.uint8) for v in range(0, 250, 25)])
    >>> image = Image.open(io.BytesIO(filmstrip(frames, onset=10, count=4, height=20)))
    >>> image.size, [image.getpixel((x, 10))[0] for x in (0, 20, 40, 60)]
    ((80, 20), [0, 75, 150, 225])
    """
    onset = max(1, min(int(onset), len(frames)))
    picks = np.linspace(0, onset - 1, min(count, onset)).round().astype(int)
    tiles = [Image.fromarray(frames[i]).resize(
        (max(1, round(frames.shape[2] * height / frames.shape[1])), height),
        Image.Resampling.LANCZOS) for i in picks]
    strip = Image.new("RGB", (sum(t.width for t in tiles), height), "white")
    x = 0
    for tile in tiles:
        strip.paste(tile, (x, 0))
        x += tile.width
    buffer = io.BytesIO()
    strip.save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def write_filmstrips(folder: BuildFolder, target: Path) -> None:
    """Decode one clip per emotion and write its filmstrip into ``target`` (report assets)."""
    settings = dynamic_settings(folder)
    if settings is None:
        return
    from stimgen.dynamic import read_clip

    target.mkdir(parents=True, exist_ok=True)
    onset = int(settings.get("frames", 0)) or None

    def write(row) -> None:
        clip = read_clip(folder.root / getattr(row, VIDEO_COLUMN), limit=onset)
        (target / f"{row.stimulus_id}.png").write_bytes(filmstrip(clip.frames, len(clip.frames)))

    # each decode is an ffmpeg process: a few at once keep the cores busy
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        list(pool.map(write, strip_stimuli(folder.stimuli).itertuples()))


def clips_context(folder: BuildFolder, assets: str) -> dict | None:
    """What the section shows: settings, jitter and identity summaries, flagged clips and one
    filmstrip per emotion; None for a build of stills."""
    settings = dynamic_settings(folder)
    if settings is None:
        return None
    stimuli = folder.stimuli
    jitter = pd.to_numeric(stimuli[CLIP_JITTER_COLUMN], errors="coerce")
    identity = pd.to_numeric(stimuli.get(CLIP_IDENTITY_COLUMN, pd.Series(dtype=float)),
                             errors="coerce")
    flicker = stimuli["flag_list"].map(lambda flags: FLICKER_FLAG in flags)
    return {
        "settings": settings,
        "count": int(stimuli[VIDEO_COLUMN].ne("").sum()),
        "jitter": _summary(jitter),
        "identity": _summary(identity),
        "threshold": settings.get("flicker_threshold"),
        "flickering": [{"stimulus_id": r.stimulus_id, "video": getattr(r, VIDEO_COLUMN),
                        "jitter": float(j)}
                       for r, j in zip(stimuli[flicker].itertuples(), jitter[flicker])],
        "strips": [{"emotion": r.emotion, "stimulus_id": r.stimulus_id,
                    "video": getattr(r, VIDEO_COLUMN),
                    "image": f"{assets}/{FILMSTRIPS}/{r.stimulus_id}.png"}
                   for r in strip_stimuli(stimuli).itertuples()],
    }


def _summary(values: pd.Series) -> dict | None:
    """Mean, median and max of the measured clips; None when no clip has the measure."""
    values = values.dropna()
    if values.empty:
        return None
    return {"n": int(len(values)), "mean": float(values.mean()),
            "median": float(values.median()), "min": float(values.min()),
            "max": float(values.max())} if all(map(math.isfinite, values)) else None
