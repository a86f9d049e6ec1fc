"""Dynamic stimuli: the clip of every stimulus (neutral face -> target expression, apex held),
its frames, its H.264 MP4 encoding and its temporal-consistency measures.

Called per identity by stimgen/render.py when the protocol sets ``output.dynamic``; the
build folder's names for the videos, frames and columns live in stimgen/build_folder.py.
"""
from __future__ import annotations

import dataclasses
import math
import os
import tempfile
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
from PIL import Image

from stimgen.build_folder import (CLIP_IDENTITY_COLUMN, CLIP_JITTER_COLUMN, FRAMES_DIR,
                                  FRAME_FILES_KEY, VIDEO_COLUMN,
                                  VIDEO_SHA256_COLUMN, stimulus_path)
from stimgen.errors import BackendUnavailableError, ProtocolProblem
from stimgen.storage import atomic_write_bytes, sha256_bytes

#: Steepness of the sigmoid ease (logistic over the onset, rescaled to run exactly 0 -> 1).
SIGMOID_STEEPNESS = 10.0
#: x264 settings of every clip. One encoder thread and bit-exact muxing: x264's output then
#: depends on the pixels alone (several threads may split frames differently run to run), and
#: the file carries no encoder version string (x264 writes its settings into an SEI unit,
#: dropped by the filter_units bitstream filter) or creation time.
X264_OUTPUT = ("-preset", "medium", "-crf", "12", "-tune", "stillimage",
               "-x264-params", "threads=1:lookahead-threads=1",
               "-threads", "1", "-map_metadata", "-1", "-fflags", "+bitexact",
               "-flags:v", "+bitexact", "-movflags", "+faststart",
               "-bsf:v", "filter_units=remove_types=6")
#: Outer eye corners in the iBUG 68-point order: their distance normalises the jitter.
OUTER_EYE_CORNERS = (36, 45)
#: Degree of the smooth landmark paths that :func:`landmark_jitter` measures jitter around.
JITTER_DEGREE = 3
#: Fewest onset frames whose jitter can be measured: a fit of degree 3 leaves no residual to
#: measure with fewer than 5 distinct intensities, so shorter onsets are never flagged `flicker`.
JITTER_MIN_FRAMES = JITTER_DEGREE + 2


# -- the intensity ramp --------------------------------------------------------------------
def intensity_ramp(frames: int, ease: str = "sigmoid") -> np.ndarray:
    """Expression intensity of each onset frame, from 0 (neutral) to 1 (the target).

    Parameters
    ----------
    frames : int
        Onset frames, the neutral first and the target last included (at least 2).
    ease : {"linear", "sigmoid"}
        ``linear``: equal steps; ``sigmoid``: a logistic curve rescaled to start at exactly
        0 and end at exactly 1 (slow start and end, fast middle).

    Returns
    -------
    numpy.ndarray
        ``frames`` intensities, non-decreasing, first 0.0 and last 1.0.

    Examples
    --------
    >>> intensity_ramp(5, "linear").tolist()
    [0.0, 0.25, 0.5, 0.75, 1.0]
    >>> ramp = intensity_ramp(5, "sigmoid")
    >>> float(ramp[0]), round(float(ramp[2]), 6), float(ramp[-1])
    (0.0, 0.5, 1.0)
    """
    if int(frames) < 2:
        raise ValueError(f"frames must be at least 2 (neutral and target), got {frames!r}")
    x = np.linspace(0.0, 1.0, int(frames))
    if ease == "linear":
        return x
    if ease != "sigmoid":
        raise ValueError(f'ease must be "linear" or "sigmoid", got {ease!r}')
    logistic = 1.0 / (1.0 + np.exp(-SIGMOID_STEEPNESS * (x - 0.5)))
    low, high = logistic[0], logistic[-1]
    ramp = (logistic - low) / (high - low)
    ramp[0], ramp[-1] = 0.0, 1.0
    return ramp


def hold_frames(hold_ms: int, fps: int) -> int:
    """Frames that repeat the apex after the onset: ``hold_ms`` at ``fps``, rounded.

    >>> hold_frames(1000, 30), hold_frames(500, 24), hold_frames(0, 30)
    (30, 12, 0)
    """
    if hold_ms < 0 or fps <= 0:
        raise ValueError(f"hold_ms must be >= 0 and fps > 0, got {hold_ms!r}, {fps!r}")
    return int(math.floor(hold_ms * fps / 1000.0 + 0.5))


