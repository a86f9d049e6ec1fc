"""Which files of a build folder stimgen wrote, so that a rebuild replaces only its own files
and never participant data, a researcher's notes or a file edited after stimgen wrote it.

The ledger (``.stimgen/files.json``) maps every path stimgen wrote outside ``stimuli/`` (whose
images the identity records own) to the sha256 of what it wrote there. A file is stimgen's to
replace or remove only while it still holds exactly those bytes; anything else in the folder,
``experiment/data/`` above all, is someone else's and is never deleted, moved or overwritten.
Before the files of a stage change, the new hashes are recorded as *pending*, so a build
killed half-way still recognises both the old and the new content as its own.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

from stimgen.build_folder import (DATA_DIR, DESIGN_CSV, EXPERIMENT_DIR, LEDGER_JSON,
                                  MANIFEST_JSON, PREVIOUS_DIR, PROTOCOL_YAML, REPORT_HTML,
                                  STIMULI_DIR, STIMULI_TSV)
from stimgen.errors import BuildError
from stimgen.storage import atomic_write_json, crash_point, link_or_copy, sha256_file

LEDGER_SCHEMA = 1
#: Never stimgen's, whatever a ledger says: participants' data and kept snapshots.
NEVER_OURS = (DATA_DIR, PREVIOUS_DIR)
log = logging.getLogger("stimgen")


@dataclass
class Ledger:
    """The files stimgen wrote into one build folder, with the content it wrote."""

    root: Path
    files: dict[str, str] = field(default_factory=dict)     # relative path -> sha256
    pending: dict[str, str] = field(default_factory=dict)   # being replaced right now
    experiment_inputs: str | None = None    # fingerprint of what the experiment was made from

    @classmethod
    def load(cls, root: str | Path) -> "Ledger":
        """The folder's ledger; for a folder built before ledgers existed, the files its
        complete manifest.json lists (those were written by stimgen)."""
        root = Path(root)
        path = root / LEDGER_JSON
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(root, dict(data["files"]), dict(data.get("pending", {})),
                       data.get("experiment_inputs"))
        except FileNotFoundError:
            return cls(root, *_legacy_manifest(root))
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise BuildError(f"{path} is unreadable ({err}); stimgen cannot tell which files "
                             "of this folder it wrote",
                             hint="build into a new folder with -o; copy anything you need "
                                  "from this one first") from None

    def save(self) -> None:
        atomic_write_json(self.root / LEDGER_JSON,
                          {"schema": LEDGER_SCHEMA, "experiment_inputs": self.experiment_inputs,
                           "files": dict(sorted(self.files.items())),
                           "pending": dict(sorted(self.pending.items()))})

    # -- ownership ------------------------------------------------------------------------
    def owns(self, relative: str) -> bool:
        """Whether the file at ``relative`` holds exactly what stimgen wrote there (a missing
        file counts as stimgen's: there is nothing of anyone else's to keep)."""
        if _never_ours(relative):
            return False
        path = self.root / relative
        if path.is_symlink() or (path.exists() and not path.is_file()):
            return False
        if not path.exists():
            return True
        recorded = {self.files.get(relative), self.pending.get(relative)} - {None}
        return bool(recorded) and sha256_file(path) in recorded

    def edited(self, prefix: str) -> list[str]:
        """Files under ``prefix`` that stimgen wrote and someone changed since."""
        return sorted(r for r in self.files if _under(r, prefix)
                      and (self.root / r).exists() and not self.owns(r))

    # -- writing --------------------------------------------------------------------------
    def write_bytes(self, relative: str, data: bytes) -> None:
        """Write one file atomically, unless it is someone else's (a BuildError says so)."""
        from stimgen.storage import atomic_write_bytes, sha256_bytes

        digest = sha256_bytes(data)
        if self._keep_theirs(relative, digest):
            return
        self.pending[relative] = digest
        self.save()
        atomic_write_bytes(self.root / relative, data)
        self.files[relative] = self.pending.pop(relative)
        self.save()

    def install(self, staging: Path, prefix: str) -> list[str]:
        """Move every file of the folder ``staging`` to ``prefix/<same relative path>`` and
        remove stimgen's files under ``prefix`` that the new set no longer has.

        Unchanged files are left as they are; files that are not stimgen's are never touched
        (a BuildError names them before anything moves). Returns the installed paths.
        """
        new = {f"{prefix}/{p.relative_to(staging).as_posix()}": p
               for p in sorted(staging.rglob("*")) if p.is_file()}
        digests = {relative: sha256_file(path) for relative, path in new.items()}
        conflicts = [r for r in new if self._conflicts(r, digests[r])]
        if conflicts:
            raise _not_ours(self.root, conflicts)
        install = [r for r in new if not self._keep_theirs(r, digests[r])]
        self.pending.update({r: digests[r] for r in install})
        self.save()
        for relative in install:
            target = self.root / relative
            if target.is_file() and sha256_file(target) == digests[relative]:
                os.remove(new[relative])            # already there: keep the file as it is
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(new[relative], target)
            crash_point("install", f"install:{prefix}")
        self.files.update({r: self.pending.pop(r) for r in install})
        self.save()
        self.remove_stale(prefix, keep=set(new))
        return sorted(new)

    def remove(self, relative: str) -> None:
        """Delete one of stimgen's files; a BuildError if it is someone else's."""
        path = self.root / relative
        if path.exists() or path.is_symlink():
            if not self.owns(relative):
                raise _not_ours(self.root, [relative])
            path.unlink()
        if self.files.pop(relative, None) is not None or self.pending.pop(relative, None):
            self.save()

    def remove_stale(self, prefix: str, keep: set[str] = frozenset()) -> None:
        """Delete stimgen's files under ``prefix`` that are not in ``keep``; an edited one is
        left where it is (and forgotten, since it is no longer stimgen's)."""
        for relative in sorted(r for r in self.files if _under(r, prefix) and r not in keep):
            path = self.root / relative
            if self.owns(relative):
                path.unlink(missing_ok=True)
                _remove_empty_parents(path.parent, self.root / prefix)
            else:
                log.warning("%s was changed after stimgen wrote it; it is no longer part of "
                            "this build and is left as it is", relative)
            del self.files[relative]
        self.save()

    def _conflicts(self, relative: str, digest: str) -> bool:
        """Whether writing ``digest`` to ``relative`` would replace someone else's content."""
        if self.owns(relative):
            return False
        path = self.root / relative
        if path.is_file() and not path.is_symlink() and sha256_file(path) == digest:
            return False
        return self.files.get(relative) != digest

    def _keep_theirs(self, relative: str, digest: str) -> bool:
        """Whether to leave ``relative`` as it is instead of writing ``digest`` there: it holds
        exactly those bytes already (they become stimgen's), or someone edited it and stimgen
        would write the very bytes it wrote before (the edit stays). Raises when the file is
        not stimgen's and stimgen would write something new there."""
        if self.owns(relative):
            return False
        if self._conflicts(relative, digest):
            raise _not_ours(self.root, [relative])
        if sha256_file(self.root / relative) == digest:
            self.files[relative] = digest
        else:
            log.warning("%s was changed after stimgen wrote it; stimgen's version is "
                        "unchanged, so your edit is kept", relative)
        return True

    def manifest_files(self) -> dict[str, str]:
        """The files this ledger records, for manifest.json (not the manifest itself)."""
        return {r: d for r, d in sorted(self.files.items()) if r != MANIFEST_JSON}


