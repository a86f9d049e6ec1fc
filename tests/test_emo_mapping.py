"""EmoStyle emotion mapping: parity with the reference, published key layout, the edit."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from stimgen.nets.emo_mapping import EmoMappingW, EmoMappingWplus, edit_latents, num_styles_for
from stimgen.parity import state_dict_from_spec

FIXTURES = Path(__file__).parent / "data" / "parity"


@pytest.fixture(scope="module")
def parity():
    spec = json.loads((FIXTURES / "emo_mapping_wplus.json").read_text())
    mapping = EmoMappingWplus(**spec["constructor"]).eval()
    mapping.load_state_dict(state_dict_from_spec(spec["state_dict"]), strict=True)
    with np.load(FIXTURES / "emo_mapping_wplus.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    return mapping, arrays


def test_parity_with_reference_offsets(parity):
    mapping, ref = parity
    with torch.no_grad():
        delta = mapping(torch.from_numpy(ref["latents"]), torch.from_numpy(ref["emotions"]))
    np.testing.assert_allclose(delta.numpy(), ref["delta"], rtol=1e-3, atol=1e-5)


def test_edit_adds_the_offset(parity):
    mapping, ref = parity
    ws, va = torch.from_numpy(ref["latents"]), torch.from_numpy(ref["emotions"])
    with torch.no_grad():
        edited = edit_latents(mapping, ws, va)
    np.testing.assert_allclose(edited.numpy(), ref["latents"] + ref["delta"], rtol=1e-3, atol=1e-5)


def test_one_target_broadcasts_to_every_latent(parity):
    mapping, ref = parity
    ws = torch.from_numpy(ref["latents"])
    target = torch.tensor([0.6, -0.3])
    with torch.no_grad():
        shared = edit_latents(mapping, ws, target)
        explicit = edit_latents(mapping, ws, target.expand(len(ws), 2))
    assert torch.equal(shared, explicit)


def test_published_layout_has_18_layer_networks():
    mapping = EmoMappingWplus()
    keys = mapping.state_dict()
    assert mapping.num_styles == 18 and num_styles_for(256) == 14
    assert keys["latent_net.17.0.weight"].shape == (2048, 576)
    assert keys["latent_net.17.6.weight"].shape == (512, 512)
    assert keys["emotion_enc.2.weight"].shape == (64, 32)
    assert len(keys) == 4 + 18 * 8


def test_w_only_mapping_edits_every_layer_alike():
    torch.manual_seed(0)
    mapping = EmoMappingW(emotion_dim=8, latent_dim=16).eval()
    ws = torch.randn(3, 1, 16).repeat(1, 6, 1)
    with torch.no_grad():
        edited = edit_latents(mapping, ws, torch.tensor([[0.5, 0.5], [-1.0, 0.0], [0.0, 1.0]]))
        offset = mapping(ws[:, 0], torch.tensor([[0.5, 0.5], [-1.0, 0.0], [0.0, 1.0]]))
    assert torch.allclose(edited - ws, offset.unsqueeze(1).expand_as(ws))
    assert set(mapping.state_dict()) >= {"emotion_enc.0.weight", "latent_net.0.weight", "latent_net.6.bias"}


def test_shapes_are_checked_where_tensors_enter():
    mapping = EmoMappingWplus(size=16, emotion_dim=4, latent_dim=8)
    with pytest.raises(ValueError, match=r"latents has shape \[2, 5, 8\], expected \[\*, 6, 8\]"):
        mapping(torch.zeros(2, 5, 8), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="emotions"):
        mapping(torch.zeros(2, 6, 8), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="valence_arousal"):
        edit_latents(mapping, torch.zeros(2, 6, 8), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="power of two"):
        EmoMappingWplus(size=1000)
