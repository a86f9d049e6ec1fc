"""VGGFace2 ResNet-50 reproduces EmoStyle's identity embedding on the parity fixture."""
from pathlib import Path

import numpy as np
import pytest
import torch

from stimgen.nets.vggface2 import (MEAN_BGR, ResNet50Face, identity_embedding,
                                   preprocess_for_identity)
from stimgen.parity import ATOL, RTOL, read_fixture

PARITY = Path(__file__).parent / "data" / "parity"


@pytest.fixture(scope="module")
def fixture():
    return read_fixture(PARITY, "vggface2_resnet50")


@pytest.fixture(scope="module")
def network(fixture):
    return fixture.build(ResNet50Face, "cpu")


def test_embedding_reproduces_reference(fixture, network):
    with torch.no_grad():
        embedding = identity_embedding(network, torch.from_numpy(fixture.arrays["image"]))
    np.testing.assert_allclose(embedding.numpy(), fixture.arrays["embedding"],
                               rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(embedding.norm(dim=1).numpy(), 1.0, rtol=1e-6)


def test_state_dict_has_published_keys_and_shapes(fixture):
    ours = {key: list(value.shape) for key, value in ResNet50Face().state_dict().items()}
    assert ours == {key: spec["shape"] for key, spec in fixture.state_spec.items()}


def test_preprocessing_crops_resizes_and_reorders_channels():
    # 320 px: keep rows/cols 32:288 (256 px, so the nearest resize is the identity),
    # then the centre 224 crop starts 16 px further in: output (0, 0) is input (48, 48).
    images = torch.rand(2, 3, 320, 320)
    out = preprocess_for_identity(images)
    assert out.shape == (2, 3, 224, 224)
    for bgr_channel, rgb_channel in enumerate((2, 1, 0)):
        expected = 255 * images[:, rgb_channel, 48:272, 48:272] - MEAN_BGR[bgr_channel]
        torch.testing.assert_close(out[:, bgr_channel], expected)


def test_preprocessing_resizes_any_input_size():
    assert preprocess_for_identity(torch.rand(1, 3, 1024, 1024)).shape == (1, 3, 224, 224)
    assert preprocess_for_identity(torch.rand(1, 3, 100, 80)).shape == (1, 3, 224, 224)


def test_same_face_has_cosine_one_and_different_faces_less(network):
    images = torch.rand(2, 3, 240, 240)
    with torch.no_grad():
        a, b = identity_embedding(network, images[[0, 0, 1]]).split([2, 1])
    assert float(a[0] @ a[1]) == pytest.approx(1.0, abs=1e-6)
    assert float(a[0] @ b[0]) < 0.999


def test_rejects_unpreprocessed_input(network):
    with pytest.raises(ValueError, match="preprocess_for_identity"):
        network.embed(torch.rand(1, 3, 256, 256))
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        preprocess_for_identity(torch.rand(3, 256, 256))
