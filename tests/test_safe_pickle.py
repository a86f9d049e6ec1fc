"""Restricted unpickling: plain data loads, anything that would run code is refused."""
from __future__ import annotations

import builtins
import io
import os
import pickle
import subprocess
from collections import OrderedDict

import numpy as np
import pytest
import torch

from stimgen.checkpoints.safe_pickle import (BASIC_GLOBALS, NUMPY_GLOBALS, TORCH_TENSOR_GLOBALS,
                                             CheckpointFormatError, UnsafePickleError,
                                             restricted_load)
from stimgen.errors import StimgenError

ALLOWED = {**BASIC_GLOBALS, **NUMPY_GLOBALS, **TORCH_TENSOR_GLOBALS}


def load_bytes(data: bytes, allowed=ALLOWED, **kwargs):
    return restricted_load(io.BytesIO(data), allowed, source="test.pkl", **kwargs)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_plain_data_tensors_and_arrays_round_trip(protocol):
    data = {
        "weight": torch.nn.Parameter(torch.randn(3, 2)),
        "view": torch.arange(10.0)[2:7],
        "gain": np.float64(0.125),
        "array": np.arange(6, dtype=np.float32).reshape(2, 3),
        "names": {"a", "b"},
        "hooks": OrderedDict(x=b"\x00\xff"),
    }
    loaded = load_bytes(pickle.dumps(data, protocol=protocol))
    assert isinstance(loaded["weight"], torch.nn.Parameter)
    assert torch.equal(loaded["weight"], data["weight"])
    assert torch.equal(loaded["view"], data["view"])
    assert loaded["gain"] == 0.125
    np.testing.assert_array_equal(loaded["array"], data["array"])
    assert loaded["names"] == {"a", "b"} and loaded["hooks"] == data["hooks"]


class _Reduce:
    """Pickles as a call ``func(*args)``: what a malicious checkpoint does."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize("func, args, name", [
    (os.system, ("touch {marker}",), "system"),
    (builtins.eval, ("open({marker!r}, 'w')",), "builtins.eval"),
    (builtins.exec, ("open({marker!r}, 'w')",), "builtins.exec"),
    (subprocess.check_output, (["touch", "{marker}"],), "subprocess.check_output"),
    (builtins.__import__, ("os",), "builtins.__import__"),
])
@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_code_running_globals_are_refused_before_running(tmp_path, func, args, name, protocol):
    marker = str(tmp_path / "ran")
    args = tuple([a.format(marker=marker) for a in x] if isinstance(x, list) else x.format(marker=marker)
                 for x in args)
    payload = {"state": OrderedDict(w=torch.ones(1)), "evil": _Reduce(func, *args)}
    with pytest.raises(UnsafePickleError) as caught:
        load_bytes(pickle.dumps(payload, protocol=protocol))
    assert name in str(caught.value) and "test.pkl" in str(caught.value)
    assert isinstance(caught.value, StimgenError)
    assert not os.path.exists(marker)


def test_refusal_names_the_file_it_came_from(tmp_path):
    path = tmp_path / "weights.pkl"
    path.write_bytes(pickle.dumps(_Reduce(os.system, "true")))
    with path.open("rb") as f, pytest.raises(UnsafePickleError, match="weights.pkl"):
        restricted_load(f, ALLOWED)


def test_only_the_given_allow_list_counts():
    with pytest.raises(UnsafePickleError, match="collections.OrderedDict"):
        load_bytes(pickle.dumps(OrderedDict(a=1)), allowed={})


def test_allow_list_values_replace_the_named_global():
    stand_in = dict
    loaded = load_bytes(pickle.dumps(OrderedDict(a=1), protocol=2),
                        allowed={("collections", "OrderedDict"): stand_in})
    assert type(loaded) is dict and loaded == {"a": 1}


def test_embedded_storage_bytes_go_through_the_weights_only_loader(tmp_path):
    marker = tmp_path / "ran"
    inner = pickle.dumps(_Reduce(os.system, f"touch {marker}"), protocol=2)
    outer = pickle.dumps(_Reduce(torch.storage._load_from_bytes, inner))
    with pytest.raises(UnsafePickleError, match="test.pkl"):
        load_bytes(outer)
    assert not marker.exists()


@pytest.mark.parametrize("data", [b"", b"not a pickle at all", pickle.dumps({"a": 1})[:-3]])
def test_truncated_or_foreign_files_are_format_errors(data):
    with pytest.raises(CheckpointFormatError, match="test.pkl"):
        load_bytes(data)


def test_latin1_python2_numpy_pickles():
    array = np.arange(4, dtype=np.float32)
    loaded = load_bytes(pickle.dumps({"conv1": array}, protocol=2), encoding="latin1")
    np.testing.assert_array_equal(loaded["conv1"], array)
