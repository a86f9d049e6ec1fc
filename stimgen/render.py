"""The work on one identity that worker processes run: render every target, rate it, encode
and save the images, and return one record per stimulus.

Each face is standardised (greyscale, oval mask, background: stimgen/standardise.py) before
it is rated, so raters see what participants will see. The orchestrator (stimgen/pipeline.py)
and the executors (stimgen/executors.py) both call :func:`render_and_rate`; it reads nothing
but its arguments and writes only ``stimuli/`` (and, with ``match:``, the unmatched faces).
"""
from __future__ import annotations

import dataclasses
import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from PIL import Image

from stimgen.backends import create_backend
from stimgen.backends.base import Rendered
from stimgen.build_folder import (CORRECTION, EXTRA_COLUMNS, STIMULI_DIR, THUMBNAILS_DIR,
                                  UNMATCHED_DIR, StimulusJournal, rater_columns,
                                  stimulus_path)
from stimgen.correction import correct_stimuli, steering_readings
from stimgen.dynamic import render_clips, write_clips
from stimgen.plan import IdentityUnit
from stimgen.raters import create_rater, rating_details
from stimgen.raters.quality import build_quality
from stimgen.standardise import (UNFRAMED_KEY, MatchedIdentity, Standardisation,
                                 deferred_fields, finish_matched, standardisation)
from stimgen.settings import RenderSpec
from stimgen.storage import atomic_write_bytes, crash_point, sha256_bytes
from stimgen.thumbnails import thumbnail_bytes, thumbnail_name


@dataclass(frozen=True)
class Chunk:
    """A slice of one identity's targets; the unit a worker process runs.

    With ``key`` (the identity's cache key) every stimulus is recorded in a
    :class:`~stimgen.build_folder.StimulusJournal` as soon as its files are written; batches
    whose stimuli are all in ``done`` (finished by an earlier, interrupted run) are skipped.
    """

    unit: IdentityUnit
    start: int
    stop: int
    key: str | None = None                  # the identity's cache key: journal its stimuli
    done: frozenset[str] = frozenset()      # stimulus ids finished earlier: not drawn again

    @property
    def stimulus_ids(self) -> list[str]:
        identity = self.unit.identity.id
        return [t.stimulus_id(identity) for t in self.unit.targets[self.start:self.stop]]


