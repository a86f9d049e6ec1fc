"""The build: a protocol in, a complete, reproducible, resumable build folder out."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import stimgen
from buildfolders import protocol_from_text, snapshot
from stimgen.facs import AU_NAMES
from stimgen.build_folder import LOW_LEVEL_COLUMNS, STIMULI_COLUMNS, build_lock
from stimgen.cli import main
from stimgen.errors import BuildError, WeightsMissingError
from stimgen.storage import sha256_file

ROOT = Path(__file__).resolve().parents[1]

SMALL = """\
study: {name: small, authors: [Tester]}
seed: 3
identities:
  - {id: id01, seed: 1}
  - {id: id02, seed: 2}
targets:
  emotions: [circumplex:happy, afraid, circumplex:sad, tired]
  angles: [45]
  intensities: [0.5, 1.0]
  points: [{label: mildjoy, valence: 0.3, arousal: 0.1}]
  neutral: true
output: {image_size: 128}
"""


@pytest.fixture(scope="module")
def small_protocol(tmp_path_factory):
    return protocol_from_text(tmp_path_factory.mktemp("protocol"), SMALL, "small.yaml")


@pytest.fixture(scope="module")
def small_build(small_protocol, tmp_path_factory):
    out = tmp_path_factory.mktemp("build") / "small"
    return stimgen.build(small_protocol, out=out, progress=False, jobs=1)


def test_build_folder_is_complete(small_build):
    out = small_build.out
    for name in ("stimuli.tsv", "metrics_by_emotion.csv", "metrics_by_intensity.csv",
                 "protocol.yaml", "manifest.json"):
        assert (out / name).is_file(), name
    table = pd.read_csv(out / "stimuli.tsv", sep="\t")
    # schematic: the AUs drawn; every build: the low-level measures
    assert tuple(table.columns) == STIMULI_COLUMNS + AU_NAMES + LOW_LEVEL_COLUMNS
    # 2 identities x (4 emotions x 2 + 1 angle x 2 + 1 point + neutral)
    assert len(table) == 2 * 12
    assert set(table.stimulus_id) >= {"id01_happy_i050", "id02_a045_i100", "id01_mildjoy",
                                      "id02_neutral"}
    for row in table.itertuples():
        path = out / row.file
        assert path.is_file() and sha256_file(path) == row.sha256
        assert (row.width, row.height) == (128, 128)
    assert len(list((out / "stimuli").iterdir())) == len(table)


def test_targets_and_errors_are_consistent(small_build):
    table = small_build.stimuli
    happy = table[table.stimulus_id == "id01_happy_i050"].iloc[0]
    assert happy.angle == 7.8 and happy.intensity == 0.5 and happy.emotion == "Happy"
    assert happy.target_valence == pytest.approx(0.5 * np.cos(np.deg2rad(7.8)))
    distance = np.hypot(table.target_valence - table.achieved_valence,
                        table.target_arousal - table.achieved_arousal)
    assert np.allclose(distance, table.distance_error)
    neutral = table[table.target_kind == "neutral"]
    assert neutral.direction_error.isna().all()
    assert (table.achieved_valence.abs() <= 1).all() and (table.achieved_arousal.abs() <= 1).all()


def test_flags_follow_tolerances_and_weak_region(small_build, small_protocol):
    table = small_build.stimuli
    tired = table[table.emotion == "Tired"]
    # recorded, but not a flag: the weak region is EmoStyle's (flag_weak_region: auto)
    assert tired.weak_region.all() and not tired["flags"].str.contains("weak_region").any()
    assert not table[table.emotion == "Happy"].weak_region.any()
    too_far = table.distance_error > small_protocol.validation.tolerance.distance
    assert (table["flags"].str.contains("distance_tolerance") == too_far).all()
    assert (table.out_of_tolerance >= too_far).all()


def test_metrics_tables_agree_with_stimuli(small_build):
    out = small_build.out
    table = pd.read_csv(out / "stimuli.tsv", sep="\t")
    by_emotion = pd.read_csv(out / "metrics_by_emotion.csv")
    assert list(by_emotion.emotion) == ["Happy", "mildjoy", "a045", "Afraid", "Sad", "Tired",
                                        "neutral"]
    sad = by_emotion[by_emotion.emotion == "Sad"].iloc[0]
    rows = table[table.emotion == "Sad"]
    assert sad.n == 4
    assert sad.dist_mae == pytest.approx(rows.distance_error.mean(), rel=1e-4)
    assert sad.dir_mae_deg == pytest.approx(rows.direction_error.mean(), rel=1e-4)
    by_intensity = pd.read_csv(out / "metrics_by_intensity.csv")
    assert by_intensity.n.sum() == len(table)


def test_manifest_records_everything(small_build, small_protocol):
    manifest = json.loads((small_build.out / "manifest.json").read_text())
    assert manifest["complete"] is True
    assert manifest["protocol"]["sha256"] == stimgen.protocol.loader.protocol_sha256(small_protocol)
    assert manifest["backend"]["name"] == "schematic"
    assert manifest["rater"]["name"] == "geometric"
    assert manifest["counts"]["stimuli"] == 24
    assert manifest["identity_seeds"] == {"id01": 1, "id02": 2}
    for relative, digest in manifest["files"].items():
        assert sha256_file(small_build.out / relative) == digest
    assert "stimuli.tsv" in manifest["files"]
    assert (small_build.out / "protocol.yaml").read_text() == SMALL


def test_rebuild_is_byte_identical(small_build, small_protocol, tmp_path):
    again = stimgen.build(small_protocol, out=tmp_path / "again", progress=False, jobs=2)
    # The report shows the build's date and folder, so only it may differ.
    assert snapshot(again.out) == snapshot(small_build.out)


def test_resume_reuses_finished_identities_and_repairs_damage(small_protocol, tmp_path):
    out = tmp_path / "resume"
    first = stimgen.build(small_protocol, out=out, progress=False, jobs=1)
    assert first.reused_identities == []
    damaged = out / "stimuli" / "id02_sad_i100.png"
    damaged.write_bytes(b"truncated")
    (out / "manifest.json").unlink()            # as if killed before the end
    second = stimgen.build(small_protocol, out=out, progress=False, jobs=1)
    assert second.reused_identities == ["id01"]   # id02's damaged file forced a redo
    assert sha256_file(damaged) == first.stimuli.set_index("stimulus_id").loc[
        "id02_sad_i100", "sha256"]
    files = json.loads((out / "manifest.json").read_text())["files"]
    files.pop("report.html"), first.manifest["files"].pop("report.html")
    assert files == first.manifest["files"]


def test_refuses_foreign_folder_unless_forced(small_protocol, tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.docx").write_text("precious")
    with pytest.raises(BuildError, match="not made by stimgen"):
        stimgen.build(small_protocol, out=foreign, progress=False)
    stimgen.build(small_protocol, out=foreign, progress=False, force=True, jobs=1)
    assert (foreign / "thesis.docx").read_text() == "precious"


def test_second_concurrent_build_is_refused(small_protocol, tmp_path):
    out = tmp_path / "locked"
    (out / ".stimgen").mkdir(parents=True)
    with build_lock(out):
        with pytest.raises(BuildError, match="another stimgen build"):
            stimgen.build(small_protocol, out=out, progress=False)


def test_lock_left_by_a_dead_process_does_not_block(small_protocol, tmp_path):
    """A build killed while holding the lock leaves its files behind; the OS lock went with
    the process, so the next build goes ahead."""
    import socket

    from filelock import FileLock

    from stimgen.build_folder import LOCK_FILE, LOCK_OWNER_JSON

    out = tmp_path / "stale"
    (out / ".stimgen").mkdir(parents=True)
    pid = os.fork()
    if pid == 0:                                # holds the lock, then dies without releasing
        FileLock(str(out / LOCK_FILE)).acquire()
        (out / LOCK_OWNER_JSON).write_text(json.dumps({"pid": os.getpid(),
                                                       "host": socket.gethostname()}))
        os._exit(0)
    os.waitpid(pid, 0)
    assert (out / LOCK_FILE).exists() and (out / LOCK_OWNER_JSON).exists()
    stimgen.build(small_protocol, out=out, progress=False, jobs=1)
    assert (out / "manifest.json").is_file() and not (out / LOCK_OWNER_JSON).exists()


def test_emostyle_protocol_fails_fast_without_weights(tmp_path, monkeypatch):
    models = tmp_path / "empty-home" / "models"
    monkeypatch.setenv("STIMGEN_HOME", str(models.parent))
    protocol = stimgen.load_protocol(ROOT / "protocols" / "emostyle-28x4.yaml")
    with pytest.raises(WeightsMissingError) as caught:
        stimgen.build(protocol, out=tmp_path / "e", progress=False)
    needed = {"stylegan2_ffhq": "ffhq.pkl", "emostyle_mapping": "emo_mapping_wplus_2.pt",
              "vggface2_resnet50": "resnet50_ft_weight.pkl", "emonet_8": "emonet_8.pth"}
    assert caught.value.message.startswith(f"4 model file(s) needed here are not installed in {models}")
    for name, file in needed.items():                 # each missing file, where it belongs
        assert f"  - {name}: {models / file}\n" in caught.value.message
    assert f"stimgen models fetch {' '.join(needed)}" in caught.value.hint
    assert not (tmp_path / "e").exists()          # stopped before doing any work


def test_cli_build_runs_and_reports(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(SMALL.replace("[happy, afraid, sad, tired]", "[happy]"), encoding="utf-8")
    result = CliRunner().invoke(main, ["--quiet", "build", str(path), "-o", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith(str(tmp_path / "o"))
    assert (tmp_path / "o" / "manifest.json").is_file()


def test_stale_stimuli_of_a_changed_protocol_are_removed_but_user_files_kept(tmp_path):
    first = tmp_path / "first.yaml"
    first.write_text(SMALL, encoding="utf-8")
    out = tmp_path / "out"
    (out / "stimuli").mkdir(parents=True)
    (out / "stimuli" / "my_notes.txt").write_text("mine")
    stimgen.build(stimgen.load_protocol(first), out=out, progress=False, force=True, jobs=1)
    assert (out / "stimuli" / "id01_sad_i050.png").is_file()
    second = tmp_path / "second.yaml"
    second.write_text(SMALL.replace("[happy, afraid, sad, tired]", "[happy]")
                      .replace("  - {id: id02, seed: 2}\n", ""), encoding="utf-8")
    result = stimgen.build(stimgen.load_protocol(second), out=out, progress=False, jobs=1)
    on_disk = {p.name for p in (out / "stimuli").iterdir()}
    assert on_disk == {Path(f).name for f in result.stimuli.file} | {"my_notes.txt"}
    assert not (out / ".stimgen" / "identities" / "id02.json").exists()


def test_neutral_stimulus_is_measured_not_zero_by_construction(small_build):
    neutral = small_build.stimuli[small_build.stimuli.target_kind == "neutral"]
    # Rated against population constants, not against itself: a real (small) measurement.
    assert (neutral[["achieved_valence", "achieved_arousal"]].abs().sum(axis=1) > 0).all()
    assert (neutral.distance_error < 0.35).all()


def test_dry_run_of_a_backend_without_weights_is_refused(small_protocol, tmp_path, monkeypatch):
    """--dry-run stands in tiny models for downloaded weights; schematic has none to replace."""
    home = tmp_path / "home"
    monkeypatch.setenv("STIMGEN_HOME", str(home))
    with pytest.raises(BuildError, match="uses no weights") as caught:
        stimgen.build(small_protocol, out=tmp_path / "dry", progress=False, dry_run=True)
    assert "without --dry-run" in caught.value.hint
    assert not (tmp_path / "dry").exists() and not home.exists()   # no models, no folder
    path = tmp_path / "p.yaml"
    path.write_text(SMALL, encoding="utf-8")
    result = CliRunner().invoke(main, ["build", str(path), "--dry-run"])
    assert result.exit_code == 2 and "uses no weights" in result.output
    assert "noise" not in result.output and "Traceback" not in result.output


def test_a_refitted_rater_makes_finished_identities_new_work(small_protocol, small_build,
                                                             tmp_path, monkeypatch):
    """Cached ratings belong to the rater that made them: after the geometric rater's
    calibration changes, a rebuild rates every identity again instead of reusing them."""
    import shutil

    from stimgen.raters import geometric
    out = tmp_path / "refit"
    shutil.copytree(small_build.out, out)
    assert stimgen.build(small_protocol, out=out, progress=False,
                         jobs=1).reused_identities == ["id01", "id02"]
    monkeypatch.setattr(geometric, "RELATIVE_COEFFICIENTS",
                        geometric.RELATIVE_COEFFICIENTS * 1.1)
    assert stimgen.build(small_protocol, out=out, progress=False, jobs=1).reused_identities == []
