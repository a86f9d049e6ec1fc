"""The hsemotion rater and `stimgen rate`: preprocessing against an independent reference,
the ONNX file check, framing, the ratings table, and every bad input.

The ONNX models here are built by the tests with the published input/output names and
shapes; their outputs are known functions of the input pixels, so the expected ratings are
computed here without stimgen's code. None of them is, or is shipped as, real weights.
"""
from __future__ import annotations

import sys
import types
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from stimgen.backends.base import Rendered  # noqa: E402
from stimgen.cli import main  # noqa: E402
from stimgen.errors import StimgenError  # noqa: E402
from stimgen.raters import create_rater, describe_rater  # noqa: E402
from stimgen.raters.hsemotion import (  # noqa: E402
    EXPRESSION_CATEGORIES, FFHQ_FACE_BOX, HSEmotionModelError, HSEmotionRater, load_hsemotion,
    preprocess, resize_bilinear,
)
from stimgen.raters.images import ImageRatingError, find_images, rate_images  # noqa: E402
from stimgen.raters.quality import sharpness  # noqa: E402

MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])
SIZE = 224


# ----------------------------------------------------------------------------- test models

def save_model(path, nodes, initializers, *, input_name="input", input_shape=("N", 3, 224, 224),
               output_shape=("N", 10), extra_inputs=()):
    inputs = [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, list(input_shape))]
    inputs += [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 4]) for n in extra_inputs]
    graph = helper.make_graph(
        nodes, "test", inputs,
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, list(output_shape))],
        [numpy_helper.from_array(a.astype(np.float32), name) for name, a in initializers.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def linear_model(path, weights, input_name="input"):
    """scores = flatten(input) @ weights: every output a known linear function of every pixel."""
    return save_model(path, [helper.make_node("Flatten", [input_name], ["flat"], axis=1),
                             helper.make_node("MatMul", ["flat", "W"], ["scores"])],
                      {"W": weights}, input_name=input_name)


def channel_mean_model(path, weights):
    """scores = (mean over pixels of each input channel) @ weights [3, 10]."""
    return save_model(path, [helper.make_node("ReduceMean", ["input"], ["means"], axes=[2, 3],
                                              keepdims=0),
                             helper.make_node("MatMul", ["means", "W"], ["scores"])],
                      {"W": weights})


#: valence = 0.1 x mean normalised red, arousal = 0.1 x mean normalised blue; logits favour
#: "happiness" by the green mean.
CHANNEL_WEIGHTS = np.zeros((3, 10))
CHANNEL_WEIGHTS[0, 8] = 0.1
CHANNEL_WEIGHTS[2, 9] = 0.1
CHANNEL_WEIGHTS[1, 4] = 1.0


@pytest.fixture
def channel_onnx(tmp_path):
    return channel_mean_model(tmp_path / "channels.onnx", CHANNEL_WEIGHTS)


def red_value():
    return 0.1 * (1.0 - MEAN[0]) / STD[0]


def blue_value(level):
    return 0.1 * (level / 255.0 - MEAN[2]) / STD[2]


# ----------------------------------------------------------------------------- the reference

def reference_resize(image: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize with half-pixel centres and clamped edges, in float64, rounded to uint8:
    the textbook definition of OpenCV's INTER_LINEAR, written out here independently."""
    h, w = image.shape[:2]

    def taps(n_in):
        centre = (np.arange(size) + 0.5) * n_in / size - 0.5
        centre = np.clip(centre, 0, n_in - 1)
        lo = np.floor(centre).astype(int)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, centre - lo

    y0, y1, fy = taps(h)
    x0, x1, fx = taps(w)
    img = image.astype(np.float64)
    top = img[y0][:, x0] * (1 - fx)[None, :, None] + img[y0][:, x1] * fx[None, :, None]
    bottom = img[y1][:, x0] * (1 - fx)[None, :, None] + img[y1][:, x1] * fx[None, :, None]
    out = top * (1 - fy)[:, None, None] + bottom * fy[:, None, None]
    return np.clip(np.floor(out + 0.5), 0, 255).astype(np.uint8)


def opencv_resize(image: np.ndarray, size: int) -> np.ndarray:
    """OpenCV's INTER_LINEAR on 8-bit images as its source computes it (imgproc/src/resize.cpp),
    one output row and column at a time: positions in float32, weights rounded to 11 bits,
    an integer horizontal pass, the vectorised vertical pass ((S0 >> 4) * b0 >> 16) +
    ((S1 >> 4) * b1 >> 16) rounded by 2 bits; an exact halving is the 2 x 2 mean (INTER_AREA)."""
    h, w = image.shape[:2]
    src = image.astype(np.int64)
    if (h, w) == (2 * size, 2 * size):
        return ((src[0::2, 0::2] + src[1::2, 0::2] + src[0::2, 1::2] + src[1::2, 1::2] + 2)
                >> 2).astype(np.uint8)

    def coefficients(n_in, clamp):
        rows = []
        for d in range(size):
            f = np.float32((d + 0.5) * (1.0 / (size / n_in)) - 0.5)
            s = int(np.floor(f))
            f = np.float32(f - np.float32(s))
            if clamp and (s < 0 or s >= n_in - 1):
                f = np.float32(0.0)
            rows.append((min(max(s, 0), n_in - 1), min(max(s + 1, 0), n_in - 1),
                         int(np.rint((np.float32(1.0) - f) * np.float32(2048))),
                         int(np.rint(f * np.float32(2048)))))
        return rows

    horizontal = np.stack([src[:, a] * w0 + src[:, b] * w1
                           for a, b, w0, w1 in coefficients(w, True)], axis=1)
    rows = [(((horizontal[a] >> 4) * w0) >> 16) + (((horizontal[b] >> 4) * w1) >> 16)
            for a, b, w0, w1 in coefficients(h, False)]
    return np.clip((np.stack(rows) + 2) >> 2, 0, 255).astype(np.uint8)


def reference_input(crop: np.ndarray) -> np.ndarray:
    """[3, 224, 224]: resized, /255, ImageNet-normalised, channels first in RGB order."""
    x = opencv_resize(crop, SIZE) / 255.0
    return ((x - MEAN) / STD).transpose(2, 0, 1)


def random_image(rng, height, width):
    return rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)


# ----------------------------------------------------------------------------- preprocessing

SHAPES = [(97, 131), (300, 260), (600, 520), (224, 224), (448, 448), (40, 500), (1000, 17)]


@pytest.mark.parametrize("shape", SHAPES)
def test_resize_is_opencvs_fixed_point_bilinear(shape):
    image = random_image(np.random.default_rng(1), *shape)
    ours = resize_bilinear(image, SIZE)
    assert ours.shape == (SIZE, SIZE, 3) and ours.dtype == np.uint8
    np.testing.assert_array_equal(ours, opencv_resize(image, SIZE))
    # and that is bilinear: within one grey level of exact float64 arithmetic
    assert np.abs(ours.astype(int) - reference_resize(image, SIZE).astype(int)).max() <= 1


@pytest.mark.parametrize("shape", SHAPES)
def test_resize_equals_cv2_resize(shape):
    cv2 = pytest.importorskip("cv2")
    image = random_image(np.random.default_rng(2), *shape)
    np.testing.assert_array_equal(resize_bilinear(image, SIZE),
                                  cv2.resize(image, (SIZE, SIZE)))   # the reference package's call


def test_preprocess_equals_the_reference_packages_input():
    cv2 = pytest.importorskip("cv2")
    crop = random_image(np.random.default_rng(5), 211, 173)
    # hsemotion_onnx's HSEmotionRecognizer.preprocess, step by step
    x = cv2.resize(crop, (SIZE, SIZE)) / 255
    for channel in range(3):
        x[..., channel] = (x[..., channel] - MEAN[channel]) / STD[channel]
    np.testing.assert_array_equal(preprocess([crop])[0], x.transpose(2, 0, 1).astype("float32"))


def test_network_sees_the_reference_input_and_columns_map_to_va_and_categories(tmp_path):
    rng = np.random.default_rng(3)
    weights = rng.normal(0.0, 2e-4, size=(3 * SIZE * SIZE, 10))
    path = linear_model(tmp_path / "linear.onnx", weights)
    rater = HSEmotionRater(load_hsemotion(path, device="cpu"), describe_rater("hsemotion", "x"))
    crops = [random_image(rng, 97, 131), random_image(rng, 300, 260), random_image(rng, 50, 50)]
    faces = [Rendered(Image.fromarray(c)) for c in crops]
    details = rater.rate_details(faces)

    expected = np.stack([reference_input(c).reshape(-1) for c in crops]) @ weights
    assert np.abs(expected[:, 8:]).max() < 1                  # not clamped: exact check
    np.testing.assert_allclose(details.va, expected[:, [8, 9]], atol=1e-4)
    logits = expected[:, :8]
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(details.probabilities, probabilities, atol=1e-4)
    assert details.categories == EXPRESSION_CATEGORIES
    assert details.predicted == [EXPRESSION_CATEGORIES[i] for i in logits.argmax(axis=1)]
    np.testing.assert_allclose(rater.rate(faces, None), details.va)


def test_preprocess_is_rgb_normalised_nchw(channel_onnx):
    pure_red = np.zeros((40, 30, 3), np.uint8)
    pure_red[..., 0] = 255
    x = preprocess([pure_red])
    assert x.shape == (1, 3, SIZE, SIZE) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, :, 5, 7], (np.array([1.0, 0, 0]) - MEAN) / STD, rtol=1e-6)
    rater = HSEmotionRater(load_hsemotion(channel_onnx, device="cpu"),
                           describe_rater("hsemotion", "x"))
    va = rater.rate([Rendered(Image.fromarray(pure_red))], None)
    np.testing.assert_allclose(va, [[red_value(), blue_value(0)]], atol=1e-4)


