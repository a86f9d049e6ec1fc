"""stimgen/standardise.py: the oval from landmarks, greyscale/mask/background framing, the
low-level columns of stimuli.tsv (checked against an independent computation on the written
files), the set-level `match:` stage (exact histograms, ratings of the matched images, resume,
byte-identical rebuilds) and the protocol's checks."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import stimgen
from stimgen.backends import SchematicFaces
from stimgen.build_folder import (IDENTITY_RECORDS_DIR, LOW_LEVEL_COLUMNS, MASKS_DIR,
                                  MATCH_SSIM_COLUMN, MATCHED_RECORDS_DIR, STIMULI_TSV,
                                  UNMATCHED_DIR, read_build_folder)
from stimgen.errors import ProtocolError
from stimgen.landmarks import CHIN, NOSE_TIP, OUTER_LIP, RIGHT_EYE, LEFT_EYE, eye_centres
from stimgen.protocol.models import Identity
from stimgen.standardise import face_oval, oval_mask, spectral_slope
from buildfolders import protocol_from_text, snapshot

PROTOCOL = """
study: {{name: framing}}
seed: 3
backend: {{name: schematic}}
identities:
  - {{id: a, seed: 4}}
  - {{id: b, seed: 6}}
targets:
  emotions: [circumplex:happy, circumplex:sad, afraid, sleepy]
  intensities: [1.0]
  neutral: true
