"""`stimgen rate` speed: hsemotion-sized network on the demo stimuli, batched vs one at a time.

Builds an EfficientNet-B0-shaped network (MBConv blocks with squeeze-excitation, SiLU,
about 4 M weights, random: for timing only, never for ratings), exports it to ONNX with the
published input/output signature, and rates the 452 demo stimuli twice in the same run:
in batches (as `stimgen rate` does) and one image per onnxruntime call (the baseline).

    PYTHONPATH=$PWD python benchmarks/rate_bench.py [STIMULI_FOLDER] [--batch-size 32]

STIMULI_FOLDER defaults to build/demo/stimuli (`make demo`).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from stimgen.raters import describe_rater
from stimgen.raters.hsemotion import HSEmotionRater, load_hsemotion, preprocess
from stimgen.raters.images import find_images, rate_images, read_image

# EfficientNet-B0 stages: (expansion, output channels, blocks, stride, kernel)
B0_STAGES = ((1, 16, 1, 1, 3), (6, 24, 2, 2, 3), (6, 40, 2, 2, 5), (6, 80, 3, 2, 3),
             (6, 112, 3, 1, 5), (6, 192, 4, 2, 5), (6, 320, 1, 1, 3))


def conv_bn(cin, cout, kernel, stride=1, groups=1, act=True):
    layers = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
              nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, nn.SiLU()) if act else nn.Sequential(*layers)


class MBConv(nn.Module):
    def __init__(self, cin, cout, expansion, stride, kernel):
        super().__init__()
        mid = cin * expansion
        squeeze = max(1, cin // 4)
        self.expand = conv_bn(cin, mid, 1) if expansion != 1 else nn.Identity()
        self.depthwise = conv_bn(mid, mid, kernel, stride, groups=mid)
        self.se = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(mid, squeeze, 1), nn.SiLU(),
                                nn.Conv2d(squeeze, mid, 1), nn.Sigmoid())
        self.project = conv_bn(mid, cout, 1, act=False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.depthwise(self.expand(x))
        y = self.project(y * self.se(y))
        return x + y if self.residual else y


class EfficientNetB0Like(nn.Module):
    """EfficientNet-B0 layout with a 10-output head (8 logits, valence, arousal)."""

    def __init__(self, outputs: int = 10):
        super().__init__()
        layers, cin = [conv_bn(3, 32, 3, 2)], 32
        for expansion, cout, blocks, stride, kernel in B0_STAGES:
            for i in range(blocks):
                layers.append(MBConv(cin, cout, expansion, stride if i == 0 else 1, kernel))
                cin = cout
        layers += [conv_bn(cin, 1280, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(1280, outputs)

    def forward(self, x):
        return self.head(self.features(x))


def export(path: Path) -> int:
    model = EfficientNetB0Like().eval()
    torch.onnx.export(model, torch.zeros(1, 3, 224, 224), str(path), input_names=["input"],
                      output_names=["output"], dynamic_axes={"input": {0: "N"}, "output": {0: "N"}},
                      opset_version=17, dynamo=False)
    return sum(p.numel() for p in model.parameters())


def timed(rater, files, batch_size: int) -> float:
    start = time.perf_counter()
    table = rate_images(files, rater, framing="full", batch_size=batch_size)
    seconds = time.perf_counter() - start
    assert len(table) == len(files)
    return seconds


def timed_network(network, batch, batch_size: int) -> float:
    """Seconds for the network alone on a preprocessed batch, ``batch_size`` per call."""
    network.batch_size = batch_size
    start = time.perf_counter()
    network.scores(batch)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stimuli", nargs="?", default="build/demo/stimuli", type=Path)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    files = find_images([args.stimuli])
    info = describe_rater("hsemotion", "schematic")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "enet_b0_like.onnx"
        parameters = export(path)
        print(f"network: EfficientNet-B0-like, {parameters / 1e6:.2f} M weights (random), "
              f"{path.stat().st_size / 1e6:.1f} MB ONNX; {len(files)} images from {args.stimuli}; "
              f"{torch.get_num_threads()} threads")
        batched = HSEmotionRater(load_hsemotion(path, device="cpu", batch_size=args.batch_size),
                                 info)
        single = HSEmotionRater(load_hsemotion(path, device="cpu", batch_size=1), info)
        timed(batched, files[:8], args.batch_size)          # warm-up: session, caches
        t_batched = timed(batched, files, args.batch_size)
        t_single = timed(single, files, 1)
        # the network alone, on 128 preprocessed stimuli: what batching itself buys
        sample = preprocess([read_image(f) for f in files[:128]])
        n_net = len(sample)
        net_batched = timed_network(batched.network, sample, args.batch_size)
        net_single = timed_network(single.network, sample, 1)
    n = len(files)
    print(f"stimgen rate, end to end (read, frame, rate, sharpness):")
    print(f"  batched ({args.batch_size}/call): {n / t_batched:7.1f} images/s ({t_batched:.1f} s)")
    print(f"  one image per call:   {n / t_single:7.1f} images/s ({t_single:.1f} s)")
    print(f"  speed-up: {t_single / t_batched:.2f}x")
    print(f"network only ({n_net} preprocessed images):")
    print(f"  batched: {n_net / net_batched:7.1f} images/s, one per call: "
          f"{n_net / net_single:7.1f} images/s, speed-up {net_single / net_batched:.2f}x")


if __name__ == "__main__":
    main()
