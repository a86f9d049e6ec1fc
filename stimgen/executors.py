"""Where the units of work run: in this process, or in local worker processes.

A build hands over a list of chunks (slices of one identity's targets) and gets each
chunk's records back through ``on_result``; the records are the same whichever executor
ran them, so every executor produces the same build folder.
"""
from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:  # pragma: no cover
    from stimgen.pipeline import Chunk
    from stimgen.protocol.models import Protocol


def run_chunks(protocol: "Protocol", chunks: list["Chunk"], out: Path, *, workers: int,
               on_result: Callable[["Chunk", list[dict]], None],
               on_progress: Callable[[int], None] | None = None) -> None:
    """Render and rate every chunk, serially (``workers`` <= 1) or in worker processes."""
    from stimgen.pipeline import render_and_rate

    if workers <= 1:
        for chunk in chunks:
            on_result(chunk, render_and_rate(protocol, chunk, out, on_stimuli=on_progress))
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(render_and_rate, protocol, chunk, out): chunk for chunk in chunks}
        for future in as_completed(futures):
            chunk = futures[future]
            on_result(chunk, future.result())
            if on_progress:
                on_progress(chunk.stop - chunk.start)
