"""Tiny random checkpoints in the published file formats, for CPU tests and dry runs.

``make_tiny`` writes one small file per model under the published file name; the whole
loading path and the GPU backend run on them, but every output is noise.
:func:`tiny_evidence` recognises such a file later, so that it is never mistaken for the
published weights (``stimgen models add`` refuses it; builds that use it say so).
"""
from __future__ import annotations

import json
import mmap
import pickle
import shutil
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from stimgen.storage import atomic_write_bytes, sha256_file
from stimgen.weights.registry import get_model, make_record, models_dir, save_record

if TYPE_CHECKING:  # pragma: no cover - recognising a tiny file needs no torch (`stimgen rate`)
    import torch

TINY_MANIFEST = "tiny.json"
TINY_WARNING = ("RANDOM TINY MODELS written by `stimgen models make-tiny`: they load like the "
                "published checkpoints but produce noise. For testing the pipeline only.")

#: Tiny generator: the FFHQ architecture shrunk (FFHQ: 512/512, 1024 px, 32768/512 channels).
TINY_GENERATOR = dict(z_dim=64, c_dim=0, w_dim=64, img_channels=3,
                      mapping_kwargs={"num_layers": 2},
                      synthesis_kwargs={"channel_base": 1024, "channel_max": 32,
                                        "num_fp16_res": 0, "conv_clamp": 256})
TINY_EMOTION_DIM = 16
TINY_MAPPING_HIDDEN = (64, 64, 64)   # published: 2048/1024/512, 90 MB at 32 px
TINY_IDENTITIES = 16

#: Every tiny checkpoint carries ``{TINY_MARKER: {"warning": ..., "resolution": ..., "seed":
#: ...}}`` under a name no loader reads: a top-level entry of the NVIDIA pickle and of the
#: EmoStyle training dict, and an entry of the state dict's ``_metadata`` (torch's per-file
#: metadata, kept by weights-only loading) for the bare state dicts of EmoNet, FAN and
#: VGGFace2. The published keys are unchanged.
TINY_MARKER = "stimgen_tiny"


def _tiny_generator(resolution: int) -> torch.nn.Module:
    import torch

    from stimgen.nets.stylegan2 import Generator

    G = Generator(img_resolution=resolution, **TINY_GENERATOR).eval()
    with torch.no_grad():  # centre of W, so that truncation pulls toward typical faces
        ws = G.mapping(torch.randn(512, G.z_dim), None)
        G.mapping.w_avg.copy_(ws[:, 0].mean(dim=0))
    return G


def _with_marker(state: Mapping[str, Any], marker: Mapping[str, Any]) -> OrderedDict:
    """``state`` as an OrderedDict whose ``_metadata`` holds the tiny marker."""
    marked = OrderedDict(state)
    marked._metadata = OrderedDict(getattr(state, "_metadata", {}))
    marked._metadata[TINY_MARKER] = dict(marker)
    return marked


def write_generator(path: Path, resolution: int, marker: Mapping[str, Any]) -> dict:
    from stimgen.checkpoints.nvidia import write_stylegan2_pickle

    G = _tiny_generator(resolution)
    write_stylegan2_pickle(path, G, extra={TINY_MARKER: dict(marker)})
    return dict(G.init_kwargs, num_ws=G.num_ws)


def write_emo_mapping(path: Path, resolution: int, latent_dim: int,
                      marker: Mapping[str, Any]) -> dict:
    """A training checkpoint as EmoStyle saves it: mapping weights beside optimizer states."""
    import torch

    from stimgen.nets.emo_mapping import EmoMappingWplus

    config = {"size": resolution, "emotion_dim": TINY_EMOTION_DIM, "latent_dim": latent_dim,
              "hidden": list(TINY_MAPPING_HIDDEN)}
    mapping = EmoMappingWplus(**config)
    optimizer = torch.optim.Adam(mapping.parameters(), lr=1e-4)
    torch.save({"epoch": 0,
                "emo_mapping_state_dict": mapping.state_dict(),
                "generator_optimizer_state_dict": optimizer.state_dict(),
                "generator_gan_optimizer_state_dict": optimizer.state_dict(),
                TINY_MARKER: dict(marker)}, path)
    return config


