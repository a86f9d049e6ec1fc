"""Measures what a PsychoPy bundle draws: ``python psychopy_screen_probe.py FOLDER GROUP OUT``
runs FOLDER's simulated participant of GROUP and writes every distinct screen to OUT (JSON).

``setAutoDraw`` is wrapped so that whenever a stimulus is put on screen, everything then on
screen is measured as PsychoPy laid it out (pixels, origin at the window's centre). Measuring
at each flip would miss screens that a simulated participant ends before their first flip.
Used by test_psychopy_layout.py; runs inside the experiment's process, under Xvfb.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def _box(vertices_pix) -> list[float]:
    xs, ys = [float(v[0]) for v in vertices_pix], [float(v[1]) for v in vertices_pix]
    return [min(xs), max(xs), min(ys), max(ys)]


def _measure(stim, visual) -> list[dict]:
    """What ``stim`` puts on screen: kind, name, text, box [left, right, bottom, top] in pixels,
    the text's rendered lines and how many hyphens PsychoPy added to break words."""
    if isinstance(stim, visual.Slider):
        found = [dict(kind="slider", name=stim.name, box=_box(stim.validArea._vertices.pix))]
        for n, label in enumerate(stim.labelObjs):  # PsychoPy's own labels, if any
            found += [{**m, "name": f"{stim.name}.label{n}"} for m in _measure(label, visual)]
        return found
    if isinstance(stim, visual.TextBox2):
        lines: dict[int, str] = {}
        for char, line in zip(stim._text, stim._lineNs):
            lines[int(line)] = lines.get(int(line), "") + char
        return [dict(kind="text", name=stim.name, text=stim._text,
                     box=_box(stim._vertices.pix) if len(stim._text) else None,
                     lines=[lines[n] for n in sorted(lines)], hyphens=len(stim._renderChars))]
    if isinstance(stim, visual.TextStim):  # centred pyglet label
        label, (width, height), (x, y) = stim._pygletTextObj, stim.boundingBox, stim.posPix
        lines = [stim.text[line.start:line.start + line.length] for line in label._get_lines()]
        return [dict(kind="text", name=stim.name, text=stim.text, lines=lines, hyphens=0,
                     box=[x - width / 2, x + width / 2, y - height / 2, y + height / 2])]
    if isinstance(stim, visual.ImageStim):
        return [dict(kind="image", name=stim.name, box=_box(stim._vertices.pix))]
    return []


def probe(folder: str, group: str, out: str) -> None:
    """Run the simulated participant of ``folder`` and write every distinct screen to ``out``."""
    sys.path.insert(0, folder)
    from psychopy import visual

    screens: dict[str, dict] = {}

    def measured(set_auto_draw):
        def set_and_measure(stim, value, *args, **kwargs):
            set_auto_draw(stim, value, *args, **kwargs)
            if value:
                win = stim.win
                drawn = [m for shown in win._toDraw for m in _measure(shown, visual)]
                key = json.dumps(sorted((m["name"], m.get("text", "")) for m in drawn))
                screens.setdefault(key, dict(window=[int(v) for v in win.size], drawn=drawn))
        return set_and_measure

    for cls in (visual.TextStim, visual.TextBox2, visual.ImageStim, visual.Slider):
        cls.setAutoDraw = measured(cls.setAutoDraw)
    import run_simulated
    try:
        run_simulated.main(["--group", group])
    finally:  # the experiment ends with sys.exit
        Path(out).write_text(json.dumps(list(screens.values()), indent=1), encoding="utf-8")


if __name__ == "__main__":
    probe(*sys.argv[1:4])
