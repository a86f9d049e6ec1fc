"""Reading a researcher's photo safely: one uint8 RGB array, upright, with no metadata.

Owns :func:`load_photo` and its errors (missing file, not an image, too small, too many
pixels); EXIF orientation is applied, every colour mode becomes RGB and no tag survives.
Photo identities (the emostyle backend) and `stimgen rate` read images through it; it
needs Pillow and numpy only, so rating images never imports torch.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from stimgen.errors import StimgenError

#: Formats a photo may be in (JPEG includes phones' multi-picture MPO files). Pillow opens
#: more, and some run external programs (EPS runs Ghostscript), so we list them.
PHOTO_FORMATS = ("JPEG", "PNG", "WEBP", "TIFF", "BMP", "GIF", "PPM")
#: Shortest side a photo must have, pixels: below this no face is large enough to align.
MIN_PHOTO_SIDE = 128
#: Most pixels a photo may have (width x height): 100 megapixels, above any camera portrait.
#: Checked from the header before decoding, so a decompression bomb never reaches memory.
MAX_PHOTO_PIXELS = 100_000_000
#: What transparent pixels are composited onto (white, as for a cut-out portrait).
ALPHA_BACKGROUND = (255, 255, 255)


class PhotoError(StimgenError):
    """A photo that cannot be used as an identity: missing, unreadable, too small or too big."""


def load_photo(path: str | Path, *, min_side: int = MIN_PHOTO_SIDE) -> np.ndarray:
    """Read a photo as a uint8 RGB array [H, W, 3], upright and without metadata.

    Parameters
    ----------
    path : str or Path
        A JPEG, PNG, WebP, TIFF, BMP, GIF (first frame) or PPM file.
    min_side : int
        Shortest side accepted, pixels (`stimgen rate` accepts smaller face crops than
        an identity photo needs).

    Returns
    -------
    numpy.ndarray
        uint8 [H, W, 3]. The EXIF orientation is applied (a phone photo taken sideways
        comes back upright). Grayscale, palette, CMYK, 16-bit and other modes are
        converted to RGB; transparent pixels are composited onto white. Only pixels
        are returned: EXIF, GPS, ICC and every other tag are dropped.

    Raises
    ------
    PhotoError
        If the file is missing, is not an image in :data:`PHOTO_FORMATS`, cannot be
        decoded, is smaller than ``min_side`` or larger than
        :data:`MAX_PHOTO_PIXELS`. The message names the file and what to do.

    Examples
    --------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "p01.jpg"
    >>> Image.new("RGB", (960, 1280), "grey").save(path)     # a portrait photo, 960 x 1280
    >>> image = load_photo(path)
    >>> image.shape, image.dtype
    ((1280, 960, 3), dtype('uint8'))
    """
    path = Path(path)
    check_photo_file(path)
    with warnings.catch_warnings():
        # Pillow only warns between MAX_IMAGE_PIXELS and twice that; we check ourselves.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(path, formats=PHOTO_FORMATS) as image:
                check_photo_size(image.size, path, min_side=min_side)
                image.load()
                ImageOps.exif_transpose(image, in_place=True)   # upright, without a copy
                return to_rgb_array(image)
        except UnidentifiedImageError as err:
            raise PhotoError(f"{path} is not an image stimgen can read",
                             hint=f"save it as JPEG or PNG (readable formats: "
                                  f"{', '.join(PHOTO_FORMATS)})") from err
        except Image.DecompressionBombError as err:
            raise _too_many_pixels(path, None) from err
        except ValueError as err:
            if "too large" not in str(err).lower() and "too much memory" not in str(err):
                raise PhotoError(f"{path} could not be decoded: {err}",
                                 hint="the file may be truncated or damaged; export it again "
                                      "as JPEG or PNG") from err
            # Pillow's limit on a PNG's text chunks: metadata that inflates to many megabytes
            raise PhotoError(f"{path} carries text metadata that inflates beyond Pillow's "
                             f"safety limit (a decompression bomb in its PNG text chunks: {err})",
                             hint="save the pixels alone again (e.g. export as JPEG, or PNG "
                                  "without metadata)") from err
        except (OSError, SyntaxError) as err:  # truncated or corrupt data
            raise PhotoError(f"{path} could not be decoded: {err}",
                             hint="the file may be truncated or damaged; export it again "
                                  "as JPEG or PNG") from err


def check_photo_file(path: Path) -> None:
    """Raise :class:`PhotoError` unless ``path`` is, or links to, a regular file.

    A symbolic link to a regular file is followed (photos are often linked from a shared
    folder). A link that leads nowhere, a folder, or a device or pipe (reading /dev/zero or a
    FIFO would never end) is refused, saying what is there.
    """
    if path.is_file():
        return
    link = f" (a symbolic link to {path.resolve()})" if path.is_symlink() else ""
    if path.is_symlink() and not path.exists():
        what = "a symbolic link to nothing: its target does not exist"
    elif path.is_dir():
        what = "a folder, not a photo file"
    elif path.exists():
        what = "not a regular file (a device, pipe or socket)"
    else:
        what = "not found"
    raise PhotoError(f"photo {path}{link if path.exists() else ''}: {what}",
                     hint="check the `image:` path; relative paths are relative to the "
                          "protocol file's folder")


def check_photo_size(size: tuple[int, int], path: str | Path = "photo", *,
                     min_side: int = MIN_PHOTO_SIDE) -> None:
    """Raise :class:`PhotoError` unless ``size`` (width, height) is within the limits."""
    width, height = size
    if width * height > MAX_PHOTO_PIXELS:
        raise _too_many_pixels(path, (width, height))
    if min(width, height) < min_side:
        raise PhotoError(
            f"{path} is {width}x{height} pixels; photos need at least {min_side} "
            f"pixels on the shorter side",
            hint="use the original, larger photo (the face should be at least about "
                 "256 pixels across for a good result)")


def _too_many_pixels(path, size: tuple[int, int] | None) -> PhotoError:
    shown = f"{size[0]}x{size[1]} pixels" if size else "too many pixels"
    return PhotoError(
        f"{path} is {shown}, above the limit of {MAX_PHOTO_PIXELS // 1_000_000} megapixels",
        hint="resize or crop the photo around the face (a few megapixels is plenty)")


def to_rgb_array(image: Image.Image) -> np.ndarray:
    """Pixels of any Pillow image as uint8 RGB [H, W, 3]; alpha composited onto white.

    16-bit and 32-bit grayscale are scaled to 8 bits (not clipped), palette images are
    expanded, CMYK is converted with Pillow's formula (ICC profiles are not applied).

    >>> to_rgb_array(Image.new("LA", (4, 2), (90, 0))).tolist()[0][0]
    [255, 255, 255]
    """
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        image = Image.fromarray(_gray_to_uint8(np.asarray(image)), mode="L")
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, ALPHA_BACKGROUND + (255,))
        image = Image.alpha_composite(background, rgba)
    rgb = np.asarray(image if image.mode == "RGB" else image.convert("RGB"), dtype=np.uint8)
    return np.ascontiguousarray(rgb)


def _gray_to_uint8(values: np.ndarray) -> np.ndarray:
    """High-bit-depth grayscale to 8 bits: 16-bit ranges scale by 1/257, floats in [0, 1] by 255."""
    floats = values.dtype.kind == "f"
    values = values.astype(np.float64)
    if floats and values.size and 0.0 <= values.min() and values.max() <= 1.0:
        values = values * 255.0
    elif values.size and values.max() > 255:
        values = values / 257.0
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)
