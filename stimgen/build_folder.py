"""The build folder's contract: every file name and column of a build folder, the typed
readers and writers of its tables and manifest, the identity records and the build lock.

Every stage reads and writes a build folder through this module (the ledger of who wrote
what is stimgen/ledger.py); the report re-runs no stage and reads only what is here.
"""
from __future__ import annotations

import json
import logging
import os
import socket
from contextlib import contextmanager
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import pandas as pd
from filelock import FileLock, Timeout

from stimgen.facs import AU_NAMES
from stimgen.circumplex import WEAK_REGION_DEFAULT, weak_region_flagged
from stimgen.errors import BuildError
from stimgen.metrics import AGGREGATE_COLUMNS, ERROR_COLUMNS
from stimgen.safety import is_inside, spreadsheet_safe_table
from stimgen.storage import atomic_write_json, crash_point, remove_empty_folders, sha256_file

log = logging.getLogger("stimgen")

# -- file names (relative to the build folder) ------------------------------------------------
STIMULI_DIR = "stimuli"                          # one image per stimulus: <stimulus_id>.<format>
STIMULI_TSV = "stimuli.tsv"
METRICS_BY_EMOTION_CSV = "metrics_by_emotion.csv"
METRICS_BY_INTENSITY_CSV = "metrics_by_intensity.csv"
PROTOCOL_YAML = "protocol.yaml"                  # a byte copy of the protocol that was built
REPORT_HTML = "report.html"
REPORT_ASSETS_DIR = "report_assets"
EXPERIMENT_DIR = "experiment"                    # the PsychoPy bundle
DESIGN_CSV = "experiment/design.csv"
DATA_DIR = "experiment/data"                     # PsychoPy's data files: never stimgen's
PREVIOUS_DIR = "experiment/previous"             # experiments that data was collected with
MANIFEST_JSON = "manifest.json"                  # written last: marks a complete build
#: manifest.json key of a subset folder (`stimgen select`): the rule and the build it came from
SELECTION_KEY = "selection"
NORMS_TSV = "norms.tsv"                          # human norms per stimulus (stimgen norms)
NORMS_SUMMARY_JSON = "norms_summary.json"        # their reliability, participants, exclusions
STATE_DIR = ".stimgen"                           # bookkeeping, never a user's output
IDENTITY_RECORDS_DIR = ".stimgen/identities"     # <identity>.json: key + records per stimulus
#: <sha256 prefix>-<size>.jpg: each stimulus's thumbnail, made as it is saved (thumbnails.py)
THUMBNAILS_DIR = ".stimgen/thumbnails"
#: <identity>~<run>.jsonl: one line per stimulus finished while its identity is unfinished,
#: so that an interrupted build keeps every finished stimulus (see StimulusJournal)
STIMULUS_JOURNALS_DIR = ".stimgen/finished"
LEDGER_JSON = ".stimgen/files.json"              # what stimgen wrote (stimgen/ledger.py)
LOCK_FILE = ".stimgen/lock"                      # an OS lock, released when its process ends
LOCK_OWNER_JSON = ".stimgen/lock.owner"          # pid and host of the lock's holder, for messages
JOBS_DIR = ".stimgen/jobs"                       # cluster job scripts and logs (executors)
# -- standardisation and matching (stimgen/standardise.py) --
MASKS_DIR = "masks"                              # <identity>.png: oval mask, 255 = face region
UNMATCHED_DIR = ".stimgen/unmatched"             # faces before `match:`, input of the set stage
MATCHED_RECORDS_DIR = ".stimgen/matched"         # <identity>.json: the set stage's records
#: Folders where a killed build may have left temporary files (storage.remove_leftovers).
TEMPORARY_FILE_FOLDERS = (STIMULI_DIR, STATE_DIR, IDENTITY_RECORDS_DIR, UNMATCHED_DIR,
                          MATCHED_RECORDS_DIR, THUMBNAILS_DIR)
#: Copies (pixels only, at most 256 px) of the reference faces of `targets.from_images`.
REFERENCES_DIR = "references"
#: Folders a build writes into; none of them may be a link out of the build folder.
WRITTEN_FOLDERS = (STIMULI_DIR, IDENTITY_RECORDS_DIR, EXPERIMENT_DIR, REPORT_ASSETS_DIR,
                   REFERENCES_DIR, MASKS_DIR, UNMATCHED_DIR, MATCHED_RECORDS_DIR,
                   STIMULUS_JOURNALS_DIR, THUMBNAILS_DIR)

