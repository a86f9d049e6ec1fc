"""`stimgen models ...` through click, and the tiny models through every loader."""
from __future__ import annotations

import json
import os
import pickle

import pytest
import torch
from click.testing import CliRunner

from stimgen.cli import StimgenGroup
from stimgen.cli.models import models_group
from stimgen.weights.inspect import detect_kind, inspect_checkpoint, load_checkpoint
from stimgen.weights.registry import (
    TinyWeightsWarning, get_model, load_registry, model_status, require_weights,
)
from stimgen.weights.tiny import TINY_MANIFEST, make_tiny

TINY_RESOLUTION = 16


def run(*args, env=None):
    """Invoke `stimgen models ARGS` under a root group that reports StimgenErrors like `stimgen`."""
    root = StimgenGroup(name="stimgen", commands={"models": models_group})
    return CliRunner().invoke(root, ["models", *args], env=env, catch_exceptions=False)


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("STIMGEN_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


class Payload:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


# ----------------------------------------------------------------------------- list / fetch / add

def test_list_shows_cache_states_licences_and_unknown_hashes(home):
    result = run("list")
    assert result.exit_code == 0, result.output
    assert f"model cache: {home / 'models'} (STIMGEN_HOME)" in result.output
    for entry in load_registry():
        assert entry.name in result.output and entry.file in result.output
    assert result.output.count("missing") == len(load_registry())
    assert "sha256: unknown, recorded on first fetch" in result.output
    assert "CC BY-NC-ND 4.0" in result.output and "NVIDIA Source Code License-NC" in result.output
    verbose = run("list", "--verbose").output
    assert get_model("emostyle_mapping").urls[0] in verbose and "cite: Azari" in verbose


def test_fetch_needs_names_and_knows_them(home):
    assert run("fetch").exit_code == 2
    result = run("fetch", "emonet8")
    assert result.exit_code == 2
    assert "unknown model 'emonet8'" in result.output and "emonet_8" in result.output


def test_add_then_verify_then_a_changed_file_fails_verify(home, tmp_path):
    source = tmp_path / "emonet_8.pth"
    torch.save({"module.emo_fc_2.3.weight": torch.zeros(10, 128)}, source)
    added = run("add", "emonet_8", str(source))
    assert added.exit_code == 0, added.output
    assert "recorded" in added.output and "none published" in added.output
    assert "emonet_8" in run("list").output and model_status("emonet_8").state == "recorded"
    assert run("verify").exit_code == 0
    installed = home / "models" / "emonet_8.pth"
    installed.write_bytes(installed.read_bytes() + b"\0")
    result = run("verify", "emonet_8")
    assert result.exit_code == 2
    assert "mismatch" in result.output and "stimgen models fetch --force emonet_8" in result.output


def test_add_of_the_wrong_kind_is_refused(home, tmp_path):
    source = tmp_path / "weights.pth"
    torch.save({"module.emo_fc_2.3.weight": torch.zeros(10, 128)}, source)
    result = run("add", "stylegan2_ffhq", str(source))
    assert result.exit_code == 2
    assert "emonet checkpoint, but stylegan2_ffhq expects a stylegan2_pickle" in result.output


# ----------------------------------------------------------------------------- inspect refusals

def test_inspect_refuses_a_pickle_that_runs_code_and_names_the_global(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps({"w": Payload(os.system, f"touch {marker}")}, protocol=2))
    result = run("inspect", str(path))
    assert result.exit_code == 2
    assert "refused" in result.output and "system" in result.output
    assert not marker.exists()


def test_inspect_never_runs_the_source_stored_in_an_nvidia_pickle(tmp_path):
    from stimgen.checkpoints.nvidia import write_stylegan2_pickle
    from stimgen.nets.stylegan2 import Generator

    marker = tmp_path / "module_src_ran"
    G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=8, img_channels=3,
                  mapping_kwargs={"num_layers": 1},
                  synthesis_kwargs={"channel_base": 64, "channel_max": 8, "num_fp16_res": 0})
    path = write_stylegan2_pickle(tmp_path / "ffhq.pkl", G,
                                  module_src=f"open({str(marker)!r}, 'w').close()\n")
    result = run("inspect", str(path))
    assert result.exit_code == 0, result.output
    assert "kind:       stylegan2_pickle" in result.output and "img_resolution: 8" in result.output
    assert f"parameters: {sum(p.numel() for p in G.parameters()):,}" in result.output
    assert not marker.exists()


