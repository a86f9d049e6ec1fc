"""StyleGAN2-ADA generator: mapping z -> W (with truncation) and synthesis W+ -> image.

Owns the generator EmoStyle edits, in plain PyTorch with NVIDIA's state-dict key names and
constructor arguments, so that the published ``ffhq.pkl`` loads unchanged (see
:mod:`stimgen.checkpoints.nvidia`).

Reads top-down from the low-level operations (FIR up-sampling, bias + activation, modulated
convolution) to the full :class:`Generator`. The operations compute what NVIDIA's CUDA
kernels compute, without a compiled extension; they work in fp32, in fp16 (the
``num_fp16_res`` highest resolutions on CUDA) and under ``torch.autocast``.

Example
-------
>>> G = Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=32, img_channels=3,
...               synthesis_kwargs=dict(channel_base=2048, channel_max=64)).eval()
>>> ws = G.mapping(torch.randn(2, 512), None, truncation_psi=0.7)
>>> G.synthesis(ws, noise_mode="const").shape
torch.Size([2, 3, 32, 32])
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "Generator",
    "MappingNetwork",
    "SynthesisNetwork",
    "SynthesisBlock",
    "SynthesisLayer",
    "ToRGBLayer",
    "FullyConnectedLayer",
    "Conv2dLayer",
    "NOISE_MODES",
    "setup_filter",
    "upfirdn2d",
    "upsample2d",
    "bias_act",
    "conv2d_resample",
    "modulated_conv2d",
]

#: How per-pixel noise is drawn: the stored ``noise_const`` buffers, fresh noise, or none.
NOISE_MODES = ("const", "random", "none")

#: Activation name -> (function of (x, alpha), default alpha, default gain), as in NVIDIA's bias_act.
_ACTIVATIONS = {
    "linear":   (lambda x, a: x,                         0.0, 1.0),
    "relu":     (lambda x, a: F.relu(x),                 0.0, math.sqrt(2)),
    "lrelu":    (lambda x, a: F.leaky_relu(x, a),        0.2, math.sqrt(2)),
    "tanh":     (lambda x, a: torch.tanh(x),             0.0, 1.0),
    "sigmoid":  (lambda x, a: torch.sigmoid(x),          0.0, 1.0),
    "elu":      (lambda x, a: F.elu(x),                  0.0, 1.0),
    "selu":     (lambda x, a: F.selu(x),                 0.0, 1.0),
    "softplus": (lambda x, a: F.softplus(x),             0.0, 1.0),
    "swish":    (lambda x, a: torch.sigmoid(x) * x,      0.0, math.sqrt(2)),
}


def assert_shape(tensor: torch.Tensor, shape: Sequence[int | None], name: str = "tensor") -> None:
    """Check ``tensor.shape`` against ``shape``; ``None`` entries match any size."""
    ok = tensor.ndim == len(shape) and all(s is None or s == t for s, t in zip(shape, tensor.shape))
    if not ok:
        expected = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
        raise ValueError(f"{name} has shape {list(tensor.shape)}, expected {expected}")


def _activation(name: str):
    if name not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; known: {', '.join(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]


# --- Low-level operations --------------------------------------------------------------------

def setup_filter(f: Sequence[float] | torch.Tensor | None, normalize: bool = True,
                 gain: float = 1.0) -> torch.Tensor:
    """A 2-D FIR filter from 1-D taps (outer product), normalised to sum to ``gain``.

    1-D filters of 8 or more taps stay 1-D and are applied separably, as in NVIDIA's code.
    """
    f = torch.as_tensor(1.0 if f is None else f, dtype=torch.float32)
    f = f.reshape(1) if f.ndim == 0 else f
    if f.ndim == 1 and f.numel() < 8:
        f = torch.outer(f, f)
    if normalize:
        f = f / f.sum()
    return f * (gain ** (f.ndim / 2))


def _filter_size(f: torch.Tensor | None) -> tuple[int, int]:
    """(width, height) of a filter; 1-D filters are square when applied separably."""
    if f is None:
        return 1, 1
    return int(f.shape[-1]), int(f.shape[0])


def upfirdn2d(x: torch.Tensor, f: torch.Tensor | None, up: int = 1, down: int = 1,
              padding: Sequence[int] = (0, 0, 0, 0), flip_filter: bool = False,
              gain: float = 1.0) -> torch.Tensor:
    """Upsample by zero insertion, pad (or crop), FIR-filter, then downsample by decimation.

    ``padding`` is ``(x0, x1, y0, y1)`` pixels added (negative: removed) at left, right,
    top, bottom after upsampling. Input and output are ``[N, C, H, W]``.
    """
    assert_shape(x, [None, None, None, None], "upfirdn2d input")
    n, c, h, w = x.shape
    px0, px1, py0, py1 = padding
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    if up > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0): x.shape[2] - max(-py1, 0), max(-px0, 0): x.shape[3] - max(-px1, 0)]

    f = (f * (gain ** (f.ndim / 2))).to(device=x.device, dtype=x.dtype)
    if not flip_filter:  # conv2d correlates; a true convolution flips the filter
        f = f.flip(list(range(f.ndim)))
    f = f[None, None].repeat([c, 1] + [1] * f.ndim)
    if f.ndim == 4:
        x = F.conv2d(x, f, groups=c)
    else:
        x = F.conv2d(x, f.unsqueeze(2), groups=c)
        x = F.conv2d(x, f.unsqueeze(3), groups=c)
    return x[:, :, ::down, ::down]


def upsample2d(x: torch.Tensor, f: torch.Tensor, up: int = 2) -> torch.Tensor:
    """FIR-filtered upsampling by ``up``, preserving the mean (gain ``up**2``)."""
    fw, fh = _filter_size(f)
    padding = [(fw + up - 1) // 2, (fw - up) // 2, (fh + up - 1) // 2, (fh - up) // 2]
    return upfirdn2d(x, f, up=up, padding=padding, gain=up * up)


def bias_act(x: torch.Tensor, b: torch.Tensor | None = None, act: str = "linear",
             alpha: float | None = None, gain: float | None = None,
             clamp: float | None = None) -> torch.Tensor:
    """Add a per-channel bias (channel axis 1), apply ``act``, scale by ``gain``, clamp to ±clamp."""
    func, default_alpha, default_gain = _activation(act)
    if b is not None:
        assert_shape(b, [x.shape[1]], "bias")
        x = x + b.to(x.dtype).reshape([1, -1] + [1] * (x.ndim - 2))
    x = func(x, default_alpha if alpha is None else alpha)
    gain = default_gain if gain is None else gain
    if gain != 1:
        x = x * gain
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


def conv2d_resample(x: torch.Tensor, w: torch.Tensor, f: torch.Tensor | None = None,
                    up: int = 1, padding: int = 0, groups: int = 1,
                    flip_weight: bool = True) -> torch.Tensor:
    """2-D convolution, optionally of the input upsampled by ``up`` with FIR filter ``f``.

    ``padding`` is relative to the upsampled image. ``flip_weight=True`` is correlation (as
    ``torch.nn.functional.conv2d``), ``False`` a true convolution. Upsampling runs as a
    strided transposed convolution followed by the filter, never at full resolution.
    """
    out_channels, in_per_group, kh, kw = w.shape
    if up == 1:
        w = w if flip_weight else w.flip([2, 3])
        return F.conv2d(x, w, padding=padding, groups=groups)

    fw, fh = _filter_size(f)
    if kh == 1 and kw == 1:  # convolve at low resolution, then upsample
        x = F.conv2d(x, w if flip_weight else w.flip([2, 3]), groups=groups)
        pad = [padding + (fw + up - 1) // 2, padding + (fw - up) // 2,
               padding + (fh + up - 1) // 2, padding + (fh - up) // 2]
        return upfirdn2d(x, f, up=up, padding=pad, gain=up * up)

    px0 = padding + (fw + up - 1) // 2 - (kw - 1)
    px1 = padding + (fw - up) // 2 - (kw - up)
    py0 = padding + (fh + up - 1) // 2 - (kh - 1)
    py1 = padding + (fh - up) // 2 - (kh - up)
    pxt, pyt = max(min(-px0, -px1), 0), max(min(-py0, -py1), 0)
    # conv_transpose2d wants [in, out/groups, kh, kw] per group; it already convolves, so a
    # correlation (flip_weight=True) needs the kernel flipped.
    w = w.reshape(groups, out_channels // groups, in_per_group, kh, kw).transpose(1, 2)
    w = w.reshape(groups * in_per_group, out_channels // groups, kh, kw)
    w = w.flip([2, 3]) if flip_weight else w
    x = F.conv_transpose2d(x, w, stride=up, padding=[pyt, pxt], groups=groups)
    return upfirdn2d(x, f, padding=[px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt], gain=up * up)


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Scale each vector to unit root-mean-square along ``dim``."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor,
                     noise: torch.Tensor | None = None, up: int = 1, padding: int = 0,
                     resample_filter: torch.Tensor | None = None, demodulate: bool = True,
                     flip_weight: bool = True, fused_modconv: bool = True) -> torch.Tensor:
    """StyleGAN2 convolution: weights scaled per sample by ``styles``, then demodulated.

    ``x`` [N, I, H, W], ``weight`` [O, I, k, k], ``styles`` [N, I]; ``noise`` broadcasts
    onto the output. ``fused_modconv`` runs one grouped convolution with per-sample weights
    (inference); otherwise the input and output are scaled around a shared convolution.
    """
    batch_size = x.shape[0]
    out_channels, in_channels, kh, kw = weight.shape
    assert_shape(x, [batch_size, in_channels, None, None], "modulated_conv2d input")
    assert_shape(styles, [batch_size, in_channels], "styles")

    if x.dtype == torch.float16 and demodulate:  # keep fp16 intermediates in range
        weight = weight * (1 / math.sqrt(in_channels * kh * kw)
                           / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)

    w = dcoefs = None
    if demodulate or fused_modconv:
        w = weight.unsqueeze(0) * styles.reshape(batch_size, 1, -1, 1, 1)  # [N, O, I, k, k]
    if demodulate:
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()  # [N, O]

    if not fused_modconv:
        x = x * styles.to(x.dtype).reshape(batch_size, -1, 1, 1)
        x = conv2d_resample(x, weight.to(x.dtype), resample_filter, up=up, padding=padding,
                            flip_weight=flip_weight)
        if demodulate:
            x = x * dcoefs.to(x.dtype).reshape(batch_size, -1, 1, 1)
        return x if noise is None else x + noise.to(x.dtype)

    if demodulate:
        w = w * dcoefs.reshape(batch_size, -1, 1, 1, 1)
    x = x.reshape(1, -1, *x.shape[2:])
    w = w.reshape(-1, in_channels, kh, kw)
    x = conv2d_resample(x, w.to(x.dtype), resample_filter, up=up, padding=padding,
                        groups=batch_size, flip_weight=flip_weight)
    x = x.reshape(batch_size, -1, *x.shape[2:])
    return x if noise is None else x + noise.to(x.dtype)


# --- Layers ------------------------------------------------------------------------------------

class FullyConnectedLayer(nn.Module):
    """Dense layer with equalized learning rate: weights stored at unit scale, scaled at run time."""

    def __init__(self,
                 in_features: int,           # Number of input features.
                 out_features: int,          # Number of output features.
                 bias: bool = True,          # Add a bias after the matrix product?
                 activation: str = "linear", # Activation name, see _ACTIVATIONS.
                 lr_multiplier: float = 1.0, # Learning-rate multiplier (scales weight and bias).
                 bias_init: float = 0.0,     # Initial value of the bias.
                 ):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert_shape(x, [None, self.in_features], f"{type(self).__name__} input")
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
            b = b * self.bias_gain if self.bias_gain != 1 else b
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, act=self.activation)


class Conv2dLayer(nn.Module):
    """Convolution with equalized learning rate and optional 2x upsampling (the resnet skip path)."""

    def __init__(self,
                 in_channels: int,                 # Number of input channels.
                 out_channels: int,                # Number of output channels.
                 kernel_size: int,                 # Width and height of the kernel.
                 bias: bool = True,                # Add a bias after the convolution?
                 activation: str = "linear",       # Activation name, see _ACTIVATIONS.
                 up: int = 1,                      # Integer upsampling factor.
                 resample_filter: Sequence[float] = (1, 3, 3, 1),  # Low-pass filter taps for upsampling.
                 conv_clamp: float | None = None,  # Clamp the output to +-X, None = no clamping.
                 channels_last: bool = False,      # Store the weight in channels_last format?
                 ):
        super().__init__()
        self.activation = activation
        self.up = up
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size ** 2)
        self.act_gain = _activation(activation)[2]
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size])
                                   .to(memory_format=memory_format))
        self.bias = nn.Parameter(torch.zeros([out_channels])) if bias else None

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        w = (self.weight * self.weight_gain).to(x.dtype)
        x = conv2d_resample(x, w, self.resample_filter, up=self.up, padding=self.padding,
                            flip_weight=(self.up == 1))
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias, act=self.activation, gain=self.act_gain * gain, clamp=clamp)


class MappingNetwork(nn.Module):
    """z (and optional class label c) -> w, broadcast to ``num_ws`` copies, truncated toward ``w_avg``."""

    def __init__(self,
                 z_dim: int,                          # Input latent (Z) dimensionality, 0 = no latent.
                 c_dim: int,                          # Conditioning label (C) dimensionality, 0 = no label.
                 w_dim: int,                          # Intermediate latent (W) dimensionality.
                 num_ws: int | None,                  # Number of ws to output, None = do not broadcast.
                 num_layers: int = 8,                 # Number of mapping layers.
                 embed_features: int | None = None,   # Label embedding size, None = w_dim.
                 layer_features: int | None = None,   # Hidden layer size, None = w_dim.
                 activation: str = "lrelu",           # Activation of the mapping layers.
                 lr_multiplier: float = 0.01,         # Learning-rate multiplier of the mapping layers.
                 w_avg_beta: float | None = 0.995,    # Decay of the tracked mean of W, None = do not track.
                 ):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.num_ws = num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta
        embed_features = 0 if c_dim == 0 else (w_dim if embed_features is None else embed_features)
        layer_features = w_dim if layer_features is None else layer_features
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for idx in range(num_layers):
            setattr(self, f"fc{idx}", FullyConnectedLayer(features[idx], features[idx + 1],
                                                          activation=activation,
                                                          lr_multiplier=lr_multiplier))
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z: torch.Tensor | None, c: torch.Tensor | None, truncation_psi: float = 1,
                truncation_cutoff: int | None = None, skip_w_avg_update: bool = False) -> torch.Tensor:
        """Map ``z`` [N, z_dim] (and ``c`` [N, c_dim]) to ws [N, num_ws, w_dim].

        ``truncation_psi`` < 1 pulls the first ``truncation_cutoff`` ws (all when None)
        toward ``w_avg``: ``w_avg + psi * (w - w_avg)``.
        """
        x = None
        if self.z_dim > 0:
            assert_shape(z, [None, self.z_dim], "z")
            x = normalize_2nd_moment(z.to(torch.float32))
        if self.c_dim > 0:
            assert_shape(c, [None, self.c_dim], "c")
            y = normalize_2nd_moment(self.embed(c.to(torch.float32)))
            x = y if x is None else torch.cat([x, y], dim=1)
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)

        if self.w_avg_beta is not None and self.training and not skip_w_avg_update:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        if self.num_ws is not None:
            x = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            if self.w_avg_beta is None:
                raise ValueError("truncation needs w_avg, which this mapping network does not track")
            w_avg = self.w_avg.to(x.dtype)
            if self.num_ws is None or truncation_cutoff is None:
                x = w_avg.lerp(x, truncation_psi)
            else:
                head = w_avg.lerp(x[:, :truncation_cutoff], truncation_psi)
                x = torch.cat([head, x[:, truncation_cutoff:]], dim=1)
        return x


class SynthesisLayer(nn.Module):
    """Modulated 3x3 convolution (optionally upsampling 2x) + noise + bias + activation."""

    def __init__(self,
                 in_channels: int,                 # Number of input channels.
                 out_channels: int,                # Number of output channels.
                 w_dim: int,                       # Intermediate latent (W) dimensionality.
                 resolution: int,                  # Output resolution, pixels.
                 kernel_size: int = 3,             # Convolution kernel size.
                 up: int = 1,                      # Integer upsampling factor.
                 use_noise: bool = True,           # Add per-pixel noise?
                 activation: str = "lrelu",        # Activation name, see _ACTIVATIONS.
                 resample_filter: Sequence[float] = (1, 3, 3, 1),  # Low-pass filter taps for upsampling.
                 conv_clamp: float | None = None,  # Clamp the output to +-X, None = no clamping.
                 channels_last: bool = False,      # Store the weight in channels_last format?
                 ):
        super().__init__()
        self.resolution = resolution
        self.up = up
        self.use_noise = use_noise
        self.activation = activation
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.act_gain = _activation(activation)[2]

        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size])
                                   .to(memory_format=memory_format))
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "random",
                fused_modconv: bool = True, gain: float = 1.0) -> torch.Tensor:
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        in_resolution = self.resolution // self.up
        assert_shape(x, [None, self.weight.shape[1], in_resolution, in_resolution],
                     "SynthesisLayer input")
        styles = self.affine(w)

        noise = None
        if self.use_noise and noise_mode == "random":
            noise = torch.randn([x.shape[0], 1, self.resolution, self.resolution],
                                device=x.device) * self.noise_strength
        if self.use_noise and noise_mode == "const":
            noise = self.noise_const * self.noise_strength

        x = modulated_conv2d(x, self.weight, styles, noise=noise, up=self.up, padding=self.padding,
                             resample_filter=self.resample_filter, flip_weight=(self.up == 1),
                             fused_modconv=fused_modconv)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias, act=self.activation, gain=self.act_gain * gain, clamp=clamp)


class ToRGBLayer(nn.Module):
    """Modulated 1x1 convolution (no demodulation) from features to image channels."""

    def __init__(self,
                 in_channels: int,                 # Number of input channels.
                 out_channels: int,                # Number of image channels.
                 w_dim: int,                       # Intermediate latent (W) dimensionality.
                 kernel_size: int = 1,             # Convolution kernel size.
                 conv_clamp: float | None = None,  # Clamp the output to +-X, None = no clamping.
                 channels_last: bool = False,      # Store the weight in channels_last format?
                 ):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size])
                                   .to(memory_format=memory_format))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size ** 2)

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused_modconv: bool = True) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused_modconv=fused_modconv)
        return bias_act(x, self.bias, clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution of the synthesis network: (upsampling conv0) + conv1 (+ toRGB / skip)."""

    def __init__(self,
                 in_channels: int,                 # Input channels, 0 = first block (learned constant).
                 out_channels: int,                # Output channels.
                 w_dim: int,                       # Intermediate latent (W) dimensionality.
                 resolution: int,                  # Resolution of this block, pixels.
                 img_channels: int,                # Number of output image channels.
                 is_last: bool,                    # Is this the last block?
                 architecture: str = "skip",       # 'orig', 'skip' or 'resnet'.
                 resample_filter: Sequence[float] = (1, 3, 3, 1),  # Low-pass filter taps for upsampling.
                 conv_clamp: float | None = None,  # Clamp conv outputs to +-X, None = no clamping.
                 use_fp16: bool = False,           # Compute in fp16 on CUDA (unless force_fp32)?
                 fp16_channels_last: bool = False, # Use channels_last memory format with fp16?
                 **layer_kwargs: Any,              # Passed to SynthesisLayer (use_noise, activation, ...).
                 ):
        if architecture not in ("orig", "skip", "resnet"):
            raise ValueError(f"architecture must be 'orig', 'skip' or 'resnet', got {architecture!r}")
        super().__init__()
        self.in_channels = in_channels
        self.w_dim = w_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.is_last = is_last
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.channels_last = use_fp16 and fp16_channels_last
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.num_conv = 0
        self.num_torgb = 0

        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim=w_dim, resolution=resolution,
                                        up=2, resample_filter=resample_filter, conv_clamp=conv_clamp,
                                        channels_last=self.channels_last, **layer_kwargs)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim=w_dim, resolution=resolution,
                                    conv_clamp=conv_clamp, channels_last=self.channels_last,
                                    **layer_kwargs)
        self.num_conv += 1
        if is_last or architecture == "skip":
            self.torgb = ToRGBLayer(out_channels, img_channels, w_dim=w_dim, conv_clamp=conv_clamp,
                                    channels_last=self.channels_last)
            self.num_torgb += 1
        if in_channels != 0 and architecture == "resnet":
            self.skip = Conv2dLayer(in_channels, out_channels, kernel_size=1, bias=False, up=2,
                                    resample_filter=resample_filter, channels_last=self.channels_last)

    def compute_dtype(self, device: torch.device, force_fp32: bool) -> torch.dtype:
        """fp16 for ``use_fp16`` blocks on CUDA; fp32 otherwise (CPU always takes the fp32 path)."""
        fp16 = self.use_fp16 and not force_fp32 and device.type == "cuda"
        return torch.float16 if fp16 else torch.float32

    def forward(self, x: torch.Tensor | None, img: torch.Tensor | None, ws: torch.Tensor,
                force_fp32: bool = False, fused_modconv: bool | None = None,
                **layer_kwargs: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        assert_shape(ws, [None, self.num_conv + self.num_torgb, self.w_dim], "block ws")
        w_iter = iter(ws.unbind(dim=1))
        dtype = self.compute_dtype(ws.device, force_fp32)
        channels_last = self.channels_last and dtype == torch.float16
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if fused_modconv is None:
            fused_modconv = (not self.training) and (dtype == torch.float32 or ws.shape[0] == 1)

        if self.in_channels == 0:
            x = self.const.to(dtype=dtype, memory_format=memory_format)
            x = x.unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
        else:
            half = self.resolution // 2
            assert_shape(x, [None, self.in_channels, half, half], "block input")
            x = x.to(dtype=dtype, memory_format=memory_format)

        if self.in_channels == 0:
            x = self.conv1(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)
        elif self.architecture == "resnet":
            y = self.skip(x, gain=math.sqrt(0.5))
            x = self.conv0(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)
            x = self.conv1(x, next(w_iter), fused_modconv=fused_modconv, gain=math.sqrt(0.5),
                           **layer_kwargs)
            x = y + x
        else:
            x = self.conv0(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)
            x = self.conv1(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)

        if img is not None:
            half = self.resolution // 2
            assert_shape(img, [None, self.img_channels, half, half], "block image")
            img = upsample2d(img, self.resample_filter)
        if self.is_last or self.architecture == "skip":
            y = self.torgb(x, next(w_iter), fused_modconv=fused_modconv)
            y = y.to(dtype=torch.float32, memory_format=torch.contiguous_format)
            img = y if img is None else img + y
        return x, img


class SynthesisNetwork(nn.Module):
    """W+ (one w per layer) -> image, through blocks from 4x4 up to ``img_resolution``."""

    def __init__(self,
                 w_dim: int,                  # Intermediate latent (W) dimensionality.
                 img_resolution: int,         # Output image resolution, a power of two >= 4.
                 img_channels: int,           # Number of output color channels.
                 channel_base: int = 32768,   # Overall multiplier for the number of channels.
                 channel_max: int = 512,      # Maximum number of channels in any layer.
                 num_fp16_res: int = 0,       # Use fp16 for the N highest resolutions (on CUDA).
                 **block_kwargs: Any,         # Passed to SynthesisBlock.
                 ):
        if img_resolution < 4 or img_resolution & (img_resolution - 1):
            raise ValueError(f"img_resolution must be a power of two >= 4, got {img_resolution}")
        super().__init__()
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_resolution_log2 = int(math.log2(img_resolution))
        self.img_channels = img_channels
        self.block_resolutions = [2 ** i for i in range(2, self.img_resolution_log2 + 1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        fp16_resolution = max(2 ** (self.img_resolution_log2 + 1 - num_fp16_res), 8)

        self.num_ws = 0
        for res in self.block_resolutions:
            is_last = res == img_resolution
            block = SynthesisBlock(channels[res // 2] if res > 4 else 0, channels[res], w_dim=w_dim,
                                   resolution=res, img_channels=img_channels, is_last=is_last,
                                   use_fp16=res >= fp16_resolution, **block_kwargs)
            self.num_ws += block.num_conv + (block.num_torgb if is_last else 0)
            setattr(self, f"b{res}", block)

    def blocks(self) -> list[SynthesisBlock]:
        """The synthesis blocks from 4x4 to full resolution."""
        return [getattr(self, f"b{res}") for res in self.block_resolutions]

    def forward(self, ws: torch.Tensor, **block_kwargs: Any) -> torch.Tensor:
        """Synthesize images [N, img_channels, R, R] (about [-1, 1]) from ws [N, num_ws, w_dim].

        Keyword arguments: ``noise_mode`` ('const', 'random', 'none'), ``force_fp32``,
        ``fused_modconv``.
        """
        assert_shape(ws, [None, self.num_ws, self.w_dim], "ws")
        ws = ws.to(torch.float32)
        x = img = None
        w_idx = 0
        for block in self.blocks():
            # Consecutive blocks share one w: a block's toRGB uses the next block's first w.
            block_ws = ws.narrow(1, w_idx, block.num_conv + block.num_torgb)
            w_idx += block.num_conv
            x, img = block(x, img, block_ws, **block_kwargs)
        return img


class Generator(nn.Module):
    """StyleGAN2-ADA generator: ``mapping`` (z -> ws) followed by ``synthesis`` (ws -> image)."""

    def __init__(self,
                 z_dim: int,                                # Input latent (Z) dimensionality.
                 c_dim: int,                                # Conditioning label (C) dimensionality, 0 = none.
                 w_dim: int,                                # Intermediate latent (W) dimensionality.
                 img_resolution: int,                       # Output resolution, pixels.
                 img_channels: int,                         # Number of output color channels.
                 mapping_kwargs: Mapping[str, Any] = {},    # Arguments for MappingNetwork.
                 synthesis_kwargs: Mapping[str, Any] = {},  # Arguments for SynthesisNetwork.
                 **kw: Any,                                 # More SynthesisNetwork arguments.
                 ):
        super().__init__()
        synthesis_kwargs = {**synthesis_kwargs, **kw}
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        #: The constructor arguments, as plain data (what a checkpoint stores to rebuild us).
        self.init_kwargs = dict(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, img_resolution=img_resolution,
                                img_channels=img_channels, mapping_kwargs=dict(mapping_kwargs),
                                synthesis_kwargs=dict(synthesis_kwargs))
        self.synthesis = SynthesisNetwork(w_dim=w_dim, img_resolution=img_resolution,
                                          img_channels=img_channels, **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws,
                                      **mapping_kwargs)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None, truncation_psi: float = 1,
                truncation_cutoff: int | None = None, **synthesis_kwargs: Any) -> torch.Tensor:
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, **synthesis_kwargs)
