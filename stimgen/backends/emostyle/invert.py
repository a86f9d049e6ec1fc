"""Inversion of an aligned photo: the latent from which the generator redraws that face.

Owns :func:`invert`: Adam on one w shared by every style layer (W, as PTI inverts before its
pivotal tuning), starting at the average face, then optionally a W+ refinement held close
to that W solution; and its objective: reconstruction (MS-SSIM + L1), identity (VGGFace2)
and latent regularisers that keep the result where EmoStyle's mapping was trained.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable

import torch

from stimgen.backends.emostyle.losses import distance_to_average, face_embedding, frozen, \
    identity_loss, reconstruction_loss, to_unit_range
from stimgen.nets.stylegan2 import assert_shape

#: ``progress(step, total, losses)`` after each step; ``losses`` maps term name -> value.
Progress = Callable[[int, int, dict[str, float]], None]

#: Fraction of the steps over which the learning rate ramps up, and down (cosine), as in
#: NVIDIA's StyleGAN2-ADA projector.
LR_RAMPUP, LR_RAMPDOWN = 0.05, 0.25


@dataclass(frozen=True)
class InversionWeights:
    """Weights of the inversion objective's terms (the sum of weighted terms is minimised).

    ``identity`` is 10 because EmoStyle's mean-L1 identity loss has about 1/20 of the
    gradient of the ``1 - cosine`` loss this objective was first tuned with at weight 0.5
    (measured in docs/backends-emostyle.md, "Departures from the published code").
    """

    reconstruction: float = 1.0   # 0.84 (1 - MS-SSIM) + 0.16 L1 against the photo
    identity: float = 10.0        # EmoStyle's mean-L1 identity loss (needs ``vgg``)
    w_avg: float = 1e-3           # mean squared distance of every w to the average w
    w_pull: float = 10.0          # W+ refinement only: mean squared distance to the W solution

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def learning_rate(step: int, steps: int, peak: float) -> float:
    """Learning rate at ``step`` of ``steps``: linear warm-up, flat, then cosine decay to 0.

    >>> [round(learning_rate(s, 100, 0.01), 4) for s in (0, 4, 50, 90)]
    [0.0, 0.008, 0.01, 0.0035]
    """
    t = step / max(steps, 1)
    ramp = min(1.0, (1.0 - t) / LR_RAMPDOWN)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    return peak * ramp * min(1.0, t / LR_RAMPUP)


def inversion_terms(images: torch.Tensor, target: torch.Tensor, ws: torch.Tensor,
                    w_avg: torch.Tensor, vgg: torch.nn.Module | None = None,
                    target_embedding: torch.Tensor | None = None,
                    w_solution: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Unweighted terms of the inversion objective, keyed as :class:`InversionWeights`.

    ``images`` and ``target`` are [1, 3, R, R] in [0, 1]; the identity term is present only
    when both ``vgg`` and ``target_embedding`` are given, the ``w_pull`` term only in the W+
    refinement, when ``w_solution`` (the W phase's ws [1, num_ws, w_dim]) is given.
    """
    terms = {"reconstruction": reconstruction_loss(images, target),
             "w_avg": distance_to_average(ws, w_avg)}
    if w_solution is not None:
        terms["w_pull"] = (ws - w_solution).square().mean()
    if vgg is not None and target_embedding is not None:
        terms["identity"] = identity_loss(face_embedding(vgg, images), target_embedding)
    return terms


def weighted_total(terms: dict[str, torch.Tensor], weights: dict[str, float]) -> torch.Tensor:
    """Sum of ``weights[name] * term`` over the terms present."""
    return sum(weights[name] * value for name, value in terms.items())


