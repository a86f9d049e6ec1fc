"""The build pipeline: protocol in, validated build folder out (stimuli, tables, bundle, report, manifest).

The orchestrator only wires the stages (plan, render, rate, validate, export), caches each
identity's finished work by the hash of its inputs and shows progress; the stages themselves
are functions in their own modules.
"""
from __future__ import annotations

import json
import logging
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from stimgen.version import __version__
from stimgen.backends import create_backend, showing_progress
from stimgen.build_folder import (CACHE_SCHEMA, FRAMES_DIR, MANIFEST_JSON, REFERENCES_DIR,
                                  STIMULI_DIR, TEMPORARY_FILE_FOLDERS, WRITTEN_FOLDERS,
                                  build_lock, cached_records, clear_journals, frame_folders,
                                  journaled_records, prepare_output, recorded_stimuli,
                                  record_files, remove_stale_stimuli, supersede_record,
                                  table_bytes)
from stimgen.config import resolve_execution
from stimgen.dynamic import unmeasured_flicker
from stimgen.errors import BuildError
from stimgen.executors import (check_available, cheap_identities, render_units, run_units,
                               uses_gpu, visible_gpus)
from stimgen.interrupt import stopping_on_signals
from stimgen.preflight import check_photos, missing_packages, photo_error
from stimgen.finish import FinishedFolder, assemble_manifest, finish
from stimgen.ledger import (Ledger, experiment_inputs, protect_collected_data,
                            remove_partial_snapshots)
from stimgen.plan import (IdentityUnit, bundle_spec, check_spec, plan_units, rating_of,
                          reference_targets, render_spec, resolve_raters)
from stimgen.protocol.execution import ExecutionSpec
from stimgen.protocol.loader import normalised_json, protocol_sha256
from stimgen.protocol.models import Protocol
from stimgen.raters import describe_rater
from stimgen.raters.references import reference_copy
from stimgen.raters.selection import rater_models, rater_versions
from stimgen.standardise import standardise_key
from stimgen.safety import refuse_links
from stimgen.storage import (disk_error, remove_empty_folders, remove_leftovers,
                             sha256_bytes, sha256_file)
from stimgen.thumbnails import thumbnail_name
from stimgen.validate import stimulus_table

log = logging.getLogger("stimgen")


@dataclass
class BuildResult:
    """What a build produced: the folder, the stimuli table and the paths of its outputs."""

    out: Path
    stimuli: pd.DataFrame
    paths: dict[str, Path]
    manifest: dict[str, Any]
    reused_identities: list[str] = field(default_factory=list)
    repairs: list[dict[str, str]] = field(default_factory=list)   # damaged files recomputed
    #: stimuli an interrupted earlier run finished, of identities it left unfinished
    kept_stimuli: int = 0


