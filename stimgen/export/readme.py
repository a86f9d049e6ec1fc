"""Renders the experimenter's README.md of a PsychoPy bundle from templates/experiment_readme.md.j2.

Protocol text is escaped for Markdown (no links, HTML or formatting can come from it).
"""
from __future__ import annotations

import re

import jinja2

from stimgen.templates_path import templates_dir

TEMPLATE = "experiment_readme.md.j2"

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~])")


def markdown_text(value) -> str:
    """Plain text made inert in Markdown: special characters backslash-escaped, ``<`` and ``&``
    as HTML entities, line breaks kept as Markdown hard breaks.

    >>> markdown_text("*bold* <b>")
    '\\\\*bold\\\\* &lt;b&gt;'
    """
    text = str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _MARKDOWN_SPECIAL.sub(r"\\\1", text)
    return text.replace("\r\n", "\n").replace("\n", "  \n")


def markdown_quote(value) -> str:
    """Plain text as an inert Markdown block quote, one ``> `` per line.

    >>> markdown_quote("a\\n\\nb")
    '> a\\n>\\n> b'
    """
    lines = markdown_text(value).replace("  \n", "\n").split("\n")
    return "\n".join(f"> {line}" if line.strip() else ">" for line in lines)


def render_readme(*, protocol, name: str, layout, design, stimuli, files,
                  online: bool = False) -> str:
    """The README.md text of a bundle (see the template for its sections); ``online`` selects
    the self-contained PsychoJS layout's instructions."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(templates_dir(TEMPLATE)),
                             autoescape=False, keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True)
    env.filters["md"] = markdown_text
    env.filters["quote"] = markdown_quote
    counts = design.table.groupby("group").agg(
        trials=("position", "size"),
        practice=("is_practice", lambda s: int(s.astype(str).str.lower().isin(["true", "1"]).sum())))
    return env.get_template(TEMPLATE).render(
        study=protocol.study, name=name, layout=layout, design=design,
        summary=design.summary, counts=counts.reset_index().to_dict("records"),
        n_stimuli=len(stimuli), files=[f.as_posix() for f in files], online=online,
        n_shown=int(design.table["stim_file"].nunique()),
        data_columns=data_columns(layout, design))


def data_columns(layout, design) -> list[tuple[str, str]]:
    """(column, meaning) of the trial rows in PsychoPy's data file, for the README."""
    meaning = {
        "position": "1-based position in the group's order (practice first)",
        "block": "block number (0 = practice)",
        "block_label": "level of the blocking factor, or `practice`",
        "is_practice": "1 on practice trials",
        "break_after": "1 when a rest screen followed this trial",
        "stim_id": "stimulus id (file stem in `stimuli/`)",
        "stim_file": "image file, relative to this folder",
        "identity": "face identity",
        "emotion": "emotion name (as in stimuli.tsv)",
        "target_kind": "named, angle, point or neutral",
        "angle": "target circumplex angle, degrees",
        "intensity": "target intensity (0 = neutral)",
        "target_valence": "target valence in [-1, 1]",
        "target_arousal": "target arousal in [-1, 1]",
        "achieved_valence": "valence measured on the image by the build's rater",
        "achieved_arousal": "arousal measured on the image by the build's rater",
        "correct_key": "key of the correct choice",
        "correct_label": "label of the correct choice",
        "is_catch": "1 on catch trials",
    }
    rows = [(c, meaning.get(c, "")) for c in design.columns]
    if layout.task == "rating":
        for slider in layout.sliders:
            rows += [(f"{slider.scale}_slider.response",
                      f"{slider.scale} rating ({slider.low}-{slider.high})"),
                     (f"{slider.scale}_slider.rt", "seconds from slider onset to the rating")]
    elif layout.task == "categorization":
        rows += [("choice_keys.keys", "key pressed"),
                 ("choice_keys.corr", "1 if the key was the correct one"),
                 ("choice_keys.rt", "seconds from trial onset to the key press")]
    elif layout.catch_key:
        rows += [("catch_keys.keys", "key pressed on a catch trial (empty if none)"),
                 ("catch_keys.rt", "seconds from catch prompt to the key press")]
    rows += [("participant / session / group / simulate", "from the start dialog"),
             ("practice_trials.thisN / trials.thisN", "0-based trial counter of each loop")]
    return rows
