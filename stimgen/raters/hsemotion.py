"""The ``hsemotion`` rater: HSEmotion ``enet_b0_8_va_mtl`` (Savchenko) run with onnxruntime.

Owns the network's input contract (:func:`preprocess`), its face framing for rendered faces
(:func:`face_box`), the check of an ONNX file at load (:func:`load_hsemotion`) and
:class:`HSEmotionRater`, which gives valence/arousal and the 8 expression probabilities.

The network was trained on AffectNet, independently of both stimgen generators, so its
ratings are held-out measurements for schematic and emostyle faces alike. Preprocessing
follows the reference package (hsemotion_onnx, ``facial_emotions.py``): an RGB face crop,
resized to 224 x 224 with OpenCV's bilinear ``resize`` (uint8 in, uint8 out), divided by
255, normalised with the ImageNet mean and standard deviation, NCHW float32. We resize in
numpy with OpenCV's own fixed-point arithmetic (:func:`resize_bilinear`), so the network sees
the reference package's input to the last bit, without OpenCV or torch being imported.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from stimgen.backends.base import Rendered
from stimgen.errors import StimgenError
from stimgen.raters.base import RaterInfo, RatingDetails

#: The 8 expression logits of the network's output, in column order (AffectNet's 8 classes).
EXPRESSION_CATEGORIES = ("anger", "contempt", "disgust", "fear", "happiness", "neutral",
                         "sadness", "surprise")
INPUT_NAME = "input"              # the published file's only input
INPUT_SIZE = 224                  # pixels, square (EfficientNet-B0 models of HSEmotion)
OUTPUT_WIDTH = 10                 # 8 logits, then valence (column -2) and arousal (column -1)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Faces per onnxruntime call: 32 x 3 x 224 x 224 float32 is 19 MB of input.
DEFAULT_BATCH = 32

#: Tight face box inside an FFHQ-aligned frame, as fractions of its width and height
#: (x0, y0, x1, y1). FFHQ alignment (Karras et al. 2019) scales a face so that
#: max(2 x eye distance, 1.8 x eye-to-mouth distance) is half the frame and puts the point
#: one tenth of the way from the eye midpoint to the mouth at the centre, so for a typical
#: face the eyes sit near (0.375, 0.48) and (0.625, 0.48) and the mouth near (0.5, 0.72).
#: With an eye distance of a quarter of the frame, the cheek-to-cheek breadth (about 2.2
#: eye distances) spans 0.22-0.78, the brows (about half an eye distance above the eyes)
#: are at 0.36 and the chin (about 0.7 eye distances below the mouth) at 0.90: the box a
#: face detector draws, which is what HSEmotion was trained on (MTCNN crops of AffectNet).
#: Derived from geometry, not tuned on any rating.
FFHQ_FACE_BOX = (0.22, 0.34, 0.78, 0.90)
#: Margin added on every side of the 68-landmark extent (brows to chin, jaw to jaw), as a
#: fraction of its width/height: detector boxes include a little forehead and cheek.
LANDMARK_MARGIN = 0.05


class HSEmotionModelError(StimgenError):
    """An ONNX file that is not the HSEmotion network stimgen expects (or no ONNX at all)."""


# ----------------------------------------------------------------------------- framing

def landmark_box(landmarks: np.ndarray, width: int, height: int,
                 margin: float = LANDMARK_MARGIN) -> tuple[float, float, float, float]:
    """Tight face box (x0, y0, x1, y1) around 68 landmarks, grown by ``margin`` per side.

    Parameters
    ----------
    landmarks : numpy.ndarray
        [68, 2] pixel coordinates (x, y), iBUG 300-W order.
    width, height : int
        Image size; the box is clipped to it.
    margin : float
        Fraction of the landmarks' width (height) added left and right (top and bottom).

    Examples
    --------
    >>> points = np.array([[20.0, 30.0], [80.0, 90.0]])
    >>> landmark_box(points, 100, 100, margin=0.1)
    (14.0, 24.0, 86.0, 96.0)
    """
    points = np.asarray(landmarks, dtype=float)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) == 0:
        raise ValueError(f"landmarks must be [K, 2] pixel coordinates, got {points.shape}")
    (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
    dx, dy = (x1 - x0) * margin, (y1 - y0) * margin
    return (float(max(0.0, x0 - dx)), float(max(0.0, y0 - dy)),
            float(min(width, x1 + dx)), float(min(height, y1 + dy)))


def face_box(face: Rendered) -> tuple[float, float, float, float]:
    """Where the face of a rendered image is, as HSEmotion should see it: (x0, y0, x1, y1).

    FFHQ-aligned frames (``extras["framing"] == "ffhq"``, emostyle output) use
    :data:`FFHQ_FACE_BOX`; faces with 68 landmarks (schematic faces) use
    :func:`landmark_box`; any other image is taken whole.

    >>> from PIL import Image
    >>> face_box(Rendered(Image.new("RGB", (1000, 500))))
    (0.0, 0.0, 1000.0, 500.0)
    >>> face_box(Rendered(Image.new("RGB", (100, 100)), extras={"framing": "ffhq"}))
    (22.0, 34.0, 78.0, 90.0)
    """
    width, height = face.image.size
    if face.extras.get("framing") == "ffhq":
        x0, y0, x1, y1 = FFHQ_FACE_BOX
        return (x0 * width, y0 * height, x1 * width, y1 * height)
    if face.landmarks is not None:
        return landmark_box(face.landmarks, width, height)
    return (0.0, 0.0, float(width), float(height))


def crop_box(image: np.ndarray, box: Sequence[float]) -> np.ndarray:
    """The pixels of ``image`` [H, W, C] inside ``box`` (x0, y0, x1, y1), clipped to the
    image, widened outwards to whole pixels.

    >>> crop_box(np.zeros((10, 20, 3), np.uint8), (2.5, 1.0, 30.0, 4.2)).shape
    (4, 18, 3)
    """
    height, width = image.shape[:2]
    x0, y0 = max(0, int(np.floor(box[0]))), max(0, int(np.floor(box[1])))
    x1, y1 = min(width, int(np.ceil(box[2]))), min(height, int(np.ceil(box[3])))
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"face box {tuple(box)} is empty inside a {width}x{height} image")
    return image[y0:y1, x0:x1]


def rgb_pixels(face: Rendered) -> np.ndarray:
    """uint8 [H, W, 3] pixels of a rendered face's image."""
    return np.asarray(face.image.convert("RGB"), dtype=np.uint8)


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