# --------------------------------------------------------------------------------------
# Cache of finished identities
# --------------------------------------------------------------------------------------
def unit_key(protocol: Protocol, unit: IdentityUnit, backend_fingerprint: dict) -> str:
    """Hash of everything that determines an identity's stimuli and ratings.

    A photo or latent counts by its content, not its path: replacing ``p01.jpg`` in place
    makes its identity new work.
    """
    identity = unit.identity
    rating = rating_of(protocol)
    files = {field: sha256_file(protocol.resolve(getattr(identity, field)))
             for field in ("image", "latent") if getattr(identity, field) is not None
             and protocol.resolve(getattr(identity, field)).is_file()}
    payload = {
        "schema": CACHE_SCHEMA,
        "backend": backend_fingerprint,
        # one rater keeps the key of builds made before several raters existed
        "rater": (rating.primary if not protocol.validation.also else list(rating.names)),
        # a refitted rater or other weights read the same faces differently
        "rater_versions": rater_versions(rating.names),
        "identity": identity.model_dump(mode="json", exclude={"source", "consent"}),
        "identity_files": files,
        "targets": [asdict(t) for t in unit.targets],
        "format": protocol.output.format,
        "standardise": standardise_key(protocol.output),      # issue 17
    }
    if protocol.output.dynamic is not None:     # issue 19: clips (the flag threshold is not output)
        payload["dynamic"] = protocol.output.dynamic.model_dump(
            mode="json", exclude={"flicker_threshold"})
    if protocol.validation.correction is not None:    # changes the stimuli; absent: old keys
        payload["correction"] = protocol.validation.correction.model_dump(mode="json")
    return sha256_bytes(json.dumps(payload, sort_keys=True).encode("utf-8"))


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

    Stopping: SIGINT (Ctrl-C) and SIGTERM raise :class:`stimgen.interrupt.StopRequested` (a
    ``KeyboardInterrupt``) within about a second, unless the program installed its own
    handlers; worker processes and jobs are stopped, and every stimulus finished so far is
    kept for the next run (docs/reliability.md).
    """
    with stopping_on_signals():
        return _build(protocol, out, force=force, jobs=jobs, execution=execution,
                      progress=progress, command=command, dry_run=dry_run)


def _build(protocol: Protocol, out, *, force, jobs, execution, progress, command, dry_run
           ) -> BuildResult:
    for warning in protocol.warnings:           # an emotion word with two meanings, and so on
        log.warning(warning.render(str(protocol.source_path) if protocol.source_path else None))
    if dry_run:
        return _dry_run(protocol, out, force=force, jobs=jobs, execution=execution,
                        progress=progress, command=command)
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    out = Path(out) if out is not None else protocol.default_output()
    units = plan_units(protocol)
    from stimgen.protocol.loader import check_experiment
    check_experiment(protocol)                  # fails fast: an experiment that cannot be planned
    flicker = unmeasured_flicker(protocol.output.dynamic)
    if flicker is not None:                     # onsets too short for the flicker check
        log.warning(flicker.render(str(protocol.source_path) if protocol.source_path else None))
    protocol_sha = protocol_sha256(protocol)   # of the protocol as written, before `auto` resolves
    protocol, raters = resolve_raters(protocol)  # `auto` made concrete, once, for every worker
    spec = render_spec(protocol)                # what drawing needs, in workers and jobs too
    backend = create_backend(spec)              # fails fast: missing weights, no GPU
    from stimgen.weights import require_weights

    require_weights(rater_models(raters.names))  # fails fast: a rater's weights missing
    missing = missing_packages(protocol, raters.names)   # fails fast: PsychoPy, face-alignment...
    if missing is not None:
        raise missing
    photos = check_photos(protocol, references=False, detect=False)   # every identity photo
    if photos.problems:                         # (references are read first thing below)
        raise photo_error(protocol, photos.problems)
    rater_info = [describe_rater(name, protocol.backend.name) for name in raters.names]
    for note in raters.notes:
        _stage(progress, note)
    if protocol.targets.from_images:
        _stage(progress, "rating the reference faces of targets.from_images")
        protocol, references = reference_targets(protocol)   # their VA become point targets
        units = plan_units(protocol)
        check_experiment(protocol)
    else:
        references = []
    if execution is None:
        execution = resolve_execution(protocol.execution, {"jobs": jobs})
    elif jobs is not None:
        execution = execution.model_copy(update={"jobs": jobs})
    check_available(execution)                  # fails fast: no sbatch, no submitit
    timings["plan"] = time.perf_counter() - clock

    try:
        with showing_progress(progress):        # a backend's long steps, in workers too
            return _build_locked(protocol, protocol_sha, out, force, execution, progress,
                                 command, units, backend, spec, rater_info, timings,
                                 references)
    except OSError as err:
        translated = disk_error(err)
        if translated is None:
            raise
        raise translated from err


def _build_locked(protocol, protocol_sha, out, force, execution, progress, command, units,
                  backend, spec, rater_info, timings, references=()) -> BuildResult:
    """The build proper, inside the folder's lock; :func:`build` turns disk errors into
    BuildErrors. manifest.json, which marks a complete build, is removed first and written last."""
    prepare_output(out, force)
    with build_lock(out):
        refuse_links(out, WRITTEN_FOLDERS)
        ledger = Ledger.load(out)           # before the manifest goes: old folders list files there
        _remove_leftovers(out)
        remove_partial_snapshots(out)
        fingerprint = backend.fingerprint()
        keys = {unit.identity.id: unit_key(protocol, unit, fingerprint) for unit in units}
        inputs = experiment_inputs(__version__, protocol_sha, keys)
        protect_collected_data(ledger, inputs, force)      # before anything is redrawn
        ledger.remove(MANIFEST_JSON)        # not complete until written again
        clock = time.perf_counter()
        earlier = recorded_stimuli(out)
        records, reused, repairs, kept = _run_units(protocol, spec, units, keys, out, execution,
                                                    progress)
        timings["render_and_rate"] = time.perf_counter() - clock
        unit_records = list(records.values())      # with `match:`, its inputs
        records = _standardise_set(spec, units, keys, records, out, ledger, timings,
                                   progress, execution)
        remove_stale_stimuli(out, [*unit_records, *records.values()], earlier,
                             {u.identity.id for u in units},
                             matched=protocol.output.match != "none")

        clock = time.perf_counter()
        table = stimulus_table(check_spec(protocol), rating_of(protocol), units, records)
        from stimgen.norms.current import warn_stale_norms   # a rebuild may redraw rated faces
        warn_stale_norms(out, table)
        references_faces = [dict(r, image=f"{REFERENCES_DIR}/{r['label']}.png")
                            for r in references]
        finished = FinishedFolder(
            table=table, stimuli_tsv=table_bytes(table, "\t"),
            protocol_yaml=protocol_bytes(protocol),
            references={r["image"]: reference_copy(protocol.resolve(r["source"]))
                        for r in references_faces},
            experiment_inputs=inputs, experiment=bundle_spec(protocol),
            manifest=assemble_manifest(
                describe_build(protocol, protocol_sha, fingerprint, rater_info,
                               backend.model_files),
                table, command=command, reference_faces=references_faces, repairs=repairs),
            stimulus_files={path: digest for r in records.values()
                            for path, digest in record_files(r).items()},
            thumbnails={thumbnail_name(r) for r in records.values()})
        timings["validate"] = time.perf_counter() - clock
        paths = finish(out, finished, command=command, timings=timings, progress=progress)
        manifest = finished.manifest
    return BuildResult(out=out, stimuli=table, paths=paths, manifest=manifest,
                       reused_identities=reused, repairs=repairs, kept_stimuli=kept)


def _remove_leftovers(out: Path) -> None:
    """Temporary files a killed build left: at the top of the build folder's own folders
    and in each clip's ``stimuli/frames/<id>/`` (a frame folder left empty goes too)."""
    for path in remove_leftovers(out, (*TEMPORARY_FILE_FOLDERS, *frame_folders(out))):
        if path.parent.parent == out / FRAMES_DIR:
            remove_empty_folders(path.parent, out / STIMULI_DIR)


