"""NVIDIA persistence-format pickles: our generator is rebuilt from them, their code never runs."""
from __future__ import annotations

import copy
import io
import json
import os
import pickle
import sys
import types
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from stimgen.checkpoints.nvidia import (PersistentObject, generator_from_record,
                                        load_stylegan2_pickle, read_network_pickle,
                                        write_stylegan2_pickle)
from stimgen.checkpoints.safe_pickle import CheckpointFormatError, UnsafePickleError
from stimgen.nets.stylegan2 import Generator
from stimgen.parity import state_dict_from_spec

FIXTURES = Path(__file__).parent / "data" / "parity"


def tiny_generator(**synthesis_kwargs) -> Generator:
    torch.manual_seed(0)
    G = Generator(z_dim=16, c_dim=0, w_dim=16, img_resolution=16, img_channels=3,
                  mapping_kwargs=dict(num_layers=2),
                  synthesis_kwargs=dict(channel_base=128, channel_max=16, num_fp16_res=1,
                                        conv_clamp=256, **synthesis_kwargs)).eval()
    with torch.no_grad():
        G.mapping.w_avg.normal_()
        G.synthesis.b16.conv1.noise_strength.fill_(0.3)
    return G


def images(G: Generator, seed: int = 1) -> torch.Tensor:
    z = torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return G.synthesis(G.mapping(z, None, truncation_psi=0.7), noise_mode="const")


# --- A stand-in for NVIDIA's code, to write pickles exactly as its persistence module does ----

class EasyDict(dict):
    """Pickled under NVIDIA's name, as the kwargs in real checkpoints are."""


EasyDict.__module__, EasyDict.__qualname__ = "dnnlib.util", "EasyDict"


def install_nvidia_modules(monkeypatch, reconstruct):
    """Make ``torch_utils.persistence`` and ``dnnlib.util`` importable, as in NVIDIA's repo."""
    persistence = types.ModuleType("torch_utils.persistence")
    reconstruct.__module__, reconstruct.__qualname__ = "torch_utils.persistence", "_reconstruct_persistent_obj"
    persistence._reconstruct_persistent_obj = reconstruct
    util = types.ModuleType("dnnlib.util")
    util.EasyDict = EasyDict
    for name, module in [("torch_utils", types.ModuleType("torch_utils")),
                         ("torch_utils.persistence", persistence),
                         ("dnnlib", types.ModuleType("dnnlib")), ("dnnlib.util", util)]:
        monkeypatch.setitem(sys.modules, name, module)


def executing_reconstruct(meta):
    """What NVIDIA's loader does first: run the stored module source."""
    exec(meta["module_src"], {})  # noqa: S102 - the point of the control experiment
    return None


def nvidia_pickle_bytes(G: Generator, module_src: str, monkeypatch) -> bytes:
    """``{'G': ..., 'G_ema': ..., ...}`` pickled as NVIDIA's persistent classes pickle themselves.

    Each network becomes ``_reconstruct_persistent_obj(meta)`` with its full ``__dict__`` as
    state (torch internals included), EasyDict kwargs and numpy-scalar gains, as in ffhq.pkl.
    """
    install_nvidia_modules(monkeypatch, executing_reconstruct)

    class NvidiaPickler(pickle.Pickler):
        def reducer_override(self, obj):
            if not isinstance(obj, torch.nn.Module):
                return NotImplemented
            state = {k: (np.float64(v) if isinstance(v, float) else v) for k, v in obj.__dict__.items()}
            state["_init_args"] = ()
            state["_init_kwargs"] = EasyDict()
            if isinstance(obj, Generator):
                kwargs = obj.init_kwargs
                state["_init_kwargs"] = EasyDict(kwargs, mapping_kwargs=EasyDict(kwargs["mapping_kwargs"]),
                                                 synthesis_kwargs=EasyDict(kwargs["synthesis_kwargs"]))
            meta = dict(type="class", version=6, module_src=module_src,
                        class_name=type(obj).__name__, state=state)
            return sys.modules["torch_utils.persistence"]._reconstruct_persistent_obj, (meta,)

    buffer = io.BytesIO()
    NvidiaPickler(buffer, protocol=4).dump({
        "G": copy.deepcopy(G), "G_ema": G, "D": None, "augment_pipe": None,
        "training_set_kwargs": EasyDict(path="ffhq.zip", resolution=G.img_resolution),
    })
    return buffer.getvalue()


def marker_source(marker: Path) -> str:
    return f"open({str(marker)!r}, 'w').write('module_src was executed')\n"


# --- Tests -----------------------------------------------------------------------------------

