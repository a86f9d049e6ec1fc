"""Where the units of work run: this process, local worker processes, or submitit jobs.

Local workers render chunks (slices of one identity's targets) and hand their records back;
submitit jobs (a SLURM job array, or submitit's local processes) each render one whole
identity and write its cache record, which the build then merges. Either way the build
folder is the same file for file.

Stopping (Ctrl-C, SIGTERM: stimgen/interrupt.py): :func:`run_chunks` stops its workers
(:func:`stop_workers`) and :func:`run_units` cancels its jobs (:func:`cancel_jobs`) before the
stop goes on up; workers and jobs journal every stimulus they finished, so nothing finished
is drawn again.
"""
from __future__ import annotations

import contextlib
import importlib.util
import logging
import multiprocessing
import os
import shutil
import signal
import sys
import time
import warnings
from collections import deque
from contextlib import contextmanager
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

from stimgen.build_folder import JOBS_DIR, clear_journals, journaled_records, store_records
from stimgen.errors import BackendUnavailableError, BuildError
from stimgen.interrupt import STOP_SIGNALS, StopRequested
from stimgen.plan import plan_units
from stimgen.render import Chunk, render_and_rate

if TYPE_CHECKING:  # pragma: no cover
    from stimgen.plan import IdentityUnit
    from stimgen.protocol.execution import ExecutionSpec
    from stimgen.protocol.models import Protocol

#: Seconds between two looks at the submitted jobs (SLURM is asked through sacct, which
#: submitit itself rate-limits; a result file is noticed at the next look).
POLL_SECONDS = {"submitit-local": 0.25, "slurm": 5.0}
JOBS_FOLDER = JOBS_DIR                 # default job scripts and logs, inside the output folder


class ExecutorUnavailableError(BackendUnavailableError):
    """An executor that cannot run here (no sbatch on PATH, submitit not installed)."""


class UnitsFailedError(BuildError):
    """Identity jobs that still failed after their retries; finished identities are kept."""

    def __init__(self, failures: list["UnitFailure"], total: int):
        self.failures = failures
        lines = [f"{len(failures)} of {total} identity job(s) failed every attempt:"]
        for failure in failures:
            lines.append(f"  {failure.identity_id} ({failure.attempts} attempt(s)): "
                         f"{failure.error}")
            lines.append(f"    log: {failure.log}")
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


