"""Standardised framing (greyscale, oval mask, uniform background), the low-level image
measures of stimuli.tsv, and the set-level stage that matches them (protocol ``output:``).

Per image, :class:`Standardisation` runs inside each identity's unit (stimgen/render.py);
matching needs every face of its group first, so :func:`match_stage` runs once all units
are done, then rates the matched images (docs/standardise.md).
"""
from __future__ import annotations

import io
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from PIL import Image

from stimgen.backends.base import FRAMING_KEY, Rendered
from stimgen.build_folder import (MASKS_DIR, MATCH_SSIM_COLUMN, MATCHED_RECORDS_DIR,
                                  cached_records, store_records)
from stimgen.errors import BuildError
from stimgen.landmarks import JAW, LEFT_BROW, RIGHT_BROW, check_landmarks, eye_centres
from stimgen.matching import (LEVELS, MATCHING_VERSION, histogram_target, luminance_match,
                              luminance_target, specify_histogram, spectrum_match,
                              structural_similarity)
from stimgen.storage import sha256_bytes

#: Width of the oval's soft edge, as a fraction of the oval's radius.
FEATHER = 0.08
#: Passes of spectrum-then-histogram matching for `histogram+spectrum` (SHINE's combined modes
#: iterate too): one pass leaves the histogram step undoing much of the spectrum match (demo:
#: spectral-slope spread 0.21 after one pass, 0.018 after two); the histogram step is last,
#: so histograms stay exact.
COMBINED_PASSES = 2
#: Record keys that carry what the set-level stage needs; never columns of stimuli.tsv.
LANDMARKS_KEY, NEUTRAL_LANDMARKS_KEY, FRAMING_RECORD_KEY, OVAL_KEY = (
    "_landmarks", "_neutral_landmarks", "_framing", "_oval")
#: ``Rendered.extras`` key of a framed face's unmasked image, kept while `match:` needs it.
UNFRAMED_KEY = "_unframed"


# -- the oval -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class FaceOval:
    """An ellipse around a face, in pixels: its centre, half-axes and roll."""

    centre_x: float          # pixels from the left edge
    centre_y: float          # pixels from the top edge
    half_width: float        # pixels, along the eye line
    half_height: float       # pixels, perpendicular to it (forehead to chin)
    roll: float              # degrees, of the eye line against the image's x axis


def face_oval(landmarks) -> FaceOval:
    """The oval of a face from its 68 landmarks (iBUG 300-W order).

    Across the jaw's widest points (0 and 16); from 4 % of the brow-to-chin height
    below the chin up to 45 % of that height above the brows (the forehead, which has no
    landmarks); turned with the eye line. Ears, hair and neck stay outside, as in the
    standard oval masks of face research (Gronenschild et al., 2009).

    Examples
    --------
    >>> points = np.zeros((68, 2)); points[:, 0] = np.linspace(40, 60, 68)
    >>> points[0], points[16], points[8] = (30, 50), (70, 50), (50, 80)
    >>> points[36:42], points[42:48] = (40, 45), (60, 45)
    >>> points[17:27, 1] = 40
    >>> oval = face_oval(points)
    >>> round(oval.half_width, 1), round(oval.centre_x, 1), round(oval.roll, 1)
    (20.0, 50.0, 0.0)
    """
    points = check_landmarks(landmarks)
    if points.ndim != 2:
        raise ValueError("landmarks: one face [68, 2] expected")
    right, left = eye_centres(points)
    axis = left - right
    length = float(np.linalg.norm(axis))
    if length <= 1e-9:
        raise BuildError("a face's landmarks have coincident eyes; no oval can be drawn",
                         hint="use `mask: none` for this protocol, or check the backend's "
                              "landmarks")
    u = axis / length
    v = np.array([-u[1], u[0]])                 # perpendicular, towards the chin
    origin = (right + left) / 2
    across, down = (points - origin) @ u, (points - origin) @ v
    jaw_low, jaw_high = float(across[JAW].min()), float(across[JAW].max())
    brow, chin = float(down[np.r_[RIGHT_BROW, LEFT_BROW]].min()), float(down[JAW].max())
    height = chin - brow
    top, bottom = brow - 0.45 * height, chin + 0.04 * height
    centre = origin + u * (jaw_low + jaw_high) / 2 + v * (top + bottom) / 2
    return FaceOval(float(centre[0]), float(centre[1]), (jaw_high - jaw_low) / 2,
                    (bottom - top) / 2, float(np.degrees(np.arctan2(u[1], u[0]))))


