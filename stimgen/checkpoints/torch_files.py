"""Loaders for the torch and numpy checkpoints: EmoStyle mapping, EmoNet, VGGFace2 ResNet-50.

Each file is read without running code from it (``torch.load(weights_only=True)``, or the
restricted unpickler for the latin-1 numpy pickle); the architecture is read off the keys.
"""
from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
from torch import nn

from stimgen.checkpoints.safe_pickle import (
    BASIC_GLOBALS, NUMPY_GLOBALS, CheckpointFormatError, UnsafePickleError, restricted_load,
)

State = Mapping[str, torch.Tensor]

#: Key under which EmoStyle's training script saves the mapping (beside optimizer states).
EMO_MAPPING_KEY = "emo_mapping_state_dict"


# ----------------------------------------------------------------------------- reading

def read_torch_file(path: str | Path) -> object:
    """``torch.load(path, weights_only=True)`` on CPU, with errors a user can act on.

    Raises
    ------
    UnsafePickleError
        The file asks for a global that weights-only loading refuses (it may run code).
    CheckpointFormatError
        The file is missing, truncated, or not a torch checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointFormatError(f"{path}: no such file",
                                    hint="check the path, or `stimgen models list`")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        refused = re.search(r"unsupported global:? (?:GLOBAL )?([\w.]+)", str(exc), re.IGNORECASE)
        if refused or "weights only load failed" in str(exc).lower():
            name = refused.group(1) if refused else "a global outside torch's allow-list"
            raise UnsafePickleError(
                f"{path}: refused to load: the file asks for '{name}', which a weights-only "
                "load does not allow; nothing from the file was run",
                hint="only load checkpoints from sources you trust; compare the file with the "
                     "published one (`stimgen models verify`)") from None
        raise CheckpointFormatError(f"{path}: not a readable torch checkpoint ({exc})") from None
    except (RuntimeError, EOFError, ValueError, OSError) as exc:
        raise CheckpointFormatError(
            f"{path}: not a readable torch checkpoint ({type(exc).__name__}: {exc})",
            hint="the file may be truncated; fetch it again with `stimgen models fetch`") from None


def read_numpy_pickle(path: str | Path) -> dict[str, torch.Tensor]:
    """A latin-1 pickle of a dict of numpy arrays (the VGGFace2 format) as tensors."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointFormatError(f"{path}: no such file",
                                    hint="check the path, or `stimgen models list`")
    with open(path, "rb") as handle:
        raw = restricted_load(handle, {**BASIC_GLOBALS, **NUMPY_GLOBALS}, encoding="latin1",
                              source=str(path))
    if not isinstance(raw, dict) or not all(isinstance(v, np.ndarray) for v in raw.values()):
        raise CheckpointFormatError(f"{path}: expected a dict of numpy arrays, got "
                                    f"{type(raw).__name__}")
    return {str(key): torch.from_numpy(np.ascontiguousarray(value)) for key, value in raw.items()}


def strip_prefix(state: State, prefix: str = "module.") -> dict[str, torch.Tensor]:
    """Drop ``prefix`` from keys (``nn.DataParallel`` saves every key under ``module.``)."""
    return {key.removeprefix(prefix): value for key, value in state.items()}


