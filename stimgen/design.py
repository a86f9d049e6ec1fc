"""Counterbalancing: Latin and Williams squares, run-length-constrained orders, and the
per-group trial tables of an experiment (``plan_design``), all deterministic from the seed.

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
=================  ====================================================================
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from stimgen.circumplex import normalise_emotion_name, suggest
from stimgen.errors import StimgenError
from stimgen.protocol.experiment import (DEFAULT_CHOICE_KEYS, CategorizationTask,
                                         ExperimentSpec)

TRIAL_COLUMNS: tuple[str, ...] = (
    "position", "block", "block_label", "is_practice", "break_after",
    "stim_id", "stim_file", "identity", "emotion", "target_kind", "angle", "intensity",
    "target_valence", "target_arousal", "achieved_valence", "achieved_arousal",
)
CATEGORIZATION_COLUMNS: tuple[str, ...] = ("correct_key", "correct_label")
PASSIVE_COLUMNS: tuple[str, ...] = ("is_catch",)

#: stimuli.tsv column -> trial-table column, for the stimulus-derived columns.
STIMULUS_COLUMNS: dict[str, str] = {
    "stimulus_id": "stim_id", "file": "stim_file", "identity": "identity",
    "emotion": "emotion", "target_kind": "target_kind", "angle": "angle",
    "intensity": "intensity", "target_valence": "target_valence",
    "target_arousal": "target_arousal", "achieved_valence": "achieved_valence",
    "achieved_arousal": "achieved_arousal",
}

# Independent random streams per group, all derived from the protocol seed.
_STREAM_ORDER, _STREAM_PRACTICE, _STREAM_CATCH = 0, 1, 2


def trial_columns(task_type: str) -> tuple[str, ...]:
    """The columns of a trial table for a task type (``rating``, ``categorization``, ``passive``).

    >>> trial_columns("passive")[-1]
    'is_catch'
    """
    extra = {"categorization": CATEGORIZATION_COLUMNS, "passive": PASSIVE_COLUMNS}
    return TRIAL_COLUMNS + extra.get(task_type, ())


# -- squares ---------------------------------------------------------------------------------
def latin_square(n: int) -> list[list[int]]:
    """The cyclic Latin square of order ``n``: row ``i`` is ``(i, i+1, ..., i+n-1) mod n``.

    Every condition ``0..n-1`` appears once in each row and once in each column.

    Parameters
    ----------
    n : int
        Number of conditions, at least 1.

    Examples
    --------
    >>> latin_square(3)
    [[0, 1, 2], [1, 2, 0], [2, 0, 1]]
    """
    _check_order(n)
    return [[(row + col) % n for col in range(n)] for row in range(n)]


def williams_square(n: int) -> list[list[int]]:
    """A balanced Latin square (Williams design) for ``n`` conditions.

    The first row is ``0, 1, n-1, 2, n-2, ...`` and row ``i`` adds ``i`` (mod ``n``) to it.
    For even ``n`` these ``n`` rows are balanced for first-order carry-over: every ordered
    pair ``(a, b)`` of different conditions is adjacent (``a`` right before ``b``) in exactly
    one row. For odd ``n`` no single square can do that, so the ``n`` reversed rows are
    appended (2n rows) and every ordered pair is adjacent in exactly two rows.

    Parameters
    ----------
    n : int
        Number of conditions, at least 1.

    Returns
    -------
    list of list of int
        ``n`` rows (even ``n``) or ``2n`` rows (odd ``n``), each a permutation of ``0..n-1``.

    Examples
    --------
    >>> williams_square(4)
    [[0, 1, 3, 2], [1, 2, 0, 3], [2, 3, 1, 0], [3, 0, 2, 1]]
    >>> len(williams_square(3))
    6
    """
    _check_order(n)
    first, low, high = [0], 1, n - 1
    while len(first) < n:
        first.append(low)
        low += 1
        if len(first) < n:
            first.append(high)
            high -= 1
    rows = [[(c + i) % n for c in first] for i in range(n)]
    if n % 2 == 1 and n > 1:
        rows += [row[::-1] for row in rows]
    return rows


def _check_order(n: int) -> None:
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ValueError(f"the number of conditions must be an integer >= 1, got {n!r}")


# -- run-length constrained orders -----------------------------------------------------------
def longest_run(values: Sequence) -> int:
    """Length of the longest stretch of equal consecutive values (0 for an empty sequence).

    >>> longest_run(["a", "a", "b", "a", "a", "a"])
    3
    """
    best = run = 0
    previous = object()
    for value in values:
        run = run + 1 if value == previous else 1
        best = max(best, run)
        previous = value
    return best


def constrained_shuffle(items: Sequence, keys: dict[str, Sequence], max_run: dict[str, int],
                        rng: np.random.Generator, *, attempts: int = 100) -> list:
    """A random order of ``items`` with no more than ``max_run[k]`` consecutive equal ``keys[k]``.

    Randomised greedy construction: each position takes a uniformly random remaining item
    among those that break no run limit, except when one value has so many items left that
    it must come now for the rest to remain feasible. Items left over at a dead end are
    inserted at random positions where they break no limit; if that fails the construction
    restarts (up to ``attempts`` times). Orders are valid but not uniformly distributed over
    all valid orders; they are deterministic given the state of ``rng``.

    Parameters
    ----------
    items : sequence
        What to order (e.g. row indices).
    keys : dict of str to sequence
        For each constrained attribute, its value for every item (same length as ``items``).
    max_run : dict of str to int
        Longest allowed run per attribute; attributes missing here or set to None are free.
    rng : numpy.random.Generator
        Source of randomness.
    attempts : int
        Restarts before giving up.

    Returns
    -------
    list
        The items in their new order.

    Raises
    ------
    StimgenError
        When the limits cannot be met: the message names the attribute and the value that
        has too many items.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> order = constrained_shuffle(range(6), {"emotion": list("aaabbb")}, {"emotion": 1}, rng)
    >>> longest_run(["aaabbb"[i] for i in order])
    1
    """
    items = list(items)
    n = len(items)
    limits = {name: int(m) for name, m in max_run.items() if m is not None}
    for name, m in limits.items():
        if name not in keys:
            raise ValueError(f"max_run names {name!r} but keys has no such attribute")
        if len(keys[name]) != n:
            raise ValueError(f"keys[{name!r}] has {len(keys[name])} values for {n} items")
        if m < 1:
            raise ValueError(f"max_run[{name!r}] must be >= 1, got {m}")
    if not limits or n <= 1:
        return [items[i] for i in rng.permutation(n)]
    coded = {name: _integer_codes(keys[name]) for name in limits}
    for name, (codes, values) in coded.items():
        _check_run_feasible(name, np.asarray(codes), values, limits[name])
    columns = [coded[name][0] for name in limits]
    caps = list(limits.values())
    for _ in range(attempts):
        order = _greedy_order(columns, caps, rng)
        if order is not None:
            return [items[i] for i in order]
    raise StimgenError(
        f"could not order {n} trials with "
        + ", ".join(f"at most {m} consecutive of the same {k}" for k, m in limits.items())
        + f" after {attempts} attempts: the limits are too tight together",
        hint="raise one of design.max_run's limits or set it to null")


def _integer_codes(values: Sequence) -> tuple[list[int], list]:
    """Each value as the index of its first appearance, and the distinct values in that order."""
    index: dict = {}
    codes = [index.setdefault(value, len(index)) for value in values]
    return codes, list(index)


def _check_run_feasible(name: str, codes: np.ndarray, values, cap: int) -> None:
    counts = np.bincount(codes)
    biggest = int(counts.max())
    others = len(codes) - biggest
    if biggest > cap * (others + 1):
        value = values[int(counts.argmax())]
        needed = math.ceil(biggest / (others + 1))
        raise StimgenError(
            f"design.max_run.{name} = {cap} cannot be met: {biggest} of {len(codes)} trials "
            f"have {name} {value!r}, and {others} other trials can split them into at most "
            f"{others + 1} runs",
            hint=f"set design.max_run.{name} to {needed} or more (or null), or select stimuli "
                 f"with more {name} variety")


def _greedy_order(columns: list[list[int]], caps: list[int],
                  rng: np.random.Generator) -> list[int] | None:
    """One randomised greedy pass; None when leftovers could not be placed."""
    n = len(columns[0])
    counts = [np.bincount(col).tolist() for col in columns]
    run_value = [-1] * len(caps)
    run_length = [0] * len(caps)
    remaining = rng.permutation(n).tolist()
    tries = rng.random((n, 8)).tolist()  # uniform draws for the random picks, one row per step
    order: list[int] = []

    def allowed(item: int) -> bool:
        return all(col[item] != run_value[k] or run_length[k] < caps[k]
                   for k, col in enumerate(columns))

    while remaining:
        forced = _forced_value(counts, caps, len(remaining))

        def fits(item: int) -> bool:
            return allowed(item) and (forced is None or columns[forced[0]][item] == forced[1])

        pick = None
        for u in tries[len(order)]:
            j = int(u * len(remaining))
            if fits(remaining[j]):
                pick = j
                break
        if pick is None:
            candidates = [j for j, item in enumerate(remaining) if fits(item)]
            if not candidates and forced is not None:
                candidates = [j for j, item in enumerate(remaining) if allowed(item)]
            if not candidates:
                break
            pick = candidates[int(rng.integers(len(candidates)))]
        item = remaining[pick]
        remaining[pick] = remaining[-1]
        remaining.pop()
        order.append(item)
        for k, col in enumerate(columns):
            value = col[item]
            run_length[k] = run_length[k] + 1 if value == run_value[k] else 1
            run_value[k] = value
            counts[k][value] -= 1
    if remaining:
        return _insert_leftovers(order, remaining, columns, caps, rng)
    return order


def _forced_value(counts: list[list[int]], caps: list[int], left: int) -> tuple[int, int] | None:
    """(attribute, value) that must come next for the rest to stay feasible, if any.

    With ``r`` items of value ``v`` left among ``left``, placing anything else now leaves
    ``left - r - 1`` separators for the ``r`` items, i.e. at most ``left - r`` runs.
    """
    forced, worst = None, 0
    for k, count in enumerate(counts):
        biggest = max(count)
        excess = biggest - caps[k] * (left - biggest)
        if excess > worst:
            forced, worst = (k, count.index(biggest)), excess
    return forced


def _insert_leftovers(order: list[int], leftovers: list[int], columns: list[list[int]],
                      caps: list[int], rng: np.random.Generator) -> list[int] | None:
    order = list(order)
    for item in (leftovers[i] for i in rng.permutation(len(leftovers))):
        slots = [p for p in range(len(order) + 1)
                 if _fits_at(order, p, item, columns, caps)]
        if not slots:
            return None
        order.insert(slots[int(rng.integers(len(slots)))], item)
    return order


def _fits_at(order: list[int], position: int, item: int, columns: list[list[int]],
             caps: list[int]) -> bool:
    for col, cap in zip(columns, caps):
        value, run = col[item], 1
        p = position - 1
        while p >= 0 and col[order[p]] == value and run <= cap:
            run, p = run + 1, p - 1
        p = position
        while p < len(order) and col[order[p]] == value and run <= cap:
            run, p = run + 1, p + 1
        if run > cap:
            return False
    return True


# -- groups ----------------------------------------------------------------------------------
def group_name(index: int, n_groups: int) -> str:
    """Name of the 0-based group ``index`` of ``n_groups``: ``g01``, ``g02``, ... (zero-padded).

    >>> group_name(0, 24), group_name(9, 120)
    ('g01', 'g010')
    """
    width = max(2, len(str(n_groups)))
    return f"g{index + 1:0{width}d}"


def group_for_participant(participant: int, n_groups: int) -> str:
    """The group of participant number ``participant`` (1, 2, ...): groups are used in turn.

    >>> group_for_participant(1, 4), group_for_participant(5, 4)
    ('g01', 'g01')
    """
    if participant < 1:
        raise ValueError(f"participant numbers start at 1, got {participant}")
    return group_name((participant - 1) % n_groups, n_groups)


def participant_rule(n_groups: int, noun: str = "group") -> str:
    """The participant-to-group rule, in words, as printed in the README and the report."""
    last = group_name(n_groups - 1, n_groups)
    return (f"participant number p (1, 2, 3, ...) uses {noun} ((p - 1) mod {n_groups}) + 1: "
            f"participant 1 -> {group_name(0, n_groups)}, participant {n_groups} -> {last}, "
            f"participant {n_groups + 1} -> {group_name(0, n_groups)} again")


def group_rng(seed: int, group_index: int, stream: int = _STREAM_ORDER) -> np.random.Generator:
    """The random generator of one group: independent of other groups, fixed by the seed."""
    return np.random.default_rng(np.random.SeedSequence([seed, group_index, stream]))


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
    StimgenError
        When the selection names unknown stimuli, the design cannot be balanced with the
        stimuli at hand, or the run limits cannot be met.

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
    reserved = _known(experiment.practice.identities, stimuli["identity"], "practice.identities")
    selected = select_stimuli(stimuli, experiment)
    main = selected[~selected["identity"].astype(str).isin(reserved)].reset_index(drop=True)
    if main.empty:
        raise StimgenError("the experiment has no main trials: experiment.stimuli and "
                           "practice.identities leave no stimulus",
                           hint="widen experiment.stimuli or reserve fewer practice identities")
    answers = _answer_table(experiment, main)
    planner = _PLANNERS[experiment.design.type]
    orders, extra = planner(experiment, main, seed)
    groups = [group_name(g, len(orders)) for g in range(len(orders))]

    practice_pool, practice_source = _practice_pool(experiment, stimuli, main, answers)
    columns = trial_columns(experiment.task.type)
    trials = {}
    for g, (name, blocks) in enumerate(zip(groups, orders)):
        practice = _practice_rows(practice_pool, experiment.practice.trials, seed, g)
        trials[name] = _trial_table(experiment, main, blocks, practice, answers, seed, g,
                                    columns)
    table = pd.concat([df.assign(group=name) for name, df in trials.items()],
                      ignore_index=True)[["group", *columns]]
    noun = "order" if experiment.design.type == "random" else "group"
    rule = participant_rule(len(groups), noun)
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


def _known(names: Sequence, column: pd.Series, where: str, *, by_key=str) -> list[str]:
    """``names`` mapped to the spelling used in ``column``; unknown ones raise StimgenError."""
    spelling = {by_key(v): str(v) for v in column.astype(str).unique()}
    found = []
    for name in names:
        if by_key(name) not in spelling:
            lower = {key.lower(): key for key in spelling}
            close = suggest(by_key(name).lower(), list(lower))
            raise StimgenError(
                f"experiment.{where}: {name!r} is not among the built stimuli",
                hint=(f"did you mean {spelling[lower[close]]!r}?" if close else
                      f"choose from {', '.join(sorted(spelling.values()))}"))
        found.append(spelling[by_key(name)])
    return found


def select_stimuli(stimuli: pd.DataFrame, experiment: ExperimentSpec) -> pd.DataFrame:
    """The rows of ``stimuli`` that ``experiment.stimuli`` selects, in their original order."""
    chosen = experiment.stimuli
    keep = pd.Series(True, index=stimuli.index)
    if chosen.emotions is not None:
        names = _known(chosen.emotions, stimuli["emotion"], "stimuli.emotions",
                       by_key=normalise_emotion_name)
        keep &= stimuli["emotion"].astype(str).isin(names)
    if chosen.identities is not None:
        names = _known(chosen.identities, stimuli["identity"], "stimuli.identities")
        keep &= stimuli["identity"].astype(str).isin(names)
    neutral = stimuli["target_kind"] == "neutral"
    if chosen.intensities is not None:
        wanted = np.asarray(chosen.intensities, dtype=float)
        close = np.isclose(stimuli["intensity"].to_numpy(float)[:, None], wanted[None, :],
                           atol=1e-6)
        missing = [x for x, hit in zip(chosen.intensities, close.any(axis=0)) if not hit]
        if missing:
            raise StimgenError(f"experiment.stimuli.intensities: {missing} not among the "
                               "built stimuli",
                               hint="list intensities that the protocol's targets make")
        keep &= close.any(axis=1) | neutral
    if not chosen.include_neutral:
        keep &= ~neutral
    if chosen.exclude_out_of_tolerance:
        keep &= ~stimuli["out_of_tolerance"].map(_truthy)
    selected = stimuli[keep].reset_index(drop=True)
    if selected.empty:
        raise StimgenError("experiment.stimuli selects no stimulus",
                           hint="check emotions, identities and intensities against stimuli.tsv")
    return selected


def _truthy(value) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes")


# -- categorization answers -------------------------------------------------------------------
def _answer_table(experiment: ExperimentSpec, main: pd.DataFrame) -> dict[str, tuple[str, str]]:
    """For categorization: stimulus emotion key -> (correct key, correct label); else {}."""
    task = experiment.task
    if not isinstance(task, CategorizationTask):
        return {}
    choices = task.choices
    if choices is None:
        emotions = _ordered_levels(main, "emotion")
        if len(emotions) > len(DEFAULT_CHOICE_KEYS):
            raise StimgenError(
                f"a categorization task over {len(emotions)} emotions needs explicit choices "
                f"(at most {len(DEFAULT_CHOICE_KEYS)} are made automatically)",
                hint="list experiment.task.choices, or narrow experiment.stimuli.emotions")
        return {normalise_emotion_name(e): (k, str(e))
                for e, k in zip(emotions, DEFAULT_CHOICE_KEYS)}
    answers: dict[str, tuple[str, str]] = {}
    for choice in choices:
        for emotion in choice.matches():
            key = normalise_emotion_name(emotion)
            if key in answers:
                raise StimgenError(
                    f"experiment.task.choices: emotion {emotion!r} is correct for two choices "
                    f"({answers[key][1]!r} and {choice.label!r})",
                    hint="each stimulus emotion may belong to one choice only")
            answers[key] = (choice.key, choice.label)
    unanswered = sorted({str(e) for e in main["emotion"]
                         if normalise_emotion_name(e) not in answers})
    if unanswered:
        raise StimgenError(
            f"experiment.task.choices: no choice is correct for emotion(s) "
            f"{', '.join(unanswered)}",
            hint="add them to a choice's `emotions:` list, or leave them out with "
                 "experiment.stimuli.emotions")
    return answers


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
    except StimgenError as error:
        if not where:
            raise
        raise StimgenError(f"{where}: {error.message}", hint=error.hint) from None


def _plan_random(experiment: ExperimentSpec, main: pd.DataFrame, seed: int):
    design = experiment.design
    rows = _repeat(range(len(main)), design.repetitions)
    limits = design.max_run.limits()
    orders = [[("", _shuffled(main, rows, limits, group_rng(seed, g)))]
              for g in range(design.participants)]
    return orders, {}


def _plan_blocked(experiment: ExperimentSpec, main: pd.DataFrame, seed: int):
    design = experiment.design
    levels = _ordered_levels(main, design.factor)
    square = williams_square(len(levels))
    n_groups = design.groups or len(square)
    if n_groups % len(square):
        raise StimgenError(
            f"experiment.design.groups = {n_groups} cannot balance {len(levels)} "
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
        raise StimgenError(
            f"a latin-square design needs at least 2 {factor} conditions; the experiment's "
            f"stimuli have {k}",
            hint="make more targets, widen experiment.stimuli, or use design type random")
    n_groups = design.groups or k
    if n_groups % k:
        raise StimgenError(
            f"experiment.design.groups = {n_groups}: with {k} {factor} conditions the lists "
            f"balance identity x condition only when their number is a multiple of {k}",
            hint=f"set groups to {k} (or a multiple), or leave it out")
    cell = {}
    for identity in identities:
        for level in levels:
            hit = (~common) & (main["identity"].astype(str) == identity).to_numpy() \
                & (main[factor] == level).to_numpy()
            if not hit.any():
                raise StimgenError(
                    f"latin-square design: identity {identity!r} has no stimulus with "
                    f"{factor} {_level_label(level)}, so the lists cannot be balanced",
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
        unused = unused[~unused["out_of_tolerance"].map(_truthy)]
    if answers:  # categorization: practice needs a correct answer too
        unused = unused[unused["emotion"].map(normalise_emotion_name).isin(answers)]
    source = experiment.practice.source
    if source == "auto":
        source = "unused" if len(unused) >= wanted else "repeat"
    if source == "unused" and len(unused) < wanted:
        raise StimgenError(
            f"experiment.practice asks for {wanted} trials from unused stimuli, but only "
            f"{len(unused)} stimuli are not in the main trials",
            hint="reserve identities with practice.identities, lower practice.trials, or "
                 "use practice.source: repeat")
    pool = unused if source == "unused" else main
    return pool.reset_index(drop=True), source


def _practice_rows(pool: pd.DataFrame, wanted: int, seed: int, group: int) -> pd.DataFrame:
    if wanted == 0:
        return pool.iloc[0:0]
    rng = group_rng(seed, group, _STREAM_PRACTICE)
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
                 columns: tuple[str, ...]) -> pd.DataFrame:
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
        keyed = table["emotion"].map(normalise_emotion_name)
        table["correct_key"] = keyed.map(lambda e: answers[e][0])
        table["correct_label"] = keyed.map(lambda e: answers[e][1])
    if "is_catch" in columns:
        table["is_catch"] = _catch_flags(experiment, table["is_practice"].to_numpy(),
                                         seed, group)
    for name in ("identity", "emotion", "stim_id", "stim_file", "target_kind"):
        table[name] = table[name].astype(str)
    return table[list(columns)]


def _catch_flags(experiment: ExperimentSpec, is_practice: np.ndarray, seed: int,
                 group: int) -> np.ndarray:
    wanted = experiment.task.catch.trials
    main_positions = np.flatnonzero(~is_practice)
    if wanted > len(main_positions):
        raise StimgenError(
            f"experiment.task.catch.trials = {wanted} but a participant has only "
            f"{len(main_positions)} main trials",
            hint=f"use at most {len(main_positions)} catch trials")
    flags = np.zeros(len(is_practice), dtype=bool)
    rng = group_rng(seed, group, _STREAM_CATCH)
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
