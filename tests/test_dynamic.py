"""Dynamic stimuli (output.dynamic): the ramp, deterministic MP4 clips that decode with the
promised frames, fps and size, first frame = the neutral still and last = the target still,
temporal-consistency columns and the flicker flag, resume and byte-identical rebuilds, and
movie trials played by a simulated participant under Xvfb."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import stimgen
from stimgen.dynamic import (JITTER_MIN_FRAMES, encode_mp4, hold_frames, intensity_ramp,
                             landmark_jitter, read_clip)
from stimgen.errors import ProtocolError
from stimgen.plan import render_spec
from buildfolders import protocol_from_text

FRAMES, FPS, HOLD_MS = 6, 20, 150

PROTOCOL = f"""
study: {{name: dyn}}
seed: 3
identities: [{{id: a, seed: 1}}]
targets: {{emotions: [happiness, sadness], intensities: [1.0], neutral: true}}
validation: {{rater: geometric}}
output:
  image_size: 97               # odd: the videos are padded to 98
  dynamic: {{frames: {FRAMES}, fps: {FPS}, hold_ms: {HOLD_MS}, ease: sigmoid, png_frames: true}}
"""


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dynamic")
    protocol = protocol_from_text(folder, PROTOCOL)
    return protocol, stimgen.build(protocol, folder / "out", progress=False)


# -- the ramp and the encoder ---------------------------------------------------------------
@pytest.mark.parametrize("ease", ["linear", "sigmoid"])
def test_ramp_runs_from_neutral_to_target_without_going_back(ease):
    ramp = intensity_ramp(9, ease)
    assert ramp[0] == 0.0 and ramp[-1] == 1.0 and np.all(np.diff(ramp) > 0)
    if ease == "sigmoid":       # slow start: the first step is smaller than the middle one
        assert ramp[1] - ramp[0] < ramp[5] - ramp[4]


def test_encoding_is_deterministic_and_even_sized():
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (33, 47, 3), dtype=np.uint8) for _ in range(5)]
    first, second = encode_mp4(frames, 15), encode_mp4(frames, 15)
    assert hashlib.sha256(first).hexdigest() == hashlib.sha256(second).hexdigest()
    assert b"Lavf" not in first and b"x264 - core" not in first   # no encoder strings
    assert encode_mp4(frames[::-1], 15) != first


def test_jitter_sees_a_flickering_point_but_not_smooth_motion():
    ramp = intensity_ramp(16, "sigmoid")
    rng = np.random.default_rng(1)
    base = rng.uniform(20, 80, (68, 2))
    base[36], base[45] = (30, 40), (70, 40)                 # inter-ocular distance 40 px
    smooth = base + ramp[:, None, None] * rng.normal(0, 3, (68, 2))
    assert landmark_jitter(smooth, ramp) < 1e-9
    shaky = smooth + rng.normal(0, 0.8, smooth.shape)      # ~0.8 px of frame-to-frame noise
    assert 0.005 < landmark_jitter(shaky, ramp) < 0.05
    assert np.isnan(landmark_jitter(smooth[:3], ramp[:3]))  # too few frames to tell


# -- a build ---------------------------------------------------------------------------------
def test_clips_decode_with_the_promised_frames_fps_and_size(built):
    protocol, result = built
    table = result.stimuli
    assert table["video"].str.endswith(".mp4").all()
    for video in table["video"]:
        clip = read_clip(result.out / video)
        assert clip.fps == FPS
        assert clip.size == (98, 98)
        assert len(clip.frames) == FRAMES + hold_frames(HOLD_MS, FPS)


def test_first_frame_is_the_neutral_still_and_last_the_target_still(built):
    _, result = built
    out, table = result.out, result.stimuli.set_index("stimulus_id")
    neutral = pixels(out / table.loc["a_neutral", "file"])
    for sid in ("a_happiness_i100", "a_sadness_i100"):
        still = pixels(out / table.loc[sid, "file"])
        frames = sorted((out / "stimuli" / "frames" / sid).glob("*.png"))
        assert len(frames) == FRAMES
        assert np.array_equal(pixels(frames[0]), neutral)
        assert np.array_equal(pixels(frames[-1]), still)
        assert not np.array_equal(pixels(frames[FRAMES // 2]), still)   # it moves
        decoded = read_clip(out / table.loc[sid, "video"]).frames.astype(np.int16)
        decoded = decoded[:, :97, :97]                              # without the padding
        assert np.abs(decoded[0] - neutral).mean() < 3.0       # H.264 is lossy, barely
        assert np.abs(decoded[-1] - still).mean() < 3.0
        moved = np.abs(neutral - still).max(axis=2) > 30       # where the expression shows
        assert moved.sum() > 20
        for frame, like, unlike in ((decoded[0], neutral, still), (decoded[-1], still, neutral)):
            assert np.abs(frame - like)[moved].mean() < np.abs(frame - unlike)[moved].mean() / 3


def test_manifest_hashes_the_videos_and_frames(built):
    _, result = built
    files = json.loads((result.out / "manifest.json").read_text())["files"]
    for video, digest in zip(result.stimuli["video"], result.stimuli["video_sha256"]):
        assert files[video] == digest == hashlib.sha256((result.out / video).read_bytes()
                                                        ).hexdigest()
    assert "stimuli/frames/a_sadness_i100/001.png" in files


def test_jitter_column_and_flicker_flag_follow_the_threshold(built, tmp_path):
    protocol, result = built
    jitter = result.stimuli["clip_jitter"].astype(float)
    assert jitter.notna().all() and (jitter < protocol.output.dynamic.flicker_threshold).all()
    assert result.stimuli["clip_identity_min"].isna().all()    # schematic scores no identity
    # a threshold below the measured jitter flags exactly the clips above it
    threshold = float(jitter.max()) / 2
    strict = protocol_from_text(tmp_path, PROTOCOL.replace(
        "png_frames: true}", f"png_frames: true, flicker_threshold: {threshold!r}}}"))
    shutil.copytree(result.out, tmp_path / "out")
    again = stimgen.build(strict, tmp_path / "out", progress=False)
    assert again.reused_identities == ["a"]                   # the threshold changes no pixels
    flagged = again.stimuli["flags"].str.contains("flicker")
    assert list(flagged) == list(again.stimuli["clip_jitter"].astype(float) > threshold)
    assert flagged.any()


def test_rebuild_is_byte_identical_and_a_damaged_video_is_redrawn(built, tmp_path):
    protocol, result = built
    other = stimgen.build(protocol, tmp_path / "again", progress=False)
    for video in result.stimuli["video"]:
        assert (other.out / video).read_bytes() == (result.out / video).read_bytes()
    damaged = other.out / other.stimuli["video"].iloc[0]
    damaged.write_bytes(b"not a video")
    repaired = stimgen.build(protocol, other.out, progress=False)
    assert repaired.repairs and repaired.repairs[0]["file"] == other.stimuli["video"].iloc[0]
    assert damaged.read_bytes() == (result.out / other.stimuli["video"].iloc[0]).read_bytes()


def test_changing_the_clip_settings_redraws_the_identity(built, tmp_path):
    protocol, result = built
    shutil.copytree(result.out, tmp_path / "out")
    slower = protocol_from_text(tmp_path, PROTOCOL.replace(f"fps: {FPS}", "fps: 10"))
    again = stimgen.build(slower, tmp_path / "out", progress=False)
    assert again.reused_identities == []
    assert read_clip(again.out / again.stimuli["video"].iloc[0]).fps == 10


def test_show_clip_needs_clips(tmp_path):
    text = PROTOCOL.split("output:")[0] + "experiment:\n  # clips\n  show: clip\n"
    with pytest.raises(ProtocolError, match="output.dynamic") as error:
        protocol_from_text(tmp_path, text)
    (problem,) = error.value.problems
    show = text.splitlines().index("  show: clip") + 1
    assert (problem.field, problem.line, problem.column) == ("experiment.show", show, 9)


def test_onsets_too_short_to_measure_jitter_are_built_with_a_warning(tmp_path, caplog):
    text = PROTOCOL.replace(f"frames: {FRAMES}", f"frames: {JITTER_MIN_FRAMES - 1}") \
        .replace("image_size: 97", "image_size: 64").replace("png_frames: true", "")
    with caplog.at_level(logging.WARNING, logger="stimgen"):
        result = stimgen.build(protocol_from_text(tmp_path, text), tmp_path / "out",
                               progress=False)
    assert result.stimuli["clip_jitter"].isna().all()      # what the warning says
    warned = [r.getMessage() for r in caplog.records if "clip_jitter" in r.getMessage()]
    assert len(warned) == 1 and "output.dynamic.frames: 4 onset frames" in warned[0]


# -- the experiment ----------------------------------------------------------------------------
XVFB_RUN = shutil.which("xvfb-run")


@pytest.mark.slow
@pytest.mark.skipif(XVFB_RUN is None and not os.environ.get("CI"),
                    reason="xvfb-run not installed (run make system-deps)")
def test_simulated_participant_watches_each_clip_then_answers(tmp_path):
    pytest.importorskip("psychopy")
    pytest.importorskip("ffpyplayer")
    text = PROTOCOL + """