def test_valence_and_arousal_are_clamped(tmp_path):
    weights = np.zeros((3, 10))
    weights[0, 8], weights[0, 9] = 10.0, -10.0
    rater = HSEmotionRater(load_hsemotion(channel_mean_model(tmp_path / "m.onnx", weights)),
                           describe_rater("hsemotion", "x"))
    white = Image.new("RGB", (32, 32), "white")
    assert rater.rate([white and Rendered(white)], None).tolist() == [[1.0, -1.0]]


def test_batches_give_the_same_ratings_as_one_at_a_time(tmp_path):
    rng = np.random.default_rng(4)
    path = linear_model(tmp_path / "linear.onnx", rng.normal(0, 2e-4, (3 * SIZE * SIZE, 10)))
    faces = [Rendered(Image.fromarray(random_image(rng, 64, 64))) for _ in range(5)]
    batched = HSEmotionRater(load_hsemotion(path, batch_size=2), describe_rater("hsemotion", "x"))
    single = HSEmotionRater(load_hsemotion(path, batch_size=1), describe_rater("hsemotion", "x"))
    np.testing.assert_allclose(batched.rate(faces, None), single.rate(faces, None), atol=1e-6)


def test_a_file_with_a_fixed_batch_of_one_rates_several_faces(tmp_path):
    path = save_model(tmp_path / "fixed.onnx",
                      [helper.make_node("ReduceMean", ["input"], ["means"], axes=[2, 3],
                                        keepdims=0),
                       helper.make_node("MatMul", ["means", "W"], ["scores"])],
                      {"W": CHANNEL_WEIGHTS}, input_shape=(1, 3, 224, 224), output_shape=(1, 10))
    rater = HSEmotionRater(load_hsemotion(path), describe_rater("hsemotion", "x"))
    faces = [Rendered(Image.new("RGB", (20, 20), (255, 0, level))) for level in (0, 255, 51)]
    np.testing.assert_allclose(rater.rate(faces, None)[:, 1],
                               [blue_value(0), blue_value(255), blue_value(51)], atol=1e-4)


