"""Every protocol file under protocols/ is complete and builds: schematic ones in full.

Each YAML file there is a whole protocol (protocols/examples/ included), so a partial
section put there fails these tests. Protocols of the GPU backend are validated in full and
dry-run (tiny random models, docs/backends-emostyle.md) on a cut-down copy, because the
full dry run of protocols/emostyle-28x4.yaml (1,120 faces at 1024 px) takes about a quarter
of an hour of CPU time.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import stimgen
from stimgen.cli import main
from stimgen.plan import plan_units, rating_of

ROOT = Path(__file__).resolve().parents[1]
PROTOCOLS = sorted((ROOT / "protocols").rglob("*.yaml"))


def backend_of(path: Path) -> str:
    return yaml.safe_load(path.read_text(encoding="utf-8"))["backend"]["name"]


def name_of(path: Path) -> str:
    return path.relative_to(ROOT / "protocols").as_posix()


SCHEMATIC = [p for p in PROTOCOLS if backend_of(p) == "schematic"]
EMOSTYLE = [p for p in PROTOCOLS if backend_of(p) == "emostyle"]


def test_the_protocol_folder_holds_the_demo_the_gpu_protocol_and_the_examples():
    names = {name_of(p) for p in PROTOCOLS}
    assert {"demo.yaml", "emostyle-28x4.yaml"} <= names
    assert sum(n.startswith("examples/experiment-") for n in names) == 3
    assert set(SCHEMATIC) | set(EMOSTYLE) == set(PROTOCOLS)


@pytest.mark.parametrize("path", PROTOCOLS, ids=name_of)
def test_every_protocol_file_validates_without_warnings(path, request, monkeypatch):
    if path in EMOSTYLE:    # on a machine with its model files (tiny ones here); without
        # them validate warns that a build would stop (tests/test_validate.py)
        monkeypatch.setenv("STIMGEN_HOME", str(request.getfixturevalue("tiny_home")))
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert f"{path}: valid" in result.output
    assert "warning" not in result.output.lower()


@pytest.mark.slow
@pytest.mark.parametrize("path", SCHEMATIC, ids=name_of)
def test_schematic_protocol_builds_completely(path, tmp_path):
    protocol = stimgen.load_protocol(path)
    result = stimgen.build(protocol, out=tmp_path / "out", progress=False)
    planned = sum(len(unit.targets) for unit in plan_units(protocol))
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["complete"] and manifest["counts"]["stimuli"] == planned == len(result.stimuli)
    per_stimulus = 1 if protocol.output.dynamic is None else 2     # the image and its clip
    assert len(list((tmp_path / "out" / "stimuli").iterdir())) == planned * per_stimulus
    assert (tmp_path / "out" / "report.html").is_file()
    if protocol.experiment is not None:
        assert list((tmp_path / "out" / "experiment").glob("*.psyexp"))
        assert (tmp_path / "out" / "experiment" / "design.csv").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("path", EMOSTYLE, ids=name_of)
def test_emostyle_protocol_dry_runs_cut_down_to_one_identity(path, tmp_path, monkeypatch):
    """The file's own settings (backend options, rater, tolerances), with its first
    identity, its first two targets' emotions and 64-pixel output, through `--dry-run`."""
    monkeypatch.setenv("STIMGEN_HOME", str(tmp_path / "home"))
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    raw["identities"] = raw["identities"][:1]
    raw["targets"] = {**raw["targets"], "emotions": ["circumplex:happy", "circumplex:sad"], "intensities": [1.0]}
    raw["output"] = {**raw.get("output", {}), "image_size": 64}
    cut = tmp_path / path.name
    cut.write_text(yaml.safe_dump(raw), encoding="utf-8")
    result = CliRunner().invoke(main, ["-q", "build", str(cut), "--dry-run",
                                       "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["dry_run"] is True and manifest["counts"]["stimuli"] >= 2
    assert manifest["rater"]["name"] == rating_of(stimgen.load_protocol(path)).primary