experiment:
  show: clip
  online: true
  task:
    type: categorization
    choices:
      - {label: happy, emotions: [Happiness]}
      - {label: sad, emotions: [Sadness]}
      - {label: calm, emotions: [neutral]}
  timing: {fixation_ms: 100, iti_ms: 100}
  design: {type: random, participants: 2}
"""
    result = stimgen.build(protocol_from_text(tmp_path, text), tmp_path / "out",
                           progress=False)
    folder = result.out / "experiment"
    conditions = pd.read_csv(folder / "conditions" / "g02_trials.csv")
    assert (conditions["clip_file"] == conditions["stim_file"].str.replace(".png", ".mp4")).all()
    assert all((folder / f).is_file() for f in conditions["clip_file"])   # online copies
    script = (folder / "dyn.js").read_text()
    assert "stimuli/a_sadness_i100.mp4" in script                         # preloaded
    assert "win.units" not in script        # a name the PsychoJS script does not define
    from test_psychopy_run import run_simulated

    data = run_simulated(folder, "g02")
    trials = data[data["stim_id"].notna()]
    assert list(trials["stim_id"]) == list(conditions["stim_id"])
    played = trials["face_clip.stopped"] - trials["face_clip.started"]
    duration = (FRAMES + hold_frames(HOLD_MS, FPS)) / FPS
    assert played.between(0.5 * duration, duration + 1.5).all(), played
    assert (trials["clip.stopped"] <= trials["trial.started"]).all()  # clip, then the response
    assert trials["choice_keys.keys"].notna().all()


def test_report_shows_a_filmstrip_per_emotion_and_the_consistency(built):
    _, result = built
    html = (result.out / "report.html").read_text(encoding="utf-8")
    section = html.split('id="dynamic-stimuli"', 1)[1].split("</section>", 1)[0]
    for sid in ("a_happiness_i100", "a_sadness_i100"):
        assert f"report_assets/filmstrips/{sid}.png" in section
        strip = Image.open(result.out / "report_assets" / "filmstrips" / f"{sid}.png")
        assert strip.height == 96 and strip.width >= 6 * 96      # six frames of the onset
    assert "a_neutral" not in section                            # neutral has no onset
    assert "Landmark jitter" in section and "0 clips above the threshold" in section


@pytest.mark.slow
def test_emostyle_clips_follow_one_latent_path_and_score_identity(tmp_path, tiny_home,
                                                                   monkeypatch):
    """Tiny random models (faces are noise): the wiring, not the faces, is under test."""
    monkeypatch.setenv("STIMGEN_HOME", str(tiny_home))
    protocol = protocol_from_text(tmp_path, """