def oval_mask(oval: FaceOval, width: int, height: int, feather: float = FEATHER) -> np.ndarray:
    """The oval as an 8-bit opacity image ``[height, width]``: 255 over the face, 0 outside,
    a smooth ramp (smoothstep) over the outer ``feather`` of the oval's radius.

    Pixels at 255 are the face region over which stimuli.tsv's measures and ``match:`` run.

    >>> mask = oval_mask(FaceOval(8, 8, 6, 7, 0.0), 16, 16)
    >>> int(mask[8, 8]), int(mask[0, 0]), mask.dtype.name
    (255, 0, 'uint8')
    """
    y, x = np.mgrid[0:height, 0:width].astype(np.float64) + 0.5   # pixel centres
    angle = np.radians(oval.roll)
    dx, dy = x - oval.centre_x, y - oval.centre_y
    across = dx * np.cos(angle) + dy * np.sin(angle)
    down = -dx * np.sin(angle) + dy * np.cos(angle)
    radius = np.sqrt((across / oval.half_width) ** 2 + (down / oval.half_height) ** 2)
    ramp = np.clip((1.0 - radius) / feather, 0.0, 1.0)
    return np.round(255 * ramp * ramp * (3 - 2 * ramp)).astype(np.uint8)


def composite(face: np.ndarray, mask: np.ndarray, background) -> np.ndarray:
    """``face`` (uint8, ``[H, W]`` or ``[H, W, 3]``) over a uniform ``background`` through the
    8-bit ``mask``, in integers: pixels where the mask is 255 keep their exact value.

    >>> composite(np.array([[200, 200]], np.uint8), np.array([[255, 0]], np.uint8), 128).tolist()
    [[200, 128]]
    """
    alpha = mask.astype(np.int32)
    if face.ndim == 3:
        alpha = alpha[..., None]
    back = np.asarray(background, dtype=np.int32)
    blended = (alpha * face.astype(np.int32) + (255 - alpha) * back + 127) // 255
    return blended.astype(np.uint8)


# -- per image ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Standardisation:
    """What protocol ``output:`` does to every image of one identity."""

    greyscale: bool
    mask: np.ndarray | None         # uint8 [H, W] (oval_mask) or None: the whole image
    background: int | tuple         # a grey level, or (R, G, B) for colour images
    oval: FaceOval | None = None

    @property
    def region(self) -> np.ndarray | None:
        """The face region (mask at 255), or None for the whole image."""
        return None if self.mask is None else self.mask == 255

    def face_image(self, image: Image.Image) -> Image.Image:
        """The face before masking: greyscale (PIL "L") if asked, else RGB."""
        return image.convert("L") if self.greyscale else image.convert("RGB")

    def framed(self, face: Image.Image) -> Image.Image:
        """``face`` (from :meth:`face_image`) through the mask onto the background."""
        if self.mask is None:
            return face
        background = self.background
        if face.mode == "L" and not isinstance(background, int):
            background = grey_level(background)
        elif face.mode != "L" and isinstance(background, int):
            background = (background,) * 3
        return Image.fromarray(composite(np.asarray(face), self.mask, background), face.mode)

    def apply(self, rendered: Rendered, keep_unframed: bool = False) -> Rendered:
        """The standardised face, with the backend's landmarks and measures; pixel arrays it
        computed from the unframed face (emostyle's EmoNet crop) are dropped, so that raters
        read the framed image, as participants will see it. ``keep_unframed``: the face before
        the mask stays in ``extras[UNFRAMED_KEY]`` (for the set stage of `match:`)."""
        if not self.greyscale and self.mask is None and not keep_unframed:
            return rendered
        extras = {k: v for k, v in rendered.extras.items() if not isinstance(v, np.ndarray)}
        face = self.face_image(rendered.image)
        if keep_unframed:
            extras[UNFRAMED_KEY] = face
        return Rendered(self.framed(face), rendered.landmarks, extras)

    def record_fields(self) -> dict[str, Any]:
        """What a stimulus record keeps of the framing: the oval, for masks/ and the set stage."""
        return {OVAL_KEY: None if self.oval is None else list(vars(self.oval).values())}

    def measures(self, image: Image.Image) -> dict[str, float]:
        """stimuli.tsv's low-level columns of ``image`` (see :func:`low_level_measures`)."""
        return low_level_measures(image, self.region)


