"""Builds the PsychoPy Builder experiment (.psyexp) of a bundle from the protocol's task.

Every routine, component, loop and condition column is named from the fixed vocabulary below,
never from protocol text; protocol text enters only as escaped literal parameter values.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from stimgen.errors import StimgenError
from stimgen.export import psychojs

# -- fixed vocabulary -------------------------------------------------------------------------
#: Names of the loops; the conditions files are `conditions/<group>_<loop>.csv`.
PRACTICE_LOOP, MAIN_LOOP = "practice_trials", "trials"

#: Simulated participants answer after SIMULATED_RT_S seconds and shorten every duration by
#: SIMULATED_TIME_SCALE, except that a window waiting for an answer (catch prompt, response
#: timeout) stays at least SIMULATED_MIN_WINDOW_S long, so that the answer always lands in it.
SIMULATED_RT_S, SIMULATED_TIME_SCALE, SIMULATED_MIN_WINDOW_S = 0.05, 0.02, 0.25
assert SIMULATED_RT_S < SIMULATED_MIN_WINDOW_S / 2  # a few frames to spare at 60 Hz

# -- screen geometry, in height units (1.0 = the window's height) ------------------------------
#: Screens are laid out for windows at least as wide as 5:4 (1.25 heights): 1024x768, 1280x1024
#: and every wide screen. All text wraps at TEXT_WRAP, inside that width with a margin.
NARROWEST_WINDOW, TEXT_WRAP = 1.25, 1.1
SLIDER_WIDTH, SLIDER_HEIGHT = 0.8, 0.03   # rating sliders, centred
GAP = 0.02                                # between neighbouring elements and from the edges
LINE = 1.3                                # line pitch, as a multiple of the letter height
#: Width of one character as a fraction of the letter height, generous for Latin text (Noto Sans
#: and Arial average about 0.5): estimates that keep slider labels' words whole.
CHAR_WIDTH = 0.6
#: Font of the slider labels and the key legend; shipped with PsychoPy, and as a web font in
#: online bundles, so the same everywhere.
BOX_FONT = psychojs.WEB_FONT

_GROUP = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}$")


# -- what the experiment shows ----------------------------------------------------------------
@dataclass(frozen=True)
class Slider:
    """One rating slider as it appears on screen."""

    scale: str                 # "valence" or "arousal"; names the components
    question: str              # text above the slider (protocol text)
    labels: tuple[str, ...]    # labels along the slider (protocol text)
    low: int                   # value of the left end
    high: int                  # value of the right end


@dataclass(frozen=True)
class ScreenText:
    """Every piece of protocol text the participant reads, by screen."""

    instructions: str
    practice_intro: str
    practice_done: str
    pause: str
    goodbye: str


@dataclass(frozen=True)
class ExperimentLayout:
    """The protocol's experiment section reduced to what the .psyexp needs; built by
    :func:`layout_from_spec` so that only that function knows the protocol's field names."""

    task: str                              # "rating" | "categorization" | "passive" | "norming"
    groups: tuple[str, ...]                # group names; the start dialog's dropdown
    text: ScreenText                       # screens' text
    has_practice: bool                     # a practice loop is written
    fixation_s: float                      # fixation cross, seconds (0 = none)
    stimulus_s: float | None               # face duration, seconds; None = until response
    timeout_s: float | None                # longest wait for a response, seconds
    iti_s: float                           # blank inter-trial interval, seconds
    image_height: float                    # face height, height units
    text_height: float                     # letter height, height units
    fullscreen: bool                       # full-screen window
    sliders: tuple[Slider, ...] = ()       # rating: the sliders, top to bottom
    advance_key: str | None = None         # rating: key confirming the ratings; None = click
    choice_prompt: str = ""                # categorization, norming: question (protocol text)
    choices: tuple[tuple[str, str], ...] = ()  # categorization, norming: (key, label) per option
    catch_prompt: str = ""                 # passive, norming: catch prompt (protocol text)
    catch_key: str | None = None           # passive, norming: catch key; None = no catch trials
    catch_s: float = 2.0                   # passive: how long the catch prompt waits
    online: bool = False                   # groups assigned by PsychoPy's Counterbalance routine
    clip_s: float | None = None            # show: clip: the clip's duration, s; None = stills


def _seconds(ms) -> float:
    return round(float(ms) / 1000.0, 6)


