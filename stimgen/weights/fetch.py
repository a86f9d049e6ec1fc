"""Getting checkpoints into the cache: download (resumable, checksummed, atomic), add, verify.

A download streams to ``<file>.part`` next to its destination, resumes with an HTTP Range
request after a cut connection, is hashed, and only then renamed into place.
"""
from __future__ import annotations

import hashlib
import html
import http.client
import http.cookiejar
import os
import re
import shutil
import socket
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Iterable

from tqdm import tqdm

from stimgen.errors import StimgenError
from stimgen.weights.registry import (
    ModelEntry, digest_matches, get_model, load_registry, make_record, models_dir, read_records,
    save_record, state_of,
)

CHUNK_BYTES = 1 << 20
USER_AGENT = "stimgen-models-fetch/1 (+https://github.com/stimgen)"
#: An HTML page bigger than this is not a Google Drive confirm page.
MAX_PAGE_BYTES = 1 << 20

_CUT_ERRORS = (http.client.IncompleteRead, ConnectionError, TimeoutError, socket.timeout,
               urllib.error.URLError)


class DownloadError(StimgenError):
    """A model file could not be downloaded; nothing was installed."""


class ChecksumMismatchError(DownloadError):
    """A file's sha256 (or size) is not the published one; it was not installed."""


class TinyModelError(StimgenError):
    """A random tiny model from ``stimgen models make-tiny`` offered as real weights."""


# ----------------------------------------------------------------------------- hashing

def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_file(entry: ModelEntry, path: Path, source: str) -> str:
    """Hash ``path`` and compare with the registry; return the digest or raise.

    Raises
    ------
    ChecksumMismatchError
        The size or sha256 differs from the published one.
    """
    size = path.stat().st_size
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


# ----------------------------------------------------------------------------- Google Drive

class _FormParser(HTMLParser):
    """Collects each ``<form>``'s action and its named ``<input>`` values."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append((values.get("action", ""), {}))
        elif tag == "input" and self.forms and values.get("name"):
            self.forms[-1][1][values["name"]] = values.get("value", "")


def drive_confirm_url(page: str, page_url: str,
                      cookies: Iterable[http.cookiejar.Cookie] = ()) -> str | None:
    """The URL that confirms a Google Drive "can't scan this file for viruses" page.

    Drive answers a large file with an HTML page instead of the file. Newer pages hold a
    form (``action=.../download`` with hidden ``id``, ``export``, ``confirm``, ``uuid``);
    older ones a link with ``confirm=TOKEN`` and a ``download_warning*`` cookie whose
    value is the token. Returns ``None`` when the page is none of these (e.g. a quota page).

    >>> drive_confirm_url('<form action="/download"><input name="id" value="X">'
    ...                   '<input name="confirm" value="t"></form>', "https://d.example/uc?id=X")
    'https://d.example/download?id=X&confirm=t'
    """
    parser = _FormParser()
    parser.feed(page)
    for action, fields in parser.forms:
        if "confirm" in fields or "uuid" in fields:
            return urllib.parse.urljoin(page_url, action or page_url) + "?" + urllib.parse.urlencode(fields)
    link = re.search(r'href="([^"]*[?&](?:amp;)?confirm=[^"]+)"', page)
    if link:
        return urllib.parse.urljoin(page_url, html.unescape(link.group(1)))
    for cookie in cookies:
        if cookie.name.startswith("download_warning"):
            return _with_query(page_url, confirm=cookie.value)
    return None


def _with_query(url: str, **params: str) -> str:
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query))
    query.update(params)
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


# ----------------------------------------------------------------------------- download

@dataclass
class _Session:
    """One opener with a cookie jar, so Drive's confirm cookie reaches the second request."""

    timeout: float
    cookies: http.cookiejar.CookieJar

    @classmethod
    def new(cls, timeout: float) -> "_Session":
        return cls(timeout, http.cookiejar.CookieJar())

    def open(self, url: str, offset: int) -> http.client.HTTPResponse:
        headers = {"User-Agent": USER_AGENT}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))
        return opener.open(urllib.request.Request(url, headers=headers), timeout=self.timeout)


def _unreachable(entry: ModelEntry, url: str, reason: object) -> DownloadError:
    return DownloadError(
        f"{entry.name}: could not download {url}: {reason}",
        hint=f"check the network connection; on an offline machine, download {entry.file} "
             f"elsewhere ({entry.urls[0]}) and run `stimgen models add {entry.name} PATH`")


def _resume_offset(response: http.client.HTTPResponse, offset: int) -> int:
    """Where the body starts in the file: ``offset`` for a matching 206, else 0 (restart)."""
    if response.status != 206:
        return 0
    match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
    return offset if match and int(match.group(1)) == offset else 0