#: stimuli.tsv, in file order; the five errors are named where they are computed (metrics.py).
STIMULI_COLUMNS = (
    "stimulus_id", "file", "identity", "target_kind", "emotion", "angle", "intensity",
    "target_valence", "target_arousal", "achieved_valence", "achieved_arousal",
    "achieved_angle", "achieved_intensity", *ERROR_COLUMNS, "weak_region", "out_of_tolerance",
    "flags", "rater", "sha256", "width", "height",
)
#: Aggregate metric columns shared by both metrics tables, in file order (metrics.py).
METRIC_COLUMNS = AGGREGATE_COLUMNS
EMOTION_COLUMNS = ("emotion", "angle", "n", *METRIC_COLUMNS, "weak_region")
INTENSITY_COLUMNS = ("intensity", "n", *METRIC_COLUMNS)

#: Optional per-stimulus measures a backend may report besides the image
#: (``Rendered.extras``); they become extra columns of stimuli.tsv and figures in the report.
#: ``AU01`` ... ``AU43``: the FACS action-unit intensities that drew a schematic face.
EXTRA_COLUMNS = ("identity_similarity", "quality_sharpness", "quality_face_score") + AU_NAMES
IDENTITY_SIMILARITY_COLUMN = "identity_similarity"
#: Low-level image measures of every stimulus (stimgen/standardise.py: luminance in [0, 1]
#: from PIL's "L" conversion, over the face mask when there is one), after the extras.
LOW_LEVEL_COLUMNS = ("mean_luminance", "rms_contrast", "spectral_slope")
#: With `output.match`: each stimulus's SSIM to its unmatched self over the face region (what
#: matching cost it; stimgen/standardise.py), after the low-level columns.
MATCH_SSIM_COLUMN = "ssim_unmatched"
QUALITY_PREFIX = "quality_"


@dataclass(frozen=True)
class CorrectionColumns:
    """stimuli.tsv columns of a build with closed-loop correction (``validation.correction``)."""

    requested_valence: str = "requested_valence"   # what the backend was asked for, kept round
    requested_arousal: str = "requested_arousal"
    rounds: str = "correction_rounds"              # re-renders made after the first one
    steering_before: str = "steering_error_before" # steering rater's VA distance, first round
    steering_after: str = "steering_error_after"   # ... and of the kept round
    held_out_before: str = "held_out_error_before" # the judge's, first round (after: distance_error)


CORRECTION = CorrectionColumns()
#: In file order, after the per-rater and backend columns; the last only with a judge.
CORRECTION_COLUMNS = astuple(CORRECTION)
#: Flags of stimuli.tsv's ``flags`` column (";"-separated), in the order they are written:
#: a target in the weak region (where it flags on the backend), an achieved expression
#: beyond the distance or the direction tolerance, raters that disagree by more than the
#: distance tolerance, and a clip that flickers (:data:`FLICKER_FLAG`).
WEAK_REGION_FLAG = "weak_region"
DISTANCE_FLAG = "distance_tolerance"
DIRECTION_FLAG = "direction_tolerance"
RATERS_DISAGREE_FLAG = "raters_disagree"

# -- dynamic stimuli (output.dynamic; stimgen/dynamic.py) --------------------------------------
#: stimuli.tsv column: the stimulus's video, ``stimuli/<stimulus_id>.mp4``.
VIDEO_COLUMN = "video"
VIDEO_SHA256_COLUMN = "video_sha256"
#: Landmark jitter of the onset (fraction of the inter-ocular distance) and the lowest
#: identity similarity of any frame (emostyle); see docs/outputs.md.
CLIP_JITTER_COLUMN = "clip_jitter"
CLIP_IDENTITY_COLUMN = "clip_identity_min"
DYNAMIC_COLUMNS = (VIDEO_COLUMN, VIDEO_SHA256_COLUMN, CLIP_JITTER_COLUMN, CLIP_IDENTITY_COLUMN)
#: Onset frames as PNG (``output.dynamic.png_frames``): ``stimuli/frames/<id>/001.png`` ...
FRAMES_DIR = "stimuli/frames"
#: Identity-record key (not a column) holding the frames' relative paths and sha256.
FRAME_FILES_KEY = "frame_files"
#: Flag of a clip whose landmark jitter exceeds ``output.dynamic.flicker_threshold``.
FLICKER_FLAG = "flicker"


