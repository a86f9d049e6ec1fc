"""Landmarks from heatmaps, our FAN against face-alignment's, and the face-alignment adapter."""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from stimgen.errors import BackendUnavailableError, WeightsMissingError
from stimgen.nets.emonet import FAN
from stimgen.nets.face_landmarks import (FaceLandmarker, count_hourglasses,
                                         heatmaps_to_landmarks, read_fan_state)
from stimgen.parity import read_fixture, state_dict_from_spec

PARITY = Path(__file__).parent / "data" / "parity"


def gaussian_heatmaps(cells, size=64, sigma=1.0):
    """[1, K, size, size] unit-peak Gaussians centred on integer (x, y) cells."""
    ys, xs = np.mgrid[0:size, 0:size]
    maps = [np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma ** 2)) for x, y in cells]
    return torch.tensor(np.stack(maps)[None], dtype=torch.float32)


@pytest.fixture(scope="module")
def fan_state():
    """A one-hourglass FAN with realistic weights: the FAN part of the EmoNet fixture."""
    keys = FAN(num_modules=1).state_dict().keys()
    spec = read_fixture(PARITY, "emonet8").state_spec
    return state_dict_from_spec({key: spec[key] for key in keys})


@pytest.fixture(scope="module")
def fan_file(tmp_path_factory, fan_state):
    path = tmp_path_factory.mktemp("fan") / "tiny-2DFAN.pth.tar"
    torch.save(fan_state, path)
    return path


def test_argmax_recovers_peak_cells_as_pixel_centres():
    rng = np.random.default_rng(0)
    cells = rng.integers(0, 64, size=(68, 2))
    points, confidence = heatmaps_to_landmarks(gaussian_heatmaps(cells), 256)
    np.testing.assert_allclose(points[0].numpy(), (cells + 0.5) * 4 - 0.5)
    np.testing.assert_allclose(confidence.numpy(), 1.0)


def test_argmax_scales_x_and_y_separately():
    points, _ = heatmaps_to_landmarks(gaussian_heatmaps([(10, 20)]), (128, 512))
    assert points[0, 0].tolist() == [(10 + 0.5) * 8 - 0.5, (20 + 0.5) * 2 - 0.5]


def test_soft_argmax_is_close_to_argmax_and_differentiable():
    cells = np.array([[5, 7], [40, 33], [60, 2]])
    heatmap = gaussian_heatmaps(cells).requires_grad_()
    points, _ = heatmaps_to_landmarks(heatmap, 256, method="soft-argmax")
    np.testing.assert_allclose(points[0].detach().numpy(), (cells + 0.5) * 4 - 0.5, atol=0.05)
    points.sum().backward()
    assert heatmap.grad is not None and heatmap.grad.abs().sum() > 0


def test_rejects_unknown_method():
    with pytest.raises(ValueError, match="argmax"):
        heatmaps_to_landmarks(torch.zeros(1, 68, 64, 64), 256, method="mean")


def test_our_fan_equals_face_alignment_fan(fan_state):
    face_alignment_models = pytest.importorskip("face_alignment.models")
    ours, reference = FAN(num_modules=1, pool="avg").eval(), face_alignment_models.FAN(1).eval()
    ours.load_state_dict(fan_state)
    reference.load_state_dict(fan_state)
    images = torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        np.testing.assert_allclose(ours(images).numpy(), reference(images)[-1].numpy(),
                                   rtol=1e-5, atol=1e-6)


def test_fan_state_is_read_safely_and_counted(fan_file, fan_state):
    state = read_fan_state(fan_file)
    assert state.keys() == fan_state.keys()
    assert count_hourglasses(state) == 1


def test_fan_state_with_module_prefix(tmp_path, fan_state):
    path = tmp_path / "prefixed.pth"
    torch.save({f"module.{key}": value for key, value in fan_state.items()}, path)
    assert read_fan_state(path).keys() == fan_state.keys()


def test_missing_fan_weights_name_file_and_source(tmp_path):
    with pytest.raises(WeightsMissingError, match="2DFAN4") as err:
        read_fan_state(tmp_path / "2DFAN4-11f355bf06.pth.tar")
    assert "adrianbulat.com" in str(err.value)


def test_missing_package_is_a_clear_error(monkeypatch, fan_file):
    monkeypatch.setitem(sys.modules, "face_alignment", None)
    with pytest.raises(BackendUnavailableError, match="which is not installed") as err:
        FaceLandmarker(fan_file)
    assert err.value.hint.startswith('pip install --no-warn-conflicts "face-alignment>=1.5"')
    assert 'pip install --no-warn-conflicts -e ".[photos]"' in err.value.hint


def test_missing_detector_weights(tmp_path, fan_file):
    pytest.importorskip("face_alignment")
    with pytest.raises(WeightsMissingError, match="s3fd"):
        FaceLandmarker(fan_file, detector_weights=tmp_path / "s3fd-619a316812.pth")


def test_boxes_are_required_without_a_detector(fan_file):
    pytest.importorskip("face_alignment")
    landmarker = FaceLandmarker(fan_file, flip_input=False)
    with pytest.raises(WeightsMissingError, match="boxes"):
        landmarker(np.zeros((64, 64, 3), np.uint8))


@pytest.mark.slow
def test_landmarker_follows_the_face_box(fan_file):
    # face-alignment's first call compiles its numba post-processing (~10 s).
    pytest.importorskip("face_alignment")
    landmarker = FaceLandmarker(fan_file, flip_input=False)
    face = (np.random.default_rng(1).random((200, 180, 3)) * 255).astype(np.uint8)
    image, shifted = np.zeros((260, 260, 3), np.uint8), np.zeros((260, 260, 3), np.uint8)
    image[10:210, 20:200], shifted[47:247, 33:213] = face, face
    [here] = landmarker(image, boxes=[[20, 10, 200, 210]])
    [there] = landmarker(shifted, boxes=[[33, 47, 213, 247]])
    assert here.points.shape == (68, 2) and here.scores.shape == (68,)
    np.testing.assert_array_equal(here.box, [20, 10, 200, 210])
    # face-alignment rounds its crop transform to whole pixels: allow one pixel.
    np.testing.assert_allclose(there.points - here.points, np.broadcast_to([13, 37], (68, 2)),
                               atol=1.0)
    np.testing.assert_allclose(there.scores, here.scores, rtol=1e-5)
