"""EmoStyle's emotion mapping: a latent offset that moves a face toward a (valence, arousal).

Owns ``EmoMappingWplus`` (one MLP per style layer, the published ``emo_mapping_wplus_2.pt``),
``EmoMappingW`` (one MLP shared by all layers) and :func:`edit_latents`, the edit
``w + M(w, (valence, arousal))`` the GPU backend applies to every identity.

Example
-------
>>> mapping = EmoMappingWplus(size=64, emotion_dim=64, latent_dim=512).eval()
>>> ws = torch.zeros(2, mapping.num_styles, 512)
>>> edit_latents(mapping, ws, torch.tensor([[0.8, 0.2], [-0.5, -0.5]])).shape
torch.Size([2, 10, 512])
"""
from __future__ import annotations

import math

import torch
from torch import nn

from stimgen.nets.stylegan2 import assert_shape

__all__ = ["EmoMappingWplus", "EmoMappingW", "edit_latents", "num_styles_for"]

#: Inputs of the emotion encoder: (valence, arousal).
EMOTION_INPUTS = 2
#: Widths of the offset MLP's hidden layers in the published checkpoints.
PUBLISHED_HIDDEN = (2048, 1024, 512)


def num_styles_for(size: int) -> int:
    """Number of ws of a StyleGAN2 generator at resolution ``size`` (18 at 1024)."""
    if size < 4 or size & (size - 1):
        raise ValueError(f"size must be a power of two >= 4, got {size}")
    return int(math.log2(size)) * 2 - 2


def _emotion_encoder(emotion_dim: int) -> nn.Sequential:
    """(valence, arousal) -> emotion embedding; keys ``emotion_enc.{0,2}``."""
    return nn.Sequential(nn.Linear(EMOTION_INPUTS, 32), nn.LeakyReLU(0.2), nn.Linear(32, emotion_dim))


def _offset_net(emotion_dim: int, latent_dim: int,
                hidden: tuple[int, int, int] = PUBLISHED_HIDDEN) -> nn.Sequential:
    """concat(w, emotion embedding) -> offset of w; keys ``{0,2,4,6}``."""
    h1, h2, h3 = hidden
    return nn.Sequential(
        nn.Linear(emotion_dim + latent_dim, h1), nn.LeakyReLU(0.2),
        nn.Linear(h1, h2), nn.LeakyReLU(0.2),
        nn.Linear(h2, h3), nn.LeakyReLU(0.2),
        nn.Linear(h3, latent_dim),
    )


class EmoMappingWplus(nn.Module):
    """Per-layer offsets in W+: layer i sees concat(ws[:, i], embed(valence, arousal))."""

    def __init__(self,
                 size: int = 1024,        # Generator resolution, pixels; sets the number of ws.
                 emotion_dim: int = 64,   # Size of the (valence, arousal) embedding.
                 latent_dim: int = 512,   # Size of one w (the generator's w_dim).
                 hidden: tuple[int, int, int] = PUBLISHED_HIDDEN,  # Offset-MLP widths (tiny test models shrink them).
                 ):
        super().__init__()
        self.size = size
        self.emotion_dim = emotion_dim
        self.latent_dim = latent_dim
        self.num_styles = num_styles_for(size)
        self.emotion_enc = _emotion_encoder(emotion_dim)
        self.latent_net = nn.ModuleList(_offset_net(emotion_dim, latent_dim, tuple(hidden))
                                        for _ in range(self.num_styles))

    def forward(self, latents: torch.Tensor, emotions: torch.Tensor) -> torch.Tensor:
        """Offsets [N, num_styles, latent_dim] for ws ``latents`` and ``emotions`` [N, 2] (v, a)."""
        assert_shape(latents, [None, self.num_styles, self.latent_dim], "latents")
        assert_shape(emotions, [latents.shape[0], EMOTION_INPUTS], "emotions")
        embedding = self.emotion_enc(emotions)
        offsets = [net(torch.cat([latents[:, i], embedding], dim=1))
                   for i, net in enumerate(self.latent_net)]
        return torch.stack(offsets, dim=1)


class EmoMappingW(nn.Module):
    """One offset in W, shared by every layer: sees concat(w, embed(valence, arousal))."""

    def __init__(self,
                 emotion_dim: int = 64,   # Size of the (valence, arousal) embedding.
                 latent_dim: int = 512,   # Size of w (the generator's w_dim).
                 hidden: tuple[int, int, int] = PUBLISHED_HIDDEN,  # Offset-MLP widths.
                 ):
        super().__init__()
        self.emotion_dim = emotion_dim
        self.latent_dim = latent_dim
        self.emotion_enc = _emotion_encoder(emotion_dim)
        self.latent_net = _offset_net(emotion_dim, latent_dim, tuple(hidden))

    def forward(self, latents: torch.Tensor, emotions: torch.Tensor) -> torch.Tensor:
        """Offset [N, latent_dim] for w ``latents`` [N, latent_dim] and ``emotions`` [N, 2] (v, a)."""
        assert_shape(latents, [None, self.latent_dim], "latents")
        assert_shape(emotions, [latents.shape[0], EMOTION_INPUTS], "emotions")
        return self.latent_net(torch.cat([latents, self.emotion_enc(emotions)], dim=1))


def edit_latents(mapping: EmoMappingWplus | EmoMappingW, ws: torch.Tensor,
                 valence_arousal: torch.Tensor) -> torch.Tensor:
    """Move ws toward a target emotion: ``ws + mapping(ws, valence_arousal)``.

    Parameters
    ----------
    mapping : EmoMappingWplus or EmoMappingW
        The trained emotion mapping.
    ws : torch.Tensor
        Latents [N, num_ws, w_dim] (W+; a W latent repeated num_ws times is fine).
    valence_arousal : torch.Tensor
        Targets [N, 2] as (valence, arousal) in [-1, 1], or [2] for one target for all.

    Returns
    -------
    torch.Tensor
        Edited ws, same shape as ``ws``. With ``EmoMappingW`` the offset is computed from
        the first w and added to every layer.
    """
    assert_shape(ws, [None, None, mapping.latent_dim], "ws")
    va = torch.as_tensor(valence_arousal, dtype=ws.dtype, device=ws.device)
    va = va.expand(ws.shape[0], EMOTION_INPUTS) if va.ndim == 1 else va
    assert_shape(va, [ws.shape[0], EMOTION_INPUTS], "valence_arousal")
    if isinstance(mapping, EmoMappingW):
        return ws + mapping(ws[:, 0], va).unsqueeze(1)
    return ws + mapping(ws, va)
