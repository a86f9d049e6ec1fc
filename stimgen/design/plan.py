"""Experiment planning: the per-group trial tables of an experiment over a stimuli table
(``plan_design``), built from the squares and shuffles of :mod:`stimgen.design.counterbalance`
and deterministic from the seed.

``plan_experiment_over`` plans an experiment over the stimuli a protocol will make
(``planned_stimuli``), before any face is drawn: the check behind ``stimgen validate`` and the
start of a build (:func:`stimgen.protocol.loader.plan_experiment`), with warnings about
designs that undermine themselves and an estimate of the session length.

Trial tables (one per group; what the PsychoPy bundle writes as its conditions files) have
these columns, in this order. Names are fixed here, never derived from protocol text, and
avoid PsychoPy's reserved names (``image``, ``t``, ``win``, ``random``, ``trials``,
``thisN``, names starting with ``this``/``these``/``continue`` or ending in ``Clock``):

=================  ====================================================================
``position``       1-based order of presentation within the group, practice trials first
``block``          0 for practice trials, then 1, 2, ... (one block unless blocked)
``block_label``    level of the blocking factor (blocked designs), ``practice``, or ""
``is_practice``    True for practice trials
``break_after``    True when a rest screen follows this trial
``stim_id``        stimulus id (file stem), as in stimuli.tsv ``stimulus_id``
``stim_file``      image path relative to the build folder, e.g. ``stimuli/id01_happy_i075.png``
``identity``       face identity
``emotion``        emotion name as in stimuli.tsv (``Happy``, ``neutral``, ``a123``, labels)
``target_kind``    named, angle, point or neutral
``angle``          target angle in degrees (empty for neutral)
``intensity``      target intensity (0 for neutral)
``target_valence`` / ``target_arousal`` / ``achieved_valence`` / ``achieved_arousal``
``correct_key``    categorization only: the key of the correct choice
``correct_label``  categorization only: the label of the correct choice
``is_catch``       passive only: True on catch (attention-check) trials
``stimulus_list``  random designs with ``lists``: the list (1, 2, ...) the group shows
=================  ====================================================================
"""
from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from stimgen.build_folder import as_bool, stimulus_path
from stimgen.circumplex import emotion_label_key, pinned_emotion_name, suggest
from stimgen.design.counterbalance import (CATCH_STREAM, LIST_STREAM, PRACTICE_STREAM,
                                           constrained_shuffle, group_name,
                                           group_rng, longest_run, participant_rule,
                                           stimulus_lists, williams_square)
from stimgen.errors import DesignError, ProtocolProblem, StimgenError
from stimgen.plan import IdentityUnit, plan_units  # noqa: F401  (plan_units: the doctests)
from stimgen.protocol.experiment import (DEFAULT_CHOICE_KEYS, CategorizationTask,
                                         ExperimentSpec, NormingTask, evaluated_by_psychopy)

if TYPE_CHECKING:
    from stimgen.settings import BundleSpec

log = logging.getLogger("stimgen")

TRIAL_COLUMNS: tuple[str, ...] = (
    "position", "block", "block_label", "is_practice", "break_after",
    "stim_id", "stim_file", "identity", "emotion", "target_kind", "angle", "intensity",
    "target_valence", "target_arousal", "achieved_valence", "achieved_arousal",
)
CATEGORIZATION_COLUMNS: tuple[str, ...] = ("correct_key", "correct_label")
PASSIVE_COLUMNS: tuple[str, ...] = ("is_catch",)
#: The list a group shows (random designs with ``lists``), 1-based.
LIST_COLUMN = "stimulus_list"

#: stimuli.tsv column -> trial-table column, for the stimulus-derived columns.
STIMULUS_COLUMNS: dict[str, str] = {
    "stimulus_id": "stim_id", "file": "stim_file", "identity": "identity",
    "emotion": "emotion", "target_kind": "target_kind", "angle": "angle",
    "intensity": "intensity", "target_valence": "target_valence",
    "target_arousal": "target_arousal", "achieved_valence": "achieved_valence",
    "achieved_arousal": "achieved_arousal",
}


# Protocol fields that design errors point at (the loader turns them into file:line:column).
_DESIGN = ("experiment", "design")
_CHOICES = ("experiment", "task", "choices")


def trial_columns(task_type: str, labels: bool = False, lists: bool = False) -> tuple[str, ...]:
    """The columns of a trial table for a task type (``rating``, ``categorization``,
    ``passive``, ``norming``; ``labels``: a norming task with a forced choice; ``lists``: a
    design that splits the stimuli into lists).

    >>> trial_columns("passive")[-1], trial_columns("norming", labels=True, lists=True)[-4:]
    ('is_catch', ('correct_key', 'correct_label', 'is_catch', 'stimulus_list'))
    """
    extra = {"categorization": CATEGORIZATION_COLUMNS, "passive": PASSIVE_COLUMNS,
             "norming": (CATEGORIZATION_COLUMNS if labels else ()) + PASSIVE_COLUMNS}
    return TRIAL_COLUMNS + extra.get(task_type, ()) + ((LIST_COLUMN,) if lists else ())