def layout_from_spec(spec, groups: list[str],
                     answers: list[tuple[str, str]] = ()) -> ExperimentLayout:
    """Reduce a validated ``ExperimentSpec`` to an :class:`ExperimentLayout`.

    Parameters
    ----------
    spec : stimgen.protocol.experiment.ExperimentSpec
        The protocol's validated `experiment:` section.
    groups : list of str
        Group names of the planned design (``Design.groups``).
    answers : list of (key, label)
        Categorization options found in the design's trials; used when the protocol lists
        no ``choices`` (the design then assigns keys "1", "2", ... itself).

    Returns
    -------
    ExperimentLayout
    """
    for group in groups:
        if not _GROUP.match(group):
            raise ValueError(f"group name {group!r} is not a safe identifier")  # a design bug
    task, timing, display = spec.task, spec.timing, spec.display
    stimulus_s = None if timing.stimulus_ms == "until_response" else _seconds(timing.stimulus_ms)
    text = ScreenText(instructions=spec.instructions, practice_intro=spec.text.practice_intro,
                      practice_done=spec.text.practice_done, pause=spec.text.break_text,
                      goodbye=spec.text.goodbye)
    common = dict(
        task=task.type, groups=tuple(groups), text=text,
        has_practice=spec.practice.trials > 0,
        fixation_s=_seconds(timing.fixation_ms), stimulus_s=stimulus_s,
        timeout_s=None if timing.response_timeout_ms is None
        else _seconds(timing.response_timeout_ms),
        iti_s=_seconds(timing.iti_ms), image_height=float(display.image_height),
        text_height=float(display.text_height), fullscreen=bool(display.fullscreen),
        online=bool(spec.online))
    if task.type == "norming":
        catch = task.catch
        return ExperimentLayout(
            **common, sliders=_sliders(task),
            choice_prompt=task.label_prompt,
            choices=tuple((c.key, c.label) for c in task.choices or ()),
            catch_prompt=catch.prompt, catch_key=catch.key if catch.trials > 0 else None,
            catch_s=_seconds(catch.response_ms))
    if task.type == "rating":
        return ExperimentLayout(**common, sliders=_sliders(task),
                                advance_key=task.advance_key if task.advance == "key" else None)
    if task.type == "categorization":
        choices = tuple((c.key, c.label) for c in task.choices) if task.choices else tuple(answers)
        if not choices:
            raise StimgenError(
                "experiment.task: a categorization task has no response options",
                hint="list them, e.g. `choices: [Happy, Sad]`")
        return ExperimentLayout(**common, choice_prompt=task.prompt, choices=choices)
    catch = task.catch
    return ExperimentLayout(**common, catch_prompt=catch.prompt,
                            catch_key=catch.key if catch.trials > 0 else None,
                            catch_s=_seconds(catch.response_ms))


def _sliders(task) -> tuple[Slider, ...]:
    return tuple(Slider(scale=name, question=getattr(task, name).question,
                        labels=tuple(getattr(task, name).labels),
                        low=int(getattr(task, name).low), high=int(getattr(task, name).high))
                 for name in task.scales)


# -- literal text ------------------------------------------------------------------------------
def literal(text: str) -> str:
    """Protocol text as a PsychoPy *string* parameter value that is never read as code.

    PsychoPy reads a string parameter containing an unescaped ``$`` as code; escaping every
    ``$`` as ``\\$`` makes the whole value literal (PsychoPy turns ``\\$`` back into ``$``).

    >>> literal("Costs $5")
    'Costs \\\\$5'
    """
    return str(text).replace("$", "\\$")


def choices_text(choices: tuple[tuple[str, str], ...]) -> str:
    """The key legend of a categorization screen, e.g. ``"1 = Happy    2 = Sad"``. Every space
    inside an option (``key = label``) is a no-break space, so lines wrap only between options;
    between options, three no-break spaces and a space: a browser collapses a run of plain
    spaces into one, but keeps no-break ones.

    >>> choices_text((("1", "Happy"), ("2", "Sad"))).replace("\N{NO-BREAK SPACE}", "~")
    '1~=~Happy~~~ 2~=~Sad'
    """
    nbsp = "\N{NO-BREAK SPACE}"
    return (nbsp * 3 + " ").join(f"{key}{nbsp}={nbsp}{label.replace(' ', nbsp)}"
                                 for key, label in choices)


