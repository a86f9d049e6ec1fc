"""Getting checkpoints into the cache: download, add, verify.

pooch does the transfer (requests, a temporary file in the models folder, a tqdm bar on
stderr); gdown is its downloader for Google Drive links, whose large files hide behind a
"can't scan this file for viruses" page. stimgen checks the size and sha256 against the
registry and renames the file into place only when they match.
"""
from __future__ import annotations

import logging
import os
import shutil
import urllib.parse
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from stimgen.errors import StimgenError
from stimgen.storage import sha256_file
from stimgen.weights.registry import (
    ModelEntry, digest_matches, get_model, load_registry, make_record, models_dir, read_records,
    save_record, state_of,
)

CHUNK_BYTES = 1 << 20
USER_AGENT = "stimgen-models-fetch/1 (+https://github.com/stimgen)"
#: Hosts whose links go through gdown (Drive's confirm page) instead of a plain GET.
GOOGLE_DRIVE_HOSTS = ("drive.google.com", "docs.google.com")


class DownloadError(StimgenError):
    """A model file could not be downloaded; nothing was installed."""


class ChecksumMismatchError(DownloadError):
    """A file's sha256 (or size) is not the published one; it was not installed."""


class TinyModelError(StimgenError):
    """A random tiny model from ``stimgen models make-tiny`` offered as real weights."""


# ----------------------------------------------------------------------------- checking

def check_file(entry: ModelEntry, path: Path, source: str) -> str:
    """Hash ``path`` and compare with the registry; return the digest or raise.

    The registry may publish a full sha256, only its leading digits (torch.hub file
    names), or nothing; the digest is returned either way, for ``verified.json``.

    Raises
    ------
    ChecksumMismatchError
        The size or sha256 differs from the published one, or the file is smaller than
        a complete one can be (``size_min_bytes``).
    """
    size = path.stat().st_size
    if entry.size_min_bytes is not None and size < entry.size_min_bytes:
        raise ChecksumMismatchError(
            f"{entry.name}: {source} gave {size} bytes, but a complete {entry.file} holds at "
            f"least {entry.size_min_bytes} ({entry.size_note.strip()}); the file was not "
            "installed",
            hint="the download was cut short or the source serves another file; run the "
                 "command again, or download the file by hand, check its size, and "
                 f"`stimgen models add {entry.name} PATH`")
    if entry.size_bytes is not None and size != entry.size_bytes:
        raise ChecksumMismatchError(
            f"{entry.name}: {source} gave {size} bytes, expected {entry.size_bytes}; "
            "the file was not installed",
            hint="run the command again; if it keeps failing, download the file by hand and "
                 f"check it before `stimgen models add {entry.name} PATH`")
    digest = sha256_file(path)
    if digest_matches(entry, digest) is False:
        expected = entry.sha256 or f"{entry.sha256_prefix}..."
        raise ChecksumMismatchError(
            f"{entry.name}: sha256 of the file from {source} is {digest}, expected {expected}; "
            "the file was not installed",
            hint="the download is corrupt or the source now serves another file; run the "
                 "command again, or get the published file another way and "
                 f"`stimgen models add {entry.name} PATH`")
    return digest


def is_web_page(path: Path) -> bool:
    """Whether a downloaded file is an HTML page (a quota or login page), not a checkpoint.

    Checkpoints are zip files or pickles; a page starts with a tag.

    >>> import tempfile
    >>> page = Path(tempfile.mkdtemp()) / "emonet_8.pth"
    >>> _ = page.write_bytes(b"\\n<!DOCTYPE html><html><body>Too many users</body></html>")
    >>> is_web_page(page)
    True
    >>> _ = page.write_bytes(b"PK\\x03\\x04 a torch zip file")
    >>> is_web_page(page)
    False
    """
    with open(path, "rb") as handle:
        head = handle.read(1024).lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html")) or (head[:1] == b"<" and b"<html" in head)


# ----------------------------------------------------------------------------- downloading

