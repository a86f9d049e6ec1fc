"""StyleGAN2-ADA generator: parity with NVIDIA's reference, configurations, precision, noise."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stimgen.nets.stylegan2 import (Generator, bias_act, conv2d_resample, modulated_conv2d,
                                    setup_filter, upfirdn2d, upsample2d)
from stimgen.parity import state_dict_from_spec

FIXTURES = Path(__file__).parent / "data" / "parity"
TOLERANCE = dict(rtol=1e-3, atol=1e-5)


def small_generator(resolution: int = 32, **synthesis_kwargs) -> Generator:
    kwargs = dict(channel_base=512, channel_max=32, **synthesis_kwargs)
    torch.manual_seed(0)
    return Generator(z_dim=32, c_dim=0, w_dim=32, img_resolution=resolution, img_channels=3,
                     mapping_kwargs=dict(num_layers=2), synthesis_kwargs=kwargs).eval()


def with_noise_and_w_avg(G: Generator) -> Generator:
    """Random weights leave noise_strength and w_avg at zero; make them matter."""
    with torch.no_grad():
        for name, param in G.named_parameters():
            if name.endswith("noise_strength"):
                param.fill_(0.5)
        G.mapping.w_avg.normal_()
    return G


@pytest.fixture(scope="module")
def parity():
    spec = json.loads((FIXTURES / "stylegan2_ada.json").read_text())
    G = Generator(**spec["constructor"]).eval()
    G.load_state_dict(state_dict_from_spec(spec["state_dict"]), strict=True)
    with np.load(FIXTURES / "stylegan2_ada.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    return G, spec, arrays


def test_parity_with_reference_mapping_and_synthesis(parity):
    G, spec, ref = parity
    assert G.num_ws == spec["num_ws"]
    with torch.no_grad():
        ws = G.mapping(torch.from_numpy(ref["z"]), None, truncation_psi=float(ref["truncation_psi"]))
        images = G.synthesis(ws, noise_mode="const", force_fp32=True)
        images_plus = G.synthesis(torch.from_numpy(ref["ws_plus"]), noise_mode="const", force_fp32=True)
    np.testing.assert_allclose(ws.numpy(), ref["ws"], **TOLERANCE)
    np.testing.assert_allclose(images.numpy(), ref["images"], **TOLERANCE)
    np.testing.assert_allclose(images_plus.numpy(), ref["images_plus"], **TOLERANCE)


def test_state_dict_keys_are_nvidias(parity):
    G, spec, _ = parity
    ours = {k: list(v.shape) for k, v in G.state_dict().items()}
    assert ours == {k: s["shape"] for k, s in spec["state_dict"].items()}


def test_training_mode_unfused_modconv_matches_fused_inference(parity):
    G, _, ref = parity
    ws = torch.from_numpy(ref["ws_plus"])
    with torch.no_grad():
        fused = G.synthesis(ws, noise_mode="const")
        unfused = G.synthesis(ws, noise_mode="const", fused_modconv=False)
    np.testing.assert_allclose(unfused.numpy(), fused.numpy(), rtol=1e-4, atol=1e-4)


def test_ffhq_configuration_has_18_ws_and_fp16_on_the_four_top_resolutions():
    G = Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=1024, img_channels=3,
                  synthesis_kwargs=dict(channel_base=32768, channel_max=512, num_fp16_res=4,
                                        conv_clamp=256))
    assert G.num_ws == 18
    fp16 = [b.resolution for b in G.synthesis.blocks() if b.use_fp16]
    assert fp16 == [128, 256, 512, 1024]
    assert G.synthesis.b1024.conv1.weight.shape == (32, 32, 3, 3)  # 32768 // 1024
    assert G.synthesis.b4.const.shape == (512, 4, 4)


@pytest.mark.parametrize("resolution, channels, architecture", [
    (64, 3, "skip"), (16, 1, "skip"), (32, 3, "orig"), (32, 3, "resnet"), (8, 4, "skip"),
])
def test_other_resolutions_channels_and_architectures(resolution, channels, architecture):
    G = Generator(z_dim=16, c_dim=0, w_dim=24, img_resolution=resolution, img_channels=channels,
                  mapping_kwargs=dict(num_layers=2),
                  synthesis_kwargs=dict(channel_base=256, channel_max=16, num_fp16_res=2,
                                        architecture=architecture)).eval()
    assert G.num_ws == 2 * int(np.log2(resolution)) - 2
    with torch.no_grad():
        images = G(torch.randn(3, 16), None, truncation_psi=0.5, noise_mode="none")
    assert images.shape == (3, channels, resolution, resolution)
    assert images.dtype == torch.float32 and torch.isfinite(images).all()


def test_class_conditional_mapping():
    G = Generator(z_dim=16, c_dim=5, w_dim=16, img_resolution=8, img_channels=3,
                  mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=64, channel_max=8))
    assert "mapping.embed.weight" in G.state_dict()
    ws = G.mapping(torch.randn(2, 16), torch.eye(5)[:2])
    assert ws.shape == (2, G.num_ws, 16)


def test_truncation_pulls_ws_toward_w_avg():
    G = with_noise_and_w_avg(small_generator())
    z = torch.randn(4, 32)
    with torch.no_grad():
        free = G.mapping(z, None)
        collapsed = G.mapping(z, None, truncation_psi=0)
        half = G.mapping(z, None, truncation_psi=0.5)
        cut = G.mapping(z, None, truncation_psi=0, truncation_cutoff=3)
    w_avg = G.mapping.w_avg
    assert torch.allclose(collapsed, w_avg.expand_as(collapsed))
    assert torch.allclose(half, w_avg + 0.5 * (free - w_avg), atol=1e-6)
    assert torch.allclose(cut[:, :3], w_avg.expand(4, 3, -1)) and torch.equal(cut[:, 3:], free[:, 3:])


def test_noise_modes():
    G = with_noise_and_w_avg(small_generator())
    ws = G.mapping(torch.randn(2, 32), None)
    with torch.no_grad():
        const_a, const_b = (G.synthesis(ws, noise_mode="const") for _ in range(2))
        random_a, random_b = (G.synthesis(ws, noise_mode="random") for _ in range(2))
        none = G.synthesis(ws, noise_mode="none")
        for name, param in G.named_parameters():
            if name.endswith("noise_strength"):
                param.zero_()
        unscaled = G.synthesis(ws, noise_mode="const")
    assert torch.equal(const_a, const_b)
    assert not torch.allclose(random_a, random_b)
    assert not torch.allclose(const_a, none)
    assert torch.allclose(none, unscaled)
    with pytest.raises(ValueError, match="noise_mode"):
        G.synthesis(ws, noise_mode="fixed")


def test_wrong_ws_shape_is_named():
    G = small_generator()
    with pytest.raises(ValueError, match=r"ws has shape \[2, 3, 32\], expected \[\*, 8, 32\]"):
        G.synthesis(torch.zeros(2, 3, 32))
    with pytest.raises(ValueError, match="z has shape"):
        G.mapping(torch.zeros(2, 31), None)


def test_fp16_blocks_follow_num_fp16_res_and_take_the_fp32_path_on_cpu():
    G = small_generator(num_fp16_res=2)
    flags = {b.resolution: b.use_fp16 for b in G.synthesis.blocks()}
    assert flags == {4: False, 8: False, 16: True, 32: True}
    b32 = G.synthesis.b32
    assert b32.compute_dtype(torch.device("cuda"), force_fp32=False) == torch.float16
    assert b32.compute_dtype(torch.device("cuda"), force_fp32=True) == torch.float32
    assert b32.compute_dtype(torch.device("cpu"), force_fp32=False) == torch.float32
    ws = G.mapping(torch.randn(2, 32), None)
    with torch.no_grad():
        default, forced = G.synthesis(ws, noise_mode="const"), G.synthesis(ws, noise_mode="const", force_fp32=True)
    assert default.dtype == torch.float32 and torch.equal(default, forced)


def test_fp16_modulated_conv_prenormalisation_matches_fp32():
    torch.manual_seed(1)
    x, weight, styles = torch.randn(2, 8, 6, 6), torch.randn(4, 8, 3, 3) * 30, torch.randn(2, 8) * 30
    ref = modulated_conv2d(x, weight, styles, padding=1)
    half = modulated_conv2d(x.half(), weight, styles, padding=1)
    assert half.dtype == torch.float16
    np.testing.assert_allclose(half.float().numpy(), ref.numpy(), rtol=2e-2, atol=2e-2)


def test_autocast_bfloat16_on_cpu_runs_close_to_fp32():
    G = with_noise_and_w_avg(small_generator(num_fp16_res=2, conv_clamp=256))
    ws = G.mapping(torch.randn(2, 32), None)
    with torch.no_grad():
        ref = G.synthesis(ws, noise_mode="const")
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = G.synthesis(ws, noise_mode="const")
    assert low.dtype == torch.float32  # images accumulate in fp32 whatever the layers ran in
    assert torch.isfinite(low).all()
    assert (low - ref).abs().mean() < 0.05 * ref.abs().mean()


def test_gradients_reach_weights_and_ws_for_finetuning():
    G = small_generator().train()
    ws = G.mapping(torch.randn(2, 32), None).detach().requires_grad_(True)
    G.synthesis(ws, noise_mode="const").square().mean().backward()
    assert ws.grad is not None and ws.grad.abs().sum() > 0
    assert G.synthesis.b32.conv1.weight.grad.abs().sum() > 0


# --- operations ------------------------------------------------------------------------------

def zero_insert(x: torch.Tensor, up: int) -> torch.Tensor:
    n, c, h, w = x.shape
    out = torch.zeros(n, c, h * up, w * up, dtype=x.dtype)
    out[:, :, ::up, ::up] = x
    return out


@pytest.mark.parametrize("kernel, flip_weight, groups", [(3, False, 1), (3, True, 1), (3, False, 2), (1, False, 1)])
def test_upsampling_conv_equals_filter_then_convolve(kernel, flip_weight, groups):
    """The transposed-convolution fast path equals the textbook definition."""
    torch.manual_seed(2)
    x, w = torch.randn(2, 4, 5, 5), torch.randn(6, 4 // groups, kernel, kernel)
    f = setup_filter([1, 3, 3, 1])
    padding = kernel // 2
    ours = conv2d_resample(x, w, f, up=2, padding=padding, groups=groups, flip_weight=flip_weight)
    # Textbook: zero-insert, pad for the filter and the kernel, FIR filter (gain 4), convolve.
    fw = f.shape[0]
    p0, p1 = padding + (fw + 1) // 2, padding + (fw - 2) // 2
    up = upfirdn2d(x, f, up=2, padding=[p0, p1, p0, p1], gain=4)
    kernel_w = w if flip_weight else w.flip([2, 3])
    expected = F.conv2d(up, kernel_w, groups=groups)
    assert ours.shape == (2, 6, 10, 10)
    np.testing.assert_allclose(ours.numpy(), expected.numpy(), rtol=1e-4, atol=1e-4)


def test_upsample2d_keeps_flat_images_flat_inside():
    img = torch.full((1, 3, 8, 8), 0.7)
    up = upsample2d(img, setup_filter([1, 3, 3, 1]))
    assert up.shape == (1, 3, 16, 16)
    assert torch.allclose(up[:, :, 2:-2, 2:-2], torch.full_like(up[:, :, 2:-2, 2:-2], 0.7))


def test_upfirdn2d_separable_filter_equals_2d_filter():
    x = torch.randn(1, 2, 9, 9)
    taps = torch.tensor([1.0, 2, 3, 4, 4, 3, 2, 1])
    separable = setup_filter(taps)
    assert separable.ndim == 1
    full = torch.outer(separable, separable)
    np.testing.assert_allclose(upfirdn2d(x, separable, padding=[3, 4, 3, 4]).numpy(),
                               upfirdn2d(x, full, padding=[3, 4, 3, 4]).numpy(), rtol=1e-5, atol=1e-6)


def test_bias_act_lrelu_gain_and_clamp():
    x = torch.tensor([[-10.0, 1.0, 100.0]]).reshape(1, 3, 1, 1)
    out = bias_act(x, torch.tensor([0.0, 1.0, 0.0]), act="lrelu", clamp=50)
    expected = torch.tensor([-2.0 * 2 ** 0.5, 2 * 2 ** 0.5, 50.0])
    assert torch.allclose(out.flatten(), expected)
    with pytest.raises(ValueError, match="unknown activation"):
        bias_act(x, act="gelu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fp16_and_bf16_on_cuda_close_to_fp32(parity):
    G, _, ref = parity
    G = G.cuda()
    ws = torch.from_numpy(ref["ws_plus"]).cuda()
    with torch.no_grad():
        fp32 = G.synthesis(ws, noise_mode="const", force_fp32=True)
        fp16 = G.synthesis(ws, noise_mode="const")
        with torch.autocast("cuda", dtype=torch.bfloat16):
            bf16 = G.synthesis(ws, noise_mode="const")
    for low in (fp16, bf16):
        assert low.dtype == torch.float32
        assert (low - fp32).abs().mean() < 0.05 * fp32.abs().mean()