def test_nvidia_written_pickle_loads_without_running_module_src(tmp_path, monkeypatch):
    marker = tmp_path / "module_src_ran"
    G = tiny_generator()
    path = tmp_path / "ffhq.pkl"
    path.write_bytes(nvidia_pickle_bytes(G, marker_source(marker), monkeypatch))
    monkeypatch.undo()  # NVIDIA's modules gone: we load without them
    assert "torch_utils.persistence" not in sys.modules

    loaded = load_stylegan2_pickle(path)

    assert not marker.exists()
    assert isinstance(loaded, Generator) and not loaded.training
    assert loaded.init_kwargs == G.init_kwargs
    assert torch.equal(images(loaded), images(G))


def test_control_a_naive_loader_would_run_that_module_src(tmp_path, monkeypatch):
    marker = tmp_path / "module_src_ran"
    data = nvidia_pickle_bytes(tiny_generator(), marker_source(marker), monkeypatch)
    pickle.loads(data)  # with NVIDIA's loader installed: exactly what we must never do
    assert marker.exists()


def test_write_then_load_round_trip_keeps_every_tensor_and_config(tmp_path):
    G = tiny_generator(architecture="resnet")
    path = write_stylegan2_pickle(tmp_path / "tiny.pkl", G)
    loaded = load_stylegan2_pickle(path)
    assert loaded.init_kwargs == G.init_kwargs
    for (name, ours), (_, theirs) in zip(G.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(ours, theirs), name
    assert not list(tmp_path.glob("*.partial"))
    assert "torch_utils" not in sys.modules


def test_written_pickle_uses_the_persistence_format(tmp_path):
    path = write_stylegan2_pickle(tmp_path / "tiny.pkl", tiny_generator(), key="G")
    data = read_network_pickle(path)
    record = data["G"]
    assert isinstance(record, PersistentObject) and record.class_name == "Generator"
    assert record.version == 6 and "never run" in record.module_src
    assert record.children()["synthesis"].class_name == "SynthesisNetwork"
    assert record.init_kwargs["img_resolution"] == 16


def test_parity_fixture_survives_the_pickle(tmp_path):
    spec = json.loads((FIXTURES / "stylegan2_ada.json").read_text())
    G = Generator(**spec["constructor"]).eval()
    G.load_state_dict(state_dict_from_spec(spec["state_dict"]), strict=True)
    loaded = load_stylegan2_pickle(write_stylegan2_pickle(tmp_path / "ffhq.pkl", G))
    with np.load(FIXTURES / "stylegan2_ada.npz") as ref, torch.no_grad():
        out = loaded.synthesis(torch.from_numpy(ref["ws_plus"]), noise_mode="const", force_fp32=True)
        np.testing.assert_allclose(out.numpy(), ref["images_plus"], rtol=1e-3, atol=1e-5)


class _Reduce:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def test_code_hidden_in_a_network_state_is_refused(tmp_path, monkeypatch):
    marker = tmp_path / "ran"
    install_nvidia_modules(monkeypatch, executing_reconstruct)
    meta = dict(type="class", version=6, module_src="", class_name="Generator",
                state={"_init_kwargs": {}, "hook": _Reduce(os.system, f"touch {marker}")})
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"G_ema": _Reduce(executing_reconstruct, meta)}))
    monkeypatch.undo()
    with pytest.raises(UnsafePickleError, match=r"evil\.pkl.*(posix|os)\.system"):
        load_stylegan2_pickle(path)
    assert not marker.exists()


def test_missing_key_lists_what_the_file_holds(tmp_path):
    path = write_stylegan2_pickle(tmp_path / "tiny.pkl", tiny_generator(), key="G")
    with pytest.raises(CheckpointFormatError, match=r"no network under 'G_ema'; found \['G'\]"):
        load_stylegan2_pickle(path)


def test_mismatched_tensors_are_a_format_error(tmp_path):
    path = write_stylegan2_pickle(tmp_path / "tiny.pkl", tiny_generator())
    data = read_network_pickle(path)
    record = data["G_ema"]
    del record.children()["mapping"].state["_buffers"]["w_avg"]
    with pytest.raises(CheckpointFormatError, match="missing.*mapping.w_avg"):
        generator_from_record(record)


def test_not_a_generator_and_not_a_file(tmp_path):
    path = tmp_path / "d.pkl"
    path.write_bytes(pickle.dumps({"G_ema": OrderedDict(a=1)}))
    with pytest.raises(CheckpointFormatError, match="expected a StyleGAN2 Generator"):
        load_stylegan2_pickle(path)
    with pytest.raises(CheckpointFormatError, match="no such file"):
        load_stylegan2_pickle(tmp_path / "absent.pkl")
