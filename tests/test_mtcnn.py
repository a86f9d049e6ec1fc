"""MTCNN networks and box maths: published key names, safe loading, NMS against brute force."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from stimgen import detection
from stimgen.errors import BackendUnavailableError
from stimgen.nets.mtcnn import MTCNN, ONet, PNet, RNet, nms, pyramid_scales, regress, square
from stimgen.storage import sha256_file


@pytest.fixture
def fresh_detector():
    """No detector cached before or after the test."""
    detection.load_detector.cache_clear()
    yield
    detection.load_detector.cache_clear()


@pytest.mark.parametrize("name, net", [("pnet", PNet), ("rnet", RNet), ("onet", ONet)])
def test_our_networks_have_the_shipped_key_names_and_shapes(name, net):
    shipped = torch.load(detection.WEIGHTS_FOLDER / f"{name}.pt", weights_only=True)
    ours = net().state_dict()
    assert list(ours) == list(shipped)
    assert {k: tuple(v.shape) for k, v in ours.items()} == \
        {k: tuple(v.shape) for k, v in shipped.items()}


def test_shipped_files_are_the_published_ones():
    for name, expected in detection.WEIGHTS_SHA256.items():
        assert sha256_file(detection.WEIGHTS_FOLDER / f"{name}.pt") == expected
    assert (detection.WEIGHTS_FOLDER / "ATTRIBUTION.md").is_file()
    total = sum(p.numel() for p in MTCNN().parameters())
    assert 490_000 < total < 500_000          # "0.5M parameters in all"


def test_loading_is_weights_only_and_checked(fresh_detector, monkeypatch):
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    mtcnn = detection.load_detector()
    assert calls == [True, True, True]
    assert not mtcnn.training and not any(p.requires_grad for p in mtcnn.parameters())
    assert detection.load_detector() is mtcnn           # once per process
    assert len(calls) == 3


def test_a_damaged_weights_file_is_refused(fresh_detector, tmp_path, monkeypatch):
    shipped = detection.WEIGHTS_FOLDER
    for name in detection.WEIGHTS_SHA256:
        shutil.copy(shipped / f"{name}.pt", tmp_path)
    with open(tmp_path / "rnet.pt", "r+b") as handle:
        handle.seek(-10, 2)
        handle.write(b"\0" * 10)
    monkeypatch.setattr(detection, "WEIGHTS_FOLDER", tmp_path)
    with pytest.raises(BackendUnavailableError, match="rnet.pt") as info:
        detection.load_detector()
    assert "reinstall" in info.value.hint
    (tmp_path / "onet.pt").unlink()
    shutil.copy(shipped / "rnet.pt", tmp_path)
    with pytest.raises(BackendUnavailableError, match="missing: .*onet.pt"):
        detection.load_detector()


def test_networks_check_their_input_shapes():
    with pytest.raises(ValueError, match=r"RNet input has shape \[2, 3, 48, 48\]"):
        RNet()(torch.zeros(2, 3, 48, 48))
    with pytest.raises(ValueError, match="PNet input"):
        PNet()(torch.zeros(1, 1, 30, 30))
    probability, offsets = PNet()(torch.zeros(1, 3, 12, 12))
    assert probability.shape == (1, 1, 1) and offsets.shape == (1, 4, 1, 1)
    probability, offsets, points = ONet()(torch.zeros(3, 3, 48, 48))
    assert probability.shape == (3,) and offsets.shape == (3, 4) and points.shape == (3, 10)


# ----------------------------------------------------------------------------- NMS

def overlap(a, b, mode):
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    area_a, area_b = (a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1])
    return inter / (area_a + area_b - inter) if mode == "union" else inter / min(area_a, area_b)


def brute_force_nms(boxes, scores, threshold, mode):
    """Visit boxes best first; keep one unless it overlaps an already kept box too much."""
    kept = []
    for i in sorted(range(len(boxes)), key=lambda i: (-scores[i], i)):
        if all(overlap(boxes[i], boxes[j], mode) <= threshold for j in kept):
            kept.append(i)
    return kept


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 60), st.integers(0, 60), st.integers(1, 40),
                          st.integers(1, 40), st.integers(0, 20)), min_size=0, max_size=30),
       st.sampled_from([0.0, 0.3, 0.5, 0.7, 1.0]), st.sampled_from(["union", "min"]))
def test_nms_matches_brute_force(rows, threshold, mode):
    boxes = np.array([[x, y, x + w, y + h] for x, y, w, h, _ in rows], dtype=float).reshape(-1, 4)
    scores = np.array([s / 20 for *_, s in rows], dtype=float)     # many ties on purpose
    assert nms(boxes, scores, threshold, mode).tolist() == \
        brute_force_nms(boxes, scores, threshold, mode)


def test_min_mode_drops_a_box_inside_a_larger_one():
    boxes = np.array([[0, 0, 100, 100], [40, 40, 60, 60]], float)
    assert nms(boxes, np.array([0.9, 0.8]), 0.7, "union").tolist() == [0, 1]
    assert nms(boxes, np.array([0.9, 0.8]), 0.7, "min").tolist() == [0]


def test_square_and_regress_keep_their_contracts():
    rng = np.random.default_rng(0)
    low = rng.uniform(0, 100, (20, 2))
    boxes = np.concatenate([low, low + rng.uniform(1, 50, (20, 2))], axis=1)
    squared = square(boxes)
    np.testing.assert_allclose(squared[:, 2] - squared[:, 0], squared[:, 3] - squared[:, 1])
    np.testing.assert_allclose(squared[:, :2] + squared[:, 2:], boxes[:, :2] + boxes[:, 2:])
    np.testing.assert_allclose(regress(boxes, np.zeros((20, 4))), boxes)


def test_pyramid_covers_faces_from_the_minimum_size_to_the_whole_image():
    scales = pyramid_scales(480, 640, min_face_size=20, scale_factor=0.709)
    assert scales[0] == pytest.approx(12 / 20)
    np.testing.assert_allclose(np.diff(np.log(scales)), np.log(0.709))
    assert 480 * scales[-1] >= 12 > 480 * scales[-1] * 0.709
