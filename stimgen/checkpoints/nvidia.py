"""NVIDIA network pickles (``ffhq.pkl``): read and write them without running their code.

Owns the ``torch_utils.persistence`` format of stylegan2-ada-pytorch: reading rebuilds our
:class:`~stimgen.nets.stylegan2.Generator` from each object's stored constructor arguments
and tensors; writing produces the same format for tiny test checkpoints.

In that format every network pickles as a call ``_reconstruct_persistent_obj(meta)`` with
``meta = {type: 'class', version: 6, module_src: <python source>, class_name, state}``.
NVIDIA's loader executes ``module_src``; we never do. ``state`` is the module's ``__dict__``:
``_init_args`` / ``_init_kwargs`` (the constructor call) and ``_parameters``, ``_buffers``,
``_modules`` (child networks, themselves persistent objects) are all we need.
"""
from __future__ import annotations

import contextlib
import pickle
import sys
import types
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import torch
from torch import nn

from stimgen.checkpoints.safe_pickle import (BASIC_GLOBALS, NUMPY_GLOBALS, TORCH_TENSOR_GLOBALS,
                                             CheckpointFormatError, restricted_load)
from stimgen.nets.stylegan2 import Generator

__all__ = [
    "PersistentObject",
    "read_network_pickle",
    "generator_from_record",
    "load_stylegan2_pickle",
    "write_stylegan2_pickle",
    "NVIDIA_PICKLE_GLOBALS",
    "PERSISTENCE_VERSION",
]

#: Version of ``torch_utils.persistence`` whose format we read and write.
PERSISTENCE_VERSION = 6
_PERSISTENCE_MODULE = "torch_utils.persistence"
_RECONSTRUCT = "_reconstruct_persistent_obj"
#: What we store as ``module_src``: the state alone describes our networks.
_NO_SOURCE = "# Written by stimgen. Networks are rebuilt from 'state'; this source is never run.\n"


@dataclass
class PersistentObject:
    """One network as stored in the pickle: its class name and state, never instantiated.

    ``module_src`` is kept as text so that tools can report it; nothing executes it.
    """

    class_name: str
    state: dict[str, Any]
    version: int = PERSISTENCE_VERSION
    module_src: str = field(default="", repr=False)

    @property
    def init_args(self) -> tuple:
        return tuple(self.state.get("_init_args") or ())

    @property
    def init_kwargs(self) -> dict[str, Any]:
        return _plain(self.state.get("_init_kwargs") or {})

    def children(self) -> dict[str, "PersistentObject | Any"]:
        return dict(self.state.get("_modules") or {})


class _EasyDict(dict):
    """Stand-in for ``dnnlib.util.EasyDict`` (a dict with attribute access) in stored kwargs."""


def _persistent_record(meta: Any) -> PersistentObject:
    """Replacement for ``torch_utils.persistence._reconstruct_persistent_obj``: records, never runs."""
    if not isinstance(meta, dict) or meta.get("type") != "class" or "state" not in meta:
        raise pickle.UnpicklingError("a persistent object without the expected class metadata")
    state = meta["state"]
    if not isinstance(state, dict):
        raise pickle.UnpicklingError(f"persistent object {meta.get('class_name')!r} has no state dict")
    return PersistentObject(class_name=str(meta.get("class_name")), state=dict(state),
                            version=meta.get("version"), module_src=str(meta.get("module_src", "")))


#: Every global an NVIDIA network pickle may name, and what each resolves to.
NVIDIA_PICKLE_GLOBALS: dict[tuple[str, str], object] = {
    **BASIC_GLOBALS,
    **NUMPY_GLOBALS,
    **TORCH_TENSOR_GLOBALS,
    (_PERSISTENCE_MODULE, _RECONSTRUCT): _persistent_record,
    ("dnnlib.util", "EasyDict"): _EasyDict,
    ("dnnlib", "EasyDict"): _EasyDict,
}