def invert(G, image: torch.Tensor, *, vgg: torch.nn.Module | None = None, steps: int = 500,
           lr: float = 0.01, wplus_steps: int = 0, progress: Progress | None = None,
           weights: InversionWeights = InversionWeights()) -> torch.Tensor:
    """Find ws [num_ws, w_dim] from which ``G.synthesis`` redraws ``image``.

    Two phases. **W** (``steps``): one w, the same in every style layer, from the average
    face: the kind of code EmoStyle's mapping was trained on (truncated W codes repeated
    over the layers), as PTI inverts before tuning the generator. **W+** (``wplus_steps``,
    optional): each layer's w moves on its own, pulled back toward the W solution
    (``weights.w_pull``), for a closer reconstruction at the price of leaving that region.

    Parameters
    ----------
    G : stimgen.nets.stylegan2.Generator
        The generator (its weights are not changed). Runs on the device of its weights,
        always in float32 (``force_fp32``): fp16 layers without loss scaling would lose the
        small reconstruction gradients.
    image : torch.Tensor
        The aligned photo, [1, 3, R, R] in [-1, 1] with R the generator's resolution
        (:func:`~stimgen.backends.emostyle.align.align_face`, then ``/ 127.5 - 1``).
    vgg : ResNet50Face, optional
        VGGFace2 network for the identity term; without it the term is skipped.
    steps : int
        Adam steps in W (each one generator forward and backward pass).
    lr : float
        Peak learning rate of each phase; warmed up over its first 5 % of steps and decayed
        (cosine) over its last 25 %, as NVIDIA's projector does.
    wplus_steps : int
        Adam steps of the W+ refinement after the W phase (0: the result stays in W).
    progress : callable, optional
        ``progress(step, steps + wplus_steps, losses)`` after each step, ``losses`` being
        the unweighted terms and ``"total"`` as floats.
    weights : InversionWeights
        Weights of the terms.

    Returns
    -------
    torch.Tensor
        ws [num_ws, w_dim], detached, on the generator's device; all rows equal unless
        ``wplus_steps`` > 0. The generator's constant noise is used, so the same inputs
        give the same latent.

    Examples
    --------
    >>> ws = invert(G, image, vgg=vgg, steps=500)        # doctest: +SKIP
    >>> G.synthesis(ws[None], noise_mode="const")         # doctest: +SKIP
    """
    synthesis = G.synthesis
    resolution = synthesis.img_resolution
    assert_shape(image, [1, synthesis.img_channels, resolution, resolution], "image")
    if steps < 0 or wplus_steps < 0:
        raise ValueError(f"steps and wplus_steps must be >= 0, got {steps} and {wplus_steps}")
    w_avg = G.mapping.w_avg.detach().float()
    target = to_unit_range(image.to(device=w_avg.device, dtype=torch.float32))
    use_identity = vgg is not None and weights.identity != 0
    weight_of = weights.as_dict()
    total = steps + wplus_steps

    def optimise(variable: torch.Tensor, as_ws: Callable[[], torch.Tensor], phase_steps: int,
                 done: int, w_solution: torch.Tensor | None) -> None:
        optimizer = torch.optim.Adam([variable], lr=lr, betas=(0.9, 0.999))
        for step in range(phase_steps):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, phase_steps, lr)
            ws = as_ws()
            images = to_unit_range(synthesis(ws, noise_mode="const", force_fp32=True))
            terms = inversion_terms(images, target, ws, w_avg,
                                    vgg if use_identity else None, target_embedding, w_solution)
            loss = weighted_total(terms, weight_of)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if progress is not None:
                losses = {name: float(value.detach()) for name, value in terms.items()}
                progress(done + step + 1, total, {**losses, "total": float(loss.detach())})

    with frozen(G, vgg if use_identity else None):
        target_embedding = face_embedding(vgg, target).detach() if use_identity else None
        w = w_avg.reshape(1, 1, -1).clone().requires_grad_(True)
        optimise(w, lambda: w.expand(1, G.num_ws, -1), steps, 0, None)
        w_solution = w.detach().expand(1, G.num_ws, -1).clone()
        if wplus_steps == 0:
            return w_solution[0]
        ws = w_solution.clone().requires_grad_(True)
        optimise(ws, lambda: ws, wplus_steps, steps, w_solution)
    return ws.detach()[0]
