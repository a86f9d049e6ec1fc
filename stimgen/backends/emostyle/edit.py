"""EmoStyle edits on the device: identity latents, ``w + M(w, (v, a))``, synthesis, uint8 images.

Owns the seed and latent-file identities (:func:`seed_latent`, :func:`read_latent`), the
batched edit-and-synthesise step (:func:`edit_faces`) and the batch size that halves itself
when the GPU runs out of memory (:class:`AdaptiveBatch`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from stimgen.errors import BackendUnavailableError, StimgenError
from stimgen.nets.emo_mapping import edit_latents
from stimgen.nets.emonet import ffhq_framing
from stimgen.nets.stylegan2 import assert_shape

PRECISIONS = ("fp32", "bf16")
T = TypeVar("T")


class LatentFileError(StimgenError):
    """A latent identity file that cannot be read or has the wrong shape."""


# ----------------------------------------------------------------------------- identities

@torch.no_grad()
def seed_latent(generator: nn.Module, seed: int, truncation_psi: float) -> torch.Tensor:
    """W+ latent [1, num_ws, w_dim] of a seed identity, on the generator's device.

    z ~ N(0, I) from ``torch.Generator().manual_seed(seed)`` on the CPU (so a seed means the
    same face on every machine), mapped with truncation toward the average face; the
    mapping network broadcasts w to every layer.
    """
    z = torch.randn([1, generator.z_dim], generator=torch.Generator().manual_seed(int(seed)))
    device = next(generator.parameters()).device
    ws = generator.mapping(z.to(device), None, truncation_psi=truncation_psi)
    assert_shape(ws, [1, generator.num_ws, generator.w_dim], "ws")
    return ws


def read_latent(path: Path, num_ws: int, w_dim: int, *, where: str = "") -> torch.Tensor:
    """W+ latent [1, num_ws, w_dim] from a ``.npy`` or ``.pt`` file (never runs code from it).

    Accepted shapes: [num_ws, w_dim], [1, num_ws, w_dim], or one w [w_dim] / [1, w_dim],
    repeated to every layer.

    Raises
    ------
    LatentFileError
        Missing file, unsupported suffix, unreadable content or a wrong shape.
    """
    where = f"{where}: " if where else ""
    if not path.is_file():
        raise LatentFileError(f"{where}latent file {path} does not exist",
                              hint="paths are relative to the protocol file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            array = torch.from_numpy(np.load(path, allow_pickle=False).astype(np.float32))
        elif suffix == ".pt":
            array = torch.load(path, map_location="cpu", weights_only=True)
        else:
            raise LatentFileError(f"{where}latent file {path} must be .npy or .pt",
                                  hint="save a W+ array with numpy.save or torch.save")
    except LatentFileError:
        raise
    except Exception as err:  # numpy and torch raise many types for damaged files
        raise LatentFileError(f"{where}cannot read latent file {path}: {err}",
                              hint="save a plain array (numpy.save) or tensor (torch.save); "
                                   "pickled objects are refused") from None
    if not isinstance(array, torch.Tensor):
        raise LatentFileError(f"{where}{path} holds a {type(array).__name__}, not a tensor",
                              hint="torch.save the W+ tensor itself, not a dict")
    return _as_wplus(array.float(), num_ws, w_dim, f"{where}{path}")


def _as_wplus(array: torch.Tensor, num_ws: int, w_dim: int, source: str) -> torch.Tensor:
    shape = tuple(array.shape)
    if shape in ((w_dim,), (1, w_dim)):
        return array.reshape(1, 1, w_dim).repeat(1, num_ws, 1)
    if shape in ((num_ws, w_dim), (1, num_ws, w_dim)):
        return array.reshape(1, num_ws, w_dim)
    raise LatentFileError(
        f"{source} has shape {list(shape)}, but this generator needs a W+ latent of shape "
        f"[{num_ws}, {w_dim}] (or one w of [{w_dim}])",
        hint="invert the face with the same generator (FFHQ 1024: [18, 512])")


# ----------------------------------------------------------------------------- edits

@dataclass
class EditedFaces:
    """One batch of edited faces, on the CPU."""

    images: np.ndarray              # uint8 [N, S, S, 3] at the output size
    crops: np.ndarray               # uint8 [N, 256, 256, 3] EmoNet's input: ffhq_framing of
    #                                 the full-resolution face, as EmoStyle frames it
    embeddings: np.ndarray | None   # [N, D] L2-normalised VGGFace2 identity embeddings


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Generator output [N, 3, H, W] in about [-1, 1] -> uint8 [N, H, W, 3] (NVIDIA's rounding)."""
    return (images * 127.5 + 128).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Square-resize [N, C, H, W]: antialiased bilinear when shrinking, bilinear when growing."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    shrinking = size < images.shape[-1]
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False,
                         antialias=shrinking)