#: Backends that draw without downloaded weights: a dry run of them would be the real build.
BACKENDS_WITHOUT_WEIGHTS = ("schematic",)


def _dry_run(protocol: Protocol, out, **options) -> BuildResult:
    """`--dry-run`: the same build with tiny random models, into its own folder by default."""
    _refuse_dry_run_without_weights(protocol)
    out = Path(out) if out is not None else dry_run_output(protocol)
    from stimgen.backends.emostyle.models import dry_run_weights

    with dry_run_weights():
        return build(protocol, out, **options)


def dry_run_output(protocol: Protocol) -> Path:
    """The default folder of a dry run: the build folder's name + ``-dry-run``.

    Raises a BuildError for a backend that needs no weights, before anything is written:
    there is nothing for tiny random models to stand in for.
    """
    _refuse_dry_run_without_weights(protocol)
    real = protocol.default_output()
    return real.with_name(real.name + "-dry-run")


def _refuse_dry_run_without_weights(protocol: Protocol) -> None:
    if protocol.backend.name in BACKENDS_WITHOUT_WEIGHTS:
        raise BuildError(
            f"--dry-run replaces downloaded model weights by tiny random ones, and the "
            f"{protocol.backend.name} backend uses no weights: its build is already the real "
            "one and as fast",
            hint="run `stimgen build` without --dry-run, or `stimgen validate` to check the "
                 "protocol without drawing anything")


