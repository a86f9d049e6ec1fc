"""Where the units of work run: this process, local worker processes, or submitit jobs.

Local workers render chunks (slices of one identity's targets) and hand their records back;
submitit jobs (SLURM jobs, or submitit's local processes) each render one or a few whole
identities and write each identity's cache record as soon as it is complete, which the
build then merges. Either way the build folder is the same file for file. While jobs run,
the build watches them through SLURM's own tools (stimgen/scheduler.py), so that a job that
dies without a result is retried or reported, never waited for in silence.

Stopping (Ctrl-C, SIGTERM: stimgen/interrupt.py): :func:`run_chunks` stops its workers
(:func:`stop_workers`) and :func:`run_units` cancels its jobs (:meth:`_JobRun.cancel_all`)
before the stop goes on up; workers and jobs journal every stimulus they finished, so
nothing finished is drawn again.
"""
from __future__ import annotations

import contextlib
import importlib.util
import logging
import math
import multiprocessing
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import warnings
from collections import deque
from contextlib import contextmanager
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

from stimgen import scheduler
from stimgen.build_folder import (JOBS_DIR, cached_records, clear_journals, identity_record_path,
                                  journaled_records, store_records)
from stimgen.errors import BackendUnavailableError, BuildError
from stimgen.interrupt import STOP_SIGNALS, StopRequested, signal_name
from stimgen.render import Chunk, identity_chunks, render_and_rate
from stimgen.wording import quantity

if TYPE_CHECKING:  # pragma: no cover
    from stimgen.plan import IdentityUnit
    from stimgen.protocol.execution import ExecutionSpec
    from stimgen.settings import RenderSpec

JOBS_FOLDER = JOBS_DIR                 # default job scripts and logs, inside the output folder
#: Seconds a job that SLURM reports as ended may take to show its result file (shared file
#: systems show new files late) before it counts as failed.
ENDED_GRACE = 5.0
#: Seconds a job that SLURM no longer knows at all (not in squeue, not in sacct, or no
#: sacct) may take to show its result file before it counts as failed.
GONE_GRACE = 60.0
#: Seconds without progress before the build says what it is waiting for (then 2x, 4x, ...).
QUIET_SECONDS = 60.0
#: At most this many jobs go to SLURM as separate submissions, which it starts at once;
#: more go as one job array, kinder to the scheduler (whose arrays start a second or two later).
SEPARATE_JOBS = 4


class ExecutorUnavailableError(BackendUnavailableError):
    """An executor that cannot run here (no sbatch on PATH, submitit not installed)."""


class UnitsFailedError(BuildError):
    """Identity jobs that still failed after their retries; finished identities are kept."""

    def __init__(self, failures: list["UnitFailure"], total: int):
        self.failures = failures
        lines = [f"{len(failures)} of {quantity(total, 'identity')} failed every attempt:"]
        for failure in failures:
            lines.append(f"  {failure.identity_id} ({failure.attempts} attempt(s)): "
                         f"{failure.error}")
            lines.append(f"    log: {failure.log}")
            lines.extend(f"    | {line}" for line in failure.log_tail)
        super().__init__("\n".join(lines),
                         hint="finished identities are kept; read the logs, fix the cause and "
                              "run the same command again: only the missing identities run")


@dataclass(frozen=True)
class UnitFailure:
    """An identity whose job failed every attempt, with the last error and its log."""

    identity_id: str
    attempts: int
    error: str
    log: Path
    log_tail: tuple[str, ...] = ()          # the log's last lines


# --------------------------------------------------------------------------------------
# Local worker processes
# --------------------------------------------------------------------------------------
def visible_gpus(environ: Mapping[str, str] | None = None,
                 device_count: int | None = None) -> list[str]:
    """The GPUs this process may use, as ``CUDA_VISIBLE_DEVICES`` entries.

    An explicit ``CUDA_VISIBLE_DEVICES`` wins (its entries may be indices or UUIDs; an empty
    value hides every GPU); otherwise ``0 .. device_count-1``, counted by torch without
    initialising CUDA in this process.

    Examples
    --------
    >>> visible_gpus({"CUDA_VISIBLE_DEVICES": "2, 3"}), visible_gpus({}, device_count=2)
    (['2', '3'], ['0', '1'])
    """
    environ = os.environ if environ is None else environ
    if "CUDA_VISIBLE_DEVICES" in environ:
        listed = [g.strip() for g in environ["CUDA_VISIBLE_DEVICES"].split(",")]
        return [g for g in listed if g and g != "-1"]
    if device_count is None:
        import torch

        device_count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return [str(i) for i in range(device_count)]


def gpu_for_worker(worker: int, gpus: Sequence[str]) -> str:
    """Round-robin GPU of local worker ``worker``: with N GPUs, workers 0..N-1 get one each."""
    assert gpus, "gpu_for_worker needs at least one GPU"
    return gpus[worker % len(gpus)]


#: Seconds that stopped worker processes get to finish the stimulus they are writing and
#: exit, before they are killed (what they finished is already journaled).
STOP_GRACE_SECONDS = 2.0


class _Worker:
    """The state of a local worker process: whether it is working, whether it must stop."""

    busy = False                     # running a task (a chunk, a matched identity)
    stop: int | None = None          # the signal that asked it to stop


def _on_stop_signal(signum, frame) -> None:
    # A worker's SIGINT/SIGTERM (from the terminal's Ctrl-C, a scheduler, or the build
    # passing its own on): stop the task under way, at once, through the same
    # KeyboardInterrupt path as the build's own process; between tasks, only remember it.
    # Once only: a second signal (Ctrl-C reaches both the build and its workers, and the
    # build passes its own on) must not cut short the journaling of the first one's stop.
    first = _Worker.stop is None
    _Worker.stop = signum
    if _Worker.busy and first:
        raise StopRequested(signum)