def stimulus_path(stimulus_id: str, extension: str, folder: str = STIMULI_DIR) -> str:
    """Where a stimulus's image (or clip) lies in a build folder, relative to it: the one place
    that names it.

    >>> stimulus_path("id01_happy_i100", "png")
    'stimuli/id01_happy_i100.png'
    """
    return f"{folder}/{stimulus_id}.{extension}"


def record_files(record: dict) -> dict[str, str]:
    """Every file one stimulus record lists, as {build-relative path: sha256}: the image,
    and with ``output.dynamic`` its video and PNG frames.

    >>> record_files({"file": "stimuli/a.png", "sha256": "1", "video": "stimuli/a.mp4",
    ...               "video_sha256": "2"})
    {'stimuli/a.png': '1', 'stimuli/a.mp4': '2'}
    """
    files = {str(record["file"]): str(record["sha256"])}
    if record.get(VIDEO_COLUMN):
        files[str(record[VIDEO_COLUMN])] = str(record[VIDEO_SHA256_COLUMN])
    files.update({str(k): str(v) for k, v in (record.get(FRAME_FILES_KEY) or {}).items()})
    return files


def stimulus_frames(files: dict[str, str], stimulus_id: str) -> dict[str, str]:
    """The PNG onset frames of one stimulus among a manifest's ``files``
    ({build-relative path: sha256}): those under ``stimuli/frames/<stimulus_id>/``.

    >>> stimulus_frames({"stimuli/frames/a/001.png": "1", "stimuli/frames/ab/001.png": "2",
    ...                  "stimuli/a.png": "3"}, "a")
    {'stimuli/frames/a/001.png': '1'}
    """
    folder = f"{FRAMES_DIR}/{stimulus_id}/"
    return {str(path): str(digest) for path, digest in sorted(files.items())
            if str(path).startswith(folder)}


@dataclass(frozen=True)
class RaterColumns:
    """The stimuli.tsv columns of one rater in a build with several (see :func:`rater_columns`)."""

    valence: str
    arousal: str
    category: str           # raters with a categorical head only (hsemotion)
    category_p: str         # probability of that category


def rater_columns(rater: str) -> RaterColumns:
    """Per-rater columns of stimuli.tsv, beside the primary rater's ``achieved_*``.

    >>> rater_columns("hsemotion").valence, rater_columns("hsemotion").category
    ('valence_hsemotion', 'category_hsemotion')
    """
    return RaterColumns(f"valence_{rater}", f"arousal_{rater}", f"category_{rater}",
                        f"category_p_{rater}")


#: Text columns of stimuli.tsv (an id like ``01`` stays text; so does the emotion "NA").
STIMULI_TEXT = ("emotion", "stimulus_id", "file", "identity", "target_kind", "flags", "rater",
                "sha256", "model_rater", "most_chosen_label", VIDEO_COLUMN, VIDEO_SHA256_COLUMN,
                "image_sha256")                  # norms.tsv NORMS_IMAGE_SHA256
BOOLEAN_COLUMNS = ("weak_region", "out_of_tolerance")
CACHE_SCHEMA = 1                                 # bump when identity records change meaning

DEFAULT_TOLERANCE = {"distance": None, "direction": None}

#: norms.tsv, in file order (``stimgen norms``): means rescaled to [-1, 1], SD with ddof=1,
#: t-based 95 % CI; label columns only when labels were collected, intensity columns only when
#: intensity was rated (raw scale values), model columns for the build's rater.
NORMS_COLUMNS = (
    "stimulus_id", "identity", "emotion", "intensity", "target_valence", "target_arousal",
    "n_raters", "valence_mean", "valence_sd", "valence_ci_low", "valence_ci_high",
    "arousal_mean", "arousal_sd", "arousal_ci_low", "arousal_ci_high", "distance_to_target",
    "model_rater", "model_valence", "model_arousal", "distance_to_model",
)
NORMS_LABEL_COLUMNS = ("hit_rate", "unbiased_hit_rate", "most_chosen_label")
#: norms.tsv column after NORMS_COLUMNS: the sha256 (stimuli.tsv ``sha256``) of the image that
#: was rated. A rebuild that redraws a stimulus changes its sha256, and its norms stop applying;
#: norms.tsv files written before this column existed cannot be checked.
NORMS_IMAGE_SHA256 = "image_sha256"
NORMS_INTENSITY_COLUMNS = ("rated_intensity_mean", "rated_intensity_sd")


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
    def weak_region_flagged(self) -> bool:
        """Whether this build flagged weak-region targets (protocol ``flag_weak_region``)."""
        setting = (self.protocol.get("validation") or {}).get("flag_weak_region", "auto")
        backend = str((self.manifest.get("backend") or {}).get("name") or "")
        return weak_region_flagged(str(setting), backend)

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
    for column in table.columns:
        if column in BOOLEAN_COLUMNS:
            table[column] = table[column].map(as_bool)
        elif column not in STIMULI_TEXT and (column in columns or _looks_numeric(table[column])):
            table[column] = pd.to_numeric(table[column], errors="coerce")
    return table