# -- screen geometry ---------------------------------------------------------------------------
@dataclass(frozen=True)
class SliderLabels:
    """Where a slider's labels go: one text box per label, centred under its tick."""

    x: tuple[float, ...]       # centre of each label, height units
    width: float               # wrap width of every label, height units
    letter_height: float       # letter height, height units


def slider_labels(slider: Slider, letter_height: float) -> SliderLabels:
    """Place a slider's labels so that none leaves a 5:4 window, none overlaps its neighbour
    and no word is broken across lines (PsychoPy hyphenates a word wider than its box).

    Labels are spread evenly from end to end and moved to the nearest tick, as PsychoPy's own
    slider labels are. Their letters are made smaller than ``letter_height`` only when the
    longest word would not fit the label's width, or the label would need more than two lines.

    >>> labels = slider_labels(Slider("valence", "?", ("very unpleasant", "neutral",
    ...                                                 "very pleasant"), 1, 9), 0.032)
    >>> labels.x, labels.width, labels.letter_height
    ((-0.4, 0.0, 0.4), 0.38, 0.032)
    """
    n, span = len(slider.labels), slider.high - slider.low
    if n < 2:
        raise ValueError(f"a slider needs at least 2 labels, got {n}")  # the protocol forbids it
    ticks = [slider.low + int(i * span / (n - 1) + 0.5) for i in range(n)]
    x = tuple(round(SLIDER_WIDTH * ((t - slider.low) / span - 0.5), 4) for t in ticks)
    nearest = min(b - a for a, b in zip(x, x[1:]))
    at_edge = NARROWEST_WINDOW - SLIDER_WIDTH - 2 * GAP  # end labels are centred on the ends
    width = round(min(nearest - GAP, at_edge), 4)
    longest_word = max(len(word) for label in slider.labels for word in label.split() or [""])
    longest_label = max(len(label) for label in slider.labels)
    fitting = min(letter_height,
                  width / (CHAR_WIDTH * max(longest_word, 1)),
                  2 * width / (CHAR_WIDTH * max(longest_label, 1)))
    return SliderLabels(x=x, width=width, letter_height=round(fitting, 4))


# -- experiment construction -------------------------------------------------------------------
def _code(py: str, js: str = "") -> dict:
    return {"Code Type": "Both" if js else "Py", "py": py, "js": js}


