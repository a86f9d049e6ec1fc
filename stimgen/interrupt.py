"""Stopping a build on SIGINT (Ctrl-C) and SIGTERM (schedulers, `kill`): the exception that
carries the signal, the handlers that raise it, and the exit status a command ends with.

A stop is an exception (:class:`StopRequested`, a ``KeyboardInterrupt``), so every ``finally``
on the way out runs: finished stimuli are already on disk and recorded as they finish
(stimgen/build_folder.py), worker processes and cluster jobs are told to stop
(stimgen/executors.py), and the folder's lock is released. docs/reliability.md says what is kept.
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

#: The signals a build stops on, cleanly: Ctrl-C, and what SLURM, systemd and `kill` send
#: before they kill (SLURM: at the time limit, on preemption and on scancel).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequested(KeyboardInterrupt):
    """The process was asked to stop by ``signum``; a ``KeyboardInterrupt``, so that code
    which catches ``Exception`` never swallows it, and Ctrl-C and SIGTERM end alike."""

    def __init__(self, signum: int = signal.SIGINT):
        self.signum = int(signum)
        super().__init__(signal_name(self.signum))


def signal_name(signum: int) -> str:
    """``SIGTERM`` for 15, etc.

    >>> signal_name(15), signal_name(2)
    ('SIGTERM', 'SIGINT')
    """
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def exit_status(stop: BaseException) -> int:
    """The shell's status of a process ended by a signal: 128 + its number (130 for Ctrl-C,
    143 for SIGTERM); a plain ``KeyboardInterrupt`` counts as Ctrl-C.

    >>> exit_status(StopRequested(signal.SIGTERM)), exit_status(KeyboardInterrupt())
    (143, 130)
    """
    return 128 + int(getattr(stop, "signum", signal.SIGINT))


class _Stopping:
    """Whether a stop is under way in this process (handlers ignore repeats meanwhile)."""

    signum: int | None = None


_STATE = _Stopping()


def stop_in_progress() -> int | None:
    """The signal this process is stopping on, while its clean-up runs; None otherwise."""
    return _STATE.signum


def _raise_stop(signum, frame) -> None:
    if _STATE.signum is not None:      # already stopping: let the clean-up finish (it is short)
        return
    _STATE.signum = signum
    raise StopRequested(signum)


def _is_default(signum: int) -> bool:
    handler = signal.getsignal(signum)
    return handler in (signal.SIG_DFL, signal.default_int_handler, _raise_stop)


@contextmanager
def stopping_on_signals() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise :class:`StopRequested` in the main thread.

    Only signals whose handler is still Python's default are taken over (a notebook's or an
    application's own handler is left alone), only in the main thread (where Python runs
    handlers), and the previous handlers come back when the block ends. A second signal
    while the first stop is being cleaned up is ignored: the clean-up is bounded (a few
    seconds at most) and must not itself be cut short.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS if _is_default(s)}
    outermost = _STATE.signum is None and all(h is not _raise_stop for h in previous.values())
    for signum in previous:
        signal.signal(signum, _raise_stop)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if outermost:
            _STATE.signum = None
