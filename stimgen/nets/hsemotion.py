"""The HSEmotion network ``enet_b0_8_va_mtl`` (Savchenko, 2022) as an onnxruntime session.

Owns the network's input contract (:func:`preprocess`: resize, ImageNet normalisation, NCHW
float32) and the check of an ONNX file at load (:func:`load_hsemotion`); the rater that frames
rendered faces for it is :mod:`stimgen.raters.hsemotion`.

Preprocessing follows the reference package (hsemotion_onnx, ``facial_emotions.py``): an RGB
face crop, resized to 224 x 224 with OpenCV's bilinear ``resize`` (uint8 in, uint8 out),
divided by 255, normalised with the ImageNet mean and standard deviation, NCHW float32. We
resize in numpy with OpenCV's own fixed-point arithmetic (:func:`resize_bilinear`), so the
network sees the reference package's input to the last bit, without OpenCV or torch imported.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from stimgen.errors import StimgenError

INPUT_NAME = "input"              # the published file's only input
INPUT_SIZE = 224                  # pixels, square (EfficientNet-B0 models of HSEmotion)
OUTPUT_WIDTH = 10                 # 8 logits, then valence (column -2) and arousal (column -1)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Faces per onnxruntime call: 32 x 3 x 224 x 224 float32 is 19 MB of input.
DEFAULT_BATCH = 32


class HSEmotionModelError(StimgenError):
    """An ONNX file that is not the HSEmotion network stimgen expects (or no ONNX at all)."""


# ----------------------------------------------------------------------------- preprocessing

#: OpenCV's fixed-point resampling weights: 11 fractional bits (``INTER_RESIZE_COEF_BITS``).
RESIZE_COEF_BITS = 11


def _linear_taps(n_in: int, n_out: int, clamp: bool) -> tuple[np.ndarray, ...]:
    """Source indices (first, second) and fixed-point weights of each output pixel along one
    axis, computed as OpenCV's ``resize`` computes them (float32 positions, weights rounded to
    :data:`RESIZE_COEF_BITS` bits half to even). Along x (``clamp``) a position outside the
    source takes the edge pixel with weights (1, 0); along y OpenCV clamps the two row indices
    and keeps the weights."""
    scale = 1.0 / (n_out / n_in)                          # OpenCV's scale_x = 1 / inv_scale_x
    position = ((np.arange(n_out) + 0.5) * scale - 0.5).astype(np.float32)
    first = np.floor(position).astype(np.int64)
    fraction = (position - first.astype(np.float32)).astype(np.float32)
    if clamp:
        outside = (first < 0) | (first >= n_in - 1)
        fraction[outside] = 0.0
    one = np.float32(1 << RESIZE_COEF_BITS)
    w0 = np.rint((np.float32(1.0) - fraction) * one).astype(np.int32)
    w1 = np.rint(fraction * one).astype(np.int32)
    return (np.clip(first, 0, n_in - 1), np.clip(first + 1, 0, n_in - 1), w0, w1)


def resize_bilinear(image: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """Resize a uint8 [H, W, C] image to ``size`` x ``size`` exactly as OpenCV's
    ``cv2.resize(image, (size, size))`` (``INTER_LINEAR``) does, the call of the reference
    package; numpy only.

    Bilinear sampling with pixel centres at half-integers, the two nearest source pixels per
    axis, no anti-aliasing filter when shrinking, edges clamped; in OpenCV's fixed point:
    11-bit weights, a horizontal pass in integers, then the vertical pass as its vectorised
    code rounds it (each product shifted right by 4 and 16 bits, summed, then rounded by 2
    bits). An exact halving averages 2 x 2 blocks, as OpenCV does (it switches to
    ``INTER_AREA`` there). tests/test_hsemotion_rater.py checks equality with
    ``cv2.resize`` where OpenCV is installed. Pillow's ``BILINEAR`` is not the same when
    shrinking: it widens the filter (anti-aliases).

    >>> image = np.arange(16, dtype=np.uint8).reshape(4, 4, 1) * 10
    >>> resize_bilinear(image, 2)[..., 0].tolist()
    [[25, 45], [105, 125]]
    """
    if image.dtype != np.uint8 or image.ndim != 3:
        raise ValueError(f"expected a uint8 [H, W, C] image, got {image.dtype} {image.shape}")
    height, width, channels = image.shape
    if (height, width) == (size, size):
        return image.copy()
    if (height, width) == (2 * size, 2 * size):
        s = image.astype(np.uint16)
        return ((s[0::2, 0::2] + s[1::2, 0::2] + s[0::2, 1::2] + s[1::2, 1::2] + 2) >> 2
                ).astype(np.uint8)
    y0, y1, b0, b1 = _linear_taps(height, size, clamp=False)
    x0, x1, a0, a1 = _linear_taps(width, size, clamp=True)
    # rows of [W * C] values: column x of channel c is value x * C + c
    lanes = np.arange(channels)
    left, right = (x0[:, None] * channels + lanes).ravel(), (x1[:, None] * channels + lanes).ravel()
    a0, a1 = np.repeat(a0, channels), np.repeat(a1, channels)
    rows = np.ascontiguousarray(image).reshape(height, width * channels)

    def horizontal(row_indices, weight):       # (sum of 2 taps) >> 4, then x weight >> 16
        picked = rows.take(row_indices, axis=0)
        value = np.multiply(picked.take(left, axis=1), a0, dtype=np.int32)
        value += np.multiply(picked.take(right, axis=1), a1, dtype=np.int32)
        value >>= 4
        value *= weight[:, None]
        value >>= 16
        return value

    total = horizontal(y0, b0)
    total += horizontal(y1, b1)
    total += 2
    total >>= 2
    return np.clip(total, 0, 255).astype(np.uint8).reshape(size, size, channels)


@lru_cache(maxsize=1)
def _normalisation_table() -> np.ndarray:
    """float32 [3, 256]: the network's input value of each grey level in each RGB channel,
    ``(level / 255 - mean) / std`` computed in float64 as the reference package does."""
    levels = np.arange(256, dtype=np.float64) / 255.0
    table = (levels[None, :] - np.asarray(IMAGENET_MEAN)[:, None]) / np.asarray(IMAGENET_STD)[:, None]
    table = table.astype(np.float32)
    table.setflags(write=False)
    return table


def normalise(resized: np.ndarray) -> np.ndarray:
    """The network's input [N, 3, 224, 224] float32 from resized uint8 RGB crops
    [N, 224, 224, 3]: each value divided by 255 and normalised per channel with
    :data:`IMAGENET_MEAN` and :data:`IMAGENET_STD` (a look-up per grey level)."""
    if resized.dtype != np.uint8 or resized.ndim != 4 or resized.shape[3] != 3:
        raise ValueError(f"expected uint8 [N, H, W, 3] crops, got {resized.dtype} "
                         f"{resized.shape}")
    table = _normalisation_table()
    batch = np.empty((resized.shape[0], 3, *resized.shape[1:3]), dtype=np.float32)
    for index, crop in enumerate(resized):      # one face at a time: contiguous, cache-sized
        planes = np.ascontiguousarray(crop.transpose(2, 0, 1))
        for channel in range(3):
            np.take(table[channel], planes[channel], out=batch[index, channel])
    return batch


def preprocess(crops: Sequence[np.ndarray]) -> np.ndarray:
    """The network's input [N, 3, 224, 224] float32 from uint8 RGB face crops [H, W, 3].

    Each crop is resized with :func:`resize_bilinear`, divided by 255 and normalised per
    channel with :data:`IMAGENET_MEAN` and :data:`IMAGENET_STD`; channels first (RGB). The
    values are the reference package's to the last bit (its float64 arithmetic, then float32).

    >>> grey = np.full((50, 40, 3), 255, np.uint8)
    >>> x = preprocess([grey])
    >>> x.shape, x.dtype, round(float(x[0, 0, 0, 0]), 4)
    ((1, 3, 224, 224), dtype('float32'), 2.2489)
    """
    resized = np.empty((len(crops), INPUT_SIZE, INPUT_SIZE, 3), dtype=np.uint8)
    for i, crop in enumerate(crops):
        if crop.ndim != 3 or crop.shape[2] != 3:
            raise ValueError(f"face crop {i} must be RGB [H, W, 3], got {crop.shape}")
        resized[i] = resize_bilinear(crop)
    return normalise(resized)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of [N, K] logits.

    >>> softmax(np.array([[0.0, 0.0], [0.0, np.log(3.0)]])).round(3).tolist()
    [[0.5, 0.5], [0.25, 0.75]]
    """
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


