"""The finisher: every file of a finished build folder, written in one place.

`stimgen build`, `stimgen select` and `stimgen norms` end here: the tables (stimuli.tsv, the
metrics tables, norms), the protocol copy, the reference faces, the experiment bundle, the
report and, last, manifest.json (which marks a folder complete). A new output of a finished
folder is added here once, and every command that finishes a folder writes it.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from stimgen.build_folder import (EXPERIMENT_DIR, MANIFEST_JSON, METRICS_BY_EMOTION_CSV,
                                  METRICS_BY_INTENSITY_CSV, NORMS_TSV,
                                  PROTOCOL_YAML, REFERENCES_DIR, STIMULI_DIR, STIMULI_TSV,
                                  json_bytes, read_build_folder, remove_stale_thumbnails,
                                  table_bytes)
from stimgen.ledger import Ledger, commit_experiment
from stimgen.metrics import metrics_by_emotion, metrics_by_intensity
from stimgen.settings import BundleSpec
from stimgen.storage import crash_point
from stimgen.version import __version__


@dataclass
class FinishedFolder:
    """What a finished build folder is written from (besides the stimuli's own files, which
    the stages before wrote).

    ``norms`` maps norms.tsv and norms_summary.json to their bytes, or to None to remove them;
    a name it leaves out is left as it is (a rebuild keeps the norms of its stimuli).
    ``experiment`` is planned over ``table`` and written as the bundle
    (:func:`stimgen.plan.bundle_spec`; None: no experiment, stimgen's own experiment files go). ``after_design`` is called with
    the planned design, once the bundle is written.
    """

    table: pd.DataFrame                       # the stimuli rows, as stimuli.tsv holds them
    stimuli_tsv: bytes                        # stimuli.tsv's bytes
    protocol_yaml: bytes                      # the protocol copy
    references: dict[str, bytes]              # references/<label>.png -> its pixels
    experiment_inputs: str                    # what the experiment is made from (ledger)
    manifest: dict[str, Any]                  # from :func:`assemble_manifest`
    experiment: BundleSpec | None = None      # the experiment to plan and write
    norms: dict[str, bytes | None] = field(default_factory=dict)
    stimulus_files: dict[str, str] = field(default_factory=dict)   # not in the ledger
    thumbnails: set[str] | None = None        # keep only these cached thumbnails (build)
    after_design: Callable | None = None


def finish(out: Path, finished: FinishedFolder, *, command: str | None,
           timings: dict[str, float] | None = None, timed_as: tuple[str, float] | None = None,
           progress: bool = False) -> dict[str, Path]:
    """Write every file of a finished build folder into ``out``, manifest.json last.

    ``timings`` (a build's stage seconds) gains the experiment's and the report's and goes
    into the report and the manifest. Without it (a subset) the report shows no timings and
    the manifest records the whole command's seconds under ``timed_as = (name, start)``.
    Returns the paths of what was written, by name (as :class:`stimgen.pipeline.BuildResult`
    lists them).
    """
    ledger = Ledger.load(out)
    table = finished.table
    ledger.write_bytes(STIMULI_TSV, finished.stimuli_tsv)
    ledger.write_bytes(METRICS_BY_EMOTION_CSV, table_bytes(metrics_by_emotion(table), ","))
    ledger.write_bytes(METRICS_BY_INTENSITY_CSV, table_bytes(metrics_by_intensity(table), ","))
    ledger.write_bytes(PROTOCOL_YAML, finished.protocol_yaml)
    for relative, data in finished.references.items():     # pixels-only copies, for the report
        ledger.write_bytes(relative, data)
    ledger.remove_stale(REFERENCES_DIR, keep=set(finished.references))
    for relative, data in finished.norms.items():
        if data is None:
            ledger.remove(relative)
        else:
            ledger.write_bytes(relative, data)
    paths = {"stimuli": out / STIMULI_DIR, "stimuli_table": out / STIMULI_TSV,
             "metrics_by_emotion": out / METRICS_BY_EMOTION_CSV,
             "metrics_by_intensity": out / METRICS_BY_INTENSITY_CSV,
             "protocol": out / PROTOCOL_YAML, "manifest": out / MANIFEST_JSON}
    if timings is not None:
        crash_point("tables")

    if finished.experiment is not None:
        _stage(progress, "planning the design and writing the PsychoPy bundle")
        clock = time.perf_counter()
        paths.update(write_experiment(out, finished.experiment, table, finished.after_design))
        if timings is not None:
            timings["experiment"] = time.perf_counter() - clock
            crash_point("experiment")
    else:
        Ledger.load(out).remove_stale(EXPERIMENT_DIR)     # stimgen's own files only
    commit_experiment(out, finished.experiment_inputs)

    _stage(progress, "writing the report")
    clock = time.perf_counter()
    manifest = finished.manifest
    manifest["files"] = _written_files(out, finished.stimulus_files)
    if timings is not None:
        manifest["timings"] = _rounded(timings)
    from stimgen.report import write_report   # matplotlib: only where a report is made

    paths["report"] = write_report(out, command=command, manifest=manifest)
    if finished.thumbnails is not None:
        remove_stale_thumbnails(out, finished.thumbnails)
    if timings is not None:
        timings["report"] = time.perf_counter() - clock
        crash_point("report")
        manifest["timings"] = _rounded(timings)

    # the report's files, now that they exist: the manifest is complete
    manifest["files"] = _written_files(out, finished.stimulus_files)
    if timed_as is not None:
        name, start = timed_as
        manifest["timings"] = {name: round(time.perf_counter() - start, 3)}
    Ledger.load(out).write_bytes(MANIFEST_JSON, json_bytes(manifest))
    return paths


def write_experiment(out: Path, bundle: BundleSpec, table: pd.DataFrame,
                     after_design: Callable | None = None) -> dict[str, Path]:
    """Plan the counterbalanced design over ``table`` and write the PsychoPy bundle into
    ``out/experiment``; raises :class:`stimgen.errors.DesignError` when it cannot be planned."""
    from stimgen.design import plan_design
    from stimgen.export import write_bundle

    design = plan_design(bundle.experiment, table, bundle.seed)
    written = write_bundle(out, bundle, table, design)
    if after_design is not None:
        after_design(design)
    return {"experiment": out / EXPERIMENT_DIR,
            **{f"experiment_{name}": path for name, path in written.items()}}


def write_norms(build_dir, data, *, scale: tuple[float, float] | None = None,
                max_missed_checks: int = 0, report: bool = True):
    """Compute the norms of a build from data files and write them into the build folder
    (`stimgen norms`): norms.tsv, norms_summary.json and, unless ``report`` is false, the
    report again with its "Human norms" section. The rest of the folder, manifest.json
    included, stays as the build wrote it.

    Parameters
    ----------
    build_dir : str or Path
        A complete build folder.
    data, scale, max_missed_checks
        As for :func:`stimgen.norms.norms_files` (the data files are only read).
    report : bool
        Rewrite report.html with its "Human norms" section.

    Returns
    -------
    (Path, Responses)
        The path of norms.tsv and what was read (warnings, exclusions).

    Examples
    --------
    >>> write_norms("build/demo", ["build/demo/experiment/data"])  # doctest: +SKIP
    """
    from stimgen.norms import norms_files

    folder = read_build_folder(build_dir)
    root = folder.root
    files, responses = norms_files(folder, data, scale=scale,
                                   max_missed_checks=max_missed_checks)
    ledger = Ledger.load(root)
    for relative, content in files.items():
        ledger.write_bytes(relative, content)
    if report:
        from stimgen.report import write_report

        write_report(root)
    return root / NORMS_TSV, responses


# -- manifest.json ---------------------------------------------------------------------------
def assemble_manifest(described: dict[str, Any], table: pd.DataFrame, *, command: str | None,
                      reference_faces: list, repairs=(), **more: Any) -> dict[str, Any]:
    """manifest.json of a finished folder, without ``files`` (the finisher fills them in).

    ``described`` says what made the stimuli (a build: :func:`stimgen.pipeline.describe_build`; a subset: its
    source's manifest, whose entries it keeps); ``more`` adds or replaces entries
    (a subset's ``identity_seeds`` and ``selection``). The key order is the manifest's.
    """
    head = {"stimgen_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": command or ""}
    manifest = {**head, **described}
    manifest.update(head)
    manifest.update(files={}, timings={}, counts=manifest_counts(table), repairs=list(repairs),
                    complete=True, reference_faces=list(reference_faces), **more)
    return manifest


def manifest_counts(table: pd.DataFrame) -> dict[str, int]:
    """manifest.json's ``counts`` of a stimuli table: stimuli, passed (no flag), flagged, out
    of tolerance and in the weak region."""
    flagged = table["flags"] != ""
    return {"stimuli": int(len(table)), "passed": int((~flagged).sum()),
            "flagged": int(flagged.sum()),
            "out_of_tolerance": int(table["out_of_tolerance"].sum()),
            "weak_region": int(table["weak_region"].sum())}


def _written_files(out: Path, stimulus_files: dict[str, str]) -> dict[str, str]:
    """sha256 of every file stimgen wrote into the folder (the ledger's, and the stimuli's
    from their records); participants' data and anyone else's files are not among them."""
    files = Ledger.load(out).manifest_files()
    files.update(stimulus_files)
    return dict(sorted(files.items()))


def _rounded(timings: dict[str, float]) -> dict[str, float]:
    return {stage: round(seconds, 3) for stage, seconds in timings.items()}


def _stage(progress: bool, message: str) -> None:
    if progress:
        print(f"... {message}", file=sys.stderr, flush=True)