# -- plan ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Design:
    """The planned experiment: each group's ordered trials and an audit table."""

    groups: list[str]                  # group names, g01 ... (safe as identifiers and file names)
    trials: dict[str, pd.DataFrame]    # per group: ordered trials, columns = ``columns``
    table: pd.DataFrame                # design.csv: group + trial columns, all groups stacked
    rule: str                          # participant-to-group rule, in words
    summary: dict                      # JSON-ready facts for the report and the README
    columns: tuple[str, ...] = TRIAL_COLUMNS  # trial-table columns (task-dependent)


def plan_design(experiment: ExperimentSpec, stimuli: pd.DataFrame, seed: int) -> Design:
    """Plan every group's trial order for an experiment over a build's stimuli.

    Parameters
    ----------
    experiment : ExperimentSpec
        The protocol's ``experiment:`` section.
    stimuli : pandas.DataFrame
        The build's stimuli.tsv (one row per stimulus).
    seed : int
        The protocol's seed; the same seed gives the same design.

    Returns
    -------
    Design

    Raises
    ------
    DesignError
        When the selection names unknown stimuli, the design cannot be balanced with the
        stimuli at hand, or the run limits cannot be met; ``field`` names the setting.
    StimgenError
        When ``stimuli`` lacks the columns of the build's stimuli.tsv.

    Examples
    --------
    >>> rows = [dict(stimulus_id=f"{i}_{e}", file=f"stimuli/{i}_{e}.png", identity=i,
    ...              emotion=e, target_kind="named", angle=a, intensity=1.0,
    ...              target_valence=0.0, target_arousal=0.0, achieved_valence=0.0,
    ...              achieved_arousal=0.0)
    ...         for i in ("id01", "id02") for e, a in (("Happy", 8.0), ("Sad", 208.0))]
    >>> design = plan_design(ExperimentSpec(), pd.DataFrame(rows), seed=1)
    >>> design.groups[:2], len(design.trials["g01"])
    (['g01', 'g02'], 4)
    """
    _check_stimuli(stimuli, experiment)
    stimuli = stimuli.reset_index(drop=True)
    reserved = _known(experiment.practice.identities, stimuli["identity"],
                      ("practice", "identities"), made_by="identities")
    selected = select_stimuli(stimuli, experiment)
    main = selected[~selected["identity"].astype(str).isin(reserved)].reset_index(drop=True)
    if main.empty:
        raise DesignError(("experiment", "practice", "identities"),
                          "the experiment has no main trials: experiment.stimuli and "
                          "practice.identities leave no stimulus",
                          hint="widen experiment.stimuli or reserve fewer practice identities")
    answers = _answer_table(experiment, main)
    planner = _PLANNERS[experiment.design.type]
    orders, extra = planner(experiment, main, seed)
    groups = [group_name(g, len(orders)) for g in range(len(orders))]

    practice_pool, practice_source = _practice_pool(experiment, stimuli, main, answers)
    columns = trial_columns(experiment.task.type,
                            labels=getattr(experiment.task, "labels", None) is not None,
                            lists="lists" in extra)
    trials = {}
    for g, (name, blocks) in enumerate(zip(groups, orders)):
        practice = _practice_rows(practice_pool, experiment.practice.trials, seed, g)
        trials[name] = _trial_table(experiment, main, blocks, practice, answers, seed, g,
                                    columns, extra.get("group_lists", {}).get(name))
    table = pd.concat([df.assign(group=name) for name, df in trials.items()],
                      ignore_index=True)[["group", *columns]]
    noun = "order" if experiment.design.type == "random" else "group"
    rule = participant_rule(len(groups), noun)
    if "lists" in extra:
        rule += (f"; order g shows list ((g - 1) mod {extra['lists']}) + 1, so each stimulus "
                 f"is rated by {extra['raters_per_stimulus']} of every {len(groups)} "
                 "participants")
    summary = _summary(experiment, groups, trials, main, rule, practice_source, extra)
    return Design(groups=groups, trials=trials, table=table, rule=rule, summary=summary,
                  columns=columns)


def _check_stimuli(stimuli: pd.DataFrame, experiment: ExperimentSpec) -> None:
    needed = list(STIMULUS_COLUMNS)
    if experiment.stimuli.exclude_out_of_tolerance:
        needed.append("out_of_tolerance")
    missing = [c for c in needed if c not in stimuli.columns]
    if missing:
        raise StimgenError(f"the stimuli table lacks column(s) {', '.join(missing)}",
                           hint="pass the build's stimuli.tsv (see docs/experiment-design.md)")
    if stimuli.empty:
        raise StimgenError("the stimuli table is empty: there is nothing to show")


def _known(names: Sequence, column: pd.Series, where: tuple[str, ...], *,
           by_key=str, pinned=lambda name: None, made_by: str = "") -> list[str]:
    """Every spelling in ``column`` of ``names`` (matched by ``by_key``, or exactly where
    ``pinned`` gives the one value a name stands for); unknown ones raise DesignError pointing
    at ``experiment.<where>.<index>`` (``made_by``: the protocol key that would make such
    stimuli, named in the hint)."""
    spelling: dict[str, list[str]] = {}
    for value in column.astype(str).unique():
        spelling.setdefault(by_key(value), []).append(str(value))
    found = []
    for index, name in enumerate(names):
        exact = pinned(name)
        if exact is not None and exact in spelling.get(by_key(exact), []):
            found.append(exact)
            continue
        if exact is not None:
            raise DesignError(("experiment", *where, index),
                              f"{name!r} ({exact}) is not among the built stimuli",
                              hint=f"choose from {', '.join(sorted(column.astype(str).unique()))}"
                                   + (f", or add it to {made_by}" if made_by else ""))
        if by_key(name) not in spelling:
            lower = {value.lower(): value for values in spelling.values() for value in values}
            close = suggest(str(name).lower(), list(lower))
            hint = (f"did you mean {lower[close]!r}?" if close else
                    f"choose from {', '.join(sorted(v for vs in spelling.values() for v in vs))}")
            if made_by:
                hint += f" Otherwise add it to {made_by}" if close else f", or add it to {made_by}"
            raise DesignError(("experiment", *where, index),
                              f"{name!r} is not among the built stimuli", hint=hint)
        found += spelling[by_key(name)]
    return found


