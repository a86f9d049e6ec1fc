"""Renders the experimenter's README.md of a PsychoPy bundle from templates/experiment_readme.md.j2.

Protocol text is shown literally (as it is, or in code spans and blocks): no links, HTML or
formatting can come from it, and the file reads as well in a text editor as rendered.
"""
from __future__ import annotations

import re

import jinja2

from stimgen.build_folder import as_bool
from stimgen.design.plan import LIST_COLUMN
from stimgen.templates_path import templates_dir

TEMPLATE = "experiment_readme.md.j2"

# Characters that start no Markdown construct in the middle of a line (CommonMark and GitHub's
# extensions): text made only of these is shown as it is. `-`, `+`, `>` and `1.` mean something
# only at the start of a line, and inline values never start one.
_PLAIN = re.compile(r"[^\W_]|[ ,.;:?!'\"%()+=>/-]")
# ... unless they spell something GitHub turns into a link or an emoji.
_LINK_OR_EMOJI = re.compile(r"://|www\.|@|:[\w+-]+:", re.IGNORECASE)
# Control characters, and the invisible ones that reorder or hide text (bidi controls, BOM).
_INVISIBLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b\u200e\u200f\u202a-\u202e"
                        "\u2066-\u2069\ufeff]")


def visible_text(value) -> str:
    r"""``value`` as text without control characters or invisible reordering marks; line
    breaks become ``\n`` and tabs are kept.

    >>> visible_text("a\r\nb\u202ec\x07")
    'a\nbc'
    """
    return _INVISIBLE.sub("", str(value).replace("\r\n", "\n").replace("\r", "\n"))


def _fence(text: str, least: int = 1) -> str:
    # One backtick more than the longest run in the text, so the text cannot close it.
    longest = max((len(run) for run in re.findall("`+", text)), default=0)
    return "`" * max(least, longest + 1)


def markdown_text(value) -> str:
    """Protocol text as inline Markdown that shows exactly that text and nothing else.

    Text of letters, digits, spaces and ordinary punctuation is written as it is, so the README
    reads well as plain text too; anything else (``*``, ``_``, ``<``, ``[``, ``&``, a backtick,
    a link, ...) is written as a code span, which Markdown shows literally. Line breaks become
    spaces; control characters are dropped. Not for table cells (``|`` would split the cell).

    >>> markdown_text("Which emotion does this face show?")
    'Which emotion does this face show?'
    >>> markdown_text("*bold* <b>")
    '`*bold* <b>`'
    >>> markdown_text("a `tick`")
    '`` a `tick` ``'
    """
    text = " ".join(visible_text(value).split())
    if not text:
        return ""
    if all(_PLAIN.fullmatch(char) for char in text) and not _LINK_OR_EMOJI.search(text):
        return text
    fence = _fence(text)
    # A span may not start or end with its own backticks; Markdown strips this padding.
    pad = " " if text[0] == "`" or text[-1] == "`" else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def markdown_block(value) -> str:
    """Protocol text, line breaks kept, as a fenced block that Markdown shows literally.

    >>> print(markdown_block("Look.\\n\\nPress SPACE"))
    ```text
    Look.
    <BLANKLINE>
    Press SPACE
    ```
    """
    text = visible_text(value).strip("\n")
    fence = _fence(text, least=3)
    return f"{fence}text\n{text}\n{fence}"


def render_readme(*, study, name: str, layout, design, stimuli, files,
                  online: bool = False) -> str:
    """The README.md text of a bundle (see the template for its sections); ``online`` selects
    the self-contained PsychoJS layout's instructions."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(templates_dir(TEMPLATE)),
                             autoescape=False, keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True)
    env.filters["md"] = markdown_text
    env.filters["block"] = markdown_block
    counts = design.table.groupby("group").agg(
        trials=("position", "size"),
        practice=("is_practice", lambda s: int(s.map(as_bool).sum())))
    return env.get_template(TEMPLATE).render(
        study=study, name=name, layout=layout, design=design,
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
        "clip_file": "video played before the response (`show: clip`), relative to this folder",
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
        LIST_COLUMN: "the list of stimuli this group shows (1, 2, ...; `design.lists`)",
    }
    rows = [(c, meaning.get(c, "")) for c in design.columns]
    if layout.task in ("rating", "norming"):
        for slider in layout.sliders:
            rows += [(f"{slider.scale}_slider.response",
                      f"{slider.scale} rating ({slider.low}-{slider.high})"),
                     (f"{slider.scale}_slider.rt", "seconds from slider onset to the rating")]
    elif layout.task == "categorization":
        rows += [("choice_keys.keys", "key pressed"),
                 ("choice_keys.corr", "1 if the key was the correct one"),
                 ("choice_keys.rt", "seconds from trial onset to the key press")]
    if layout.task == "norming" and layout.choices:
        rows += [("label_keys.keys", "key of the label chosen (see *What participants read*)"),
                 ("label_keys.corr", "1 if the label was the correct one"),
                 ("label_keys.rt", "seconds from label screen onset to the key press")]
    if layout.catch_key:
        rows += [("catch_keys.keys", "key pressed on a catch trial (empty if none)"),
                 ("catch_keys.rt", "seconds from catch prompt to the key press")]
    if layout.online:
        rows += [("participant / session", "from the start dialog (or the address, "
                                           "e.g. `?participant=...`)"),
                 ("group", "the group the session ran"),
                 ("group_source", "where the group came from: `shelf` (Pavlovia's, or "
                                  "`shelf.json` in PsychoPy), `url` (`?group=`), `random`, or "
                                  "`launcher` (run_simulated.py)"),
                 ("counterbalance.group", "what the shelf answered (empty when it could not)")]
    else:
        rows += [("participant / session / group / simulate", "from the start dialog")]
    rows += [("practice_trials.thisN / trials.thisN", "0-based trial counter of each loop")]
    return rows