def run_chunks(protocol: "Protocol", chunks: list["Chunk"], out: Path, *, workers: int,
               on_result: Callable[["Chunk", list[dict]], None],
               on_progress: Callable[[int], None] | None = None,
               gpus: Sequence[str] = (), while_waiting: Callable[[], None] | None = None
               ) -> None:
    """Render and rate every chunk, serially (``workers`` <= 1) or in worker processes.

    Parameters
    ----------
    protocol, chunks, out
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
            on_result(chunk, render_and_rate(protocol, chunk, out, on_stimuli=on_progress))
        return
    before = {p.pid for p in multiprocessing.active_children()}
    pool = _worker_pool(workers, gpus)
    try:
        futures = {pool.submit(_render_in_worker, protocol, chunk, out): chunk
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


def _render_in_worker(protocol, chunk, out) -> tuple[list[dict], WorkerWarnings, int | None]:
    """:func:`render_and_rate` of one chunk in a worker process (see :func:`_collecting`)."""
    records, raised, stopped = _collecting(partial(render_and_rate, protocol, out=out), chunk)
    return records or [], raised, stopped


# --------------------------------------------------------------------------------------
# submitit jobs: one identity each
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class UnitJob:
    """What one identity job needs; pickled into the job (the protocol pickles whole)."""

    protocol: "Protocol"
    out: Path                     # the build folder, absolute (shared with the nodes)
    identity_id: str
    key: str                      # the identity's cache key, computed by the build


def render_identity(job: UnitJob) -> int:
    """Render and rate one identity, then write its cache record; runs inside the job.

    Returns the number of stimuli written. The record is written atomically and last, so
    the build sees either a complete identity or none.
    """
    unit = next(u for u in plan_units(job.protocol) if u.identity.id == job.identity_id)
    finished = journaled_records(job.out, job.identity_id, job.key)   # an earlier attempt's
    print(f"stimgen: identity {job.identity_id}, {len(unit.targets)} stimuli -> {job.out}"
          + (f" ({len(finished)} finished by an earlier attempt)" if finished else ""),
          flush=True)
    started = time.perf_counter()
    fresh = render_and_rate(job.protocol, Chunk(unit, 0, len(unit.targets), job.key,
                                                frozenset(finished)), job.out)
    finished.update({r["stimulus_id"]: r for r in fresh})
    order = {sid: i for i, sid in enumerate(unit.stimulus_ids())}
    records = sorted(finished.values(), key=lambda r: order[r["stimulus_id"]])
    store_records(job.out, job.identity_id, job.key, records)
    clear_journals(job.out, job.identity_id)
    print(f"stimgen: identity {job.identity_id} done in {time.perf_counter() - started:.1f} s",
          flush=True)
    return len(records)


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


@dataclass
class _Flight:
    unit: UnitJob
    job: Any                      # a submitit Job
    gpu: str | None


def run_units(protocol: "Protocol", pending: list[tuple["IdentityUnit", str]], out: Path,
              execution: "ExecutionSpec", *, progress: bool = True,
              job: Callable[[UnitJob], int] | None = None) -> None:
    """Run one submitit job per identity until each has written its record, retrying failures.

    On SLURM the identities go out as one job array (``array_parallelism`` at once); failed
    ones are resubmitted together, up to ``max_retries`` times. With ``submitit-local`` each
    identity is a process of its own, ``jobs`` at a time, each with its own GPU when there
    are GPUs. Finished identities keep their records even when others fail.

    Parameters
    ----------
    protocol : Protocol
    pending : list of (IdentityUnit, key)
        The identities to run and their cache keys.
    out : Path
        The build folder; the jobs write stimuli and records into it.
    execution : ExecutionSpec
        ``executor`` is ``slurm`` or ``submitit-local``.
    progress : bool
        Show the running/finished/failed view on stderr.
    job : callable, optional
        The job function; default :func:`render_identity`.

    Raises
    ------
    UnitsFailedError
        Naming every identity that failed all its attempts and its log file.
    KeyboardInterrupt
        Ctrl-C, or :class:`~stimgen.interrupt.StopRequested` for SIGTERM: every job in
        flight is cancelled first (:func:`cancel_jobs`); the stimuli they finished are
        journaled in the build folder, and the next run's jobs draw only the rest.
    """
    if not pending:
        return
    from tqdm import tqdm

    from stimgen.protocol.models import study_slug

    job = job or render_identity
    out = Path(out).absolute()
    folder = jobs_folder(execution, out)
    gpu_backend = uses_gpu(protocol)
    # submitit's LocalExecutor takes GPU indices (not UUIDs) for CUDA_VISIBLE_DEVICES.
    gpus = ([g for g in visible_gpus() if g.isdigit()]
            if gpu_backend and execution.executor == "submitit-local" else [])
    executor = make_executor(execution, folder, gpu_backend=gpu_backend,
                             job_name=f"stimgen-{study_slug(protocol.study.name)}")
    slots = (len(pending) if execution.executor == "slurm"
             else local_job_slots(execution, len(pending), gpus))
    queue = deque(UnitJob(protocol, out, unit.identity.id, key) for unit, key in pending)
    attempts = {unit.identity_id: 0 for unit in queue}
    flights: list[_Flight] = []
    failures: list[UnitFailure] = []
    bar = tqdm(total=len(queue), desc="identities", unit="id", file=sys.stderr,
               disable=not progress, leave=False)
    _say(progress, bar, f"... {len(queue)} identity job(s) with {execution.executor}; "
                        f"logs in {folder}")
    try:
        while queue or flights:
            launched = _launch(executor, execution, job, queue, flights, slots, gpus, folder)
            for flight in launched:
                attempts[flight.unit.identity_id] += 1
            if launched and execution.executor == "slurm":
                _say(progress, bar, _submitted_line(launched))
            for flight in [f for f in flights if f.job.done()]:
                flights.remove(flight)
                failure = _failure(flight, attempts[flight.unit.identity_id])
                if failure is not None and failure.attempts <= execution.max_retries:
                    _say(progress, bar, f"identity {failure.identity_id} failed (attempt "
                                        f"{failure.attempts} of {execution.max_retries + 1}): "
                                        f"{failure.error}; retrying")
                    queue.append(flight.unit)
                    continue
                if failure is not None:
                    failures.append(failure)
                bar.update(1)
            bar.set_postfix_str(_status_line(flights, len(queue), failures), refresh=False)
            if queue or flights:
                time.sleep(POLL_SECONDS[execution.executor])
    except KeyboardInterrupt:
        cancel_jobs([flight.job for flight in flights])
        raise
    finally:
        bar.close()
    if failures:
        raise UnitsFailedError(sorted(failures, key=lambda f: f.identity_id), len(attempts))
    retried = sum(1 for n in attempts.values() if n > 1)
    _say(progress, bar, f"... {len(attempts)} identity job(s) finished"
                        + (f", {retried} after a retry" if retried else ""))


def cancel_jobs(jobs: Sequence[Any]) -> None:
    """Tell submitted identity jobs to stop, without waiting for them.

    submitit-local sends each job's process SIGINT; SLURM runs ``scancel``, which sends the
    job SIGTERM and SIGKILL after the cluster's ``KillWait``. Either way a job keeps every
    stimulus it finished (:class:`stimgen.build_folder.StimulusJournal`), so a cancelled or
    preempted identity resumes where it stopped.
    """
    for job in jobs:
        with contextlib.suppress(Exception):      # a job that already ended, an sacct hiccup
            job.cancel(check=False)


def uses_gpu(protocol: "Protocol") -> bool:
    """Whether the protocol's backend renders on a GPU (emostyle, unless told to use the CPU)."""
    options = getattr(protocol.backend, "options", None)
    return protocol.backend.name == "emostyle" and getattr(options, "device", "cpu") != "cpu"


