"""Whole emostyle builds on tiny random models: photo + seed + latent identities, cache, dry run."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

import stimgen
from stimgen.backends.emostyle import EmoStyleBackend
from stimgen.backends.schematic import render_face, sample_identity
from stimgen.cli import main
from stimgen.errors import WeightsMissingError

PROTOCOL = """
study: {name: tiny-emostyle}
seed: 3
backend:
  name: emostyle
  options: {batch_size: 2, inversion_steps: 2, personalization_steps: 2}
identities:
  - {id: photo, image: face.png, source: "schematic face drawn by the test"}
  - {id: s1, seed: 1}
  - {id: lat, latent: w.npy}
targets: {emotions: [circumplex:happy, circumplex:sad], intensities: [1.0], neutral: true}
output: {image_size: 64}
"""

PHOTO_LINE = '  - {id: photo, image: face.png, source: "schematic face drawn by the test"}\n'
SEEDS_ONLY = PROTOCOL.replace(PHOTO_LINE, "").replace("  - {id: lat, latent: w.npy}\n", "")



@pytest.fixture
def study(tmp_path, tiny_home, monkeypatch):
    """A protocol folder with a schematic face photo (landmarks known) and a latent file.

    The embedded detector finds the schematic face for real; the tiny FAN's landmarks are
    noise, so the drawn face's own 68 landmarks stand in for them."""
    monkeypatch.setenv("STIMGEN_HOME", str(tiny_home))
    face = render_face(sample_identity(4), 0.0, 0.0, size=256)
    face.image.convert("RGB").save(tmp_path / "face.png")
    np.save(tmp_path / "w.npy", np.random.default_rng(0).standard_normal(64).astype(np.float32))
    (tmp_path / "protocol.yaml").write_text(PROTOCOL)
    monkeypatch.setattr(EmoStyleBackend, "face_landmarks", lambda self, image, box: face.landmarks)
    return tmp_path


def build(folder, out="out"):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")    # TinyWeightsWarning: expected here
        protocol = stimgen.load_protocol(folder / "protocol.yaml")
        return stimgen.build(protocol, out=folder / out, progress=False)


@pytest.mark.slow
def test_photo_seed_and_latent_identities_build_completely_and_reuse_the_cache(study,
                                                                               monkeypatch):
    result = build(study)
    table = pd.read_csv(result.paths["stimuli_table"], sep="\t", dtype={"identity": str})
    assert len(table) == 9 and set(table["identity"]) == {"photo", "s1", "lat"}
    assert table["identity_similarity"].between(-1, 1 + 1e-6).all()
    assert table["achieved_valence"].between(-1, 1).all()
    assert (table["rater"] == "emonet").all()
    for row in table.itertuples():
        with Image.open(study / "out" / row.file) as image:
            assert image.size == (64, 64)
    manifest = json.loads((study / "out" / "manifest.json").read_text())
    assert manifest["dry_run"] is True and manifest["rater"]["trained_against_generator"]
    assert {f["name"] for f in manifest["backend"]["model_files"]} >= {
        "stylegan2_ffhq", "emostyle_mapping", "emonet_8", "vggface2_resnet50", "fan_2d"}
    report = (study / "out" / "report.html").read_text()
    assert 'id="dry-run-warning"' in report and 'id="rater-warning"' in report

    # a second build elsewhere reuses the personalised photo identity from the cache
    from stimgen.backends.emostyle import personalize

    monkeypatch.setattr(personalize, "personalize",
                        lambda *a, **k: pytest.fail("personalised again despite the cache"))
    again = build(study, out="out2")
    assert again.stimuli["sha256"].tolist() == result.stimuli["sha256"].tolist()
    # and rebuilding the same folder reuses every finished identity
    assert sorted(build(study).reused_identities) == ["lat", "photo", "s1"]


def test_seed_and_latent_build_records_models_and_similarity(study):
    text = PROTOCOL.replace(PHOTO_LINE, "").replace("emotions: [circumplex:happy, circumplex:sad]", "emotions: [circumplex:sad]")
    (study / "protocol.yaml").write_text(text)
    result = build(study)
    assert len(result.stimuli) == 4
    assert "identity_similarity" in result.stimuli.columns
    # FFHQ-aligned faces get the quality measures (no threshold applied)
    assert (result.stimuli["quality_sharpness"] >= 0).all()
    assert result.stimuli["quality_face_score"].between(0.0, 1.0).all()
    assert result.manifest["backend"]["options"]["models"]["stylegan2_ffhq"]
    assert "fan_2d" not in result.manifest["backend"]["options"]["models"]
    # the shipped detector's weights are part of every emostyle fingerprint (and photo cache key)
    from stimgen.detection import DETECTOR_SHA256

    assert result.manifest["backend"]["options"]["face_detector"] == DETECTOR_SHA256


def test_a_photo_without_a_face_stops_the_build_naming_the_photo(tmp_path, tiny_home,
                                                                 monkeypatch):
    """The embedded detector runs on every photo: no face is an error naming the file (the
    photo used to be taken whole as the face box, so this error could never fire)."""
    monkeypatch.setenv("STIMGEN_HOME", str(tiny_home))
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(5)
    wall = np.uint8(np.clip(150 + 20 * rng.standard_normal((240, 320, 3)), 0, 255))
    Image.fromarray(wall).save(tmp_path / "wall.png")
    (tmp_path / "protocol.yaml").write_text(
        SEEDS_ONLY.replace("  - {id: s1, seed: 1}\n",
                           '  - {id: photo, image: wall.png, source: "noise, no face"}\n'))
    result = CliRunner().invoke(main, ["-q", "build", "protocol.yaml", "-o", "out"])
    assert result.exit_code == 2, result.output
    assert "error: no face found in" in result.output and "wall.png" in result.output
    assert "Traceback" not in result.output


