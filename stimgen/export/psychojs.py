"""What the online (PsychoJS / Pavlovia) version of a bundle needs beyond the Builder experiment:
group assignment by Pavlovia's shelf with its fallbacks, the web font, slider ends that take a
click, and the check that the compiled script is JavaScript with no Python left in it.

Everything here is Builder code (code components, files in the experiment folder), never an
edit of a compiled script: Builder's *Sync* compiles the script again from the .psyexp, so what
is not in the .psyexp would not reach Pavlovia. stimgen/export/psyexp.py places these pieces.
"""
from __future__ import annotations

import re
from pathlib import Path

from stimgen.errors import BuildError

#: Font of the slider labels and key legends (text boxes): shipped with PsychoPy for Python runs
#: and copied into online bundles as a web font, so a browser draws the same letters.
WEB_FONT = "Noto Sans"
#: The web font and its licence, relative to the experiment folder.
WEB_FONT_FILE, WEB_FONT_LICENCE = "fonts/NotoSans-Regular.woff", "fonts/OFL.txt"
_FONT_SOURCE = "NotoSans-Regular.ttf"          # in PsychoPy's assets/fonts

#: URL parameter naming the group when Pavlovia's shelf cannot (a local pilot), e.g. ?group=g03.
#: The data column ``group_source`` says where a session's group came from: ``shelf``, ``url``,
#: ``random`` or ``launcher`` (run_simulated.py).
GROUP_PARAMETER = "group"


# -- group assignment ------------------------------------------------------------------------
def shelf_fallback_js() -> str:
    """Begin-Experiment JavaScript: the Counterbalance routine's shelf calls never stop a session.

    Pavlovia's shelf exists on the server only: in a local pilot PsychoJS throws ("shelf
    commands are not available locally"), and on Pavlovia a shelf call that fails (no
    counterbalance record, a server error) throws too. Either way the routine then gets no
    group (the welcome screen picks one, see :func:`assign_group_code`) and no participant
    token (so nothing is confirmed to the shelf at the end).
    """
    return (
        "// Pavlovia's shelf answers the Counterbalance routine on the server only: in a local\n"
        "// pilot, or when the shelf fails, the routine gets no group and the welcome screen\n"
        "// picks one (written to the data as group_source)\n"
        "shelf_select = psychoJS.shelf.counterbalanceSelect.bind(psychoJS.shelf);\n"
        "psychoJS.shelf.counterbalanceSelect = async function (options) {\n"
        "  try {\n"
        "    return await shelf_select(options);\n"
        "  } catch (error) {\n"
        "    shelf_problem = JSON.stringify(error && error.error !== undefined ? error.error : error);\n"
        "    console.warn('no group from the shelf: ' + shelf_problem);\n"
        "    return {group: null, finished: false, participantToken: null};\n"
        "  }\n"
        "};\n"
        "shelf_confirm = psychoJS.shelf.counterbalanceConfirm.bind(psychoJS.shelf);\n"
        "psychoJS.shelf.counterbalanceConfirm = async function (key, token, confirmed) {\n"
        "  if (token === null || token === undefined) {\n"
        "    return {};\n"
        "  }\n"
        "  try {\n"
        "    return await shelf_confirm(key, token, confirmed);\n"
        "  } catch (error) {\n"
        "    console.warn('the shelf did not take the confirmation: ' + JSON.stringify(error));\n"
        "    return {};\n"
        "  }\n"
        "};\n"
        "shelf_problem = '';\n")