def _start_worker(slots) -> None:
    """Runs first in each worker process: its stop signals, and its GPU (with GPUs) before
    anything imports torch.cuda."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, _on_stop_signal)
    if slots is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = slots.get()


def _worker_pool(workers: int, gpus: Sequence[str]) -> ProcessPoolExecutor:
    """``workers`` processes; with GPUs, each sees only its own through CUDA_VISIBLE_DEVICES."""
    if not gpus:
        return ProcessPoolExecutor(max_workers=workers, initializer=_start_worker,
                                   initargs=(None,))
    context = multiprocessing.get_context("spawn")     # CUDA does not survive fork
    slots = context.Queue()
    for worker in range(workers):
        slots.put(gpu_for_worker(worker, gpus))
    return ProcessPoolExecutor(max_workers=workers, mp_context=context,
                               initializer=_start_worker, initargs=(slots,))


def stop_workers(pool: ProcessPoolExecutor, workers: Sequence[multiprocessing.Process],
                 signum: int, grace: float = STOP_GRACE_SECONDS) -> None:
    """Stop a pool of render workers now: queued chunks are cancelled, running ones are sent
    ``signum`` (they journal the stimuli being written and return), and a worker still
    alive after ``grace`` seconds is killed.

    Parameters
    ----------
    pool : ProcessPoolExecutor
        The pool of :func:`run_chunks`.
    workers : sequence of multiprocessing.Process
        Its processes (:func:`_pool_processes`).
    signum : int
        The signal the build is stopping on; the workers get the same.
    grace : float
        Seconds before the workers still running are killed.
    """
    pool.shutdown(wait=False, cancel_futures=True)
    for worker in workers:
        if worker.is_alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signum)
    deadline = time.monotonic() + grace
    for worker in workers:
        worker.join(max(0.0, deadline - time.monotonic()))
    for worker in workers:
        if worker.is_alive():
            worker.kill()
            worker.join(1.0)
    pool.shutdown(wait=True)


def _pool_processes(before: set[int]) -> list[multiprocessing.Process]:
    """The worker processes started since ``before`` (the pids of the children alive then)."""
    return [p for p in multiprocessing.active_children() if p.pid not in before]


def run_chunks(spec: "RenderSpec", chunks: list["Chunk"], out: Path, *, workers: int,
               on_result: Callable[["Chunk", list[dict]], None],
               on_progress: Callable[[int], None] | None = None,
               gpus: Sequence[str] = (), while_waiting: Callable[[], None] | None = None
               ) -> None:
    """Render and rate every chunk, serially (``workers`` <= 1) or in worker processes.

    Parameters
    ----------
    spec, chunks, out
        What :func:`stimgen.render.render_and_rate` needs.
    workers : int
        Worker processes; 1 renders in this process.
    on_result : callable
        Called in this process with each chunk and its records, as chunks finish.
    on_progress : callable, optional
        Called with the number of stimuli just finished.
    gpus : sequence of str
        GPUs to share among the workers, one per worker (round robin); empty on CPU.
    while_waiting : callable, optional
        With worker processes, called once every chunk is submitted (the workers exist,
        so starting threads is safe for ``fork``), while this process only waits.
    """
    if workers <= 1:
        for chunk in chunks:
            on_result(chunk, render_and_rate(spec, chunk, out, on_stimuli=on_progress))
        return
    before = {p.pid for p in multiprocessing.active_children()}
    pool = _worker_pool(workers, gpus)
    try:
        futures = {pool.submit(_render_in_worker, spec, chunk, out): chunk
                   for chunk in chunks}
        if while_waiting is not None:
            while_waiting()
        for future in as_completed(futures):
            chunk = futures[future]
            try:
                records, raised, stopped = future.result()
            except BrokenProcessPool:
                raise BuildError(
                    "a worker process died while rendering (killed, or out of memory)",
                    hint="run the same command again to resume (finished stimuli are kept); "
                         "if it happens again, use fewer workers with -j") from None
            raised.show()
            if stopped is not None:     # a signal reached the worker first: stop the build
                raise StopRequested(stopped)
            on_result(chunk, records)
            if on_progress:
                on_progress(len(set(chunk.stimulus_ids) - chunk.done))
    except BaseException as error:     # a stop, or a failure: the other workers stop too
        stop_workers(pool, _pool_processes(before), _stop_signal(error))
        raise
    pool.shutdown(wait=True)


def _stop_signal(error: BaseException) -> int:
    """The signal to pass on to workers: the stop's own, or SIGTERM after a failure."""
    if isinstance(error, KeyboardInterrupt):
        return getattr(error, "signum", signal.SIGINT)
    return signal.SIGTERM


@contextmanager
def worker_map(workers: int, gpus: Sequence[str] = ()) -> Iterator[Callable]:
    """``run(function, items)``: ``function`` of each item, in order (an iterator), in
    ``workers`` local processes, or in this process when ``workers`` <= 1. For stages that
    need every stimulus at once (the set stage of `match:`), between the units' chunks."""
    if workers <= 1:
        yield lambda function, items: map(function, items)
        return
    before = {p.pid for p in multiprocessing.active_children()}
    pool = _worker_pool(workers, gpus)

    def run(function: Callable, items) -> Iterator:
        items = list(items)
        chunk = max(1, len(items) // (4 * workers))
        try:
            for result, raised, stopped in pool.map(partial(_collecting, function), items,
                                                    chunksize=chunk):
                raised.show()
                if stopped is not None:     # a signal reached the worker first
                    raise StopRequested(stopped)
                yield result
        except BrokenProcessPool:
            raise BuildError(
                "a worker process died while matching (killed, or out of memory)",
                hint="run the same command again to resume; if it happens again, use "
                     "fewer workers with -j") from None

    try:
        yield run
    except BaseException as error:     # a stop, or a failure: the workers stop now
        stop_workers(pool, _pool_processes(before), _stop_signal(error))
        raise
    pool.shutdown(wait=True)


@dataclass
class WorkerWarnings:
    """What a worker process logged on the "stimgen" logger and raised with `warnings.warn`,
    carried back so that the build shows it the way it shows its own (the CLI: on a line
    of its own, above the progress bar) instead of the worker printing it over the bar."""

    logged: list[tuple[int, str]]                               # (level, message)
    raised: list[tuple[str, type[Warning], str, int]]           # (message, category, file, line)

    def show(self) -> None:
        """Emit them again in this process, through its own handlers and warning filters."""
        for level, message in self.logged:
            logging.getLogger("stimgen").log(level, "%s", message)
        for message, category, filename, lineno in self.raised:
            warnings.warn_explicit(message, category, filename, lineno)


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.NOTSET)
        self.logged: list[tuple[int, str]] = []

    def emit(self, record):
        self.logged.append((record.levelno, record.getMessage()))


