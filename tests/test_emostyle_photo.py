"""load_photo: EXIF orientation, colour modes to RGB, and clear errors for unusable files."""
from __future__ import annotations

import doctest
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from stimgen import photos as photo
from stimgen.photos import PhotoError, load_photo
from stimgen.backends.schematic import render_face, sample_identity
from stimgen.errors import StimgenError


@pytest.fixture(scope="module")
def face() -> Image.Image:
    """An upright, non-square schematic face (taller than wide, so a rotation shows)."""
    image = render_face(sample_identity(3), 0.6, 0.2, size=256).image
    return image.crop((32, 0, 224, 256))


def mean_abs_diff(a, b) -> float:
    return float(np.abs(np.asarray(a, dtype=float) - np.asarray(b, dtype=float)).mean())


@pytest.mark.parametrize("orientation, stored_as", [
    (6, Image.Transpose.ROTATE_90),    # camera held sideways: viewers rotate 90 degrees clockwise
    (3, Image.Transpose.ROTATE_180),
    (8, Image.Transpose.ROTATE_270),
    (2, Image.Transpose.FLIP_LEFT_RIGHT),
])
def test_exif_orientation_is_applied(tmp_path, face, orientation, stored_as):
    path = tmp_path / "sideways.jpg"
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "PhoneMaker"          # a tag that must not come back
    face.transpose(stored_as).save(path, quality=95, exif=exif)

    image = load_photo(path)

    assert image.dtype == np.uint8 and image.shape == (256, 192, 3)
    assert mean_abs_diff(image, face) < 3.0, "photo is not upright"


def test_grayscale_becomes_rgb(tmp_path, face):
    path = tmp_path / "gray.png"
    face.convert("L").save(path)
    image = load_photo(path)
    assert image.shape == (256, 192, 3)
    assert np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 1], image[..., 2])
    assert np.array_equal(image[..., 0], np.asarray(face.convert("L")))


def test_sixteen_bit_grayscale_is_scaled_not_clipped(tmp_path):
    values = np.tile(np.array([0, 257 * 64, 257 * 128, 65535], dtype=np.uint16), (160, 40))
    path = tmp_path / "gray16.png"
    Image.fromarray(values).save(path)
    image = load_photo(path)
    assert image[0, :4, 0].tolist() == [0, 64, 128, 255]


def test_cmyk_jpeg_becomes_rgb(tmp_path, face):
    path = tmp_path / "print.jpg"
    face.convert("CMYK").save(path, quality=95)
    image = load_photo(path)
    assert image.shape == (256, 192, 3)
    assert mean_abs_diff(image, face) < 4.0


def test_transparency_is_composited_on_white(tmp_path, face):
    rgba = face.convert("RGBA")
    alpha = np.full((256, 192), 255, np.uint8)
    alpha[:, :40] = 0                      # a cut-out: left strip transparent
    rgba.putalpha(Image.fromarray(alpha))
    path = tmp_path / "cutout.png"
    rgba.save(path)
    image = load_photo(path)
    assert (image[:, :40] == 255).all()
    assert np.array_equal(image[:, 40:], np.asarray(face)[:, 40:])


def test_palette_image_with_transparency(tmp_path, face):
    path = tmp_path / "palette.gif"
    paletted = face.convert("P", palette=Image.Palette.ADAPTIVE, colors=32)
    paletted.info["transparency"] = int(np.asarray(paletted)[0, 0])
    paletted.save(path, transparency=paletted.info["transparency"])
    image = load_photo(path)
    assert image.shape == (256, 192, 3)
    assert (image[0, 0] == 255).all(), "the transparent palette entry should turn white"


def test_not_an_image_names_the_file_and_formats(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("these are my notes, not a photo\n")
    with pytest.raises(PhotoError, match="notes.jpg is not an image") as info:
        load_photo(path)
    assert "JPEG" in info.value.hint and isinstance(info.value, StimgenError)


def test_formats_that_run_external_programs_are_refused(tmp_path):
    path = tmp_path / "figure.eps"     # Pillow would hand EPS to Ghostscript
    path.write_text("%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 200 200\nshowpage\n")
    with pytest.raises(PhotoError, match="not an image stimgen can read"):
        load_photo(path)


def test_missing_photo(tmp_path):
    with pytest.raises(PhotoError, match="photo .*absent.jpg: not found"):
        load_photo(tmp_path / "absent.jpg")


def test_too_small(tmp_path, face):
    path = tmp_path / "thumb.png"
    face.resize((60, 80)).save(path)
    with pytest.raises(PhotoError, match=r"60x80 pixels; photos need at least 128"):
        load_photo(path)


def test_truncated_file(tmp_path, face):
    path = tmp_path / "cut.jpg"
    face.save(path, quality=95)
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(PhotoError, match="could not be decoded"):
        load_photo(path)


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG header announcing ``width`` x ``height`` with almost no pixel data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("width, height", [(12000, 9000), (40000, 40000)])
def test_decompression_bomb_is_refused_before_decoding(tmp_path, width, height):
    # 108 MP is above our limit and below Pillow's own; 1.6 GP is above both.
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header_only(width, height))
    with pytest.raises(PhotoError, match="above the limit of 100 megapixels"):
        load_photo(path)


def test_pixel_limit_is_checked_from_the_header(tmp_path, face, monkeypatch):
    path = tmp_path / "face.png"
    face.save(path)
    monkeypatch.setattr(photo, "MAX_PHOTO_PIXELS", 192 * 256 - 1)
    with pytest.raises(PhotoError, match="192x256 pixels, above the limit"):
        load_photo(path)


def test_docstring_examples():
    assert doctest.testmod(photo).failed == 0
