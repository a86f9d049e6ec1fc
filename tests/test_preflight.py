"""`stimgen validate` refuses every photo the build refuses and passes every photo it accepts,
naming the file and the identity; it names every optional package the protocol needs and this
machine lacks, with the command that installs it; the build stops on both before drawing.

Real photos: the face and house pictures that ship inside PsychoPy's wheel (its Builder demos).
"""
from __future__ import annotations

import io
import os
import struct
import sys
import zlib
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

import stimgen
from stimgen.cli import main
from stimgen.errors import StimgenError
from stimgen.plan import render_spec
from stimgen.preflight import PackagesMissingError, check_photos, missing_packages

psychopy = pytest.importorskip("psychopy")
STIMS = (Path(psychopy.__file__).parent / "demos" / "builder" / "Design Templates"
         / "randomisedBlocks" / "stims")
FACE, OTHER_FACE, HOUSE = STIMS / "face01.jpg", STIMS / "face02.jpg", STIMS / "house01.jpg"
pytestmark = pytest.mark.skipif(not FACE.is_file(), reason="PsychoPy's demo photos not found")

PROTOCOL = """\
study: {{name: photos}}
backend: {{name: emostyle, options: {{inversion_steps: 1, personalization_steps: 1}}}}
identities:
  - {{id: ok01, image: ok.jpg}}
  - {{id: {identity}, image: {photo}}}
targets: {{emotions: [calm], intensities: [1.0]}}
output: {{image_size: 64}}
"""


def _chunk(kind: bytes, body: bytes) -> bytes:
    return (struct.pack(">I", len(body)) + kind + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))


def _png(size=(256, 256)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, "grey").save(buffer, format="PNG")
    return buffer.getvalue()


def make(kind: str, folder: Path) -> str:
    """Write the photo ``kind`` into ``folder``; returns its name as the protocol writes it."""
    name = {"truncated": "cut.jpg", "not_an_image": "notes.jpg", "empty": "empty.jpg",
            "one_pixel": "dot.png", "pixel_bomb": "bomb.png", "text_bomb": "text.png",
            "dangling_link": "gone.jpg", "link_to_folder": "folder.jpg",
            "link_to_device": "zero.jpg", "no_face": "house.jpg"}[kind]
    path = folder / name
    if kind == "truncated":
        path.write_bytes(FACE.read_bytes()[:20_000])
    elif kind == "not_an_image":
        path.write_text("participant notes, not a photo\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "one_pixel":
        Image.new("RGB", (1, 1)).save(path)
    elif kind == "pixel_bomb":         # a header announcing 60000 x 60000 pixels
        header = struct.pack(">IIBBBBB", 60_000, 60_000, 8, 0, 0, 0, 0)
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
                         + _chunk(b"IDAT", zlib.compress(b"\0" * 1024)) + _chunk(b"IEND", b""))
    elif kind == "text_bomb":          # 64 KB of zTXt that inflates to 64 MB
        png = _png()
        bomb = _chunk(b"zTXt", b"Comment\x00\x00" + zlib.compress(b"A" * (64 << 20), 9))
        path.write_bytes(png[:33] + bomb + png[33:])
    elif kind == "dangling_link":
        path.symlink_to(folder / "deleted.jpg")
    elif kind == "link_to_folder":
        (folder / "sub").mkdir()
        path.symlink_to(folder / "sub")
    elif kind == "link_to_device":
        path.symlink_to("/dev/zero")
    elif kind == "no_face":
        path.write_bytes(HOUSE.read_bytes())
    return name


def study(tmp_path: Path, photo: str, identity: str = "bad02") -> Path:
    (tmp_path / "ok.jpg").write_bytes(FACE.read_bytes())
    path = tmp_path / "protocol.yaml"
    path.write_text(PROTOCOL.format(identity=identity, photo=photo), encoding="utf-8")
    return path


def validate(path: Path):
    return CliRunner().invoke(main, ["validate", str(path)])


REFUSED = ["truncated", "not_an_image", "empty", "one_pixel", "pixel_bomb", "text_bomb",
           "dangling_link", "link_to_folder", "link_to_device", "no_face"]


@pytest.mark.parametrize("kind", REFUSED)
def test_validate_refuses_every_photo_the_build_refuses(tmp_path, kind):
    if kind == "link_to_device" and not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero")
    name = make(kind, tmp_path)
    path = study(tmp_path, name)
    result = validate(path)
    assert result.exit_code == 2, result.output
    error = result.stderr
    assert "Traceback" not in error
    assert f'identities.1.image: identity "bad02"' in error and name in error
    assert f"{path}:5:" in error                  # the line of that identity in the protocol
    assert "ok01" not in error                     # the good photo is not blamed

    # the build refuses the same photo (the functions the build reads photos and finds
    # faces with: its preflight before anything is drawn, its own alignment step after)
    if kind == "no_face":
        backend = _backend(stimgen.load_protocol(path))
        from stimgen.photos import load_photo
        from stimgen.detection import FaceNotFoundError, choose_face

        with pytest.raises(FaceNotFoundError, match="house.jpg"):
            image = load_photo(tmp_path / name)
            choose_face(backend.find_faces(image), source=str(tmp_path / name),
                        policy=backend.options.multiple_faces)
    else:
        with pytest.raises(StimgenError) as refused:    # `stimgen build`: load, then build
            stimgen.build(stimgen.load_protocol(path), out=tmp_path / "out", progress=False,
                          dry_run=True)
        assert 'identity "bad02"' in str(refused.value) and name in str(refused.value)
        assert not (tmp_path / "out" / "stimuli").exists()      # nothing was drawn


