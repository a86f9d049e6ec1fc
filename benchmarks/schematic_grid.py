"""The docs grid of schematic expressions: every basic emotion and the 28 named circumplex
emotions at intensity 1, for two identities (docs/images/schematic_expressions.png).

Run: ``python benchmarks/schematic_grid.py [--out docs/images/schematic_expressions.png]``.
The image is deterministic: rerunning it after a change to the face shows the change in git.
"""
from __future__ import annotations

import argparse

from PIL import Image, ImageDraw

from stimgen.backends.schematic import render_face, sample_identity
from stimgen.circumplex import basic_emotions, named_emotions

SEEDS = (4, 9)          # two demo identities with different skin tone, hair and face shape
CELL = 104              # pixels per face
LABEL = 14              # pixels of caption under each face
COLUMNS = 12


def expression_grid(seeds=SEEDS, cell: int = CELL, columns: int = COLUMNS) -> Image.Image:
    """One block per identity: the basic emotions (their prototypes), then the 28 terms."""
    emotions = list(basic_emotions()) + list(named_emotions())
    rows_per_identity = -(-len(emotions) // columns)
    height = len(seeds) * rows_per_identity * (cell + LABEL)
    sheet = Image.new("RGB", (columns * cell, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for block, seed in enumerate(seeds):
        identity = sample_identity(seed)
        for index, emotion in enumerate(emotions):
            face = render_face(identity, *emotion.target_va(1.0), cell,
                               prototype=emotion.prototype)
            row = block * rows_per_identity + index // columns
            x, y = (index % columns) * cell, row * (cell + LABEL)
            sheet.paste(face.image, (x, y))
            caption = emotion.name.upper() if emotion.prototype else emotion.name
            draw.text((x + 3, y + cell), caption, fill=(0, 0, 0))
    return sheet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="docs/images/schematic_expressions.png")
    args = parser.parse_args()
    expression_grid().quantize(colors=128).save(args.out, optimize=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
