"""Loaders for the EmoStyle mapping, EmoNet and VGGFace2 files: formats, parity, refusals."""
from __future__ import annotations

import builtins
import os
import pickle
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from stimgen.checkpoints.safe_pickle import CheckpointFormatError, UnsafePickleError
from stimgen.checkpoints.torch_files import (
    emo_mapping_config, load_emo_mapping, load_emonet, load_vggface2,
)
from stimgen.nets.emo_mapping import EmoMappingW, EmoMappingWplus
from stimgen.nets.emonet import EmoNet
from stimgen.nets.vggface2 import ResNet50Face
from stimgen.parity import read_fixture, state_dict_from_spec

PARITY = Path(__file__).parent / "data" / "parity"


def same_state(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ----------------------------------------------------------------------------- EmoStyle mapping

def test_emo_mapping_training_checkpoint_loads_with_its_size(tmp_path):
    torch.manual_seed(0)
    mapping = EmoMappingWplus(size=8, emotion_dim=8, latent_dim=32)
    optimizer = torch.optim.Adam(mapping.parameters())
    path = tmp_path / "emo_mapping_wplus_2.pt"
    torch.save({"epoch": 3, "emo_mapping_state_dict": mapping.state_dict(),
                "generator_optimizer_state_dict": optimizer.state_dict()}, path)
    loaded = load_emo_mapping(path)
    assert isinstance(loaded, EmoMappingWplus) and not loaded.training
    assert loaded.init_kwargs == {"size": 8, "emotion_dim": 8, "latent_dim": 32}
    assert same_state(loaded, mapping)
    ws, va = torch.randn(2, 4, 32), torch.tensor([[0.5, -0.2], [-1.0, 1.0]])
    torch.testing.assert_close(loaded(ws, va), mapping.eval()(ws, va))


def test_published_mapping_config_is_read_off_the_keys():
    spec = read_fixture(PARITY, "emo_mapping_wplus").state_spec
    shapes = {k: torch.empty(0).new_empty(v["shape"]) for k, v in spec.items()}
    assert emo_mapping_config(shapes) == {"variant": "wplus", "size": 1024, "emotion_dim": 64,
                                          "latent_dim": 512, "num_ws": 18}


def test_w_only_mapping_as_bare_state_dict(tmp_path):
    mapping = EmoMappingW(emotion_dim=8, latent_dim=32)
    torch.save(mapping.state_dict(), tmp_path / "emo_mapping_w.pt")
    loaded = load_emo_mapping(tmp_path / "emo_mapping_w.pt")
    assert isinstance(loaded, EmoMappingW) and same_state(loaded, mapping)


# ----------------------------------------------------------------------------- EmoNet

@pytest.mark.slow
def test_emonet_parity_fixture_through_the_published_file_format(tmp_path):
    fixture = read_fixture(PARITY, "emonet8")
    state = state_dict_from_spec(fixture.state_spec)
    torch.save({f"module.{k}": v for k, v in state.items()}, tmp_path / "emonet_8.pth")
    net = load_emonet(tmp_path / "emonet_8.pth")
    assert net.init_kwargs == {"n_expression": 8, "num_modules": 2, "n_blocks": 4}
    with torch.no_grad():
        out = net(torch.from_numpy(fixture.arrays["image_uint8"]).float() / 255)
    for key in ("valence", "arousal", "expression"):
        assert np.allclose(out[key].numpy(), fixture.arrays[key], rtol=1e-3, atol=1e-5), key


def test_emonet_5_head_is_detected(tmp_path):
    net = EmoNet(n_expression=5, num_modules=1, n_blocks=1)
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, tmp_path / "emonet_5.pth")
    loaded = load_emonet(tmp_path / "emonet_5.pth")
    assert loaded.n_expression == 5 and same_state(loaded, net)


def test_incomplete_emonet_is_refused_with_the_missing_keys(tmp_path):
    state = EmoNet(n_expression=8, num_modules=1, n_blocks=1).state_dict()
    del state["conv1.weight"]
    torch.save(state, tmp_path / "emonet_8.pth")
    with pytest.raises(CheckpointFormatError, match=r"1 weight\(s\) of EmoNet .*conv1.weight"):
        load_emonet(tmp_path / "emonet_8.pth")


# ----------------------------------------------------------------------------- VGGFace2

def test_vggface2_numpy_pickle_loads_without_batch_counters(tmp_path):
    net = ResNet50Face(num_classes=10, layers=(1, 1, 1, 1))
    arrays = {k: v.numpy() for k, v in net.state_dict().items()
              if not k.endswith("num_batches_tracked")}
    with open(tmp_path / "resnet50_ft_weight.pkl", "wb") as handle:
        pickle.dump(arrays, handle, protocol=2)
    loaded = load_vggface2(tmp_path / "resnet50_ft_weight.pkl")
    assert loaded.init_kwargs == {"num_classes": 10, "layers": (1, 1, 1, 1)}
    assert all(torch.equal(loaded.state_dict()[k], torch.from_numpy(v)) for k, v in arrays.items())


# ----------------------------------------------------------------------------- refusals

class Payload:
    """Pickles as a call of ``func(*args)``: what a malicious checkpoint would do."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def attacks(marker: Path):
    command = f"touch {marker}"
    return {
        "os.system": Payload(os.system, command),
        "eval": Payload(builtins.eval, f"open({str(marker)!r}, 'w')"),
        "exec": Payload(builtins.exec, f"open({str(marker)!r}, 'w')"),
        "subprocess": Payload(subprocess.call, ["touch", str(marker)]),
        "__import__": Payload(builtins.__import__, "antigravity"),
    }


@pytest.mark.parametrize("attack", ["os.system", "eval", "exec", "subprocess", "__import__"])
def test_torch_files_that_run_code_are_refused(tmp_path, attack):
    marker = tmp_path / "pwned"
    path = tmp_path / "emonet_8.pth"
    torch.save({"module.conv1.weight": torch.zeros(1), "x": attacks(marker)[attack]}, path)
    with pytest.raises(UnsafePickleError, match="refused to load") as err:
        load_emonet(path)
    assert str(path) in err.value.message
    assert not marker.exists()


@pytest.mark.parametrize("attack", ["os.system", "eval", "exec", "subprocess", "__import__"])
def test_numpy_pickles_that_run_code_are_refused(tmp_path, attack):
    marker = tmp_path / "pwned"
    path = tmp_path / "resnet50_ft_weight.pkl"
    with open(path, "wb") as handle:
        pickle.dump({"conv1.weight": np.zeros(1), "x": attacks(marker)[attack]}, handle, protocol=2)
    with pytest.raises(UnsafePickleError, match="not on the allow-list"):
        load_vggface2(path)
    assert not marker.exists()


def test_truncated_file_is_a_format_error(tmp_path):
    path = tmp_path / "emonet_8.pth"
    torch.save(EmoNet(n_expression=8, num_modules=1, n_blocks=1).state_dict(), path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointFormatError, match="not a readable torch checkpoint"):
        load_emonet(path)