def identity_chunks(unit: IdentityUnit, workers: int, split: bool = True) -> list[Chunk]:
    """Split an identity into a few slices so that several workers share the load.

    Each slice prepares the identity again, which is cheap only for schematic faces
    (``split``); a personalised generator is prepared once per identity.
    """
    n = len(unit.targets)
    parts = 1 if workers <= 1 or not split else min(n, 4)
    bounds = [round(n * i / parts) for i in range(parts + 1)]
    return [Chunk(unit, a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def render_and_rate(spec: RenderSpec, chunk: Chunk, out: Path,
                    on_stimuli: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
    """Render, save and rate the stimuli of ``chunk``; returns one record per stimulus drawn.

    ``spec`` (:func:`stimgen.plan.render_spec`) is all it reads of the protocol.

    Targets go to the backend in batches of ``backend.batch_size``; encoding and writing
    the images runs in background threads so that the generator is never kept waiting.
    A batch whose stimuli are all in ``chunk.done`` is skipped (its records are the
    caller's); any other batch is drawn whole, so that a resumed build batches, and so draws,
    exactly as an uninterrupted one. With ``chunk.key``, each stimulus is journaled once its
    files are written, also when the run is stopped (a ``KeyboardInterrupt`` from Ctrl-C or
    :mod:`stimgen.interrupt`): the writes under way finish and are recorded first.
    """
    journal = (StimulusJournal(out, chunk.unit.identity.id, chunk.key)
               if chunk.key is not None else None)
    try:
        return _render_and_rate(spec, chunk, out, on_stimuli, journal)
    finally:
        if journal is not None:
            journal.close()


def _render_and_rate(spec, chunk, out, on_stimuli, journal) -> list[dict[str, Any]]:
    drawing = IdentityDrawing.start(spec, chunk.unit.identity, out)
    pending: list[tuple] = []          # (still, clip) futures of each stimulus, in order
    journaled = 0

    def journal_finished(wait: bool = False) -> None:
        """Journal the stimuli whose files are written, in order (all of them with ``wait``,
        once the writers have stopped)."""
        nonlocal journaled
        while journaled < len(pending):
            still, clip = pending[journaled]
            if not wait and not (still.done() and (clip is None or clip.done())):
                return
            if (still.cancelled() or still.exception() is not None
                    or (clip is not None and (clip.cancelled() or clip.exception() is not None))):
                return                  # a failed write: it and what follows are redone
            if journal is not None:
                journal.add(dict(still.result(), **(clip.result() if clip else {})))
            journaled += 1

    try:
        with ThreadPoolExecutor(max_workers=2) as writers:
            _draw_and_save(spec, drawing, chunk, writers, pending, journal_finished,
                           on_stimuli)
    finally:
        journal_finished(wait=True)     # the writers have finished: record what they wrote
    return [dict(still.result(), **(clip.result() if clip else {})) for still, clip in pending]


def _draw_and_save(spec, drawing: IdentityDrawing, chunk, writers, pending,
                   journal_finished, on_stimuli) -> None:
    """Draw and rate every batch of ``chunk`` not already ``done``, hand its faces to
    ``writers`` and add their futures to ``pending``: each batch is saved as soon as it is
    rated, or, with closed-loop correction, the whole chunk once it is corrected."""
    identity = chunk.unit.identity
    targets = chunk.unit.targets[chunk.start:chunk.stop]
    correction = spec.correction

    def new(part) -> int:
        return sum(1 for t in part if t.stimulus_id(identity.id) not in chunk.done)

    drawn: list[tuple] = []       # the whole chunk, held for correction (issue 18)
    for first in range(0, len(targets), drawing.batch):
        part = targets[first:first + drawing.batch]
        if not new(part):         # finished by an earlier run
            continue
        faces = drawing.draw(part)
        ratings = ({} if drawing.matched_later and correction is None  # rated after matching
                   else drawing.rate(part, faces))
        if correction is None:
            drawing.save(writers, part, faces, ratings, pending)
            journal_finished()
            if on_stimuli:
                on_stimuli(new(part))
            crash_point("batch")      # tests: stop here, in the process that draws
        else:
            drawn.append((part, faces, ratings))
    if drawn:                     # closed-loop correction: every stimulus of the chunk at once
        drawing.save(writers, *_correct(spec, drawing.raters, drawn, drawing.neutral,
                                        drawing.redraw), pending)
        if on_stimuli:
            on_stimuli(sum(new(part) for part, _, _ in drawn))


@dataclass
class IdentityDrawing:
    """One identity's faces in the making, as composable steps: :meth:`draw` (render and
    frame), :meth:`rate`, :meth:`redraw` (at corrected requests) and :meth:`save` (the still,
    or with ``match:`` the unmasked face for the set stage; and its clip with
    ``output.dynamic``). :func:`render_and_rate` runs them over a chunk's batches."""

    backend: Any
    handle: Any                   # the prepared identity
    raters: dict                  # name -> rater, primary first
    framing: Standardisation      # greyscale, oval mask, background (issue 17)
    neutral: Rendered             # the identity's neutral face, framed
    identity: str
    out: Path
    image_format: str             # output.format
    matched_later: bool           # output.match: rated and saved by the set stage
    batch: int                    # targets per backend call, as the identity starts
    dynamic: Any = None           # output.dynamic: a clip of every stimulus (issue 19)

    @classmethod
    def start(cls, spec: RenderSpec, identity, out: Path) -> IdentityDrawing:
        """Create the backend and the raters, prepare ``identity`` and draw its neutral face."""
        backend = create_backend(spec)
        raters = {name: create_rater(name, spec.backend.name) for name in spec.rating.names}
        handle = backend.prepare(identity)
        neutral = backend.render(handle, [(0.0, 0.0)])[0]
        # issue 17: greyscale / oval mask / background on every face before it is rated (and
        # on corrected faces and clip frames); with `match:` the set stage
        # (standardise.match_stage) matches, rates and saves, so the units keep the unmasked
        # faces and rate only to correct
        framing = standardisation(spec.output, neutral)
        return cls(backend, handle, raters, framing, framing.apply(neutral), identity.id, out,
                   spec.output.format, spec.output.match != "none",
                   max(1, int(backend.batch_size)), spec.output.dynamic)

    def framed(self, faces) -> list:
        return [self.framing.apply(face, keep_unframed=self.matched_later) for face in faces]

    def draw(self, part) -> list:
        """The framed faces of the targets ``part``, in one backend call."""
        return self.framed(_render(self.backend, self.handle, part))

    def redraw(self, part, points) -> list:
        """The framed faces of ``part`` at ``points`` (corrected requests), in batches."""
        return self.framed(_render_batches(self.backend, self.handle, part, points))

    def rate(self, part, faces) -> dict[str, list]:
        """Every rater's reading of ``faces`` (the neutral target rated alone)."""
        alone = [target.kind == "neutral" for target in part]
        return rate_faces(self.raters, faces, self.neutral, alone,
                          multiple=len(self.raters) > 1)

    def save(self, writers, part, faces, ratings, pending: list) -> None:
        """Hand each stimulus's files to ``writers``: its clip (issue 19: neutral -> the VA its
        still was drawn at, after issue 18's correction the kept request; the apex is the
        still, so the still's rating is the clip's), then its still; the futures (still,
        clip) of each go into ``pending`` as they are handed over, in order."""
        ids = [t.stimulus_id(self.identity) for t in part]
        clips = ([None] * len(part) if self.dynamic is None else write_clips(
            writers, self.out, ids,
            render_clips(lambda ts: self.draw(ts), _as_drawn(part, ratings), faces,
                         self.neutral, self.dynamic, self.batch),
            self.dynamic, _png))
        for index, (sid, face) in enumerate(zip(ids, faces)):
            columns = {key: values[index] for key, values in ratings.items()}
            columns.update(self.framing.record_fields())
            pending.append((self._save_still(writers, sid, face, columns), clips[index]))

    def _save_still(self, writers, sid: str, face, columns: dict):
        if self.matched_later:      # the unmasked face, for the set stage
            face = unframed(face)
            columns.update(deferred_fields(face, self.neutral, self.framing.oval))
            return writers.submit(_save_stimulus, self.out, sid, "png", face, columns, None,
                                  UNMATCHED_DIR)
        return writers.submit(_save_stimulus, self.out, sid, self.image_format, face,
                              columns, self.framing)


def rate_matched(spec: RenderSpec, out: Path, task: MatchedIdentity) -> list[dict[str, Any]]:
    """The set stage of `match:` for one identity (in a worker process, or this one):
    composite its matched faces, rate them with the protocol's raters and save them
    (:func:`stimgen.standardise.finish_matched`); returns its records."""
    names = spec.rating.names
    raters = {name: create_rater(name, spec.backend.name) for name in names}
    output = spec.output
    return finish_matched(
        task, rate=lambda faces, neutral, alone: rate_faces(raters, faces, neutral, alone,
                                                            multiple=len(names) > 1),
        save=lambda sid, face, columns, framing: _save_stimulus(out, sid, output.format, face,
                                                                columns, framing))


def unframed(face: Rendered) -> Rendered:
    """The unmasked face a framed one kept for the set stage of `match:` (issue 17)."""
    extras = dict(face.extras)
    return Rendered(extras.pop(UNFRAMED_KEY), face.landmarks, extras)


def _correct(spec: RenderSpec, raters: dict, drawn: list[tuple], neutral,
             draw: Callable) -> tuple[list, list, dict[str, list]]:
    """The chunk's stimuli after closed-loop correction (stimgen/correction.py): their
    targets, the kept faces and their columns."""
    steering, names = spec.rating.steering, spec.rating.names
    part = [target for batch in drawn for target in batch[0]]
    faces = [face for batch in drawn for face in batch[1]]
    ratings = {key: [value for batch in drawn for value in batch[2][key]] for key in drawn[0][2]}
    if steering in raters:
        first = steering_readings(ratings, steering, names)
    else:                                 # a protocol the build did not resolve
        raters = {**raters, steering: create_rater(steering, spec.backend.name)}
        first = raters[steering].rate(faces, neutral)
    faces, ratings = correct_stimuli(
        spec.correction, part, faces, ratings, first, draw=draw,
        steer=lambda faces: raters[steering].rate(faces, neutral),
        rate=lambda faces: rate_faces({name: raters[name] for name in names}, faces, neutral,
                                      [False] * len(faces), multiple=len(names) > 1),
        judged=names[0] != steering, steering=steering, backend=spec.backend.name)
    return part, faces, ratings


def _as_drawn(targets, ratings: dict[str, list]) -> list:
    """``targets`` at the VA their faces were drawn at: the corrected request where closed-loop
    correction kept one (issue 18), else unchanged."""
    requested = ratings.get(CORRECTION.requested_valence)
    if requested is None:
        return list(targets)
    arousal = ratings[CORRECTION.requested_arousal]
    return [dataclasses.replace(target, valence=float(v), arousal=float(a))
            for target, v, a in zip(targets, requested, arousal)]


def _render(backend, handle, targets, points=None) -> list:
    """Faces of ``targets`` (at ``points`` instead of their VA when given: corrected requests);
    backends that draw FACS prototypes (schematic) are told which prototype each named basic
    emotion shows, the others get its VA point alone."""
    if points is None:
        points = [(t.valence, t.arousal) for t in targets]
    points = [(float(v), float(a)) for v, a in points]
    if backend.renders_prototypes:
        return backend.render(handle, points, [t.expression for t in targets])
    return backend.render(handle, points)


def _render_batches(backend, handle, targets, points) -> list:
    """:func:`_render` in the backend's batches (GPU memory), in order."""
    faces: list = []
    first = 0
    while first < len(targets):
        batch = max(1, int(backend.batch_size))   # may halve after an OOM
        faces += _render(backend, handle, targets[first:first + batch],
                         points[first:first + batch])
        first += batch
    return faces


def rate_faces(raters: dict, faces, neutral, alone: list[bool], *,
               multiple: bool) -> dict[str, list]:
    """Every rater's reading of ``faces``, as stimuli.tsv columns (one list per column).

    The first rater is the primary one (``achieved_valence``/``achieved_arousal``); with
    ``multiple`` raters each also gets ``valence_<rater>``/``arousal_<rater>``, and a rater with
    a categorical head ``category_<rater>``/``category_p_<rater>``. A face marked ``alone``
    (the neutral target) is rated without the neutral reference: against its own neutral
    face it would score (0, 0) by construction.
    """
    columns: dict[str, list] = {}
    for position, (name, rater) in enumerate(raters.items()):
        details = rating_details(rater, faces, neutral)
        va = (details.va if details is not None else rater.rate(faces, neutral)).copy()
        for index, single in enumerate(alone):
            if single:
                va[index] = rater.rate([faces[index]], None)[0]
        names = rater_columns(name)
        if position == 0:
            columns["achieved_valence"] = [float(v) for v in va[:, 0]]
            columns["achieved_arousal"] = [float(a) for a in va[:, 1]]
        if multiple:
            columns[names.valence] = [float(v) for v in va[:, 0]]
            columns[names.arousal] = [float(a) for a in va[:, 1]]
        if details is not None:
            columns[names.category] = details.predicted
            columns[names.category_p] = [float(p) for p in details.probabilities.max(axis=1)]
    return columns


def _save_stimulus(out: Path, sid: str, fmt: str, face, ratings: dict[str, Any],
                   framing: Standardisation | None = None, folder: str = STIMULI_DIR
                   ) -> dict[str, Any]:
    """Write one stimulus and return its record; with ``framing``, the record has the
    low-level measures of the image as written (a JPEG's decoded pixels)."""
    data = encode_image(face.image, fmt)
    relative = stimulus_path(sid, fmt, folder)
    atomic_write_bytes(out / relative, data)
    crash_point("stimulus")
    record = {"stimulus_id": sid, "file": relative, "sha256": sha256_bytes(data),
              **ratings, "width": face.image.width, "height": face.image.height}
    record.update({k: float(v) for k, v in face.extras.items() if k in EXTRA_COLUMNS})
    record.update(build_quality(face))        # FFHQ-aligned (emostyle) faces only
    written = face.image if fmt == "png" else Image.open(io.BytesIO(data))   # its pixels
    if framing is not None:                   # low-level measures (stimgen/standardise.py)
        record.update(framing.measures(written))
    if folder == STIMULI_DIR:                 # the report's thumbnail, made here in parallel
        atomic_write_bytes(out / THUMBNAILS_DIR / thumbnail_name(record),
                           thumbnail_bytes(written))
    return record


def _png(image) -> bytes:
    return encode_image(image, "png")


def encode_image(image, fmt: str) -> bytes:
    """PNG (lossless, no timestamps, so rebuilds are byte-identical) or JPEG quality 95.

    Only pixels are written: metadata an image may carry from a source photo (EXIF with
    GPS, ICC profile, comments, text chunks) is dropped, since Pillow would copy some of it.
    """
    image = image.copy()
    image.info = {}
    buffer = io.BytesIO()
    if fmt == "png":
        image.save(buffer, format="PNG", compress_level=6)
    else:
        image.convert("RGB").save(buffer, format="JPEG", quality=95, subsampling=0)
    return buffer.getvalue()