# ----------------------------------------------------------------------------- framing

def framed(size, box, inside=(255, 0, 0), outside=(0, 0, 255)):
    """An image of colour ``outside`` with ``box`` (pixels) painted ``inside``."""
    image = np.zeros((size, size, 3), np.uint8)
    image[:] = outside
    x0, y0, x1, y1 = box
    image[y0:y1, x0:x1] = inside
    return image


def test_ffhq_frames_are_rated_on_the_ffhq_face_box(channel_onnx):
    size = 200
    box = [round(f * size) for f in FFHQ_FACE_BOX]
    image = Image.fromarray(framed(size, box))
    rater = HSEmotionRater(load_hsemotion(channel_onnx), describe_rater("hsemotion", "x"))
    inside = rater.rate([Rendered(image, extras={"framing": "ffhq"})], None)
    np.testing.assert_allclose(inside, [[red_value(), blue_value(0)]], atol=1e-4)
    whole = rater.rate([Rendered(image)], None)           # no framing: blue border counts
    assert whole[0, 1] > inside[0, 1] + 0.05


def test_landmarks_frame_the_face(channel_onnx):
    image = framed(200, (40, 50, 161, 171))
    points = np.array([[46.0, 56.0], [155.0, 165.0], [100.0, 120.0]])   # inside the red box
    rater = HSEmotionRater(load_hsemotion(channel_onnx), describe_rater("hsemotion", "x"))
    va = rater.rate([Rendered(Image.fromarray(image), landmarks=points)], None)
    np.testing.assert_allclose(va, [[red_value(), blue_value(0)]], atol=1e-4)