def test_inspect_explains_an_unknown_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not a model")
    result = run("inspect", str(path))
    assert result.exit_code == 2 and "not a checkpoint stimgen knows" in result.output
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"a": [1, 2, 3]}, protocol=2))
    assert "a pickle of plain data" in run("inspect", str(plain)).output


# ----------------------------------------------------------------------------- make-tiny

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tiny")
    return make_tiny(directory, resolution=TINY_RESOLUTION, seed=1)


@pytest.mark.slow
def test_tiny_models_have_published_names_kinds_and_a_manifest(tiny):
    assert {name: path.name for name, path in tiny.items()} == \
        {name: get_model(name).file for name in tiny}
    manifest = json.loads((next(iter(tiny.values())).parent / TINY_MANIFEST).read_text())
    assert "RANDOM TINY MODELS" in manifest["warning"]
    for name, path in tiny.items():
        assert detect_kind(path) == get_model(name).kind == manifest["models"][name]["kind"]


@pytest.mark.slow
def test_tiny_models_load_and_run_together(tiny):
    from stimgen.nets.emo_mapping import edit_latents
    from stimgen.nets.vggface2 import identity_embedding

    G = load_checkpoint(tiny["stylegan2_ffhq"])
    mapping = load_checkpoint(tiny["emostyle_mapping"])
    with torch.no_grad():
        ws = G.mapping(torch.randn(2, G.z_dim), None, truncation_psi=0.7)
        edited = edit_latents(mapping, ws, torch.tensor([[0.8, 0.3], [-0.5, -0.5]]))
        images = G.synthesis(edited, noise_mode="const")
        faces = torch.nn.functional.interpolate((images.clamp(-1, 1) + 1) / 2, size=256)
        emotion = load_checkpoint(tiny["emonet_8"])(faces)
        identity = identity_embedding(load_checkpoint(tiny["vggface2_resnet50"]), faces)
    assert images.shape == (2, 3, TINY_RESOLUTION, TINY_RESOLUTION)
    assert emotion["expression"].shape == (2, 8) and identity.shape == (2, 2048)
    assert torch.isfinite(images).all() and torch.isfinite(identity).all()


@pytest.mark.slow
def test_tiny_fan_loads_in_the_face_alignment_adapter(tiny):
    from stimgen.nets.face_landmarks import FaceLandmarker

    # Building it loads the file into face-alignment's own FAN (strict key and shape
    # check); a call is not timed here: face-alignment JIT-compiles its decoder (~40 s).
    landmarker = FaceLandmarker(tiny["fan_2d"], flip_input=False)
    assert landmarker.aligner.face_alignment_net.num_modules == 1


@pytest.mark.slow
def test_tiny_models_inspect_with_their_configs(tiny):
    info = inspect_checkpoint(tiny["emostyle_mapping"])
    assert info.config == {"size": TINY_RESOLUTION, "emotion_dim": 16, "latent_dim": 64,
                           "hidden": (64, 64, 64)}
    assert inspect_checkpoint(tiny["emonet_8"]).config["n_expression"] == 8
    result = run("inspect", str(tiny["vggface2_resnet50"]))
    assert result.exit_code == 0 and "num_classes: 16" in result.output
    assert "registry:   vggface2_resnet50" in result.output


@pytest.mark.slow
def test_make_tiny_install_registers_tiny_models_that_warn(home, tmp_path):
    result = run("make-tiny", str(tmp_path / "tiny"), "--install", "--resolution", "8")
    assert result.exit_code == 0, result.output
    assert "RANDOM TINY MODELS" in result.output
    listing = run("list").output
    assert listing.count("RANDOM TINY MODEL (make-tiny)") == 5
    names = ["stylegan2_ffhq", "emostyle_mapping", "emonet_8", "vggface2_resnet50", "fan_2d"]
    with pytest.warns(TinyWeightsWarning, match="RANDOM TINY MODELS"):
        paths = require_weights(names)
    assert all(model_status(n).state == "tiny" for n in names)
    assert run("verify").exit_code == 0
    assert load_checkpoint(paths["stylegan2_ffhq"]).img_resolution == 8