def read_stimuli(path: Path) -> pd.DataFrame:
    """``stimuli.tsv`` with ``flags`` split into a tuple per stimulus (column ``flag_list``)."""
    stimuli = read_table(path, STIMULI_COLUMNS, sep="\t")
    stimuli["flag_list"] = stimuli["flags"].map(
        lambda text: tuple(f.strip() for f in text.split(";") if f.strip()))
    return stimuli


#: design.csv's yes/no columns (written 1/0 for PsychoPy), read back as booleans.
DESIGN_FLAG_COLUMNS = ("is_practice", "is_catch")


def read_design(path: Path) -> pd.DataFrame | None:
    """``experiment/design.csv``, or None when there is no experiment bundle: text columns,
    but the yes/no columns (:data:`DESIGN_FLAG_COLUMNS`) as booleans (:func:`as_bool`)."""
    if not path.is_file():
        return None
    try:
        design = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as error:
        raise BuildFolderError(f"{path}: cannot be parsed ({error})") from None
    for column in DESIGN_FLAG_COLUMNS:
        if column in design:
            design[column] = design[column].map(as_bool).astype(bool)
    return design


def read_norms(root: Path) -> tuple[pd.DataFrame, dict] | None:
    """``norms.tsv`` and ``norms_summary.json`` of a build folder, or None before
    ``stimgen norms`` ran (or when either is unreadable: the report then omits them)."""
    tsv, summary = Path(root) / NORMS_TSV, Path(root) / NORMS_SUMMARY_JSON
    if not tsv.is_file() or not summary.is_file():
        return None
    try:
        table = read_table(tsv, NORMS_COLUMNS, sep="\t")
        return table, json.loads(summary.read_text(encoding="utf-8"))
    except (BuildFolderError, OSError, ValueError) as error:
        log.warning("%s: not used in the report (%s)", NORMS_TSV, error)
        return None


def _looks_numeric(column: pd.Series) -> bool:
    filled = column[column != ""]
    return len(filled) > 0 and pd.to_numeric(filled, errors="coerce").notna().all()


# -- cells and tables ------------------------------------------------------------------------
def as_bool(cell: Any) -> bool:
    """A table cell read back as a boolean: how stimgen writes them (``True``/``False`` in
    stimuli.tsv, ``1``/``0`` in experiment tables) and how spreadsheets save them.

    >>> [as_bool(v) for v in (True, "true", "TRUE", 1, "1", "1.0", "yes", 0, "0", "False", "")]
    [True, True, True, True, True, True, True, False, False, False, False]
    """
    if isinstance(cell, str):
        return cell.strip().lower() in ("true", "1", "1.0", "yes")
    try:
        return bool(cell) and not pd.isna(cell)
    except (TypeError, ValueError):
        return False


def table_bytes(table: pd.DataFrame, sep: str) -> bytes:
    """A table's file content as stimgen writes CSV/TSV: ``\\n`` line ends, 6 significant
    digits, text a spreadsheet would run as a formula escaped."""
    text = spreadsheet_safe_table(table).to_csv(sep=sep, index=False, float_format="%.6g",
                                                lineterminator="\n")
    return text.encode("utf-8")


def json_bytes(data: Any) -> bytes:
    """manifest.json and the other JSON files of a build folder, as bytes."""
    return (json.dumps(data, indent=2, sort_keys=False, allow_nan=False, default=str)
            + "\n").encode("utf-8")


# -- identity records: the cache of finished identities ---------------------------------------
def identity_record_path(out: Path, identity_id: str, folder: str = IDENTITY_RECORDS_DIR
                         ) -> Path:
    return Path(out) / folder / f"{identity_id}.json"


