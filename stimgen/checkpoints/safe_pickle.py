"""Restricted unpickling: read a pickle without letting it run code.

Every global a pickle names is looked up in an explicit allow-list; anything else
(``os.system``, ``builtins.eval``, a class from the file's own source, ...) is refused
before it can be called, with an :class:`UnsafePickleError` naming the global and the file.

Example
-------
>>> import io, pickle
>>> from collections import OrderedDict
>>> data = pickle.dumps(OrderedDict(a=1))
>>> restricted_load(io.BytesIO(data), BASIC_GLOBALS) == OrderedDict(a=1)
True
"""
from __future__ import annotations

import _codecs
import _compat_pickle
import collections
import io
import pickle
from typing import IO, Any, Callable, Mapping

import numpy as np
import torch

from stimgen.errors import StimgenError

__all__ = [
    "UnsafePickleError",
    "CheckpointFormatError",
    "restricted_load",
    "BASIC_GLOBALS",
    "NUMPY_GLOBALS",
    "TORCH_TENSOR_GLOBALS",
]

Allowed = Mapping[tuple[str, str], object]


class UnsafePickleError(StimgenError):
    """A pickle asked for a global outside the allow-list; nothing from it was run."""


class CheckpointFormatError(StimgenError):
    """A checkpoint file that is truncated, corrupt, or not of the expected kind."""


_TRUST_HINT = ("only load checkpoints from sources you trust; if this is a genuine published "
               "checkpoint, check that it is the file the model registry names (`stimgen models verify`)")


# --- Stand-ins for library functions whose originals are unsafe or too permissive ----------

def _storage_from_bytes(data: bytes) -> Any:
    """Rebuild a tensor storage pickled as ``torch.storage._load_from_bytes(b)``.

    The original calls torch.load in its unsafe (full-pickle) mode on the embedded bytes, which
    would re-open the door this module closes; the bytes hold only a storage, so the
    weights-only loader reads them.
    """
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafePickleError("refused to load: an embedded tensor storage holds more than "
                                f"tensor data ({str(exc).splitlines()[0]})", hint=_TRUST_HINT) from None


def _rebuild_from_type(func: Callable, new_type: type, args: tuple, state: Any) -> torch.Tensor:
    """Safe ``torch._tensor._rebuild_from_type_v2``: only plain tensors and parameters, no state."""
    if new_type not in (torch.Tensor, torch.nn.Parameter):
        raise pickle.UnpicklingError(f"tensor subclass {new_type!r} is not supported")
    if state:
        raise pickle.UnpicklingError("tensors carrying Python attributes are not supported")
    tensor = func(*args)
    return tensor if type(tensor) is new_type else tensor.as_subclass(new_type)


def _numpy_globals() -> dict[tuple[str, str], object]:
    """numpy array/scalar reconstruction (no object creation beyond arrays) under both the numpy 1 and numpy 2 module names."""
    core = getattr(np, "_core", None) or np.core  # numpy 2 renamed numpy.core to numpy._core
    table: dict[tuple[str, str], object] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for package in ("numpy.core", "numpy._core"):
        table[(f"{package}.multiarray", "_reconstruct")] = core.multiarray._reconstruct  # noqa: SLF001
        table[(f"{package}.multiarray", "scalar")] = core.multiarray.scalar
        table[(f"{package}.numeric", "_frombuffer")] = core.numeric._frombuffer  # protocol 5 arrays
    return table


#: Containers every pickle of plain data may use (``_codecs.encode`` is how protocol 2
#: stores ``bytes``; it only turns a str into bytes).
BASIC_GLOBALS: dict[tuple[str, str], object] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("_codecs", "encode"): _codecs.encode,
}

#: numpy arrays, dtypes and scalars (arrays of Python objects still go through the allow-list).
NUMPY_GLOBALS: dict[tuple[str, str], object] = _numpy_globals()

#: torch tensors and parameters as ``pickle.dump`` writes them (not ``torch.save``).
TORCH_TENSOR_GLOBALS: dict[tuple[str, str], object] = {
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,  # noqa: SLF001
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,  # noqa: SLF001
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type,
    ("torch.storage", "_load_from_bytes"): _storage_from_bytes,
}


# --- The unpickler -------------------------------------------------------------------------

class _RestrictedUnpickler(pickle.Unpickler):
    """A ``pickle.Unpickler`` whose ``find_class`` answers only from an allow-list."""

    def __init__(self, fileobj: IO[bytes], allowed: Allowed, source: str, **kwargs: Any):
        super().__init__(fileobj, **kwargs)
        self._allowed = allowed
        self._source = source

    def find_class(self, module: str, name: str) -> object:
        # Python 2 names (__builtin__.set, copy_reg, ...) mapped as pickle.Unpickler does.
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self._source}: refused to load: the pickle asks for '{module}.{name}', "
                "which is not on the allow-list for this kind of file; nothing from the file was run",
                hint=_TRUST_HINT,
            ) from None


def _describe(fileobj: IO[bytes]) -> str:
    return str(getattr(fileobj, "name", None) or "<in-memory pickle>")


def restricted_load(fileobj: IO[bytes], allowed: Allowed, *, encoding: str = "ASCII",
                    persistent_load: Callable[[Any], object] | None = None,
                    source: str | None = None) -> object:
    """Unpickle ``fileobj`` resolving globals only through ``allowed``.

    Parameters
    ----------
    fileobj : binary file object
        Open pickle stream, positioned at the start of the pickle.
    allowed : mapping of (module, name) to object
        The only globals the pickle may name, and what each resolves to (often a safe
        stand-in rather than the original). Combine the tables of this module, e.g.
        ``{**BASIC_GLOBALS, **NUMPY_GLOBALS}``.
    encoding : str
        How to decode Python 2 ``str`` objects (``'latin1'`` for numpy pickles from Python 2).
    persistent_load : callable, optional
        Resolver for persistent ids; without one, a pickle that uses them is refused.
    source : str, optional
        Name of the file for messages; defaults to ``fileobj.name``.

    Returns
    -------
    object
        The unpickled object.

    Raises
    ------
    UnsafePickleError
        The pickle names a global outside ``allowed``.
    CheckpointFormatError
        The stream is truncated or not a pickle.
    """
    source = source or _describe(fileobj)
    unpickler = _RestrictedUnpickler(fileobj, allowed, source, encoding=encoding)
    if persistent_load is not None:
        unpickler.persistent_load = persistent_load
    try:
        return unpickler.load()
    except UnsafePickleError as exc:
        if exc.message.startswith(source):
            raise
        raise UnsafePickleError(f"{source}: {exc.message}", hint=exc.hint) from None
    except StimgenError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError,
            AttributeError, RuntimeError) as exc:
        raise CheckpointFormatError(
            f"{source}: not a readable pickle ({type(exc).__name__}: {exc})",
            hint="the file may be truncated or of another format; fetch it again with "
                 "`stimgen models fetch` or check its sha256 with `stimgen models verify`",
        ) from exc