# ----------------------------------------------------------------------------- wrong files

def test_wrong_input_name_is_refused(tmp_path):
    path = linear_model(tmp_path / "named.onnx", np.zeros((3 * SIZE * SIZE, 10)), "pixels")
    with pytest.raises(HSEmotionModelError, match="named.onnx.*input is named 'pixels'"):
        load_hsemotion(path)


@pytest.mark.parametrize("input_shape, output_shape, what", [
    (("N", 3, 112, 112), ("N", 10), r"input has shape \[N, 3, 112, 112\]"),
    (("N", 224, 224, 3), ("N", 10), r"input has shape \[N, 224, 224, 3\]"),
])
def test_wrong_shapes_are_refused(tmp_path, input_shape, output_shape, what):
    path = save_model(tmp_path / "shape.onnx",
                      [helper.make_node("Identity", ["input"], ["scores"])], {},
                      input_shape=input_shape, output_shape=output_shape)
    with pytest.raises(HSEmotionModelError, match=what) as err:
        load_hsemotion(path)
    assert "input', float32 [N, 3, 224, 224]" in str(err.value)


def test_two_inputs_are_refused(tmp_path):
    path = save_model(tmp_path / "two.onnx", [helper.make_node("Identity", ["input"], ["scores"])],
                      {}, output_shape=("N", 3, 224, 224), extra_inputs=("other",))
    with pytest.raises(HSEmotionModelError, match="2 inputs"):
        load_hsemotion(path)


def test_an_output_of_the_wrong_width_is_refused(tmp_path):
    path = save_model(tmp_path / "seven.onnx",
                      [helper.make_node("ReduceMean", ["input"], ["means"], axes=[2, 3],
                                        keepdims=0),
                       helper.make_node("MatMul", ["means", "W"], ["scores"])],
                      {"W": np.zeros((3, 7))}, output_shape=("N", "K"))
    with pytest.raises(HSEmotionModelError, match=r"seven.onnx.*output has shape \[N, 7\]"):
        load_hsemotion(path)


@pytest.mark.parametrize("content", [b"not a model at all", b"\x08\x07garbage", b""])
def test_files_that_are_not_onnx_are_refused(tmp_path, content):
    path = tmp_path / "broken.onnx"
    path.write_bytes(content)
    with pytest.raises(HSEmotionModelError, match="broken.onnx.*onnxruntime cannot read it"):
        load_hsemotion(path)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(HSEmotionModelError, match="nothing.onnx: no such file"):
        load_hsemotion(tmp_path / "nothing.onnx")


# ----------------------------------------------------------------------------- registry

def test_registry_entry_and_rater_description():
    from stimgen.weights import get_model

    entry = get_model("hsemotion_enet_b0_8_va_mtl")
    assert entry.file == "enet_b0_8_va_mtl.onnx" and entry.kind == "hsemotion_onnx"
    assert entry.urls[0].endswith("models/affectnet_emotions/onnx/enet_b0_8_va_mtl.onnx")
    assert "Apache-2.0" in entry.license and "AffectNet" in entry.license
    assert "Savchenko" in entry.citation and entry.needed_by == ("rate",)
    info = describe_rater("hsemotion", "emostyle")
    assert not info.trained_against_generator and "AffectNet" in info.description


def test_models_add_and_inspect_recognise_the_onnx_file(tmp_path, monkeypatch, channel_onnx):
    monkeypatch.setenv("STIMGEN_HOME", str(tmp_path / "home"))
    runner = CliRunner()
    inspected = runner.invoke(main, ["models", "inspect", str(channel_onnx)])
    assert inspected.exit_code == 0, inspected.output
    assert "kind:       hsemotion_onnx" in inspected.output
    assert "parameters: 30" in inspected.output
    assert "hsemotion_enet_b0_8_va_mtl" in inspected.output
    added = runner.invoke(main, ["models", "add", "hsemotion_enet_b0_8_va_mtl", str(channel_onnx)])
    assert added.exit_code == 0, added.output
    assert (tmp_path / "home" / "models" / "enet_b0_8_va_mtl.onnx").is_file()
    wrong = runner.invoke(main, ["models", "add", "emonet_8", str(channel_onnx)])
    assert wrong.exit_code == 2 and "this is a hsemotion_onnx checkpoint" in wrong.output


