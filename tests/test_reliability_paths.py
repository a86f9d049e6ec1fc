"""Paths: protocol paths resolve against the protocol file, and a build writes only inside its
output folder (no `..`, no absolute names, no writing through symbolic links).

Guarantee (docs/reliability.md).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

import stimgen
from buildfolders import protocol_from_text
from stimgen.errors import BuildError, ProtocolError
from stimgen.safety import is_inside

PROTOCOL = """\
study: {name: paths}
identities:
  - {id: id01, seed: 1}
targets: {emotions: [circumplex:happy], intensities: [1.0]}
output: {image_size: 96}
"""


@pytest.fixture(scope="module")
def protocol(tmp_path_factory):
    return protocol_from_text(tmp_path_factory.mktemp("protocol"), PROTOCOL, "p.yaml")


def test_protocol_paths_resolve_against_the_protocol_file(tmp_path, monkeypatch):
    study = tmp_path / "study"
    (study / "photos").mkdir(parents=True)
    (study / "photos" / "p01.jpg").write_bytes(b"not read at load time")
    (study / "p.yaml").write_text(
        "study: {name: photos}\nbackend: {name: emostyle}\n"
        "identities: [{id: p01, image: photos/p01.jpg}]\n"
        "targets: {emotions: [circumplex:happy]}\noutput: {folder: results}\n", encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    protocol = stimgen.load_protocol(Path("..") / "study" / "p.yaml")
    assert protocol.resolve(protocol.identities[0].image) == (study / "photos" / "p01.jpg")
    assert protocol.default_output() == study / "results"
    (study / "photos" / "p01.jpg").unlink()
    with pytest.raises(ProtocolError, match="relative to the protocol file"):
        stimgen.load_protocol(study / "p.yaml")


@pytest.mark.parametrize("bad_id", ["../evil", "/etc/passwd", "a/b", "..", ".hidden", "a\\b",
                                    "x" * 49, "id 1", "ok\x00"])
def test_ids_that_would_escape_as_file_names_are_refused(bad_id):
    data = yaml.safe_load(PROTOCOL)
    data["identities"][0]["id"] = bad_id
    with pytest.raises(ProtocolError, match="invalid id"):
        stimgen.protocol.loader.protocol_from_text(yaml.safe_dump(data))


def test_point_labels_are_identifiers_too():
    text = PROTOCOL.replace("emotions: [circumplex:happy], intensities: [1.0]",
                            'points: [{label: "../../x", valence: 0.1, arousal: 0.1}]')
    with pytest.raises(ProtocolError, match="invalid id"):
        stimgen.protocol.loader.protocol_from_text(text)


def test_study_name_cannot_steer_the_default_folder():
    text = PROTOCOL.replace("name: paths", 'name: "../../etc/cron.d"')
    protocol = stimgen.protocol.loader.protocol_from_text(text)
    assert protocol.default_output().parent == Path("build")
    assert "/" not in protocol.default_output().name and ".." not in protocol.default_output().name


@pytest.mark.parametrize("linked", ["stimuli", ".stimgen/identities", "experiment",
                                    "report_assets"])
def test_symlinked_folder_in_the_build_is_refused(protocol, tmp_path, linked):
    out = tmp_path / "build"
    stimgen.build(protocol, out=out, progress=False, jobs=1)
    victim = tmp_path / "my-photos"
    victim.mkdir()
    (victim / "holiday.jpg").write_bytes(b"precious")
    target = out / linked
    if target.is_dir():
        import shutil
        shutil.rmtree(target)
    target.symlink_to(victim, target_is_directory=True)
    with pytest.raises(BuildError, match="symbolic link") as caught:
        stimgen.build(protocol, out=out, progress=False, jobs=1)
    assert str(target) in caught.value.hint
    assert sorted(p.name for p in victim.iterdir()) == ["holiday.jpg"]   # untouched
    assert (victim / "holiday.jpg").read_bytes() == b"precious"


def test_every_written_file_lies_inside_the_build_folder(protocol, tmp_path):
    out = tmp_path / "build"
    result = stimgen.build(protocol, out=out, progress=False, jobs=1)
    written = [p for p in out.rglob("*") if not p.is_dir()]
    assert written and all(is_inside(out, p) and not p.is_symlink() for p in written)
    assert all(is_inside(out, out / name) for name in result.manifest["files"])


def test_build_folder_given_as_a_link_is_the_users_choice(protocol, tmp_path):
    real = tmp_path / "real"
    link = tmp_path / "link"
    real.mkdir()
    link.symlink_to(real, target_is_directory=True)
    stimgen.build(protocol, out=link, progress=False, jobs=1)
    assert (real / "manifest.json").is_file()


def test_is_inside_sees_through_dotdot_and_links(tmp_path):
    (tmp_path / "out").mkdir()
    os.symlink(tmp_path, tmp_path / "out" / "up")
    assert is_inside(tmp_path / "out", tmp_path / "out" / "a.png")
    assert not is_inside(tmp_path / "out", tmp_path / "out" / ".." / "a.png")
    assert not is_inside(tmp_path / "out", tmp_path / "out" / "up" / "a.png")
