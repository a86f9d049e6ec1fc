"""The model registry and the local cache: which checkpoints exist, where they live, which are here.

The table itself is package data (``stimgen/data/weights_registry.yaml``); the cache is
``$STIMGEN_HOME/models`` with a ``verified.json`` recording the sha256 of every installed file.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import os
import time
import warnings
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Iterable, Mapping

import yaml

from stimgen.errors import StimgenError, WeightsMissingError
from stimgen.storage import atomic_write_bytes

REGISTRY_FILE = "weights_registry.yaml"
RECORDS_FILE = "verified.json"

#: Build stages that may need downloaded weights (see ``needed_by`` in the registry).
STAGES: tuple[str, ...] = ("generate", "edit", "personalize", "rate", "identity", "align")

#: What ``models list`` shows for a hash nobody has published.
UNKNOWN_SHA256 = "unknown, recorded on first fetch"


class UnknownModelError(StimgenError):
    """A model name that is not in the registry."""


class TinyWeightsWarning(UserWarning):
    """Installed weights are random tiny test models from ``stimgen models make-tiny``."""


@dataclass(frozen=True)
class ModelEntry:
    """One published checkpoint, as listed in the registry."""

    name: str                   # registry name, e.g. "emonet_8"
    file: str                   # published file name, kept in the cache as is
    kind: str                   # checkpoint format, see stimgen.weights.inspect
    title: str                  # one line saying what the network is
    urls: tuple[str, ...]       # download sources, tried in order
    size_bytes: int | None      # exact size when known
    size_min_bytes: int | None  # smallest size a complete file can have (exact size unknown)
    size_note: str              # rough size (estimate), for humans
    sha256: str | None          # full hex digest when published/known
    sha256_prefix: str | None   # leading digest digits from the file name (torch.hub style)
    license: str                # licence of the weights, in words
    license_url: str            # where the licence text is
    citation: str               # reference to cite when using the model
    homepage: str               # the project that publishes the weights
    needed_by: tuple[str, ...]  # build stages that need the file

    @property
    def sha256_display(self) -> str:
        return self.sha256 or UNKNOWN_SHA256


#: Registry fields an entry may leave out (read as null).
OPTIONAL_FIELDS = ("size_min_bytes",)


def _entry_from_dict(raw: Mapping) -> ModelEntry:
    fields = {f.name for f in dataclasses.fields(ModelEntry)}
    raw = {name: None for name in OPTIONAL_FIELDS} | dict(raw)
    unknown = set(raw) - fields
    missing = fields - set(raw)
    if unknown or missing:  # a packaging bug, not a user error
        raise ValueError(f"registry entry {raw.get('name')!r}: unknown fields {sorted(unknown)}, "
                         f"missing fields {sorted(missing)}")
    bad_stages = set(raw["needed_by"]) - set(STAGES)
    if bad_stages:
        raise ValueError(f"registry entry {raw['name']!r}: unknown stages {sorted(bad_stages)}")
    values = dict(raw)
    values["urls"] = tuple(raw["urls"])
    values["needed_by"] = tuple(raw["needed_by"])
    return ModelEntry(**values)


@lru_cache(maxsize=1)
def load_registry() -> tuple[ModelEntry, ...]:
    """Every model stimgen knows, in registry order."""
    text = resources.files("stimgen.data").joinpath(REGISTRY_FILE).read_text(encoding="utf-8")
    return tuple(_entry_from_dict(raw) for raw in yaml.safe_load(text)["models"])


def model_names() -> tuple[str, ...]:
    return tuple(entry.name for entry in load_registry())


def get_model(name: str) -> ModelEntry:
    """The registry entry called ``name``; the error suggests the closest names."""
    for entry in load_registry():
        if entry.name == name:
            return entry
    close = difflib.get_close_matches(name, model_names(), n=3)
    hint = f"did you mean {', '.join(close)}?" if close else None
    raise UnknownModelError(
        f"unknown model {name!r}; known models: {', '.join(model_names())}",
        hint=hint or "run `stimgen models list` to see every model")


def models_for_stages(stages: Iterable[str]) -> list[ModelEntry]:
    """Registry entries needed by any of ``stages``, in registry order."""
    wanted = set(stages)
    unknown = wanted - set(STAGES)
    if unknown:
        raise ValueError(f"unknown stages {sorted(unknown)}; expected some of {STAGES}")
    return [entry for entry in load_registry() if wanted & set(entry.needed_by)]


# ----------------------------------------------------------------------------- the cache

def stimgen_home() -> Path:
    """``$STIMGEN_HOME``, else ``$XDG_CACHE_HOME/stimgen``, else ``~/.cache/stimgen``."""
    if os.environ.get("STIMGEN_HOME"):
        return Path(os.environ["STIMGEN_HOME"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "stimgen"


def models_dir(home: Path | str | None = None) -> Path:
    """Folder holding the checkpoints (not created here)."""
    return Path(home).expanduser() / "models" if home is not None else stimgen_home() / "models"


@dataclass(frozen=True)
class InstallRecord:
    """What ``verified.json`` remembers about one installed file."""

    file: str           # file name inside the models folder
    sha256: str         # digest measured when the file was installed or verified
    size_bytes: int     # size at that time
    mtime_ns: int       # modification time at that time: a changed file is re-hashed
    source: str         # URL, local path, or "make-tiny"
    recorded_at: str    # ISO time of the measurement
    tiny: bool = False  # random tiny model written by `stimgen models make-tiny`


def read_records(directory: Path) -> dict[str, InstallRecord]:
    """The install records of a models folder (empty when there are none yet)."""
    path = directory / RECORDS_FILE
    if not path.exists():
        return {}
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StimgenError(f"{path}: unreadable install records ({exc})",
                           hint="delete the file and run `stimgen models verify` to rebuild it")
    return {name: InstallRecord(**fields) for name, fields in raw.get("models", {}).items()}


def save_record(directory: Path, name: str, record: InstallRecord | None) -> None:
    """Set (or, with ``None``, drop) the record of ``name`` in ``verified.json``."""
    records = read_records(directory)
    if record is None:
        records.pop(name, None)
    else:
        records[name] = record
    payload = {"models": {n: dataclasses.asdict(r) for n, r in sorted(records.items())}}
    atomic_write_bytes(directory / RECORDS_FILE, (json.dumps(payload, indent=2) + "\n").encode())


def make_record(path: Path, sha256: str, source: str, *, tiny: bool = False) -> InstallRecord:
    stat = path.stat()
    return InstallRecord(file=path.name, sha256=sha256, size_bytes=stat.st_size,
                         mtime_ns=stat.st_mtime_ns, source=source,
                         recorded_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"), tiny=tiny)


# ----------------------------------------------------------------------------- status

#: missing: no file · present: file there, not hashed since it last changed · verified: hash
#: equals the published one · recorded: no published hash, ours recorded · mismatch: hash
#: differs from the published one · tiny: random test model from make-tiny.
STATES: tuple[str, ...] = ("missing", "present", "verified", "recorded", "mismatch", "tiny")


@dataclass(frozen=True)
class ModelStatus:
    entry: ModelEntry
    path: Path
    state: str
    record: InstallRecord | None

    @property
    def installed(self) -> bool:
        return self.state != "missing"


def digest_matches(entry: ModelEntry, sha256: str) -> bool | None:
    """Whether ``sha256`` is the published digest; ``None`` when nothing is published."""
    if entry.sha256:
        return sha256.lower() == entry.sha256.lower()
    if entry.sha256_prefix:
        return sha256.lower().startswith(entry.sha256_prefix.lower())
    return None


def state_of(entry: ModelEntry, path: Path, record: InstallRecord | None) -> str:
    """Classify an installed file without hashing it (``verify`` re-hashes)."""
    if not path.exists():
        return "missing"
    stat = path.stat()
    if record is None or (record.size_bytes, record.mtime_ns) != (stat.st_size, stat.st_mtime_ns):
        return "present"
    if record.tiny:
        return "tiny"
    match = digest_matches(entry, record.sha256)
    if match is None:
        return "recorded"
    return "verified" if match else "mismatch"


def model_status(name: str, home: Path | str | None = None) -> ModelStatus:
    entry = get_model(name)
    directory = models_dir(home)
    record = read_records(directory).get(name)
    path = directory / entry.file
    return ModelStatus(entry, path, state_of(entry, path, record), record)


def all_statuses(home: Path | str | None = None) -> list[ModelStatus]:
    directory = models_dir(home)
    records = read_records(directory)
    return [ModelStatus(e, directory / e.file, state_of(e, directory / e.file, records.get(e.name)),
                        records.get(e.name))
            for e in load_registry()]


# ----------------------------------------------------------------------------- requiring

def describe_missing(entries: Iterable[ModelEntry], directory: Path) -> str:
    """Lines naming each missing file, where to get it and under which licence."""
    lines = []
    for entry in entries:
        lines += [f"  - {entry.name}: {directory / entry.file}",
                  f"      {entry.title}",
                  f"      source:  {entry.urls[0]}",
                  f"      licence: {entry.license} ({entry.license_url})"]
    return "\n".join(lines)


def weights_missing(names: Iterable[str], *,
                    home: Path | str | None = None) -> WeightsMissingError | None:
    """The error naming every file of ``names`` not installed, with the command that
    installs them; None when all are installed.

    :func:`require_weights` raises it; `stimgen validate` prints it as a warning, so that
    the command a researcher sees before a build is the one the build would give.

    Examples
    --------
    >>> weights_missing([]) is None
    True
    """
    missing = [entry for entry in (get_model(name) for name in dict.fromkeys(names))
               if not model_status(entry.name, home).installed]
    if not missing:
        return None
    directory = models_dir(home)
    listed = " ".join(e.name for e in missing)
    return WeightsMissingError(
        f"{len(missing)} model file(s) needed here are not installed in {directory}:\n"
        + describe_missing(missing, directory),
        hint=f"run `stimgen models fetch {listed}` on a machine with internet, or, if you "
             "already have a file, `stimgen models add NAME PATH`; read each licence first "
             "(see `stimgen models list`)")


def require_weights(names: Iterable[str], *, home: Path | str | None = None) -> dict[str, Path]:
    """Paths of the installed files for ``names``, or one error naming every missing one.

    Call this before doing any work that needs the files. Random tiny models (from
    ``stimgen models make-tiny --install``, or ``models add --force`` of a make-tiny file)
    are returned too, with a :class:`TinyWeightsWarning`, so a protocol can be checked end
    to end on CPU.

    Raises
    ------
    WeightsMissingError
        Some files are not installed; the message lists file, source and licence of each.

    Examples
    --------
    >>> require_weights(["emonet_8"])  # doctest: +SKIP
    {'emonet_8': PosixPath('/home/me/.cache/stimgen/models/emonet_8.pth')}
    """
    names = list(dict.fromkeys(names))
    missing = weights_missing(names, home=home)
    if missing is not None:
        raise missing
    statuses = [model_status(name, home) for name in names]
    tiny = [s.entry.name for s in statuses if s.state == "tiny"]
    if tiny:
        warnings.warn(
            f"USING RANDOM TINY MODELS for {', '.join(tiny)} (written by `stimgen models "
            "make-tiny`, installed with --install or `models add --force`): outputs are "
            "noise, only the pipeline is being tested; run `stimgen models fetch "
            f"{' '.join(tiny)}` to install the published weights",
            TinyWeightsWarning, stacklevel=2)
    return {s.entry.name: s.path for s in statuses}