def _collecting(function: Callable, item) -> tuple[Any, WorkerWarnings, int | None]:
    """``function(item)`` in a worker process, its warnings collected, not printed; the last
    value is the signal that stopped it (None: it finished), the first None then."""
    logger = logging.getLogger("stimgen")
    collect = _Collect()
    handlers, propagate = logger.handlers[:], logger.propagate
    logger.handlers, logger.propagate = [collect], False
    result, stopped = None, _Worker.stop
    try:
        with warnings.catch_warnings(record=True) as caught:
            if stopped is None:
                _Worker.busy = True
                try:
                    if _Worker.stop is not None:      # it came just before `busy`
                        raise StopRequested(_Worker.stop)
                    result = function(item)
                finally:
                    _Worker.busy = False
    except StopRequested as stop:     # what it finished is journaled (render_and_rate)
        stopped = stop.signum
    finally:
        logger.handlers, logger.propagate = handlers, propagate
    return result, WorkerWarnings(collect.logged, [
        (str(w.message), w.category, w.filename, w.lineno) for w in caught]), stopped


def _render_in_worker(spec, chunk, out) -> tuple[list[dict], WorkerWarnings, int | None]:
    """:func:`render_and_rate` of one chunk in a worker process (see :func:`_collecting`)."""
    records, raised, stopped = _collecting(partial(render_and_rate, spec, out=out), chunk)
    return records or [], raised, stopped


# --------------------------------------------------------------------------------------
# submitit jobs: one identity each, or a few cheap ones
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class JobBatch:
    """What one job renders; pickled into the job."""

    spec: "RenderSpec"                         # what drawing needs (stimgen.plan.render_spec)
    out: Path                                  # the build folder, absolute (shared with the nodes)
    identities: tuple[tuple[str, str], ...]    # (identity id, its cache key), in plan order
    workers: int = 1                           # worker processes inside the job
    units: tuple["IdentityUnit", ...] = ()     # the identities' planned targets, in that order

    @property
    def identity_ids(self) -> list[str]:
        return [identity for identity, _ in self.identities]


def render_identities(batch: JobBatch) -> dict[str, Any]:
    """Render and rate the batch's identities inside a job; runs in the job's process.

    Each identity's cache record is written atomically as soon as all its stimuli are, so
    a job that dies half-way keeps the identities it finished; within an identity, every
    stimulus is journaled as it is written, so that the identity's next job (a retry, or
    the next run of the build) draws only the rest. Returns the job's timings: ``startup``
    (seconds from the process's start until rendering begins: Python, imports, unpickling
    what it renders; None where unknown), ``render`` (the rest) and ``identities``.
    """
    began = time.perf_counter()
    startup = process_age()
    _follow_slurm_signals()
    try:
        keys = dict(batch.identities)
        pending = [(unit, keys[unit.identity.id]) for unit in batch.units]
        workers = max(1, min(batch.workers, len(_usable_cpus()), len(pending) * 4))
        finished = {unit.identity.id: journaled_records(batch.out, unit.identity.id, key)
                    for unit, key in pending}
        kept = sum(map(len, finished.values()))
        print(f"stimgen: job on {os.uname().nodename}: {quantity(len(pending), 'identity')} "
              f"({', '.join(keys)}), "
              f"{quantity(sum(len(u.targets) for u, _ in pending), 'stimulus')}"
              + (f" ({kept} finished by an earlier attempt)" if kept else "")
              + f", {quantity(workers, 'worker')} -> {batch.out}", flush=True)
        if startup is not None:
            startup += time.perf_counter() - began
            print(f"stimgen: start-up {startup:.1f} s (Python, imports, the planned work)", flush=True)
        rendering = time.perf_counter()

        def stored(unit: "IdentityUnit", records: list[dict]) -> None:
            print(f"stimgen: identity {unit.identity.id} done in "
                  f"{time.perf_counter() - rendering:.1f} s", flush=True)

        render_units(batch.spec, pending, batch.out, workers=workers,
                     split=cheap_identities(batch.spec.backend), finished=finished,
                     on_stored=stored)
        return {"startup": startup, "render": time.perf_counter() - rendering,
                "identities": len(pending)}
    except StopRequested as stop:      # SLURM ends the job (_follow_slurm_signals)
        _end_job(stop.signum)
        raise


def render_units(spec: "RenderSpec", pending: Sequence[tuple["IdentityUnit", str]],
                 out: Path, *, workers: int, split: bool, gpus: Sequence[str] = (),
                 finished: Mapping[str, Mapping[str, dict]] | None = None,
                 on_stored: Callable[["IdentityUnit", list[dict]], None] | None = None,
                 on_progress: Callable[[int], None] | None = None,
                 while_waiting: Callable[[], None] | None = None) -> dict[str, list[dict]]:
    """Render and rate identities in chunks (:func:`run_chunks`), storing each identity's
    records (:func:`~stimgen.build_folder.store_records`) as soon as its last stimulus is
    drawn and then forgetting its journals; returns the records by identity.

    Every stimulus is journaled as its files are written; stimuli an earlier, stopped run
    journaled are not drawn again (a chunk of only such stimuli is skipped), and their
    records join the identity's.

    Parameters
    ----------
    spec : RenderSpec
        What drawing needs (:func:`stimgen.plan.render_spec`).
    pending : sequence of (IdentityUnit, key)
        The identities to draw and their cache keys.
    out : Path
        The build folder.
    workers, gpus, on_progress, while_waiting
        As for :func:`run_chunks`.
    split : bool
        Whether an identity may be split among workers (:func:`cheap_identities`).
    finished : mapping, optional
        The journaled records of each identity (identity id -> stimulus id -> record), when
        the caller has read them already (:func:`~stimgen.build_folder.journaled_records`).
    on_stored : callable, optional
        Called with each identity and its records, once stored.
    """
    if finished is None:
        finished = {unit.identity.id: journaled_records(out, unit.identity.id, key)
                    for unit, key in pending}
    chunks: list[Chunk] = []
    for unit, key in pending:
        done = frozenset(finished[unit.identity.id])
        chunks += [Chunk(unit, chunk.start, chunk.stop, key, done & set(chunk.stimulus_ids))
                   for chunk in identity_chunks(unit, workers, split)]
    chunks = [chunk for chunk in chunks if not chunk.done >= set(chunk.stimulus_ids)]
    left = {unit.identity.id: 0 for unit, _ in pending}
    for chunk in chunks:
        left[chunk.unit.identity.id] += 1
    by_identity = {unit.identity.id: dict(finished[unit.identity.id]) for unit, _ in pending}
    stored: dict[str, list[dict]] = {}

    def store(unit: "IdentityUnit", key: str) -> None:
        order = {sid: i for i, sid in enumerate(unit.stimulus_ids())}
        records = sorted(by_identity.pop(unit.identity.id).values(),
                         key=lambda r: order[r["stimulus_id"]])
        store_records(out, unit.identity.id, key, records)
        clear_journals(out, unit.identity.id)
        stored[unit.identity.id] = records
        if on_stored is not None:
            on_stored(unit, records)

    def collect(chunk: Chunk, records: list[dict]) -> None:
        identity = chunk.unit.identity.id
        by_identity[identity].update({r["stimulus_id"]: r for r in records})
        left[identity] -= 1
        if left[identity] == 0:
            store(chunk.unit, chunk.key)

    for unit, key in pending:          # finished before the last run stopped, not yet stored
        if left[unit.identity.id] == 0:
            store(unit, key)
    run_chunks(spec, chunks, out, workers=workers, on_result=collect,
               on_progress=on_progress, gpus=gpus, while_waiting=while_waiting)
    return stored