def _stage(progress: bool, message: str) -> None:
    if progress:
        print(f"... {message}", file=sys.stderr, flush=True)


def _run_units(protocol, spec, units, keys: dict[str, str], out, execution, progress):
    """Render and rate every identity not already finished; returns their records by
    stimulus id, the identities reused whole, the repairs and the number of stimuli kept
    from an interrupted run.

    Each identity is stored as soon as its last stimulus is done, and each stimulus is
    journaled as soon as its files are written (render.render_and_rate), so that a build
    stopped at any point keeps its finished work; the next run draws only the rest.
    """
    from tqdm import tqdm

    records: dict[str, dict] = {}
    reused: list[str] = []
    repairs: list[dict[str, str]] = []
    pending: list[tuple[IdentityUnit, str]] = []
    for unit in units:
        key = keys[unit.identity.id]
        cached, damage = cached_records(out, unit.identity.id, key)
        if damage is not None:
            repairs.append(damage)
            log.warning("%s of identity %s: %s; recomputing that identity "
                        "(noted in manifest.json under \"repairs\")",
                        damage["file"], damage["identity"], damage["problem"])
        if cached is None:
            pending.append((unit, key))
            supersede_record(out, unit.identity.id)
        else:
            reused.append(unit.identity.id)
            records.update({r["stimulus_id"]: r for r in cached})
            clear_journals(out, unit.identity.id)   # left if a stop came just after storing
    finished = {unit.identity.id: journaled_records(out, unit.identity.id, key)
                for unit, key in pending}
    kept = sum(map(len, finished.values()))
    preparing: list = []          # while this process only waits: the later stages' imports

    def prepare() -> None:
        preparing.append(_load_later_stages(protocol))

    if execution.executor != "local":
        records.update(_run_jobs(spec, pending, out, execution, progress, prepare))
    else:
        total = sum(len(unit.targets) for unit, _ in pending) - kept
        bar = tqdm(total=total, desc="faces", unit="face", disable=not progress or total == 0,
                   file=sys.stderr, leave=False)
        gpus = visible_gpus() if uses_gpu(spec.backend) and total else []
        workers = _worker_count(execution.jobs, spec.backend, total, gpus)
        try:
            stored = render_units(spec, pending, out, workers=workers,
                                  split=cheap_identities(spec.backend), gpus=gpus,
                                  finished=finished, on_progress=bar.update,
                                  while_waiting=prepare)
        finally:
            bar.close()
        for unit_records in stored.values():
            records.update({r["stimulus_id"]: r for r in unit_records})
    for thread in preparing:       # done before anything forks again (the set stage's workers)
        thread.join()
    return records, reused, repairs, kept


def _load_later_stages(protocol: Protocol):
    """While worker processes or identity jobs draw, load in this otherwise idle process
    what the stages after drawing need (norms check, bundle, report: scipy, matplotlib,
    jinja2; PsychoPy's Builder components, whose loading imports half of scipy), so that
    those stages start at once; returns the thread (join it before anything forks)."""
    import threading

    def load() -> None:
        try:
            import scipy.stats  # noqa: F401  (the report's low-level statistics)

            import stimgen.design  # noqa: F401
            import stimgen.export  # noqa: F401
            import stimgen.norms.current  # noqa: F401
            import stimgen.report  # noqa: F401  (matplotlib, jinja2)

            if protocol.experiment is not None:
                from psychopy.experiment.components import getAllComponents

                getAllComponents(fetchIcons=False)
        except Exception:          # noqa: BLE001 - the stage itself will import and report it
            pass

    thread = threading.Thread(target=load, name="stimgen-load-later-stages", daemon=True)
    thread.start()
    return thread


