"""The build pipeline: protocol in, validated build folder out (stimuli, tables, bundle, report, manifest).

The orchestrator only wires the stages (plan, render, rate, validate, export), caches each
identity's finished work by the hash of its inputs and shows progress; the stages themselves
are functions in their own modules.
"""
from __future__ import annotations

import io
import json
import logging
import os
import platform
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd
import yaml

from stimgen import __version__
from stimgen.backends import create_backend, showing_progress
from stimgen.circumplex import in_angle_interval, va_to_angle
from stimgen.config import resolve_execution
from stimgen.errors import BuildError
from stimgen.executors import check_available, run_chunks, run_units, uses_gpu, visible_gpus
from stimgen.ledger import (EXPERIMENT_DIR, Ledger, experiment_inputs, protect_collected_data,
                            remove_partial_snapshots)
from stimgen.metrics import metrics_by_emotion, metrics_by_intensity, stimulus_errors
from stimgen.plan import IdentityUnit, Target, plan_units
from stimgen.protocol.execution import ExecutionSpec
from stimgen.protocol.loader import normalised_json, protocol_sha256
from stimgen.protocol.models import Protocol
from stimgen.raters import create_rater, describe_rater
from stimgen.safety import is_inside, refuse_links, spreadsheet_safe_table
from stimgen.storage import (atomic_write_bytes, atomic_write_json,
                             crash_point, disk_error, remove_leftovers, sha256_bytes,
                             sha256_file)

STATE_DIR = ".stimgen"                # build bookkeeping: lock, per-identity cache records
#: Folders a build writes into; none of them may be a link out of the build folder.
WRITTEN_FOLDERS = ("stimuli", STATE_DIR + "/identities", "experiment", "report_assets")
log = logging.getLogger("stimgen")
CACHE_SCHEMA = 1                      # bump when cached records change meaning
STIMULI_COLUMNS = [
    "stimulus_id", "file", "identity", "target_kind", "emotion", "angle", "intensity",
    "target_valence", "target_arousal", "achieved_valence", "achieved_arousal",
    "achieved_angle", "achieved_intensity", "direction_error", "magnitude_error",
    "valence_error", "arousal_error", "distance_error", "weak_region", "out_of_tolerance",
    "flags", "rater", "sha256", "width", "height",
]


@dataclass
class BuildResult:
    """What a build produced: the folder, the stimuli table and the paths of its outputs."""

    out: Path
    stimuli: pd.DataFrame
    paths: dict[str, Path]
    manifest: dict[str, Any]
    reused_identities: list[str] = field(default_factory=list)
    repairs: list[dict[str, str]] = field(default_factory=list)   # damaged files recomputed


# --------------------------------------------------------------------------------------
# Work on one identity (runs in worker processes too)
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Chunk:
    """A slice of one identity's targets; the unit a worker process runs."""

    unit: IdentityUnit
    start: int
    stop: int


#: Per-stimulus measures a backend may report besides the image (Rendered.extras); they
#: become extra columns of stimuli.tsv and figures in the report.
EXTRA_COLUMNS = ("identity_similarity", "quality_sharpness", "quality_face_score")


