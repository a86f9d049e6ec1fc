"""EmoStyle personalisation on tiny random networks, and the loss terms it is made of."""
from __future__ import annotations

import doctest

import numpy as np
import pytest
import torch

from stimgen.backends.emostyle import personalize as personalize_module
from stimgen.backends.emostyle.align import align_face
from stimgen.backends.emostyle.losses import (
    EXPRESSION_STABLE_LANDMARKS, MS_SSIM_MIN_SIDE, background_loss, face_mask, frozen,
    pose_loss, reconstruction_loss, structural_dissimilarity)
from stimgen.backends.emostyle.personalize import (
    PersonalizeSettings, personalization_terms, personalize, personalized_generator,
    photo_target)
from stimgen.backends.emostyle.invert import weighted_total
from stimgen.backends.schematic import render_face, sample_identity
from stimgen.nets.emo_mapping import EmoMappingWplus
from stimgen.nets.emonet import EmoNet
from stimgen.nets.stylegan2 import Generator
from stimgen.nets.vggface2 import ResNet50Face
from stimgen.weights.tiny import TINY_EMOTION_DIM, TINY_GENERATOR

RESOLUTION = 32


@pytest.fixture(scope="module")
def nets():
    """Tiny random generator, EmoStyle mapping, EmoNet and VGGFace2 (shapes as make-tiny's)."""
    torch.manual_seed(0)
    G = Generator(img_resolution=RESOLUTION, **TINY_GENERATOR).eval()
    mapping = EmoMappingWplus(size=RESOLUTION, emotion_dim=TINY_EMOTION_DIM,
                              latent_dim=G.w_dim).eval()
    emonet = EmoNet(n_expression=8, num_modules=1, n_blocks=1).eval()
    vgg = ResNet50Face(num_classes=4, layers=(1, 1, 1, 1)).eval()
    return G, mapping, emonet, vgg


@pytest.fixture(scope="module")
def photo(nets):
    """An aligned schematic 'photo' at the generator's resolution, its landmarks and a latent."""
    G = nets[0]
    face = render_face(sample_identity(2), 0.0, 0.0, size=256)
    aligned = align_face(np.asarray(face.image), face.landmarks, RESOLUTION)
    image = torch.from_numpy(aligned.image).permute(2, 0, 1)[None].float() / 127.5 - 1.0
    with torch.no_grad():
        ws = G.mapping(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(3)), None)[0]
    return image, aligned.landmarks, ws


def total_loss(synthesis, nets, photo, settings) -> float:
    """The objective of a reconstruction step (fixed VA: the photo's own), evaluated once."""
    G, mapping, emonet, vgg = nets
    image, landmarks, ws = photo
    with frozen(mapping, emonet, vgg), torch.no_grad():
        target = photo_target(emonet, vgg, image, landmarks)
        terms = personalization_terms(synthesis, mapping, emonet, vgg, ws[None],
                                      target.valence_arousal, target, reconstruction=True)
    return float(weighted_total(terms, settings.loss_weights()))


def test_personalization_tunes_a_copy_of_the_synthesis_weights(nets, photo):
    G, mapping, emonet, vgg = nets
    image, landmarks, ws = photo
    before = {k: v.clone() for k, v in G.state_dict().items()}
    reports = []

    state = personalize(G, mapping, emonet, vgg, ws, image, landmarks,
                        PersonalizeSettings(steps=3, lr=1e-3, reconstruction_every=3),
                        progress=lambda *args: reports.append(args))

    assert set(state) == {name for name, _ in G.synthesis.named_parameters()}
    changed = [name for name, p in G.synthesis.named_parameters() if not torch.equal(state[name], p)]
    assert len(changed) > len(state) // 2, f"only {changed} changed"
    assert all(torch.equal(v, G.state_dict()[k]) for k, v in before.items()), "G was modified"
    # Steps 1-2 are edits (background term), step 3 reconstructs (reconstruction term).
    assert [(step, total) for step, total, _ in reports] == [(1, 3), (2, 3), (3, 3)]
    assert all("background" in losses and "reconstruction" not in losses
               for _, _, losses in reports[:2])
    assert "reconstruction" in reports[2][2] and "background" not in reports[2][2]

    tuned = personalized_generator(G, state)
    with torch.no_grad():
        old = G.synthesis(ws[None], noise_mode="const")
        new = tuned.synthesis(ws[None], noise_mode="const")
    assert not torch.allclose(old, new)


