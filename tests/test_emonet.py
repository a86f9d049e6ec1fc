"""EmoNet reproduces face-analysis/emonet on the parity fixture; both heads load published keys."""
from pathlib import Path

import numpy as np
import pytest
import torch

from stimgen.nets.emonet import EXPRESSIONS, EmoNet, check_images
from stimgen.parity import ATOL, RTOL, read_fixture

PARITY = Path(__file__).parent / "data" / "parity"


@pytest.fixture(scope="module")
def fixture():
    return read_fixture(PARITY, "emonet8")


@pytest.fixture(scope="module")
def outputs(fixture):
    net = fixture.build(EmoNet, "cpu")
    with torch.no_grad():
        return net(torch.from_numpy(fixture.arrays["image_uint8"]).float() / 255.0)


@pytest.mark.parametrize("name", ["valence", "arousal", "expression", "heatmap"])
def test_emonet8_reproduces_reference_outputs(fixture, outputs, name):
    np.testing.assert_allclose(outputs[name].numpy(), fixture.arrays[name], rtol=RTOL, atol=ATOL)


def shapes(n_expression: int) -> dict[str, list[int]]:
    """Parameter and buffer shapes of EmoNet, built on the meta device (no memory, no init)."""
    with torch.device("meta"):
        return {key: list(value.shape)
                for key, value in EmoNet(n_expression=n_expression).state_dict().items()}


def test_state_dict_has_published_keys_and_shapes(fixture):
    ours = shapes(8)
    published = {key: spec["shape"] for key, spec in fixture.state_spec.items()}
    assert ours == published


def test_five_expression_head_differs_only_in_last_layer(fixture):
    ours = shapes(5)
    published = {key: spec["shape"] for key, spec in fixture.state_spec.items()}
    differing = {key for key in published if ours[key] != published[key]}
    assert ours.keys() == published.keys()
    assert differing == {"emo_fc_2.3.weight", "emo_fc_2.3.bias"}
    assert ours["emo_fc_2.3.weight"] == [5 + 2, 128]


def test_five_expression_head_outputs():
    with torch.device("meta"), torch.no_grad():       # output shapes only: nothing computed
        out = EmoNet(n_expression=5).eval()(torch.empty(1, 3, 256, 256))
    assert out["expression"].shape == (1, len(EXPRESSIONS[5]))
    assert out["valence"].shape == out["arousal"].shape == (1,)
    assert out["heatmap"].shape == (1, 68, 64, 64)


@pytest.mark.parametrize("shape", [(1, 3, 224, 224), (3, 256, 256), (1, 1, 256, 256)])
def test_rejects_images_of_the_wrong_shape(shape):
    with pytest.raises(ValueError, match=r"\[N, 3, 256, 256\]"):
        check_images(torch.rand(shape))


def test_rejects_uint8_images():
    with pytest.raises(ValueError, match="float"):
        check_images(torch.zeros(1, 3, 256, 256, dtype=torch.uint8))


def test_forward_checks_its_input(fixture):
    with pytest.raises(ValueError, match=r"\[N, 3, 256, 256\]"):
        EmoNet().eval()(torch.rand(1, 3, 224, 224))