validation: {{rater: geometric}}
output: {{image_size: 96{output}}}
"""


def build(tmp_path, output: str = "", name: str = "out", **options):
    protocol = protocol_from_text(tmp_path, PROTOCOL.format(output=output))
    return stimgen.build(protocol, out=tmp_path / name, progress=False, **options)


def independent_measures(out, row, masked: bool):
    """mean_luminance / rms_contrast of one stimulus from its file (and its identity's mask
    file), computed here without stimgen."""
    grey = np.asarray(Image.open(out / row["file"]).convert("L"), dtype=float) / 255
    if masked:
        region = np.asarray(Image.open(out / MASKS_DIR / f"{row['identity']}.png")) == 255
        grey = grey[region]
    return grey.mean(), grey.std()


# -- the oval ---------------------------------------------------------------------------------
def schematic_neutral(seed: int, size: int = 256):
    backend = SchematicFaces(size, 2, (128, 128, 128))
    handle = backend.prepare(Identity(id="x", seed=seed))
    return backend.render(handle, [(0.0, 0.0)])[0]


@pytest.mark.parametrize("seed", [4, 5, 6, 9])
def test_the_oval_shows_the_inner_face_and_hides_the_corners(seed):
    face = schematic_neutral(seed)
    mask = oval_mask(face_oval(face.landmarks), 256, 256)
    inner = np.concatenate([face.landmarks[RIGHT_EYE], face.landmarks[LEFT_EYE],
                            face.landmarks[OUTER_LIP], face.landmarks[[NOSE_TIP]]])
    assert all(mask[int(y), int(x)] == 255 for x, y in inner)
    x, y = face.landmarks[CHIN]
    assert mask[int(y), int(x)] > 0                     # the chin is inside the oval
    assert mask[0, 0] == mask[0, -1] == mask[-1, 0] == mask[-1, -1] == 0
    ramp = mask[int(eye_centres(face.landmarks)[0][1]), :]    # across the face at eye level
    assert 0 < ((ramp > 0) & (ramp < 255)).sum() < 40         # a soft edge a few pixels wide


def test_the_oval_turns_with_the_face():
    face = schematic_neutral(4)
    upright = face_oval(face.landmarks)
    centre = np.array([128.0, 128.0])
    turn = np.radians(20)
    rotation = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
    turned = face_oval((face.landmarks - centre) @ rotation.T + centre)
    assert turned.roll == pytest.approx(upright.roll + 20, abs=1e-6)
    assert turned.half_width == pytest.approx(upright.half_width, rel=1e-6)
    assert turned.half_height == pytest.approx(upright.half_height, rel=1e-6)


def test_spectral_slope_of_pink_noise_is_minus_one():
    rng = np.random.default_rng(0)
    fy, fx = np.meshgrid(np.fft.fftfreq(128), np.fft.fftfreq(128), indexing="ij")
    radius = np.hypot(fx, fy)
    radius[0, 0] = 1
    pink = np.real(np.fft.ifft2(np.exp(2j * np.pi * rng.random((128, 128))) / radius))
    assert spectral_slope(pink) == pytest.approx(-1.0, abs=0.1)


# -- builds -------------------------------------------------------------------------------------
def test_every_build_has_the_low_level_columns(tmp_path):
    result = build(tmp_path)
    out = result.out
    table = read_build_folder(out).stimuli
    assert set(LOW_LEVEL_COLUMNS) <= set(table.columns)
    for _, row in table.iterrows():
        mean, sd = independent_measures(out, row, masked=False)
        assert row["mean_luminance"] == pytest.approx(mean, abs=1e-5)
        assert row["rms_contrast"] == pytest.approx(sd, abs=1e-5)
    assert table["spectral_slope"].between(-4, 0).all()
    assert not (out / MASKS_DIR).exists()
    html = (out / "report.html").read_text(encoding="utf-8")
    assert 'id="low-level"' in html and "Low-level image properties" in html


def test_greyscale_oval_framing_without_matching(tmp_path):
    result = build(tmp_path, ", greyscale: true, mask: oval, background: 40")
    out = result.out
    table = read_build_folder(out).stimuli
    for identity in ("a", "b"):
        mask = np.asarray(Image.open(out / MASKS_DIR / f"{identity}.png"))
        assert mask.shape == (96, 96) and mask.max() == 255 and mask.min() == 0
        for _, row in table[table["identity"] == identity].iterrows():
            image = Image.open(out / row["file"])
            assert image.mode == "L"
            pixels = np.asarray(image)
            assert (pixels[mask == 0] == 40).all()                  # the background
            mean, sd = independent_measures(out, row, masked=True)
            assert row["mean_luminance"] == pytest.approx(mean, abs=1e-5)
            assert row["rms_contrast"] == pytest.approx(sd, abs=1e-5)
    # without matching, the faces differ: happy and sad do not share their histograms
    assert table["mean_luminance"].nunique() > 2


def test_histogram_matching_equalises_the_masked_histograms(tmp_path, monkeypatch):
    import stimgen.render

    rated = []
    original = stimgen.render.rate_faces

    def spying(raters, faces, neutral, alone, *, multiple):
        rated.extend(np.asarray(face.image.convert("L")).tobytes() for face in faces)
        return original(raters, faces, neutral, alone, multiple=multiple)

    monkeypatch.setattr(stimgen.render, "rate_faces", spying)
    result = build(tmp_path, ", greyscale: true, mask: oval, match: histogram")
    out = result.out
    table = read_build_folder(out).stimuli
    histograms = []
    for _, row in table.iterrows():
        pixels = np.asarray(Image.open(out / row["file"]))
        region = np.asarray(Image.open(out / MASKS_DIR / f"{row['identity']}.png")) == 255
        histograms.append((np.bincount(pixels[region], minlength=256), region.sum()))
        mean, sd = independent_measures(out, row, masked=True)
        assert row["mean_luminance"] == pytest.approx(mean, abs=1e-5)
        assert row["rms_contrast"] == pytest.approx(sd, abs=1e-5)
    shares = np.array([counts / n for counts, n in histograms])
    smallest = min(n for _, n in histograms)
    # equal up to rounding: at most one pixel per grey level between regions of different size
    assert np.abs(shares - shares.mean(axis=0)).max() <= 1.0 / smallest
    for identity in ("a", "b"):               # one mask per identity: exactly equal counts
        counts = [c for (c, _), i in zip(histograms, table["identity"]) if i == identity]
        assert all(np.array_equal(c, counts[0]) for c in counts)
    assert table["mean_luminance"].max() - table["mean_luminance"].min() < 1e-3
    assert table["rms_contrast"].max() - table["rms_contrast"].min() < 1e-3
    # the raters saw exactly the matched images that were written, and nothing else
    written = {np.asarray(Image.open(out / f).convert("L")).tobytes() for f in table["file"]}
    assert rated and set(rated) == written
    html = (out / "report.html").read_text(encoding="utf-8")
    assert 'data-key="low-level-confound"' not in html or "luminance" not in html.split(
        'data-key="low-level-confound"')[1].split("</div>")[0]
    # what matching cost each face: SSIM to the unmatched face, framed the same way
    assert MATCH_SSIM_COLUMN in table.columns and table[MATCH_SSIM_COLUMN].between(0, 1).all()
    metrics = pytest.importorskip("skimage.metrics")
    for _, row in table.iterrows():
        mask = np.asarray(Image.open(out / MASKS_DIR / f"{row['identity']}.png"))
        before = np.asarray(Image.open(out / UNMATCHED_DIR / f"{row['stimulus_id']}.png")
                            .convert("L")).astype(int)
        before = ((mask * before + (255 - mask.astype(int)) * 128 + 127) // 255)
        after = np.asarray(Image.open(out / row["file"]).convert("L"))
        _, ssim = metrics.structural_similarity(before.astype(np.uint8), after, full=True,
                                                gaussian_weights=True, sigma=1.5,
                                                use_sample_covariance=False, data_range=255)
        assert row[MATCH_SSIM_COLUMN] == pytest.approx(ssim[mask == 255].mean(), abs=1e-6)
    assert 'data-key="matching-cost"' in html and "ssim_unmatched" in html


def test_matched_builds_resume_and_rebuild_byte_identically(tmp_path):
    output = ", greyscale: true, mask: oval, match: histogram+spectrum"
    first = build(tmp_path, output, name="one")
    again = build(tmp_path, output, name="two")
    assert snapshot(first.out) == snapshot(again.out)
    # an interrupted set stage: one identity's matched records lost, then the build resumes
    before = snapshot(first.out)
    (first.out / MATCHED_RECORDS_DIR / "b.json").unlink()
    resumed = build(tmp_path, output, name="one")
    assert sorted(resumed.reused_identities) == ["a", "b"]        # the units were kept
    assert resumed.manifest["timings"]["match_images"] > 0         # the set stage reran
    assert snapshot(first.out) == before
    assert build(tmp_path, output, name="one").manifest["timings"]["match_images"] == 0


def test_the_set_stage_in_worker_processes_writes_the_same_files(tmp_path):
    output = ", greyscale: true, mask: oval, match: histogram, match_ssim_iterations: 2"
    serial = build(tmp_path, output, name="serial", jobs=1)
    workers = build(tmp_path, output, name="workers", jobs=2)
    assert snapshot(serial.out) == snapshot(workers.out)
    assert workers.manifest["timings"]["match_rate_write"] > 0
    pd.testing.assert_frame_equal(serial.stimuli, workers.stimuli)


def test_ssim_iterations_are_part_of_the_matching_key(tmp_path):
    first = build(tmp_path, ", greyscale: true, mask: oval, match: histogram, "
                            "match_ssim_iterations: 0")
    assert first.stimuli[MATCH_SSIM_COLUMN].between(0, 1).all()
    again = build(tmp_path, ", greyscale: true, mask: oval, match: histogram, "
                            "match_ssim_iterations: 4")
    assert again.manifest["timings"]["match_images"] > 0          # rematched
    assert sorted(again.reused_identities) == ["a", "b"]            # the units were kept
    # more SSIM steps only ever keep arrangements closer to the unmatched faces
    assert again.stimuli[MATCH_SSIM_COLUMN].mean() >= first.stimuli[MATCH_SSIM_COLUMN].mean()
    assert MATCH_SSIM_COLUMN not in build(tmp_path, "", name="plain").stimuli.columns


def test_a_new_matching_algorithm_reruns_the_stage(tmp_path, monkeypatch):
    import stimgen.standardise

    output = ", greyscale: true, mask: oval, match: luminance"
    build(tmp_path, output)
    monkeypatch.setattr(stimgen.standardise, "MATCHING_VERSION", 99)
    assert build(tmp_path, output).manifest["timings"]["match_images"] > 0


def test_matching_within_each_identity(tmp_path):
    result = build(tmp_path, ", greyscale: true, mask: oval, match: luminance, "
                             "match_scope: identity")
    table = read_build_folder(result.out).stimuli
    by_identity = table.groupby("identity")["mean_luminance"]
    assert (by_identity.max() - by_identity.min()).max() < 3 / 255      # rounding only
    assert abs(by_identity.mean()["a"] - by_identity.mean()["b"]) > 3 / 255  # not across


def test_changing_the_framing_redraws_the_identities(tmp_path):
    build(tmp_path)
    again = build(tmp_path, ", greyscale: true")
    assert again.reused_identities == []
    table = pd.read_csv(again.out / STIMULI_TSV, sep="\t")
    assert all(Image.open(again.out / f).mode == "L" for f in table["file"])
    record = json.loads((again.out / IDENTITY_RECORDS_DIR / "a.json").read_text())
    assert record["records"][0]["mean_luminance"] == pytest.approx(
        table.loc[0, "mean_luminance"], rel=1e-5)


def test_turning_matching_off_removes_its_state_and_nothing_else(tmp_path):
    """`match:` keeps the unmatched faces and its records in .stimgen/; a rebuild without it
    removes them and then the folders, unless something stimgen did not write is there."""
    from stimgen.build_folder import UNMATCHED_DIR

    matched = ", greyscale: true, mask: oval, match: luminance"
    first = build(tmp_path, matched, name="one").out
    assert any((first / UNMATCHED_DIR).iterdir()) and any((first / MATCHED_RECORDS_DIR).iterdir())
    build(tmp_path, matched, name="two")
    theirs = tmp_path / "two" / UNMATCHED_DIR / "notes.txt"
    theirs.write_text("mine")
    also_theirs = tmp_path / "two" / MATCHED_RECORDS_DIR / "settings.json"
    also_theirs.write_text('{"mine": true}')
    build(tmp_path, ", greyscale: true, mask: oval", name="one")
    assert not (first / UNMATCHED_DIR).exists() and not (first / MATCHED_RECORDS_DIR).exists()
    build(tmp_path, ", greyscale: true, mask: oval", name="two")
    assert sorted(p.name for p in theirs.parent.iterdir()) == ["notes.txt"]   # only theirs
    assert theirs.read_text() == "mine"
    assert list(also_theirs.parent.iterdir()) == [also_theirs]


def test_turning_the_mask_off_removes_stimgens_mask_files(tmp_path):
    build(tmp_path, ", greyscale: true, mask: oval", name="one")
    build(tmp_path, ", greyscale: true, mask: oval", name="two")
    build(tmp_path, ", greyscale: true", name="one")
    assert not (tmp_path / "one" / MASKS_DIR).exists()
    # a mask edited after stimgen wrote it, and a file stimgen never wrote, stay
    edited, theirs = tmp_path / "two" / MASKS_DIR / "a.png", tmp_path / "two" / MASKS_DIR / "x.png"
    edited.write_bytes(edited.read_bytes() + b"edited")
    theirs.write_bytes(b"mine")
    build(tmp_path, ", greyscale: true", name="two")
    assert sorted(p.name for p in edited.parent.iterdir()) == ["a.png", "x.png"]
    assert edited.read_bytes().endswith(b"edited") and theirs.read_bytes() == b"mine"


# -- the protocol -----------------------------------------------------------------------------
def test_matching_needs_greyscale(tmp_path):
    with pytest.raises(ProtocolError) as error:
        protocol_from_text(tmp_path, PROTOCOL.format(output=", match: histogram"))
    assert "greyscale" in str(error.value) and "output" in str(error.value)
    assert "hint" in str(error.value)


def test_background_must_be_a_grey_level_or_rgb(tmp_path):
    with pytest.raises(ProtocolError, match="background"):
        protocol_from_text(tmp_path, PROTOCOL.format(output=", mask: oval, background: 300"))
    protocol = protocol_from_text(tmp_path, PROTOCOL.format(
        output=", mask: oval, background: [255, 0, 0]"))
    assert tuple(protocol.output.background) == (255, 0, 0)


# -- the emostyle backend (tiny random models) ----------------------------------------------------
def test_emostyle_faces_are_framed_and_rated_as_framed(tmp_path, tiny_home, monkeypatch):
    """FFHQ-aligned faces get landmarks for the oval even with the EmoNet rater, and EmoNet
    rates the framed image, not the backend's own crop of the unframed face. (Matching is the
    same set stage for every backend: tested above on schematic faces.)"""
    import warnings

    import stimgen.render

    monkeypatch.setenv("STIMGEN_HOME", str(tiny_home))
    seen = []
    original = stimgen.render.rate_faces

    def spying(raters, faces, neutral, alone, *, multiple):
        seen.extend((face.landmarks is not None, "face_crop" in face.extras,
                     face.image.mode) for face in faces)
        return original(raters, faces, neutral, alone, multiple=multiple)

    monkeypatch.setattr(stimgen.render, "rate_faces", spying)
    protocol = protocol_from_text(tmp_path, """