def _failure(flight: _Flight, attempts: int) -> UnitFailure | None:
    """None when the finished job succeeded; else why it failed and where its log is."""
    error = flight.job.exception()
    if error is None:
        return None
    return UnitFailure(flight.unit.identity_id, attempts, _error_summary(error),
                       Path(flight.job.paths.stderr))


def _launch(executor, execution, job, queue, flights, slots, gpus, folder) -> list[_Flight]:
    """Submit queued identities into free slots: a SLURM array, or one local process each."""
    free = slots - len(flights)
    batch = [queue.popleft() for _ in range(min(free, len(queue)))]
    if not batch:
        return []
    from submitit.core.utils import FailedJobError

    try:
        return _submit(executor, execution, job, batch, flights, gpus)
    except FailedJobError as err:       # what submitit raises when sbatch refuses a job
        raise BuildError(f"sbatch refused the job(s) for {', '.join(u.identity_id for u in batch)}:"
                         f" {str(err).strip()}",
                         hint=f"check partition, account, time and extra options (the job script "
                              f"is in {folder}); identities finished so far are kept") from None


def _submit(executor, execution, job, batch, flights, gpus) -> list[_Flight]:
    """SLURM: one job array for the whole batch. Local: one process per identity, each on
    the least busy GPU when there are GPUs."""
    if execution.executor == "slurm":
        launched = [_Flight(unit, j, None)
                    for unit, j in zip(batch, executor.map_array(job, batch))]
    else:
        busy = [f.gpu for f in flights]
        launched = []
        for unit in batch:
            gpu = min(gpus, key=busy.count) if gpus else None
            if gpu is not None:
                busy.append(gpu)
                executor.update_parameters(gpus_per_node=1, visible_gpus=(int(gpu),))
            launched.append(_Flight(unit, executor.submit(job, unit), gpu))
    flights.extend(launched)
    return launched


def _submitted_line(launched: list[_Flight]) -> str:
    """What went to SLURM, with the id to cancel it by."""
    array = str(launched[0].job.job_id).split("_", 1)[0]
    names = ", ".join(f.unit.identity_id for f in launched)
    kind = f"job array {array}" if "_" in str(launched[0].job.job_id) else f"job {array}"
    return f"... submitted {kind} for {names} (cancel with: scancel {array})"


def _status_line(flights: list[_Flight], queued: int, failures: list[UnitFailure]) -> str:
    waiting = sum(1 for f in flights if str(getattr(f.job, "state", "")).upper() == "PENDING")
    return (f"running {len(flights) - waiting}, waiting {waiting + queued}, "
            f"failed {len(failures)}")


def _error_summary(error: BaseException) -> str:
    """One line on why a job failed: the exception line of its traceback, or its end state.

    submitit wraps a job's traceback between two separator lines (FailedJobError); a job
    that ended without a result (killed, out of time or memory) has only its state.
    """
    lines = [line.strip() for line in str(error).splitlines()]
    separators = [i for i, line in enumerate(lines) if set(line) == {"-"} and len(line) > 8]
    if len(separators) >= 2:
        body = [line for line in lines[separators[0] + 1:separators[1]] if line]
        if body:
            return body[-1]
    state = next((line[line.index("(state:"):] for line in lines if "(state:" in line), "")
    if state:
        return f"the job ended without a result {state}"
    return next((line for line in lines if line), type(error).__name__)


def _say(progress: bool, bar, message: str) -> None:
    if progress:
        bar.write(message, file=sys.stderr)
