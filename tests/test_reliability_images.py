"""Images: decompression bombs refused, EXIF orientation applied, and no metadata (EXIF, GPS,
ICC, comments, text chunks) ever written into stimuli; identity photos never copied.

Guarantee (docs/reliability.md). Photo reading itself is stimgen.photos's
(tested in depth there); these tests check the guarantees end to end.
"""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

import stimgen
from stimgen.errors import StimgenError
from stimgen.render import encode_image

PROTOCOL = """\
study: {name: images}
identities:
  - {id: id01, seed: 1}
targets: {emotions: [circumplex:happy, circumplex:sad], intensities: [1.0], neutral: true}
output: {image_size: 96, format: FORMAT}
experiment:
  task: {type: rating}
  design: {type: random, participants: 1}
"""
PNG_PIXEL_CHUNKS = {b"IHDR", b"PLTE", b"IDAT", b"IEND"}
#: JPEG markers of pixels only: SOI, APP0 (JFIF header), DQT, SOF0, DHT, SOS, EOI.
JPEG_PIXEL_MARKERS = {0xD8, 0xE0, 0xDB, 0xC0, 0xDD, 0xC4, 0xDA, 0xD9}


def png_chunks(data: bytes) -> list[bytes]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, at = [], 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at:at + 4])
        chunks.append(data[at + 4:at + 8])
        at += 12 + length
    return chunks


def jpeg_markers(data: bytes) -> list[int]:
    """Markers up to the start of scan (after it comes entropy-coded data, then EOI)."""
    markers, at = [], 2
    assert data[:2] == b"\xff\xd8"
    markers.append(0xD8)
    while at < len(data):
        assert data[at] == 0xFF
        marker = data[at + 1]
        markers.append(marker)
        if marker == 0xDA:
            break
        (length,) = struct.unpack(">H", data[at + 2:at + 4])
        at += 2 + length
    return markers


def image_with_metadata() -> Image.Image:
    """A face-sized image carrying what a phone photo carries: EXIF with GPS, ICC, comment."""
    image = Image.fromarray(np.full((64, 64, 3), 128, np.uint8))
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"                                       # Make
    exif[0x8825] = {1: "N", 2: (52.0, 22.0, 1.0), 3: "E", 4: (4.0, 53.0, 2.0)}   # GPS
    image.info.update(exif=exif.tobytes(), icc_profile=b"\0" * 128, comment=b"Anna, 2024",
                      dpi=(300, 300), Description="private")
    return image


@pytest.mark.parametrize("fmt", ["png", "jpg"])
def test_encoded_stimulus_keeps_pixels_only(fmt):
    data = encode_image(image_with_metadata(), fmt)
    if fmt == "png":
        assert set(png_chunks(data)) <= PNG_PIXEL_CHUNKS
    else:
        assert set(jpeg_markers(data)) <= JPEG_PIXEL_MARKERS
    with Image.open(io.BytesIO(data)) as decoded:
        assert not decoded.getexif() and "icc_profile" not in decoded.info


@pytest.mark.parametrize("fmt", ["png", "jpg"])
def test_built_stimuli_and_bundle_carry_no_metadata_and_no_photos(tmp_path, fmt):
    path = tmp_path / "p.yaml"
    path.write_text(PROTOCOL.replace("FORMAT", fmt), encoding="utf-8")
    out = tmp_path / "build"
    stimgen.build(stimgen.load_protocol(path), out=out, progress=False, jobs=1)
    stimuli = sorted((out / "stimuli").iterdir())
    assert len(stimuli) == 3
    for stimulus in stimuli:
        data = stimulus.read_bytes()
        if fmt == "png":
            assert set(png_chunks(data)) <= PNG_PIXEL_CHUNKS, stimulus.name
        else:
            assert set(jpeg_markers(data)) <= JPEG_PIXEL_MARKERS, stimulus.name
    # The bundle refers to ../stimuli and holds no image of its own (no identity photo).
    images = [p for p in (out / "experiment").rglob("*")
              if p.suffix.lower() in {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff",
                                      ".bmp", ".gif", ".heic"}]
    assert images == []


# -- photos (the emostyle backend's reader) ----------------------------------------------------
photo = pytest.importorskip("stimgen.photos")


def bomb_png(width: int, height: int) -> bytes:
    """A valid PNG header announcing width x height grey pixels, with almost no data."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\0" * 1024)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("side", [20_000, 60_000])
def test_decompression_bomb_is_refused_before_decoding(tmp_path, side):
    path = tmp_path / "bomb.png"
    path.write_bytes(bomb_png(side, side))
    assert path.stat().st_size < 2_000
    with pytest.raises(StimgenError, match="megapixels"):
        photo.load_photo(path)


def test_exif_orientation_is_applied_and_metadata_dropped(tmp_path):
    pixels = np.zeros((200, 300, 3), np.uint8)          # landscape: red left, blue right
    pixels[:, :150, 0] = 255
    pixels[:, 150:, 2] = 255
    exif = Image.Exif()
    exif[0x0112] = 6                                    # "rotate 90 CW to view"
    exif[0x8825] = {1: "N", 2: (52.0, 22.0, 1.0)}
    path = tmp_path / "sideways.jpg"
    Image.fromarray(pixels).save(path, exif=exif.tobytes(), quality=95)
    upright = photo.load_photo(path)
    assert isinstance(upright, np.ndarray) and upright.shape == (300, 200, 3)
    assert upright[10, 100, 0] > 200 and upright[-10, 100, 2] > 200   # red now on top


def test_truncated_and_fake_photos_are_clear_errors(tmp_path):
    good = tmp_path / "good.jpg"
    Image.fromarray(np.full((256, 256, 3), 90, np.uint8)).save(good)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[:300])
    fake = tmp_path / "fake.jpg"
    fake.write_text("<html>not a photo</html>")
    for path in (truncated, fake):
        with pytest.raises(StimgenError):
            photo.load_photo(path)