def assign_group_code(groups: tuple[str, ...], counterbalance: str) -> dict:
    """Begin-Routine code (Python and JavaScript) of the screen right after the Counterbalance
    routine: the session's group, validated, into ``expInfo['group']`` (it names the
    conditions files) and, with where it came from, into every row of the data file.

    The shelf's answer is taken when it names a group, by name (``g03``) or by its number from
    0 (PsychoPy's Counterbalance routine numbers groups so); anything else, or no answer, falls
    back to ``?group=<name>`` in the address, then to a random group. A simulated participant
    (Python only) keeps the group its launcher gave.
    """
    names = list(groups)
    py = (
        f"group_names = {names!r}\n"
        f"shelf_answer = str({counterbalance}.group).strip()\n"
        "if simulated and expInfo.get('group') in group_names:\n"
        "    expInfo['group_source'] = 'launcher'  # run_simulated.py chose it\n"
        "elif shelf_answer in group_names:\n"
        "    expInfo['group'], expInfo['group_source'] = shelf_answer, 'shelf'\n"
        "elif shelf_answer.isdigit() and int(shelf_answer) < len(group_names):\n"
        "    expInfo['group'], expInfo['group_source'] = group_names[int(shelf_answer)], 'shelf'\n"
        "else:\n"
        "    expInfo['group'], expInfo['group_source'] = str(randchoice(group_names)), 'random'\n"
        "thisExp.addData('group', expInfo['group'])\n")
    js = (
        "// the group: the shelf's answer when it names a group (by name, or by its number from 0),\n"
        f"// else ?{GROUP_PARAMETER}=<name> in the address (local pilots), else a random group\n"
        f"group_names = {names!r};\n"
        f"shelf_answer = ({counterbalance} && {counterbalance}.group !== null && "
        f"{counterbalance}.group !== undefined) ? String({counterbalance}.group).trim() : '';\n"
        f"url_group = (util.getUrlParameters().get('{GROUP_PARAMETER}') || '').trim();\n"
        "if (group_names.includes(shelf_answer)) {\n"
        "  expInfo['group'] = shelf_answer;\n"
        "  expInfo['group_source'] = 'shelf';\n"
        "} else if (/^[0-9]+$/.test(shelf_answer) && Number(shelf_answer) < group_names.length) {\n"
        "  expInfo['group'] = group_names[Number(shelf_answer)];\n"
        "  expInfo['group_source'] = 'shelf';\n"
        "} else if (group_names.includes(url_group)) {\n"
        "  expInfo['group'] = url_group;\n"
        "  expInfo['group_source'] = 'url';\n"
        "} else {\n"
        "  expInfo['group'] = group_names[Math.floor(Math.random() * group_names.length)];\n"
        "  expInfo['group_source'] = 'random';\n"
        "}\n"
        "if (expInfo['group_source'] !== 'shelf') {\n"
        "  console.warn('group ' + expInfo['group'] + ' from ' + expInfo['group_source'] +\n"
        "               ' (the shelf answered ' + JSON.stringify(shelf_answer) + ')');\n"
        "}\n"
        "psychoJS.experiment.addData('group', expInfo['group']);\n")
    return {"Code Type": "Both", "py": py, "js": js}


# -- the web font ------------------------------------------------------------------------------
def font_loader_js() -> str:
    """Before-Experiment JavaScript: start loading the web font while the start dialog is open.

    The font is not a PsychoJS resource: PsychoJS names a font resource after its path, and
    the text boxes ask for the font by its family name.
    """
    return (
        "// the slider labels' and key legends' font, shipped in fonts/ (see fonts/OFL.txt);\n"
        "// this code runs before PsychoPy declares variables, hence `var`\n"
        "var web_font_settled = false;\n"
        f"var web_font = new FontFace('{WEB_FONT}', \"url('{WEB_FONT_FILE}') format('woff')\");\n"
        "document.fonts.add(web_font);\n"
        "web_font.load().then(\n"
        "  function () { web_font_settled = true; },\n"
        "  function (error) { web_font_settled = true; console.warn('web font: ' + error); });\n")


#: Each-Frame JavaScript of the first screen: it does not end before the web font has loaded (or
#: failed), so no text box is ever drawn in a fallback font.
WAIT_FOR_FONT_JS = ("if (!web_font_settled) {\n"
                    "  continueRoutine = true;  // the web font is still loading\n"
                    "}\n")