def cached_records(out: Path, identity_id: str, key: str, folder: str = IDENTITY_RECORDS_DIR,
                   ) -> tuple[list[dict] | None, dict[str, str] | None]:
    """The identity's records from an earlier run, if its key matches and every file checks out.

    Returns
    -------
    records : list of dict or None
        None when the identity must be (re)computed.
    damage : dict or None
        What was found damaged (``identity``, ``file``, ``problem``): a record or stimulus
        that is unreadable, missing or does not match its sha256. None when there is simply
        nothing to reuse (first build, or the inputs changed).

    ``folder``: where the records live (the set stage of `match:` keeps its own).
    """
    record_file = identity_record_path(out, identity_id, folder)
    if not record_file.is_file():
        return None, None
    damaged = {"identity": identity_id, "file": record_file.relative_to(out).as_posix()}
    try:
        cached = json.loads(record_file.read_text(encoding="utf-8"))
        if not isinstance(cached.get("key"), str):
            raise ValueError("no key")
        if cached.get("key") != key:
            return None, None
        records = [dict(r, file=str(r["file"]), sha256=str(r["sha256"]))
                   for r in cached["records"]]
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None, {**damaged, "problem": "cache record unreadable or truncated"}
    for relative, digest in (item for record in records
                             for item in record_files(record).items()):
        path = out / relative
        if not path.is_file():
            return None, {**damaged, "file": relative, "problem": "missing"}
        if sha256_file(path) != digest:
            return None, {**damaged, "file": relative,
                          "problem": "content does not match its recorded sha256 "
                                     "(damaged or truncated)"}
    return records, None


def store_records(out: Path, identity_id: str, key: str, records: list[dict],
                  folder: str = IDENTITY_RECORDS_DIR) -> None:
    """Record an identity as finished: its cache key and one record per stimulus."""
    atomic_write_json(identity_record_path(out, identity_id, folder),
                      {"key": key, "records": records})
    crash_point("identity")


# -- stimulus journals: the finished stimuli of unfinished identities ---------------------------
class StimulusJournal:
    """Where one run of part of an identity records each stimulus as soon as its files are
    written, so that a build stopped half-way (Ctrl-C, SIGTERM, kill -9, a preempted job)
    keeps every finished stimulus, not only finished identities.

    One file per run (``.stimgen/finished/<identity>~<run>.jsonl``), one JSON line per
    stimulus: the identity's cache key and the stimulus's record, appended and flushed with
    one ``write`` each. A line is written only after the stimulus's files are in place, so a
    kill can only cut the last line short, and a short line is skipped when read
    (:func:`journaled_records`). Once the identity is stored whole (:func:`store_records`),
    :func:`clear_journals` removes its journals.
    """

    def __init__(self, out: Path, identity_id: str, key: str):
        self.key = key
        self.path = Path(out) / STIMULUS_JOURNALS_DIR / \
            f"{identity_id}{_JOURNAL_SEPARATOR}{os.getpid()}-{os.urandom(4).hex()}.jsonl"
        self._handle = None

    def add(self, record: dict) -> None:
        """Record one finished stimulus (its files must already be written)."""
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = open(self.path, "a", encoding="utf-8")
        line = json.dumps({"key": self.key, "record": record}, allow_nan=False, default=str)
        self._handle.write(line + "\n")
        self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


_JOURNAL_SEPARATOR = "~"            # identity ids hold letters, digits, "_" and "-" only


def _journal_files(out: Path, identity_id: str | None = None) -> list[Path]:
    folder = Path(out) / STIMULUS_JOURNALS_DIR
    if folder.is_symlink() or not folder.is_dir():
        return []
    pattern = f"{identity_id}{_JOURNAL_SEPARATOR}*.jsonl" if identity_id else "*.jsonl"
    return sorted(path for path in folder.glob(pattern) if path.is_file()
                  and not path.is_symlink())