def _follow_slurm_signals() -> None:
    """Under SLURM, run to the real time limit, and stop within seconds when SLURM ends the
    job.

    submitit has SLURM send SIGUSR2 90 s before the time limit (for limits up to 1.5 min: at
    once) and then stops a job that cannot checkpoint itself, so short limits would end jobs
    that still had time: the job carries on instead. It also ignores SIGTERM, which SLURM
    sends when it cancels a job (scancel, time limit, preemption) and follows with SIGKILL
    only ``KillWait`` seconds later: the job stops instead (a
    :class:`~stimgen.interrupt.StopRequested`, as a build's own process stops), journals
    the stimuli being written, stops its workers and exits (:func:`_end_job`), so that the
    build sees the job's end state (CANCELLED, TIMEOUT, ...) within seconds.
    """
    if "SLURM_JOB_ID" not in os.environ:
        return

    def carry_on(signum, frame) -> None:
        print("stimgen: SLURM signalled the approaching time limit; carrying on", flush=True)

    stopping = []

    def stop(signum, frame) -> None:
        if stopping:                   # already stopping: let the journaling finish
            return
        stopping.append(signum)
        print("stimgen: SLURM is ending this job (SIGTERM); stopping", flush=True)
        raise StopRequested(signum)

    signal.signal(signal.SIGUSR2, carry_on)
    signal.signal(signal.SIGTERM, stop)


def _end_job(signum: int) -> None:
    """Exit a stopped job at once, with the signal's status and no result file, so that the
    build reports SLURM's end state (CANCELLED, TIMEOUT, ...) rather than an exception."""
    print(f"stimgen: stopped by {signal_name(signum)}; finished stimuli are kept", flush=True)
    sys.stderr.flush()
    os._exit(128 + signum)