def _standardise_set(spec, units, keys, records, out, ledger, timings, progress,
                     execution=None):
    """Issue 17's set-level step: masks/ for oval-masked builds and, with `match:`, the
    matching stage, which matches, rates and writes the faces (stimgen/standardise.py), in
    the build's local workers (issue 30)."""
    from functools import partial

    from stimgen.build_folder import MASKS_DIR
    from stimgen.executors import worker_map
    from stimgen.render import rate_matched
    from stimgen.standardise import match_stage, write_masks

    ledger.remove_stale(MASKS_DIR, keep=write_masks(ledger, records, units))
    remove_empty_folders(out / MASKS_DIR, out)      # `mask: oval` turned off
    output = spec.output
    if output.match == "none":
        return records
    _stage(progress, f"matching {output.match} across the "
                     f"{'stimulus set' if output.match_scope == 'set' else 'identity'}"
                     " and rating the matched faces")
    clock = time.perf_counter()
    total = sum(len(unit.targets) for unit in units)
    local = execution is None or execution.executor == "local"
    gpus = visible_gpus() if uses_gpu(spec.backend) else []
    workers = _worker_count(execution.jobs if execution is not None else None, spec.backend,
                            total, gpus) if local else 1
    with worker_map(workers, gpus) as run:
        records = match_stage(output, units, keys, records, out,
                              finish=partial(rate_matched, spec, out), run=run,
                              timings=timings)
    timings["match"] = time.perf_counter() - clock
    return records


def _worker_count(jobs: int | None, backend, total: int, gpus=()) -> int:
    """Local worker processes: ``jobs``, else one per visible GPU (GPU backends), else one
    per core (at most 8) for schematic builds big enough to repay starting them."""
    if jobs is not None:
        return max(1, int(jobs))
    if gpus:
        return len(gpus)
    if not cheap_identities(backend) or total < 64:
        return 1
    return max(1, min(os.cpu_count() or 1, 8))


def _run_jobs(spec, pending, out, execution, progress, while_waiting=None
              ) -> dict[str, dict]:
    """Run the pending identities as submitit jobs and merge the records they wrote."""
    run_units(spec, pending, out, execution, progress=progress,
              while_waiting=while_waiting)
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


# --------------------------------------------------------------------------------------
# What the manifest says made the stimuli (the finisher assembles the rest)
# --------------------------------------------------------------------------------------
def describe_build(protocol, protocol_sha: str, fingerprint: dict, rater_info, model_files=()
                   ) -> dict[str, Any]:
    """What made a build's stimuli, as its manifest records it: the protocol (as written and
    normalised), the seeds, the backend and its model files, the raters, the versions."""
    return {
        "protocol": {"path": str(protocol.source_path or ""),
                     "sha256": protocol_sha,
                     "normalized": json.loads(normalised_json(protocol))},
        "seed": protocol.seed,
        "identity_seeds": {i.id: i.seed for i in protocol.identities if i.seed is not None},
        "backend": {"name": protocol.backend.name, "options": fingerprint,
                    "model_files": list(model_files)},
        # random tiny models (`--dry-run`, or make-tiny --install): every output is noise
        "dry_run": any(f.get("tiny") for f in model_files),
        "rater": _rater_entry(rater_info[0], protocol.backend.name),
        "raters": [dict(_rater_entry(info, protocol.backend.name), primary=index == 0)
                   for index, info in enumerate(rater_info)],
        "versions": _versions(),
    }


def protocol_bytes(protocol) -> bytes:
    """The protocol copy of a build folder: the file as written, else the normalised model."""
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


def _rater_entry(info, backend: str) -> dict:
    """A rater as the manifest records it: what it is, its weights, and its circularity."""
    from stimgen.raters.selection import circularity, rater_models
    from stimgen.weights import model_status

    models = rater_models([info.name])
    record = model_status(models[0]).record if models else None
    reason = circularity(info.name, backend)
    return {"name": info.name, "description": info.description,
            "trained_against_generator": info.trained_against_generator,
            "independent": not reason, "circularity": reason,
            "weights_sha256": record.sha256 if record else None}
