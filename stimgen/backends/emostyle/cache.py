"""The identity cache: inversions and personalised generators, reused across builds and protocols.

Owns the cache key (photo bytes + settings + model files), the entry layout under
``$STIMGEN_HOME/cache/identities/<key>/`` and safe, atomic reads and writes of entries.

An entry is two files: ``payload.pt`` (``torch.save`` of a dict of tensors, numbers and
strings, read back with ``torch.load(weights_only=True)``) and ``entry.json``, written last,
which records the payload's sha256. An entry whose json is missing, unreadable, or does not
match its payload is treated as absent, removed with a warning, and recomputed.
"""
from __future__ import annotations

import io
import json
import re
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch

from stimgen.storage import atomic_write_bytes, atomic_write_json, sha256_bytes
from stimgen.weights.registry import stimgen_home

#: Bump when what is cached, or how it is computed, changes: old entries stop matching.
CACHE_FORMAT = 2
PAYLOAD_FILE = "payload.pt"
ENTRY_FILE = "entry.json"
_KEY = re.compile(r"^[0-9a-f]{64}$")


class CacheWarning(UserWarning):
    """A damaged cache entry was found and removed; it will be recomputed."""


def identities_dir(home: str | Path | None = None) -> Path:
    """``<home>/cache/identities``; ``home`` defaults to ``$STIMGEN_HOME`` (see ``stimgen_home``)."""
    root = Path(home).expanduser() if home is not None else stimgen_home()
    return root / "cache" / "identities"


def identity_cache_key(photo_bytes: bytes, settings: dict[str, Any],
                       model_hashes: dict[str, str]) -> str:
    """sha256 naming the cache entry of one photo identity.

    Parameters
    ----------
    photo_bytes : bytes
        The photo file's bytes, exactly as on disk (not the decoded pixels).
    settings : dict
        Everything else that changes the result (resolution, inversion and
        personalisation settings, face policy ...); JSON-serialisable.
    model_hashes : dict of str to str
        sha256 of every model file used, by registry name.

    Examples
    --------
    >>> key = identity_cache_key(b"...", {"steps": 500}, {"stylegan2_ffhq": "ab12"})
    >>> len(key), key == identity_cache_key(b"...", {"steps": 500}, {"stylegan2_ffhq": "ab12"})
    (64, True)
    """
    record = {"format": CACHE_FORMAT, "photo": sha256_bytes(photo_bytes),
              "settings": settings, "models": model_hashes}
    try:
        text = json.dumps(record, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as err:
        raise TypeError(f"identity cache settings must be plain JSON data: {err}") from err
    return sha256_bytes(text.encode("utf-8"))


def entry_dir(key: str, home: str | Path | None = None) -> Path:
    """Folder of the entry ``key`` (a 64-character lowercase hex digest)."""
    if not isinstance(key, str) or not _KEY.match(key):
        raise ValueError(f"cache key must be a sha256 hex digest, got {key!r}")
    return identities_dir(home) / key


def load_cached(key: str, *, home: str | Path | None = None) -> dict | None:
    """The payload stored under ``key``, tensors on the CPU; None if absent or damaged.

    A damaged entry (missing or unreadable ``entry.json``, checksum mismatch, a payload
    ``torch.load(weights_only=True)`` refuses) is removed with a :class:`CacheWarning`.
    """
    folder = entry_dir(key, home)
    if not folder.exists():
        return None
    try:
        entry = json.loads((folder / ENTRY_FILE).read_text(encoding="utf-8"))
        data = (folder / PAYLOAD_FILE).read_bytes()
        if entry.get("format") != CACHE_FORMAT or entry.get("sha256") != sha256_bytes(data):
            raise ValueError("checksum or format mismatch")
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        if not isinstance(payload, dict):
            raise ValueError(f"payload is a {type(payload).__name__}, not a dict")
    except Exception as err:  # any damage means: recompute; never trust a partial entry
        warnings.warn(f"identity cache entry {folder} is damaged ({err}); removing it, the "
                      f"identity will be recomputed", CacheWarning, stacklevel=2)
        shutil.rmtree(folder, ignore_errors=True)
        return None
    return payload


def store_cached(key: str, payload: dict, *, home: str | Path | None = None) -> Path:
    """Store ``payload`` under ``key`` atomically; return the payload file's path.

    ``payload`` may hold tensors (saved from the CPU), numbers, strings, booleans, None,
    and lists, tuples and dicts of those. Readers see the old entry, no entry, or the
    complete new one, never a partial file.
    """
    if not isinstance(payload, dict):
        raise TypeError(f"payload must be a dict, got {type(payload).__name__}")
    buffer = io.BytesIO()
    torch.save(_to_cpu(payload), buffer)
    data = buffer.getvalue()
    folder = entry_dir(key, home)
    atomic_write_bytes(folder / PAYLOAD_FILE, data)
    atomic_write_json(folder / ENTRY_FILE, {"format": CACHE_FORMAT, "sha256": sha256_bytes(data),
                                            "size_bytes": len(data),
                                            "keys": sorted(map(str, payload))})
    return folder / PAYLOAD_FILE


def _to_cpu(value: Any, where: str = "payload") -> Any:
    """``value`` with every tensor detached and on the CPU; TypeError for what
    ``torch.load(weights_only=True)`` would refuse."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {k: _to_cpu(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v, f"{where}[{i}]") for i, v in enumerate(value))
    raise TypeError(f"{where} is a {type(value).__name__}; the identity cache stores tensors, "
                    f"numbers, strings and lists/dicts of them (convert arrays with "
                    f"torch.from_numpy)")