def grey_level(colour) -> int:
    """The PIL "L" grey level of an RGB colour (0.299 R + 0.587 G + 0.114 B).

    >>> grey_level((255, 0, 0)), grey_level(128)
    (76, 128)
    """
    if isinstance(colour, int):
        return colour
    pixel = Image.new("RGB", (1, 1), tuple(int(c) for c in colour)).convert("L")
    return int(pixel.getpixel((0, 0)))


def standardisation(output, neutral: Rendered) -> Standardisation:
    """The identity's standardisation from protocol ``output`` and its neutral face, whose
    landmarks place the oval (so every stimulus of the identity shares one mask)."""
    background = output.background if isinstance(output.background, int) \
        else tuple(output.background)
    if output.greyscale:
        background = grey_level(background)
    if output.mask != "oval":
        return Standardisation(output.greyscale, None, background)
    if neutral.landmarks is None:
        raise BuildError("`output.mask: oval` needs face landmarks, and this backend gave "
                         "none for the neutral face",
                         hint="set `output.mask: none`, or use a backend that reports "
                              "landmarks (schematic, emostyle)")
    oval = face_oval(neutral.landmarks)
    return Standardisation(output.greyscale,
                           oval_mask(oval, neutral.image.width, neutral.image.height),
                           background, oval)


def standardise_key(output) -> dict[str, Any]:
    """What of protocol ``output`` changes an identity's stimuli (enters pipeline.unit_key)."""
    return {"greyscale": output.greyscale, "mask": output.mask,
            "background": output.background if output.mask != "none" else None,
            "feather": FEATHER if output.mask != "none" else None,
            # matching defers rating to the set stage: the unit's records differ
            "matched_later": output.match != "none"}


# -- low-level measures -------------------------------------------------------------------------
def low_level_measures(image: Image.Image, region: np.ndarray | None = None) -> dict[str, float]:
    """``mean_luminance``, ``rms_contrast`` and ``spectral_slope`` of one image.

    Luminance is PIL's "L" conversion (0.299 R + 0.587 G + 0.114 B) scaled to [0, 1]; mean and
    RMS contrast (population SD) are over ``region`` (the face inside the oval) or the whole
    image. The spectral slope is the whole image's (:func:`spectral_slope`).

    >>> flat = Image.new("L", (32, 32), 51)
    >>> measures = low_level_measures(flat)
    >>> round(measures["mean_luminance"], 6), round(measures["rms_contrast"], 6)
    (0.2, 0.0)
    """
    grey = np.asarray(image.convert("L"), dtype=np.float64) / (LEVELS - 1)
    values = grey if region is None else grey[region]
    return {"mean_luminance": float(values.mean()), "rms_contrast": float(values.std()),
            "spectral_slope": spectral_slope(grey)}


def spectral_slope(grey: np.ndarray) -> float:
    """Slope of log amplitude against log spatial frequency of the rotationally averaged
    Fourier amplitude spectrum, from 2 cycles per image to a quarter of the sampling rate.

    Natural images lie near -1 (amplitude ~ 1/f); steeper (more negative) means relatively
    more coarse structure, flatter means more fine detail. Of the whole image, mean removed.

    >>> rng = np.random.default_rng(0)
    >>> abs(spectral_slope(rng.normal(size=(128, 128)))) < 0.1   # white noise: flat
    True
    """
    from scipy import fft      # single precision: twice numpy's speed, ample for a slope

    amplitude = np.abs(fft.rfft2((grey - grey.mean()).astype(np.float32), workers=1))
    bins, counts, frequencies = _frequency_bins(*grey.shape)
    sums = np.bincount(bins, amplitude.ravel(), minlength=len(counts))
    profile = sums[frequencies] / np.maximum(counts[frequencies], 1)
    keep = profile > 0
    if keep.sum() < 2:
        return 0.0
    return float(np.polyfit(np.log(frequencies[keep]), np.log(profile[keep]), 1)[0])