@pytest.mark.parametrize("photo", [FACE, OTHER_FACE, "link"], ids=["face01", "face02", "link"])
def test_validate_passes_every_photo_the_build_accepts(tmp_path, photo):
    if photo == "link":
        (tmp_path / "linked.jpg").symlink_to(FACE)
        name = "linked.jpg"
    else:
        name = photo.name
        (tmp_path / name).write_bytes(photo.read_bytes())
    path = study(tmp_path, name, identity="good02")
    result = validate(path)
    assert result.exit_code == 0, result.output
    assert "valid" in result.output
    protocol = stimgen.load_protocol(path)
    assert check_photos(protocol).problems == []
    # the build's own steps accept it: its preflight, and its detector finds one face
    from stimgen.photos import load_photo
    from stimgen.detection import choose_face

    backend = _backend(protocol)
    face = choose_face(backend.find_faces(load_photo(tmp_path / name)),
                       source=name, policy="error")
    assert face.score > 0.9


def test_a_reference_face_without_a_face_is_refused_naming_it(tmp_path):
    (tmp_path / "house.jpg").write_bytes(HOUSE.read_bytes())
    path = tmp_path / "protocol.yaml"
    path.write_text("study: {name: refs}\nidentities: [{id: id01, seed: 1}]\n"
                    "targets: {from_images: [house.jpg]}\n"
                    "validation: {rater: hsemotion}\n", encoding="utf-8")
    result = validate(path)
    assert result.exit_code == 2
    assert "targets.from_images.0: reference face: no face found in" in result.stderr
    assert "house.jpg" in result.stderr


# -- optional packages -------------------------------------------------------------------------
def _hide(monkeypatch, module: str) -> None:
    monkeypatch.setitem(sys.modules, module, None)      # `import module` now fails


def test_validate_names_a_missing_face_alignment_with_its_install_command(tmp_path,
                                                                          monkeypatch):
    path = study(tmp_path, "ok.jpg", identity="p02")
    _hide(monkeypatch, "face_alignment")
    result = validate(path)
    assert result.exit_code == 0                     # valid; this machine lacks a package
    text = " ".join(result.stderr.split())
    assert "warning: a build on this machine would stop: 1 package(s)" in text
    assert "face-alignment, for the landmarks of photo identities" in text
    assert 'install: pip install --no-warn-conflicts "face-alignment>=1.5"' in text
    assert 'pip install --no-warn-conflicts -e ".[photos]"' in text
    with pytest.raises(PackagesMissingError, match="face-alignment"):
        stimgen.build(stimgen.load_protocol(path), out=tmp_path / "out", progress=False,
                      dry_run=True)
    assert not (tmp_path / "out" / "stimuli").exists()


@pytest.mark.parametrize("setting,module,package", [
    ("experiment: {task: {type: rating}, design: {type: random, participants: 1}}",
     "psychopy", "psychopy"),
    ("experiment: {online: true, task: {type: rating}, design: {type: random, participants: 1}}",
     "metapensiero.pj.api", "javascripthon"),
    ("validation: {rater: hsemotion}", "onnxruntime", "onnxruntime"),
    ("output: {dynamic: {frames: 8}}", "imageio_ffmpeg", "imageio-ffmpeg"),
], ids=["psychopy", "javascripthon", "onnxruntime", "ffmpeg"])
def test_each_optional_package_is_checked_with_its_install_command(tmp_path, monkeypatch,
                                                                   setting, module, package):
    path = tmp_path / "protocol.yaml"
    path.write_text("study: {name: packages}\nidentities: [{id: id01, seed: 1}]\n"
                    f"targets: {{emotions: [calm], intensities: [1.0]}}\n{setting}\n",
                    encoding="utf-8")
    protocol = stimgen.load_protocol(path)
    assert missing_packages(protocol) is None             # all installed here
    _hide(monkeypatch, module)
    missing = missing_packages(protocol)
    assert [p.name for p, _ in missing.missing] == [package]
    result = validate(path)
    text = " ".join(result.stderr.split())
    assert result.exit_code == 0 and f"- {package}, for " in text
    assert "install: pip install" in text
    if package in ("psychopy", "javascripthon"):
        assert "pip install --no-deps -r requirements-psychopy.txt" in text


def test_a_broken_package_is_reported_as_broken_not_missing(tmp_path):
    from stimgen.packages import FFMPEG

    def broken(package):
        raise ImportError("libGL.so.1: cannot open shared object file")

    path = study(tmp_path, "ok.jpg")
    found = missing_packages(stimgen.load_protocol(path), importer=broken)
    (package, reason), = found.missing
    assert package.name == "face-alignment" and "installed but cannot be imported" in reason
    assert "libgl1" in reason
    assert FFMPEG.install.startswith("pip install --no-warn-conflicts")


def _backend(protocol):
    from stimgen.backends.emostyle import EmoStyleBackend

    return EmoStyleBackend(render_spec(protocol), {})