def test_models_add_refuses_an_onnx_file_of_another_network(tmp_path, monkeypatch):
    monkeypatch.setenv("STIMGEN_HOME", str(tmp_path / "home"))
    path = linear_model(tmp_path / "other.onnx", np.zeros((3 * SIZE * SIZE, 10)), "data")
    result = CliRunner().invoke(main, ["models", "add", "hsemotion_enet_b0_8_va_mtl", str(path)])
    assert result.exit_code == 2
    assert "other.onnx: not the HSEmotion enet_b0_8_va_mtl network" in result.output
    assert not (tmp_path / "home" / "models" / "enet_b0_8_va_mtl.onnx").exists()


def test_create_rater_loads_the_installed_file_or_says_how_to_get_it(tmp_path, monkeypatch,
                                                                      channel_onnx):
    monkeypatch.setenv("STIMGEN_HOME", str(tmp_path / "home"))
    with pytest.raises(StimgenError, match="enet_b0_8_va_mtl.onnx") as err:
        create_rater("hsemotion", "schematic")
    assert "stimgen models fetch hsemotion_enet_b0_8_va_mtl" in err.value.hint
    from stimgen.weights import add_model

    add_model("hsemotion_enet_b0_8_va_mtl", channel_onnx)
    rater = create_rater("hsemotion", "schematic")
    assert isinstance(rater, HSEmotionRater) and rater.info.name == "hsemotion"


# ----------------------------------------------------------------------------- quality

def test_sharpness_is_the_variance_of_the_laplacian():
    ndimage = pytest.importorskip("scipy.ndimage")
    image = random_image(np.random.default_rng(5), 40, 50)
    grey = image.astype(float) @ np.array([0.299, 0.587, 0.114])
    expected = ndimage.laplace(grey)[1:-1, 1:-1].var()
    assert sharpness(image) == pytest.approx(expected, rel=1e-9)


def test_blurring_lowers_sharpness():
    from PIL import ImageFilter

    image = Image.fromarray(random_image(np.random.default_rng(6), 64, 64))
    blurred = image.filter(ImageFilter.GaussianBlur(2))
    assert sharpness(np.asarray(blurred)) < 0.2 * sharpness(np.asarray(image))


# ----------------------------------------------------------------------------- stimgen rate

def write_images(folder, colours):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, colour in colours.items():
        path = folder / name
        Image.new("RGB", (64, 48), colour).save(path)
        paths.append(path)
    return paths


def rate_cli(*args, env=None):
    return CliRunner().invoke(main, ["rate", *map(str, args)], env=env)


def test_rate_a_folder_writes_the_ratings_table(tmp_path, channel_onnx):
    folder = tmp_path / "faces"
    write_images(folder, {"b.png": (255, 0, 0), "a.jpg": (255, 255, 255), "c.bmp": (0, 0, 255)})
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "ratings.tsv"
    result = rate_cli(folder, "--rater", "hsemotion", "--weights", channel_onnx,
                      "--framing", "full", "-o", out)
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out, sep="\t")
    assert [p.rsplit("/", 1)[1] for p in table["file"]] == ["a.jpg", "b.png", "c.bmp"]
    assert list(table.columns[:5]) == ["file", "rater", "framing", "valence", "arousal"]
    assert set(table["rater"]) == {"hsemotion"} and set(table["framing"]) == {"full"}
    assert {f"p_{c}" for c in EXPRESSION_CATEGORIES} <= set(table.columns)
    np.testing.assert_allclose(table[[f"p_{c}" for c in EXPRESSION_CATEGORIES]].sum(axis=1),
                               1.0, atol=1e-4)
    red = table.iloc[1]
    assert red["valence"] == pytest.approx(red_value(), abs=1e-4)
    assert red["arousal"] == pytest.approx(blue_value(0), abs=1e-4)
    assert table.iloc[0]["category"] == "happiness"       # the green mean drives it
    assert "face_x0" not in table.columns                  # nothing was detected
    assert (table["sharpness"] == 0).all()                 # flat colours
    assert "3 image(s) rated by hsemotion" in result.output
    assert "categories: " in result.output and f"wrote {out}" in result.output