@lru_cache(maxsize=8)
def _frequency_bins(height: int, width: int):
    """Radial frequency (cycles per image, rounded) of every rfft2 coefficient, the number of
    coefficients per radius, and the radii the slope is fitted over."""
    side = min(height, width)
    fy = np.fft.fftfreq(height)[:, None] * side
    fx = np.fft.rfftfreq(width)[None, :] * side
    bins = np.round(np.hypot(fx, fy)).astype(np.int64).ravel()
    return bins, np.bincount(bins), np.arange(2, side // 4 + 1)


# -- records --------------------------------------------------------------------------------------
def deferred_fields(face: Rendered, neutral: Rendered, oval: FaceOval | None) -> dict[str, Any]:
    """What a unit keeps for :func:`match_stage` in the record of a face it did not rate."""
    return {LANDMARKS_KEY: None if face.landmarks is None
            else np.round(np.asarray(face.landmarks, float), 4).tolist(),
            NEUTRAL_LANDMARKS_KEY: None if neutral.landmarks is None
            else np.round(np.asarray(neutral.landmarks, float), 4).tolist(),
            FRAMING_RECORD_KEY: face.extras.get(FRAMING_KEY),
            OVAL_KEY: None if oval is None else list(vars(oval).values())}


def public(record: dict) -> dict:
    """A record without the set stage's private keys."""
    return {k: v for k, v in record.items() if not k.startswith("_")}


def mask_png(oval_values, width: int, height: int) -> bytes:
    """The PNG of an identity's oval mask (8-bit, 255 = face region), as masks/ holds it."""
    mask = oval_mask(FaceOval(*oval_values), width, height)
    buffer = io.BytesIO()
    Image.fromarray(mask, "L").save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


# -- the set-level stage --------------------------------------------------------------------------
@dataclass(frozen=True)
class MatchedIdentity:
    """One identity's matched faces, ready to be composited, rated and saved
    (:func:`finish_matched`, in a worker process)."""

    unit: Any                          # the identity's plan.IdentityUnit
    records: list[dict]                # its units' records: the unmatched faces
    faces: dict[str, np.ndarray]       # stimulus id -> matched grey face, before the mask
    background: int                    # grey level outside the oval
    folder: str                        # the build folder, where the unmatched faces are


def serial_map(function: Callable, items) -> Iterator:
    """``map`` in this process: what :func:`match_stage` runs with when no worker is given."""
    return map(function, items)


def match_stage(output, units, keys: dict[str, str], records: dict[str, dict], out: Path,
                finish: Callable[[MatchedIdentity], list[dict]], run: Callable = serial_map,
                timings: dict[str, float] | None = None) -> dict[str, dict]:
    """Match every group's images (the whole set, or each identity), then rate and save them.

    ``output`` is the protocol's ``output`` section (``match``, ``match_scope``,
    ``match_ssim_iterations``, ``background``); nothing else of the protocol is read.
    ``records`` are the units' records, whose files are the unmatched faces (greyscale,
    before the mask). ``finish(MatchedIdentity) -> records`` composites, rates and saves one
    identity's matched faces (:func:`stimgen.render.finish_matched`). ``run(function,
    items)`` maps a picklable function over items, in order: :func:`serial_map`, or worker
    processes (:func:`stimgen.executors.worker_map`); matching runs face by face and
    finishing identity by identity through it, so both use every worker. Each identity's
    matched records are cached under a key of everything its group depends on, so an
    interrupted stage resumes and a rebuild reproduces the same files. ``timings`` gets the
    seconds spent matching (``match_images``) and rating and writing (``match_rate_write``).
    """
    timings = {} if timings is None else timings
    timings.setdefault("match_images", 0.0)
    timings.setdefault("match_rate_write", 0.0)
    by_identity = {unit.identity.id: unit for unit in units}
    method = {"match": output.match, "passes": COMBINED_PASSES, "version": MATCHING_VERSION}
    if output.match in ("histogram", "histogram+spectrum"):     # the others never read it
        method["ssim_iterations"] = output.match_ssim_iterations
    if output.match_scope == "set":
        groups = [(list(by_identity), _digest({"units": sorted(keys.items()), **method}))]
    else:
        groups = [([identity], _digest({"unit": keys[identity], **method}))
                  for identity in by_identity]
    background = grey_level(output.background)
    final: dict[str, dict] = {}
    for identities, group_key in groups:
        unit_keys = {i: _digest({"group": group_key, "identity": i}) for i in identities}
        done = {i: cached_records(out, i, unit_keys[i], folder=MATCHED_RECORDS_DIR)[0]
                for i in identities}
        missing = [i for i in identities if done[i] is None]
        if missing:              # every face of the group, once, when one identity is missing
            clock = time.perf_counter()
            matched = _match_group(output, [_unit_records(by_identity[i], records)
                                            for i in identities], out, run)
            timings["match_images"] += time.perf_counter() - clock
            clock = time.perf_counter()
            tasks = []
            for identity in missing:
                unit_records = _unit_records(by_identity[identity], records)
                tasks.append(MatchedIdentity(by_identity[identity], unit_records,
                                             {r["stimulus_id"]: matched[r["stimulus_id"]]
                                              for r in unit_records}, background, str(out)))
            for identity, fresh in zip(missing, run(finish, tasks)):     # as each is done
                store_records(out, identity, unit_keys[identity], fresh,
                              folder=MATCHED_RECORDS_DIR)
                done[identity] = fresh
            timings["match_rate_write"] += time.perf_counter() - clock
        for identity in identities:
            final.update({r["stimulus_id"]: r for r in done[identity]})
    return final


def _unit_records(unit, records: dict[str, dict]) -> list[dict]:
    return [records[t.stimulus_id(unit.identity.id)] for t in unit.targets]


def finish_matched(task: MatchedIdentity, rate: Callable, save: Callable) -> list[dict]:
    """Composite one identity's matched faces onto the background, rate them and save them,
    with ``ssim_unmatched``: each stimulus's SSIM to its unmatched self over the face region
    (:func:`stimgen.matching.structural_similarity`).

    ``rate(faces, neutral, alone) -> columns`` and ``save(sid, face, columns, framing) ->
    record`` are the unit's own rating and saving steps (stimgen/render.py).
    """
    unit, unit_records = task.unit, task.records
    grey, similarity = {}, {}
    for record in unit_records:
        sid = record["stimulus_id"]
        mask = _mask_of(record, task.faces[sid].shape)
        grey[sid] = composite(task.faces[sid], mask, task.background)
        unmatched = composite(_read_grey(Path(task.folder) / record["file"]), mask,
                              task.background)
        similarity[sid] = structural_similarity(unmatched, grey[sid], mask == 255)
    faces = [Rendered(Image.fromarray(grey[r["stimulus_id"]], "L").convert("RGB"),
                      None if r[LANDMARKS_KEY] is None else np.asarray(r[LANDMARKS_KEY]),
                      {} if r[FRAMING_RECORD_KEY] is None
                      else {FRAMING_KEY: r[FRAMING_RECORD_KEY]}) for r in unit_records]
    neutral_points = unit_records[0][NEUTRAL_LANDMARKS_KEY]
    # raters read the neutral face's landmarks (geometric) and none reads its pixels
    neutral = Rendered(faces[0].image, None if neutral_points is None
                       else np.asarray(neutral_points), faces[0].extras)
    columns = rate(faces, neutral, [t.kind == "neutral" for t in unit.targets])

    def finish(index: int) -> dict:
        record, face = unit_records[index], faces[index]
        sid = record["stimulus_id"]
        mask = None if record[OVAL_KEY] is None else _mask_of(record, grey[sid].shape)
        framing = Standardisation(True, mask, 0, None)      # measures over the mask's face
        kept = {k: v for k, v in public(record).items()
                if k not in ("stimulus_id", "file", "sha256", "width", "height")}
        ratings = {key: values[index] for key, values in columns.items()}
        ratings[MATCH_SSIM_COLUMN] = similarity[sid]
        return save(sid, Rendered(Image.fromarray(grey[sid], "L"), face.landmarks, face.extras),
                    {**kept, **ratings}, framing)

    with ThreadPoolExecutor(max_workers=2) as writers:     # as the units write theirs
        return list(writers.map(finish, range(len(unit_records))))


def _match_group(output, group: list[list[dict]], out: Path, run: Callable
                 ) -> dict[str, np.ndarray]:
    """The matched faces of one group (before the mask), by stimulus id."""
    flat = [record for unit_records in group for record in unit_records]
    faces = list(run(_read_grey, [out / record["file"] for record in flat]))
    masks = [_mask_of(r, face.shape) for r, face in zip(flat, faces)]
    regions = [m == 255 for m in masks]
    background = grey_level(output.background)
    method = output.match
    for _ in range(COMBINED_PASSES if method == "histogram+spectrum" else 1):
        if method in ("spectrum", "histogram+spectrum"):
            framed = list(zip(faces, masks))
            shares = [framed[i::_SHARES] for i in range(min(_SHARES, len(framed)))]
            sums = list(run(partial(_amplitude_sum, background=background), shares))
            target = np.sum(sums, axis=0) / len(faces)
            faces = list(run(partial(_spectrum_matched, target=target, background=background),
                             framed))
        if method != "spectrum":
            if method == "luminance":
                target = luminance_target(faces, regions)
            else:
                target = histogram_target(faces, regions)
            faces = list(run(partial(_region_matched, method=method, target=target,
                                     iterations=output.match_ssim_iterations),
                             list(zip(faces, regions))))
    return {r["stimulus_id"]: f for r, f in zip(flat, faces)}


#: Shares of a group whose amplitude spectra the workers sum (each returns one sum).
_SHARES = 16


def _read_grey(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L"))


def _amplitude_sum(framed: list[tuple[np.ndarray, np.ndarray]], background: int) -> np.ndarray:
    """Summed half-plane amplitude spectra of faces framed onto the background."""
    total = None
    for face, mask in framed:
        amplitude = np.abs(np.fft.rfft2(composite(face, mask, background).astype(np.float64)))
        total = amplitude if total is None else total + amplitude
    return total


def _spectrum_matched(item: tuple[np.ndarray, np.ndarray], target: np.ndarray,
                      background: int) -> np.ndarray:
    face, mask = item
    return spectrum_match([composite(face, mask, background)], target)[0]


def _region_matched(item: tuple[np.ndarray, np.ndarray], method: str, target,
                    iterations: int) -> np.ndarray:
    """Luminance or histogram matching of one face region, carried onto the soft edge."""
    face, region = item
    if method == "luminance":
        matched = luminance_match([face], [region], target)[0]
    else:
        matched = specify_histogram(face, region, target, iterations=iterations)
    return _extend_to_face(face, matched, region)


def _mask_of(record: dict, shape) -> np.ndarray:
    oval = record.get(OVAL_KEY)
    return _cached_mask(None if oval is None else tuple(oval), tuple(shape))


@lru_cache(maxsize=64)
def _cached_mask(oval: tuple | None, shape: tuple) -> np.ndarray:
    """One mask per identity (they share the oval), computed once."""
    if oval is None:
        mask = np.full(shape, 255, np.uint8)
    else:
        mask = oval_mask(FaceOval(*oval), shape[1], shape[0])
    mask.setflags(write=False)
    return mask


def _extend_to_face(before: np.ndarray, matched: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Carry the match of the face region onto the oval's soft edge: each grey level there gets
    the mean matched value of that level inside the region (interpolated between levels), so
    the edge fades from matched face to background without a seam."""
    if region.all():
        return matched
    levels = before[region].astype(np.int64)
    sums = np.bincount(levels, matched[region].astype(np.float64), minlength=LEVELS)
    counts = np.bincount(levels, minlength=LEVELS)
    present = np.flatnonzero(counts)
    table = np.interp(np.arange(LEVELS), present, sums[present] / counts[present])
    result = np.round(table[before]).astype(np.uint8)
    result[region] = matched[region]
    return result


def _digest(payload) -> str:
    return sha256_bytes(json.dumps(payload, sort_keys=True).encode("utf-8"))


def write_masks(ledger, records: dict[str, dict], units) -> set[str]:
    """masks/<identity>.png for every identity of an oval-masked build; the paths written."""
    written: set[str] = set()
    for unit in units:
        first = records[unit.targets[0].stimulus_id(unit.identity.id)]
        oval = first.get(OVAL_KEY)
        if oval is None:
            continue
        relative = f"{MASKS_DIR}/{unit.identity.id}.png"
        ledger.write_bytes(relative, mask_png(oval, int(first["width"]), int(first["height"])))
        written.add(relative)
    return written