def test_personalization_lowers_its_loss(nets, photo):
    G, mapping, emonet, vgg = nets
    image, landmarks, ws = photo
    settings = PersonalizeSettings(steps=2, lr=1e-3, reconstruction_every=1)
    before = total_loss(G.synthesis, nets, photo, settings)

    state = personalize(G, mapping, emonet, vgg, ws, image, landmarks, settings)

    after = total_loss(personalized_generator(G, state).synthesis, nets, photo, settings)
    assert after < before, f"loss {before:.4f} -> {after:.4f}"


def test_settings_are_checked():
    with pytest.raises(ValueError, match="reconstruction_every"):
        PersonalizeSettings(reconstruction_every=0)
    assert PersonalizeSettings().loss_weights() == {
        "emotion": 0.3, "pose": 0.001, "background": 0.2, "identity": 1.5, "reconstruction": 0.2}


def test_foreign_weights_are_refused(nets):
    with pytest.raises(ValueError, match="do not fit this generator"):
        personalized_generator(nets[0], {"b1024.conv0.weight": torch.zeros(1)})


# ----------------------------------------------------------------------------- losses

def test_expression_stable_landmarks_are_the_jaw_sides_and_nose_bridge():
    assert len(EXPRESSION_STABLE_LANDMARKS) == 14
    assert set(EXPRESSION_STABLE_LANDMARKS) == {0, 1, 2, 3, 4, 12, 13, 14, 15, 16, 27, 28, 29, 30}


def test_face_mask_covers_the_face_not_the_background(photo):
    _, landmarks, _ = photo
    mask = face_mask(landmarks * 8, 256, 256)[0, 0]
    nose = np.rint(landmarks[30] * 8).astype(int)
    assert mask[nose[1], nose[0]]
    assert not mask[:, :10].any() and not mask[:10].any()
    assert 0.1 < float(mask.float().mean()) < 0.6


def test_background_loss_ignores_the_face():
    inside = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    inside[..., 2:6, 2:6] = True
    a, b = torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8)
    b[..., 2:6, 2:6] = 1.0                       # differs only inside the face
    assert float(background_loss(a, b, inside)) == 0.0
    b[..., 0, 0] = 1.0                           # one background pixel differs by 1
    assert float(background_loss(a, b, inside)) == pytest.approx(1 / (64 - 16))


@pytest.mark.parametrize("side", [32, MS_SSIM_MIN_SIDE])
def test_structural_term_works_at_every_size(side):
    torch.manual_seed(0)
    x = torch.rand(1, 3, side, side)
    assert float(structural_dissimilarity(x, x)) == pytest.approx(0.0, abs=1e-5)
    y = (x + 0.3 * torch.randn_like(x)).clamp(0, 1).requires_grad_(True)
    loss = reconstruction_loss(y, x)
    loss.backward()
    assert float(loss.detach()) > 0.05
    assert torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0


def test_pose_loss_uses_only_the_listed_points():
    points = torch.zeros(1, 68, 2)
    moved = points.clone()
    moved[0, 40] = 10.0                          # an eye point: expressions move it
    assert float(pose_loss(moved, points, EXPRESSION_STABLE_LANDMARKS)) == 0.0
    assert float(pose_loss(moved, points)) > 0.0


def test_docstring_examples():
    assert doctest.testmod(personalize_module).failed == 0