def render_and_rate(protocol: Protocol, chunk: Chunk, out: Path,
                    on_stimuli: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
    """Render, save and rate the stimuli of ``chunk``; returns one record per stimulus.

    Targets go to the backend in batches of ``backend.batch_size``; encoding and writing
    the images runs in background threads so that the generator is never kept waiting.
    """
    backend = create_backend(protocol)
    rater = create_rater(protocol.resolved_rater(), protocol.backend.name)
    identity = chunk.unit.identity
    handle = backend.prepare(identity)
    neutral = backend.render(handle, [(0.0, 0.0)])[0]
    targets = chunk.unit.targets[chunk.start:chunk.stop]
    batch = max(1, int(getattr(backend, "batch_size", 1)))
    records: list[dict[str, Any]] = []
    with ThreadPoolExecutor(max_workers=2) as writers:
        pending = []
        for first in range(0, len(targets), batch):
            part = targets[first:first + batch]
            faces = backend.render(handle, [(t.valence, t.arousal) for t in part])
            achieved = rater.rate(faces, neutral)
            for index, target in enumerate(part):
                if target.kind == "neutral":
                    # Against its own neutral face it would score (0, 0) by construction.
                    achieved[index] = rater.rate([faces[index]], None)[0]
            for target, face, va in zip(part, faces, achieved):
                sid = target.stimulus_id(identity.id)
                pending.append(writers.submit(_save_stimulus, out, sid, protocol.output.format,
                                              face, va))
            if on_stimuli:
                on_stimuli(len(part))
        records = [job.result() for job in pending]
    return records


def _save_stimulus(out: Path, sid: str, fmt: str, face, achieved) -> dict[str, Any]:
    data = encode_image(face.image, fmt)
    relative = f"stimuli/{sid}.{fmt}"
    atomic_write_bytes(out / relative, data)
    crash_point("stimulus")
    record = {"stimulus_id": sid, "file": relative, "sha256": sha256_bytes(data),
              "achieved_valence": float(achieved[0]), "achieved_arousal": float(achieved[1]),
              "width": face.image.width, "height": face.image.height}
    record.update({k: float(v) for k, v in face.extras.items() if k in EXTRA_COLUMNS})
    return record


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


# --------------------------------------------------------------------------------------
# Cache of finished identities
# --------------------------------------------------------------------------------------
def unit_key(protocol: Protocol, unit: IdentityUnit, backend_fingerprint: dict) -> str:
    """Hash of everything that determines an identity's stimuli and ratings."""
    payload = {
        "schema": CACHE_SCHEMA,
        "backend": backend_fingerprint,
        "rater": protocol.resolved_rater(),
        "identity": unit.identity.model_dump(mode="json", exclude={"source", "consent"}),
        "targets": [asdict(t) for t in unit.targets],
        "format": protocol.output.format,
    }
    return sha256_bytes(json.dumps(payload, sort_keys=True).encode("utf-8"))


def cached_records(out: Path, identity_id: str, key: str,
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
    """
    record_file = out / STATE_DIR / "identities" / f"{identity_id}.json"
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
    for record in records:
        path = out / record["file"]
        if not path.is_file():
            return None, {**damaged, "file": record["file"], "problem": "missing"}
        if sha256_file(path) != record["sha256"]:
            return None, {**damaged, "file": record["file"],
                          "problem": "content does not match its recorded sha256 "
                                     "(damaged or truncated)"}
    return records, None


def store_records(out: Path, identity_id: str, key: str, records: list[dict]) -> None:
    atomic_write_json(out / STATE_DIR / "identities" / f"{identity_id}.json",
                      {"key": key, "records": records})
    crash_point("identity")


# --------------------------------------------------------------------------------------
# Validation: errors and flags per stimulus
# --------------------------------------------------------------------------------------
def stimulus_table(protocol: Protocol, units: list[IdentityUnit],
                   records: dict[str, dict]) -> pd.DataFrame:
    """The stimuli.tsv table: targets, achieved VA, the five errors and the flags."""
    rows = []
    for unit in units:
        for target in unit.targets:
            sid = target.stimulus_id(unit.identity.id)
            rows.append({"identity": unit.identity.id, **_target_columns(target),
                         **records[sid]})
    table = pd.DataFrame(rows)
    errors = stimulus_errors(table["target_valence"], table["target_arousal"],
                             table["achieved_valence"], table["achieved_arousal"])
    for column, values in errors.items():
        table[column] = values
    achieved_angle, achieved_norm = va_to_angle(table["achieved_valence"].to_numpy(),
                                                table["achieved_arousal"].to_numpy())
    table["achieved_angle"] = achieved_angle
    table["achieved_intensity"] = achieved_norm
    start, end = protocol.validation.weak_region
    angles = table["angle"].to_numpy(dtype=float)
    table["weak_region"] = ~np.isnan(angles) & in_angle_interval(np.nan_to_num(angles), start, end)
    tolerance = protocol.validation.tolerance
    too_far = table["distance_error"] > tolerance.distance
    off_direction = table["direction_error"].fillna(0.0) > tolerance.direction
    table["out_of_tolerance"] = too_far | off_direction
    table["flags"] = [
        ";".join(name for name, on in (("weak_region", w), ("distance_tolerance", d),
                                       ("direction_tolerance", r)) if on)
        for w, d, r in zip(table["weak_region"], too_far, off_direction)
    ]
    table["rater"] = protocol.resolved_rater()
    extras = [c for c in EXTRA_COLUMNS if c in table.columns]
    return table[STIMULI_COLUMNS + extras]


def _target_columns(target: Target) -> dict[str, Any]:
    return {"target_kind": target.kind, "emotion": target.emotion,
            "angle": np.nan if target.angle is None else target.angle,
            "intensity": target.intensity, "target_valence": target.valence,
            "target_arousal": target.arousal}


def table_bytes(table: pd.DataFrame, sep: str) -> bytes:
    """A CSV/TSV table's file content; text cells a spreadsheet would run as formulas are
    escaped."""
    text = spreadsheet_safe_table(table).to_csv(sep=sep, index=False, float_format="%.6g",
                                                lineterminator="\n")
    return text.encode("utf-8")


def json_bytes(data: Any) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=False, allow_nan=False, default=str)
            + "\n").encode("utf-8")


# --------------------------------------------------------------------------------------
# The output folder: ownership, lock
# --------------------------------------------------------------------------------------
def prepare_output(out: Path, force: bool) -> None:
    """Create or adopt the output folder; refuse folders stimgen did not make (unless forced)."""
    if out.exists() and not out.is_dir():
        raise BuildError(f"output path {out} exists and is not a folder",
                         hint="choose another folder with -o")
    if out.is_dir() and any(out.iterdir()) and not (out / STATE_DIR).is_dir() and not force:
        raise BuildError(f"output folder {out} is not empty and was not made by stimgen",
                         hint="choose an empty or new folder with -o, or pass --force to "
                              "build into it anyway")
    try:
        (out / STATE_DIR).mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise BuildError(f"cannot create output folder {out}: {err.strerror or err}",
                         hint="check the path and your permissions") from err


@contextmanager
def build_lock(out: Path) -> Iterator[None]:
    """One build per folder at a time; a lock left by a crashed build is taken over."""
    lock = out / STATE_DIR / "lock"
    me = {"pid": os.getpid(), "host": socket.gethostname()}
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = json.loads(lock.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                holder = {}
            if holder.get("host") == me["host"] and not _alive(holder.get("pid")):
                lock.unlink(missing_ok=True)    # stale: its build was killed
                continue
            raise BuildError(
                f"another stimgen build (pid {holder.get('pid', '?')} on "
                f"{holder.get('host', '?')}) is writing into {out}",
                hint="wait for it to finish, or delete "
                     f"{lock} if you are sure no build is running") from None
        except OSError as err:
            raise BuildError(f"cannot write into {out}: {err.strerror or err}",
                             hint="check the folder's permissions and free space") from err
        with os.fdopen(fd, "w") as handle:
            json.dump(me, handle)
        break
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def _alive(pid) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --------------------------------------------------------------------------------------
# The build
# --------------------------------------------------------------------------------------
def build(protocol: Protocol, out: str | Path | None = None, *, force: bool = False,
          jobs: int | None = None, execution: ExecutionSpec | None = None,
          progress: bool = True, command: str | None = None, dry_run: bool = False,
          ) -> BuildResult:
    """Build the protocol's stimuli, tables, experiment bundle and report into ``out``.

    Parameters
    ----------
    protocol : Protocol
        From :func:`stimgen.load_protocol`.
    out : path, optional
        Output folder; default ``protocol.default_output()`` (``build/<study>/``).
    force : bool
        Build into a non-empty folder that stimgen did not create.
    jobs : int, optional
        Units run at once on this machine (overrides ``execution.jobs``); default: one
        worker per core for CPU backends, one per visible GPU for emostyle.
    execution : ExecutionSpec, optional
        Where the work runs (local processes, SLURM, submitit-local; see docs/cluster.md);
        default: :func:`stimgen.config.resolve_execution` of the protocol's
        ``execution:`` section over the user config file.
    progress : bool
        Show progress bars on stderr.
    command : str, optional
        The command line, recorded in the manifest and the report.
    dry_run : bool
        Run the same build with tiny random models (made once, never the user's weights)
        into ``build/<study>-dry-run/`` by default, to check a protocol end to end before
        spending GPU hours; the manifest and the report say so (docs/backends-emostyle.md).

    Returns
    -------
    BuildResult

    Examples
    --------
    >>> import stimgen
    >>> result = stimgen.build(stimgen.load_protocol("protocols/demo.yaml"))  # doctest: +SKIP
    >>> result.stimuli[["stimulus_id", "distance_error"]].head()  # doctest: +SKIP
    """
    if dry_run:
        return _dry_run(protocol, out, force=force, jobs=jobs, execution=execution,
                        progress=progress, command=command)
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    out = Path(out) if out is not None else protocol.default_output()
    units = plan_units(protocol)
    from stimgen.design import check_experiment
    check_experiment(protocol)                  # fails fast: an experiment that cannot be planned
    backend = create_backend(protocol)          # fails fast: missing weights, no GPU
    rater_info = describe_rater(protocol.resolved_rater(), protocol.backend.name)
    if execution is None:
        execution = resolve_execution(protocol.execution, {"jobs": jobs})
    elif jobs is not None:
        execution = execution.model_copy(update={"jobs": jobs})
    check_available(execution)                  # fails fast: no sbatch, no submitit
    if protocol.experiment is not None:         # fails fast: PsychoPy missing or broken
        from stimgen.export.psychopy_bundle import psychopy_experiment_module

        psychopy_experiment_module()
    timings["plan"] = time.perf_counter() - clock

    try:
        with showing_progress(progress):        # a backend's long steps, in workers too
            return _build_locked(protocol, out, force, execution, progress, command, units,
                                 backend, rater_info, timings)
    except OSError as err:
        translated = disk_error(err)
        if translated is None:
            raise
        raise translated from err


def _build_locked(protocol, out, force, execution, progress, command, units, backend, rater_info,
                  timings) -> BuildResult:
    """The build proper, inside the folder's lock; :func:`build` turns disk errors into
    BuildErrors. manifest.json, which marks a complete build, is removed first and written last."""
    prepare_output(out, force)
    with build_lock(out):
        refuse_links(out, WRITTEN_FOLDERS)
        ledger = Ledger.load(out)           # before the manifest goes: old folders list files there
        remove_leftovers(out)
        remove_partial_snapshots(out)
        inputs = experiment_inputs(__version__, protocol_sha256(protocol))
        protect_collected_data(ledger, inputs, force)
        ledger.experiment_inputs = inputs
        ledger.save()
        ledger.remove("manifest.json")      # not complete until written again
        clock = time.perf_counter()
        earlier = _recorded_stimuli(out)
        records, reused, repairs = _run_units(protocol, units, backend.fingerprint(), out,
                                              execution, progress)
        _remove_stale_stimuli(out, records, earlier, {u.identity.id for u in units})
        timings["render_and_rate"] = time.perf_counter() - clock

        clock = time.perf_counter()
        table = stimulus_table(protocol, units, records)
        paths = {"stimuli": out / "stimuli", "stimuli_table": out / "stimuli.tsv",
                 "metrics_by_emotion": out / "metrics_by_emotion.csv",
                 "metrics_by_intensity": out / "metrics_by_intensity.csv",
                 "protocol": out / "protocol.yaml", "manifest": out / "manifest.json"}
        ledger.write_bytes("stimuli.tsv", table_bytes(table, "\t"))
        ledger.write_bytes("metrics_by_emotion.csv", table_bytes(metrics_by_emotion(table), ","))
        ledger.write_bytes("metrics_by_intensity.csv",
                           table_bytes(metrics_by_intensity(table), ","))
        ledger.write_bytes("protocol.yaml", _protocol_bytes(protocol))
        timings["validate"] = time.perf_counter() - clock
        crash_point("tables")

        if protocol.experiment is not None:
            _stage(progress, "planning the design and writing the PsychoPy bundle")
            clock = time.perf_counter()
            paths.update(_write_experiment(protocol, out, table))
            timings["experiment"] = time.perf_counter() - clock
            crash_point("experiment")
        else:
            Ledger.load(out).remove_stale(EXPERIMENT_DIR)     # stimgen's own files only

        _stage(progress, "writing the report")
        clock = time.perf_counter()
        draft = _manifest(protocol, _written_files(out, records), table, backend.fingerprint(),
                          rater_info, timings, command, repairs,
                          getattr(backend, "model_files", []))
        from stimgen.report import write_report   # matplotlib: only where a report is made

        paths["report"] = write_report(out, command=command, manifest=draft)
        timings["report"] = time.perf_counter() - clock
        crash_point("report")

        manifest = _manifest(protocol, _written_files(out, records), table,
                             backend.fingerprint(), rater_info, timings, command, repairs,
                             getattr(backend, "model_files", []))
        Ledger.load(out).write_bytes("manifest.json", json_bytes(manifest))
    return BuildResult(out=out, stimuli=table, paths=paths, manifest=manifest,
                       reused_identities=reused, repairs=repairs)


def _dry_run(protocol: Protocol, out, **options) -> BuildResult:
    """`--dry-run`: the same build with tiny random models, into its own folder by default."""
    from stimgen.backends.emostyle.models import dry_run_weights

    out = Path(out) if out is not None else dry_run_output(protocol)
    with dry_run_weights():
        return build(protocol, out, **options)


def dry_run_output(protocol: Protocol) -> Path:
    """The default folder of a dry run: the build folder's name + ``-dry-run``."""
    real = protocol.default_output()
    return real.with_name(real.name + "-dry-run")


def _stage(progress: bool, message: str) -> None:
    if progress:
        print(f"... {message}", file=sys.stderr, flush=True)


def _write_experiment(protocol: Protocol, out: Path, table: pd.DataFrame) -> dict[str, Path]:
    """Plan the counterbalanced design and write the PsychoPy bundle into ``out/experiment``."""
    from stimgen.design import plan_design
    from stimgen.export import write_bundle

    design = plan_design(protocol.experiment, table, protocol.seed)
    written = write_bundle(out, protocol, table, design)
    return {"experiment": out / "experiment",
            **{f"experiment_{name}": path for name, path in written.items()}}


def _run_units(protocol, units, fingerprint, out, execution, progress):
    from tqdm import tqdm

    records: dict[str, dict] = {}
    reused: list[str] = []
    repairs: list[dict[str, str]] = []
    pending: list[tuple[IdentityUnit, str]] = []
    for unit in units:
        key = unit_key(protocol, unit, fingerprint)
        cached, damage = cached_records(out, unit.identity.id, key)
        if damage is not None:
            repairs.append(damage)
            log.warning("%s of identity %s: %s; recomputing that identity "
                        "(noted in manifest.json under \"repairs\")",
                        damage["file"], damage["identity"], damage["problem"])
        if cached is None:
            pending.append((unit, key))
        else:
            reused.append(unit.identity.id)
            records.update({r["stimulus_id"]: r for r in cached})
    if execution.executor != "local":
        records.update(_run_jobs(protocol, pending, out, execution, progress))
        return records, reused, repairs
    total = sum(len(unit.targets) for unit, _ in pending)
    bar = tqdm(total=total, desc="faces", unit="face", disable=not progress or total == 0,
               file=sys.stderr, leave=False)
    gpus = visible_gpus() if uses_gpu(protocol) and pending else []
    workers = _worker_count(execution.jobs, protocol, total, gpus)
    by_identity: dict[str, list[dict]] = {unit.identity.id: [] for unit, _ in pending}
    split = protocol.backend.name == "schematic"
    chunks = [chunk for unit, _ in pending for chunk in _chunks(unit, workers, split)]

    def collect(chunk: Chunk, chunk_records: list[dict]) -> None:
        by_identity[chunk.unit.identity.id].extend(chunk_records)

    try:
        run_chunks(protocol, chunks, out, workers=workers, on_result=collect,
                   on_progress=bar.update, gpus=gpus)
    finally:
        bar.close()
    for unit, key in pending:
        order = {sid: i for i, sid in enumerate(unit.stimulus_ids())}
        unit_records = sorted(by_identity[unit.identity.id], key=lambda r: order[r["stimulus_id"]])
        store_records(out, unit.identity.id, key, unit_records)
        records.update({r["stimulus_id"]: r for r in unit_records})
    return records, reused, repairs


def _worker_count(jobs: int | None, protocol: Protocol, total: int, gpus=()) -> int:
    """Local worker processes: ``jobs``, else one per visible GPU (GPU backends), else one
    per core (at most 8) for schematic builds big enough to repay starting them."""
    if jobs is not None:
        return max(1, int(jobs))
    if gpus:
        return len(gpus)
    if protocol.backend.name != "schematic" or total < 64:
        return 1
    return max(1, min(os.cpu_count() or 1, 8))


def _run_jobs(protocol, pending, out, execution, progress) -> dict[str, dict]:
    """Run the pending identities as submitit jobs and merge the records they wrote."""
    run_units(protocol, pending, out, execution, progress=progress)
    records: dict[str, dict] = {}
    for unit, key in pending:
        fresh, damage = cached_records(out, unit.identity.id, key)
        if fresh is None:
            problem = f"{damage['file']}: {damage['problem']}" if damage else "no record"
            raise BuildError(f"identity {unit.identity.id}: its job finished but left no valid "
                             f"result ({problem})",
                             hint="check that the output folder is on storage the jobs share "
                                  "with this machine, then run the same command again")
        records.update({r["stimulus_id"]: r for r in fresh})
    return records


def _chunks(unit: IdentityUnit, workers: int, split: bool = True) -> list[Chunk]:
    """Split an identity into a few slices so that several workers share the load.

    Each slice prepares the identity again, which is cheap only for schematic faces
    (``split``); a personalised generator is prepared once per identity.
    """
    n = len(unit.targets)
    parts = 1 if workers <= 1 or not split else min(n, 4)
    bounds = np.linspace(0, n, parts + 1).round().astype(int)
    return [Chunk(unit, int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def _recorded_stimuli(out: Path) -> set[Path]:
    """Every stimulus file that earlier builds into ``out`` recorded as their own."""
    files: set[Path] = set()
    for record_file in (out / STATE_DIR / "identities").glob("*.json"):
        try:
            cached = json.loads(record_file.read_text(encoding="utf-8"))
            files.update(out / r["file"] for r in cached["records"])
        except (OSError, ValueError, KeyError, TypeError):
            continue                       # a damaged record: its files are left alone
    return files


def _remove_stale_stimuli(out: Path, records: dict[str, dict], earlier: set[Path],
                          identities: set[str]) -> None:
    """Drop stimuli that an earlier build of a different protocol made in this folder.

    Only files an earlier build recorded are removed: anything else in ``stimuli/`` (say,
    a user's own file in a folder built with --force) is never touched.
    """
    keep = {out / r["file"] for r in records.values()}
    for path in earlier - keep:
        if path.is_file() and is_inside(out / "stimuli", path):
            path.unlink()
    for record_file in (out / STATE_DIR / "identities").glob("*.json"):
        if record_file.stem not in identities:
            record_file.unlink()


def _protocol_bytes(protocol: Protocol) -> bytes:
    if protocol.source_path and protocol.source_path.is_file():
        return protocol.source_path.read_bytes()
    data = json.loads(normalised_json(protocol))
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True).encode("utf-8")


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "stimgen": __version__}
    for name in ("numpy", "pandas", "PIL", "pydantic", "torch", "matplotlib", "jinja2",
                 "psychopy"):
        module = sys.modules.get(name)
        if module is None:
            try:
                module = __import__(name) if name != "torch" else None
            except ImportError:
                module = None
        if module is not None:
            versions["pillow" if name == "PIL" else name] = getattr(module, "__version__", "?")
    return versions


def _written_files(out: Path, records: dict[str, dict]) -> dict[str, str]:
    """sha256 of every file this build wrote (stimuli from their records, the rest from the
    folder's ledger); participants' data and anyone else's files are not among them."""
    files = Ledger.load(out).manifest_files()
    files.update({r["file"]: r["sha256"] for r in records.values()})
    return dict(sorted(files.items()))


def _manifest(protocol, files, table, fingerprint, rater_info, timings, command,
              repairs=(), model_files=()) -> dict:
    flagged = table["flags"] != ""
    return {
        "stimgen_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command or "",
        "protocol": {"path": str(protocol.source_path or ""),
                     "sha256": protocol_sha256(protocol),
                     "normalized": json.loads(normalised_json(protocol))},
        "seed": protocol.seed,
        "identity_seeds": {i.id: i.seed for i in protocol.identities if i.seed is not None},
        "backend": {"name": protocol.backend.name, "options": fingerprint,
                    "model_files": list(model_files)},
        # random tiny models (`--dry-run`, or make-tiny --install): every output is noise
        "dry_run": any(f.get("tiny") for f in model_files),
        "rater": {"name": rater_info.name, "description": rater_info.description,
                  "trained_against_generator": rater_info.trained_against_generator},
        "versions": _versions(),
        "files": files,
        "timings": {k: round(v, 3) for k, v in timings.items()},
        "counts": {"stimuli": int(len(table)), "passed": int((~flagged).sum()),
                   "flagged": int(flagged.sum()),
                   "out_of_tolerance": int(table["out_of_tolerance"].sum()),
                   "weak_region": int(table["weak_region"].sum())},
        "repairs": list(repairs),
        "complete": True,
    }
