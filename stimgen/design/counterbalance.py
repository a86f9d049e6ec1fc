"""Counterbalancing: Latin and Williams squares, run-length-constrained shuffles, group names
and the participant-to-group rule, and the seeded random stream of each group.

Pure functions over numbers and sequences, deterministic from the seed; the experiment
planner (:mod:`stimgen.design.plan`) builds every group's trial table from them.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from stimgen.errors import DesignError

# Independent random streams per group, all derived from the protocol seed (LIST_STREAM is
# drawn once, with group index 0, to split the stimuli into lists).
ORDER_STREAM, PRACTICE_STREAM, CATCH_STREAM, LIST_STREAM = 0, 1, 2, 3

# The setting that run-limit errors point at (the loader turns it into file:line:column).
_MAX_RUN = ("experiment", "design", "max_run")


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


# -- lists -----------------------------------------------------------------------------------
def stimulus_lists(emotion: Sequence, intensity: Sequence, identity: Sequence, n_lists: int,
                   rng: np.random.Generator) -> list[int]:
    """Split stimuli into ``n_lists`` lists that each hold about the same share of everything.

    The stimuli are dealt to the lists in turn along one sequence: emotion by emotion (in a
    random order), within an emotion intensity by intensity, within each emotion x intensity
    cell identity by identity; the intensity order may rotate from emotion to emotion and the
    identity order rotates from cell to cell, by the steps (among a few) that spread the
    intensities and identities most evenly. Dealing in turn
    shares out every run of consecutive stimuli, so the list sizes, each emotion and each
    emotion x intensity cell differ by at most one between lists; the rotations spread the
    intensities and identities.

    Parameters
    ----------
    emotion, intensity, identity : sequence
        Each stimulus's emotion, intensity and identity (hashable values).
    n_lists : int
        Number of lists, from 1 to the number of stimuli.
    rng : numpy.random.Generator
        The random orders of emotions, intensities and identities.

    Returns
    -------
    list of int
        The 0-based list of each stimulus.

    Examples
    --------
    >>> emotion = ["happy", "happy", "happy", "sad", "sad", "sad"]
    >>> identity = ["a", "b", "c", "a", "b", "c"]
    >>> lists = stimulus_lists(emotion, [1.0] * 6, identity, 3, np.random.default_rng(0))
    >>> [sorted(lists[:3]), sorted(lists[3:])]        # each list: one happy, one sad face
    [[0, 1, 2], [0, 1, 2]]
    >>> [lists[i] == lists[i + 3] for i in range(3)]   # ... of two identities
    [False, False, False]
    """
    stimuli = list(zip(emotion, intensity, identity))
    if isinstance(n_lists, bool) or not 1 <= n_lists <= max(len(stimuli), 1):
        raise ValueError(f"n_lists must be from 1 to the number of stimuli ({len(stimuli)}), "
                         f"got {n_lists!r}")

    def ranks(values) -> dict:
        unique = list(dict.fromkeys(values))
        return dict(zip(unique, (int(r) for r in rng.permutation(len(unique)))))

    emotion_rank, intensity_rank, identity_rank = ranks(emotion), ranks(intensity), ranks(identity)
    n_intensities, n_identities = len(intensity_rank), len(identity_rank)
    attributes = [np.unique([str(v) for v in values], return_inverse=True)[1]
                  for values in (emotion, intensity, identity)]

    def deal(intensity_step: int, identity_step: int) -> np.ndarray:
        cells = sorted({(e, i) for e, i, _ in stimuli}, key=lambda cell: (
            emotion_rank[cell[0]],
            (intensity_rank[cell[1]] + intensity_step * emotion_rank[cell[0]]) % n_intensities))
        cell_index = {cell: n for n, cell in enumerate(cells)}
        order = sorted(range(len(stimuli)), key=lambda n: (
            cell_index[stimuli[n][:2]],
            (identity_rank[stimuli[n][2]] + identity_step * cell_index[stimuli[n][:2]])
            % n_identities))
        assignment = np.empty(len(stimuli), dtype=int)
        assignment[order] = np.arange(len(stimuli)) % n_lists
        return assignment

    def unevenness(assignment: np.ndarray) -> tuple:
        # per attribute: the largest difference between lists in any value's count
        spread = []
        for codes in attributes:
            counts = np.zeros((codes.max() + 1, n_lists), dtype=int)
            np.add.at(counts, (codes, assignment), 1)
            spread.append(int((counts.max(axis=1) - counts.min(axis=1)).max()))
        return spread[1] + spread[2], spread[0]        # intensity + identity, then emotion

    candidates = [deal(intensity_step, identity_step) for intensity_step in (0, 1)
                  for identity_step in range(min(n_identities, 2 * n_lists))]
    best = min(range(len(candidates)), key=lambda n: unevenness(candidates[n]))
    return candidates[best].tolist()


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
    DesignError
        When the limits cannot be met: the message names the attribute and the value that
        has too many items; ``field`` is ``experiment.design.max_run.<attribute>``.

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
    raise DesignError(
        _MAX_RUN,
        f"could not order {n} trials with "
        + ", ".join(f"at most {m} consecutive of the same {k}" for k, m in limits.items())
        + f" after {attempts} attempts: the limits are too tight together",
        hint="raise one of experiment.design.max_run's limits or set it to null")


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
        raise DesignError(
            (*_MAX_RUN, name),
            f"at most {cap} consecutive trials with the same {name} cannot be met: {biggest} "
            f"of {len(codes)} trials have {name} {value!r}, and {others} other trials can "
            f"split them into at most {others + 1} runs",
            hint=f"set experiment.design.max_run.{name} to {needed} or more (or null), or "
                 f"select stimuli with more {name} variety")


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


def group_rng(seed: int, group_index: int, stream: int = ORDER_STREAM) -> np.random.Generator:
    """The random generator of one group: independent of other groups, fixed by the seed."""
    return np.random.default_rng(np.random.SeedSequence([seed, group_index, stream]))