def clip_seconds(dynamic) -> float:
    """How long a clip of ``output.dynamic`` plays: onset frames + hold, in seconds.

    >>> from types import SimpleNamespace
    >>> clip_seconds(SimpleNamespace(frames=24, fps=30, hold_ms=1000))
    1.8
    """
    return round((dynamic.frames + hold_frames(dynamic.hold_ms, dynamic.fps)) / dynamic.fps, 6)


def unmeasured_flicker(dynamic) -> ProtocolProblem | None:
    """A warning when ``output.dynamic`` has too few onset frames to measure ``clip_jitter``
    (so that no clip can be flagged ``flicker``); None otherwise, or without clips.

    Such onsets are allowed: 2 frames cut from neutral to the expression, 3-4 give a very
    fast onset. The warning only says that the flicker check cannot run on them.

    >>> from types import SimpleNamespace
    >>> unmeasured_flicker(SimpleNamespace(frames=4)).field
    'output.dynamic.frames'
    >>> unmeasured_flicker(SimpleNamespace(frames=5)) is None
    True
    """
    if dynamic is None or dynamic.frames >= JITTER_MIN_FRAMES:
        return None
    return ProtocolProblem(
        "output.dynamic.frames",
        f"{dynamic.frames} onset frames are too few to measure clip_jitter (it needs at least "
        f"{JITTER_MIN_FRAMES}), so no clip of this build can be flagged flicker",
        hint=f"use frames: {JITTER_MIN_FRAMES} or more to have clips checked for flicker, or "
             "keep an abrupt onset knowingly and watch the clips yourself")


# -- temporal consistency ----------------------------------------------------------------
def landmark_jitter(landmarks: np.ndarray, ramp: np.ndarray,
                    degree: int = JITTER_DEGREE) -> float:
    """How much the landmarks wobble around the motion the ramp asks for.

    Each landmark coordinate is fitted, over the onset, as a polynomial of the frame's
    intensity (``degree`` 3: the face moves smoothly as intensity grows, whatever the
    easing); the jitter is the RMS residual of that fit over every point and frame, divided
    by the inter-ocular distance (outer eye corners) of the first frame. Intended motion
    leaves almost nothing; a point that jumps back and forth between frames leaves its jumps.

    Parameters
    ----------
    landmarks : numpy.ndarray
        [F, 68, 2] pixel coordinates, iBUG order, one set per onset frame.
    ramp : numpy.ndarray
        [F] intensities of those frames (:func:`intensity_ramp`).
    degree : int
        Degree of the smooth fit.

    Returns
    -------
    float
        Jitter as a fraction of the inter-ocular distance; NaN with fewer than
        ``degree + 2`` distinct intensities (too few frames to tell motion from jitter).

    Examples
    --------
    >>> ramp = intensity_ramp(12, "linear")
    >>> points = np.zeros((12, 68, 2)); points[:, 45, 0] = 100.0
    >>> points[:, 48, 1] = 40.0 * ramp ** 2           # a smooth, intended movement
    >>> round(landmark_jitter(points, ramp), 6)
    0.0
    >>> points[5, 48, 1] += 2.0                        # one point jumps by 2 px in one frame
    >>> round(landmark_jitter(points, ramp), 5)
    0.00044
    >>> points += np.random.default_rng(0).normal(0, 1.0, points.shape)  # every point, 1 px
    >>> round(landmark_jitter(points, ramp), 3)
    0.008
    """
    points = np.asarray(landmarks, dtype=float)
    ramp = np.asarray(ramp, dtype=float)
    if points.ndim != 3 or points.shape[1:] != (68, 2) or points.shape[0] != ramp.shape[0]:
        raise ValueError(f"landmarks must be [F, 68, 2] with F = len(ramp), got "
                         f"{points.shape} for {ramp.shape[0]} intensities")
    if len(np.unique(ramp)) < degree + 2:
        return float("nan")
    left, right = OUTER_EYE_CORNERS
    eyes = float(np.linalg.norm(points[0, right] - points[0, left]))
    if eyes <= 0:
        return float("nan")
    paths = points.reshape(len(ramp), -1)                     # [F, 136]
    basis = np.vander(ramp, degree + 1)                       # [F, degree + 1]
    coefficients, *_ = np.linalg.lstsq(basis, paths, rcond=None)
    residual = paths - basis @ coefficients
    return float(np.sqrt(np.mean(residual ** 2)) / eyes)