study: {name: tiny-emostyle}
seed: 3
backend: {name: emostyle, options: {batch_size: 2}}
identities: [{id: s1, seed: 1}]
targets: {emotions: [circumplex:happy, circumplex:sad], intensities: [1.0], neutral: false}
output: {image_size: 64, greyscale: true, mask: oval, background: 0}
""")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # TinyWeightsWarning: expected here
        result = stimgen.build(protocol, out=tmp_path / "out", progress=False)
    table = read_build_folder(result.out).stimuli
    assert (table["rater"] == "emonet").all()
    assert seen == [(True, False, "L")] * 2
    mask = np.asarray(Image.open(result.out / MASKS_DIR / "s1.png"))
    for _, row in table.iterrows():
        pixels = np.asarray(Image.open(result.out / row["file"]))
        assert pixels.ndim == 2 and (pixels[mask == 0] == 0).all()
        mean, sd = independent_measures(result.out, row, masked=True)
        assert row["mean_luminance"] == pytest.approx(mean, abs=1e-5)


# -- with closed-loop correction (issue 18) and clips (issue 19) ----------------------------------
def test_correction_steers_on_framed_faces_and_matching_rates_the_kept_ones(tmp_path):
    """Order in a unit: render -> frame -> rate -> correct (re-render, frame, re-rate); with
    `match:` the set stage then matches the kept faces and rates them again."""
    text = PROTOCOL.format(output=", greyscale: true, mask: oval, match: histogram").replace(
        "validation: {rater: geometric}",
        "validation: {rater: geometric, correction: {rater: geometric, iterations: 2}}")
    protocol = protocol_from_text(tmp_path, text)
    result = stimgen.build(protocol, out=tmp_path / "out", progress=False)
    table = read_build_folder(result.out).stimuli
    assert {"requested_valence", "correction_rounds"} <= set(table.columns)
    assert table["mean_luminance"].max() - table["mean_luminance"].min() < 1e-3
    assert all(Image.open(result.out / f).mode == "L" for f in table["file"])


def test_clip_frames_are_framed_like_the_stills(tmp_path):
    protocol = protocol_from_text(tmp_path, PROTOCOL.format(
        output=", greyscale: true, mask: oval, background: 0, "
               "dynamic: {frames: 4, fps: 12, hold_ms: 0, png_frames: true}"))
    result = stimgen.build(protocol, out=tmp_path / "out", progress=False)
    record = json.loads((result.out / IDENTITY_RECORDS_DIR / "a.json").read_text())["records"][0]
    mask = np.asarray(Image.open(result.out / MASKS_DIR / "a.png"))
    frames = sorted(record["frame_files"])
    assert frames
    for frame in frames:
        pixels = np.asarray(Image.open(result.out / frame).convert("RGB"))
        assert (pixels[..., 0] == pixels[..., 1]).all()                # grey
        assert (pixels[mask == 0] == 0).all()                          # the background
