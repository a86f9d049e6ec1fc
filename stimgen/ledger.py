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

import hashlib
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
from stimgen.storage import (atomic_write_json, crash_point, link_or_copy, remove_empty_folders,
                             sha256_file)

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
    experiment_inputs: str | None = None    # what the folder's experiment was made from
    #: a build that was allowed to replace the experiment and has not finished yet:
    #: ``{"inputs": ..., "data": [data files then]}`` (see protect_collected_data)
    experiment_pending: dict | None = None

    @classmethod
    def load(cls, root: str | Path) -> "Ledger":
        """The folder's ledger; for a folder built before ledgers existed, the files its
        complete manifest.json lists (those were written by stimgen)."""
        root = Path(root)
        path = root / LEDGER_JSON
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(root, dict(data["files"]), dict(data.get("pending", {})),
                       data.get("experiment_inputs"), data.get("experiment_pending"))
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
                           "experiment_pending": self.experiment_pending,
                           "files": dict(sorted(self.files.items())),
                           "pending": dict(sorted(self.pending.items()))})

    # -- ownership ------------------------------------------------------------------------
    def look(self, relative: str) -> tuple[str, str | None]:
        """What is at ``relative`` now, as ``(state, sha256)``; the state is

        ``missing`` (nothing there), ``ours`` (exactly what stimgen wrote), ``edited``
        (stimgen wrote it, someone changed it), ``foreign`` (stimgen never wrote it) or
        ``blocked`` (a link, a folder, or inside a linked folder or a file: never written).
        """
        if _never_ours(relative):
            return "blocked", None
        path = self.root / relative
        parent = self.root
        for part in PurePosixPath(relative).parts[:-1]:
            parent = parent / part
            if parent.is_symlink() or (parent.exists() and not parent.is_dir()):
                return "blocked", None
        if path.is_symlink() or (path.exists() and not path.is_file()):
            return "blocked", None
        if not path.exists():
            return "missing", None
        digest = sha256_file(path)
        if digest in {self.files.get(relative), self.pending.get(relative)}:
            return "ours", digest
        return ("edited" if relative in self.files else "foreign"), digest

    def _decide(self, relative: str, digest: str) -> str:
        """``write``, ``keep`` (already holds ``digest``, or an edit of a file whose stimgen
        version is unchanged) or ``conflict``, for writing ``digest`` to ``relative``."""
        state, current = self.look(relative)
        if state == "blocked":
            return "conflict"
        if current == digest:
            return "keep"
        if state in ("missing", "ours"):
            return "write"
        if state == "edited" and self.files[relative] == digest:
            log.warning("%s was changed after stimgen wrote it; stimgen's version is "
                        "unchanged, so your edit is kept", relative)
            return "keep"
        return "conflict"

    # -- writing --------------------------------------------------------------------------
    def write_bytes(self, relative: str, data: bytes) -> None:
        """Write one file atomically, unless it is someone else's (a BuildError says so)."""
        from stimgen.storage import atomic_write_bytes, sha256_bytes

        digest = sha256_bytes(data)
        decision = self._decide(relative, digest)
        if decision == "conflict":
            raise _not_ours(self.root, [relative])
        if decision == "keep":
            if self._adopt(relative, digest):
                self.save()
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
        decisions = {relative: self._decide(relative, digests[relative]) for relative in new}
        conflicts = [r for r, d in decisions.items() if d == "conflict"]
        if conflicts:
            raise _not_ours(self.root, conflicts)
        moves = [r for r, d in decisions.items() if d == "write"]
        for relative, decision in decisions.items():
            if decision == "keep":
                self._adopt(relative, digests[relative])
        self.pending.update({r: digests[r] for r in moves})
        self.save()
        for relative in moves:
            target = self.root / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(new[relative], target)
            crash_point("install", f"install:{prefix}")
        self.files.update({r: self.pending.pop(r) for r in moves})
        self.save()
        self.remove_stale(prefix, keep=set(new))
        return sorted(new)

    def remove(self, relative: str) -> None:
        """Delete one of stimgen's files; a BuildError if it is someone else's."""
        state, _ = self.look(relative)
        if state not in ("missing", "ours"):
            raise _not_ours(self.root, [relative], action="delete")
        (self.root / relative).unlink(missing_ok=True)
        forgotten = [self.files.pop(relative, None), self.pending.pop(relative, None)]
        if any(digest is not None for digest in forgotten):
            self.save()

    def remove_stale(self, prefix: str, keep: set[str] = frozenset()) -> None:
        """Delete stimgen's files under ``prefix`` that are not in ``keep``; an edited one is
        left where it is (and forgotten, since it is no longer stimgen's)."""
        stale = sorted(r for r in set(self.files) | set(self.pending)
                       if _under(r, prefix) and r not in keep)
        for relative in stale:
            state, _ = self.look(relative)
            path = self.root / relative
            if state == "ours":
                path.unlink()
                remove_empty_folders(path.parent, self.root / prefix)
            elif state == "edited":
                log.warning("%s was changed after stimgen wrote it; it is no longer part of "
                            "this build and is left as it is", relative)
            self.files.pop(relative, None)
            self.pending.pop(relative, None)
        if stale:
            self.save()

    def _adopt(self, relative: str, digest: str) -> bool:
        """After a "keep": a file that already holds ``digest`` is stimgen's (a build killed
        after moving it, or the same bytes from elsewhere); an edit that stays is left as
        recorded. Returns whether the ledger changed."""
        if self.pending.get(relative) == digest or (relative not in self.files
                                                    and self.look(relative)[1] == digest):
            self.files[relative] = digest
            self.pending.pop(relative, None)
            return True
        return False

    def manifest_files(self) -> dict[str, str]:
        """The files this ledger records, for manifest.json (not the manifest itself)."""
        return {r: d for r, d in sorted(self.files.items()) if r != MANIFEST_JSON}