study: {name: dyn-emostyle}
backend: {name: emostyle, options: {device: cpu, batch_size: 3}}   # batches cross clips
identities: [{id: a, seed: 1}]
targets: {emotions: [circumplex:happy], intensities: [1.0], neutral: true}
validation: {rater: emonet}
output: {image_size: 64, dynamic: {frames: 6, fps: 12, hold_ms: 0, png_frames: true}}
""")
    result = stimgen.build(protocol, tmp_path / "out", progress=False)
    row = result.stimuli.set_index("stimulus_id").loc["a_happy_i100"]
    assert 0.0 < row["clip_identity_min"] <= 1.0 and np.isfinite(row["clip_jitter"])
    frames = sorted((result.out / "stimuli" / "frames" / "a_happy_i100").glob("*.png"))
    # the identity's neutral face, drawn alone (the raters' reference); the neutral stimulus
    # was drawn in a batch with other targets, which moves float rounding by a grey level
    neutral = pixels(result.out / "stimuli" / "a_neutral.png")
    assert np.abs(pixels(frames[0]) - neutral).max() <= 1
    assert np.array_equal(pixels(frames[-1]), pixels(result.out / row["file"]))
    # the middle frame is the same latent edit at a lower intensity: w + M(w, s * (v, a))
    from stimgen.backends import create_backend
    backend = create_backend(render_spec(protocol))
    handle = backend.prepare(protocol.identities[0])
    s = intensity_ramp(6, "sigmoid")[3]
    middle = backend.render(handle, [(s * row["target_valence"], s * row["target_arousal"])])[0]
    assert np.abs(pixels(frames[3]) - np.asarray(middle.image, dtype=np.int16)).max() <= 1


def test_a_subset_of_a_dynamic_build_carries_its_clips(built, tmp_path):
    from stimgen.select import write_subset

    _, result = built
    write_subset(result.out, tmp_path / "subset", per_target=1, by="model")
    subset = pd.read_csv(tmp_path / "subset" / "stimuli.tsv", sep="\t")
    assert len(subset) and subset["video"].notna().all()
    for video, digest in zip(subset["video"], subset["video_sha256"]):
        assert hashlib.sha256((tmp_path / "subset" / video).read_bytes()).hexdigest() == digest


def test_stale_frame_folders_and_killed_builds_leftovers_are_removed(built, tmp_path):
    """A frame folder whose stimulus went, or whose build turned png_frames off, goes with its
    frames; a killed build's temporaries in stimuli/frames/<id>/ go on the next build; a file
    stimgen did not write stays, and so does its folder."""
    from stimgen.build_folder import FRAMES_DIR

    protocol, result = built
    out = tmp_path / "out"
    shutil.copytree(result.out, out)
    kept = out / FRAMES_DIR / result.stimuli["stimulus_id"].iloc[0]
    (kept / ".001.png.abcd1234.tmp").write_bytes(b"half")           # a killed build's
    (out / FRAMES_DIR / "gone").mkdir()
    (out / FRAMES_DIR / "gone" / ".001.png.abcd1234.tmp").write_bytes(b"half")
    again = stimgen.build(protocol, out, progress=False)
    assert again.reused_identities == ["a"]
    assert sorted(p.name for p in kept.iterdir()) == [f"{i:03d}.png" for i in
                                                     range(1, FRAMES + 1)]
    assert not (out / FRAMES_DIR / "gone").exists()

    fewer = protocol_from_text(tmp_path, PROTOCOL.replace("neutral: true", "neutral: false"))
    dropped = set(result.stimuli["stimulus_id"]) - set(
        stimgen.build(fewer, out, progress=False).stimuli["stimulus_id"])
    assert dropped and not any((out / FRAMES_DIR / sid).exists() for sid in dropped)

    theirs = out / FRAMES_DIR / sorted(p.name for p in (out / FRAMES_DIR).iterdir())[0]
    (theirs / "notes.txt").write_text("mine")
    stills = protocol_from_text(tmp_path, PROTOCOL.replace(", png_frames: true", "")
                                .replace("neutral: true", "neutral: false"))
    stimgen.build(stills, out, progress=False)
    assert sorted((out / FRAMES_DIR).rglob("*")) == [theirs, theirs / "notes.txt"]


def test_a_subset_carries_the_png_frames_of_its_stimuli(built, tmp_path):
    from stimgen.build_folder import FRAMES_DIR, LEDGER_JSON
    from stimgen.select import write_subset

    _, result = built
    subset = tmp_path / "subset"
    write_subset(result.out, subset, per_target=1, by="model")
    manifest = json.loads((subset / "manifest.json").read_text())
    ids = pd.read_csv(subset / "stimuli.tsv", sep="\t", dtype=str)["stimulus_id"]
    frames = sorted(p.relative_to(subset).as_posix() for p in (subset / FRAMES_DIR).rglob("*")
                    if p.is_file())
    assert frames == sorted(f"{FRAMES_DIR}/{sid}/{i:03d}.png" for sid in ids
                            for i in range(1, FRAMES + 1))
    ledger = json.loads((subset / LEDGER_JSON).read_text())["files"]
    for frame in frames:
        assert (subset / frame).read_bytes() == (result.out / frame).read_bytes()
        digest = hashlib.sha256((subset / frame).read_bytes()).hexdigest()
        assert manifest["files"][frame] == ledger[frame] == digest
