"""VGGFace2 ResNet-50: the identity embedder EmoStyle's identity loss and our checks use.

Owns the Caffe-converted ResNet-50 (torchvision key names, 8631 identities), the
preprocessing EmoStyle applies before it, and the L2-normalised 2048-d embedding.

The network is the one released with VGGFace2 (Cao et al., FG 2018) as converted by
cydonia999/VGGFace2-pytorch: Caffe-style bottlenecks (the stride sits on the first 1x1
conv) and a ceil-mode stem max-pool, so ``resnet50_ft_weight.pkl`` loads unchanged.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: Per-channel mean of the training faces, BGR order, 0-255 scale.
MEAN_BGR = (91.4953, 103.8827, 131.0912)
#: Identities in the VGGFace2 training split the published classifier was fitted to.
NUM_IDENTITIES = 8631
#: Side of the square crop the network sees, pixels.
CROP_SIZE = 224
#: Dimension of the identity embedding.
EMBEDDING_DIM = 2048


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 residual block, Caffe variant: the stride is on the first 1x1."""

    expansion = 4

    def __init__(self,
                 in_planes: int,    # input channels
                 planes: int,       # bottleneck channels; output is 4x this
                 stride: int = 1,   # spatial stride of the block
                 ):
        super().__init__()
        out_planes = planes * self.expansion
        self.conv1 = nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.downsample = None
        if stride != 1 or in_planes != out_planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_planes),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        residual = x if self.downsample is None else self.downsample(x)
        return F.relu(out + residual)


class ResNet50Face(nn.Module):
    """ResNet-50 face classifier; :meth:`embed` gives the pooled 2048-d feature before ``fc``.

    Input is already preprocessed (see :func:`preprocess_for_identity`): BGR, 0-255 minus
    :data:`MEAN_BGR`, [N, 3, 224, 224].

    >>> net = ResNet50Face(num_classes=10).eval()
    >>> net.embed(torch.zeros(1, 3, 224, 224)).shape
    torch.Size([1, 2048])
    """

    def __init__(self,
                 num_classes: int = NUM_IDENTITIES,   # identities of the classifier head
                 layers: tuple[int, ...] = (3, 4, 6, 3),  # bottlenecks per stage (ResNet-50)
                 ):
        super().__init__()
        self.num_classes = num_classes
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        in_planes = 64
        for stage, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers), start=1):
            stride = 1 if stage == 1 else 2
            stage_blocks = []
            for b in range(blocks):
                stage_blocks.append(Bottleneck(in_planes, planes, stride if b == 0 else 1))
                in_planes = planes * Bottleneck.expansion
            self.add_module(f"layer{stage}", nn.Sequential(*stage_blocks))
        self.fc = nn.Linear(512 * Bottleneck.expansion, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Preprocessed faces [N, 3, 224, 224] -> pooled features [N, 2048] (not normalised)."""
        if x.ndim != 4 or tuple(x.shape[1:]) != (3, CROP_SIZE, CROP_SIZE):
            raise ValueError(f"expected preprocessed faces shaped [N, 3, {CROP_SIZE}, "
                             f"{CROP_SIZE}] (see preprocess_for_identity), got {tuple(x.shape)}")
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2, ceil_mode=True)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return F.adaptive_avg_pool2d(x, 1).flatten(1)   # the 7x7 average pool at 224 px

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Preprocessed faces [N, 3, 224, 224] -> identity logits [N, num_classes]."""
        return self.fc(self.embed(x))


def preprocess_for_identity(images: torch.Tensor) -> torch.Tensor:
    """EmoStyle's preprocessing: RGB [N, 3, H, W] in [0, 1] -> network input [N, 3, 224, 224].

    Scales to 0-255, keeps the central 80 % (rows and columns ``int(0.1 n):int(0.9 n)``),
    resizes to 256x256 by nearest neighbour, centre-crops 224, reorders RGB -> BGR and
    subtracts :data:`MEAN_BGR`. Differentiable, so it can sit inside an identity loss.

    >>> preprocess_for_identity(torch.rand(2, 3, 320, 320)).shape
    torch.Size([2, 3, 224, 224])
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected RGB images shaped [N, 3, H, W] in [0, 1], "
                         f"got {tuple(images.shape)}")
    height, width = images.shape[-2:]
    x = 255.0 * images[:, :, int(0.1 * height):int(0.9 * height), int(0.1 * width):int(0.9 * width)]
    x = F.interpolate(x, size=(256, 256), mode="nearest")
    start = (256 - CROP_SIZE) // 2
    x = x[:, [2, 1, 0], start:start + CROP_SIZE, start:start + CROP_SIZE]
    return x - x.new_tensor(MEAN_BGR).view(1, 3, 1, 1)


def identity_embedding(model: ResNet50Face, images: torch.Tensor) -> torch.Tensor:
    """L2-normalised identity embeddings [N, 2048] of RGB images [N, 3, H, W] in [0, 1].

    Cosine similarity of two faces is the dot product of their embeddings.
    """
    return F.normalize(model.embed(preprocess_for_identity(images)), dim=-1)