def process_age() -> float | None:
    """Seconds since this process started (from Linux's /proc); None where that is unknown."""
    try:
        stat = Path("/proc/self/stat").read_text()
        started = int(stat.rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")
        return max(0.0, float(Path("/proc/uptime").read_text().split()[0]) - started)
    except (OSError, ValueError, IndexError):
        return None


def _usable_cpus() -> set[int]:
    try:
        return os.sched_getaffinity(0)          # the job's allocation on a SLURM node
    except AttributeError:                      # pragma: no cover - not Linux
        return set(range(os.cpu_count() or 1))


def check_available(execution: "ExecutionSpec") -> None:
    """Fail fast, before any work, when the chosen executor cannot run on this machine."""
    if execution.executor == "local":
        return
    if importlib.util.find_spec("submitit") is None:
        raise ExecutorUnavailableError(
            f"--executor {execution.executor} needs the submitit package, which is not "
            "installed", hint="pip install submitit, or use --executor local")
    if execution.executor == "slurm" and shutil.which("sbatch") is None:
        raise ExecutorUnavailableError(
            "--executor slurm submits jobs with sbatch, but sbatch is not on PATH: this is not "
            "a SLURM login node", hint="run the build on your cluster's login node (see "
                                       "docs/cluster.md), or use --executor local or "
                                       "submitit-local on this machine")


def slurm_parameters(execution: "ExecutionSpec", *, gpu_backend: bool,
                     job_name: str) -> dict[str, Any]:
    """The submitit SlurmExecutor parameters (sbatch options) of one identity job.

    Examples
    --------
    >>> from stimgen.protocol.execution import ExecutionSpec
    >>> spec = ExecutionSpec(executor="slurm", slurm={"partition": "gpu", "time": "2:00:00"})
    >>> params = slurm_parameters(spec, gpu_backend=True, job_name="stimgen-demo")
    >>> params["partition"], params["time"], params["gpus_per_node"]
    ('gpu', 120, 1)
    """
    slurm = execution.slurm
    gpus = slurm.gpus_per_job if slurm.gpus_per_job is not None else int(gpu_backend)
    params: dict[str, Any] = {
        "job_name": job_name,
        "time": slurm.time,                       # minutes
        "nodes": 1,
        "ntasks_per_node": 1,
        "cpus_per_task": slurm.cpus_per_job,
        "mem": _slurm_memory(slurm.mem_gb),
        "array_parallelism": slurm.array_parallelism,
    }
    if gpus:
        params["gpus_per_node"] = gpus
    for name in ("partition", "account"):
        if getattr(slurm, name):
            params[name] = getattr(slurm, name)
    if slurm.setup:
        params["setup"] = list(slurm.setup)
    if slurm.extra:
        params["additional_parameters"] = {k.replace("_", "-"): v for k, v in slurm.extra.items()}
    return params


def _slurm_memory(gigabytes: float) -> str:
    return f"{int(gigabytes)}GB" if gigabytes == int(gigabytes) else f"{round(gigabytes * 1024)}MB"


def jobs_folder(execution: "ExecutionSpec", out: Path) -> Path:
    """Where job scripts, pickles and logs go: ``log_folder`` relative to ``out``."""
    folder = Path(execution.log_folder).expanduser() if execution.log_folder else Path(JOBS_FOLDER)
    return (folder if folder.is_absolute() else out / folder).absolute()


def make_executor(execution: "ExecutionSpec", folder: Path, *, gpu_backend: bool,
                  job_name: str):
    """A configured submitit executor (SlurmExecutor or LocalExecutor) writing into ``folder``."""
    import submitit

    if execution.executor == "slurm":
        check_available(execution)
        executor = submitit.SlurmExecutor(folder=folder)
        executor.update_parameters(**slurm_parameters(execution, gpu_backend=gpu_backend,
                                                      job_name=job_name))
        return executor
    executor = submitit.LocalExecutor(folder=folder)
    executor.update_parameters(timeout_min=execution.slurm.time)
    return executor


def local_job_slots(execution: "ExecutionSpec", units: int, gpus: Sequence[str]) -> int:
    """Identity jobs run at once by submitit-local: ``jobs``, else one per GPU or per core."""
    if execution.jobs is not None:
        return max(1, min(execution.jobs, units))
    if gpus:
        return max(1, min(len(gpus), units))
    return max(1, min(os.cpu_count() or 1, units))


def cheap_identities(backend) -> bool:
    """Whether an identity of ``backend`` (the protocol's backend section) takes seconds, not
    minutes (schematic faces): such identities are split among local workers and share a
    job, so that start-up costs do not dominate."""
    return backend.name == "schematic"


def identities_per_job(execution: "ExecutionSpec", backend, identities: int,
                       slots: int) -> int:
    """How many identities one job renders: ``execution.identities_per_job``, or with
    ``auto`` one for emostyle and, for cheap identities, as many as spreads them evenly over
    the ``slots`` jobs that can run at once (one start-up per job, every slot busy).

    Examples
    --------
    >>> from stimgen.protocol.execution import ExecutionSpec
    >>> from stimgen.protocol.loader import protocol_from_text
    >>> demo = protocol_from_text("study: {name: d}\\nidentities: [{id: a, seed: 1}]\\n"
    ...                           "targets: {emotions: [happy]}\\n")
    >>> auto = ExecutionSpec(executor="slurm")
    >>> schematic = demo.backend
    >>> (identities_per_job(auto, schematic, 40, slots=16),
    ...  identities_per_job(auto, schematic, 4, slots=32))
    (3, 1)
    >>> identities_per_job(auto.model_copy(update={"identities_per_job": 5}), schematic, 40, 16)
    5
    """
    if execution.identities_per_job != "auto":
        return int(execution.identities_per_job)
    if not cheap_identities(backend):
        return 1
    return max(1, math.ceil(identities / max(1, slots)))


def job_slots(execution: "ExecutionSpec", identities: int, gpus: Sequence[str],
              partition_cpus: int | None = None) -> int:
    """Jobs that can run at once: on SLURM ``array_parallelism``, at most the partition's CPUs
    over ``cpus_per_job`` when sinfo told them; with submitit-local, :func:`local_job_slots`."""
    if execution.executor != "slurm":
        return local_job_slots(execution, identities, gpus)
    slots = execution.slurm.array_parallelism
    if partition_cpus:
        slots = min(slots, max(1, partition_cpus // execution.slurm.cpus_per_job))
    return max(1, min(slots, identities))


def job_workers(execution: "ExecutionSpec", backend) -> int:
    """Worker processes inside one job: its CPUs for cheap identities on SLURM, else 1
    (an emostyle identity runs in one process, on its GPU)."""
    if execution.executor == "slurm" and cheap_identities(backend):
        return execution.slurm.cpus_per_job
    return 1


def uses_gpu(backend) -> bool:
    """Whether ``backend`` (the protocol's backend section) renders on a GPU (emostyle,
    unless told to use the CPU)."""
    options = getattr(backend, "options", None)
    return backend.name == "emostyle" and getattr(options, "device", "cpu") != "cpu"


# --------------------------------------------------------------------------------------
# Running the jobs: submit, watch, retry, report
# --------------------------------------------------------------------------------------
@dataclass
class _Flight:
    """One submitted job and what the build has seen of it."""

    batch: JobBatch
    job: Any                          # a submitit Job
    gpu: str | None
    submitted: float                  # time.monotonic() at submission
    stamps: dict[str, int | None]     # identity record mtimes at submission
    state: str = "PENDING"            # SLURM's last word on it (or RUNNING for local jobs)
    reason: str = ""                  # squeue's reason while pending
    running_since: float | None = None
    gone_since: float | None = None   # first seen ended or unknown without a result

    @property
    def job_id(self) -> str:
        return str(self.job.job_id)

    def finished_identities(self) -> list[str]:
        """Identities of the job whose record was written since it was submitted."""
        return [i for i in self.batch.identity_ids
                if _record_stamp(self.batch.out, i) != self.stamps[i]]


@dataclass
class _Outcome:
    """How a job ended: ``error`` None on success, with its timings."""

    error: str | None = None
    timings: dict[str, Any] = field(default_factory=dict)
    log_tail: tuple[str, ...] = ()


def _record_stamp(out: Path, identity: str) -> int | None:
    try:
        return identity_record_path(out, identity).stat().st_mtime_ns
    except OSError:
        return None


def run_units(spec: "RenderSpec", pending: list[tuple["IdentityUnit", str]], out: Path,
              execution: "ExecutionSpec", *, progress: bool = True,
              job: Callable[[JobBatch], Any] | None = None,
              while_waiting: Callable[[], None] | None = None) -> None:
    """Run the identities as submitit jobs until each has written its record, retrying
    failures.

    On SLURM the jobs go out together (a few as separate jobs, more as one job array,
    ``array_parallelism`` at once); with ``submitit-local`` each job is a process of its
    own, ``jobs`` at a time, each with its own GPU when there are GPUs. Cheap identities
    share jobs (:func:`identities_per_job`). SLURM is asked about the jobs at intervals that
    follow their length; a job that ends without a result (cancelled, out of time or
    memory, its node lost, or simply gone from a cluster without accounting) fails after a
    short grace period and its unfinished identities are resubmitted, up to
    ``max_retries`` times. Finished identities keep their records even when others fail.

    Parameters
    ----------
    spec : RenderSpec
        What drawing needs (:func:`stimgen.plan.render_spec`), pickled into every job.
    pending : list of (IdentityUnit, key)
        The identities to run and their cache keys.
    out : Path
        The build folder; the jobs write stimuli and records into it.
    execution : ExecutionSpec
        ``executor`` is ``slurm`` or ``submitit-local``.
    progress : bool
        Show the pending/running/finished view on stderr.
    job : callable, optional
        The job function; default :func:`render_identities`.
    while_waiting : callable, optional
        Called once, right after the first jobs went out (the caller's own preparations,
        done while the jobs start).

    Raises
    ------
    UnitsFailedError
        Naming every identity that failed all its attempts, its last error and log file.
    KeyboardInterrupt
        Ctrl-C, or :class:`~stimgen.interrupt.StopRequested` for SIGTERM: every job in
        flight is cancelled first (:meth:`_JobRun.cancel_all`); the stimuli they finished
        are journaled in the build folder, and the next run's jobs draw only the rest.
    """
    if not pending:
        return
    from tqdm import tqdm

    from stimgen.protocol.models import study_slug

    run = _JobRun(spec, pending, Path(out).absolute(), execution,
                  job or render_identities, progress)
    run.bar = tqdm(total=len(pending), desc="identities", unit="id", file=sys.stderr,
                   disable=not progress, leave=False)
    try:
        run.executor = make_executor(execution, run.folder, gpu_backend=run.gpu_backend,
                                     job_name=f"stimgen-{study_slug(spec.study)}")
        run.start()
        run.launch()
        if while_waiting is not None:
            while_waiting()
        while run.queue or run.flights:
            run.step()
    except BaseException:
        run.cancel_all()
        raise
    finally:
        run.bar.close()
    run.finish()


class _JobRun:
    """The state of one :func:`run_units` call: what waits, what flies, what is done."""

    def __init__(self, spec, pending, out: Path, execution, job, progress: bool):
        self.spec, self.out, self.execution, self.job = spec, out, execution, job
        self.progress = progress
        self.slurm = execution.executor == "slurm"
        self.folder = jobs_folder(execution, out)
        self.gpu_backend = uses_gpu(spec.backend)
        # submitit's LocalExecutor takes GPU indices (not UUIDs) for CUDA_VISIBLE_DEVICES.
        self.gpus = ([g for g in visible_gpus() if g.isdigit()]
                     if self.gpu_backend and not self.slurm else [])
        self.keys = {unit.identity.id: key for unit, key in pending}
        self.units = {unit.identity.id: unit for unit, _ in pending}
        self.queue: deque[str] = deque(self.keys)
        self.attempts = {identity: 0 for identity in self.keys}
        self.flights: list[_Flight] = []
        self.finished: set[str] = set()
        self.failures: list[UnitFailure] = []
        self.retried = 0
        self.durations: list[float] = []          # submission to result, of finished jobs
        self.timings: list[dict[str, Any]] = []   # what finished jobs measured
        self.watch = scheduler.SlurmWatch() if self.slurm else None
        self.asked = float("-inf")                # when SLURM was last asked
        self.changed = time.monotonic()           # last progress or change of state
        self.quiet_notices = 0
        self.accounting_noted = False
        self.executor = None
        self.bar = None
        self.counts = ""                          # the bar's last counts
        cpus = (scheduler.partition_cpus(execution.slurm.partition)
                if self.slurm and execution.identities_per_job == "auto"
                and cheap_identities(spec.backend) else None)
        self.slots = job_slots(execution, len(self.keys), self.gpus, cpus)
        self.per_job = identities_per_job(execution, spec.backend, len(self.keys), self.slots)
        self.workers = job_workers(execution, spec.backend)

    # -- the loop ------------------------------------------------------------------------
    def start(self) -> None:
        jobs = math.ceil(len(self.keys) / self.per_job)
        shared = (f", {self.per_job} identities per job" if self.per_job > 1 else "")
        self.say(f"... {quantity(len(self.keys), 'identity')} in {quantity(jobs, 'job')} with "
                 f"{self.execution.executor}{shared}; logs in {self.folder}")

    def step(self) -> None:
        """Submit into free slots, look at every job once, then wait a moment."""
        self.launch()
        now = time.monotonic()
        if self.slurm and self.flights and now - self.asked >= self.interval(now):
            self.ask_slurm(now)
        _refresh(self.folder)
        for flight in list(self.flights):
            self.note_finished(flight.finished_identities())
            outcome = self.outcome(flight, now)
            if outcome is not None:
                self.flights.remove(flight)
                self.settle(flight, outcome, now)
        self.show_counts()
        self.maybe_say_what_waits(now)
        if self.queue or self.flights:
            time.sleep(self.tick(now))

    def interval(self, now: float) -> float:
        """Seconds between two questions to SLURM, following the jobs' length."""
        waited = now - min((f.submitted for f in self.flights), default=now)
        typical = statistics.median(self.durations) if self.durations else None
        return scheduler.poll_interval(waited, typical)

    def tick(self, now: float) -> float:
        """Seconds between two looks at the result files (cheap: one stat per job)."""
        return min(2.0, max(0.1, self.interval(now) / 10))

    def launch(self) -> None:
        """Submit queued identities into free slots, ``per_job`` to a job."""
        free = (len(self.queue) if self.slurm
                else self.slots - len(self.flights)) if self.queue else 0
        batches = []
        while self.queue and len(batches) < free:
            ids = [self.queue.popleft() for _ in range(min(self.per_job, len(self.queue)))]
            batches.append(JobBatch(self.spec, self.out,
                                    tuple((i, self.keys[i]) for i in ids), self.workers,
                                    tuple(unit for unit in self.units.values()      # plan order
                                          if unit.identity.id in ids)))
        if not batches:
            return
        launched = self.submit(batches)
        for flight in launched:
            for identity in flight.batch.identity_ids:
                self.attempts[identity] += 1
        self.flights.extend(launched)
        self.changed = time.monotonic()
        if self.slurm:
            self.say(_submitted_line(launched))

    def submit(self, batches: list[JobBatch]) -> list[_Flight]:
        from submitit.core.utils import FailedJobError

        stamps = [{i: _record_stamp(self.out, i) for i in b.identity_ids} for b in batches]
        try:
            jobs = self._submit_jobs(batches)
        except FailedJobError as err:      # what submitit raises when sbatch refuses a job
            names = ", ".join(i for b in batches for i in b.identity_ids)
            raise BuildError(f"sbatch refused the job(s) for {names}: {str(err).strip()}",
                             hint=f"check partition, account, cpus_per_job, mem_gb, time and "
                                  f"extra options (the job script is in {self.folder}); "
                                  f"identities finished so far are kept") from None
        now = time.monotonic()
        if self.slurm:             # SLURM says when they run
            return [_Flight(batch, job, gpu, now, stamp)
                    for batch, (job, gpu), stamp in zip(batches, jobs, stamps)]
        return [_Flight(batch, job, gpu, now, stamp, state="RUNNING", running_since=now)
                for batch, (job, gpu), stamp in zip(batches, jobs, stamps)]

    def _submit_jobs(self, batches: list[JobBatch]) -> list[tuple[Any, str | None]]:
        """SLURM: separate jobs when few (they start at once), else one job array. Local:
        one process per job, each on the least busy GPU when there are GPUs."""
        executor = self.executor
        if self.slurm:
            if len(batches) > min(SEPARATE_JOBS, self.execution.slurm.array_parallelism):
                return [(j, None) for j in executor.map_array(self.job, batches)]
            jobs = []
            try:
                for batch in batches:
                    jobs.append((executor.submit(self.job, batch), None))
            except BaseException:          # sbatch refused a later one: none left behind
                for job, _ in jobs:
                    job.cancel(check=False)
                raise
            return jobs
        busy = [f.gpu for f in self.flights]
        jobs = []
        for batch in batches:
            gpu = min(self.gpus, key=busy.count) if self.gpus else None
            if gpu is not None:
                busy.append(gpu)
                executor.update_parameters(gpus_per_node=1, visible_gpus=(int(gpu),))
            jobs.append((executor.submit(self.job, batch), gpu))
        return jobs

    def ask_slurm(self, now: float) -> None:
        self.asked = now
        if not self.watch.look([f.job_id for f in self.flights]):
            return
        if self.watch.accounting is False and not self.accounting_noted:
            self.accounting_noted = True
            self.say(f"... SLURM keeps no accounting here (sacct: "
                     f"{self.watch.accounting_error}); a job that leaves the queue without a "
                     f"result counts as failed after {GONE_GRACE:.0f} s")
        for flight in self.flights:
            state = self.watch.state(flight.job_id)
            word = state.state if state is not None else "UNKNOWN"
            if (word, state.reason if state else "") != (flight.state, flight.reason):
                self.changed = now
            flight.state, flight.reason = word, (state.reason if state else "")
            if word == "RUNNING" and flight.running_since is None:
                flight.running_since = now

    def outcome(self, flight: _Flight, now: float) -> _Outcome | None:
        """How the job ended, or None while it may still write its result."""
        if flight.job.paths.result_pickle.exists():
            return _result_outcome(flight, self.execution)
        if not self.slurm:
            if not flight.job.done():
                return None
            return _result_outcome(flight, self.execution)   # submitit waits for the file
        watch = self.watch
        if watch.looked_at is None or watch.looked_at < flight.submitted:
            return None                      # no answer about this job yet
        if watch.unreadable_since is not None:
            return None                      # the queue cannot be read: wait, and say so
        state = watch.state(flight.job_id)
        if state is not None and not state.ended:
            flight.gone_since = None
            return None
        if flight.gone_since is None:
            flight.gone_since = now
        grace = ENDED_GRACE if state is not None else GONE_GRACE
        if now - flight.gone_since < grace:
            return None
        tail = scheduler.log_tail([Path(flight.job.paths.stderr), Path(flight.job.paths.stdout)])
        return _Outcome(scheduler.ended_reason(
            state, tail, time_limit_min=self.execution.slurm.time,
            mem_gb=self.execution.slurm.mem_gb, accounting=watch.accounting), log_tail=tuple(tail))

    def settle(self, flight: _Flight, outcome: _Outcome, now: float) -> None:
        """Count a finished job: its identities done, retried or failed."""
        self.changed = now
        if outcome.error is None:
            self.durations.append(now - flight.submitted)
            if outcome.timings:
                self.timings.append(outcome.timings)
            self.note_finished(flight.batch.identity_ids)
            return
        done = [i for i in flight.batch.identity_ids
                if cached_records(self.out, i, self.keys[i])[0] is not None]
        self.note_finished(done)
        left = [i for i in flight.batch.identity_ids if i not in done]
        again = [i for i in left if self.attempts[i] <= self.execution.max_retries]
        log = Path(flight.job.paths.stderr)
        for identity in left:
            if identity not in again:
                self.failures.append(UnitFailure(identity, self.attempts[identity],
                                                 outcome.error, log, outcome.log_tail))
        what = (f"identity {left[0]}" if len(left) == 1 and len(flight.batch.identities) == 1
                else f"job {flight.job_id} ({', '.join(flight.batch.identity_ids)})")
        attempt = max((self.attempts[i] for i in left), default=1)
        line = (f"{what} failed (attempt {attempt} of {self.execution.max_retries + 1}): "
                f"{outcome.error}")
        if done:
            line += f"; kept finished {', '.join(done)}"
        if again:
            self.retried += len(again)
            self.queue.extend(again)
            line += f"; retrying {', '.join(again)}" if what.startswith("job") else "; retrying"
        self.say(line)

    def note_finished(self, identities: Sequence[str]) -> None:
        new = [i for i in identities if i not in self.finished]
        if new:
            self.finished.update(new)
            self.bar.update(len(new))
            self.changed = time.monotonic()

    def show_counts(self) -> None:
        """The bar's counts, in identities, from the last answer of the scheduler."""
        pending = sum(1 for i in self.queue if i not in self.finished)
        running = 0
        for flight in self.flights:
            left = sum(1 for i in flight.batch.identity_ids if i not in self.finished)
            if flight.state in ("PENDING", "REQUEUED", "REQUEUE_HOLD", "CONFIGURING"):
                pending += left
            else:
                running += left
        counts = (f"pending {pending}, running {running}, retried {self.retried}, "
                  f"failed {len(self.failures)}")
        if counts != self.counts:
            self.counts = counts
            self.bar.set_postfix_str(counts)

    def maybe_say_what_waits(self, now: float) -> None:
        """After a while without progress, say what the build is waiting for."""
        quiet = now - self.changed
        if not self.flights or quiet < QUIET_SECONDS * 2 ** self.quiet_notices:
            if quiet < QUIET_SECONDS:
                self.quiet_notices = 0
            return
        self.quiet_notices += 1
        parts = []
        for flight in self.flights[:6]:
            names = ", ".join(i for i in flight.batch.identity_ids if i not in self.finished)
            if flight.state == "RUNNING" and flight.running_since is not None:
                what = f"running for {scheduler.describe_wait(now - flight.running_since)}"
            elif flight.state == "PENDING":
                what = f"pending: {scheduler.explain_pending(flight.reason)}"
            elif flight.gone_since is not None:
                what = (f"{flight.state.lower()} without a result for "
                        f"{scheduler.describe_wait(now - flight.gone_since)}")
            else:
                what = flight.state.lower()
            parts.append(f"job {flight.job_id} ({names}) {what}")
        if len(self.flights) > 6:
            parts.append(f"and {len(self.flights) - 6} more job(s)")
        line = (f"... no progress for {scheduler.describe_wait(quiet)}; waiting for "
                + "; ".join(parts))
        if self.watch is not None and self.watch.unreadable_since is not None:
            line += (f". SLURM's queue could not be read for "
                     f"{scheduler.describe_wait(now - self.watch.unreadable_since)} "
                     f"({self.watch.queue_error}); asking again")
        self.say(line)

    def cancel_all(self) -> None:
        """Cancel every job still in flight (a stop: Ctrl-C, SIGTERM; or an error of the
        build itself), without waiting for them.

        SLURM: ``scancel``, which sends the jobs SIGTERM (they journal what they are writing
        and exit, :func:`_follow_slurm_signals`) and SIGKILL after the cluster's
        ``KillWait``; submitit-local sends each job's process SIGINT. Either way a job keeps
        every stimulus it finished (:class:`stimgen.build_folder.StimulusJournal`), so a
        cancelled or preempted identity resumes where it stopped.
        """
        if not self.flights:
            return
        if self.slurm:
            # an array by its id: its tasks that already ended ignore scancel
            ids = sorted({f.job_id.split("_", 1)[0] for f in self.flights})
            with contextlib.suppress(OSError):       # scancel gone from PATH meanwhile
                subprocess.call(["scancel", *ids], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
            self.say(f"... cancelled job(s) {' '.join(ids)}")
        else:
            for flight in self.flights:
                with contextlib.suppress(Exception):  # a job that already ended
                    flight.job.cancel(check=False)
        self.flights.clear()

    def finish(self) -> None:
        if self.failures:
            raise UnitsFailedError(sorted(self.failures, key=lambda f: f.identity_id),
                                   len(self.keys))
        retried = sum(1 for n in self.attempts.values() if n > 1)
        cost = _cost_line(self.timings)
        self.say(f"... {quantity(len(self.keys), 'identity')} finished"
                 + (f" ({cost})" if cost else "")
                 + (f", {retried} after a retry" if retried else ""))

    def say(self, message: str) -> None:
        if self.progress:
            self.bar.write(message, file=sys.stderr)


def _refresh(folder: Path) -> None:
    """Make a network file system show new result files now (as submitit does)."""
    try:
        folder.chmod(folder.stat().st_mode)
    except OSError:
        pass


def _result_outcome(flight: _Flight, execution: "ExecutionSpec") -> _Outcome:
    """The outcome a job wrote (or, for a local job, the error submitit found)."""
    error = flight.job.exception()
    if error is not None:
        tail = scheduler.log_tail([Path(flight.job.paths.stderr)])
        return _Outcome(_error_summary(error, execution.slurm.time), log_tail=tuple(tail))
    try:
        timings = flight.job.result()
    except Exception:                       # noqa: BLE001 - a job function of the tests
        timings = None
    return _Outcome(None, timings if isinstance(timings, dict) else {})


def _cost_line(timings: list[dict[str, Any]]) -> str:
    """What the jobs measured: start-up per job and render time per identity (medians)."""
    startups = [t["startup"] for t in timings if t.get("startup") is not None]
    per_identity = [t["render"] / t["identities"] for t in timings
                    if t.get("render") is not None and t.get("identities")]
    parts = []
    if startups:
        parts.append(f"start-up {statistics.median(startups):.1f} s per job")
    if per_identity:
        parts.append(f"{statistics.median(per_identity):.1f} s per identity")
    return ", ".join(parts)


def _submitted_line(launched: list[_Flight]) -> str:
    """What went to SLURM, with the ids to cancel it by."""
    ids = [f.job_id for f in launched]
    arrays = sorted({i.split("_", 1)[0] for i in ids if "_" in i})
    names = ", ".join("+".join(f.batch.identity_ids) for f in launched)
    if arrays:
        kind, cancel = f"job array {', '.join(arrays)}", " ".join(arrays)
    else:
        kind = f"job{'s' if len(ids) > 1 else ''} {', '.join(ids)}"
        cancel = " ".join(ids)
    return f"... submitted {kind} for {names} (cancel with: scancel {cancel})"


def _error_summary(error: BaseException, time_limit_min: int | None = None) -> str:
    """One line on why a job failed: the exception line of its traceback, or its end state.

    submitit wraps a job's traceback between two separator lines (FailedJobError); a job
    that ended without a result (killed, out of time or memory) has only its state; a job
    that submitit stopped shortly before its time limit says "timed-out".
    """
    text = str(error)
    if "timed-out and not checkpointable" in text:
        limit = f" of {time_limit_min} min" if time_limit_min else ""
        return (f"reached its time limit{limit} (stopped by submitit shortly before it; "
                f"raise slurm.time)")
    lines = [line.strip() for line in text.splitlines()]
    separators = [i for i, line in enumerate(lines) if set(line) == {"-"} and len(line) > 8]
    if len(separators) >= 2:
        body = [line for line in lines[separators[0] + 1:separators[1]] if line]
        if body:
            return body[-1]
    state = next((line[line.index("(state:"):] for line in lines if "(state:" in line), "")
    if state:
        return f"the job ended without a result {state}"
    return next((line for line in lines if line), type(error).__name__)