def build_experiment(layout: ExperimentLayout, exp_name: str, resources: tuple[str, ...] = ()):
    """Construct the ``psychopy.experiment.Experiment`` for ``layout``.

    Parameters
    ----------
    layout : ExperimentLayout
        What to show.
    exp_name : str
        Experiment name (a safe slug of the study name); names the data files.
    resources : tuple of str
        Files PsychoJS must preload, relative to the experiment folder (Builder's *Online >
        Additional resources*). PsychoPy's own scan cannot find them: the conditions file's
        name depends on the group chosen at run time.

    Returns
    -------
    psychopy.experiment.Experiment
    """
    from psychopy import experiment
    from psychopy.experiment.components.code import CodeComponent
    from psychopy.experiment.components.image import ImageComponent
    from psychopy.experiment.components.keyboard import KeyboardComponent
    from psychopy.experiment.components.slider import SliderComponent
    from psychopy.experiment.components.text import TextComponent
    from psychopy.experiment.components.textbox import TextboxComponent
    from psychopy.experiment.loops import LoopInitiator, LoopTerminator, TrialHandler

    exp = experiment.Experiment()
    settings = exp.settings.params
    settings["expName"].val = exp_name
    settings["runMode"].val = 1  # "Running": no pilot-mode overrides of the participant id
    settings["Units"].val = "height"
    settings["Full-screen window"].val = layout.fullscreen
    settings["color"].val = "$[0,0,0]"
    settings["Resources"].val = list(resources)
    # The PsychoPy version the experiment was written for: Builder and Pavlovia warn (or load
    # that version) instead of silently running it with another one.
    settings["Use version"].val = psychopy_version()
    if layout.online:   # the group is drawn (psychojs.assign_group_code); no simulate online
        settings["Experiment info"].val = "{'participant': '', 'session': '001'}"
    else:
        groups = repr(list(layout.groups))
        settings["Experiment info"].val = (
            "{'participant': '', 'session': '001', "
            f"'group': {groups!r}, 'simulate': 'False'}}")

    def routine(name):
        return exp.addRoutine(name)

    def text(rt, name, value, pos=(0, 0), stop=""):
        comp = TextComponent(exp, rt.name, name=name, text=literal(value), pos=pos,
                             letterHeight=layout.text_height, stopVal=stop,
                             stopType="duration (s)", wrapWidth=TEXT_WRAP)
        rt.addComponent(comp)
        return comp

    def text_box(rt, name, value, pos, size, letter_height):
        # Anchored at its top centre, so that extra lines grow downwards; unlike a text
        # component, its wrap width can differ from the screen's and it never reads markup.
        comp = TextboxComponent(exp, rt.name, name=name, text=literal(value), placeholder="",
                                font=BOX_FONT, pos=pos, size=size, letterHeight=letter_height,
                                anchor="top-center", alignment="top-center",
                                formattingSyntax="raw", stopVal="", stopType="duration (s)")
        rt.addComponent(comp)
        return comp

    def keys(rt, name, allowed, **kwargs):
        # Builder's own spelling, 'a', 'b': a list literal compiles to a list inside a list in
        # PsychoJS, which then never matches a key
        comp = KeyboardComponent(exp, rt.name, name=name,
                                 allowedKeys=", ".join(repr(str(k)) for k in allowed),
                                 stopVal="", **kwargs)
        rt.addComponent(comp)
        return comp

    def code(rt, name, *, before_exp=None, begin_exp=None, frame=None, begin_routine=None):
        comp = CodeComponent(exp, rt.name, name=name)
        for key, block in (("Before Experiment", before_exp), ("Begin Experiment", begin_exp),
                           ("Each Frame", frame), ("Begin Routine", begin_routine)):
            if block:
                comp.params["Code Type"].val = block["Code Type"]
                comp.params[key].val = block["py"]
                comp.params[key.replace(" ", " JS ", 1)].val = block["js"]
        rt.addComponent(comp)
        return comp

    skip_when_simulated = _code("if simulated and t > sim_rt:\n    continueRoutine = False",
                                "// simulated participants run in Python only")

    def screen(name, value):
        rt = routine(name)
        text(rt, f"{name}_text", value)
        keys(rt, f"{name}_keys", ["space"], forceEndRoutine=True, store="nothing")
        code(rt, f"{name}_code", frame=skip_when_simulated)
        return rt

    # welcome: instructions + the session set-up every later routine relies on
    welcome = screen("welcome", layout.text.instructions)
    setup = welcome.getComponentFromName("welcome_code")
    setup.params["Code Type"].val = "Both"
    setup.params["Begin Experiment"].val = _session_setup_py(layout)
    setup.params["Begin JS Experiment"].val = _session_setup_js(layout)

    fixation = routine("fixation")
    text(fixation, "fixation_cross", "+", stop="$fixation_s")
    fixation.settings.params["skipIf"].val = "fixation_s <= 0"

    clip = None
    if layout.clip_s is not None:           # experiment.show: clip, played before the response
        from stimgen.export.clips import add_clip_routine

        clip = add_clip_routine(exp, routine, layout, _image_y(layout))

    trial = routine("trial")
    image = ImageComponent(exp, "trial", name="face_image", image="$stim_file",
                           size=(layout.image_height, layout.image_height),  # stimuli are square
                           pos=(0, _image_y(layout)),
                           stopVal="" if layout.stimulus_s is None else "$stimulus_s",
                           stopType="duration (s)")
    image.params["image"].updates = "set every repeat"
    trial.addComponent(image)
    if layout.timeout_s is not None:
        trial.settings.params["stopType"].val = "duration (s)"
        trial.settings.params["stopVal"].val = "$response_timeout_s"
    _add_task_components(exp, trial, layout, text, text_box, keys, code, SliderComponent)

    label = _label_routine(exp, layout, routine, text, text_box, keys, code) \
        if layout.task == "norming" and layout.choices else None

    catch = None
    if layout.catch_key:
        catch = routine("catch")
        text(catch, "catch_text", layout.catch_prompt)
        keys(catch, "catch_keys", [layout.catch_key], forceEndRoutine=True, store="first key")
        catch.settings.params["stopType"].val = "duration (s)"
        catch.settings.params["stopVal"].val = "$catch_s"
        catch.settings.params["skipIf"].val = "is_catch == 0"
        code(catch, "catch_code", frame=_code(
            "if simulated and t > sim_rt:\n"
            "    catch_keys.keys = catch_key\n"
            "    catch_keys.rt = t\n"
            "    catch_keys.duration = None\n"
            "    continueRoutine = False",
            "// simulated participants run in Python only"))

    iti = routine("iti")
    text(iti, "iti_blank", " ", stop="$iti_s")  # an empty routine would end at once
    iti.settings.params["skipIf"].val = "iti_s <= 0"

    pause = screen("pause", layout.text.pause)
    pause.settings.params["skipIf"].val = "break_after == 0"
    goodbye = screen("goodbye", layout.text.goodbye)

    # flow
    flow = exp.flow
    trial_routines = [fixation] + ([clip] if clip else []) + [trial] \
        + ([label] if label else []) + ([catch] if catch else []) + [iti]

    def add_loop(name, conditions_file, inner):
        loop = TrialHandler(exp, name=name, loopType="sequential", nReps=1,
                            conditionsFile=conditions_file)
        flow.append(LoopInitiator(loop=loop))
        for rt in inner:
            flow.append(rt)
        flow.append(LoopTerminator(loop=loop))

    if layout.online:
        _add_counterbalance(exp, flow, layout)
        block = psychojs.assign_group_code(layout.groups, COUNTERBALANCE)
        setup.params["Begin Routine"].val = block["py"]
        setup.params["Begin JS Routine"].val = block["js"]
        setup.params["Begin JS Experiment"].val += psychojs.shelf_fallback_js()
        if uses_web_font(layout):
            setup.params["Before JS Experiment"].val = psychojs.font_loader_js()
            setup.params["Each JS Frame"].val = psychojs.WAIT_FOR_FONT_JS
    flow.append(welcome)
    if layout.has_practice:
        flow.append(screen("practice_intro", layout.text.practice_intro))
        add_loop(PRACTICE_LOOP, _conditions_param(PRACTICE_LOOP), trial_routines)
        flow.append(screen("practice_done", layout.text.practice_done))
    add_loop(MAIN_LOOP, _conditions_param(MAIN_LOOP), trial_routines + [pause])
    flow.append(goodbye)
    return exp


