"""The emostyle backend on tiny random models: identities, batched edits, crops, similarity."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from stimgen.backends.emostyle import EmoStyleBackend
from stimgen.backends.emostyle.edit import (AdaptiveBatch, LatentFileError, edit_faces,
                                            read_latent, seed_latent)
from stimgen.backends.emostyle.models import (load_model_set, model_files, required_models,
                                              select_device)
from stimgen.errors import BackendUnavailableError
from stimgen.plan import render_spec
from stimgen.protocol.loader import protocol_from_text
from stimgen.weights.tiny import make_tiny

PROTOCOL = """
study: {name: emostyle-unit}
backend: {name: emostyle, options: {batch_size: %(batch)d, precision: %(precision)s}}
identities: [{id: s1, seed: 1}]
targets: {emotions: [circumplex:happy], intensities: [1.0]}
output: {image_size: 64}
"""


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    paths = make_tiny(tmp_path_factory.mktemp("tiny"), resolution=32)
    return {name: paths[name] for name in required_models({"seed"}, "emonet")}


def backend_for(weights, batch=4, precision="fp32") -> EmoStyleBackend:
    text = PROTOCOL % {"batch": batch, "precision": precision}
    return EmoStyleBackend(render_spec(protocol_from_text(text)), weights)


@pytest.fixture(scope="module")
def models(weights):
    return load_model_set(weights, torch.device("cpu"))


# ----------------------------------------------------------------------------- identities

def test_seed_latent_is_reproducible_truncated_and_the_same_w_in_every_layer(models):
    G = models.generator
    ws = seed_latent(G, 7, 0.7)
    assert ws.shape == (1, G.num_ws, G.w_dim)
    torch.testing.assert_close(ws, seed_latent(G, 7, 0.7), rtol=0, atol=0)
    assert torch.equal(ws[0, 0], ws[0, -1])
    untruncated = seed_latent(G, 7, 1.0)
    # truncation moves w toward w_avg by exactly psi
    torch.testing.assert_close(ws[0, 0], G.mapping.w_avg.lerp(untruncated[0, 0], 0.7))
    assert not torch.allclose(ws, seed_latent(G, 8, 0.7))


@pytest.mark.parametrize("shape", [(4, 8), (1, 4, 8), (8,), (1, 8)])
def test_latent_files_of_accepted_shapes_become_wplus(tmp_path, shape):
    array = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    np.save(tmp_path / "w.npy", array)
    torch.save(torch.from_numpy(array), tmp_path / "w.pt")
    for name in ("w.npy", "w.pt"):
        ws = read_latent(tmp_path / name, num_ws=4, w_dim=8)
        assert ws.shape == (1, 4, 8)
        assert torch.equal(ws[0, -1], torch.from_numpy(array.reshape(-1, 8)[-1]))


def test_latent_file_of_the_wrong_shape_says_which_shape_is_needed(tmp_path):
    np.save(tmp_path / "w.npy", np.zeros((18, 512), np.float32))
    with pytest.raises(LatentFileError, match=r"shape \[18, 512\].*\[4, 8\]") as caught:
        read_latent(tmp_path / "w.npy", num_ws=4, w_dim=8, where='identity "p1"')
    assert 'identity "p1"' in str(caught.value)


@pytest.mark.parametrize("name, write, message", [
    ("w.npy", lambda p: np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True),
     "cannot read"),
    ("w.pt", lambda p: torch.save({"ws": torch.zeros(4, 8)}, p), "not a tensor"),
    ("w.txt", lambda p: p.write_text("0"), "must be .npy or .pt"),
    ("missing.npy", lambda p: None, "does not exist"),
])
def test_bad_latent_files_are_refused_with_a_reason(tmp_path, name, write, message):
    write(tmp_path / name)
    with pytest.raises(LatentFileError, match=message):
        read_latent(tmp_path / name, num_ws=4, w_dim=8)


# ----------------------------------------------------------------------------- rendering

def test_render_gives_output_size_images_rater_crops_and_identity_similarity(weights):
    backend = backend_for(weights)
    handle = backend.prepare(protocol_from_text(PROTOCOL % {"batch": 4, "precision": "fp32"}
                                                ).identities[0])
    faces = backend.render(handle, [(0.8, 0.1), (-0.5, -0.5), (0.0, 0.9)])
    assert [face.image.size for face in faces] == [(64, 64)] * 3
    assert all(face.extras["face_crop"].shape == (256, 256, 3) for face in faces)
    assert all(face.extras["face_crop"].dtype == np.uint8 for face in faces)
    similarity = [face.extras["identity_similarity"] for face in faces]
    assert all(-1.0 <= s <= 1.0 + 1e-6 for s in similarity)
    assert np.asarray(faces[0].image).std() > 0     # not a blank image
    # different targets give different faces
    assert not np.array_equal(np.asarray(faces[0].image), np.asarray(faces[1].image))


def test_unedited_face_is_its_own_reference(models):
    ws = seed_latent(models.generator, 3, 0.7)
    faces = edit_faces(models.generator.synthesis, models.mapping, ws, torch.zeros(1, 2),
                       image_size=32, vggface2=models.vggface2, edit=False)
    again = edit_faces(models.generator.synthesis, models.mapping, ws, torch.zeros(2, 2),
                       image_size=32, vggface2=models.vggface2, edit=False)
    assert float(faces.embeddings[0] @ again.embeddings[1]) == pytest.approx(1.0, abs=1e-5)


def test_batched_edits_equal_one_at_a_time(weights):
    targets = [(0.8, 0.1), (-0.5, -0.5), (0.0, 0.9), (0.3, -0.2), (-0.9, 0.1)]
    identity = protocol_from_text(PROTOCOL % {"batch": 1, "precision": "fp32"}).identities[0]
    one = backend_for(weights, batch=1)
    many = backend_for(weights, batch=4)
    singly = one.render(one.prepare(identity), targets)
    batched = many.render(many.prepare(identity), targets)
    for a, b in zip(singly, batched):
        difference = np.abs(np.asarray(a.image, int) - np.asarray(b.image, int))
        assert difference.max() <= 1      # rounding of float sums in another order
        assert a.extras["identity_similarity"] == pytest.approx(
            b.extras["identity_similarity"], abs=1e-4)


def test_bf16_precision_is_ignored_on_cpu(weights):
    identity = protocol_from_text(PROTOCOL % {"batch": 2, "precision": "bf16"}).identities[0]
    fp32, bf16 = backend_for(weights), backend_for(weights, precision="bf16")
    a = fp32.render(fp32.prepare(identity), [(0.5, 0.5)])[0]
    b = bf16.render(bf16.prepare(identity), [(0.5, 0.5)])[0]
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image))


def test_fingerprint_names_every_model_by_sha256_and_the_options(weights):
    backend = backend_for(weights)
    fingerprint = backend.fingerprint()
    assert set(fingerprint["models"]) == set(weights)
    assert all(len(digest) == 64 for digest in fingerprint["models"].values())
    assert fingerprint["truncation_psi"] == 0.7 and fingerprint["image_size"] == 64
    assert "batch_size" not in fingerprint      # batch size does not change the images
    assert {f["name"] for f in model_files(weights)} == set(weights)


# ----------------------------------------------------------------------------- devices, memory

def test_auto_device_and_a_missing_gpu():
    assert select_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert select_device("auto").type == "cpu"
        with pytest.raises(BackendUnavailableError, match="0 CUDA device"):
            select_device("cuda")
    with pytest.raises(BackendUnavailableError, match="not a torch device"):
        select_device("gpu please")


def out_of_memory():
    return torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def test_out_of_memory_halves_the_batch_and_keeps_every_result():
    calls = []

    def run(part):
        calls.append(len(part))
        if len(part) > 3:
            raise out_of_memory()
        return [x * 10 for x in part]

    sizes = AdaptiveBatch(16)
    assert sizes.map(run, list(range(10))) == [x * 10 for x in range(10)]
    assert calls == [10, 8, 4, 2, 2, 2, 2, 2] and sizes.size == 2


def test_other_errors_and_out_of_memory_at_one_face_are_not_retried():
    with pytest.raises(ValueError):
        AdaptiveBatch(4).map(lambda part: (_ for _ in ()).throw(ValueError("bug")), [1, 2])

    def always(part):
        raise out_of_memory()

    with pytest.raises(BackendUnavailableError, match="one face at a time"):
        AdaptiveBatch(4).map(always, [1, 2, 3])


def test_required_models_depend_on_identities_and_rater():
    assert "fan_2d" not in required_models({"seed", "latent"}, "emonet")
    assert "emonet_8" in required_models({"seed"}, "geometric")   # landmarks for the rater
    assert {"emonet_8", "fan_2d"} <= set(required_models({"image"}, "geometric"))


def test_geometric_rater_gets_landmarks_from_emonet_heatmaps(weights):
    from stimgen.raters import create_rater

    text = (PROTOCOL % {"batch": 2, "precision": "fp32"}) + "validation: {rater: geometric}\n"
    protocol = protocol_from_text(text)
    backend = EmoStyleBackend(render_spec(protocol), weights)
    handle = backend.prepare(protocol.identities[0])
    neutral, *faces = backend.render(handle, [(0.0, 0.0), (0.8, 0.1), (-0.5, -0.5)])
    assert all(face.landmarks.shape == (68, 2) for face in faces)
    assert all((face.landmarks >= -0.5).all() and (face.landmarks <= 63.5).all()
               for face in faces)
    ratings = create_rater("geometric", "emostyle").rate(faces, neutral)
    assert ratings.shape == (2, 2) and np.isfinite(ratings).all()
