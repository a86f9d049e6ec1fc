"""Closed-loop accuracy correction (``validation.correction``): re-request each stimulus's
(valence, arousal) until the steering rater sees its target, and keep the best round.

:func:`correct` is the numerical loop, pure over a ``measure`` callback (a per-stimulus Broyden
update of a 2x2 Jacobian, requests clipped to a radius); :func:`correct_stimuli` runs it on the
rendered faces of one identity for :func:`stimgen.render.render_and_rate`. docs/correction.md
explains the method and how to read its figures.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from stimgen.build_folder import CORRECTION as C, rater_columns

#: Tikhonov damping of the step's least-squares solve: a near-singular Jacobian (a rater that
#: hardly moves along one direction) gives a long step, clipped, instead of an infinite one.
DAMPING = 1e-2
#: A request that moves less than this is stuck (clipped against the radius): stop there.
STUCK = 1e-6
#: A stimulus whose last this-many rounds all failed to beat its best stops: the generator
#: cannot get closer from here (typically a target beyond what it delivers at the radius).
PATIENCE = 2


@dataclass(frozen=True)
class CorrectionResult:
    """What :func:`correct` did to N stimuli; rounds count re-renders after the first one."""

    requested: np.ndarray       # [N, 2] the request of the kept round
    achieved: np.ndarray        # [N, 2] the steering rater's reading of the kept round
    best_round: np.ndarray      # [N] int: the kept round, 0 = the first rendering
    rounds: np.ndarray          # [N] int: correction rounds made (re-renders)
    error_before: np.ndarray    # [N] VA distance to the target at the first rendering
    error_after: np.ndarray     # [N] VA distance to the target of the kept round


def clip_request(points, max_request: float) -> np.ndarray:
    """Requests pulled back toward the origin to radius ``max_request`` at most, then into the
    square [-1, 1]^2 that every backend accepts.

    Parameters
    ----------
    points : array_like, shape (N, 2)
        Requested (valence, arousal).
    max_request : float
        Largest radius, > 0.

    Examples
    --------
    >>> clip_request([[0.6, 0.8], [3.0, 4.0], [0.0, 0.0]], 0.5).round(3).tolist()
    [[0.3, 0.4], [0.3, 0.4], [0.0, 0.0]]
    """
    if not max_request > 0:
        raise ValueError(f"max_request must be > 0, got {max_request!r}")
    points = np.asarray(points, dtype=float).reshape(-1, 2)
    norm = np.hypot(points[:, 0], points[:, 1])
    scale = np.where(norm > max_request, max_request / np.maximum(norm, 1e-300), 1.0)
    return np.clip(points * scale[:, None], -1.0, 1.0)


def broyden_update(jacobian, step, change) -> np.ndarray:
    """Broyden's ("good") rank-one secant update of 2x2 Jacobians.

    ``J + (y - J s) s^T / (s^T s)``, so that the updated ``J`` maps the last request step ``s``
    exactly onto the reading change ``y`` and is unchanged orthogonally to ``s``. Where a step
    is (almost) zero the Jacobian is left as it is.

    Parameters
    ----------
    jacobian : array_like, shape (N, 2, 2)
    step, change : array_like, shape (N, 2)
        Request step ``s`` and the change ``y`` it made in the rater's reading.

    Examples
    --------
    >>> J = broyden_update(np.eye(2)[None], [[1.0, 0.0]], [[0.5, 0.0]])
    >>> J[0].tolist()
    [[0.5, 0.0], [0.0, 1.0]]
    """
    J = np.array(jacobian, dtype=float).reshape(-1, 2, 2)
    s = np.asarray(step, dtype=float).reshape(-1, 2)
    y = np.asarray(change, dtype=float).reshape(-1, 2)
    length = np.einsum("ni,ni->n", s, s)
    moved = length > STUCK ** 2
    residual = y - np.einsum("nij,nj->ni", J, s)
    update = np.einsum("ni,nj->nij", residual, s) / np.where(moved, length, 1.0)[:, None, None]
    return J + np.where(moved[:, None, None], update, 0.0)


def next_request(request, achieved, target, jacobian, max_request: float) -> np.ndarray:
    """The next request of each stimulus: a damped Newton step on its Jacobian, clipped.

    ``r + (J^T J + λ I)^-1 J^T (t - a)`` with ``λ`` = :data:`DAMPING`, then
    :func:`clip_request`. With ``J = I`` this moves the request by the miss itself.

    Examples
    --------
    >>> next_request([[0.5, 0.0]], [[0.25, 0.0]], [[0.5, 0.0]], 0.5 * np.eye(2)[None], 1.0
    ...              ).round(2).tolist()
    [[0.98, 0.0]]
    """
    r = np.asarray(request, dtype=float).reshape(-1, 2)
    miss = np.asarray(target, dtype=float).reshape(-1, 2) - np.asarray(achieved, dtype=float
                                                                       ).reshape(-1, 2)
    J = np.asarray(jacobian, dtype=float).reshape(-1, 2, 2)
    Jt = np.transpose(J, (0, 2, 1))
    normal = Jt @ J + DAMPING * np.eye(2)
    step = np.linalg.solve(normal, np.einsum("nij,nj->ni", Jt, miss)[..., None])[..., 0]
    return clip_request(r + step, max_request)


def correct(targets, first, measure: Callable[[np.ndarray, np.ndarray], np.ndarray], *,
            iterations: int, max_request: float, tolerance: float,
            correctable=None) -> CorrectionResult:
    """Steer N stimuli toward their targets, all of them measured together once per round.

    Round 0 requested each target itself and the rater read ``first``. Each round then moves
    every stimulus still farther than ``tolerance`` from its target by :func:`next_request`
    from its best round so far, measures them all in one call, and updates each one's
    Jacobian (identity at the start) by :func:`broyden_update` with the step it took. A
    stimulus stops after ``iterations`` rounds, within ``tolerance``, when its request can no
    longer move (clipped at ``max_request``), or after :data:`PATIENCE` rounds in a row that
    did not beat its best; the round kept is the one whose reading lay nearest the target.
    Deterministic: the same inputs give the same requests.

    Parameters
    ----------
    targets, first : array_like, shape (N, 2)
        Target (valence, arousal) and the rater's reading of the first rendering.
    measure : callable
        ``measure(indices, requests) -> readings``: renders stimuli ``indices`` at ``requests``
        ([K, 2]) and returns the rater's [K, 2] readings of those faces.
    iterations : int
        Most rounds after the first rendering (>= 0).
    max_request : float
        Largest radius of a request.
    tolerance : float
        VA distance at which a stimulus counts as on target.
    correctable : array_like of bool, shape (N,), optional
        Stimuli to correct (default all); the others keep round 0.

    Examples
    --------
    A generator that delivers only 60 % of what it is asked for, read by a perfect rater:

    >>> t = np.array([[0.5, 0.0], [0.0, -0.6]])
    >>> result = correct(t, 0.6 * t, lambda i, r: 0.6 * r, iterations=5,
    ...                  max_request=1.0, tolerance=0.01)
    >>> result.error_before.round(2).tolist(), (result.error_after < 0.01).tolist()
    ([0.2, 0.24], [True, True])
    """
    T = np.asarray(targets, dtype=float).reshape(-1, 2)
    n = len(T)
    request, achieved = T.copy(), np.asarray(first, dtype=float).reshape(-1, 2).copy()
    if achieved.shape != T.shape:
        raise ValueError("targets and first readings must both be [N, 2]")
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations!r}")
    error = np.hypot(*(T - achieved).T)
    before = error.copy()
    best_round = np.zeros(n, dtype=int)
    rounds = np.zeros(n, dtype=int)
    jacobian = np.repeat(np.eye(2)[None], n, axis=0)
    active = np.ones(n, dtype=bool) if correctable is None else np.asarray(correctable, bool)
    active = active & (error > tolerance)
    failed = np.zeros(n, dtype=int)          # rounds in a row that did not beat the best
    for round_ in range(1, iterations + 1):
        proposed = next_request(request, achieved, T, jacobian, max_request)
        moving = np.hypot(*(proposed - request).T) > STUCK
        active &= moving
        indices = np.flatnonzero(active)
        if indices.size == 0:
            break
        readings = np.asarray(measure(indices, proposed[indices]), dtype=float).reshape(-1, 2)
        step = proposed[indices] - request[indices]
        jacobian[indices] = broyden_update(jacobian[indices], step,
                                           readings - achieved[indices])
        rounds[indices] += 1
        new_error = np.hypot(*(T[indices] - readings).T)
        better = new_error < error[indices]
        kept = indices[better]
        request[kept], achieved[kept] = proposed[kept], readings[better]
        error[kept], best_round[kept] = new_error[better], round_
        failed[indices] = np.where(better, 0, failed[indices] + 1)
        active[indices] = (error[indices] > tolerance) & (failed[indices] < PATIENCE)
    return CorrectionResult(request, achieved, best_round, rounds, before, error)


def steering_readings(ratings: dict[str, list], steering: str,
                      names: Sequence[str]) -> np.ndarray:
    """[N, 2] the steering rater's readings among a batch's stimuli.tsv columns
    (:func:`stimgen.render.rate_faces`): ``achieved_*`` when it is the primary rater."""
    if steering == names[0]:
        return np.column_stack([ratings["achieved_valence"], ratings["achieved_arousal"]])
    columns = rater_columns(steering)
    return np.column_stack([ratings[columns.valence], ratings[columns.arousal]])


def correctable_targets(targets: Sequence, steering: str, backend: str) -> list[bool]:
    """Which ``targets`` closed-loop correction may steer: not neutral (the reference every
    other face is rated against), and not a basic emotion whose prototype the steering rater
    cannot read (stimgen/raters/limits.py: geometric and contempt's one-sided smile), which
    steering would push toward a face that reads right and looks wrong.

    >>> from stimgen.plan import Target
    >>> contempt = Target("named", "Contempt", "contempt", 192.4, 1.0, -0.98, -0.21, "contempt")
    >>> anger = Target("named", "Anger", "anger", 130.8, 1.0, -0.65, 0.76, "anger")
    >>> correctable_targets([contempt, anger], "geometric", "schematic")
    [False, True]
    """
    from stimgen.raters.limits import rater_limit

    def readable(target) -> bool:
        limit = rater_limit(steering, target.expression, backend)
        return limit is None or limit.readable

    return [t.kind != "neutral" and readable(t) for t in targets]


def correct_stimuli(settings, targets: Sequence, faces: list, ratings: dict[str, list],
                    first, *, draw: Callable[[list, np.ndarray], list],
                    steer: Callable[[list], np.ndarray],
                    rate: Callable[[list], dict[str, list]],
                    judged: bool, steering: str = "", backend: str = "schematic"
                    ) -> tuple[list, dict[str, list]]:
    """Correct one identity's rendered stimuli; returns the kept faces and their columns.

    Parameters
    ----------
    settings : stimgen.protocol.models.Correction
        ``iterations``, ``max_request`` and ``tolerance``.
    targets, faces, ratings
        The stimuli's targets (:class:`stimgen.plan.Target`), first faces and their
        stimuli.tsv columns (:func:`stimgen.render.rate_faces`). Neutral targets are not
        corrected: they are the reference the others are rated against.
    first : array_like, shape (N, 2)
        The steering rater's readings of the first faces (:func:`steering_readings`).
    draw : callable
        ``draw(targets, requests)``: faces of those targets at [K, 2] requests (rendered,
        and standardised where the build standardises, exactly as the first faces were).
    steer : callable
        ``steer(faces)``: [K, 2] the steering rater's readings.
    rate : callable
        ``rate(faces)``: every rater's columns for faces of correctable targets.
    judged : bool
        Whether the primary rater (``achieved_*``) is another than the steering one.
    steering, backend : str
        The steering rater's and the backend's names: targets whose prototype the steering
        rater cannot read are not corrected (:func:`correctable_targets`).

    Returns
    -------
    faces : list
        The face of each stimulus's kept round.
    ratings : dict
        Its columns, plus ``requested_valence``/``requested_arousal``, ``correction_rounds``,
        ``steering_error_before``/``_after`` and, when another rater judges,
        ``held_out_error_before`` (its distance before correction; after: ``distance_error``).
    """
    faces = list(faces)
    T = np.array([[t.valence, t.arousal] for t in targets], dtype=float).reshape(-1, 2)
    first = np.asarray(first, dtype=float).reshape(-1, 2)
    # the best face so far of each stimulus, chosen as correct() chooses its round
    best_error = np.hypot(*(T - first).T)
    best_round = np.zeros(len(faces), dtype=int)
    measured = np.zeros(len(faces), dtype=int)

    def measure(indices: np.ndarray, requests: np.ndarray) -> np.ndarray:
        drawn = draw([targets[i] for i in indices], requests)
        readings = np.asarray(steer(drawn), dtype=float).reshape(-1, 2)
        errors = np.hypot(*(T[indices] - readings).T)
        measured[indices] += 1
        for index, face, error in zip(indices, drawn, errors):
            if error < best_error[index]:
                faces[index], best_error[index] = face, error
                best_round[index] = measured[index]
        return readings

    result = correct(T, first, measure, iterations=settings.iterations,
                     max_request=settings.max_request, tolerance=settings.tolerance,
                     correctable=correctable_targets(targets, steering, backend))
    assert np.array_equal(best_round, result.best_round), "kept faces out of step"
    changed = np.flatnonzero(result.best_round > 0)
    columns: dict[str, Any] = {key: list(values) for key, values in ratings.items()}
    if changed.size:
        fresh = rate([faces[i] for i in changed])
        for key, values in fresh.items():
            for index, value in zip(changed, values):
                columns[key][index] = value
    columns[C.requested_valence] = [float(v) for v in result.requested[:, 0]]
    columns[C.requested_arousal] = [float(a) for a in result.requested[:, 1]]
    columns[C.rounds] = [int(k) for k in result.rounds]
    columns[C.steering_before] = [float(e) for e in result.error_before]
    columns[C.steering_after] = [float(e) for e in result.error_after]
    if judged:
        judge = np.column_stack([ratings["achieved_valence"], ratings["achieved_arousal"]])
        columns[C.held_out_before] = [float(e) for e in np.hypot(*(T - judge).T)]
    return faces, columns
