"""The model registry, the cache location, install records and require_weights."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import warnings

import pytest

from stimgen.errors import WeightsMissingError
from stimgen.weights import registry
from stimgen.weights.registry import (
    STAGES, UNKNOWN_SHA256, TinyWeightsWarning, UnknownModelError, get_model, load_registry,
    make_record, model_status, models_dir, models_for_stages, read_records, require_weights,
    save_record, state_of, stimgen_home,
)


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("STIMGEN_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def install(home, name, data=b"weights", *, tiny=False):
    """Put a file in the cache and record it, as fetch/add would."""
    entry = get_model(name)
    directory = models_dir(home)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / entry.file
    path.write_bytes(data)
    save_record(directory, name, make_record(path, hashlib.sha256(data).hexdigest(), "test",
                                             tiny=tiny))
    return path


def test_registry_lists_the_published_checkpoints_with_licences():
    entries = {e.name: e for e in load_registry()}
    assert {"stylegan2_ffhq", "emostyle_mapping", "emonet_8", "emonet_5",
            "vggface2_resnet50", "fan_2d"} <= set(entries)
    assert entries["stylegan2_ffhq"].file == "ffhq.pkl"
    assert "NVIDIA Source Code License-NC" in entries["stylegan2_ffhq"].license
    assert entries["emostyle_mapping"].file == "emo_mapping_wplus_2.pt"
    assert "Azari" in entries["emostyle_mapping"].citation
    assert entries["emonet_8"].license.startswith("CC BY-NC-ND 4.0")
    assert "Toisoul" in entries["emonet_8"].citation
    assert entries["vggface2_resnet50"].file == "resnet50_ft_weight.pkl"
    assert entries["fan_2d"].license.startswith("BSD-3-Clause")
    assert len({e.file for e in entries.values()}) == len(entries)
    for entry in entries.values():
        assert entry.urls and all(u.startswith("https://") for u in entry.urls)
        assert entry.license and entry.citation and set(entry.needed_by) <= set(STAGES)


def test_unpublished_sha256_reads_as_recorded_on_first_fetch():
    entry = get_model("emonet_8")
    assert entry.sha256 is None
    assert entry.sha256_display == UNKNOWN_SHA256
    # face-alignment publishes the first digits of the sha256 in the file name
    assert get_model("fan_2d").file.split("-")[1].startswith(get_model("fan_2d").sha256_prefix)


def test_every_stage_is_covered_and_stage_lookup_filters():
    assert {s for e in load_registry() for s in e.needed_by} == set(STAGES)
    # faces are found by the MTCNN that ships with stimgen: no stage needs S3FD
    assert [e.name for e in models_for_stages(["align"])] == ["fan_2d"]
    assert get_model("s3fd").needed_by == ()
    assert "stylegan2_ffhq" in [e.name for e in models_for_stages(["edit"])]
    with pytest.raises(ValueError, match="unknown stages"):
        models_for_stages(["paint"])


def test_unknown_model_suggests_the_closest_name():
    with pytest.raises(UnknownModelError, match="unknown model 'emonet8'") as err:
        get_model("emonet8")
    assert "emonet_8" in err.value.hint


def test_cache_location_honours_stimgen_home_then_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("STIMGEN_HOME", str(tmp_path / "lab"))
    assert models_dir() == tmp_path / "lab" / "models"
    monkeypatch.delenv("STIMGEN_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert stimgen_home() == tmp_path / "xdg" / "stimgen"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert stimgen_home() == registry.Path.home() / ".cache" / "stimgen"


def test_records_round_trip_and_are_written_atomically(home):
    path = install(home, "emonet_8")
    directory = models_dir(home)
    records = read_records(directory)
    assert records["emonet_8"].sha256 == hashlib.sha256(b"weights").hexdigest()
    assert json.loads((directory / "verified.json").read_text())["models"]["emonet_8"]["file"] == path.name
    assert not [p for p in directory.iterdir() if p.name.endswith(".tmp")]
    save_record(directory, "emonet_8", None)
    assert read_records(directory) == {}


def test_states_follow_the_file_and_its_record(home):
    entry = get_model("emonet_8")
    path = models_dir(home) / entry.file
    assert state_of(entry, path, None) == "missing"
    install(home, "emonet_8", b"abc")
    record = read_records(models_dir(home))["emonet_8"]
    assert state_of(entry, path, None) == "present"
    assert state_of(entry, path, record) == "recorded"
    digest = record.sha256
    assert state_of(dataclasses.replace(entry, sha256=digest), path, record) == "verified"
    assert state_of(dataclasses.replace(entry, sha256="0" * 64), path, record) == "mismatch"
    assert state_of(dataclasses.replace(entry, sha256_prefix=digest[:10]), path, record) == "verified"
    path.write_bytes(b"abcd")  # changed since recorded: must be re-hashed
    assert state_of(entry, path, record) == "present"


def test_require_weights_names_every_missing_file_its_source_and_licence(home):
    install(home, "emonet_8")
    with pytest.raises(WeightsMissingError) as err:
        require_weights(["stylegan2_ffhq", "emonet_8", "emostyle_mapping"])
    text = err.value.render()
    assert "2 model file(s)" in text
    assert "ffhq.pkl" in text and "emo_mapping_wplus_2.pt" in text and "emonet_8.pth" not in text
    assert get_model("stylegan2_ffhq").urls[0] in text
    assert "NVIDIA Source Code License-NC" in text
    assert "stimgen models fetch stylegan2_ffhq emostyle_mapping" in text
    assert "stimgen models add NAME PATH" in text


def test_require_weights_returns_paths_and_warns_about_tiny_models(home):
    real = install(home, "emonet_8")
    tiny = install(home, "fan_2d", tiny=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert require_weights(["emonet_8"]) == {"emonet_8": real}
    with pytest.warns(TinyWeightsWarning, match="RANDOM TINY MODELS for fan_2d"):
        paths = require_weights(["emonet_8", "fan_2d"])
    assert paths == {"emonet_8": real, "fan_2d": tiny}
    assert model_status("fan_2d").state == "tiny"
    assert os.path.isfile(paths["fan_2d"])


def test_one_loader_table_serves_inspect_and_the_emostyle_backend(monkeypatch, tmp_path):
    import torch

    from stimgen.backends.emostyle import models
    from stimgen.checkpoints import loaders
    from stimgen.weights import inspect

    assert {entry.kind for entry in load_registry()} == set(loaders.KINDS)
    loaded = []

    def fake_load(path):
        loaded.append(path)
        return torch.nn.Linear(1, 1)

    monkeypatch.setitem(loaders.KINDS, "emonet", loaders.CheckpointKind("EmoNet", fake_load))
    monkeypatch.setattr(models, "_NETWORKS", {})
    path = tmp_path / "emonet_8.pth"
    path.write_bytes(b"not read by the fake loader")
    models.load_network("emonet_8", path, torch.device("cpu"))
    inspect.load_checkpoint(path, kind="emonet")
    assert loaded == [path, path]


def test_defect8_the_emostyle_mapping_records_weights_plus_adam_moments():
    from stimgen.nets.emo_mapping import EmoMappingWplus

    entry = get_model("emostyle_mapping")
    weights = sum(p.numel() for p in EmoMappingWplus(size=1024, emotion_dim=64,
                                                     latent_dim=512).parameters())
    assert entry.size_min_bytes == 3 * 4 * weights == 878_569_344   # weights + 2 moments
    assert "Adam" in entry.size_note and "0.88 GB" in entry.size_note
    assert entry.size_bytes is None and entry.sha256 is None        # not published: unknown
