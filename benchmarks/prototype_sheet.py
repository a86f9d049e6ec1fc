"""Contact sheet of the basic-emotion prototypes: one row per prototype (and neutral), eight
identities side by side, each face captioned with the FACS combination it shows, drawn at
256 px (docs/images/schematic_prototypes.png).

Run: ``python benchmarks/prototype_sheet.py [--out PATH] [--size 256]``. Deterministic.
"""
from __future__ import annotations

import argparse

from PIL import Image, ImageDraw

from stimgen.backends.schematic import PROTOTYPES, render_face, sample_identity
from stimgen.circumplex import basic_emotions

SEEDS = (1, 2, 3, 4, 5, 6, 7, 8)
LABEL = 16


def prototype_sheet(seeds=SEEDS, size: int = 256, cell: int = 150) -> Image.Image:
    rows = [("neutral", None, "no action")] + [
        (e.name, e, PROTOTYPES[e.prototype].source.split(f"{e.prototype}: ", 1)[-1])
        for e in basic_emotions()]
    sheet = Image.new("RGB", (len(seeds) * cell, len(rows) * (cell + LABEL)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for r, (name, emotion, combination) in enumerate(rows):
        y = r * (cell + LABEL)
        draw.text((3, y + 2), f"{name.upper()}: {combination[:100]}", fill=(0, 0, 0))
        for c, seed in enumerate(seeds):
            identity = sample_identity(seed)
            va = (0.0, 0.0) if emotion is None else emotion.target_va(1.0)
            face = render_face(identity, *va, size,
                               prototype=None if emotion is None else emotion.prototype)
            crop = face.image.crop((int(size * 0.2), int(size * 0.12),
                                    int(size * 0.8), int(size * 0.72)))
            sheet.paste(crop.resize((cell, cell), Image.LANCZOS), (c * cell, y + LABEL))
    return sheet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="docs/images/schematic_prototypes.png")
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    prototype_sheet(size=args.size).quantize(colors=160).save(args.out, optimize=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