# ----------------------------------------------------------------------------- the rater

class HSEmotionRater:
    """HSEmotion valence, arousal and expression probabilities of rendered faces.

    Parameters
    ----------
    network : HSEmotionNetwork
        From :func:`load_hsemotion`.
    info : RaterInfo
        Name, description and circularity (see :func:`stimgen.raters.describe_rater`).

    Each face is cropped with :func:`face_box` and rated alone: the neutral reference is
    not used. Valence and arousal are clamped to [-1, 1].
    """

    categories = EXPRESSION_CATEGORIES

    def __init__(self, network: HSEmotionNetwork, info: RaterInfo):
        self.network = network
        self.info = info

    #: Side, in pixels, of the square every crop is resized to (:func:`resize_bilinear`).
    input_size = INPUT_SIZE

    def rate_crops(self, crops: Sequence[np.ndarray]) -> RatingDetails:
        """VA [N, 2] and the expression probabilities [N, 8] of uint8 RGB face crops
        [H, W, 3] of any size (a crop of :attr:`input_size` pixels is used as it is)."""
        scores = self.network.scores(preprocess(crops))
        va = np.clip(scores[:, -2:].astype(float), -1.0, 1.0)
        return RatingDetails(va=va, probabilities=softmax(scores[:, :8].astype(float)),
                             categories=EXPRESSION_CATEGORIES)

    def rate_details(self, faces: Sequence[Rendered],
                     neutral: Rendered | None = None) -> RatingDetails:
        """VA [N, 2] and the expression probabilities [N, 8] of ``faces``."""
        return self.rate_crops([crop_box(rgb_pixels(face), face_box(face)) for face in faces])

    def rate(self, faces: Sequence[Rendered], neutral: Rendered | None = None) -> np.ndarray:
        """[N, 2] achieved (valence, arousal) of ``faces``, each in [-1, 1]."""
        return self.rate_details(faces, neutral).va