def _plain(value: Any) -> Any:
    """Stored configuration as plain Python: dicts, lists, ints, floats, strings."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if isinstance(value, np.generic):
        return value.item()
    return value


# --- Reading ---------------------------------------------------------------------------------

def read_network_pickle(path: str | Path) -> dict[str, Any]:
    """Read an NVIDIA network pickle into a dict whose networks are :class:`PersistentObject` s.

    Raises
    ------
    UnsafePickleError
        The file names a global outside :data:`NVIDIA_PICKLE_GLOBALS`.
    CheckpointFormatError
        The file is missing, truncated, or does not hold a dict.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointFormatError(f"{path}: no such file",
                                    hint="check the path, or install it with `stimgen models fetch`")
    with path.open("rb") as f:
        data = restricted_load(f, NVIDIA_PICKLE_GLOBALS, source=str(path))
    if not isinstance(data, dict):
        raise CheckpointFormatError(f"{path}: expected a dict of networks (G, D, G_ema, ...), "
                                    f"found {type(data).__name__}")
    return data


def _flatten_tensors(record: PersistentObject, prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """(state-dict key, tensor) for every parameter and persistent buffer, children included."""
    skip = set(record.state.get("_non_persistent_buffers_set") or ())
    for name, tensor in (record.state.get("_parameters") or {}).items():
        if tensor is not None:
            yield prefix + name, tensor
    for name, tensor in (record.state.get("_buffers") or {}).items():
        if tensor is not None and name not in skip:
            yield prefix + name, tensor
    for name, child in record.children().items():
        if isinstance(child, PersistentObject):
            yield from _flatten_tensors(child, f"{prefix}{name}.")
        elif child is not None:
            raise CheckpointFormatError(f"sub-network {prefix}{name} is a {type(child).__name__}, "
                                        "not a stored network")


def generator_from_record(record: PersistentObject, source: str = "<pickle>") -> Generator:
    """Build our :class:`Generator` from a stored generator's constructor call and tensors."""
    if not isinstance(record, PersistentObject) or record.class_name != "Generator":
        found = record.class_name if isinstance(record, PersistentObject) else type(record).__name__
        raise CheckpointFormatError(f"{source}: expected a StyleGAN2 Generator, found {found}")
    kwargs = record.init_kwargs
    try:
        G = Generator(*record.init_args, **kwargs)
    except (TypeError, ValueError) as exc:
        raise CheckpointFormatError(f"{source}: unsupported generator configuration {kwargs}: {exc}",
                                    hint="stimgen reads StyleGAN2-ADA generators; StyleGAN3 "
                                         "pickles are not supported") from exc
    state = dict(_flatten_tensors(record))
    missing, unexpected = _state_mismatch(G, state)
    if missing or unexpected:
        raise CheckpointFormatError(
            f"{source}: stored tensors do not match a StyleGAN2-ADA generator with {kwargs}: "
            f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}")
    try:
        G.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointFormatError(f"{source}: stored tensor shapes do not fit {kwargs}: {exc}") from exc
    return G.eval().requires_grad_(False)


def _state_mismatch(G: nn.Module, state: Mapping[str, torch.Tensor]) -> tuple[list[str], list[str]]:
    expected = set(G.state_dict())
    return sorted(expected - set(state)), sorted(set(state) - expected)


def load_stylegan2_pickle(path: str | Path, key: str = "G_ema") -> Generator:
    """Load a StyleGAN2-ADA generator from an NVIDIA pickle such as ``ffhq.pkl``.

    Parameters
    ----------
    path : str or Path
        The pickle file.
    key : str
        Which network of the pickle to load: ``'G_ema'`` (the one to sample from) or ``'G'``.

    Returns
    -------
    Generator
        In eval mode without gradients, on CPU; ``G.init_kwargs`` holds its configuration.

    Raises
    ------
    UnsafePickleError, CheckpointFormatError
        See :func:`read_network_pickle`; also when ``key`` is absent or not a generator.
    """
    data = read_network_pickle(path)
    if key not in data:
        raise CheckpointFormatError(f"{path}: no network under {key!r}; found {sorted(map(str, data))}",
                                    hint="published StyleGAN2-ADA pickles keep the generator under 'G_ema'")
    return generator_from_record(data[key], source=f"{path}[{key!r}]")


# --- Writing ---------------------------------------------------------------------------------

def _record_for(module: nn.Module, init_kwargs: Mapping[str, Any] | None,
                module_src: str) -> PersistentObject:
    """A module's persistent record: constructor call, CPU tensors, children as records."""
    params = OrderedDict((k, None if p is None else nn.Parameter(p.detach().cpu(), requires_grad=False))
                         for k, p in module._parameters.items())
    buffers = OrderedDict((k, None if b is None else b.detach().cpu()) for k, b in module._buffers.items())
    children = OrderedDict((k, None if m is None else _record_for(m, None, module_src))
                           for k, m in module._modules.items())
    state = {"_init_args": (), "_init_kwargs": dict(init_kwargs or {}), "training": module.training,
             "_parameters": params, "_buffers": buffers,
             "_non_persistent_buffers_set": set(module._non_persistent_buffers_set),
             "_modules": children}
    return PersistentObject(type(module).__name__, state, PERSISTENCE_VERSION, module_src)


def _reduce_record(record: PersistentObject) -> tuple:
    meta = {"type": "class", "version": record.version, "module_src": record.module_src,
            "class_name": record.class_name, "state": record.state}
    return _reconstruct_stub, (meta,)


def _reconstruct_stub(meta: Any) -> None:  # pragma: no cover - only its name is pickled
    raise RuntimeError("placeholder for torch_utils.persistence._reconstruct_persistent_obj")


_reconstruct_stub.__module__, _reconstruct_stub.__qualname__ = _PERSISTENCE_MODULE, _RECONSTRUCT


@contextlib.contextmanager
def _persistence_name() -> Iterator[Any]:
    """Make ``torch_utils.persistence._reconstruct_persistent_obj`` nameable by pickle.

    pickle writes a function by its import path and checks that the path resolves, so while
    writing, a stub module answers that name (or NVIDIA's own, if the user imported it).
    """
    existing = sys.modules.get(_PERSISTENCE_MODULE)
    if existing is not None and hasattr(existing, _RECONSTRUCT):
        yield getattr(existing, _RECONSTRUCT)
        return
    added = [name for name in ("torch_utils", _PERSISTENCE_MODULE) if name not in sys.modules]
    for name in added:
        sys.modules[name] = types.ModuleType(name)
    stub = sys.modules[_PERSISTENCE_MODULE]
    setattr(stub, _RECONSTRUCT, _reconstruct_stub)
    try:
        yield _reconstruct_stub
    finally:
        for name in added:
            del sys.modules[name]


class _PersistencePickler(pickle.Pickler):
    """Writes :class:`PersistentObject` s as persistence-format reconstruct calls."""

    def __init__(self, file, reconstruct, **kwargs):
        super().__init__(file, **kwargs)
        self._reconstruct = reconstruct

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, PersistentObject):
            _, args = _reduce_record(obj)
            return self._reconstruct, args
        return NotImplemented


def write_stylegan2_pickle(path: str | Path, G: Generator, key: str = "G_ema", *,
                           module_src: str = _NO_SOURCE,
                           extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``G`` as an NVIDIA persistence-format pickle ``{key: G, **extra}``.

    The result loads with :func:`load_stylegan2_pickle`; NVIDIA's own loader would need
    its source code in ``module_src``, which we do not ship. ``module_src`` is stored
    verbatim (tests use it to prove the loader never runs it). ``extra`` holds plain-data
    entries beside the network, as published pickles keep ``training_set_kwargs``.
    """
    if not isinstance(G, Generator):
        raise TypeError(f"G must be a stimgen Generator, got {type(G).__name__}")
    path = Path(path)
    record = _record_for(G, G.init_kwargs, module_src)
    tmp = path.with_name(path.name + ".partial")
    with _persistence_name() as reconstruct, tmp.open("wb") as f:
        _PersistencePickler(f, reconstruct, protocol=pickle.DEFAULT_PROTOCOL).dump(
            {key: record, **(extra or {})})
    tmp.replace(path)
    return path