# -- frames and encoding -----------------------------------------------------------------
def even_frame(image: Image.Image | np.ndarray) -> np.ndarray:
    """An RGB frame [H, W, 3] uint8 with even height and width (yuv420p needs them), the
    last row/column repeated where one is odd.

    >>> even_frame(np.zeros((65, 64, 3), np.uint8)).shape
    (66, 64, 3)
    """
    pixels = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"a frame must be [H, W, 3] RGB, got {pixels.shape}")
    pad = ((0, pixels.shape[0] % 2), (0, pixels.shape[1] % 2), (0, 0))
    return np.ascontiguousarray(np.pad(pixels, pad, mode="edge").astype(np.uint8))


def _ffmpeg():
    try:
        import imageio_ffmpeg
    except ImportError:
        raise BackendUnavailableError(
            "output.dynamic needs the imageio-ffmpeg package to write videos",
            hint="pip install 'imageio-ffmpeg>=0.6,<0.7' (its wheel carries ffmpeg)") from None
    return imageio_ffmpeg


def encode_mp4(frames: Sequence[Image.Image | np.ndarray], fps: int) -> bytes:
    """The frames as an H.264 MP4 (yuv420p, even size): the same bytes for the same frames.

    Encoded by the ffmpeg that the imageio-ffmpeg wheel carries, with one encoder thread and
    no metadata (:data:`X264_OUTPUT`), through a temporary file that is removed.

    Examples
    --------
    >>> frames = [np.full((32, 32, 3), v, np.uint8) for v in (0, 128, 255)]
    >>> video = encode_mp4(frames, fps=10)
    >>> video[4:8], video == encode_mp4(frames, fps=10)
    (b'ftyp', True)
    """
    if not frames:
        raise ValueError("a clip needs at least one frame")
    pixels = [even_frame(frame) for frame in frames]
    height, width = pixels[0].shape[:2]
    ffmpeg = _ffmpeg()
    with tempfile.TemporaryDirectory(prefix="stimgen-clip-") as folder:
        path = os.path.join(folder, "clip.mp4")
        writer = ffmpeg.write_frames(path, (width, height), fps=fps, codec="libx264",
                                     pix_fmt_in="rgb24", pix_fmt_out="yuv420p", quality=None,
                                     macro_block_size=2, ffmpeg_log_level="error",
                                     output_params=list(X264_OUTPUT))
        writer.send(None)
        for frame in pixels:
            if frame.shape[:2] != (height, width):
                raise ValueError("every frame of a clip must have the same size")
            writer.send(frame)
        writer.close()
        return Path(path).read_bytes()


@dataclass(frozen=True)
class DecodedClip:
    """A video read back: its frames [N, H, W, 3] uint8, frame rate and size (width, height)."""

    frames: np.ndarray
    fps: float
    size: tuple[int, int]


def read_clip(path: str | Path, limit: int | None = None) -> DecodedClip:
    """Decode a video file (as PsychoPy and browsers would) to check what was written;
    only its first ``limit`` frames when given.

    >>> import tempfile, pathlib
    >>> video = encode_mp4([np.zeros((32, 48, 3), np.uint8)] * 4, fps=12)
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = pathlib.Path(folder, "c.mp4"); _ = path.write_bytes(video)
    ...     clip = read_clip(path)
    >>> clip.frames.shape, clip.fps, clip.size
    ((4, 32, 48, 3), 12.0, (48, 32))
    """
    reader = _ffmpeg().read_frames(str(path), pix_fmt="rgb24")
    meta = next(reader)
    width, height = (int(v) for v in meta["size"])
    frames = []
    for data in reader:
        frames.append(np.frombuffer(data, np.uint8).reshape(height, width, 3))
        if limit is not None and len(frames) >= limit:
            reader.close()                   # stops ffmpeg
            break
    return DecodedClip(np.stack(frames) if frames else np.zeros((0, height, width, 3), np.uint8),
                       float(meta["fps"]), (width, height))


# -- one identity's clips ----------------------------------------------------------------
@dataclass
class Clip:
    """The onset of one stimulus: one rendered face per intensity of the ramp."""

    frames: list            # [F] stimgen.backends.base.Rendered, neutral first, target last
    ramp: np.ndarray        # [F] intensity of each frame

    def images(self, hold: int) -> list[Image.Image]:
        """The video's frames: the onset, then the apex ``hold`` more times."""
        onset = [face.image for face in self.frames]
        return onset + [onset[-1]] * hold