# ----------------------------------------------------------------------------- add: tiny models

CORE = ["stylegan2_ffhq", "emostyle_mapping", "emonet_8", "vggface2_resnet50"]
SEED_PROTOCOL = """
study: {name: tiny-added}
seed: 3
backend: {name: emostyle, options: {batch_size: 2}}
identities: [{id: s1, seed: 1}]
targets: {emotions: [circumplex:happy], intensities: [1.0], neutral: true}
output: {image_size: 64}
"""


@pytest.mark.parametrize("name", ["stylegan2_ffhq", "emostyle_mapping", "emonet_8",
                                  "vggface2_resnet50", "fan_2d"])
def test_add_refuses_a_tiny_model_naming_the_file_and_force(home, tiny, name):
    result = run("add", name, str(tiny[name]))
    assert result.exit_code == 2
    assert f"{tiny[name]}: this is a random tiny model written by `stimgen models make-tiny`" \
        in result.output
    assert "--force" in result.output and f"stimgen models fetch {name}" in result.output
    assert model_status(name).state == "missing"


def test_tiny_models_are_recognised_by_their_marker_or_their_tiny_json(tiny, tmp_path):
    import shutil

    from stimgen.weights.tiny import TINY_MARKER, tiny_evidence, tiny_marker

    for name, path in tiny.items():               # the marker travels with the file alone
        alone = tmp_path / name / path.name
        alone.parent.mkdir()
        shutil.copyfile(path, alone)
        assert tiny_marker(alone)["seed"] == 1
        assert TINY_MARKER in tiny_evidence(alone)
    # a file of an older make-tiny (no marker) is known by the sha256 its tiny.json lists
    older = tmp_path / "older"
    older.mkdir()
    torch.save({"module.emo_fc_2.3.weight": torch.zeros(10, 128)}, older / "emonet_8.pth")
    assert tiny_evidence(older / "emonet_8.pth") is None
    from stimgen.storage import sha256_file
    (older / TINY_MANIFEST).write_text(json.dumps(
        {"models": {"emonet_8": {"sha256": sha256_file(older / "emonet_8.pth")}}}))
    assert TINY_MANIFEST in tiny_evidence(older / "emonet_8.pth")


@pytest.mark.slow
def test_add_force_records_a_tiny_model_and_every_build_with_it_warns(home, tiny, tmp_path):
    from stimgen.cli import main

    for name in CORE:
        added = run("add", name, str(tiny[name]), "--force")
        assert added.exit_code == 0, added.output
        assert "tiny" in added.output and "RANDOM TINY MODEL" in added.output
        assert model_status(name).state == "tiny" and model_status(name).record.tiny
    assert run("list").output.count("RANDOM TINY MODEL (make-tiny)") == len(CORE)
    (tmp_path / "protocol.yaml").write_text(SEED_PROTOCOL)
    # the CLI shows stimgen's warnings as "warning: ..." lines (above the progress bar)
    result = CliRunner().invoke(main, ["build", str(tmp_path / "protocol.yaml"),
                                       "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "warning: USING RANDOM TINY MODELS for stylegan2_ffhq" in result.output
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["dry_run"] is True
    assert all(f["tiny"] for f in manifest["backend"]["model_files"])
    assert 'id="dry-run-warning"' in (tmp_path / "out" / "report.html").read_text()


def test_a_tiny_model_copied_into_the_cache_by_hand_is_found_out(home, tiny):
    import shutil

    from stimgen.backends.emostyle.models import model_files

    installed = home / "models" / "emonet_8.pth"
    installed.parent.mkdir(parents=True)
    shutil.copyfile(tiny["emonet_8"], installed)
    assert model_status("emonet_8").state == "present"      # no record yet
    assert model_files({"emonet_8": installed})[0]["tiny"] is True
    assert run("verify", "emonet_8").exit_code == 0
    assert model_status("emonet_8").state == "tiny"


def test_inspect_says_a_tiny_model_is_random(tiny):
    result = run("inspect", str(tiny["emonet_8"]))
    assert result.exit_code == 0 and "RANDOM TINY MODEL" in result.output