# ----------------------------------------------------------------------------- the ONNX file

EXPECTED = (f"one input named '{INPUT_NAME}', float32 [N, 3, {INPUT_SIZE}, {INPUT_SIZE}], "
            f"and one output [N, {OUTPUT_WIDTH}] (8 expression logits, valence, arousal)")


def _wrong_file(path: Path, what: str) -> HSEmotionModelError:
    return HSEmotionModelError(
        f"{path}: not the HSEmotion enet_b0_8_va_mtl network ({what}); expected {EXPECTED}",
        hint="use the published enet_b0_8_va_mtl.onnx (`stimgen models fetch "
             "hsemotion_enet_b0_8_va_mtl`), or pass --weights with a file of that network")


def _shape_text(shape: Sequence) -> str:
    return "[" + ", ".join(str(d) if d is not None else "?" for d in shape) + "]"


class HSEmotionNetwork:
    """A checked onnxruntime session of ``enet_b0_8_va_mtl``: uint8 crops in, [N, 10] out.

    Build it with :func:`load_hsemotion`. ``batch_size`` is the number of faces per
    onnxruntime call; a file whose batch dimension is fixed runs with that size.
    """

    def __init__(self, session, path: Path, batch_size: int = DEFAULT_BATCH):
        self.session = session
        self.path = path
        fixed = session.get_inputs()[0].shape[0]
        self.fixed_batch = fixed if isinstance(fixed, int) and fixed > 0 else None
        self.batch_size = self.fixed_batch or batch_size
        self.providers = tuple(session.get_providers())
        # what `stimgen models inspect` shows about the file
        self.init_kwargs = {"input": f"{INPUT_NAME} float32 {_shape_text(session.get_inputs()[0].shape)}",
                            "output": _shape_text(session.get_outputs()[0].shape),
                            "providers": ", ".join(self.providers)}

    def parameter_count(self) -> int | None:
        """Number of weights stored in the file (needs the ``onnx`` package; else None)."""
        try:
            import onnx
        except ImportError:
            return None
        model = onnx.load(str(self.path), load_external_data=False)
        return int(sum(np.prod(t.dims, dtype=np.int64) for t in model.graph.initializer))

    def scores(self, batch: np.ndarray) -> np.ndarray:
        """Raw [N, 10] output for a preprocessed [N, 3, 224, 224] float32 batch."""
        outputs = []
        for start in range(0, len(batch), self.batch_size):
            chunk = batch[start:start + self.batch_size]
            n = len(chunk)
            if self.fixed_batch and n < self.fixed_batch:   # pad the last chunk
                pad = np.zeros((self.fixed_batch - n, *chunk.shape[1:]), dtype=chunk.dtype)
                chunk = np.concatenate([chunk, pad])
            out = np.asarray(self.session.run(None, {INPUT_NAME: chunk})[0])
            if out.ndim != 2 or out.shape[1] != OUTPUT_WIDTH:
                raise _wrong_file(self.path, f"its output has shape {list(out.shape)}")
            outputs.append(out[:n])
        if not outputs:
            return np.zeros((0, OUTPUT_WIDTH), dtype=np.float32)
        return np.concatenate(outputs).astype(np.float32)