def is_google_drive(url: str) -> bool:
    """Whether ``url`` is a Google Drive link (downloaded through gdown).

    >>> is_google_drive("https://drive.google.com/uc?export=download&id=17C1")
    True
    >>> is_google_drive("https://github.com/face-analysis/emonet/raw/master/pretrained/x.pth")
    False
    """
    return urllib.parse.urlsplit(url).hostname in GOOGLE_DRIVE_HOSTS


@dataclass
class GoogleDriveDownloader:
    """A pooch downloader for Google Drive links: gdown confirms Drive's virus-scan page.

    Called by pooch as ``downloader(url, output_file, pooch)``; writes the file's bytes to
    ``output_file`` (a temporary file pooch moves into place).
    """

    progressbar: bool = False   # tqdm bar and gdown's "From: URL" lines on stderr
    timeout: float = 60.0       # seconds without a byte before giving up

    def __call__(self, url: str, output_file: str, pooch: object) -> None:
        import gdown

        with open(output_file, "wb") as handle:     # a stream: gdown keeps no .part file
            gdown.download(url, handle, quiet=not self.progressbar, use_cookies=False,
                           timeout=self.timeout, log_messages={"start": "", "output": ""})


def downloader_for(url: str, *, progress: bool, timeout: float):
    """The pooch downloader for ``url``: gdown for Google Drive, pooch's HTTP one otherwise."""
    if is_google_drive(url):
        return GoogleDriveDownloader(progressbar=progress, timeout=timeout)
    import pooch

    return pooch.HTTPDownloader(progressbar=progress, chunk_size=CHUNK_BYTES, timeout=timeout,
                                headers={"User-Agent": USER_AGENT})


@contextmanager
def _pooch_silenced() -> Iterator[None]:
    """pooch logs "Downloading file ..." at INFO; the CLI already says what it fetches."""
    import pooch

    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _is_cut(exc: BaseException) -> bool:
    """A connection dropped mid-file (worth another try), as opposed to a refusal."""
    import gdown.exceptions
    import requests

    return (isinstance(exc, (requests.exceptions.ChunkedEncodingError,
                             requests.exceptions.ReadTimeout, gdown.exceptions.DownloadError))
            and not isinstance(exc, gdown.exceptions.FileURLRetrievalError))


def _download_error(entry: ModelEntry, url: str, exc: BaseException,
                    attempts: int) -> DownloadError:
    """What to tell the user about a failed transfer: what happened and the way out."""
    import gdown.exceptions
    import requests

    if isinstance(exc, requests.exceptions.HTTPError) and exc.response is not None:
        return DownloadError(
            f"{entry.name}: {url} answered HTTP {exc.response.status_code} {exc.response.reason}",
            hint=f"the file has moved or the link expired; see {entry.homepage} for its current "
                 f"location, download it and run `stimgen models add {entry.name} PATH`")
    if isinstance(exc, gdown.exceptions.FileURLRetrievalError):
        return _web_page_error(entry, url)
    if _is_cut(exc):
        return DownloadError(
            f"{entry.name}: the connection to {url} was cut {attempts} "
            f"time{'s' if attempts > 1 else ''} ({type(exc).__name__}); nothing was installed",
            hint="run the same command again (the download starts over)")
    return DownloadError(
        f"{entry.name}: could not download {url}: {_innermost(exc)}",
        hint=f"check the network connection; on an offline machine, download {entry.file} "
             f"elsewhere ({entry.urls[0]}) and run `stimgen models add {entry.name} PATH`")


def _innermost(exc: BaseException) -> str:
    """The socket-level reason under a requests error, e.g. "[Errno 111] Connection refused"."""
    cause = exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else exc
    cause = getattr(cause, "reason", cause)         # urllib3's MaxRetryError names the cause
    while isinstance(cause, BaseException) and cause.__cause__ is not None:
        cause = cause.__cause__
    return str(cause) or type(cause).__name__


def _web_page_error(entry: ModelEntry, url: str) -> DownloadError:
    return DownloadError(
        f"{entry.name}: {url} returned a web page instead of {entry.file} "
        "(Google Drive shows one when its download quota is exceeded)",
        hint=f"open the link in a browser, download {entry.file}, then run "
             f"`stimgen models add {entry.name} PATH`")