def write_emonet(path: Path, n_expression: int, marker: Mapping[str, Any]) -> dict:
    """EmoNet state dict with every key under ``module.`` (as ``nn.DataParallel`` saved it)."""
    import torch

    from stimgen.nets.emonet import EmoNet

    # 32 channels instead of 256: the same keys, about 60x less compute per face.
    config = {"n_expression": n_expression, "num_modules": 1, "n_blocks": 1, "width": 32}
    state = EmoNet(**config).state_dict()
    torch.save(_with_marker({f"module.{key}": value for key, value in state.items()}, marker),
               path)
    return config


def write_vggface2(path: Path, marker: Mapping[str, Any]) -> dict:
    """Dict of numpy arrays, pickled (protocol 2, read back with latin-1 like the original)."""
    from stimgen.nets.vggface2 import ResNet50Face

    config = {"num_classes": TINY_IDENTITIES, "layers": (1, 1, 1, 1)}
    arrays = {key: value.numpy() for key, value in ResNet50Face(**config).state_dict().items()
              if not key.endswith("num_batches_tracked")}  # converted Caffe weights have none
    arrays = _with_marker(arrays, marker)
    with open(path, "wb") as handle:
        pickle.dump(arrays, handle, protocol=2)
    return {"num_classes": TINY_IDENTITIES, "layers": [1, 1, 1, 1]}


def write_fan(path: Path, marker: Mapping[str, Any]) -> dict:
    """face-alignment FAN state dict with one hourglass (2DFAN4 has four)."""
    import torch

    from stimgen.nets.emonet import FAN

    torch.save(_with_marker(FAN(num_modules=1).state_dict(), marker), path)
    return {"num_modules": 1}