def as_state_dict(obj: object, path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint that should be a plain state dict."""
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointFormatError(f"{path}: expected a state dict of tensors, got "
                                    f"{type(obj).__name__}")
    return dict(obj)


def load_weights(model: nn.Module, state: State, path: str | Path) -> nn.Module:
    """Copy ``state`` into ``model`` (eval mode); every parameter must be in the file.

    BatchNorm ``num_batches_tracked`` counters may be absent (old and converted files lack
    them); keys the model does not have are reported with a warning, as the reference
    loaders ignore them.
    """
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise CheckpointFormatError(
            f"{path}: {len(missing)} weight(s) of {type(model).__name__} are not in the file "
            f"({shown})", hint="the file is another model or another version of it; check it "
                               "with `stimgen models inspect FILE`")
    if unexpected:
        warnings.warn(f"{path}: ignored {len(unexpected)} entries that "
                      f"{type(model).__name__} does not use ({', '.join(unexpected[:5])})",
                      stacklevel=3)
    return model.eval()


def _require(state: State, key: str, path: str | Path, what: str) -> torch.Tensor:
    if key not in state:
        raise CheckpointFormatError(f"{path}: no '{key}' entry, so this is not {what}",
                                    hint="check the file with `stimgen models inspect FILE`")
    return state[key]


def _indices(state: State, pattern: str) -> list[int]:
    """Sorted distinct integers captured by ``pattern`` over the keys."""
    found = {int(m.group(1)) for key in state if (m := re.fullmatch(pattern, key))}
    return sorted(found)


# ----------------------------------------------------------------------------- EmoStyle mapping

def emo_mapping_state(obj: object, path: str | Path) -> dict[str, torch.Tensor]:
    """The mapping weights of an EmoStyle checkpoint (the training dict, or a bare state)."""
    if isinstance(obj, Mapping) and EMO_MAPPING_KEY in obj:
        obj = obj[EMO_MAPPING_KEY]
    return as_state_dict(obj, path)


def emo_mapping_config(state: State, path: str | Path = "<state>") -> dict:
    """Constructor arguments of the mapping stored in ``state`` (W+ or W-only variant).

    W+ keeps one MLP per style layer (``latent_net.<i>.<j>``) and ``size`` is the image
    resolution whose generator has that many style layers (2 log2(size) - 2).
    """
    emotion_dim = _require(state, "emotion_enc.2.weight", path, "an EmoStyle mapping").shape[0]
    layers = _indices(state, r"latent_net\.(\d+)\.0\.weight")
    if layers:
        num_ws = len(layers)
        size = 2 ** ((num_ws + 2) // 2)
        if num_ws % 2 or layers != list(range(num_ws)):
            raise CheckpointFormatError(f"{path}: {num_ws} per-layer mappings do not match any "
                                        "StyleGAN2 resolution")
        latent_dim = state["latent_net.0.6.weight"].shape[0]
        return {"variant": "wplus", "size": size, "emotion_dim": emotion_dim,
                "latent_dim": latent_dim, "num_ws": num_ws,
                **_hidden_widths(state, "latent_net.0.")}
    latent_dim = _require(state, "latent_net.6.weight", path, "an EmoStyle mapping").shape[0]
    return {"variant": "w", "emotion_dim": emotion_dim, "latent_dim": latent_dim,
            **_hidden_widths(state, "latent_net.")}


def _hidden_widths(state: State, prefix: str) -> dict:
    """``{"hidden": widths}`` of the offset MLP, or {} for the published 2048/1024/512."""
    from stimgen.nets.emo_mapping import PUBLISHED_HIDDEN

    widths = tuple(int(state[f"{prefix}{i}.weight"].shape[0]) for i in (0, 2, 4))
    return {} if widths == PUBLISHED_HIDDEN else {"hidden": widths}


def load_emo_mapping(path: str | Path) -> nn.Module:
    """EmoStyle's mapping from ``emo_mapping_wplus_2.pt`` (or a W-only checkpoint).

    Returns an ``EmoMappingWplus`` (or ``EmoMappingW``) in eval mode, with its
    constructor arguments in ``.init_kwargs``.

    Examples
    --------
    >>> mapping = load_emo_mapping("emo_mapping_wplus_2.pt")   # doctest: +SKIP
    >>> mapping.init_kwargs                                     # doctest: +SKIP
    {'size': 1024, 'emotion_dim': 64, 'latent_dim': 512}
    """
    from stimgen.nets.emo_mapping import EmoMappingW, EmoMappingWplus

    state = emo_mapping_state(read_torch_file(path), path)
    config = emo_mapping_config(state, path)
    if config["variant"] == "wplus":
        kwargs = {k: config[k] for k in ("size", "emotion_dim", "latent_dim", "hidden")
                  if k in config}
        model = EmoMappingWplus(**kwargs)
    else:
        kwargs = {k: config[k] for k in ("emotion_dim", "latent_dim", "hidden") if k in config}
        model = EmoMappingW(**kwargs)
    model.init_kwargs = kwargs
    return load_weights(model, state, path)


# ----------------------------------------------------------------------------- EmoNet

def emonet_config(state: State, path: str | Path = "<state>") -> dict:
    """``EmoNet`` constructor arguments read off a (prefix-stripped) state dict."""
    head = _require(state, "emo_fc_2.3.weight", path, "an EmoNet checkpoint")
    config = {"n_expression": head.shape[0] - 2,
              "num_modules": len(_indices(state, r"l(\d+)\.weight")),
              "n_blocks": len(_indices(state, r"emo_net_2\.(\d+)\.bn1\.weight"))}
    width = _require(state, "conv1x1_input_emo_2.weight", path, "an EmoNet checkpoint").shape[0]
    if width != 256:                        # published width: left out of the config
        config["width"] = width
    return config


def load_emonet(path: str | Path) -> nn.Module:
    """EmoNet from ``emonet_8.pth`` / ``emonet_5.pth`` (``module.`` prefix stripped).

    The number of expressions (8 or 5) is read from the head; ``.init_kwargs`` holds the
    constructor arguments.
    """
    from stimgen.nets.emonet import EmoNet

    state = strip_prefix(as_state_dict(read_torch_file(path), path))
    config = emonet_config(state, path)
    model = EmoNet(**config)
    model.init_kwargs = config
    return load_weights(model, state, path)


# ----------------------------------------------------------------------------- VGGFace2

def vggface2_config(state: State, path: str | Path = "<state>") -> dict:
    """``ResNet50Face`` constructor arguments read off a state dict."""
    fc = _require(state, "fc.weight", path, "a VGGFace2 ResNet checkpoint")
    layers = tuple(len(_indices(state, rf"layer{s}\.(\d+)\.conv1\.weight")) for s in (1, 2, 3, 4))
    return {"num_classes": fc.shape[0], "layers": layers}


def load_vggface2(path: str | Path) -> nn.Module:
    """VGGFace2 ResNet-50 from ``resnet50_ft_weight.pkl`` (latin-1 numpy pickle)."""
    from stimgen.nets.vggface2 import ResNet50Face

    state = read_numpy_pickle(path)
    config = vggface2_config(state, path)
    model = ResNet50Face(**config)
    model.init_kwargs = config
    return load_weights(model, state, path)
