"""Edit throughput (rating included) and personalisation time of the emostyle backend.

Run: ``python benchmarks/bench_emostyle.py [--batch-sizes 8,16,32] [--personalize-steps 20]``.
On CUDA: FFHQ-sized random networks (1024 px generator, published EmoStyle mapping, EmoNet-8,
VGGFace2 ResNet-50); on CPU a tiny configuration that finishes in about a minute.

Edits: images/s of the backend's path (batched ``w + M(w, va)``, synthesis with constant
noise, resize and uint8 conversion on the device, VGGFace2 identity similarity and EmoNet
rating of the 256 px crops) per batch size and precision, against a straightforward
baseline measured in the same run: fp32, one image at a time, each step separately, as the
reference code does. bf16 rows report the largest pixel difference to fp32 (0-255 levels).
Personalisation: seconds per step of ``personalize`` (EmoStyle phase 2) and the implied
seconds per identity at 500 steps.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from stimgen.backends.emostyle.edit import edit_faces, resize, to_uint8
from stimgen.backends.emostyle.losses import face_embedding
from stimgen.nets.emo_mapping import EmoMappingWplus, edit_latents
from stimgen.nets.emonet import EmoNet, ffhq_framing
from stimgen.nets.stylegan2 import Generator
from stimgen.nets.vggface2 import ResNet50Face
from stimgen.raters.emonet import EmoNetRater
from stimgen.raters import RaterInfo
from stimgen.backends import Rendered

FFHQ = dict(z_dim=512, w_dim=512, resolution=1024,
            synthesis=dict(channel_base=32768, channel_max=512, num_fp16_res=4, conv_clamp=256),
            mapping_hidden=(2048, 1024, 512), emonet=dict(num_modules=2, n_blocks=4),
            vgg=dict(num_classes=8631, layers=(3, 4, 6, 3)))
TINY = dict(z_dim=64, w_dim=64, resolution=32,
            synthesis=dict(channel_base=1024, channel_max=32, num_fp16_res=0, conv_clamp=256),
            mapping_hidden=(64, 64, 64), emonet=dict(num_modules=1, n_blocks=1),
            vgg=dict(num_classes=16, layers=(1, 1, 1, 1)))


def networks(config: dict, device: torch.device):
    torch.manual_seed(0)
    G = Generator(z_dim=config["z_dim"], c_dim=0, w_dim=config["w_dim"],
                  img_resolution=config["resolution"], img_channels=3,
                  synthesis_kwargs=config["synthesis"])
    mapping = EmoMappingWplus(size=config["resolution"], emotion_dim=64,
                              latent_dim=config["w_dim"], hidden=config["mapping_hidden"])
    emonet = EmoNet(n_expression=8, **config["emonet"])
    vgg = ResNet50Face(**config["vgg"])
    return [m.eval().requires_grad_(False).to(device) for m in (G, mapping, emonet, vgg)]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def optimised_edits(G, mapping, rater, vgg, ws, va, batch: int, precision: str):
    """The backend's path: batches of edits, rated; returns uint8 images."""
    images = []
    for start in range(0, len(va), batch):
        faces = edit_faces(G.synthesis, mapping, ws, va[start:start + batch], image_size=1024,
                           vggface2=vgg, precision=precision)
        rater.rate([Rendered(None, None, {"face_crop": c}) for c in faces.crops])
        images.append(faces.images)
    return np.concatenate(images)


@torch.no_grad()
def baseline_edits(G, mapping, emonet, vgg, ws, va):
    """fp32, one image at a time, every step on its own (as the reference scripts do)."""
    for i in range(len(va)):
        edited = edit_latents(mapping, ws, va[i:i + 1].to(ws.device))
        image = G.synthesis(edited, noise_mode="const", force_fp32=True)
        _ = to_uint8(resize(image, 1024)).cpu()
        face = (image.clamp(-1, 1) + 1) / 2
        face_embedding(vgg, face)
        emonet(ffhq_framing(face))


def bench_edits(G, mapping, emonet, vgg, device, batch_sizes, count):
    ws = G.mapping(torch.randn(1, G.z_dim, device=device), None, truncation_psi=0.7)
    va = torch.rand(count, 2) * 2 - 1
    rater = EmoNetRater(emonet, RaterInfo("emonet", "", True))
    baseline_edits(G, mapping, emonet, vgg, ws, va[:2])        # warm-up
    base = count / timed(lambda: baseline_edits(G, mapping, emonet, vgg, ws, va), device)
    print(f"edits ({count} images, 1024 px output, rating + identity included)")
    print(f"  {'baseline fp32, one at a time':<34} {base:8.1f} img/s   1.00x")
    precisions = ["fp32"] + (["bf16"] if device.type == "cuda" else [])
    reference = None
    for precision in precisions:
        for batch in batch_sizes:
            optimised_edits(G, mapping, rater, vgg, ws, va[:batch], batch, precision)  # warm-up
            result = {}
            seconds = timed(lambda: result.update(
                images=optimised_edits(G, mapping, rater, vgg, ws, va, batch, precision)), device)
            if precision == "fp32" and reference is None:
                reference = result["images"].astype(int)
            diff = np.abs(result["images"].astype(int) - reference).max()
            print(f"  {f'batched {precision}, batch {batch}':<34} {count / seconds:8.1f} img/s "
                  f"{count / seconds / base:6.2f}x   max pixel diff vs fp32 {diff}")


def bench_personalisation(G, mapping, emonet, vgg, device, steps: int):
    from stimgen.backends.emostyle.personalize import PersonalizeSettings, personalize

    ws = G.mapping(torch.randn(1, G.z_dim, device=device), None, truncation_psi=0.7)
    with torch.no_grad():
        target = G.synthesis(ws, noise_mode="const").clamp(-1, 1)
    landmarks = np.random.default_rng(0).uniform(0.3, 0.7, (68, 2)) * G.img_resolution
    personalize(G, mapping, emonet, vgg, ws, target, landmarks, PersonalizeSettings(steps=2))
    seconds = timed(lambda: personalize(G, mapping, emonet, vgg, ws, target, landmarks,
                                        PersonalizeSettings(steps=steps)), device)
    print(f"personalisation: {seconds / steps:.3f} s/step over {steps} steps -> "
          f"{500 * seconds / steps:.1f} s per identity at 500 steps")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", default="8,16,32")
    parser.add_argument("--images", type=int, default=None, help="edits per measurement")
    parser.add_argument("--personalize-steps", type=int, default=None)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    config = FFHQ if device.type == "cuda" else TINY
    G, mapping, emonet, vgg = networks(config, device)
    print(f"device {device}, generator {config['resolution']} px, torch {torch.__version__}")
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    count = args.images or (256 if device.type == "cuda" else 16)
    bench_edits(G, mapping, emonet, vgg, device, batch_sizes, count)
    bench_personalisation(G, mapping, emonet, vgg, device,
                          args.personalize_steps or (50 if device.type == "cuda" else 3))


if __name__ == "__main__":
    main()
