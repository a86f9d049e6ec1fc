"""`stimgen parity DIR`: fixtures discovered by name, one row per array, exit 0 / 1 / 2."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from stimgen.cli import main
from stimgen.parity import ParityFixtureError, run_parity, tensor_from_spec

PARITY = Path(__file__).parent / "data" / "parity"


def copy_fixtures(target: Path, *names: str) -> Path:
    for name in names:
        for suffix in (".json", ".npz"):
            shutil.copy(PARITY / f"{name}{suffix}", target / f"{name}{suffix}")
    return target


def perturb_array(path: Path, array: str, delta: float) -> None:
    with np.load(path) as npz:
        arrays = {key: npz[key] for key in npz.files}
    arrays[array] = arrays[array] + np.float32(delta)
    path.unlink()   # the copies are read-only like the originals
    np.savez(path, **arrays)


def test_fill_rule_is_deterministic_and_keyed_by_name():
    spec = {"shape": [3, 4], "dtype": "float32", "mean": 1.0, "std": 0.5}
    a, b = tensor_from_spec("layer.weight", spec), tensor_from_spec("layer.weight", spec)
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, tensor_from_spec("layer.bias", spec))
    assert tensor_from_spec("n", {"shape": [], "dtype": "int64", "values": [7]}).item() == 7


@pytest.mark.slow
def test_every_project_fixture_passes():
    result = CliRunner().invoke(main, ["parity", str(PARITY)])
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.output.splitlines()[1:10]]
    assert [row[:2] for row in rows] == [
        ["stylegan2_ada", "ws"], ["stylegan2_ada", "images"], ["stylegan2_ada", "images_plus"],
        ["emo_mapping_wplus", "delta"], ["emonet8", "valence"], ["emonet8", "arousal"],
        ["emonet8", "expression"], ["emonet8", "heatmap"], ["vggface2_resnet50", "embedding"]]
    assert all(row[-1] == "PASS" for row in rows)
    assert "9/9 arrays match the reference (4 fixtures" in result.output


def test_tampered_output_fails_its_row_and_exits_1(tmp_path):
    copy_fixtures(tmp_path, "vggface2_resnet50")
    perturb_array(tmp_path / "vggface2_resnet50.npz", "embedding", 1e-3)
    result = CliRunner().invoke(main, ["parity", str(tmp_path)])
    assert result.exit_code == 1
    [row] = [line for line in result.output.splitlines() if line.startswith("vggface2")]
    assert row.split()[1:3] == ["embedding", "0.001"] and row.rstrip().endswith("FAIL")
    assert "0/1 arrays match" in result.output


def test_weights_that_do_not_fit_fail_every_row(tmp_path):
    copy_fixtures(tmp_path, "emonet8")
    spec_path = tmp_path / "emonet8.json"
    spec = json.loads(spec_path.read_text())
    del spec["state_dict"]["emo_fc_2.3.bias"]
    spec_path.unlink()
    spec_path.write_text(json.dumps(spec))
    rows = run_parity(tmp_path)
    assert len(rows) == 4 and not any(r.passed for r in rows)
    assert all("emo_fc_2.3.bias" in r.note for r in rows)


def test_empty_directory_exits_2(tmp_path):
    result = CliRunner().invoke(main, ["parity", str(tmp_path)])
    assert result.exit_code == 2
    assert "no parity fixtures found" in result.output
    with pytest.raises(ParityFixtureError, match="emonet8.json"):
        run_parity(tmp_path)


def test_spec_without_arrays_exits_2(tmp_path):
    shutil.copy(PARITY / "emonet8.json", tmp_path / "emonet8.json")
    result = CliRunner().invoke(main, ["parity", str(tmp_path)])
    assert result.exit_code == 2
    assert "emonet8.npz" in result.output


def test_missing_directory_exits_2(tmp_path):
    result = CliRunner().invoke(main, ["parity", str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    assert "not a directory" in result.output