def test_missing_weights_stop_the_build_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setenv("STIMGEN_HOME", str(tmp_path / "empty"))
    (tmp_path / "protocol.yaml").write_text(SEEDS_ONLY)
    with pytest.raises(WeightsMissingError, match="ffhq.pkl"):
        stimgen.build(stimgen.load_protocol(tmp_path / "protocol.yaml"), out=tmp_path / "out",
                      progress=False)
    assert not (tmp_path / "out").exists()


def test_dry_run_uses_its_own_tiny_models_and_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("STIMGEN_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "protocol.yaml").write_text(SEEDS_ONLY)
    result = CliRunner().invoke(main, ["build", "protocol.yaml", "--dry-run"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "build" / "tiny-emostyle-dry-run"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["dry_run"] is True and manifest["counts"]["stimuli"] == 3
    assert all("/dry-run/models/" in f["path"] for f in manifest["backend"]["model_files"])
    assert not (tmp_path / "home" / "models").exists()       # the user's models: untouched
    assert "DRY RUN" in result.output and 'id="dry-run-warning"' in (out / "report.html").read_text()


@pytest.mark.slow
def test_dry_run_shows_each_photo_step_with_an_estimate_unless_quiet(study, tiny_home):
    import shutil

    text = (PROTOCOL.replace("  - {id: s1, seed: 1}\n", "")
            .replace("  - {id: lat, latent: w.npy}\n", "")
            .replace("emotions: [circumplex:happy, circumplex:sad]", "emotions: [circumplex:happy]")
            .replace("neutral: true", "neutral: false"))
    (study / "protocol.yaml").write_text(text)
    build_args = ["build", str(study / "protocol.yaml"), "--dry-run", "-o"]
    result = CliRunner().invoke(main, [*build_args, str(study / "dry")])
    assert result.exit_code == 0, result.output
    for line in ("photo · alignment ...", "photo · alignment: done,",
                 "photo · inversion: 2 steps", "photo · inversion: 1/2 steps,",
                 "photo · inversion: done, 2 steps in",
                 "photo · personalisation: 2 steps", "photo · personalisation: 1/2 steps,",
                 "photo · personalisation: done, 2 steps in"):
        assert line in result.output
    assert "s elapsed, about" in result.output and "s left (loss" in result.output

    shutil.rmtree(tiny_home / "dry-run" / "cache")        # so that the steps run again
    quiet = CliRunner().invoke(main, [*build_args, str(study / "quiet"), "-q"])
    assert quiet.exit_code == 0, quiet.output
    assert "photo ·" not in quiet.output


@pytest.mark.slow
def test_replacing_a_latent_or_photo_in_place_redraws_its_identity(study):
    """The identity cache counts a photo or latent by its content, not by its path."""
    first = build(study)
    before = pd.read_csv(first.paths["stimuli_table"], sep="\t", dtype={"identity": str})
    np.save(study / "w.npy", np.random.default_rng(1).standard_normal(64).astype(np.float32))
    second = build(study)
    assert "lat" not in second.reused_identities
    assert set(second.reused_identities) == {"photo", "s1"}
    after = pd.read_csv(second.paths["stimuli_table"], sep="\t", dtype={"identity": str})
    changed = before.set_index("stimulus_id")["sha256"] != after.set_index("stimulus_id")["sha256"]
    assert set(changed[changed].index) == {s for s in after["stimulus_id"] if s.startswith("lat")}
    face = Image.open(study / "face.png").convert("RGB")
    face.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(study / "face.png")
    third = build(study)
    assert "photo" not in third.reused_identities


@pytest.mark.slow
def test_a_stop_keeps_the_inversion_the_personalisation_and_every_drawn_stimulus(study,
                                                                               tiny_home,
                                                                               monkeypatch):
    """Ctrl-C or SIGTERM (a StopRequested) during personalisation keeps the photo's inversion;
    during the edits it keeps the personalised generator and every stimulus drawn so far: the
    rerun neither inverts nor personalises again and draws only the rest."""
    from stimgen.backends.emostyle import invert, personalize
    from stimgen.interrupt import StopRequested

    import shutil

    shutil.rmtree(tiny_home / "cache", ignore_errors=True)     # other tests cached the photo
    (study / "protocol.yaml").write_text(SEEDS_ONLY.replace(
        "  - {id: s1, seed: 1}\n", PHOTO_LINE))
    real_personalize, real_edit = personalize.personalize, EmoStyleBackend.render

    def stop(*args, **kwargs):
        raise StopRequested(15)

    monkeypatch.setattr(personalize, "personalize", stop)
    with pytest.raises(StopRequested):
        build(study)
    monkeypatch.setattr(invert, "invert", lambda *a, **k: pytest.fail("inverted again"))
    monkeypatch.setattr(personalize, "personalize", real_personalize)
    calls = []

    def render_then_stop(self, handle, targets):
        calls.append(len(targets))
        if len(calls) == 3:                    # the neutral reference, one batch, then stop
            raise StopRequested(15)
        return real_edit(self, handle, targets)

    monkeypatch.setattr(EmoStyleBackend, "render", render_then_stop)
    with pytest.raises(StopRequested):
        build(study)
    monkeypatch.setattr(personalize, "personalize",
                        lambda *a, **k: pytest.fail("personalised again"))
    monkeypatch.setattr(EmoStyleBackend, "render", real_edit)
    result = build(study)
    assert result.kept_stimuli == 2            # batch_size 2: the first batch was kept
    assert len(result.stimuli) == 3