def _journal_lines(path: Path) -> Iterator[tuple[str, dict]]:
    """(key, record) of every whole line of one journal; a line cut short is skipped."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return
    for line in text.splitlines():
        try:
            entry = json.loads(line)
            record = entry["record"]
            record = dict(record, file=str(record["file"]), sha256=str(record["sha256"]),
                          stimulus_id=str(record["stimulus_id"]))
        except (ValueError, TypeError, KeyError):
            continue
        yield str(entry.get("key")), record


def journaled_records(out: Path, identity_id: str, key: str) -> dict[str, dict]:
    """The stimuli of identity ``identity_id`` that earlier runs finished with cache key
    ``key``, by stimulus id: only those whose files are all in place with the recorded
    sha256 (a file deleted or changed since is simply made again)."""
    found: dict[str, dict] = {}
    for path in _journal_files(out, identity_id):
        for line_key, record in _journal_lines(path):
            if line_key == key:
                found[record["stimulus_id"]] = record
    return {sid: record for sid, record in found.items()
            if all((Path(out) / relative).is_file()
                   and sha256_file(Path(out) / relative) == digest
                   for relative, digest in record_files(record).items())}


def remove_stale_thumbnails(out: Path, keep: Iterable[str]) -> None:
    """Remove the thumbnails in ``.stimgen/thumbnails/`` whose names are not in ``keep``
    (those of stimuli that a changed protocol no longer makes, or that were redrawn)."""
    folder = Path(out) / THUMBNAILS_DIR
    if folder.is_symlink() or not folder.is_dir():
        return
    keep = set(keep)
    for path in folder.iterdir():
        if path.is_file() and not path.is_symlink() and path.name not in keep:
            path.unlink()


def clear_journals(out: Path, identity_id: str | None = None) -> None:
    """Remove the stimulus journals of ``identity_id`` (all journals when None)."""
    for path in _journal_files(out, identity_id):
        path.unlink(missing_ok=True)
    remove_empty_folders(Path(out) / STIMULUS_JOURNALS_DIR, Path(out) / STATE_DIR)


def supersede_record(out: Path, identity_id: str) -> None:
    """Mark an identity's record as no longer matching any protocol, before its stimuli are
    redrawn for a new one: a build killed half-way then leaves a record that nothing reuses
    (so it is not mistaken for damage), and that still lists the files for clean-up."""
    path = identity_record_path(out, identity_id)
    try:
        cached = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if isinstance(cached, dict) and cached.get("key") != SUPERSEDED:
        atomic_write_json(path, {**cached, "key": SUPERSEDED})


SUPERSEDED = "superseded"   # the key of a record whose identity is being redrawn


def recorded_stimuli(out: Path) -> dict[Path, str]:
    """Every stimulus file that earlier builds into ``out`` recorded as their own, with the
    sha256 they recorded."""
    files: dict[Path, str] = {}
    records = [*(Path(out) / IDENTITY_RECORDS_DIR).glob("*.json"),
               *(Path(out) / MATCHED_RECORDS_DIR).glob("*.json")]     # `match:` builds
    for record_file in records:
        try:
            cached = json.loads(record_file.read_text(encoding="utf-8"))
            files.update({out / path: digest for r in cached["records"]
                          for path, digest in record_files(r).items()})
        except (OSError, ValueError, KeyError, TypeError):
            continue                       # a damaged record: its files are left alone
    for journal in _journal_files(out):    # stimuli of identities a stopped build left unfinished
        files.update({out / path: digest for _, r in _journal_lines(journal)
                      for path, digest in record_files(r).items()})
    return files


def remove_stale_stimuli(out: Path, records: Iterable[dict], earlier: dict[Path, str],
                         identities: set[str], matched: bool = True) -> None:
    """Drop stimuli that an earlier build of a different protocol made in this folder, and
    the set stage's state (``.stimgen/unmatched/``, ``.stimgen/matched/``) it no longer needs.

    ``records``: every record of this build (the units' and, with `match:`, the set stage's);
    ``matched``: whether this build matched (`match:` other than none).

    Only files an earlier build recorded, and that still hold what it recorded, are removed:
    anything else in ``stimuli/`` (a user's own file in a folder built with --force, an image
    retouched by hand) is never touched. Folders such as ``stimuli/frames/<id>/`` that this
    leaves empty go too; a folder that still holds anything stays.
    """
    keep = {out / path for r in records for path in record_files(r)}
    places = [out / STIMULI_DIR, out / UNMATCHED_DIR]
    for path, digest in earlier.items():
        place = next((p for p in places if is_inside(p, path)), None)
        if path in keep or path.is_symlink() or not path.is_file() or place is None:
            continue
        if sha256_file(path) == digest:
            path.unlink()
            remove_empty_folders(path.parent, place)
        else:
            log.warning("%s was changed after stimgen wrote it; it is no longer part of this "
                        "build and is left as it is", path.relative_to(out).as_posix())
    for record_file in (Path(out) / IDENTITY_RECORDS_DIR).glob("*.json"):
        if record_file.stem not in identities:
            record_file.unlink()
    for journal in _journal_files(out):
        if journal.name.split(_JOURNAL_SEPARATOR)[0] not in identities:
            journal.unlink()
    remove_empty_folders(Path(out) / STIMULUS_JOURNALS_DIR, Path(out) / STATE_DIR)
    for record_file in (Path(out) / MATCHED_RECORDS_DIR).glob("*.json"):
        if (record_file.stem not in identities or not matched) and _is_record(record_file):
            record_file.unlink()
    if not matched:     # `match:` turned off: its state folders go once nothing else is there
        for folder in (UNMATCHED_DIR, MATCHED_RECORDS_DIR):
            remove_empty_folders(out / folder, out / STATE_DIR)


def _is_record(path: Path) -> bool:
    """Whether ``path`` holds records as :func:`store_records` writes them."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and {"key", "records"} <= set(data)