def download_to_part(entry: ModelEntry, url: str, part: Path, *, session: _Session,
                     retries: int = 3, progress: bool = True) -> None:
    """Stream ``url`` into ``part``, resuming from what ``part`` already holds.

    A connection cut mid-file is retried ``retries`` times with a Range request from the
    last byte written; a Google Drive confirm page is followed once.

    Raises
    ------
    DownloadError
        HTTP error (404, ...), unreachable host, an HTML page instead of the file, or more
        cuts than ``retries``. ``part`` is kept so that running the command again resumes.
    """
    cuts = 0
    confirmed = False
    while True:
        offset = part.stat().st_size if part.exists() else 0
        try:
            response = session.open(url, offset)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and offset:  # the .part already holds the whole file
                return
            raise DownloadError(
                f"{entry.name}: {url} answered HTTP {exc.code} {exc.reason}",
                hint=("the file has moved or the link expired; see " + entry.homepage +
                      f" for its current location, download it and run "
                      f"`stimgen models add {entry.name} PATH`")) from None
        except (urllib.error.URLError, OSError) as exc:
            raise _unreachable(entry, url, getattr(exc, "reason", exc)) from None
        with response:
            if response.headers.get_content_type() == "text/html":
                page = response.read(MAX_PAGE_BYTES).decode("utf-8", "replace")
                confirm = None if confirmed else drive_confirm_url(page, response.geturl(), session.cookies)
                if confirm is None:
                    raise DownloadError(
                        f"{entry.name}: {url} returned a web page instead of {entry.file} "
                        "(Google Drive shows one when its download quota is exceeded)",
                        hint=f"open the link in a browser, download {entry.file}, then run "
                             f"`stimgen models add {entry.name} PATH`")
                url, confirmed = confirm, True
                continue
            start = _resume_offset(response, offset)
            length = response.headers.get("Content-Length")
            total = start + int(length) if length is not None else None
            try:
                _stream(response, part, start, total, label=entry.file, progress=progress)
            except _CUT_ERRORS as exc:
                cuts += 1
                if cuts > retries:
                    raise DownloadError(
                        f"{entry.name}: the connection to {url} was cut {cuts} times "
                        f"({type(exc).__name__}); {part.stat().st_size} bytes kept in {part}",
                        hint="run the same command again to resume where it stopped") from None
                continue
            return


def _stream(response: http.client.HTTPResponse, part: Path, start: int, total: int | None,
            *, label: str, progress: bool) -> None:
    with open(part, "r+b" if start else "wb") as handle, \
            tqdm(total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024,
                 desc=label, disable=not progress, leave=False) as bar:
        handle.seek(start)
        handle.truncate()
        for chunk in iter(lambda: response.read(CHUNK_BYTES), b""):
            handle.write(chunk)
            bar.update(len(chunk))
    if total is not None and part.stat().st_size < total:
        raise http.client.IncompleteRead(b"", total - part.stat().st_size)


def install_part(entry: ModelEntry, part: Path, directory: Path, source: str, *,
                 tiny: bool = False) -> Path:
    """Check ``part`` against the registry and rename it into place (removed on mismatch)."""
    try:
        digest = check_file(entry, part, source)
    except ChecksumMismatchError:
        part.unlink(missing_ok=True)
        raise
    destination = directory / entry.file
    os.replace(part, destination)
    save_record(directory, entry.name, make_record(destination, digest, source, tiny=tiny))
    return destination


def fetch_model(name: str, *, home: Path | str | None = None, force: bool = False,
                progress: bool = True, retries: int = 3, timeout: float = 60.0) -> Path:
    """Download the model ``name`` into the cache and return its path.

    Already installed and checked files are kept unless ``force``; a tiny test model or an
    unchecked file is replaced. The sha256 is checked when the registry has one, and
    recorded in ``verified.json`` either way.

    Raises
    ------
    DownloadError, ChecksumMismatchError
        Nothing is installed; the message names the URL and what to do.
    """
    entry = get_model(name)
    directory = models_dir(home)
    destination = directory / entry.file
    record = read_records(directory).get(name)
    if not force and state_of(entry, destination, record) in ("verified", "recorded"):
        return destination
    directory.mkdir(parents=True, exist_ok=True)
    part = destination.with_name(destination.name + ".part")
    session = _Session.new(timeout)
    errors: list[DownloadError] = []
    for url in entry.urls:
        try:
            download_to_part(entry, url, part, session=session, retries=retries, progress=progress)
        except DownloadError as exc:
            errors.append(exc)
            continue
        return install_part(entry, part, directory, url)
    if len(errors) == 1:
        raise errors[0]
    raise DownloadError(f"{entry.name}: every source failed:\n" +
                        "\n".join(f"  - {e.message}" for e in errors), hint=errors[-1].hint)


def fetch_models(names: Iterable[str], **kwargs) -> dict[str, Path]:
    """:func:`fetch_model` for each name, in order; stops at the first failure."""
    return {name: fetch_model(name, **kwargs) for name in names}


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