def _not_ours(root: Path, relatives: list[str], action: str = "overwrite") -> BuildError:
    shown = ", ".join(relatives[:8]) + (f" and {len(relatives) - 8} more" if len(relatives) > 8
                                         else "")
    example = relatives[0]
    stem = PurePosixPath(example)
    renamed = stem.with_name(f"{stem.stem}-mine{stem.suffix}")
    return BuildError(
        f"stimgen would {action} {shown} in {root}, but "
        f"{'that path holds' if len(relatives) == 1 else 'those paths hold'} something stimgen "
        "did not write (a file edited after stimgen wrote it, a file or folder stimgen did not "
        "make, or a link), and stimgen never changes what it did not write",
        hint=f"to keep your version, rename it (e.g. `mv {root / example} {root / renamed}`) "
             "and run the same command again (finished work is reused); to drop it, delete "
             "it first")


def experiment_inputs(stimgen_version: str, protocol_sha256: str,
                      identity_keys: dict[str, str] | None = None) -> str:
    """What a build folder's experiment is made from: stimgen's version, the protocol and
    the cache key of every identity (which covers photos' and latents' bytes, the backend's
    options and its model files), so a photo replaced in place counts as a change too."""
    keys = json.dumps(sorted((identity_keys or {}).items()))
    return (f"stimgen {stimgen_version}, protocol {protocol_sha256}, identities "
            f"{hashlib.sha256(keys.encode('utf-8')).hexdigest()}")


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
        # without the identities' keys, which those versions did not record
        inputs = f"stimgen {data['stimgen_version']}, protocol {data['protocol']['sha256']}"
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


# -- collected data --------------------------------------------------------------------------
def data_files(root: str | Path) -> list[Path]:
    """Every file under ``experiment/data/``: what participants produced (hidden files such
    as .DS_Store or .gitkeep are not data)."""
    folder = Path(root) / DATA_DIR
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def protect_collected_data(ledger: Ledger, inputs: str, force: bool, *,
                           selection: bool = False) -> Path | None:
    """Before a build changes anything: if data was collected with the folder's experiment and
    this build would make a different one (``inputs`` differs), refuse, or with ``force`` keep
    the current experiment beside the data in ``experiment/previous/<time>/``.

    The build's inputs are recorded as pending until :func:`commit_experiment`: a build that
    was interrupted after this check resumes without asking again, unless data came in since.
    Returns the snapshot's folder, or None when nothing needed keeping. ``selection``: the
    change is a `stimgen select` into a subset folder, and the messages say so.
    """
    data = [p.relative_to(ledger.root).as_posix() for p in data_files(ledger.root)]
    made = [r for r in ledger.files if _under(r, EXPERIMENT_DIR)]
    allowed = {"inputs": inputs, "data": data}
    snapshot = None
    if data and made and not _same_inputs(ledger.experiment_inputs, inputs) \
            and ledger.experiment_pending != allowed:
        snapshot = _refuse_or_keep(ledger, made, len(data), force, selection)
    ledger.experiment_pending = allowed
    ledger.save()
    return snapshot


def _same_inputs(recorded: str | None, inputs: str) -> bool:
    """Whether the experiment recorded as made from ``recorded`` is the one ``inputs`` makes;
    a folder from before ledgers recorded only stimgen's version and the protocol."""
    return recorded is not None and (recorded == inputs or inputs.startswith(recorded + ", "))


def commit_experiment(root: str | Path, inputs: str) -> None:
    """Record that the folder's experiment is now the one made from ``inputs``."""
    ledger = Ledger.load(root)
    ledger.experiment_inputs, ledger.experiment_pending = inputs, None
    ledger.save()


def _refuse_or_keep(ledger: Ledger, made: list[str], n_data: int, force: bool,
                    selection: bool = False) -> Path:
    change = "this selection" if selection else "this build"
    if not force:
        why = ("this selection changes the subset's experiment (it is made over other "
               "stimuli, or from another build or stimgen version)" if selection else
               "this build would replace that experiment (it is made from a different "
               "protocol, different photos or models, or another stimgen version)")
        raise BuildError(
            f"{ledger.root / DATA_DIR} holds {n_data} data file(s) collected with the "
            f"experiment in this folder, and {why}",
            hint=("write the subset into a new folder with -o" if selection else
                  "build into a new folder with -o") + " (recommended), or pass --force to "
                 f"keep the current experiment, its stimuli and manifest in {PREVIOUS_DIR}/"
                 "<time>/ beside the data and then write the new one")
    snapshot = keep_previous_experiment(ledger, made)
    log.warning("data was collected with this folder's experiment, which %s replaces: "
                "the experiment it was collected with is kept in %s", change, snapshot)
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
    stimuli = set(_shown_stimuli(root))
    wanted += sorted(stimuli)
    for relative in wanted:
        target = staging / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if relative in stimuli:     # stimgen replaces images, never rewrites them: a link holds
            link_or_copy(root / relative, target)
        else:                       # Builder saves a .psyexp in place: a link would follow it
            shutil.copyfile(root / relative, target)
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