def uses_web_font(layout: ExperimentLayout) -> bool:
    """Whether the experiment has text boxes (slider labels, key legends), whose font an online
    bundle ships as a web font; passive tasks have none."""
    return bool(layout.sliders or layout.choices)


def psychopy_version() -> str:
    """The installed PsychoPy's version as Builder's *Use PsychoPy version* names it
    (``major.minor.patch``, e.g. ``2026.2.5``)."""
    import psychopy

    return ".".join(psychopy.__version__.split(".")[:3])


def conditions_filename(group: str, loop: str) -> str:
    """Relative path of a group's conditions file for ``loop``, e.g. ``conditions/g01_trials.csv``."""
    return f"conditions/{group}_{loop}.csv"


def _conditions_param(loop: str) -> str:
    # The group comes from the start dialog's dropdown; the name is code, not protocol text.
    return f"$'conditions/' + expInfo['group'] + '_{loop}.csv'"


def _image_y(layout: ExperimentLayout) -> float:
    if layout.task in ("rating", "norming"):
        return round(0.5 - 0.04 - layout.image_height / 2, 4)
    if layout.task == "categorization":
        return round(0.08, 4)
    return 0.0


def _below_image(layout: ExperimentLayout) -> float:
    return _image_y(layout) - layout.image_height / 2


def _session_setup_py(layout: ExperimentLayout) -> str:
    """Begin-Experiment code: durations, and the simulated-participant switch (no protocol text)."""
    def scaled(seconds):
        return "None" if seconds is None else f"{seconds!r} * time_scale"

    def answer_window(seconds):
        return "None" if seconds is None else f"max({seconds!r} * time_scale, answer_min_s)"

    return (
        "# simulated participants (start-dialog field 'simulate'): short durations, random answers\n"
        "simulated = str(expInfo.get('simulate', False)).strip().lower() in ('true', '1', 'yes')\n"
        f"time_scale = {SIMULATED_TIME_SCALE!r} if simulated else 1.0\n"
        f"sim_rt = {SIMULATED_RT_S!r}\n"
        "# a window that waits for an answer stays long enough for the simulated one\n"
        f"answer_min_s = {SIMULATED_MIN_WINDOW_S!r} if simulated else 0.0\n"
        f"fixation_s = {layout.fixation_s!r} * time_scale\n"
        f"stimulus_s = {scaled(layout.stimulus_s)}\n"
        f"response_timeout_s = {answer_window(layout.timeout_s)}\n"
        f"iti_s = {layout.iti_s!r} * time_scale\n"
        f"catch_s = {answer_window(layout.catch_s)}\n"
        f"catch_key = {layout.catch_key!r}\n"
        f"choice_keys_allowed = {[k for k, _ in layout.choices]!r}\n"
        + _clip_setup(layout, ""))