def make_tiny(directory: str | Path, *, resolution: int = 32, seed: int = 0) -> dict[str, Path]:
    """Write tiny random checkpoints for every model a GPU build loads, plus ``tiny.json``.

    Files carry the published names (``ffhq.pkl``, ``emo_mapping_wplus_2.pt``,
    ``emonet_8.pth``, ``resnet50_ft_weight.pkl``, ``2DFAN4-11f355bf06.pth.tar``) and
    formats; shapes are small (``resolution`` px generator, one-hourglass FAN and EmoNet,
    one bottleneck per ResNet stage, 64-wide EmoStyle mapping MLPs). Same ``seed``, same
    files. Each file carries the :data:`TINY_MARKER` entry and ``tiny.json`` lists the
    sha256 of each, so that :func:`tiny_evidence` recognises them later.

    Returns
    -------
    dict
        Registry name -> path of the written file.

    Examples
    --------
    >>> paths = make_tiny("/tmp/tiny")    # doctest: +SKIP
    >>> sorted(paths)                     # doctest: +SKIP
    ['emonet_8', 'emostyle_mapping', 'fan_2d', 'stylegan2_ffhq', 'vggface2_resnet50']
    """
    import torch

    if resolution < 8 or resolution & (resolution - 1):
        raise ValueError(f"resolution must be a power of two >= 8, got {resolution}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path_of = {name: directory / get_model(name).file for name in
               ("stylegan2_ffhq", "emostyle_mapping", "emonet_8", "vggface2_resnet50", "fan_2d")}
    marker = {"warning": TINY_WARNING, "resolution": resolution, "seed": seed}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        configs = {"stylegan2_ffhq": write_generator(path_of["stylegan2_ffhq"], resolution,
                                                     marker)}
        configs["emostyle_mapping"] = write_emo_mapping(
            path_of["emostyle_mapping"], resolution, TINY_GENERATOR["w_dim"], marker)
        configs["emonet_8"] = write_emonet(path_of["emonet_8"], 8, marker)
        configs["vggface2_resnet50"] = write_vggface2(path_of["vggface2_resnet50"], marker)
        configs["fan_2d"] = write_fan(path_of["fan_2d"], marker)
    manifest = {
        "warning": TINY_WARNING, "resolution": resolution, "seed": seed,
        "models": {name: {"file": path.name, "kind": get_model(name).kind,
                          "config": configs[name], "size_bytes": path.stat().st_size,
                          "sha256": sha256_file(path)}
                   for name, path in path_of.items()},
    }
    atomic_write_bytes(directory / TINY_MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
    return path_of


def install_tiny(paths: dict[str, Path], *, home: Path | str | None = None) -> dict[str, Path]:
    """Copy tiny models into the cache, recorded as tiny (consumers then warn loudly).

    A later ``stimgen models fetch`` replaces them with the published files.
    """
    directory = models_dir(home)
    directory.mkdir(parents=True, exist_ok=True)
    installed = {}
    for name, source in paths.items():
        destination = directory / get_model(name).file
        staged = destination.with_name(destination.name + ".part")
        shutil.copyfile(source, staged)
        staged.replace(destination)
        save_record(directory, name, make_record(destination, sha256_file(destination),
                                                 "make-tiny", tiny=True))
        installed[name] = destination
    return installed


# ----------------------------------------------------------------------------- recognising

def tiny_marker(path: str | Path, kind: str | None = None) -> dict | None:
    """The :data:`TINY_MARKER` entry of a checkpoint file, or ``None`` if it has none.

    The file is read the way its loader reads it (weights-only torch load, or the
    restricted unpickler), so nothing in it runs; files that do not contain the marker's
    name at all (every published checkpoint) are ruled out by a byte scan, without loading.
    """
    path = Path(path)
    if not _mentions(path, TINY_MARKER.encode()):
        return None
    from stimgen.checkpoints.nvidia import read_network_pickle
    from stimgen.checkpoints.safe_pickle import BASIC_GLOBALS, NUMPY_GLOBALS, restricted_load
    from stimgen.checkpoints.torch_files import read_torch_file
    from stimgen.weights.inspect import detect_kind

    kind = kind or detect_kind(path)
    if kind == "hsemotion_onnx":        # make-tiny writes no ONNX file, and ONNX is no pickle
        return None
    if kind == "stylegan2_pickle":
        loaded: Any = read_network_pickle(path)
    elif kind == "vggface2":
        with open(path, "rb") as handle:
            loaded = restricted_load(handle, {**BASIC_GLOBALS, **NUMPY_GLOBALS},
                                     encoding="latin1", source=str(path))
    else:
        loaded = read_torch_file(path)
    for holder in (loaded, getattr(loaded, "_metadata", None)):
        if isinstance(holder, Mapping) and isinstance(holder.get(TINY_MARKER), Mapping):
            return dict(holder[TINY_MARKER])
    return None


def _mentions(path: Path, needle: bytes) -> bool:
    """Whether the bytes of ``path`` contain ``needle`` (torch zips store pickles uncompressed)."""
    if path.stat().st_size == 0:
        return False
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        return data.find(needle) != -1


def listed_in_tiny_manifest(path: str | Path, sha256: str | None = None) -> bool:
    """Whether a ``tiny.json`` beside ``path`` lists its sha256 (files of older make-tiny)."""
    path = Path(path)
    manifest = path.parent / TINY_MANIFEST
    try:
        listed = json.loads(manifest.read_text(encoding="utf-8")).get("models", {})
    except (OSError, ValueError, AttributeError):
        return False
    digests = {str(m.get("sha256")) for m in listed.values() if isinstance(m, Mapping)}
    return bool(digests) and (sha256 or sha256_file(path)) in digests


def tiny_evidence(path: str | Path, *, kind: str | None = None,
                  sha256: str | None = None) -> str | None:
    """Why ``path`` is a random tiny model from ``make-tiny``, in words; ``None`` if it is not.

    Examples
    --------
    >>> paths = make_tiny("/tmp/tiny")      # doctest: +SKIP
    >>> tiny_evidence(paths["emonet_8"])    # doctest: +SKIP
    'it carries the stimgen_tiny marker that make-tiny writes'

    A file with EmoNet's keys and neither the marker nor a ``tiny.json`` listing it:

    >>> import tempfile, torch
    >>> path = Path(tempfile.mkdtemp()) / "emonet_8.pth"
    >>> torch.save({"module.emo_fc_2.3.weight": torch.zeros(10, 128)}, path)
    >>> tiny_evidence(path) is None
    True
    """
    if tiny_marker(path, kind) is not None:
        return f"it carries the {TINY_MARKER} marker that make-tiny writes"
    if listed_in_tiny_manifest(path, sha256):
        return f"the {TINY_MANIFEST} beside it lists its sha256"
    return None