def _not_ours(root: Path, relatives: list[str]) -> BuildError:
    shown = ", ".join(relatives[:8]) + (f" and {len(relatives) - 8} more" if len(relatives) > 8
                                         else "")
    example = relatives[0]
    stem = PurePosixPath(example)
    renamed = stem.with_name(f"{stem.stem}-mine{stem.suffix}")
    return BuildError(
        f"the build would overwrite {shown} in {root}, but "
        f"{'that file holds' if len(relatives) == 1 else 'those files hold'} something stimgen "
        "did not write (edited after the last build, or not made by stimgen), and stimgen "
        "never overwrites what it did not write",
        hint=f"to keep your version, rename it (e.g. `mv {root / example} {root / renamed}`) "
             "and run the same command again (finished stimuli are reused); to drop it, delete "
             "it first")


def experiment_inputs(stimgen_version: str, protocol_sha256: str) -> str:
    """What a build folder's experiment was made from: stimgen's version and the protocol."""
    return f"stimgen {stimgen_version}, protocol {protocol_sha256}"


def _legacy_manifest(root: Path) -> tuple[dict[str, str], dict[str, str], str | None]:
    """Files, pending files and experiment inputs of a folder built before ledgers existed,
    read from its complete manifest.json (empty when there is none)."""
    manifest = root / MANIFEST_JSON
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
        if data.get("complete") is not True:
            return {}, {}, None
        files = {str(r): str(d) for r, d in data["files"].items()
                 if not _never_ours(str(r)) and not _under(str(r), STIMULI_DIR)}
        inputs = experiment_inputs(data["stimgen_version"], data["protocol"]["sha256"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}, {}, None
    files[MANIFEST_JSON] = sha256_file(manifest)
    page = root / REPORT_HTML
    if REPORT_HTML in files and page.is_file():
        # `stimgen report` of those versions rewrote the page without updating the manifest
        files[REPORT_HTML] = sha256_file(page)
    return files, {}, inputs


def _under(relative: str, prefix: str) -> bool:
    return relative == prefix or relative.startswith(prefix.rstrip("/") + "/")


def _never_ours(relative: str) -> bool:
    return any(_under(relative, p) for p in NEVER_OURS)


def _remove_empty_parents(folder: Path, stop: Path) -> None:
    while folder != stop and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent


# -- collected data --------------------------------------------------------------------------
def data_files(root: str | Path) -> list[Path]:
    """Every file under ``experiment/data/``: what participants produced."""
    folder = Path(root) / DATA_DIR
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []


def protect_collected_data(ledger: Ledger, inputs: str, force: bool) -> Path | None:
    """Before a build changes anything: if data was collected with the folder's experiment and
    this build would make a different one (``inputs`` differs), refuse, or with ``force`` keep
    the current experiment beside the data in ``experiment/previous/<time>/``.

    Returns the snapshot's folder, or None when nothing needed keeping.
    """
    data = data_files(ledger.root)
    made = [r for r in ledger.files if _under(r, EXPERIMENT_DIR)]
    if not data or not made or ledger.experiment_inputs == inputs:
        return None
    if not force:
        raise BuildError(
            f"{ledger.root / DATA_DIR} holds {len(data)} data file(s) collected with the "
            "experiment in this folder, and this build would change that experiment (its "
            "stimuli, design or settings)",
            hint="build into a new folder with -o (recommended), or pass --force to keep the "
                 f"current experiment, its stimuli and manifest in {PREVIOUS_DIR}/<time>/ beside "
                 "the data and then write the new one")
    snapshot = keep_previous_experiment(ledger, made)
    log.warning("data was collected with this folder's experiment, which this build changes: "
                "the experiment it was collected with is kept in %s", snapshot)
    return snapshot


def keep_previous_experiment(ledger: Ledger, experiment_files: list[str]) -> Path:
    """Copy (hard-link where possible) the folder's experiment files, the stimuli it shows,
    stimuli.tsv, protocol.yaml and manifest.json into ``experiment/previous/<UTC time>/``,
    laid out as a build folder so that its experiment still finds its images."""
    root = ledger.root
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    final = root / PREVIOUS_DIR / stamp
    n = 1
    while final.exists():
        n += 1
        final = root / PREVIOUS_DIR / f"{stamp}-{n}"
    staging = final.with_name(f".{final.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    wanted = [r for r in experiment_files if (root / r).is_file()]
    wanted += [r for r in (STIMULI_TSV, PROTOCOL_YAML, MANIFEST_JSON) if (root / r).is_file()]
    wanted += _shown_stimuli(root)
    for relative in wanted:
        target = staging / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        link_or_copy(root / relative, target)
    (staging / "README.txt").write_text(
        "The experiment of this build folder as it was before a rebuild changed it, kept by\n"
        "stimgen because experiment/data/ already held data collected with it. The layout is\n"
        "that of a build folder: experiment/ finds its images in stimuli/ beside it.\n"
        "Match each data file by its date with the snapshot that was current then.\n",
        encoding="utf-8")
    os.replace(staging, final)
    return final


def _shown_stimuli(root: Path) -> list[str]:
    """Build-relative paths of the images the folder's experiment shows (its design.csv),
    or every image in stimuli/ when the design table cannot be read."""
    import pandas as pd

    everything = sorted(f"{STIMULI_DIR}/{p.name}" for p in (root / STIMULI_DIR).glob("*")
                        if p.is_file() and not p.name.startswith("."))
    try:
        files = pd.read_csv(root / DESIGN_CSV, dtype=str)["stim_file"]
    except (OSError, ValueError, KeyError):
        return everything
    names = {PurePosixPath(str(f).replace("\\", "/")).name for f in files}
    return [r for r in everything if PurePosixPath(r).name in names]


def remove_partial_snapshots(root: str | Path) -> None:
    """Delete snapshot folders that a killed build left half-written."""
    folder = Path(root) / PREVIOUS_DIR
    if folder.is_dir() and not folder.is_symlink():
        for entry in folder.glob(".*.partial"):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