def synthesize(synthesis: nn.Module, ws: torch.Tensor, precision: str = "fp32") -> torch.Tensor:
    """Images [N, 3, R, R] (fp32, about [-1, 1]) of ``ws`` with constant noise.

    ``precision="bf16"`` runs the synthesis under bf16 autocast on CUDA; on the CPU it is
    ignored, since CPU bf16 is slower than fp32 there and would change the images.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "bf16" and ws.device.type == "cuda":
        with torch.autocast("cuda", dtype=torch.bfloat16):
            return synthesis(ws, noise_mode="const").float()
    return synthesis(ws, noise_mode="const")


@torch.no_grad()
def edit_faces(synthesis: nn.Module, mapping: nn.Module, ws: torch.Tensor,
               valence_arousal: torch.Tensor, *, image_size: int,
               vggface2: nn.Module | None = None, precision: str = "fp32",
               edit: bool = True) -> EditedFaces:
    """Edit one identity to every (valence, arousal) and synthesise the faces.

    Parameters
    ----------
    synthesis : nn.Module
        The generator's synthesis network (or a personalised copy of it).
    mapping : nn.Module
        The EmoStyle mapping; the edit is ``ws + mapping(ws, (v, a))``.
    ws : torch.Tensor
        The identity's W+ latent [1, num_ws, w_dim] on the device.
    valence_arousal : torch.Tensor
        Targets [N, 2].
    image_size : int
        Side of the output images, pixels.
    vggface2 : nn.Module, optional
        When given, identity embeddings of the faces are returned too.
    precision : {"fp32", "bf16"}
        Synthesis precision (see :func:`synthesize`); the edit itself is always fp32.
    edit : bool
        False draws the unedited identity (one face per target row, targets ignored).

    Returns
    -------
    EditedFaces
        uint8 images and EmoNet crops (converted on the device), and the identity
        embeddings of :func:`~stimgen.backends.emostyle.losses.face_embedding` (pooled to
        256 first, the same path as personalisation's identity loss).
    """
    from stimgen.backends.emostyle.losses import face_embedding

    assert_shape(ws, [1, mapping.num_styles, mapping.latent_dim], "ws")
    va = valence_arousal.to(device=ws.device, dtype=torch.float32)
    assert_shape(va, [None, 2], "valence_arousal")
    edited = ws.expand(va.shape[0], -1, -1)
    if edit:
        edited = edit_latents(mapping, edited, va)
    images = synthesize(synthesis, edited, precision)
    embeddings = None
    if vggface2 is not None:
        faces01 = (images.clamp(-1, 1) + 1) / 2
        embeddings = face_embedding(vggface2, faces01).float().cpu().numpy()
    return EditedFaces(images=to_uint8(resize(images, image_size)).cpu().numpy(),
                       crops=to_uint8(ffhq_framing(images)).cpu().numpy(),
                       embeddings=embeddings)


# ----------------------------------------------------------------------------- memory

def is_out_of_memory(error: BaseException) -> bool:
    """True for a CUDA out-of-memory error (the only error a smaller batch can cure)."""
    oom = getattr(torch.cuda, "OutOfMemoryError", None)
    return (oom is not None and isinstance(error, oom)) or "out of memory" in str(error).lower()


class AdaptiveBatch:
    """A batch size that halves on out-of-memory and stays halved for later batches.

    >>> sizes = AdaptiveBatch(8)
    >>> sizes.map(lambda part: [len(part)], list(range(20)))
    [8, 8, 4]
    """

    def __init__(self, size: int):
        if size < 1:
            raise ValueError(f"batch size must be >= 1, got {size}")
        self.size = int(size)

    def map(self, run: Callable[[Sequence], list[T]], items: Sequence) -> list[T]:
        """``run`` over consecutive slices of ``items``; results concatenated in order."""
        results: list[T] = []
        start = 0
        while start < len(items):
            part = items[start:start + self.size]
            try:
                results.extend(run(part))
            except RuntimeError as error:
                if not is_out_of_memory(error):
                    raise
                if self.size == 1:
                    raise BackendUnavailableError(
                        "the GPU ran out of memory editing one face at a time",
                        hint="free the GPU (other processes: nvidia-smi), or use a GPU with "
                             "more memory") from error
                self.size = max(1, self.size // 2)
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                continue
            start += len(part)
        return results