def select_stimuli(stimuli: pd.DataFrame, experiment: ExperimentSpec) -> pd.DataFrame:
    """The rows of ``stimuli`` that ``experiment.stimuli`` selects, in their original order."""
    chosen = experiment.stimuli
    keep = pd.Series(True, index=stimuli.index)
    if chosen.emotions is not None:
        names = _known(chosen.emotions, stimuli["emotion"], ("stimuli", "emotions"),
                       by_key=emotion_label_key, pinned=pinned_emotion_name,
                       made_by="targets")
        keep &= stimuli["emotion"].astype(str).isin(names)
    if chosen.identities is not None:
        names = _known(chosen.identities, stimuli["identity"], ("stimuli", "identities"),
                       made_by="identities")
        keep &= stimuli["identity"].astype(str).isin(names)
    neutral = stimuli["target_kind"] == "neutral"
    if chosen.intensities is not None:
        wanted = np.asarray(chosen.intensities, dtype=float)
        close = np.isclose(stimuli["intensity"].to_numpy(float)[:, None], wanted[None, :],
                           atol=1e-6)
        missing = [i for i, hit in enumerate(close.any(axis=0)) if not hit]
        if missing:
            values = ", ".join(f"{chosen.intensities[i]:g}" for i in missing)
            raise DesignError(("experiment", "stimuli", "intensities", missing[0]),
                              f"intensit{'ies' if len(missing) > 1 else 'y'} {values} "
                              f"{'are' if len(missing) > 1 else 'is'} not among the built "
                              "stimuli",
                              hint="list intensities that the protocol's targets make")
        keep &= close.any(axis=1) | neutral
    if not chosen.include_neutral:
        keep &= ~neutral
    if chosen.exclude_out_of_tolerance:
        keep &= ~stimuli["out_of_tolerance"].map(as_bool)
    selected = stimuli[keep].reset_index(drop=True)
    if selected.empty:
        raise DesignError(("experiment", "stimuli"), "selects no stimulus",
                          hint="check emotions, identities and intensities against the "
                               "protocol's targets and identities")
    return selected


# -- categorization answers -------------------------------------------------------------------
def _answer_table(experiment: ExperimentSpec, main: pd.DataFrame) -> dict[str, tuple[str, str]]:
    """For categorization: stimulus emotion key -> (correct key, correct label); else {}."""
    task = experiment.task
    if isinstance(task, NormingTask) and task.labels is not None:
        choices = task.labels               # the "none of these" option is never correct
    elif isinstance(task, CategorizationTask):
        choices = task.choices
    else:
        return {}
    if choices is None:
        emotions = _ordered_levels(main, "emotion")
        if len(emotions) > len(DEFAULT_CHOICE_KEYS):
            raise DesignError(
                _CHOICES, f"a categorization task over {len(emotions)} emotions needs explicit "
                f"choices (at most {len(DEFAULT_CHOICE_KEYS)} are made automatically)",
                hint="list experiment.task.choices, or narrow experiment.stimuli.emotions")
        # one choice per emotion; two names of one emotion ("Happy", "Happiness") share it
        answers = {}
        for emotion in emotions:
            if emotion_label_key(emotion) not in answers:
                answers[emotion_label_key(emotion)] = (DEFAULT_CHOICE_KEYS[len(answers)],
                                                       str(emotion))
        return answers
    answers: dict[str, tuple[str, str]] = {}
    for index, choice in enumerate(choices):
        for emotion in choice.matches():
            key = emotion_label_key(emotion)
            if key in answers:
                raise DesignError(
                    (*_CHOICES, index, "emotions" if choice.emotions else "label"),
                    f"emotion {emotion!r} is correct for two choices "
                    f"({answers[key][1]!r} and {choice.label!r})",
                    hint="each stimulus emotion may belong to one choice only (names of one "
                         "emotion count as one: happy/happiness, afraid/fearful/fear, ...)")
            answers[key] = (choice.key, choice.label)
    unanswered = sorted({str(e) for e in main["emotion"]
                         if emotion_label_key(e) not in answers})
    if unanswered:
        hint = ("add them to a choice's `emotions:` list, or leave them out with "
                "experiment.stimuli.emotions")
        if "neutral" in unanswered:
            hint += ("; the neutral faces come from targets.neutral: true (add a choice such "
                     "as `{label: neutral}`, or set experiment.stimuli.include_neutral: false)")
        strays = _stray_choices(choices, unanswered, {emotion_label_key(e) for e in main["emotion"]})
        raise DesignError(
            _CHOICES, f"no choice is correct for emotion(s) {', '.join(unanswered)}",
            hint=hint, related=strays)
    return answers