def test_rate_prints_the_table_without_an_output_file(tmp_path, channel_onnx):
    (path,) = write_images(tmp_path, {"face.png": (255, 0, 0)})
    result = CliRunner().invoke(main, ["-q", "rate", str(path), "--rater", "hsemotion",
                                       "--weights", str(channel_onnx), "--framing", "full"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].startswith("file\trater\tframing\tvalence\tarousal")


def test_rate_dash_output_is_standard_output(tmp_path, channel_onnx):
    (path,) = write_images(tmp_path, {"face.png": (255, 0, 0)})
    result = CliRunner().invoke(main, ["rate", str(path), "--rater", "hsemotion", "--weights",
                                       str(channel_onnx), "--framing", "full", "-o", "-"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].startswith("file\trater\tframing\tvalence\tarousal")
    assert "face.png" in result.stdout
    assert not (tmp_path / "-").exists() and not Path("-").exists()


def test_rate_warns_about_a_random_tiny_emonet_file(tmp_path):
    pytest.importorskip("torch")
    from stimgen.weights.tiny import TINY_MARKER, write_emonet

    folder = tmp_path / "faces"
    write_images(folder, {f"{i}.png": (40 * i, 255 - 30 * i, 90) for i in range(4)})
    weights = tmp_path / "emonet_8.pth"
    write_emonet(weights, 8, {"warning": "tiny", "resolution": 32, "seed": 0})
    assert TINY_MARKER.encode() in weights.read_bytes()
    result = rate_cli(folder, "--rater", "emonet", "--weights", weights, "--framing", "full",
                      "-o", tmp_path / "out.tsv")
    assert result.exit_code == 0, result.output
    assert f"warning: {weights} is a RANDOM TINY MODEL" in result.output
    assert "stimgen models fetch emonet_8" in result.output


def test_rate_warns_about_an_onnx_file_that_make_tiny_lists(tmp_path, channel_onnx):
    import json

    from stimgen.storage import sha256_file

    (path,) = write_images(tmp_path / "faces", {"face.png": "red"})
    (channel_onnx.parent / "tiny.json").write_text(json.dumps(
        {"models": {"hsemotion_enet_b0_8_va_mtl": {"sha256": sha256_file(channel_onnx)}}}))
    result = rate_cli(path, "--rater", "hsemotion", "--weights", channel_onnx, "--framing",
                      "full", "-o", tmp_path / "out.tsv")
    assert result.exit_code == 0, result.output
    assert "RANDOM TINY MODEL" in result.output and "tiny.json" in result.output


def test_a_network_that_ignores_the_face_is_called_out(tmp_path):
    constant = channel_mean_model(tmp_path / "constant.onnx", np.zeros((3, 10)))
    folder = tmp_path / "faces"
    write_images(folder, {"a.png": "red", "b.png": "blue"})
    for name, seed in (("c.png", 1), ("d.png", 2)):      # differ in sharpness too
        Image.fromarray(random_image(np.random.default_rng(seed), 48, 64)).save(folder / name)
    result = rate_cli(folder, "--rater", "hsemotion", "--weights", constant, "--framing", "full",
                      "-o", tmp_path / "out.tsv")
    assert result.exit_code == 0, result.output
    assert "warning: all 4 images got the same rating from hsemotion" in result.output
    varied = rate_cli(folder, "--rater", "hsemotion", "--weights",
                      channel_mean_model(tmp_path / "varied.onnx", CHANNEL_WEIGHTS),
                      "--framing", "full", "-o", tmp_path / "varied.tsv")
    assert varied.exit_code == 0 and "same rating" not in varied.output


def test_threads_do_not_change_the_table(tmp_path, channel_onnx):
    folder = tmp_path / "faces"
    folder.mkdir()
    for i in range(9):          # sizes 30-166 px high, each tinted its own way
        noise = random_image(np.random.default_rng(i), 30 + 17 * i, 90) // 2
        Image.fromarray(noise + np.uint8(14 * i)).save(folder / f"{i}.png")
    rater = create_rater("hsemotion", "x", weights=channel_onnx)
    one = rate_images([folder], rater, framing="full", batch_size=2, threads=1)
    four = rate_images([folder], rater, framing="full", batch_size=4, threads=4)
    pd.testing.assert_frame_equal(one, four)
    assert [Path(f).name for f in one["file"]] == [f"{i}.png" for i in range(9)]


def test_build_folders_are_rated_on_their_stimuli(tmp_path):
    build = tmp_path / "build"
    write_images(build / "stimuli", {"s1.png": "red", "s2.png": "blue"})
    write_images(build / "report_assets", {"plot.png": "white"})
    (build / "stimuli.tsv").write_text("stimulus_id\n")
    assert [p.name for p in find_images([build])] == ["s1.png", "s2.png"]


def test_unreadable_images_are_all_named_and_nothing_is_written(tmp_path, channel_onnx):
    folder = tmp_path / "faces"
    write_images(folder, {"good.png": "red"})
    (folder / "text.png").write_text("this is not a png")
    (folder / "cut.jpg").write_bytes((folder / "good.png").read_bytes()[:60])
    out = tmp_path / "ratings.tsv"
    result = rate_cli(folder, "--rater", "hsemotion", "--weights", channel_onnx,
                      "--framing", "full", "-o", out)
    assert result.exit_code == 2
    assert "2 of 3 image(s) cannot be rated" in result.output
    assert "text.png" in result.output and "cut.jpg" in result.output
    assert "Traceback" not in result.output
    assert not out.exists() and list(tmp_path.glob(".ratings*")) == []


def test_unknown_and_unusable_raters_are_refused(tmp_path):
    (path,) = write_images(tmp_path, {"face.png": "red"})
    unknown = rate_cli(path, "--rater", "emonett", "--framing", "full")
    assert unknown.exit_code == 2 and "unknown rater 'emonett'" in unknown.output
    assert "emonet, hsemotion" in unknown.output
    geometric = rate_cli(path, "--rater", "geometric", "--framing", "full")
    assert geometric.exit_code == 2 and "neutral face" in geometric.output


def test_missing_registry_weights_say_how_to_get_them(tmp_path):
    (path,) = write_images(tmp_path, {"face.png": "red"})
    result = rate_cli(path, "--rater", "hsemotion", "--framing", "full",
                      env={"STIMGEN_HOME": str(tmp_path / "home")})
    assert result.exit_code == 2
    assert "stimgen models fetch hsemotion_enet_b0_8_va_mtl" in result.output


def test_weights_of_another_model_are_refused(tmp_path, channel_onnx):
    import torch

    (path,) = write_images(tmp_path, {"face.png": "red"})
    emonet_like = tmp_path / "emonet_8.pth"
    torch.save({"module.emo_fc_2.3.weight": torch.zeros(10, 128)}, emonet_like)
    result = rate_cli(path, "--rater", "hsemotion", "--weights", emonet_like, "--framing", "full")
    assert result.exit_code == 2
    assert "emonet_8.pth: not the HSEmotion enet_b0_8_va_mtl network" in result.output
    result = rate_cli(path, "--rater", "emonet", "--weights", channel_onnx, "--framing", "full")
    assert result.exit_code == 2
    assert "this is a hsemotion_onnx checkpoint, but the emonet rater needs" in result.output


def test_a_wrong_onnx_file_through_the_cli(tmp_path):
    (path,) = write_images(tmp_path, {"face.png": "red"})
    wrong = save_model(tmp_path / "wrong.onnx", [helper.make_node("Identity", ["input"], ["scores"])],
                       {}, input_shape=("N", 3, 112, 112), output_shape=("N", 10))
    out = tmp_path / "out.tsv"
    result = rate_cli(path, "--rater", "hsemotion", "--weights", wrong, "--framing", "full",
                      "-o", out)
    assert result.exit_code == 2 and "wrong.onnx" in result.output and not out.exists()


def test_a_missing_path_is_named(tmp_path, channel_onnx):
    result = rate_cli(tmp_path / "nowhere", "--rater", "hsemotion", "--weights", channel_onnx)
    assert result.exit_code == 2 and "nowhere: no such file or folder" in result.output


# ----------------------------------------------------------------------------- detect framing
# stimgen.detection (MTCNN, issue 13) is written elsewhere; these tests stand in a module
# with its pinned interface. Re-run them once it is merged (and drop the stand-in if the
# real detector should run here).

class FaceNotFoundError(StimgenError):
    pass


@dataclass(frozen=True)
class DetectedFace:
    box: tuple[float, float, float, float]
    score: float
    points: np.ndarray


@pytest.fixture
def fake_detector(monkeypatch):
    """Finds the red region of an image as its face; none in an image without red."""
    module = types.ModuleType("stimgen.detection")

    def detect_faces(image):
        red = (image[..., 0] > 200) & (image[..., 2] < 50)
        if not red.any():
            return []
        ys, xs = np.nonzero(red)
        box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
        return [DetectedFace(box, 0.99, np.zeros((5, 2)))]

    def choose_face(faces, *, source, policy="largest"):
        if not faces:
            raise FaceNotFoundError(f"{source}: no face found")
        return faces[0]

    module.detect_faces, module.choose_face = detect_faces, choose_face
    module.DetectedFace, module.FaceNotFoundError = DetectedFace, FaceNotFoundError
    monkeypatch.setitem(sys.modules, "stimgen.detection", module)
    return module


def test_detect_rates_the_detected_face_and_reports_its_box(tmp_path, channel_onnx,
                                                            fake_detector):
    path = tmp_path / "photo.png"
    Image.fromarray(framed(120, (30, 20, 90, 100))).save(path)
    rater = HSEmotionRater(load_hsemotion(channel_onnx), describe_rater("hsemotion", "images"))
    table = rate_images([path], rater, framing="detect")
    row = table.iloc[0]
    assert (row["face_x0"], row["face_y0"], row["face_x1"], row["face_y1"]) == (30, 20, 90, 100)
    assert row["face_score"] == pytest.approx(0.99)
    assert row["valence"] == pytest.approx(red_value(), abs=1e-4)
    assert row["arousal"] == pytest.approx(blue_value(0), abs=1e-4)   # the blue border is cut


def test_detect_names_every_image_without_a_face(tmp_path, channel_onnx, fake_detector):
    folder = tmp_path / "photos"
    write_images(folder, {"face.png": "red", "wall.png": "white", "sky.png": "blue"})
    out = tmp_path / "r.tsv"
    result = rate_cli(folder, "--rater", "hsemotion", "--weights", channel_onnx, "-o", out)
    assert result.exit_code == 2, result.output
    assert "2 of 3 image(s)" in result.output
    assert "wall.png: no face found" in result.output and "sky.png: no face found" in result.output
    assert not out.exists()


def test_detect_without_the_detector_says_what_to_use(tmp_path, channel_onnx, monkeypatch):
    monkeypatch.setitem(sys.modules, "stimgen.detection", None)    # import fails
    (path,) = write_images(tmp_path, {"face.png": "red"})
    rater = HSEmotionRater(load_hsemotion(channel_onnx), describe_rater("hsemotion", "images"))
    with pytest.raises(ImageRatingError, match="embedded face detector") as err:
        rate_images([path], rater, framing="detect")
    assert "--framing full" in err.value.hint


def test_rate_with_emonet_and_the_ffhq_framing_passes_the_frame(tmp_path, monkeypatch):
    """emonet has no categories: the table has VA and sharpness only; with ``ffhq`` the
    rater receives the whole frame marked as FFHQ-aligned, to frame it its own way."""
    from stimgen.raters.emonet import EmoNetRater
    from stimgen.weights.tiny import write_emonet

    weights = tmp_path / "my_emonet.pth"
    write_emonet(weights, 8, {"warning": "test"})
    seen = []
    original = EmoNetRater.rate
    monkeypatch.setattr(EmoNetRater, "rate", lambda self, faces, neutral=None: (
        seen.extend(faces), original(self, faces, neutral))[1])
    (path,) = write_images(tmp_path / "frames", {"frame.png": "red"})
    out = tmp_path / "emonet.tsv"
    result = CliRunner().invoke(main, ["rate", str(path), "--rater", "emonet", "--weights",
                                       str(weights), "--framing", "ffhq", "-o", str(out)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out, sep="\t")
    assert list(table.columns) == ["file", "rater", "framing", "valence", "arousal", "sharpness"]
    assert table["valence"].between(-1, 1).all() and table["rater"].iloc[0] == "emonet"
    assert [face.extras.get("framing") for face in seen] == ["ffhq"]
    assert seen[0].image.size == (64, 48)                   # the whole frame, not a crop
