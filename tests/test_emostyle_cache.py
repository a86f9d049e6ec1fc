"""Identity cache: keys, hits, misses, and damaged entries detected and dropped."""
from __future__ import annotations

import doctest
import io
import json
from collections import OrderedDict

import pytest
import torch

from stimgen.backends.emostyle import cache
from stimgen.backends.emostyle.cache import (
    CacheWarning, entry_dir, identities_dir, identity_cache_key, load_cached, store_cached)
from stimgen.storage import sha256_bytes

SETTINGS = {"resolution": 32, "inversion_steps": 500, "personalization": {"steps": 500, "lr": 3e-4}}
MODELS = {"stylegan2_ffhq": "a" * 64, "emostyle_mapping": "b" * 64}


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("STIMGEN_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def payload() -> dict:
    torch.manual_seed(0)
    return {"ws": torch.randn(8, 64),
            "synthesis": {"b4.const": torch.randn(32, 4, 4), "b8.conv0.weight": torch.randn(4, 4, 3, 3)},
            "landmarks": torch.rand(68, 2) * 32, "steps": 500, "source": "p01.jpg", "warnings": []}


def key() -> str:
    return identity_cache_key(b"photo bytes", SETTINGS, MODELS)


def test_key_depends_on_photo_settings_and_models():
    assert len(key()) == 64 and key() == identity_cache_key(b"photo bytes", dict(SETTINGS), dict(MODELS))
    assert key() == identity_cache_key(b"photo bytes", SETTINGS, dict(reversed(MODELS.items())))
    others = {
        identity_cache_key(b"photo bytez", SETTINGS, MODELS),
        identity_cache_key(b"photo bytes", {**SETTINGS, "inversion_steps": 499}, MODELS),
        identity_cache_key(b"photo bytes", SETTINGS, {**MODELS, "stylegan2_ffhq": "c" * 64}),
    }
    assert len(others) == 3 and key() not in others


def test_settings_must_be_plain_data():
    with pytest.raises(TypeError, match="plain JSON data"):
        identity_cache_key(b"x", {"weights": torch.zeros(1)}, MODELS)


def test_miss_then_hit(home):
    assert load_cached(key()) is None
    path = store_cached(key(), payload())
    assert path == identities_dir() / key() / "payload.pt" and path.is_relative_to(home)

    loaded = load_cached(key())

    expected = payload()
    assert set(loaded) == set(expected)
    assert torch.equal(loaded["ws"], expected["ws"])
    assert torch.equal(loaded["synthesis"]["b8.conv0.weight"], expected["synthesis"]["b8.conv0.weight"])
    assert loaded["steps"] == 500 and loaded["source"] == "p01.jpg"
    assert loaded["ws"].device.type == "cpu"


def test_store_replaces_an_entry(home):
    store_cached(key(), {"ws": torch.zeros(2)})
    store_cached(key(), {"ws": torch.ones(2)})
    assert torch.equal(load_cached(key())["ws"], torch.ones(2))


def test_corrupted_payload_is_detected_and_removed(home):
    path = store_cached(key(), payload())
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))

    with pytest.warns(CacheWarning, match="damaged"):
        assert load_cached(key()) is None
    assert not entry_dir(key()).exists()
    store_cached(key(), payload())                  # recomputed and stored again
    assert load_cached(key()) is not None


def test_interrupted_store_is_a_miss(home):
    path = store_cached(key(), payload())
    (path.parent / "entry.json").unlink()          # killed before the entry was committed
    with pytest.warns(CacheWarning):
        assert load_cached(key()) is None


def test_unsafe_pickle_is_never_executed(home):
    folder = entry_dir(key())
    folder.mkdir(parents=True)
    buffer = io.BytesIO()
    torch.save({"ws": torch.zeros(2), "order": OrderedDict(a=1), "evil": Exploit()}, buffer)
    data = buffer.getvalue()
    (folder / "payload.pt").write_bytes(data)
    (folder / "entry.json").write_text(json.dumps({"format": cache.CACHE_FORMAT,
                                                   "sha256": sha256_bytes(data)}))
    with pytest.warns(CacheWarning, match="damaged"):
        assert load_cached(key()) is None
    assert not Exploit.ran


class Exploit:
    ran = False

    def __reduce__(self):
        return (Exploit._run, ())

    @staticmethod
    def _run():
        Exploit.ran = True


def test_payload_must_be_loadable_safely(home):
    import numpy as np
    with pytest.raises(TypeError, match=r"payload\['ws'\] is a ndarray"):
        store_cached(key(), {"ws": np.zeros(3)})
    assert not entry_dir(key()).exists()


@pytest.mark.parametrize("bad", ["../../etc", "ABC", "a" * 63, "g" * 64])
def test_keys_are_digests(home, bad):
    with pytest.raises(ValueError, match="sha256 hex digest"):
        load_cached(bad)


def test_explicit_home(tmp_path):
    path = store_cached(key(), {"ws": torch.zeros(1)}, home=tmp_path)
    assert path == tmp_path / "cache" / "identities" / key() / "payload.pt"
    assert load_cached(key(), home=tmp_path)["ws"].shape == (1,)


def test_docstring_examples():
    assert doctest.testmod(cache).failed == 0