def onnx_providers(device: str = "auto") -> list[str]:
    """onnxruntime execution providers: CUDA first when ``auto`` finds it, else CPU."""
    import onnxruntime as ort

    if device not in ("auto", "cpu"):
        raise ValueError(f"device must be 'auto' or 'cpu', got {device!r}")
    if device == "auto" and "CUDAExecutionProvider" in ort.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def load_hsemotion(path: str | Path, *, device: str = "auto",
                   batch_size: int = DEFAULT_BATCH) -> HSEmotionNetwork:
    """Open an ``enet_b0_8_va_mtl`` ONNX file and check its input and output signature.

    Loading an ONNX file runs no code from it: onnxruntime reads a graph of standard
    operators (custom operator libraries would have to be registered by us; none are).

    Raises
    ------
    HSEmotionModelError
        The file is missing, not ONNX, or its input/output is not the expected
        ``input`` float32 [N, 3, 224, 224] -> [N, 10].
    """
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise HSEmotionModelError(f"{path}: no such file",
                                  hint="give the path of enet_b0_8_va_mtl.onnx")
    options = ort.SessionOptions()
    options.log_severity_level = 3          # errors only: no provider chatter on stderr
    # idle threads sleep instead of spinning: images are read and framed on the other cores
    # between network calls (spinning costs them CPU time; the calls take as long)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = ort.InferenceSession(str(path), sess_options=options,
                                       providers=onnx_providers(device))
    except Exception as err:            # onnxruntime's errors derive from Exception only
        if not type(err).__module__.startswith("onnxruntime"):
            raise
        raise _wrong_file(path, f"onnxruntime cannot read it: {str(err).strip()[:200]}") from err
    check_signature(session, path)
    return HSEmotionNetwork(session, path, batch_size)


def check_signature(session, path: Path) -> None:
    """Raise :class:`HSEmotionModelError` unless ``session`` has the published signature."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1:
        raise _wrong_file(path, f"it has {len(inputs)} inputs: "
                                f"{', '.join(repr(i.name) for i in inputs)}")
    (given,) = inputs
    if given.name != INPUT_NAME:
        raise _wrong_file(path, f"its input is named {given.name!r}")
    if given.type != "tensor(float)":
        raise _wrong_file(path, f"its input is {given.type}, not float32")
    shape = list(given.shape)
    if len(shape) != 4 or shape[1:] != [3, INPUT_SIZE, INPUT_SIZE]:
        raise _wrong_file(path, f"its input has shape {_shape_text(shape)}")
    if len(outputs) != 1:
        raise _wrong_file(path, f"it has {len(outputs)} outputs")
    out_shape = list(outputs[0].shape)
    if len(out_shape) != 2 or (isinstance(out_shape[1], int) and out_shape[1] != OUTPUT_WIDTH):
        raise _wrong_file(path, f"its output has shape {_shape_text(out_shape)}")
