"""Damaged cache records and stimuli are found by their sha256, recomputed and reported.

Guarantee (docs/reliability.md): a rebuild never reuses a file whose content does not match
the hash recorded when it was made; it recomputes that identity, says so on stderr, in
BuildResult.repairs and under "repairs" in manifest.json, and ends with correct files.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from click.testing import CliRunner

import stimgen
from buildfolders import protocol_from_text
from stimgen.cli import main
from stimgen.storage import sha256_file

PROTOCOL = """\
study: {name: corruption}
identities:
  - {id: id01, seed: 1}
  - {id: id02, seed: 2}
targets: {emotions: [circumplex:happy, circumplex:sad], intensities: [1.0], neutral: true}
output: {image_size: 96}
"""


@pytest.fixture(scope="module")
def protocol(tmp_path_factory):
    return protocol_from_text(tmp_path_factory.mktemp("protocol"), PROTOCOL, "p.yaml")


@pytest.fixture()
def built(protocol, tmp_path):
    out = tmp_path / "build"
    first = stimgen.build(protocol, out=out, progress=False, jobs=1)
    return out, first


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


DAMAGE = {
    "truncated stimulus": ("stimuli/id02_sad_i100.png", _truncate, "sha256"),
    "flipped byte in stimulus": ("stimuli/id02_neutral.png", _flip_byte, "sha256"),
    "deleted stimulus": ("stimuli/id02_happy_i100.png", Path.unlink, "missing"),
    "truncated cache record": (".stimgen/identities/id02.json", _truncate, "unreadable"),
    "garbage cache record": (".stimgen/identities/id02.json",
                             lambda p: p.write_text('{"key": 1, "records": 7}'), "unreadable"),
    "cache record of the wrong shape": (".stimgen/identities/id02.json",
                                        lambda p: p.write_text('["a", "list"]'), "unreadable"),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_damage_is_detected_recomputed_and_reported(protocol, built, case, caplog):
    out, first = built
    relative, damage, problem = DAMAGE[case]
    damage(out / relative)
    with caplog.at_level(logging.WARNING, logger="stimgen"):
        second = stimgen.build(protocol, out=out, progress=False, jobs=1)
    assert second.reused_identities == ["id01"]
    assert [(r["identity"], r["file"]) for r in second.repairs] == [("id02", relative)]
    assert problem in second.repairs[0]["problem"]
    assert relative in caplog.text and "recomputing" in caplog.text
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["repairs"] == second.repairs
    for name, digest in first.manifest["files"].items():
        if name != "report.html":
            assert sha256_file(out / name) == digest, name


def test_clean_rebuild_reports_no_repairs(protocol, built):
    out, _ = built
    again = stimgen.build(protocol, out=out, progress=False, jobs=1)
    assert again.repairs == [] and again.reused_identities == ["id01", "id02"]
    assert json.loads((out / "manifest.json").read_text())["repairs"] == []


def test_changed_protocol_is_a_rebuild_not_a_repair(protocol, built, tmp_path):
    out, _ = built
    changed = tmp_path / "changed.yaml"
    changed.write_text(PROTOCOL.replace("size: 96", "size: 64"), encoding="utf-8")
    result = stimgen.build(stimgen.load_protocol(changed), out=out, progress=False, jobs=1)
    assert result.repairs == [] and result.reused_identities == []


def test_cli_says_what_it_repaired(protocol, built):
    out, _ = built
    _truncate(out / "stimuli" / "id01_happy_i100.png")
    result = CliRunner().invoke(main, ["build", str(protocol.source_path), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "stimuli/id01_happy_i100.png" in result.output      # the warning names the file
    assert "recomputed 1 identit(ies)" in result.output