def _stray_choices(choices, unanswered: list[str], stimulus_keys: set[str]
                   ) -> list[tuple[tuple, str]]:
    """(field, "choice ... matches no emotion: did you mean ...?") for every choice name that
    names no emotion of the stimuli nor any known emotion: most likely a typo. The suggestion
    looks first among the names of the ``unanswered`` emotions, then among all
    (:func:`stimgen.circumplex.suggest_emotion`: never across valence)."""
    from stimgen.circumplex import (NOT_TARGETS, UnknownEmotionError, emotion_by_name,
                                    normalise_emotion_name, suggest_emotion)

    def known(name: str):
        try:
            return emotion_by_name(name)
        except UnknownEmotionError:
            return None

    missing = [e for e in map(known, unanswered) if e is not None]
    strays = []
    for index, choice in enumerate(choices):
        for position, name in enumerate(choice.matches()):
            word = normalise_emotion_name(name)
            if emotion_label_key(name) in stimulus_keys or word in NOT_TARGETS or known(name):
                continue
            field = (*_CHOICES, index) + (("emotions", position) if choice.emotions else ())
            close = (suggest_emotion(word, missing) if missing else None) or suggest_emotion(word)
            strays.append((field, f'choice "{name}" names no emotion'
                                  + (f': did you mean "{close}"?' if close else "")))
    return strays


# -- level order of a factor -----------------------------------------------------------------
def _ordered_levels(frame: pd.DataFrame, factor: str) -> list:
    """Levels of ``factor`` in reading order: emotions by angle (no angle last), others sorted."""
    if factor == "emotion":
        angle = frame.groupby("emotion", sort=False)["angle"].min()
        return sorted(angle.index, key=lambda e: (bool(np.isnan(angle[e])),
                                                  0.0 if np.isnan(angle[e]) else angle[e], str(e)))
    return sorted(frame[factor].unique())


def _level_label(value) -> str:
    return f"{value:g}" if isinstance(value, (float, np.floating)) else str(value)


# -- designs: each returns per-group blocks [(label, row indices into main), ...] -----------
Blocks = list[tuple[str, list[int]]]


def _repeat(rows: Sequence[int], repetitions: int) -> list[int]:
    return list(rows) * repetitions


def _shuffled(main: pd.DataFrame, rows: list[int], limits: dict[str, int],
              rng: np.random.Generator, where: str = "") -> list[int]:
    keys = {name: main[name].to_numpy()[rows] for name in limits}
    # A limit on an attribute that has one value here (emotion in the neutral block) cannot
    # vary the order, so it is skipped rather than reported as unsatisfiable.
    varied = {name: cap for name, cap in limits.items() if len(set(keys[name])) > 1}
    try:
        return constrained_shuffle(rows, keys, varied, rng)
    except DesignError as error:
        if not where:
            raise
        raise DesignError(error.field, f"{where}: {error.message}", hint=error.hint) from None


