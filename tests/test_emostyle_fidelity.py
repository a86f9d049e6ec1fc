"""EmoStyle as published (issue 13): each test is named after the audit defect it guards.

Defect 1: EmoNet sees EmoStyle's framing of FFHQ-aligned faces. 2: one identity path, pooled
first. 4: optimisation in fp32. 5: EmoStyle's identity loss. 6: inversion into W first.
7: a photo's reference is the latent its personalisation reconstructed. Defect 8 (model
sizes at fetch) is tested in test_weights_fetch.py and test_weights_registry.py.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from stimgen.backends.base import FFHQ_FRAMING, FRAMING_KEY, Rendered
from stimgen.backends.emostyle import EmoStyleBackend, personalize as personalize_module
from stimgen.backends.emostyle.edit import edit_faces, seed_latent, to_uint8
from stimgen.backends.emostyle.invert import invert
from stimgen.backends.emostyle.losses import (emonet_scores, face_embedding, face_pool,
                                              identity_loss)
from stimgen.backends.emostyle.models import load_model_set, required_models
from stimgen.backends.emostyle.personalize import (PersonalizeSettings, personalize,
                                                   photo_target, photo_valence_arousal)
from stimgen.nets.emo_mapping import edit_latents
from stimgen.nets.emonet import ffhq_framing, unframe_points
from stimgen.nets.stylegan2 import SynthesisNetwork
from stimgen.nets.vggface2 import identity_embedding
from stimgen.protocol.loader import protocol_from_text
from stimgen.protocol.models import Identity
from stimgen.raters import RaterInfo
from stimgen.plan import render_spec
from stimgen.raters.emonet import EmoNetRater, face_crops
from stimgen.weights.tiny import make_tiny

PROTOCOL = """
study: {name: emostyle-fidelity}
backend: {name: emostyle, options: {batch_size: 4, inversion_wplus_steps: %(wplus)d}}
identities: [{id: s1, seed: 1}]
targets: {emotions: [circumplex:happy], intensities: [1.0]}
output: {image_size: 64}
"""


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    paths = make_tiny(tmp_path_factory.mktemp("tiny"), resolution=32)
    return {name: paths[name] for name in required_models({"image"}, "emonet")}


@pytest.fixture(scope="module")
def models(weights):
    return load_model_set(weights, torch.device("cpu"))


@pytest.fixture(scope="module")
def photo(models):
    """A face the tiny generator drew, as an aligned 'photo' in [-1, 1], with landmarks."""
    G = models.generator
    with torch.no_grad():
        image = G.synthesis(seed_latent(G, 7, 1.0), noise_mode="const").clamp(-1, 1)
    side = G.img_resolution
    grid = np.linspace(0.2 * side, 0.8 * side, 9)
    landmarks = np.array([(grid[i % 9], grid[(i * 4) % 9]) for i in range(68)], dtype=float)
    return image, landmarks


def backend(weights, wplus: int = 0) -> EmoStyleBackend:
    return EmoStyleBackend(render_spec(protocol_from_text(PROTOCOL % {"wplus": wplus})), weights)


# ----------------------------------------------------------------------------- defect 1

def test_defect1_ffhq_framing_is_emostyles_central_80_percent_nearest_resize():
    images = torch.rand(2, 3, 1024, 1024)
    framed = ffhq_framing(images)
    # EmoStyle's preprocess: rows/cols int(0.1 n):int(0.9 n) = 102:921 (819 pixels), then
    # F.interpolate's default, nearest: output j reads input floor(j * 819 / 256).
    index = torch.floor(torch.arange(256) * (819 / 256)).long() + 102
    expected = images[:, :, index][:, :, :, index]
    assert framed.shape == (2, 3, 256, 256)
    assert torch.equal(framed, expected)
    # not the antialiased whole frame the backend used before
    whole = F.interpolate(images, size=(256, 256), mode="bilinear", antialias=True)
    assert not torch.allclose(framed, whole, atol=1e-2)
    # points map back: the crop's first pixel is row/col 102, its centre the image centre
    assert unframe_points(torch.tensor([[0.0, 256.0]]), 1024).tolist() == [[102.0, 921.0]]


def test_defect1_personalisation_emonet_sees_the_ffhq_framing(models):
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        scores = emonet_scores(models.emonet, images)
        expected = models.emonet(ffhq_framing(images))
        whole = models.emonet(F.interpolate(images, size=(256, 256), mode="bilinear",
                                            antialias=True))
    assert torch.equal(scores["valence"], expected["valence"])
    assert not torch.allclose(scores["valence"], whole["valence"])


def test_defect1_rendered_faces_carry_ffhq_framing_and_emostyles_emonet_input(weights, models):
    engine = backend(weights)
    handle = engine.prepare(protocol_from_text(PROTOCOL % {"wplus": 0}).identities[0])
    faces = engine.render(handle, [(0.5, -0.2), (-0.6, 0.4)])
    assert all(face.extras[FRAMING_KEY] == FFHQ_FRAMING == face.framing for face in faces)
    va = torch.tensor([[0.5, -0.2], [-0.6, 0.4]])
    with torch.no_grad():
        edited = edit_latents(models.mapping, handle.ws.expand(2, -1, -1), va)
        drawn = models.generator.synthesis(edited, noise_mode="const")
    expected = to_uint8(ffhq_framing(drawn)).numpy()
    for face, crop in zip(faces, expected):
        assert np.abs(face.extras["face_crop"].astype(int) - crop.astype(int)).max() <= 1


def test_defect1_emonet_rater_frames_ffhq_faces_and_rates_other_faces_whole(models):
    pixels = np.random.default_rng(3).integers(0, 256, (320, 320, 3), dtype=np.uint8)
    ffhq = Rendered(Image.fromarray(pixels), None, {FRAMING_KEY: FFHQ_FRAMING})
    full = Rendered(Image.fromarray(pixels), None, {})
    unit = torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255
    assert full.framing == "full"
    assert torch.equal(face_crops([ffhq])[0], ffhq_framing(unit)[0])
    assert torch.allclose(face_crops([full])[0], F.interpolate(
        unit, size=(256, 256), mode="bilinear", antialias=True)[0])
    rater = EmoNetRater(models.emonet, RaterInfo("emonet", "test", True))
    with torch.no_grad():
        out = models.emonet(ffhq_framing(unit))
    expected = torch.stack([out["valence"], out["arousal"]], 1).clamp(-1, 1).numpy()
    np.testing.assert_allclose(rater.rate([ffhq], None), expected, atol=1e-6)


# ----------------------------------------------------------------------------- defect 2

def test_defect2_identity_similarity_uses_the_pooled_embedding_of_personalisation(models):
    ws = seed_latent(models.generator, 4, 0.7)
    faces = edit_faces(models.generator.synthesis, models.mapping, ws, torch.zeros(1, 2),
                       image_size=32, vggface2=models.vggface2, edit=False)
    with torch.no_grad():
        unit = (models.generator.synthesis(ws, noise_mode="const").clamp(-1, 1) + 1) / 2
        pooled = face_embedding(models.vggface2, unit).numpy()
        aliased = identity_embedding(models.vggface2, unit).numpy()
    np.testing.assert_allclose(faces.embeddings, pooled, atol=1e-5)
    assert not np.allclose(faces.embeddings, aliased, atol=1e-3)


def test_defect2_face_pool_is_emostyles_area_average():
    images = torch.rand(1, 3, 1024, 1024)
    expected = images.reshape(1, 3, 256, 4, 256, 4).mean(dim=(3, 5))
    assert torch.allclose(face_pool(images), expected, atol=1e-6)


# ----------------------------------------------------------------------------- defect 4

@pytest.fixture
def synthesis_calls(monkeypatch):
    """Every ``force_fp32`` the synthesis network is called with."""
    calls = []
    forward = SynthesisNetwork.forward

    def spy(self, ws, **kwargs):
        calls.append(kwargs.get("force_fp32", False))
        return forward(self, ws, **kwargs)

    monkeypatch.setattr(SynthesisNetwork, "forward", spy)
    return calls


def test_defect4_inversion_forces_fp32(models, photo, synthesis_calls):
    invert(models.generator, photo[0], vgg=models.vggface2, steps=2, wplus_steps=1)
    assert synthesis_calls == [True, True, True]


def test_defect4_personalisation_forces_fp32(models, photo, synthesis_calls):
    image, landmarks = photo
    ws = seed_latent(models.generator, 1, 0.7)
    personalize(models.generator, models.mapping, models.emonet, models.vggface2, ws, image,
                landmarks, PersonalizeSettings(steps=2, reconstruction_every=2))
    assert synthesis_calls == [True, True]


# ----------------------------------------------------------------------------- defect 5

def test_defect5_identity_loss_is_emostyles_mean_l1_of_embeddings():
    torch.manual_seed(0)
    a = F.normalize(torch.randn(1, 2048), dim=-1)
    noise = F.normalize(torch.randn(1, 2048), dim=-1)
    b = F.normalize(a + 0.48 * noise, dim=-1)              # cosine about 0.9
    cosine = float((a * b).sum())
    assert 0.85 < cosine < 0.95
    assert float(identity_loss(b, a)) == pytest.approx(float((a - b).abs().mean()), rel=1e-6)
    # ~12x smaller than 1 - cosine, as EmoStyle's weight 1.5 expects
    assert float(identity_loss(b, a)) < (1 - cosine) / 8
    x = b.clone().requires_grad_(True)
    identity_loss(x, a).backward()
    assert float(x.grad.norm()) == pytest.approx(2048 ** -0.5, rel=1e-3)


# ----------------------------------------------------------------------------- defect 6

def test_defect6_inversion_stays_in_w_unless_refined_in_wplus_near_it(models, photo):
    G, image = models.generator, photo[0]
    reports = []
    w_only = invert(G, image, steps=3, progress=lambda *args: reports.append(args[:2]))
    assert torch.equal(w_only, w_only[:1].expand_as(w_only))      # one w, every layer
    assert reports == [(1, 3), (2, 3), (3, 3)]
    assert not torch.allclose(w_only[0], G.mapping.w_avg)        # it moved from the start

    reports.clear()
    refined = invert(G, image, steps=3, wplus_steps=2,
                     progress=lambda step, total, losses: reports.append((step, total, losses)))
    assert [r[:2] for r in reports] == [(1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]
    assert "w_pull" in reports[-1][2] and "w_pull" not in reports[0][2]
    assert not torch.equal(refined, refined[:1].expand_as(refined))  # layers now differ ...
    spread = (refined - w_only).abs().max()
    assert 0 < float(spread) < 0.05                                # ... but stay near the W code


def test_defect6_and_cache_keys_change_with_the_inversion_and_loss_settings(weights, tmp_path,
                                                                             monkeypatch):
    monkeypatch.setenv("STIMGEN_HOME", str(tmp_path))
    plain, refined = backend(weights)._photo_settings(), backend(weights, 5)._photo_settings()
    assert plain != refined and refined["inversion_wplus_steps"] == 5
    assert plain["emonet_framing"] == "ffhq" and plain["optimisation_precision"] == "fp32"
    assert "L1" in plain["identity_loss"] and "w_pull" in plain["inversion_weights"]


# ----------------------------------------------------------------------------- defect 7

def test_defect7_photo_reference_is_the_latent_personalisation_reconstructed(weights, models,
                                                                            monkeypatch):
    engine = backend(weights)
    ws = seed_latent(models.generator, 9, 0.7)
    photo_va = torch.tensor([[0.6, -0.4]])
    state = {name: p.detach() * 1.01 for name, p in models.generator.synthesis.named_parameters()}
    monkeypatch.setattr(EmoStyleBackend, "_personalised",
                        lambda self, identity: (ws, state, photo_va))
    handle = engine.prepare(Identity(id="p1", image="photo.png"))

    edited = edit_faces(handle.synthesis, models.mapping, ws, photo_va, image_size=32,
                        vggface2=models.vggface2)
    unedited = edit_faces(handle.synthesis, models.mapping, ws, torch.zeros(1, 2),
                          image_size=32, vggface2=models.vggface2, edit=False)
    np.testing.assert_allclose(handle.reference, edited.embeddings[0], atol=1e-5)
    assert not np.allclose(handle.reference, unedited.embeddings[0], atol=1e-4)


def test_defect7_the_cached_photo_va_is_the_one_reconstruction_steps_ask_for(models, photo):
    image, landmarks = photo
    with torch.no_grad():
        target = photo_target(models.emonet, models.vggface2, image, landmarks)
    assert torch.equal(photo_valence_arousal(models.emonet, image), target.valence_arousal)
    assert personalize_module.photo_valence_arousal is photo_valence_arousal
