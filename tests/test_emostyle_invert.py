"""Inversion on a tiny random generator: it finds a face the generator drew from a known w."""
from __future__ import annotations

import doctest

import pytest
import torch

from stimgen.backends.emostyle import invert as invert_module
from stimgen.backends.emostyle.invert import InversionWeights, invert, learning_rate
from stimgen.backends.emostyle.losses import reconstruction_loss, to_unit_range
from stimgen.nets.stylegan2 import Generator
from stimgen.nets.vggface2 import ResNet50Face
from stimgen.weights.tiny import TINY_GENERATOR


@pytest.fixture(scope="module")
def G() -> Generator:
    torch.manual_seed(0)
    G = Generator(img_resolution=32, **TINY_GENERATOR).eval()
    with torch.no_grad():
        G.mapping.w_avg.copy_(G.mapping(torch.randn(256, G.z_dim), None)[:, 0].mean(dim=0))
    return G


@pytest.fixture(scope="module")
def known_face(G):
    """A target the generator can draw exactly: W latent of a fixed z, and its image."""
    with torch.no_grad():
        ws = G.mapping(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(5)), None)
        image = G.synthesis(ws, noise_mode="const").clamp(-1, 1)
    return ws[0], image


def reconstruction_of(G, ws, image) -> float:
    with torch.no_grad():
        drawn = G.synthesis(ws[None], noise_mode="const")
    return float(reconstruction_loss(to_unit_range(drawn), to_unit_range(image)))


def test_inversion_reconstructs_a_generated_face(G, known_face):
    _, image = known_face
    start = G.mapping.w_avg.repeat(G.num_ws, 1)
    before = reconstruction_of(G, start, image)

    ws = invert(G, image, steps=30, lr=0.1)

    after = reconstruction_of(G, ws, image)
    assert ws.shape == (G.num_ws, G.w_dim) and not ws.requires_grad
    assert after < 0.6 * before, f"reconstruction loss {before:.3f} -> {after:.3f}"
    # A random tiny generator is hard to invert; the image is compared, not the latent.


def test_inversion_is_deterministic_and_leaves_the_generator_alone(G, known_face):
    _, image = known_face
    state = {k: v.clone() for k, v in G.state_dict().items()}
    flags = [p.requires_grad for p in G.parameters()]
    first = invert(G, image, steps=5)
    second = invert(G, image, steps=5)
    assert torch.equal(first, second)
    assert all(torch.equal(v, G.state_dict()[k]) for k, v in state.items())
    assert [p.requires_grad for p in G.parameters()] == flags
    assert all(p.grad is None for p in G.parameters())


def test_identity_term_and_progress(G, known_face):
    _, image = known_face
    torch.manual_seed(1)
    vgg = ResNet50Face(num_classes=4, layers=(1, 1, 1, 1)).eval()
    reports = []
    invert(G, image, vgg=vgg, steps=3, progress=lambda *args: reports.append(args))
    assert [(step, total) for step, total, _ in reports] == [(1, 3), (2, 3), (3, 3)]
    assert set(reports[-1][2]) == {"reconstruction", "identity", "w_avg", "total"}
    assert 0.0 <= reports[0][2]["identity"] <= 2.0


def test_weights_switch_terms_off(G, known_face):
    _, image = known_face
    reports = []
    invert(G, image, steps=2, weights=InversionWeights(w_avg=0.0),
           progress=lambda step, total, losses: reports.append(losses))
    assert reports[-1]["total"] == pytest.approx(reports[-1]["reconstruction"])


def test_image_must_match_the_generator(G):
    with pytest.raises(ValueError, match=r"image has shape \[1, 3, 64, 64\], expected \[1, 3, 32, 32\]"):
        invert(G, torch.zeros(1, 3, 64, 64), steps=1)


def test_learning_rate_schedule():
    rates = [learning_rate(step, 200, 0.01) for step in range(200)]
    assert rates[0] == 0.0 and max(rates) == pytest.approx(0.01)
    assert rates[100] == pytest.approx(0.01) and rates[-1] < 1e-3
    assert doctest.testmod(invert_module).failed == 0
