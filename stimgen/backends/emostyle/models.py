"""The emostyle model set: the device, loading the checkpoints once, their files.

Owns :func:`select_device`, :func:`load_model_set` (loaded once per process and device)
and :func:`model_files` (name, path and sha256 of each file, for the build fingerprint and
the manifest). Which models a build needs is in :mod:`stimgen.backends.model_needs`.
"""
from __future__ import annotations

import os
import tempfile
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch
from torch import nn

# which models a build needs is pure data, kept where `stimgen validate` reads it without torch
from stimgen.backends.model_needs import CORE_MODELS, PHOTO_MODELS, required_models  # noqa: F401
from stimgen.checkpoints.loaders import load_kind
from stimgen.errors import BackendUnavailableError
from stimgen.storage import sha256_file
from stimgen.weights.registry import get_model

#: Where `--dry-run` keeps its tiny random models (under the stimgen home), and their size.
DRY_RUN_FOLDER = "dry-run"
DRY_RUN_RESOLUTION = 32
DRY_RUN_MODELS = CORE_MODELS + PHOTO_MODELS


@dataclass
class ModelSet:
    """Every network of an emostyle build, in eval mode on one device, weights frozen."""

    device: torch.device
    generator: nn.Module                 # StyleGAN2-ADA Generator (mapping + synthesis)
    mapping: nn.Module                   # EmoMappingWplus: ws, (v, a) -> offsets of ws
    vggface2: nn.Module                  # ResNet50Face, identity embeddings
    emonet: nn.Module | None = None      # EmoNet, when the build rates or personalises with it

    @property
    def num_ws(self) -> int:
        return int(self.generator.num_ws)

    @property
    def w_dim(self) -> int:
        return int(self.generator.w_dim)

    @property
    def resolution(self) -> int:
        return int(self.generator.img_resolution)


def select_device(requested: str) -> torch.device:
    """The torch device for ``options.device``: "auto" is CUDA when present, else CPU.

    Raises
    ------
    BackendUnavailableError
        A CUDA device was asked for and this machine has none (or not that many).
    """
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise BackendUnavailableError(
            f'backend.options.device: "{requested}" is not a torch device',
            hint='use "auto", "cpu", "cuda" or "cuda:N"') from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if device.index is not None and device.index >= count or count == 0:
            raise BackendUnavailableError(
                f'backend.options.device is "{requested}", but this machine has '
                f"{count} CUDA device(s)",
                hint='use device: auto (CUDA when present, else CPU), or run on a GPU machine')
    elif device.type != "cpu":
        raise BackendUnavailableError(f'backend.options.device: "{requested}" is not supported',
                                      hint='use "auto", "cpu", "cuda" or "cuda:N"')
    return device


_HASHES: dict[tuple[str, int, int], str] = {}
_NETWORKS: dict[tuple[str, str, str], nn.Module] = {}


def file_sha256(path: Path) -> str:
    """sha256 of a model file, computed once per process per (path, size, mtime)."""
    stat = os.stat(path)
    key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _HASHES:
        _HASHES[key] = sha256_file(path)
    return _HASHES[key]


_TINY: dict[tuple[str, int, int], bool] = {}


def file_is_tiny(path: Path, kind: str) -> bool:
    """Whether a model file with no install record is a make-tiny model (once per file)."""
    from stimgen.errors import StimgenError
    from stimgen.weights.tiny import tiny_evidence

    stat = os.stat(path)
    key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _TINY:
        try:
            _TINY[key] = tiny_evidence(path, kind=kind, sha256=file_sha256(path)) is not None
        except StimgenError:        # unreadable as its kind: loading it will say why
            _TINY[key] = False
    return _TINY[key]