def _session_setup_js(layout: ExperimentLayout) -> str:
    stim = "null" if layout.stimulus_s is None else repr(layout.stimulus_s)
    timeout = "null" if layout.timeout_s is None else repr(layout.timeout_s)
    return (
        "// simulated participants run in Python only\n"
        "simulated = false;\n"
        f"sim_rt = {SIMULATED_RT_S!r};\n"
        f"fixation_s = {layout.fixation_s!r};\n"
        f"stimulus_s = {stim};\n"
        f"response_timeout_s = {timeout};\n"
        f"iti_s = {layout.iti_s!r};\n"
        f"catch_s = {layout.catch_s!r};\n"
        + _clip_setup(layout, ";"))


def _clip_setup(layout: ExperimentLayout, end: str) -> str:
    """The clip routine's longest duration (clips play at their own speed, simulated or not)."""
    if layout.clip_s is None:
        return ""
    from stimgen.export.clips import CLIP_MARGIN_S

    return f"clip_max_s = {round(layout.clip_s + CLIP_MARGIN_S, 6)!r}{end}\n"


def _add_task_components(exp, trial, layout, text, text_box, keys, code,
                         SliderComponent) -> None:
    """The response part of the trial routine, by task type.

    Below the face, top to bottom with GAP between: per slider its question (one line), the
    slider and its labels (room for two lines); or the categorization question (one line) and
    the key legend, which may take several lines.
    """
    line = LINE * layout.text_height
    if layout.task in ("rating", "norming"):
        top = _below_image(layout)
        names, slider_ys = [], {}
        for slider in layout.sliders:
            question_y = top - GAP - line / 2
            slider_y = question_y - line / 2 - GAP - SLIDER_HEIGHT / 2
            slider_ys[slider.scale] = slider_y
            labels = slider_labels(slider, layout.text_height * 0.8)
            labels_top = slider_y - SLIDER_HEIGHT / 2 - GAP
            text(trial, f"{slider.scale}_question", slider.question, pos=(0, round(question_y, 4)))
            # PsychoPy's own slider labels are as wide as one tick and break words to fit, so
            # the labels are text boxes of their own, placed where PsychoPy would put them.
            comp = SliderComponent(
                exp, trial.name, name=f"{slider.scale}_slider",
                ticks=repr(tuple(range(slider.low, slider.high + 1))),
                labels="None", granularity=1, size=repr((SLIDER_WIDTH, SLIDER_HEIGHT)),
                pos=f"(0, {round(slider_y, 4)!r})", letterHeight=labels.letter_height,
                forceEndRoutine=False, styleTweaks=[], style="rating")
            trial.addComponent(comp)
            names.append(comp.params["name"].val)
            label_lines = 2 * LINE * labels.letter_height
            for n, (label, x) in enumerate(zip(slider.labels, labels.x), start=1):
                text_box(trial, f"{slider.scale}_label_{n}", label,
                         pos=(x, round(labels_top, 4)),
                         size=(labels.width, round(label_lines, 4)),
                         letter_height=labels.letter_height)
            top = labels_top - label_lines
        rated_py = " and ".join(f"{n}.getRating() is not None" for n in names)
        rated_js = " && ".join(f"({n}.getRating() != null)" for n in names)
        randomise = "".join(
            f"    {s.scale}_slider.recordRating(randint({s.low}, {s.high + 1}), rt=t)\n"
            for s in layout.sliders)
        if layout.advance_key:
            keys(trial, "advance_keys", [layout.advance_key], forceEndRoutine=False,
                 store="last key")
            done_py, done_js = f"({rated_py}) and bool(advance_keys.keys)", (
                f"({rated_js}) && (advance_keys.keys != null && advance_keys.keys.length > 0)")
        else:
            done_py, done_js = rated_py, rated_js
        end_clicks = {}
        if layout.online:       # PsychoJS's sliders ignore a click on an end tick (see psychojs.py)
            end_clicks = dict(
                begin_exp=_code("", psychojs.SLIDER_CLICK_LISTENER_JS),
                begin_routine=_code("", "slider_click = null;  // clicks before this screen\n"))
        code(trial, "trial_code", frame=_code(
            "if simulated and t > sim_rt:\n" + randomise
            + (f"    advance_keys.keys = {layout.advance_key!r}\n"
               "    advance_keys.rt = t\n"
               "    advance_keys.duration = None\n" if layout.advance_key else "")
            + f"if {done_py}:\n    continueRoutine = False",
            (psychojs.slider_end_clicks_js(layout.sliders, slider_ys, SLIDER_WIDTH,
                                           SLIDER_HEIGHT) if layout.online else "")
            + f"if ({done_js}) {{\n    continueRoutine = false;\n}}"), **end_clicks)
    elif layout.task == "categorization":
        _add_choice_components(trial, layout, _below_image(layout), text, text_box, keys, code,
                               "choice_keys")
    # passive viewing: the routine ends with the face (its duration is `stimulus_s`)