def frame_folders(out: Path) -> tuple[str, ...]:
    """The ``stimuli/frames/<id>/`` folders now in ``out`` (none inside a link), for
    :func:`stimgen.storage.remove_leftovers`."""
    frames = Path(out) / FRAMES_DIR
    if frames.is_symlink() or not frames.is_dir():
        return ()
    return tuple(f"{FRAMES_DIR}/{entry.name}" for entry in sorted(frames.iterdir())
                 if entry.is_dir() and not entry.is_symlink())


# -- the folder and its lock -------------------------------------------------------------------
def prepare_output(out: Path, force: bool) -> None:
    """Create or adopt the output folder; refuse folders stimgen did not make (unless forced)."""
    if out.exists() and not out.is_dir():
        raise BuildError(f"output path {out} exists and is not a folder",
                         hint="choose another folder with -o")
    if out.is_dir() and any(out.iterdir()) and not (out / STATE_DIR).is_dir() and not force:
        raise BuildError(f"output folder {out} is not empty and was not made by stimgen",
                         hint="choose an empty or new folder with -o, or pass --force to "
                              "build into it anyway")
    if _is_subset(out):
        raise BuildError(f"output folder {out} is a subset made by `stimgen select`; a build "
                         f"would draw the whole stimulus set into it",
                         hint="build into another folder with -o (a subset is remade by running "
                              "`stimgen select` on its build again)")
    try:
        (out / STATE_DIR).mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise BuildError(f"cannot create output folder {out}: {err.strerror or err}",
                         hint="check the path and your permissions") from err


def _is_subset(out: Path) -> bool:
    """Whether ``out`` holds a subset written by `stimgen select` (its manifest names the rule)."""
    try:
        manifest = json.loads((out / MANIFEST_JSON).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(manifest, dict) and SELECTION_KEY in manifest


@contextmanager
def build_lock(out: Path) -> Iterator[None]:
    """One build per folder at a time.

    The lock is the operating system's (``filelock``): the kernel releases it when the
    process ends, however it ends, so a crashed build never leaves the folder locked. Who
    holds it (pid, host) is noted beside it only to name them in the message.
    """
    lock = FileLock(str(Path(out) / LOCK_FILE), is_singleton=False)
    owner = Path(out) / LOCK_OWNER_JSON
    try:
        lock.acquire(timeout=0)
    except Timeout:
        try:
            holder = json.loads(owner.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            holder = {}
        raise BuildError(
            f"another stimgen build (pid {holder.get('pid', '?')} on "
            f"{holder.get('host', '?')}) is writing into {out}",
            hint="wait for it to finish (a build that crashed releases the folder by "
                 "itself)") from None
    except OSError as err:
        raise BuildError(f"cannot write into {out}: {err.strerror or err}",
                         hint="check the folder's permissions and free space") from err
    try:
        atomic_write_json(owner, {"pid": os.getpid(), "host": socket.gethostname()})
        yield
    finally:
        owner.unlink(missing_ok=True)
        lock.release()


def lock_is_free(out: Path) -> bool:
    """Whether no build holds the folder's lock now (for tests and status messages)."""
    lock = FileLock(str(Path(out) / LOCK_FILE), is_singleton=False)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return False
    lock.release()
    return True
