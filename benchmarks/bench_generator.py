"""Throughput and memory of the StyleGAN2-ADA generator (random weights) per precision and batch.

Run: ``python benchmarks/bench_generator.py [--resolution 1024] [--batch-sizes 1,2,4,8,16,32]``.
On CUDA the default is the FFHQ configuration (1024x1024, channel_base 32768, 4 fp16
resolutions, conv_clamp 256); on CPU a small 32x32 configuration so that the script finishes
in seconds. Each row reports images/s of ``synthesis(ws, noise_mode='const')`` and its ratio to
a plain per-image fp32 loop measured in the same run, plus peak CUDA memory.

Precisions: ``fp32`` (force_fp32), ``fp16`` (NVIDIA's mixed precision: the num_fp16_res top
resolutions in fp16; CUDA only), ``bf16`` and ``fp16-autocast`` (``torch.autocast`` over the
fp32 path; bf16 also on CPU).
"""
from __future__ import annotations

import argparse
import contextlib
import time
from typing import Callable

import torch

from stimgen.nets.stylegan2 import Generator

FFHQ = dict(channel_base=32768, channel_max=512, num_fp16_res=4, conv_clamp=256)
CPU_SMALL = dict(channel_base=4096, channel_max=128, num_fp16_res=2, conv_clamp=256)


def build_generator(resolution: int, device: torch.device, small: bool) -> Generator:
    torch.manual_seed(0)
    G = Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=resolution, img_channels=3,
                  synthesis_kwargs=CPU_SMALL if small else FFHQ)
    return G.eval().requires_grad_(False).to(device)


def precision_context(precision: str, device: torch.device):
    """(autocast context, force_fp32) for a precision name."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16), True
    if precision == "fp16-autocast":
        return torch.autocast(device.type, dtype=torch.float16), True
    return contextlib.nullcontext(), precision == "fp32"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int) -> float:
    """Median seconds per call of ``fn``."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def measure(G: Generator, ws: torch.Tensor, precision: str, per_image: bool,
            repeats: int, warmup: int) -> tuple[float, float | None]:
    """(images/s, peak MiB or None) for one batch of ws."""
    device = ws.device
    context, force_fp32 = precision_context(precision, device)

    def run() -> None:
        with torch.no_grad(), context:
            if per_image:
                for i in range(len(ws)):
                    G.synthesis(ws[i:i + 1], noise_mode="const", force_fp32=force_fp32)
            else:
                G.synthesis(ws, noise_mode="const", force_fp32=force_fp32)

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    seconds = time_call(run, device, repeats, warmup)
    peak = torch.cuda.max_memory_allocated(device) / 2 ** 20 if device.type == "cuda" else None
    return len(ws) / seconds, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cuda = torch.cuda.is_available()
    parser.add_argument("--resolution", type=int, default=1024 if cuda else 32)
    parser.add_argument("--batch-sizes", default="1,2,4,8,16,32" if cuda else "1,2,4")
    parser.add_argument("--precisions", default="fp32,fp16,bf16,fp16-autocast" if cuda else "fp32,bf16")
    parser.add_argument("--repeats", type=int, default=5 if cuda else 3)
    parser.add_argument("--warmup", type=int, default=2 if cuda else 1)
    args = parser.parse_args()

    device = torch.device("cuda" if cuda else "cpu")
    small = not cuda
    G = build_generator(args.resolution, device, small)
    name = torch.cuda.get_device_name(device) if cuda else f"CPU ({torch.get_num_threads()} threads)"
    config = CPU_SMALL if small else FFHQ
    print(f"device: {name}; resolution {args.resolution}, {config}, num_ws {G.num_ws}, "
          f"{sum(p.numel() for p in G.synthesis.parameters()) / 1e6:.1f}M synthesis parameters")
    print(f"{'precision':<14}{'batch':>6}{'images/s':>11}{'vs loop':>9}{'peak MiB':>10}")

    for batch in (int(b) for b in args.batch_sizes.split(",")):
        ws = G.mapping(torch.randn(batch, G.z_dim, device=device), None, truncation_psi=0.7)
        baseline, peak = measure(G, ws, "fp32", per_image=True, repeats=args.repeats, warmup=args.warmup)
        print(f"{'fp32 per-image':<14}{batch:>6}{baseline:>11.2f}{1.0:>9.2f}"
              f"{peak if peak is not None else float('nan'):>10.0f}")
        for precision in args.precisions.split(","):
            rate, peak = measure(G, ws, precision, per_image=False, repeats=args.repeats,
                                 warmup=args.warmup)
            print(f"{precision:<14}{batch:>6}{rate:>11.2f}{rate / baseline:>9.2f}"
                  f"{peak if peak is not None else float('nan'):>10.0f}")


if __name__ == "__main__":
    main()
