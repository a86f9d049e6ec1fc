"""EmoStyle phase 2: fine-tune the generator on one photographed face, the emotion mapping frozen.

Owns :class:`PersonalizeSettings` (steps, learning rate, loss weights as in the EmoStyle
paper), :func:`personalize`, which returns the tuned synthesis weights, and
:func:`personalized_generator`, which puts them into a copy of the generator.

Every step edits the inverted latent with the frozen mapping to a valence/arousal target
and scores the edited face: emotion (EmoNet VA vs the target), identity (VGGFace2 embedding,
EmoStyle's mean L1 to the photo's), pose (EmoNet landmarks of the 14 expression-stable points vs the photo's) and
background (L1 outside the face outline). Every ``reconstruction_every``-th step instead
asks for the photo's own VA and scores reconstruction (0.84 (1 - MS-SSIM) + 0.16 L1) with
all 68 landmarks in the pose term and no background term. The generator always runs in
float32 here (``force_fp32``), as in EmoStyle and PTI.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import numpy as np
import torch

from stimgen.backends.emostyle.invert import Progress, weighted_total
from stimgen.backends.emostyle.losses import EMONET_SIZE, EXPRESSION_STABLE_LANDMARKS, \
    background_loss, emonet_landmarks, emonet_scores, emotion_loss, face_embedding, face_mask, \
    face_pool, frozen, identity_loss, pose_loss, reconstruction_loss, to_unit_range, \
    valence_arousal
from stimgen.nets.emo_mapping import edit_latents
from stimgen.nets.stylegan2 import assert_shape


@dataclass(frozen=True)
class PersonalizeSettings:
    """Generator fine-tuning for one photo; weights as in the EmoStyle paper (Azari & Lim, WACV 2024)."""

    steps: int = 500                 # Adam steps
    lr: float = 3e-4                 # Adam learning rate
    w_emotion: float = 0.3           # EmoNet (valence, arousal) vs the requested VA, squared error
    w_pose: float = 0.001            # EmoNet landmarks vs the photo's, pixels^2 at 256 px
    w_background: float = 0.2        # L1 outside the face outline, edited steps only
    w_identity: float = 1.5          # EmoStyle's mean L1 between VGGFace2 embeddings
    w_reconstruction: float = 0.2    # 0.84 (1 - MS-SSIM) + 0.16 L1, reconstruction steps only
    reconstruction_every: int = 5    # every n-th step reconstructs the photo (VA of the photo)
    seed: int = 0                    # seed of the random VA targets of the other steps
    random_va_limit: float = 0.7     # random VA is uniform in [-limit, limit]^2 (EmoStyle: 0.7)

    def __post_init__(self):
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps}")
        if self.reconstruction_every < 1:
            raise ValueError(f"reconstruction_every must be >= 1, got {self.reconstruction_every}")
        if not 0 < self.random_va_limit <= 1:
            raise ValueError(f"random_va_limit must be in (0, 1], got {self.random_va_limit}")

    def loss_weights(self) -> dict[str, float]:
        """Term name -> weight, as the keys of :func:`personalization_terms`."""
        return {"emotion": self.w_emotion, "pose": self.w_pose, "background": self.w_background,
                "identity": self.w_identity, "reconstruction": self.w_reconstruction}

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PhotoTarget:
    """What the edited faces are compared with, computed once from the aligned photo."""

    image: torch.Tensor             # [1, 3, R, R] in [0, 1]
    image_small: torch.Tensor       # [1, 3, 256, 256] in [0, 1], face_pool'ed (background term)
    embedding: torch.Tensor         # [1, 2048] VGGFace2 identity embedding
    valence_arousal: torch.Tensor   # [1, 2] EmoNet's rating of the photo (EmoStyle framing)
    landmarks: torch.Tensor         # [1, 68, 2] EmoNet soft-argmax landmarks, whole frame at 256 px
    inside_face: torch.Tensor       # [1, 1, 256, 256] bool, True inside the face outline


@torch.no_grad()
def photo_target(emonet, vgg, image: torch.Tensor, landmarks) -> PhotoTarget:
    """Score the aligned photo ``image`` ([1, 3, R, R] in [-1, 1]) once for every step.

    ``landmarks`` [68, 2] are the photo's landmarks in aligned pixels
    (:attr:`AlignedFace.landmarks`); they draw the face outline of the background term.
    The pose term compares EmoNet's landmarks with EmoNet's, so a detector's bias cancels.
    """
    unit = to_unit_range(image.float())
    scores = emonet_scores(emonet, unit)
    return PhotoTarget(image=unit, image_small=face_pool(unit),
                       embedding=face_embedding(vgg, unit),
                       valence_arousal=valence_arousal(scores),
                       landmarks=emonet_landmarks(scores, unit.shape[-1]),
                       inside_face=face_mask(landmarks, EMONET_SIZE, image.shape[-1])
                       .to(image.device))


@torch.no_grad()
def photo_valence_arousal(emonet, image: torch.Tensor) -> torch.Tensor:
    """[1, 2] EmoNet's (valence, arousal) of the aligned photo ``image`` ([1, 3, R, R] in [-1, 1]).

    The VA personalisation's reconstruction steps ask for: the generator is tuned to draw
    the photo from ``ws + M(ws, this)``, so that latent is the photo identity's reference.
    """
    return valence_arousal(emonet_scores(emonet, to_unit_range(image.float())))


def is_reconstruction_step(step: int, every: int) -> bool:
    """Whether 1-based ``step`` reconstructs the photo: steps every, 2 every, ...

    >>> [s for s in range(1, 16) if is_reconstruction_step(s, 5)]
    [5, 10, 15]
    """
    return step % every == 0


def random_valence_arousal(generator: torch.Generator, limit: float) -> torch.Tensor:
    """[1, 2] (valence, arousal) uniform in [-limit, limit]^2, drawn on the CPU."""
    return (torch.rand(1, 2, generator=generator) * 2.0 - 1.0) * limit


def personalization_terms(synthesis, mapping, emonet, vgg, ws: torch.Tensor,
                          va: torch.Tensor, target: PhotoTarget,
                          reconstruction: bool) -> dict[str, torch.Tensor]:
    """Unweighted loss terms of one step (keys as :meth:`PersonalizeSettings.loss_weights`).

    Parameters
    ----------
    synthesis : SynthesisNetwork
        The network being tuned.
    mapping : EmoMappingWplus or EmoMappingW
        The frozen EmoStyle mapping that edits ``ws`` [1, num_ws, w_dim] toward ``va`` [1, 2].
    reconstruction : bool
        Reconstruction step: reconstruction term and all 68 landmarks; otherwise background
        term and the 14 :data:`EXPRESSION_STABLE_LANDMARKS`.
    """
    with torch.no_grad():   # the mapping is frozen and ws fixed: nothing upstream to train
        edited = edit_latents(mapping, ws, va)
    # fp16 layers without loss scaling would flush the small pixel gradients to zero.
    images = to_unit_range(synthesis(edited, noise_mode="const", force_fp32=True))
    scores = emonet_scores(emonet, images)
    terms = {
        "emotion": emotion_loss(scores, va),
        "identity": identity_loss(face_embedding(vgg, images), target.embedding),
        "pose": pose_loss(emonet_landmarks(scores, images.shape[-1]), target.landmarks,
                          None if reconstruction else EXPRESSION_STABLE_LANDMARKS),
    }
    if reconstruction:
        terms["reconstruction"] = reconstruction_loss(images, target.image)
    else:
        terms["background"] = background_loss(face_pool(images), target.image_small,
                                              target.inside_face)
    return terms


def personalize(G, mapping, emonet, vgg, ws: torch.Tensor, target_image: torch.Tensor,
                landmarks: np.ndarray, settings: PersonalizeSettings = PersonalizeSettings(), *,
                progress: Progress | None = None) -> dict[str, torch.Tensor]:
    """Fine-tune the synthesis network on one photo; return its tuned parameters.

    Parameters
    ----------
    G : stimgen.nets.stylegan2.Generator
        The generator. It is not modified: a copy of ``G.synthesis`` is trained.
    mapping : EmoMappingWplus or EmoMappingW
        EmoStyle's emotion mapping, kept frozen.
    emonet : EmoNet
        Emotion critic; its heatmaps also give the pose term's landmarks.
    vgg : ResNet50Face
        VGGFace2 identity network.
    ws : torch.Tensor
        The photo's inverted latent, [num_ws, w_dim] or [1, num_ws, w_dim] (:func:`invert`).
    target_image : torch.Tensor
        The aligned photo, [1, 3, R, R] in [-1, 1].
    landmarks : numpy.ndarray
        The photo's 68 landmarks in aligned pixels [68, 2].
    settings : PersonalizeSettings
        Steps, learning rate, loss weights, seed.
    progress : callable, optional
        ``progress(step, steps, losses)`` after each step, ``losses`` being the unweighted
        terms of that step and ``"total"`` as floats.

    Returns
    -------
    dict of str to torch.Tensor
        Every parameter of the tuned synthesis network (keys relative to ``G.synthesis``;
        buffers such as the constant noise are unchanged and left out), detached, on the
        generator's device. Load with ``G.synthesis.load_state_dict(state, strict=False)``
        or :func:`personalized_generator`. The same inputs and seed give the same result
        on the same device.
    """
    synthesis = copy.deepcopy(G.synthesis).requires_grad_(True)
    resolution = synthesis.img_resolution
    ws = ws[None] if ws.ndim == 2 else ws
    assert_shape(ws, [1, synthesis.num_ws, synthesis.w_dim], "ws")
    assert_shape(target_image, [1, synthesis.img_channels, resolution, resolution], "target_image")
    device = next(synthesis.parameters()).device
    ws = ws.detach().to(device=device, dtype=torch.float32)
    weights = settings.loss_weights()
    random_va = torch.Generator().manual_seed(settings.seed)
    optimizer = torch.optim.Adam(synthesis.parameters(), lr=settings.lr)

    with frozen(mapping, emonet, vgg):
        target = photo_target(emonet, vgg, target_image.to(device), landmarks)
        for step in range(1, settings.steps + 1):
            reconstruction = is_reconstruction_step(step, settings.reconstruction_every)
            va = (target.valence_arousal if reconstruction else
                  random_valence_arousal(random_va, settings.random_va_limit).to(device))
            terms = personalization_terms(synthesis, mapping, emonet, vgg, ws, va, target,
                                          reconstruction)
            loss = weighted_total(terms, weights)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if progress is not None:
                losses = {name: float(value.detach()) for name, value in terms.items()}
                progress(step, settings.steps, {**losses, "total": float(loss.detach())})
    return {name: parameter.detach() for name, parameter in synthesis.named_parameters()}


def personalized_generator(G, state: dict[str, torch.Tensor]):
    """A copy of ``G`` whose synthesis network carries the tuned parameters ``state``.

    Raises ``ValueError`` if ``state`` names a tensor the synthesis network lacks (weights
    tuned for another generator).
    """
    tuned = copy.deepcopy(G)
    known = dict(tuned.synthesis.named_parameters())
    unknown = sorted(set(state) - set(known))
    if unknown:
        raise ValueError(f"personalised weights do not fit this generator: unknown tensors "
                         f"{unknown[:3]}{' ...' if len(unknown) > 3 else ''}")
    with torch.no_grad():
        for name, value in state.items():
            assert_shape(value, list(known[name].shape), name)
            known[name].copy_(value)
    return tuned
