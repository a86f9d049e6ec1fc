"""What a checkpoint file is: format detection and a safe full load of any supported kind.

Backs `stimgen models inspect FILE` and the format check of `stimgen models add`; loading
goes through the kind table of :mod:`stimgen.checkpoints.loaders`, never plain pickle.
"""
from __future__ import annotations

import pickletools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import torch

from stimgen.checkpoints.loaders import KINDS, load_kind
from stimgen.checkpoints.safe_pickle import CheckpointFormatError, UnsafePickleError
from stimgen.checkpoints.torch_files import EMO_MAPPING_KEY, read_torch_file

ZIP_MAGIC = b"PK\x03\x04"
#: An ONNX ModelProto starts with field 1, ``ir_version`` (a varint: tag byte 0x08).
ONNX_FIRST_BYTE = b"\x08"
#: ``torch.save``'s legacy (non-zip) format opens with this magic number, pickled.
LEGACY_TORCH_MAGIC = b"\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
SNIFF_BYTES = 1 << 16


class UnknownCheckpointError(CheckpointFormatError):
    """A file that is none of the checkpoint formats stimgen reads."""


def _unknown(path: Path, why: str) -> UnknownCheckpointError:
    return UnknownCheckpointError(
        f"{path}: not a checkpoint stimgen knows ({why})",
        hint="supported: " + "; ".join(k.description for k in KINDS.values()) +
             ". See `stimgen models list` for the published files")


def pickle_globals(data: bytes) -> list[str]:
    """``module.name`` of every global a pickle asks for, read from its opcodes (not run).

    ``STACK_GLOBAL`` takes its names from the two strings pushed before it; a pickle that
    fetches them from its memo instead is reported as ``?``.
    """
    names, strings = [], []
    try:
        for opcode, arg, _ in pickletools.genops(data):
            if opcode.name == "GLOBAL":
                names.append(str(arg).replace(" ", "."))
            elif opcode.name == "STACK_GLOBAL":
                names.append(".".join(strings[-2:]) if len(strings) >= 2 else "?")
            elif isinstance(arg, str) and "UNICODE" in opcode.name:
                strings.append(arg)
            if opcode.name == "STOP":
                break
    except (ValueError, EOFError):  # truncated head: report what was read
        pass
    return list(dict.fromkeys(names))


def kind_of_state(obj: object) -> str | None:
    """Kind of a loaded torch checkpoint, from its keys; ``None`` if unrecognised."""
    if isinstance(obj, Mapping) and EMO_MAPPING_KEY in obj:
        return "emo_mapping"
    if isinstance(obj, Mapping) and "state_dict" in obj:
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        return None
    keys = {str(k).removeprefix("module.") for k in obj}
    if "emotion_enc.0.weight" in keys:
        return "emo_mapping"
    if "emo_fc_2.3.weight" in keys:
        return "emonet"
    if {"conv_last0.weight", "l0.weight", "conv1.weight"} <= keys:
        return "face_alignment_fan"
    if {"conv1_1.weight", "conv3_3_norm.weight"} <= keys:
        return "face_alignment_s3fd"
    return None


def detect_kind(path: str | Path) -> str:
    """The kind of checkpoint at ``path``, from its content (never by running it).

    Pickles are recognised by the modules they name (NVIDIA's persistence module, numpy),
    torch files by the keys of their state dict.

    Raises
    ------
    UnknownCheckpointError
        Not one of :data:`KINDS`.
    UnsafePickleError
        A torch file that weights-only loading refuses.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointFormatError(f"{path}: no such file")
    with open(path, "rb") as handle:
        head = handle.read(SNIFF_BYTES)
    if head.startswith(ZIP_MAGIC) or (head[:1] == b"\x80" and LEGACY_TORCH_MAGIC in head[:32]):
        kind = kind_of_state(read_torch_file(path))
        if kind is None:
            raise _unknown(path, "a torch file whose keys match no supported network")
        return kind
    if head[:1] == ONNX_FIRST_BYTE or path.suffix.lower() == ".onnx":
        return _onnx_kind(path)
    if head[:1] != b"\x80":
        raise _unknown(path, "neither a pickle, a torch zip file nor ONNX")
    if b"torch_utils.persistence" in head:
        return "stylegan2_pickle"
    if b"numpy" in head:
        return "vggface2"
    names = pickle_globals(path.read_bytes())
    if names:
        raise UnsafePickleError(
            f"{path}: refused: a pickle of no supported kind that asks for "
            f"{', '.join(names)}; nothing from the file was run",
            hint="only load checkpoints from sources you trust; see `stimgen models list` "
                 "for the published files")
    raise _unknown(path, "a pickle of plain data, not a network")


def _onnx_kind(path: Path) -> str:
    """The kind of an ONNX file: the only ONNX network stimgen reads is HSEmotion's, whose
    check (input name and shape, output width) tells it from any other ONNX model."""
    from stimgen.nets.hsemotion import load_hsemotion

    load_hsemotion(path, device="cpu")       # raises HSEmotionModelError naming the mismatch
    return "hsemotion_onnx"


# ----------------------------------------------------------------------------- full load

@dataclass(frozen=True)
class CheckpointInfo:
    """What ``stimgen models inspect`` reports about one file."""

    path: Path
    kind: str                          # one of KINDS
    config: dict = field(default_factory=dict)  # constructor arguments of the network
    parameter_count: int = 0           # weights of the network built from it (0: unknown)
    network: str = ""                  # class that was built

    @property
    def description(self) -> str:
        return KINDS[self.kind].description


def _parameter_count(model) -> int:
    if isinstance(model, torch.nn.Module):
        return sum(p.numel() for p in model.parameters())
    return model.parameter_count() or 0      # an ONNX network: its stored weights


def load_checkpoint(path: str | Path, kind: str | None = None) -> torch.nn.Module:
    """Build the network stored in ``path`` (kind detected unless given), safely.

    The returned module is in eval mode and carries its constructor arguments in
    ``.init_kwargs``.
    """
    path = Path(path)
    return load_kind(kind or detect_kind(path), path)


def inspect_checkpoint(path: str | Path) -> CheckpointInfo:
    """Detect, load and describe a checkpoint file.

    Raises
    ------
    UnsafePickleError
        The file asks to run code (an unsafe global); the message names it.
    CheckpointFormatError, UnknownCheckpointError
        The file is truncated or of no supported kind.

    Examples
    --------
    >>> info = inspect_checkpoint("models/emonet_8.pth")   # doctest: +SKIP
    >>> info.kind, info.config["n_expression"]             # doctest: +SKIP
    ('emonet', 8)
    """
    path = Path(path)
    kind = detect_kind(path)
    model = load_kind(kind, path)
    return CheckpointInfo(path=path, kind=kind, config=dict(getattr(model, "init_kwargs", {})),
                          parameter_count=_parameter_count(model), network=type(model).__name__)
