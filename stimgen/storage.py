"""Files of a build folder: atomic writes, content hashes, disk errors and crash leftovers.

Every file stimgen writes goes through here, so an interrupted build never leaves a
half-written file under its final name (docs/reliability.md).
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from stimgen.errors import BuildError

#: Test hook (docs/reliability.md): ``point``, ``point@n`` (the n-th time it is reached) or
#: either with ``:stall`` (hang, holding the lock, until killed). Unset, it does nothing.
CRASH_ENV = "STIMGEN_TEST_CRASH_AT"
_crash_hits: dict[str, int] = {}
_crash_pid = [os.getpid()]          # counts start afresh in a forked child
#: errno values that mean "the disk or the folder refuses", not "stimgen has a bug".
DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EACCES, errno.EPERM,
               errno.EROFS, errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG}
#: Names of what an interrupted build can leave behind: temporaries of atomic_write_bytes,
#: the staging folders of experiment/ and report_assets/, and the "-old-<pid>" folders that
#: builds of earlier versions (which swapped whole folders) left when killed mid-swap.
_LEFTOVER_FILE = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")
_LEFTOVER_FOLDER = re.compile(r"^\.(experiment|report_assets)-([A-Za-z0-9_]{8}|old-\d+)$")


def crash_point(*names: str) -> None:
    """End the process abruptly (as ``kill -9`` would) if ``STIMGEN_TEST_CRASH_AT`` names
    one of ``names``; the reliability tests use it to interrupt builds at chosen moments."""
    spec = os.environ.get(CRASH_ENV)
    if not spec:
        return
    stall = spec.endswith(":stall")        # point names hold colons too: write:stimuli.tsv
    point = spec[:-len(":stall")] if stall else spec
    point, _, nth = point.rpartition("@") if "@" in point else (point, "", "")
    if _crash_pid[0] != os.getpid():
        _crash_pid[0] = os.getpid()
        _crash_hits.clear()
    for name in names:
        _crash_hits[name] = _crash_hits.get(name, 0) + 1
        if name == point and _crash_hits[name] == int(nth or 1):
            while stall:
                time.sleep(1)
            os._exit(137)


def disk_error(err: OSError, path: str | Path | None = None) -> BuildError | None:
    """The BuildError to show for an OSError of a full, read-only or forbidden folder;
    None for other errors (those are bugs and raise as they are)."""
    if err.errno not in DISK_ERRNOS:
        return None
    where = path or err.filename or "the output folder"
    reason = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "your disk quota is used up",
              errno.EFBIG: "the file is larger than this system allows",
              errno.EROFS: "the file system is read-only"}.get(
                  err.errno, err.strerror or str(err))
    return BuildError(f"cannot write {where}: {reason}",
                      hint="free some space or choose a writable folder with -o, then run the "
                           "same command again (finished work is kept)")


def remove_leftovers(root: Path, folders: Sequence[str] = ()) -> list[Path]:
    """Delete temporary files and staging folders that an interrupted build left in
    ``root`` and its sub-folders ``folders``; returns what was deleted."""
    removed = []
    for folder in (root, *(root / f for f in folders)):
        if not folder.is_dir() or folder.is_symlink():
            continue
        for entry in folder.iterdir():
            if entry.is_file() and _LEFTOVER_FILE.match(entry.name):
                entry.unlink()
                removed.append(entry)
            elif folder == root and entry.is_dir() and _LEFTOVER_FOLDER.match(entry.name):
                if entry.is_symlink():
                    entry.unlink()
                else:
                    shutil.rmtree(entry)
                removed.append(entry)
    return removed


def remove_empty_folders(folder: Path, stop: Path) -> list[Path]:
    """Delete ``folder`` if it is empty, then each parent that becomes empty, up to but not
    including ``stop``; links and folders that hold anything are left. Returns what went.

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> (root / "a" / "b").mkdir(parents=True)
    >>> [p.name for p in remove_empty_folders(root / "a" / "b", root)], root.is_dir()
    (['b', 'a'], True)
    """
    removed = []
    folder, stop = Path(folder), Path(stop)
    while folder != stop and folder.is_relative_to(stop) and folder.is_dir() \
            and not folder.is_symlink() and not any(folder.iterdir()):
        folder.rmdir()
        removed.append(folder)
        folder = folder.parent
    return removed


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            os.chmod(tmp, 0o666 & ~_UMASK)   # mkstemp files are private; outputs are shared
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            crash_point("write", f"write:{path.name}")
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as err:
        raise (disk_error(err, path) or
               BuildError(f"cannot write {path}: {err.strerror or err}",
                          hint="check free disk space and that the folder is writable")) from err


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, allow_nan=False,
                                       default=str) + "\n")


def link_or_copy(source: Path, target: Path) -> None:
    """Hard-link ``target`` to ``source`` (no second copy on disk); copy it instead where
    they are on different file systems or the file system has no hard links.

    stimgen replaces files rather than rewriting them, so a later build never changes a link.
    """
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