def download(entry: ModelEntry, url: str, staged: Path, *, retries: int = 3,
             progress: bool = True, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``staged`` with pooch; the caller checks and installs it.

    A connection cut mid-file is tried again, from the start, up to ``retries`` times;
    an HTTP error, an unreachable host or a web page is not.

    Raises
    ------
    DownloadError
        The message names the model and the URL, the hint what to do; ``staged`` does not
        exist afterwards.
    """
    import gdown.exceptions
    import pooch
    import requests

    staged.unlink(missing_ok=True)     # pooch would take a file already there as done
    cache = pooch.create(path=staged.parent, base_url="", registry={staged.name: None},
                         urls={staged.name: url})
    downloader = downloader_for(url, progress=progress, timeout=timeout)
    for attempt in range(1, retries + 2):
        try:
            with _pooch_silenced():
                cache.fetch(staged.name, downloader=downloader)
            break
        except (requests.exceptions.RequestException, gdown.exceptions.DownloadError) as exc:
            if not _is_cut(exc) or attempt > retries:
                raise _download_error(entry, url, exc, attempt) from None
    if is_web_page(staged):
        staged.unlink()
        raise _web_page_error(entry, url)
    return staged


def install_download(entry: ModelEntry, staged: Path, directory: Path, source: str, *,
                     tiny: bool = False) -> Path:
    """Check ``staged`` against the registry and rename it into place (removed on mismatch)."""
    try:
        digest = check_file(entry, staged, source)
    except ChecksumMismatchError:
        staged.unlink(missing_ok=True)
        raise
    destination = directory / entry.file
    os.replace(staged, destination)
    save_record(directory, entry.name, make_record(destination, digest, source, tiny=tiny))
    return destination


def fetch_model(name: str, *, home: Path | str | None = None, force: bool = False,
                progress: bool = True, retries: int = 3, timeout: float = 60.0) -> Path:
    """Download the model ``name`` into the cache and return its path.

    Already installed and checked files are kept unless ``force``; a tiny test model or an
    unchecked file is replaced. The sha256 is checked when the registry has one, and
    recorded in ``verified.json`` either way. The registry's sources are tried in order.

    Raises
    ------
    DownloadError, ChecksumMismatchError
        Nothing is installed; the message names the URL and what to do.

    Examples
    --------
    >>> fetch_model("emonet_8")     # doctest: +SKIP
    PosixPath('/home/me/.cache/stimgen/models/emonet_8.pth')
    """
    entry = get_model(name)
    directory = models_dir(home)
    destination = directory / entry.file
    record = read_records(directory).get(name)
    if not force and state_of(entry, destination, record) in ("verified", "recorded"):
        return destination
    directory.mkdir(parents=True, exist_ok=True)
    staged = destination.with_name(destination.name + ".part")
    errors: list[DownloadError] = []
    for url in entry.urls:
        try:
            download(entry, url, staged, retries=retries, progress=progress, timeout=timeout)
        except DownloadError as exc:
            errors.append(exc)
            continue
        return install_download(entry, staged, directory, url)
    if len(errors) == 1:
        raise errors[0]
    raise DownloadError(f"{entry.name}: every source failed:\n" +
                        "\n".join(f"  - {e.message}" for e in errors), hint=errors[-1].hint)


# ----------------------------------------------------------------------------- add / verify

def add_model(name: str, source: Path | str, *, home: Path | str | None = None,
              link: bool = False, force: bool = False) -> Path:
    """Install a file the user already has as model ``name`` (copied, or symlinked).

    The file's format is checked (it must look like the registry's ``kind``), it must not
    be a random tiny model from ``make-tiny``, and its sha256 must match when one is
    published; ``force`` installs it anyway. A tiny file installed with ``force`` is
    recorded as tiny, so every build that uses it warns (manifest ``dry_run``, report).

    Raises
    ------
    StimgenError
        The file does not exist or is of another kind.
    TinyModelError
        The file was written by ``stimgen models make-tiny`` (and not ``force``).
    ChecksumMismatchError
        Its sha256 differs from the published one (and not ``force``).
    """
    # inspect and tiny import network code: keep them lazy
    from stimgen.weights.inspect import detect_kind
    from stimgen.weights.tiny import tiny_evidence

    entry = get_model(name)
    source = Path(source).expanduser()
    if not source.is_file():
        raise StimgenError(f"{source}: no such file", hint=f"give the path of {entry.file}")
    kind = detect_kind(source)
    if kind != entry.kind and not force:
        raise StimgenError(
            f"{source}: this is a {kind} checkpoint, but {name} expects a {entry.kind} "
            f"checkpoint ({entry.file})",
            hint="check which file you meant (`stimgen models inspect FILE`), or pass --force")
    tiny = tiny_evidence(source, kind=kind)
    if tiny and not force:
        raise TinyModelError(
            f"{source}: this is a random tiny model written by `stimgen models make-tiny` "
            f"({tiny}), not the published {entry.file}; its outputs are noise, so it was not "
            f"installed as {name}",
            hint=f"get the published file with `stimgen models fetch {name}`; to install this "
                 "one anyway for checking the pipeline, pass --force (it is then recorded as "
                 "tiny and every build that uses it warns)")
    try:
        digest = check_file(entry, source, str(source))
    except ChecksumMismatchError:
        if not force:
            raise
        digest = sha256_file(source)
    directory = models_dir(home)
    directory.mkdir(parents=True, exist_ok=True)
    destination = directory / entry.file
    staged = destination.with_name(destination.name + ".part")
    staged.unlink(missing_ok=True)
    if link:
        staged.symlink_to(source.resolve())
    else:
        shutil.copyfile(source, staged)
    os.replace(staged, destination)
    save_record(directory, name, make_record(destination, digest, str(source.resolve()),
                                             tiny=bool(tiny)))
    return destination


def _looks_tiny(path: Path, entry: ModelEntry, digest: str) -> bool:
    """Whether an installed file is a make-tiny model (one copied in by hand, say)."""
    from stimgen.weights.tiny import tiny_evidence

    try:
        return tiny_evidence(path, kind=entry.kind, sha256=digest) is not None
    except StimgenError:        # unreadable as its kind: not a tiny model either
        return False


@dataclass(frozen=True)
class VerifyResult:
    name: str
    path: Path
    state: str             # see stimgen.weights.registry.STATES
    sha256: str | None     # measured now (None when missing)
    expected: str          # published digest, or what the registry says about it


def verify_models(names: Iterable[str] | None = None, *,
                  home: Path | str | None = None) -> list[VerifyResult]:
    """Re-hash installed files and report each model's state.

    A file is compared with the published sha256 when there is one, else with the digest
    recorded when it was installed (a changed file is then a ``mismatch`` and its old
    record is kept); the records of matching files are refreshed.
    """
    directory = models_dir(home)
    entries = [get_model(n) for n in names] if names else list(load_registry())
    results = []
    for entry in entries:
        path = directory / entry.file
        old = read_records(directory).get(entry.name)
        expected = entry.sha256 or (f"{entry.sha256_prefix}..." if entry.sha256_prefix
                                    else old.sha256 if old else entry.sha256_display)
        if not path.exists():
            results.append(VerifyResult(entry.name, path, "missing", None, expected))
            continue
        digest = sha256_file(path)
        changed = old is not None and old.sha256 != digest
        if digest_matches(entry, digest) is None and changed and not old.tiny:
            results.append(VerifyResult(entry.name, path, "mismatch", digest, expected))
            continue
        tiny = bool(old and old.tiny and not changed) or _looks_tiny(path, entry, digest)
        record = make_record(path, digest, old.source if old else "found in cache", tiny=tiny)
        save_record(directory, entry.name, record)
        results.append(VerifyResult(entry.name, path, state_of(entry, path, record), digest, expected))
    return results