def render_clips(render: Callable[[list], list], targets: Sequence, stills: Sequence,
                 neutral, spec, batch: int) -> Iterator[Clip]:
    """The clip of every target, in order, each as soon as its frames are rendered (so that
    it can be written and dropped while the next frames render); the interior frames of all
    the targets go to the backend in batches of ``batch``.

    The first frame is the identity's ``neutral`` face and the last the target's ``still``
    itself (the face that was rated), so that both match the stills exactly; in between,
    each frame is the same target at a lower intensity (its VA point scaled by the ramp,
    i.e. the same direction on the same identity: for emostyle one latent path,
    ``w + M(w, s * (v, a))``, on the one generator of the identity).

    Parameters
    ----------
    render : callable
        ``render(targets) -> list of Rendered`` for a list of :class:`stimgen.plan.Target`.
    targets, stills : sequence
        The targets (``stimgen.plan.Target``) and their rendered stills, in the same order.
    neutral : Rendered
        The identity's neutral face (intensity 0).
    spec : stimgen.protocol.models.DynamicOutput
        ``frames`` and ``ease``.
    batch : int
        Frames per call of ``render``.
    """
    ramp = intensity_ramp(spec.frames, spec.ease)
    inner = [dataclasses.replace(target, valence=float(s) * target.valence,
                                 arousal=float(s) * target.arousal)
             for target in targets for s in ramp[1:-1]]
    per_clip, faces, done = len(ramp) - 2, [], 0
    for first in range(0, max(len(inner), 1), max(1, batch)):
        faces.extend(render(inner[first:first + batch]) if inner else [])
        while done < len(stills) and len(faces) >= per_clip:
            yield Clip([neutral, *faces[:per_clip], stills[done]], ramp)
            faces, done = faces[per_clip:], done + 1


def write_clips(writers: Executor, out: Path, stimulus_ids: Sequence[str],
                clips: Iterable[Clip], spec, encode_png: Callable[[Image.Image], bytes],
                backlog: int = 4) -> list[Future]:
    """Submit :func:`save_clip` of each clip to ``writers`` as it arrives; returns the jobs.

    At most ``backlog`` clips wait unwritten: encoding is slower than a GPU renders, and a
    batch of clips at 1024 px would otherwise hold gigabytes of frames.
    """
    jobs: list[Future] = []
    for sid, clip in zip(stimulus_ids, clips):
        unfinished = [job for job in jobs if not job.done()]
        if len(unfinished) >= backlog:
            wait(unfinished, return_when=FIRST_COMPLETED)
        jobs.append(writers.submit(save_clip, out, sid, clip, spec, encode_png))
    return jobs


def clip_measures(clip: Clip) -> dict[str, float]:
    """stimuli.tsv's temporal-consistency columns of one clip.

    ``clip_jitter``: :func:`landmark_jitter` of the onset; ``clip_identity_min``: the lowest
    identity similarity of any frame to the identity's reference face. None (an empty cell)
    where the backend gives no landmarks, or scores no identity (only emostyle does), or the
    onset has too few frames to measure jitter.
    """
    points = [face.landmarks for face in clip.frames]
    jitter = (landmark_jitter(np.stack(points), clip.ramp)
              if all(p is not None for p in points) else float("nan"))
    scores = [face.extras.get("identity_similarity") for face in clip.frames]
    identity = (float(min(scores)) if all(s is not None for s in scores) else float("nan"))
    return {CLIP_JITTER_COLUMN: None if math.isnan(jitter) else jitter,
            CLIP_IDENTITY_COLUMN: None if math.isnan(identity) else identity}


def save_clip(out: Path, sid: str, clip: Clip, spec,
              encode_png: Callable[[Image.Image], bytes]) -> dict[str, Any]:
    """Write the clip's video (and, with ``png_frames``, its onset frames encoded by
    ``encode_png``, the stills' own PNG encoder); returns the record entries: ``video``,
    ``video_sha256``, the frames' sha256 and the measures."""
    video = encode_mp4(clip.images(hold_frames(spec.hold_ms, spec.fps)), spec.fps)
    relative = stimulus_path(sid, spec.format)
    atomic_write_bytes(out / relative, video)
    record: dict[str, Any] = {VIDEO_COLUMN: relative, VIDEO_SHA256_COLUMN: sha256_bytes(video),
                              **clip_measures(clip)}
    if spec.png_frames:
        frames = {}
        for index, face in enumerate(clip.frames, start=1):
            data = encode_png(face.image)
            name = f"{FRAMES_DIR}/{sid}/{index:03d}.png"
            atomic_write_bytes(out / name, data)
            frames[name] = sha256_bytes(data)
        record[FRAME_FILES_KEY] = frames
    return record
