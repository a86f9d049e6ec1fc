"""Progress of the long photo steps (alignment, inversion, personalisation), on stderr.

Owns :func:`photo_step`, which shows one step of one identity (``id03 · inversion``) with
an estimate of the time left; silent when the build runs without progress (``stimgen -q``,
see :func:`stimgen.backends.base.showing_progress`).
"""
from __future__ import annotations

import multiprocessing
import sys
import time
from contextlib import contextmanager
from typing import Callable, Iterator, Mapping, TextIO

from stimgen.backends.base import progress_enabled
from stimgen.backends.emostyle.invert import Progress

#: Step names, in the order a photo identity goes through them.
STEPS = ("alignment", "inversion", "personalisation")
#: In plain-line mode, a progress line after the first step, then at each further tenth of
#: the steps, but not more often than this (seconds).
LINE_INTERVAL_S = 10.0

#: Seconds per unit of each step, measured on the last identity of this process: the
#: estimate printed before a step starts.
_SECONDS_PER_UNIT: dict[str, float] = {}


def _seconds(value: float) -> str:
    return f"{value:.1f} s" if value < 60 else f"{int(value // 60)} min {value % 60:02.0f} s"


class StepProgress:
    """One step of one identity, shown as plain lines with elapsed and estimated seconds.

    Lines: one when the step starts (with an estimate from the last identity when there
    was one), one after the first unit with the time left at that pace, more at each
    tenth of the units (at most one per :data:`LINE_INTERVAL_S`), one when done.

    Examples
    --------
    >>> import io
    >>> ticks, stream = iter([0.0, 2.0, 8.0]), io.StringIO()
    >>> step = StepProgress("id03", "inversion", 4, stream=stream, clock=lambda: next(ticks),
    ...                     rates={})
    >>> step.update(1, 4, {"total": 0.5}); step.update(4, 4, {}); step.close()
    >>> print(stream.getvalue(), end="")
    id03 · inversion: 4 steps
    id03 · inversion: 1/4 steps, 2.0 s elapsed, about 6.0 s left (loss 0.500)
    id03 · inversion: done, 4 steps in 8.0 s
    """

    def __init__(self, identity: str, step: str, total: int, *, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 rates: dict[str, float] | None = None):
        self.label = f"{identity} · {step}"
        self.step, self.total = step, max(1, int(total))
        self.stream, self.clock = stream, clock
        self.rates = _SECONDS_PER_UNIT if rates is None else rates
        self.started = clock()
        self.done = 0
        self._last_line = -1.0           # clock time of the last progress line
        self._next_share = 0.0           # share of units after which the next line is due
        self._begin()

    def _say(self, line: str) -> None:
        from tqdm import tqdm

        tqdm.write(line, file=self.stream or sys.stderr)   # keeps a running bar intact

    def _begin(self) -> None:
        if self.total == 1:
            self._say(f"{self.label} ...")
            return
        known = self.rates.get(self.step)
        estimate = (f", about {_seconds(known * self.total)} as for the last identity"
                    if known is not None else "")
        self._say(f"{self.label}: {self.total} steps{estimate}")

    def update(self, done: int, total: int | None = None,
               losses: Mapping[str, float] | None = None) -> None:
        """Record that ``done`` of ``total`` units are finished (the callback signature)."""
        self.done = int(done)
        if self.total == 1 or self.done >= self.total:
            return
        now = self.clock()
        share = self.done / self.total
        due = self._last_line < 0 or (share >= self._next_share
                                      and now - self._last_line >= LINE_INTERVAL_S)
        if not due:
            return
        elapsed = now - self.started
        left = elapsed / self.done * (self.total - self.done)
        loss = f" (loss {float(losses['total']):.3f})" if losses and "total" in losses else ""
        self._say(f"{self.label}: {self.done}/{self.total} steps, {_seconds(elapsed)} elapsed, "
                  f"about {_seconds(left)} left{loss}")
        self._last_line = now
        self._next_share = (int(share * 10) + 1) / 10

    def close(self, finished: bool = True) -> None:
        """End the step: the closing line, unless it failed (its error says the rest)."""
        if not finished:
            return
        elapsed = self.clock() - self.started
        if self.done >= self.total or self.total == 1:
            self.rates[self.step] = elapsed / self.total
        steps = f"{self.total} steps in " if self.total > 1 else ""
        self._say(f"{self.label}: done, {steps}{_seconds(elapsed)}")


class StepBar(StepProgress):
    """The same on a terminal: a tqdm bar with its ETA while it runs, then the closing line."""

    def _begin(self) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=self.total, desc=self.label, unit="step", leave=None,
                        file=self.stream or sys.stderr, dynamic_ncols=True)

    def update(self, done: int, total: int | None = None,
               losses: Mapping[str, float] | None = None) -> None:
        self.done = int(done)
        self.bar.n = self.done
        if losses and "total" in losses:
            self.bar.set_postfix(loss=f"{float(losses['total']):.3f}", refresh=False)
        self.bar.refresh()

    def close(self, finished: bool = True) -> None:
        self.bar.close()
        super().close(finished)


def _on_terminal() -> bool:
    """Bars only on a terminal and in the build's own process (workers would garble them)."""
    return sys.stderr.isatty() and multiprocessing.parent_process() is None


@contextmanager
def photo_step(identity: str, step: str, total: int = 1) -> Iterator[Progress]:
    """Show one step of a photo identity while the block runs; yields its progress callback.

    A bar with an ETA on a terminal, plain lines with elapsed and estimated seconds
    elsewhere (logs, SLURM output, worker processes), nothing when progress is off.

    Examples
    --------
    >>> with photo_step("id03", "inversion", 500) as progress:   # doctest: +SKIP
    ...     ws = invert(G, target, steps=500, progress=progress)
    """
    if step not in STEPS:
        raise ValueError(f"step must be one of {STEPS}, got {step!r}")
    if not progress_enabled():
        yield lambda done, total, losses: None
        return
    shown = (StepBar if _on_terminal() else StepProgress)(identity, step, total)
    try:
        yield shown.update
    except BaseException:
        shown.close(finished=False)
        raise
    shown.close()


def say_reused(identity: str, steps: tuple[str, ...] = STEPS) -> None:
    """One line for a photo identity whose ``steps`` (default: all) come from the identity
    cache."""
    if progress_enabled():
        from tqdm import tqdm

        tqdm.write(f"{identity} · {', '.join(steps)}: reused from the identity cache",
                   file=sys.stderr)
