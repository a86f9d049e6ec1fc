"""The checkpoint kinds stimgen reads and the loader of each: one table, keyed by registry ``kind``.

`stimgen models inspect` and `models add` (through :mod:`stimgen.weights.inspect`) and the
emostyle backend (:mod:`stimgen.backends.emostyle.models`) all load networks through it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from torch import nn

from stimgen.checkpoints.safe_pickle import CheckpointFormatError
from stimgen.checkpoints.torch_files import (
    as_state_dict, load_emo_mapping, load_emonet, load_vggface2, load_weights, read_torch_file,
    strip_prefix,
)


def _load_stylegan2(path: Path) -> nn.Module:
    from stimgen.checkpoints.nvidia import load_stylegan2_pickle  # the generator's code is large

    return load_stylegan2_pickle(path)


def _load_fan(path: Path) -> nn.Module:
    from stimgen.nets.emonet import FAN
    from stimgen.nets.face_landmarks import count_hourglasses

    state = strip_prefix(as_state_dict(read_torch_file(path), path))
    model = FAN(num_modules=count_hourglasses(state))
    model.init_kwargs = {"num_modules": model.num_modules}
    return load_weights(model, state, path)


def _load_hsemotion(path: Path):
    from stimgen.nets.hsemotion import load_hsemotion  # onnxruntime only when used

    return load_hsemotion(path, device="cpu")


def _load_s3fd(path: Path) -> nn.Module:
    try:
        from face_alignment.detection.sfd.net_s3fd import s3fd
    except ImportError as err:
        from stimgen.packages import FACE_ALIGNMENT

        raise CheckpointFormatError(f"{path}: reading an S3FD detector needs the face-alignment "
                                    "package", hint=FACE_ALIGNMENT.install) from err
    model = s3fd()
    model.init_kwargs = {}
    return load_weights(model, as_state_dict(read_torch_file(path), path), path)


@dataclass(frozen=True)
class CheckpointKind:
    """One kind of checkpoint file: what it is, and how to build its network from a file."""

    description: str                    # what `stimgen models inspect` says the file is
    load: Callable[[Path], Any]         # safe full load: an nn.Module, or for ONNX files an
                                        # onnxruntime network; either carries .init_kwargs


#: Every kind of the registry (``kind`` in stimgen/data/weights_registry.yaml).
KINDS: dict[str, CheckpointKind] = {
    "stylegan2_pickle": CheckpointKind(
        "StyleGAN2-ADA generator, NVIDIA pickle (torch_utils.persistence)", _load_stylegan2),
    "emo_mapping": CheckpointKind(
        "EmoStyle valence-arousal latent mapping, torch checkpoint", load_emo_mapping),
    "emonet": CheckpointKind(
        "EmoNet valence/arousal/expression network, torch state dict", load_emonet),
    "vggface2": CheckpointKind(
        "VGGFace2 ResNet identity network, latin-1 numpy pickle", load_vggface2),
    "face_alignment_fan": CheckpointKind(
        "face-alignment FAN 68-landmark network, torch state dict", _load_fan),
    "face_alignment_s3fd": CheckpointKind(
        "face-alignment S3FD face detector, torch state dict", _load_s3fd),
    "hsemotion_onnx": CheckpointKind(
        "HSEmotion EfficientNet expression + valence/arousal network, ONNX "
        "(input float32 [N, 3, 224, 224], output [N, 10])", _load_hsemotion),
}


def load_kind(kind: str, path: str | Path) -> Any:
    """Build the network of kind ``kind`` stored in ``path``, never running code from the file.

    >>> load_kind("tflite", "model.tflite")
    Traceback (most recent call last):
    ...
    KeyError: "no loader for checkpoint kind 'tflite'; known kinds: stylegan2_pickle, ..."
    """
    if kind not in KINDS:
        raise KeyError(f"no loader for checkpoint kind {kind!r}; known kinds: {', '.join(KINDS)}")
    return KINDS[kind].load(Path(path))