def write_web_font(folder: Path) -> list[Path]:
    """Write the web font (WOFF, converted from PsychoPy's own TrueType file) and its licence
    into ``folder``; returns their paths relative to it.

    Raises
    ------
    BuildError
        The installed PsychoPy has no Noto Sans (PsychoPy's assets moved).
    """
    from fontTools.ttLib import TTFont
    from psychopy import __file__ as psychopy_init

    source = Path(psychopy_init).parent / "assets" / "fonts" / _FONT_SOURCE
    if not source.is_file():
        raise BuildError(f"the installed PsychoPy has no {source.name} (looked in {source.parent})",
                         hint="install the PsychoPy of requirements-psychopy.txt: "
                              "pip install --no-deps -r requirements-psychopy.txt")
    font = TTFont(str(source), recalcTimestamp=False)     # the same bytes on every build
    notice = font["name"].getDebugName(0) or ""       # the copyright line
    font.flavor = "woff"
    target = folder / WEB_FONT_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    font.save(str(target), reorderTables=False)
    (folder / WEB_FONT_LICENCE).write_text(
        f"{source.stem}.woff: the {WEB_FONT} font of PsychoPy ({source.name}), converted to "
        "WOFF by stimgen for browsers.\n\n" + notice + "\n\n" + OFL_TEXT, encoding="utf-8")
    return [Path(WEB_FONT_FILE), Path(WEB_FONT_LICENCE)]


# -- slider ends -------------------------------------------------------------------------------
SLIDER_CLICK_LISTENER_JS = (
    "// PsychoJS's slider takes a click only strictly inside its bar: a click on an end tick, or\n"
    "// just past it, would be lost, so clicks are also caught here and rate the nearest end\n"
    "slider_click = null;\n"
    "document.addEventListener('pointerdown', function (event) {\n"
    "  if (event.button === 0) {\n"
    "    slider_click = [event.clientX, event.clientY];\n"
    "  }\n"
    "});\n")


def slider_end_clicks_js(sliders, y: dict[str, float], width: float, height: float) -> str:
    """Each-Frame JavaScript of the rating screen: a click within half a tick spacing beyond
    either end of a slider (or a quarter inside it) records that end's value.

    Parameters
    ----------
    sliders : sequence of stimgen.export.psyexp.Slider
        The rating sliders.
    y : dict
        Each slider's vertical centre (height units), by scale.
    width, height : float
        Every slider's size (height units).
    """
    lines = ["if (slider_click !== null) {",
             "  click_x = (slider_click[0] - psychoJS.window.size[0] / 2) / psychoJS.window.size[1];",
             "  click_y = (psychoJS.window.size[1] / 2 - slider_click[1]) / psychoJS.window.size[1];",
             "  slider_click = null;"]
    for slider in sliders:
        spacing = width / (slider.high - slider.low)
        name = f"{slider.scale}_slider"
        lines += [
            f"  if ({name}.status === PsychoJS.Status.STARTED"
            f" && Math.abs(click_y - ({round(y[slider.scale], 4)!r})) <= {round(height, 4)!r}"
            f" && Math.abs(click_x) >= {round(width / 2 - spacing / 4, 4)!r}"
            f" && Math.abs(click_x) <= {round(width / 2 + spacing / 2, 4)!r}) {{",
            f"    {name}.recordRating(click_x > 0 ? {slider.high} : {slider.low});",
            "  }"]
    return "\n".join(lines + ["}"]) + "\n"


# -- the compiled script is JavaScript ----------------------------------------------------------
#: Python that PsychoPy copies into the script when its JavaScript translator (the
#: ``javascripthon`` package, module ``metapensiero.pj``) is missing: literals and the
#: experiment window's Python name.
_PYTHON_LEFT = re.compile(r"\b(?:True|False|None)\b|(?<![\w.$])win\.units\b")
_JS_TOKEN = re.compile(r"""
      (?P<comment>//[^\n]*|/\*.*?\*/)
    | (?P<string>'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*"|`(?:\\.|[^`\\])*`)
    """, re.VERBOSE | re.DOTALL)


def python_left_in_js(js: str) -> list[tuple[int, str]]:
    """(line number, line) of every line of ``js`` where Python remains outside strings and
    comments: ``True``, ``False``, ``None`` or ``win.units``.

    >>> python_left_in_js("a = false; // None here\\nb = 'True';\\nc = None;")
    [(3, 'c = None;')]
    """
    code = _JS_TOKEN.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), js)
    lines = js.splitlines()
    found = []
    for number, line in enumerate(code.splitlines(), start=1):
        if _PYTHON_LEFT.search(line):
            found.append((number, lines[number - 1].strip()))
    return found


