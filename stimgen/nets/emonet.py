"""EmoNet: the face-alignment network (FAN) and the emotion head EmoStyle rates faces with.

Owns ``FAN`` (stacked hourglasses -> 68 landmark heatmaps) and ``EmoNet`` (FAN features ->
valence, arousal, expression logits), with the published state-dict key names, and
:func:`ffhq_framing`, how EmoStyle shows FFHQ-aligned faces to EmoNet.

Reads top-down from small blocks to the full networks. Both follow face-analysis/emonet
and 1adrianb/face-alignment: every normalisation layer is a ``BatchNorm2d`` (EmoNet aliases
``InstanceNorm2d`` to it), so the published ``emonet_8.pth`` / ``emonet_5.pth`` (after
stripping their ``module.`` prefix) and face-alignment's ``2DFAN4`` state dicts load unchanged.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stimgen.landmarks import N_LANDMARKS

#: Side of the square RGB input, pixels.
INPUT_SIZE = 256
#: Side of each landmark heatmap, pixels (a quarter of the input).
HEATMAP_SIZE = 64
#: Expression classes of the published heads, in output order.
EXPRESSIONS = {
    8: ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt"),
    5: ("neutral", "happy", "sad", "surprise", "fear"),
}


def framing_box(side: int) -> tuple[int, int]:
    """First and last-plus-one row (and column) EmoStyle's framing keeps of a ``side``-pixel image.

    >>> framing_box(1024), framing_box(32)
    ((102, 921), (3, 28))
    """
    if side < 2:
        raise ValueError(f"side must be at least 2 pixels, got {side}")
    return int(0.1 * side), int(0.9 * side)


def ffhq_framing(images: torch.Tensor, size: int = INPUT_SIZE) -> torch.Tensor:
    """What EmoNet sees of FFHQ-aligned faces in EmoStyle: the central 80 %, nearest-resized.

    Keeps rows and columns ``int(0.1 n):int(0.9 n)`` of images [N, C, H, W] (any value
    range, any size) and resizes them to ``size`` x ``size`` with ``F.interpolate``'s default
    (nearest neighbour, no antialiasing), as EmoStyle's EmoNet wrapper (``preprocess`` in
    its models/emonet.py) does before every call: in training, personalisation and
    evaluation. Differentiable (the gradient reaches the sampled pixels).

    >>> ffhq_framing(torch.rand(2, 3, 1024, 1024)).shape
    torch.Size([2, 3, 256, 256])
    >>> x = torch.arange(10.0).view(1, 1, 1, 10).expand(1, 1, 10, 10)
    >>> ffhq_framing(x, size=8)[0, 0, 0].tolist()   # columns 1..8 kept
    [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    """
    if images.ndim != 4:
        raise ValueError(f"expected images shaped [N, C, H, W], got {tuple(images.shape)}")
    top, bottom = framing_box(images.shape[-2])
    left, right = framing_box(images.shape[-1])
    kept = images[:, :, top:bottom, left:right]
    return F.interpolate(kept, size=(size, size), mode="nearest")


def unframe_points(points: torch.Tensor, side: int, size: int = INPUT_SIZE) -> torch.Tensor:
    """Points [..., 2] (x, y) in pixels of an :func:`ffhq_framing` image -> pixels of the frame.

    ``side`` is the side of the image that was framed, ``size`` that of the framed image.
    Nearest-neighbour resizing reads output pixel ``j`` from input pixel ``floor(j * s)``
    (``s`` = kept pixels / ``size``), so a point moves to ``first kept + x * s``.

    >>> unframe_points(torch.tensor([[0.0, 128.0]]), 1024).tolist()
    [[102.0, 511.5]]
    """
    top, bottom = framing_box(side)
    return top + points * ((bottom - top) / size)


def check_images(images: torch.Tensor, size: int = INPUT_SIZE) -> None:
    """Raise ValueError unless ``images`` is a float [N, 3, size, size] batch."""
    if images.ndim != 4 or images.shape[1] != 3 or tuple(images.shape[2:]) != (size, size):
        raise ValueError(f"expected RGB images shaped [N, 3, {size}, {size}] in [0, 1], "
                         f"got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(f"expected float images in [0, 1], got dtype {images.dtype}")


# ----------------------------------------------------------------------------- blocks

class ConvBlock(nn.Module):
    """Pre-activation residual block whose output concatenates three 3x3 conv branches.

    Channels split out/2 + out/4 + out/4; a 1x1 projection matches the residual when
    ``in_planes != out_planes``.
    """

    def __init__(self,
                 in_planes: int,    # input channels
                 out_planes: int,   # output channels (divisible by 4)
                 ):
        super().__init__()
        half, quarter = out_planes // 2, out_planes // 4
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, half, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(half)
        self.conv2 = nn.Conv2d(half, quarter, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(quarter)
        self.conv3 = nn.Conv2d(quarter, quarter, 3, padding=1, bias=False)
        self.downsample = None
        if in_planes != out_planes:
            self.downsample = nn.Sequential(
                nn.BatchNorm2d(in_planes),
                nn.ReLU(),
                nn.Conv2d(in_planes, out_planes, 1, bias=False),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out1 = self.conv1(F.relu(self.bn1(x)))
        out2 = self.conv2(F.relu(self.bn2(out1)))
        out3 = self.conv3(F.relu(self.bn3(out2)))
        residual = x if self.downsample is None else self.downsample(x)
        return torch.cat((out1, out2, out3), dim=1) + residual


class HourGlass(nn.Module):
    """Recursive encoder-decoder: at each level a skip branch plus a pooled, deeper branch.

    Submodules are named ``b1_<level>`` (skip), ``b2_<level>`` (down), ``b3_<level>`` (up)
    and ``b2_plus_1`` (bottom), registered in the published checkpoints' order.
    """

    def __init__(self,
                 depth: int = 4,            # number of 2x downsamplings
                 num_features: int = 256,   # channels throughout
                 pool: str = "max",         # downsampling: "max" (EmoNet) or "avg" (FAN 1.x)
                 ):
        super().__init__()
        self.depth = depth
        self.pool = pool
        self.add_levels(depth, num_features)

    def add_levels(self, level: int, num_features: int) -> None:
        self.add_module(f"b1_{level}", ConvBlock(num_features, num_features))
        self.add_module(f"b2_{level}", ConvBlock(num_features, num_features))
        if level > 1:
            self.add_levels(level - 1, num_features)
        else:
            self.add_module("b2_plus_1", ConvBlock(num_features, num_features))
        self.add_module(f"b3_{level}", ConvBlock(num_features, num_features))

    def level(self, level: int, x: torch.Tensor) -> torch.Tensor:
        skip = self._modules[f"b1_{level}"](x)
        low = self._modules[f"b2_{level}"](downsample(x, self.pool))
        low = self.level(level - 1, low) if level > 1 else self._modules["b2_plus_1"](low)
        low = self._modules[f"b3_{level}"](low)
        return skip + F.interpolate(low, scale_factor=2, mode="nearest")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.level(self.depth, x)


def downsample(x: torch.Tensor, pool: str) -> torch.Tensor:
    """2x2, stride-2 max or average pooling."""
    return F.max_pool2d(x, 2, stride=2) if pool == "max" else F.avg_pool2d(x, 2, stride=2)


# ----------------------------------------------------------------------------- FAN

class FAN(nn.Module):
    """Face Alignment Network: stem + ``num_modules`` stacked hourglasses -> 68 heatmaps.

    ``num_modules=4`` is face-alignment's 2DFAN4; EmoNet embeds a FAN with 2 modules.
    ``pool`` is how the stem and the hourglasses downsample: EmoNet max-pools,
    face-alignment 1.x average-pools (its 2DFAN4 weights were trained that way).

    >>> fan = FAN(num_modules=1).eval()
    >>> fan(torch.rand(1, 3, 256, 256)).shape
    torch.Size([1, 68, 64, 64])
    """

    def __init__(self,
                 num_modules: int = 4,   # stacked hourglasses
                 pool: str = "avg",      # 2x downsampling: "avg" (face-alignment) or "max" (EmoNet)
                 width: int = 256,       # hourglass channels (published: 256; stem uses /4, /2)
                 ):
        super().__init__()
        if pool not in ("avg", "max"):
            raise ValueError(f"pool must be 'avg' or 'max', got {pool!r}")
        if width % 16:
            raise ValueError(f"width must be a multiple of 16, got {width}")
        self.num_modules = num_modules
        self.pool = pool
        self.width = width
        quarter, half = width // 4, width // 2
        self.conv1 = nn.Conv2d(3, quarter, 7, stride=2, padding=3)
        self.bn1 = nn.BatchNorm2d(quarter)
        self.conv2 = ConvBlock(quarter, half)
        self.conv3 = ConvBlock(half, half)
        self.conv4 = ConvBlock(half, width)
        for i in range(num_modules):
            self.add_module(f"m{i}", HourGlass(depth=4, num_features=width, pool=pool))
            self.add_module(f"top_m_{i}", ConvBlock(width, width))
            self.add_module(f"conv_last{i}", nn.Conv2d(width, width, 1))
            self.add_module(f"bn_end{i}", nn.BatchNorm2d(width))
            self.add_module(f"l{i}", nn.Conv2d(width, N_LANDMARKS, 1))
            if i < num_modules - 1:
                self.add_module(f"bl{i}", nn.Conv2d(width, width, 1))
                self.add_module(f"al{i}", nn.Conv2d(N_LANDMARKS, width, 1))

    def stem(self, images: torch.Tensor) -> torch.Tensor:
        """[N, 3, 256, 256] -> [N, 256, 64, 64] features entering the first hourglass."""
        x = F.relu(self.bn1(self.conv1(images)))
        x = downsample(self.conv2(x), self.pool)
        return self.conv4(self.conv3(x))

    def hourglasses(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Run the stack on stem features.

        Returns the per-module features (after the ``bl`` projection for all but the
        last module, as EmoNet consumes them) and the last module's heatmaps.
        """
        features, previous = [], x
        for i in range(self.num_modules):
            ll = self._modules[f"top_m_{i}"](self._modules[f"m{i}"](previous))
            ll = F.relu(self._modules[f"bn_end{i}"](self._modules[f"conv_last{i}"](ll)))
            heatmap = self._modules[f"l{i}"](ll)
            if i < self.num_modules - 1:
                ll = self._modules[f"bl{i}"](ll)
                previous = previous + ll + self._modules[f"al{i}"](heatmap)
            features.append(ll)
        return features, heatmap

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """RGB images in [0, 1], [N, 3, 256, 256] -> heatmaps [N, 68, 64, 64]."""
        check_images(images)
        _, heatmap = self.hourglasses(self.stem(images))
        return heatmap


# ----------------------------------------------------------------------------- EmoNet

class EmoNet(FAN):
    """EmoNet (Toisoul et al., Nature Machine Intelligence 2021): FAN-2 + emotion head.

    The emotion head sees the stem features and the hourglass features weighted by the
    summed landmark heatmaps (attention), and regresses ``n_expression`` logits followed
    by valence and arousal. Outputs are unbounded; clamp to [-1, 1] only when reporting.

    >>> net = EmoNet(n_expression=8).eval()
    >>> out = net(torch.rand(2, 3, 256, 256))
    >>> out["valence"].shape, out["expression"].shape, out["heatmap"].shape
    (torch.Size([2]), torch.Size([2, 8]), torch.Size([2, 68, 64, 64]))
    """

    def __init__(self,
                 n_expression: int = 8,  # expression classes: 8 (AffectNet-8) or 5
                 num_modules: int = 2,   # stacked hourglasses in the FAN backbone
                 n_blocks: int = 4,      # ConvBlock + 2x max-pool stages in the head
                 width: int = 256,       # backbone channels (published: 256; smaller for tiny models)
                 ):
        super().__init__(num_modules=num_modules, pool="max", width=width)
        self.n_expression = n_expression
        self.n_blocks = n_blocks
        self.conv1x1_input_emo_2 = nn.Conv2d(width * (num_modules + 1), width, 1)
        stages: list[nn.Module] = []
        for _ in range(n_blocks):
            stages += [ConvBlock(width, width), nn.MaxPool2d(2, 2)]
        self.emo_net_2 = nn.Sequential(*stages)
        self.emo_fc_2 = nn.Sequential(
            nn.Linear(width, width // 2), nn.BatchNorm1d(width // 2), nn.ReLU(),
            nn.Linear(width // 2, n_expression + 2),
        )

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """RGB images in [0, 1], [N, 3, 256, 256] -> dict of valence [N], arousal [N],
        expression logits [N, n_expression] and landmark heatmaps [N, 68, 64, 64]."""
        check_images(images)
        stem = self.stem(images)
        features, heatmap = self.hourglasses(stem)
        attention = heatmap.sum(dim=1, keepdim=True)
        emo_features = torch.cat([stem, torch.cat(features, dim=1) * attention], dim=1)
        x = self.emo_net_2(self.conv1x1_input_emo_2(emo_features))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)    # [N, width]: the head ends at 4x4
        scores = self.emo_fc_2(x)
        return {
            "valence": scores[:, -2],
            "arousal": scores[:, -1],
            "expression": scores[:, :-2],
            "heatmap": heatmap,
        }