def _plan_random(experiment: ExperimentSpec, main: pd.DataFrame, seed: int):
    design = experiment.design
    limits = design.max_run.limits()
    members = [list(range(len(main)))]
    if design.lists:                 # each order shows one list: a part of the stimuli
        members = _stimulus_lists(main, design.lists, seed)
    orders = []
    for g in range(design.participants):
        rows = _repeat(members[g % len(members)], design.repetitions)
        where = f"list {g % len(members) + 1}" if design.lists else ""
        orders.append([("", _shuffled(main, rows, limits, group_rng(seed, g), where))])
    if not design.lists:
        return orders, {}
    n = design.participants
    return orders, {
        "lists": len(members), "list_sizes": [len(m) for m in members],
        "group_lists": {group_name(g, n): g % len(members) + 1 for g in range(n)},
        "raters_per_stimulus": n // len(members)}


def _stimulus_lists(main: pd.DataFrame, n_lists: int, seed: int) -> list[list[int]]:
    """Rows of ``main`` in ``n_lists`` lists with equal shares of every emotion x intensity
    cell (to one stimulus), intensities and identities spread evenly
    (:func:`~stimgen.design.counterbalance.stimulus_lists`)."""
    if n_lists > len(main):
        raise DesignError(_DESIGN + ("lists",),
                          f"{n_lists} lists, but the experiment has only {len(main)} stimuli",
                          hint=f"use at most {len(main)} lists, or leave lists out")
    assignment = stimulus_lists(main["emotion"].astype(str), main["intensity"].round(6),
                                main["identity"].astype(str), n_lists,
                                group_rng(seed, 0, LIST_STREAM))
    return [[row for row, k in enumerate(assignment) if k == list_index]
            for list_index in range(n_lists)]


def _plan_blocked(experiment: ExperimentSpec, main: pd.DataFrame, seed: int):
    design = experiment.design
    levels = _ordered_levels(main, design.factor)
    square = williams_square(len(levels))
    n_groups = design.groups or len(square)
    if n_groups % len(square):
        raise DesignError(
            _DESIGN + ("groups",), f"{n_groups} groups cannot balance {len(levels)} "
            f"{design.factor} blocks: the balanced square has {len(square)} rows",
            hint=f"use a multiple of {len(square)} groups, or leave groups out")
    # The block factor is constant within a block, so its own run limit does not apply.
    limits = {k: v for k, v in design.max_run.limits().items() if k != design.factor}
    members = {lv: np.flatnonzero((main[design.factor] == lv).to_numpy()).tolist()
               for lv in levels}
    orders = []
    for g in range(n_groups):
        rng = group_rng(seed, g)
        row = square[g % len(square)]
        orders.append([(_level_label(levels[c]),
                        _shuffled(main, _repeat(members[levels[c]], design.repetitions),
                                  limits, rng, f"block {_level_label(levels[c])!r}"))
                       for c in row])
    extra = {"factor": design.factor, "levels": [_level_label(lv) for lv in levels],
             "square": square,
             "block_orders": {group_name(g, n_groups): [label for label, _ in orders[g]]
                              for g in range(n_groups)}}
    return orders, extra


def _plan_latin_square(experiment: ExperimentSpec, main: pd.DataFrame, seed: int):
    design = experiment.design
    factor = design.conditions
    # Neutral faces have no intensity, so with intensity conditions every list shows them.
    common = (main["target_kind"] == "neutral").to_numpy() if factor == "intensity" \
        else np.zeros(len(main), dtype=bool)
    rotated = main[~common]
    levels = _ordered_levels(rotated, factor)
    identities = sorted(rotated["identity"].astype(str).unique())
    k = len(levels)
    if k < 2:
        raise DesignError(
            _DESIGN + ("conditions",), f"a latin-square design needs at least 2 {factor} "
            f"conditions; the experiment's stimuli have {k}",
            hint="make more targets, widen experiment.stimuli, or use design type random")
    n_groups = design.groups or k
    if n_groups % k:
        raise DesignError(
            _DESIGN + ("groups",), f"{n_groups} lists: with {k} {factor} conditions the "
            f"lists balance identity x condition only when their number is a multiple of {k}",
            hint=f"set groups to {k} (or a multiple), or leave it out")
    cell = {}
    for identity in identities:
        for level in levels:
            hit = (~common) & (main["identity"].astype(str) == identity).to_numpy() \
                & (main[factor] == level).to_numpy()
            if not hit.any():
                raise DesignError(
                    _DESIGN + ("conditions",), f"latin-square design: identity {identity!r} "
                    f"has no stimulus with {factor} {_level_label(level)}, so the lists "
                    "cannot be balanced",
                    hint="make every identity at every condition, or narrow "
                         "experiment.stimuli")
            cell[identity, level] = np.flatnonzero(hit).tolist()
    limits = design.max_run.limits()
    shared = np.flatnonzero(common).tolist()
    orders, assignment = [], {}
    for g in range(n_groups):
        chosen = {ident: levels[(i + g) % k] for i, ident in enumerate(identities)}
        assignment[group_name(g, n_groups)] = {i: _level_label(lv) for i, lv in chosen.items()}
        rows = [r for ident, lv in chosen.items() for r in cell[ident, lv]] + shared
        orders.append([("", _shuffled(main, _repeat(rows, design.repetitions), limits,
                                      group_rng(seed, g)))])
    extra = {"factor": factor, "levels": [_level_label(lv) for lv in levels],
             "identities": identities, "assignment": assignment}
    if len(identities) % k:
        extra["note"] = (f"{len(identities)} identities over {k} conditions: within a list "
                         "the conditions have unequal numbers of identities (balanced across "
                         "lists only)")
    return orders, extra


_PLANNERS = {"random": _plan_random, "blocked": _plan_blocked,
             "latin-square": _plan_latin_square}


# -- practice, catch trials, breaks -------------------------------------------------------------
def _practice_pool(experiment: ExperimentSpec, stimuli: pd.DataFrame, main: pd.DataFrame,
                   answers: dict) -> tuple[pd.DataFrame, str | None]:
    wanted = experiment.practice.trials
    if wanted == 0:
        return main.iloc[0:0], None
    unused = stimuli[~stimuli["stimulus_id"].isin(main["stimulus_id"])]
    if experiment.stimuli.exclude_out_of_tolerance:
        unused = unused[~unused["out_of_tolerance"].map(as_bool)]
    if answers:  # categorization: practice needs a correct answer too
        unused = unused[unused["emotion"].map(emotion_label_key).isin(answers)]
    source = experiment.practice.source
    if source == "auto":
        source = "unused" if len(unused) >= wanted else "repeat"
    if source == "unused" and len(unused) < wanted:
        raise DesignError(
            ("experiment", "practice", "source"),
            f"{wanted} practice trials from unused stimuli, but only "
            f"{len(unused)} stimuli are not in the main trials",
            hint="reserve identities with practice.identities, lower practice.trials, or "
                 "use practice.source: repeat")
    pool = unused if source == "unused" else main
    return pool.reset_index(drop=True), source


def _practice_rows(pool: pd.DataFrame, wanted: int, seed: int, group: int) -> pd.DataFrame:
    if wanted == 0:
        return pool.iloc[0:0]
    rng = group_rng(seed, group, PRACTICE_STREAM)
    cycles = math.ceil(wanted / len(pool))
    picks = np.concatenate([rng.permutation(len(pool)) for _ in range(cycles)])[:wanted]
    return pool.iloc[picks].reset_index(drop=True)


def _break_flags(blocks: Blocks, every: int | None, between_blocks: bool) -> list[bool]:
    sizes = [len(rows) for _, rows in blocks]
    total = sum(sizes)
    flags = [bool(every) and (j + 1) % every == 0 for j in range(total)]
    if between_blocks and len(blocks) > 1:
        for end in np.cumsum(sizes)[:-1]:
            flags[int(end) - 1] = True
    if flags:
        flags[-1] = False
    return flags


def _trial_table(experiment: ExperimentSpec, main: pd.DataFrame, blocks: Blocks,
                 practice: pd.DataFrame, answers: dict, seed: int, group: int,
                 columns: tuple[str, ...], stimulus_list: int | None = None) -> pd.DataFrame:
    rows = [r for _, block in blocks for r in block]
    body = main.iloc[rows][list(STIMULUS_COLUMNS)].rename(columns=STIMULUS_COLUMNS)
    body = body.assign(
        block=[b + 1 for b, (_, block) in enumerate(blocks) for _ in block],
        block_label=[label for label, block in blocks for _ in block],
        is_practice=False,
        break_after=_break_flags(blocks, experiment.breaks.every,
                                 experiment.breaks.between_blocks
                                 and experiment.design.type == "blocked"))
    head = practice[list(STIMULUS_COLUMNS)].rename(columns=STIMULUS_COLUMNS).assign(
        block=0, block_label="practice", is_practice=True, break_after=False)
    table = pd.concat([head, body], ignore_index=True)
    table["position"] = np.arange(1, len(table) + 1)
    if answers:
        keyed = table["emotion"].map(emotion_label_key)
        table["correct_key"] = keyed.map(lambda e: answers[e][0])
        table["correct_label"] = keyed.map(lambda e: answers[e][1])
    if "is_catch" in columns:
        table["is_catch"] = _catch_flags(experiment, table["is_practice"].to_numpy(),
                                         seed, group)
    if LIST_COLUMN in columns:
        table[LIST_COLUMN] = stimulus_list
    for name in ("identity", "emotion", "stim_id", "stim_file", "target_kind"):
        table[name] = table[name].astype(str)
    return table[list(columns)]


def _catch_flags(experiment: ExperimentSpec, is_practice: np.ndarray, seed: int,
                 group: int) -> np.ndarray:
    wanted = experiment.task.catch.trials
    main_positions = np.flatnonzero(~is_practice)
    if wanted > len(main_positions):
        raise DesignError(
            ("experiment", "task", "catch", "trials"),
            f"{wanted} catch trials but a participant has only "
            f"{len(main_positions)} main trials",
            hint=f"use at most {len(main_positions)} catch trials")
    flags = np.zeros(len(is_practice), dtype=bool)
    rng = group_rng(seed, group, CATCH_STREAM)
    flags[rng.choice(main_positions, size=wanted, replace=False)] = True
    return flags


# -- summary ---------------------------------------------------------------------------------
def _summary(experiment: ExperimentSpec, groups: list[str], trials: dict[str, pd.DataFrame],
             main: pd.DataFrame, rule: str, practice_source: str | None, extra: dict) -> dict:
    design = experiment.design
    main_counts = {g: int((~t["is_practice"]).sum()) for g, t in trials.items()}
    applied = {k: v for k, v in design.max_run.limits().items()
               if k != getattr(design, "factor", None)}
    # Pairing each value with its block makes a block boundary end a run.
    runs = {name: max(longest_run(list(zip(t.loc[~t["is_practice"], "block"],
                                           t.loc[~t["is_practice"], name])))
                      for t in trials.values())
            for name in applied}
    summary = {
        "design": design.type,
        "task": experiment.task.type,
        "groups": len(groups),
        "group_names": groups,
        "rule": rule,
        "stimuli_in_design": int(main["stimulus_id"].nunique()),
        "repetitions": design.repetitions,
        "main_trials_per_group": sorted(set(main_counts.values())),
        "practice_trials": experiment.practice.trials,
        "practice_source": practice_source,
        "max_run": applied,
        "longest_runs": runs,
        "breaks_per_group": sorted({int(t["break_after"].sum()) for t in trials.values()}),
    }
    if "is_catch" in trials[groups[0]].columns:
        summary["catch_trials"] = experiment.task.catch.trials
    summary.update(extra)
    return summary


# -- the experiment of a protocol, planned before any face is drawn ---------------------------
#: Response times the session estimate assumes, in seconds: a forced choice among a few
#: emotion labels, one slider rating, and the key press of a catch prompt.
TYPICAL_CHOICE_S, TYPICAL_SLIDER_S, TYPICAL_CATCH_S = 1.5, 2.5, 1.0


@dataclass(frozen=True)
class SessionEstimate:
    """How long one participant's trials take, from the timing settings."""

    trials: int                    # trials per participant, practice included
    seconds_per_trial: float       # fixation + clip + face/response + inter-trial blank, typical
    minutes: float                 # all trials (and catch prompts) with typical responses
    longest_minutes: float | None  # every response waits for its timeout; None: no timeout
    assumption: str                # what one trial is assumed to take, in words


@dataclass(frozen=True)
class ExperimentPlan:
    """A protocol's experiment as planned from the protocol alone (achieved VA unknown)."""

    design: Design                           # groups and trial tables, as the build plans them
    warnings: tuple[ProtocolProblem, ...]    # designs that undermine themselves; not fatal
    session: SessionEstimate                 # per participant, from the timing settings


def planned_stimuli(units: Sequence[IdentityUnit], image_format: str = "png") -> pd.DataFrame:
    """The rows the build's stimuli.tsv will have, known before any face is drawn.

    Stimulus ids, files, identities and targets as the build writes them, in the same order;
    achieved valence and arousal are unknown (NaN) and no stimulus is out of tolerance yet.

    Examples
    --------
    >>> from stimgen.protocol.models import Protocol
    >>> protocol = Protocol.model_validate({"study": {"name": "x"},
    ...     "identities": [{"id": "id01", "seed": 1}],
    ...     "targets": {"emotions": ["happy"], "intensities": [1.0], "neutral": True}})
    >>> planned_stimuli(plan_units(protocol))["stimulus_id"].tolist()
    ['id01_happiness_i100', 'id01_neutral']
    """
    rows = []
    for unit in units:
        for target, sid in zip(unit.targets, unit.stimulus_ids()):
            rows.append({
                "stimulus_id": sid, "file": stimulus_path(sid, image_format),
                "identity": unit.identity.id, "target_kind": target.kind,
                "emotion": target.emotion,
                "angle": np.nan if target.angle is None else target.angle,
                "intensity": target.intensity, "target_valence": target.valence,
                "target_arousal": target.arousal, "achieved_valence": np.nan,
                "achieved_arousal": np.nan, "out_of_tolerance": False})
    return pd.DataFrame(rows)


def plan_experiment_over(bundle: BundleSpec, stimuli: pd.DataFrame,
                         backend: str) -> ExperimentPlan:
    """Plan ``bundle``'s experiment over ``stimuli`` (:func:`planned_stimuli`, before any face
    is drawn), with the warnings a researcher should see and the session's length; what
    :func:`stimgen.protocol.loader.plan_experiment` runs on a whole protocol. Confusable
    choices are looked for on ``backend: schematic`` faces only (their action units are
    known before drawing).

    Raises
    ------
    DesignError
        The experiment cannot be planned; ``field`` is the protocol setting to change.
    """
    experiment = bundle.experiment
    design = plan_design(experiment, stimuli, bundle.seed)
    _check_psychopy_cells(design)
    summary = design.summary
    trials = experiment.practice.trials + max(summary["main_trials_per_group"])
    clip_s = 0.0
    if experiment.show == "clip":       # each trial plays its clip before the response screen
        from stimgen.dynamic import clip_seconds

        clip_s = clip_seconds(bundle.dynamic)
    session = estimate_session(experiment, trials, summary.get("catch_trials", 0), clip_s)
    warnings = _warnings(experiment, design)
    if backend == "schematic" and "correct_label" in design.table:
        from stimgen.design.confusability import confusable_choices

        warnings += confusable_choices(design.table[~design.table["is_practice"]])
    return ExperimentPlan(design=design, warnings=tuple(warnings), session=session)


#: Where the text of a trial-table column comes from in the protocol.
_COLUMN_SOURCES = {"identity": ("identities",), "stim_id": ("identities",),
                   "stim_file": ("identities",), "emotion": ("targets",),
                   "block_label": _DESIGN + ("factor",), "correct_key": _CHOICES,
                   "correct_label": _CHOICES}


def _check_psychopy_cells(design: Design) -> None:
    """Refuse trial-table text that PsychoPy would evaluate as code (the bundle refuses it too)."""
    for column, field in _COLUMN_SOURCES.items():
        if column not in design.table:
            continue
        for value in design.table[column].unique():
            if isinstance(value, str) and evaluated_by_psychopy(value):
                raise DesignError(
                    field, f"{value!r} would be evaluated as Python code by PsychoPy when it "
                    f"reads the conditions file (column {column!r})",
                    hint="rename it so that it neither starts with '$' nor both starts with "
                         "'[' and ends with ']'")


def _warnings(experiment: ExperimentSpec, design: Design) -> list[ProtocolProblem]:
    """Designs that run but undermine themselves: predictable answers, silent neutral faces."""
    found = []
    trials = design.table[~design.table["is_practice"]]
    neutral = trials[trials["target_kind"] == "neutral"]
    if "correct_key" in trials:
        first = design.trials[design.groups[0]]     # every group has the same blocks
        found += _predictable_answers(experiment, first[~first["is_practice"]])
        if not neutral.empty and experiment.task.choices is None:
            key = neutral["correct_key"].iloc[0]
            found.append(ProtocolProblem(
                "targets.neutral",
                f"the neutral faces add a choice 'neutral' (key {key}) to the categorization "
                "task",
                hint="list experiment.task.choices to decide the options yourself, or set "
                     "experiment.stimuli.include_neutral: false"))
    if not neutral.empty:
        found += _neutral_level(experiment, design)
    return found


def _predictable_answers(experiment: ExperimentSpec, main: pd.DataFrame) -> list[ProtocolProblem]:
    blocks = main.groupby("block").agg(answers=("correct_key", "nunique"),
                                       size=("correct_key", "size"),
                                       key=("correct_key", "first"),
                                       label=("block_label", "first"))
    fixed = blocks[(blocks["answers"] == 1) & (blocks["size"] > 1)]
    if fixed.empty:
        return []
    if len(blocks) == 1:
        return [ProtocolProblem(
            "experiment.stimuli",
            f"every main trial has the same correct answer (key {fixed['key'].iloc[0]}), "
            "so participants need not look at the faces",
            hint="select stimuli of more than one choice")]
    factor = experiment.design.factor
    others = " or ".join(f for f in ("emotion", "intensity", "identity") if f != factor)
    which, hint = "in every block", f"block by {others}, or use design type random"
    if len(fixed) < len(blocks):
        which = f"in block{'s' if len(fixed) > 1 else ''} {', '.join(fixed['label'])}"
        hint = "leave those stimuli out with experiment.stimuli, or use design type random"
    return [ProtocolProblem(
        "experiment.design.factor",
        f"a categorization task blocked by {factor}: {which} all trials have the same "
        "correct answer, so after the first trials of a block participants can answer "
        "without looking at the faces", hint=hint)]


def _neutral_level(experiment: ExperimentSpec, design: Design) -> list[ProtocolProblem]:
    """Neutral faces as a level of the counterbalanced factor, when they add groups."""
    spec = experiment.design
    factor = getattr(spec, "factor", None) or getattr(spec, "conditions", None)
    neutral_is_level = ((spec.type == "blocked" and factor in ("emotion", "intensity"))
                        or (spec.type == "latin-square" and factor == "emotion"))
    if not neutral_is_level or spec.groups is not None:
        return []
    levels = len(design.summary["levels"])
    without = len(williams_square(levels - 1)) if spec.type == "blocked" else levels - 1
    if without >= len(design.groups) or without < 1:
        return []
    kind = "block" if spec.type == "blocked" else "condition"
    return [ProtocolProblem(
        "targets.neutral",
        f"the neutral faces form a {kind} of their own ({levels} {factor} {kind}s in all), "
        f"so the design needs {len(design.groups)} groups instead of {without}",
        hint="set experiment.stimuli.include_neutral: false to leave them out of the "
             "experiment, or keep them knowingly")]


def estimate_session(experiment: ExperimentSpec, trials: int, catch: int = 0,
                     clip_s: float = 0.0) -> SessionEstimate:
    """How long ``trials`` trials (and ``catch`` catch prompts) take one participant.

    A trial is the fixation cross, the clip (``clip_s`` seconds, with ``experiment.show:
    clip``; see :func:`stimgen.dynamic.clip_seconds`), the face until the response (or for
    ``stimulus_ms`` in a passive task, or until ``response_timeout_ms``), and the
    inter-trial blank. Responses
    are assumed to take :data:`TYPICAL_CHOICE_S` per choice, :data:`TYPICAL_SLIDER_S` per
    slider and :data:`TYPICAL_CATCH_S` per catch prompt. Instructions and self-paced breaks
    are not included.

    Examples
    --------
    >>> spec = ExperimentSpec.model_validate({"task": {"type": "categorization"},
    ...     "timing": {"fixation_ms": 500, "response_timeout_ms": 3000, "iti_ms": 1000}})
    >>> estimate = estimate_session(spec, trials=120)
    >>> estimate.seconds_per_trial, estimate.minutes, estimate.longest_minutes
    (3.0, 6.0, 9.0)
    >>> estimate_session(spec, trials=120, clip_s=1.8).seconds_per_trial
    4.8
    """
    timing, task = experiment.timing, experiment.task
    timeout = None if timing.response_timeout_ms is None else timing.response_timeout_ms / 1000
    fixation, blank = timing.fixation_ms / 1000, timing.iti_ms / 1000
    if task.type == "passive":
        typical = longest = float(timing.stimulus_ms) / 1000
        if timeout is not None:
            typical = longest = min(typical, timeout)
        response = f"{_seconds_text(typical)} face"
        catch_typical = min(TYPICAL_CATCH_S, task.catch.response_ms / 1000)
        catch_longest = task.catch.response_ms / 1000
    else:
        if task.type in ("rating", "norming"):
            typical = TYPICAL_SLIDER_S * len(task.scales)
            sliders = "both sliders are" if len(task.scales) == 2 else "the slider is"
            response = (f"the face until {sliders} rated (assumed "
                        f"{_seconds_text(TYPICAL_SLIDER_S)} per slider")
        else:
            typical = TYPICAL_CHOICE_S
            response = f"the face until the key press (assumed {_seconds_text(typical)}"
        longest = timeout
        if timeout is not None:
            typical = min(typical, timeout)
            response += f", at most {_seconds_text(timeout)}"
        response += ")"
        catch_typical = catch_longest = 0.0
        if task.type == "norming":
            if task.labels is not None:
                typical += TYPICAL_CHOICE_S
                response += f" + the label (assumed {_seconds_text(TYPICAL_CHOICE_S)})"
            catch_typical = min(TYPICAL_CATCH_S, task.catch.response_ms / 1000)
            catch_longest = task.catch.response_ms / 1000
    parts = ([f"{_seconds_text(fixation)} fixation"] if fixation else []) \
        + ([f"{_seconds_text(round(clip_s, 2))} clip"] if clip_s else []) + [response] \
        + ([f"{_seconds_text(blank)} blank"] if blank else [])
    assumption = " + ".join(parts)
    if catch:
        assumption += (f"; each catch prompt answered in {_seconds_text(catch_typical)}")
    per_trial = fixation + clip_s + typical + blank
    minutes = (trials * per_trial + catch * catch_typical) / 60
    longest_minutes = None if longest is None else \
        (trials * (fixation + clip_s + longest + blank) + catch * catch_longest) / 60
    return SessionEstimate(trials=trials, seconds_per_trial=round(per_trial, 3),
                           minutes=round(minutes, 2),
                           longest_minutes=None if longest_minutes is None
                           else round(longest_minutes, 2),
                           assumption=assumption)


def _seconds_text(seconds: float) -> str:
    return f"{seconds:g} s"