def check_compiled_js(js: str, name: str) -> None:
    """Refuse a compiled PsychoJS script that still holds Python.

    Raises
    ------
    BuildError
        Naming the first lines and how to install the translator.
    """
    found = python_left_in_js(js)
    if not found:
        return
    where = "; ".join(f"line {n}: {text[:60]}" for n, text in found[:3])
    raise BuildError(
        f"{name}: PsychoPy wrote Python into the JavaScript of the online experiment "
        f"({len(found)} line(s), e.g. {where}); it would stop at the first of them in the "
        "browser",
        hint="install PsychoPy's JavaScript translator (javascripthon and dukpy, pinned in "
             "requirements-psychopy.txt): pip install --no-deps -r requirements-psychopy.txt, "
             "then build again")


#: The SIL Open Font License 1.1, under which Noto Sans is distributed; it must travel with
#: the font file.
OFL_TEXT = """\
This Font Software is licensed under the SIL Open Font License, Version 1.1.
This license is copied below, and is also available with a FAQ at:
https://openfontlicense.org


-----------------------------------------------------------
SIL OPEN FONT LICENSE Version 1.1 - 26 February 2007
-----------------------------------------------------------

PREAMBLE
The goals of the Open Font License (OFL) are to stimulate worldwide
development of collaborative font projects, to support the font creation
efforts of academic and linguistic communities, and to provide a free and
open framework in which fonts may be shared and improved in partnership
with others.

The OFL allows the licensed fonts to be used, studied, modified and
redistributed freely as long as they are not sold by themselves. The
fonts, including any derivative works, can be bundled, embedded,
redistributed and/or sold with any software provided that any reserved
names are not used by derivative works. The fonts and derivatives,
however, cannot be released under any other type of license. The
requirement for fonts to remain under this license does not apply
to any document created using the fonts or their derivatives.

DEFINITIONS
"Font Software" refers to the set of files released by the Copyright
Holder(s) under this license and clearly marked as such. This may
include source files, build scripts and documentation.

"Reserved Font Name" refers to any names specified as such after the
copyright statement(s).

"Original Version" refers to the collection of Font Software components as
distributed by the Copyright Holder(s).

"Modified Version" refers to any derivative made by adding to, deleting,
or substituting -- in part or in whole -- any of the components of the
Original Version, by changing formats or by porting the Font Software to a
new environment.

"Author" refers to any designer, engineer, programmer, technical
writer or other person who contributed to the Font Software.

PERMISSION & CONDITIONS
Permission is hereby granted, free of charge, to any person obtaining
a copy of the Font Software, to use, study, copy, merge, embed, modify,
redistribute, and sell modified and unmodified copies of the Font
Software, subject to the following conditions:

1) Neither the Font Software nor any of its individual components,
in Original or Modified Versions, may be sold by itself.

2) Original or Modified Versions of the Font Software may be bundled,
redistributed and/or sold with any software, provided that each copy
contains the above copyright notice and this license. These can be
included either as stand-alone text files, human-readable headers or
in the appropriate machine-readable metadata fields within text or
binary files as long as those fields can be easily viewed by the user.

3) No Modified Version of the Font Software may use the Reserved Font
Name(s) unless explicit written permission is granted by the corresponding
Copyright Holder. This restriction only applies to the primary font name as
presented to the users.

4) The name(s) of the Copyright Holder(s) or the Author(s) of the Font
Software shall not be used to promote, endorse or advertise any
Modified Version, except to acknowledge the contribution(s) of the
Copyright Holder(s) and the Author(s) or with their explicit written
permission.

5) The Font Software, modified or unmodified, in part or in whole,
must be distributed entirely under this license, and must not be
distributed under any other license. The requirement for fonts to
remain under this license does not apply to any document created
using the Font Software.

TERMINATION
This license becomes null and void if any of the above conditions are
not met.

DISCLAIMER
THE FONT SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND,
EXPRESS OR IMPLIED, INCLUDING BUT NOT LIMITED TO ANY WARRANTIES OF
MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT
OF COPYRIGHT, PATENT, TRADEMARK, OR OTHER RIGHT. IN NO EVENT SHALL THE
COPYRIGHT HOLDER BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY,
INCLUDING ANY GENERAL, SPECIAL, INDIRECT, INCIDENTAL, OR CONSEQUENTIAL
DAMAGES, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING
FROM, OUT OF THE USE OR INABILITY TO USE THE FONT SOFTWARE OR FROM
OTHER DEALINGS IN THE FONT SOFTWARE.
"""