#: Code names of the norming task's label routine (face, question, legend, keys).
LABEL_ROUTINE, LABEL_KEYS = "label", "label_keys"


def _label_routine(exp, layout, routine, text, text_box, keys, code):
    """The norming task's forced choice: the face again, the question and one key per label."""
    from psychopy.experiment.components.image import ImageComponent

    rt = routine(LABEL_ROUTINE)
    image = ImageComponent(exp, rt.name, name="label_image", image="$stim_file",
                           size=(layout.image_height, layout.image_height), pos=(0, 0.08),
                           stopVal="", stopType="duration (s)")
    image.params["image"].updates = "set every repeat"
    rt.addComponent(image)
    _add_choice_components(rt, layout, 0.08 - layout.image_height / 2, text, text_box, keys,
                           code, LABEL_KEYS)
    return rt


def _add_choice_components(rt, layout, top, text, text_box, keys, code, name) -> None:
    """Question, key legend and keyboard of a forced choice below ``top`` (height units)."""
    line = LINE * layout.text_height
    prompt_y = top - GAP - line / 2
    legend_top = prompt_y - line / 2 - GAP
    text(rt, f"{rt.name}_prompt" if rt.name != "trial" else "choice_prompt",
         layout.choice_prompt, pos=(0, round(prompt_y, 4)))
    text_box(rt, f"{rt.name}_legend" if rt.name != "trial" else "choice_legend",
             choices_text(layout.choices),
             pos=(0, round(legend_top, 4)),
             size=(TEXT_WRAP, round(max(legend_top + 0.5 - GAP, line), 4)),
             letter_height=layout.text_height)
    keys(rt, name, [k for k, _ in layout.choices], forceEndRoutine=True,
         store="first key", storeCorrect=True, correctAns="$correct_key")
    code(rt, f"{rt.name}_code", frame=_code(
        "if simulated and t > sim_rt:\n"
        f"    {name}.keys = str(randchoice(choice_keys_allowed))\n"
        f"    {name}.rt = t\n"
        f"    {name}.duration = None\n"
        f"    {name}.corr = int({name}.keys == str(correct_key))\n"
        "    continueRoutine = False",
        "// simulated participants run in Python only"))


#: Name of the online bundle's Counterbalance routine; its answer is saved in the data file as
#: ``counterbalance.group`` (PsychoPy writes it), the group used as ``group`` with
#: ``group_source`` (:func:`stimgen.export.psychojs.assign_group_code`).
COUNTERBALANCE = "counterbalance"


def _add_counterbalance(exp, flow, layout) -> None:
    """Online: PsychoPy's Counterbalance routine (the Pavlovia shelf, PsychoPy 2024.1+) draws
    the group, uniformly with one slot per group and repeat, so every group fills equally."""
    from psychopy.experiment.routines.counterbalance import CounterbalanceRoutine

    balance = CounterbalanceRoutine(exp, name=COUNTERBALANCE, specMode="uniform",
                                    nGroups=len(layout.groups), nSlots=1, nReps=1000,
                                    endExperimentOnDepletion=True)
    exp.addStandaloneRoutine(COUNTERBALANCE, balance)
    flow.append(balance)