def model_files(paths: Mapping[str, Path]) -> list[dict[str, Any]]:
    """``[{name, path, sha256, tiny}]`` of the files a build uses (manifest ``backend.model_files``).

    The digest recorded at install time is used while the file is unchanged (hashing the
    published files takes seconds); ``tiny`` marks random models from ``make-tiny``: recorded
    as tiny at install, or, for a file with no record, carrying make-tiny's marker.
    """
    from stimgen.weights import model_status

    rows = []
    for name, path in sorted(paths.items()):
        status = model_status(name)
        known = (status.record is not None and status.state not in ("missing", "present")
                 and status.path.resolve() == Path(path).resolve())
        rows.append({"name": name, "path": str(path),
                     "sha256": status.record.sha256 if known else file_sha256(Path(path)),
                     "tiny": (status.state == "tiny" if known
                              else file_is_tiny(Path(path), status.entry.kind))})
    return rows


@contextmanager
def dry_run_weights(resolution: int = DRY_RUN_RESOLUTION) -> Iterator[Path]:
    """Within the block, every model lookup finds tiny random models, never the user's files.

    The models are written once by ``make-tiny`` into ``<stimgen home>/dry-run/models`` and
    reused; ``STIMGEN_HOME`` points there inside the block (worker processes inherit it), so
    the identity cache of a dry run is separate too.
    """
    from stimgen.weights import TinyWeightsWarning, model_status, stimgen_home
    from stimgen.weights.tiny import install_tiny, make_tiny

    home = stimgen_home() / DRY_RUN_FOLDER
    if not all(model_status(name, home).state == "tiny" for name in DRY_RUN_MODELS):
        with tempfile.TemporaryDirectory() as scratch:
            install_tiny(make_tiny(scratch, resolution=resolution), home=home)
    previous = os.environ.get("STIMGEN_HOME")
    os.environ["STIMGEN_HOME"] = str(home)
    try:
        with warnings.catch_warnings():     # the manifest and the report say it loudly instead
            warnings.simplefilter("ignore", TinyWeightsWarning)
            yield home
    finally:
        if previous is None:
            os.environ.pop("STIMGEN_HOME", None)
        else:
            os.environ["STIMGEN_HOME"] = previous


def load_network(name: str, path: Path, device: torch.device) -> nn.Module:
    """Registry model ``name`` from ``path`` in eval mode on ``device``, weights frozen.

    Loaded once per process, file content and device: later calls return the same module.
    The loader is the one of the model's registry ``kind`` (:mod:`stimgen.checkpoints.loaders`),
    which never runs code from a file.
    """
    key = (name, file_sha256(path), str(device))
    if key not in _NETWORKS:
        module = load_kind(get_model(name).kind, path).to(device).eval()
        module.requires_grad_(False)
        _NETWORKS[key] = module
    return _NETWORKS[key]


def load_model_set(paths: Mapping[str, Path], device: torch.device) -> ModelSet:
    """The networks in ``paths`` (registry name -> file) on ``device``, loaded once per process.

    Raises
    ------
    BackendUnavailableError
        The EmoStyle mapping was trained for another generator (number or size of ws).
    """
    generator = load_network("stylegan2_ffhq", paths["stylegan2_ffhq"], device)
    mapping = load_network("emostyle_mapping", paths["emostyle_mapping"], device)
    styles = getattr(mapping, "num_styles", generator.num_ws)
    if styles != generator.num_ws or mapping.latent_dim != generator.w_dim:
        raise BackendUnavailableError(
            f"the EmoStyle mapping {paths['emostyle_mapping']} does not fit the generator "
            f"{paths['stylegan2_ffhq']}: {styles} ws of {mapping.latent_dim} against "
            f"{generator.num_ws} ws of {generator.w_dim}",
            hint="install the mapping trained for this generator (`stimgen models list`)")
    emonet = (load_network("emonet_8", paths["emonet_8"], device)
              if "emonet_8" in paths else None)
    return ModelSet(device=device, generator=generator, mapping=mapping,
                    vggface2=load_network("vggface2_resnet50", paths["vggface2_resnet50"], device),
                    emonet=emonet)
