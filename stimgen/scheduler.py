"""What SLURM says about a build's jobs: the queue (squeue), the accounting (sacct) when the
cluster keeps one, the partition's size (sinfo), and why a job ended without a result.

Pure reading: nothing here submits or cancels a job (stimgen/executors.py does). Every
answer is taken as it comes; a cluster without accounting, or a queue that cannot be read
for a while, is a fact to work with and to report, never a reason to guess.
"""
from __future__ import annotations

import pwd
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

#: SLURM job states of a job that may still run or is running (squeue's and sacct's words).
ACTIVE_STATES = frozenset({
    "PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "STOPPED", "RESIZING",
    "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "SIGNALING", "STAGE_OUT", "RESV_DEL_HOLD"})
#: States of a job that has ended: it will write nothing more.
ENDED_STATES = frozenset({
    "COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL",
    "DEADLINE", "PREEMPTED", "REVOKED", "SPECIAL_EXIT"})

#: Seconds a command-line tool of SLURM may take before its answer counts as unreadable.
TOOL_TIMEOUT = 60.0

Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


def run_tool(command: Sequence[str]) -> "subprocess.CompletedProcess[str]":
    """Run one SLURM tool (squeue, sacct, sinfo) and capture its text; never raises for a
    non-zero exit (the caller reads it), only for a missing tool (OSError)."""
    return subprocess.run(list(command), capture_output=True, text=True, check=False,
                          timeout=TOOL_TIMEOUT)


@dataclass(frozen=True)
class JobState:
    """One job as SLURM describes it: its state word, squeue's reason, sacct's exit code."""

    state: str                    # e.g. PENDING, RUNNING, CANCELLED, TIMEOUT
    reason: str = ""              # squeue's %r: why it waits (Resources, ReqNodeNotAvail, ...)
    exit_code: str = ""           # sacct's ExitCode "code:signal", e.g. "0:15"
    detail: str = ""              # the rest of sacct's state, e.g. "by 1000" of "CANCELLED by 1000"
    source: str = "squeue"        # which tool said so

    @property
    def ended(self) -> bool:
        return self.state in ENDED_STATES

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES


@dataclass(frozen=True)
class Answer:
    """One tool's answer about a set of jobs: the states it gave, or why it gave none."""

    states: dict[str, JobState] = field(default_factory=dict)
    error: str | None = None      # the tool failed: its message (first line)


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _base_ids(job_ids: Iterable[str]) -> list[str]:
    """The ids to ask for: an array task ``12_3`` is asked through its array ``12``."""
    return sorted({str(j).split("_", 1)[0] for j in job_ids}, key=lambda j: (len(j), j))


def parse_queue(text: str) -> dict[str, JobState]:
    """squeue's ``%i|%T|%r`` lines as job states, by job id (``12_3`` for an array task).

    Examples
    --------
    >>> states = parse_queue("12_1|CANCELLED|None\\n12_2|PENDING|Resources\\n")
    >>> states["12_2"].state, states["12_2"].reason, states["12_1"].ended
    ('PENDING', 'Resources', True)
    """
    states = {}
    for line in text.splitlines():
        parts = line.strip().split("|", 2)
        if len(parts) < 2 or not parts[0]:
            continue
        reason = parts[2].strip() if len(parts) > 2 else ""
        states[parts[0].strip()] = JobState(parts[1].strip().upper(),
                                            "" if reason == "None" else reason)
    return states


def parse_accounting(text: str) -> dict[str, JobState]:
    """sacct's ``JobID|State|ExitCode`` lines (``-P -n -X``) as job states, by job id.

    Array ranges that have not started (``12_[3-5]``) are left out: they are still pending
    and squeue tells about them.

    Examples
    --------
    >>> states = parse_accounting("12_1|CANCELLED by 0|0:15\\n13|TIMEOUT|0:0\\n")
    >>> states["12_1"].state, states["12_1"].detail, states["13"].exit_code
    ('CANCELLED', 'by 0', '0:0')
    """
    states = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 2 or not parts[0] or "[" in parts[0] or "." in parts[0]:
            continue
        word, _, detail = parts[1].strip().partition(" ")
        states[parts[0].strip()] = JobState(word.upper(), exit_code=(parts[2].strip()
                                                                     if len(parts) > 2 else ""),
                                            detail=detail.strip(), source="sacct")
    return states


def read_queue(job_ids: Sequence[str], run: Runner = run_tool) -> Answer:
    """What squeue knows about these jobs, ended ones included (``--states=all``: SLURM keeps
    an ended job in its queue for ``MinJobAge`` seconds, 300 by default)."""
    if not job_ids:
        return Answer()
    command = ["squeue", "--noheader", "--array", "--states=all", "--format=%i|%T|%r",
               "--jobs=" + ",".join(_base_ids(job_ids))]
    try:
        done = run(command)
    except (OSError, subprocess.SubprocessError) as err:
        return Answer(error=f"squeue could not run: {err}")
    if done.returncode != 0:
        message = _first_line(done.stderr) or f"squeue exited with status {done.returncode}"
        if "invalid job id" in message.lower():      # none of them is known any more
            return Answer()
        return Answer(error=message)
    wanted = set(job_ids) | set(_base_ids(job_ids))
    return Answer({j: s for j, s in parse_queue(done.stdout).items() if j in wanted})


def read_accounting(job_ids: Sequence[str], run: Runner = run_tool) -> Answer:
    """What sacct recorded about these jobs; an error where the cluster keeps no accounting
    (``Slurm accounting storage is disabled``) or sacct is not allowed."""
    if not job_ids:
        return Answer()
    command = ["sacct", "--noheader", "--parsable2", "--allocations",
               "--format=JobID,State,ExitCode", "--jobs=" + ",".join(_base_ids(job_ids))]
    try:
        done = run(command)
    except (OSError, subprocess.SubprocessError) as err:
        return Answer(error=f"sacct could not run: {err}")
    if done.returncode != 0:
        return Answer(error=_first_line(done.stderr) or _first_line(done.stdout)
                      or f"sacct exited with status {done.returncode}")
    wanted = set(job_ids)
    return Answer({j: s for j, s in parse_accounting(done.stdout).items() if j in wanted})


def partition_cpus(partition: str | None, run: Runner = run_tool) -> int | None:
    """CPUs of the partition's usable nodes (allocated + idle; drained and down ones left
    out), or of the default partition; None when sinfo cannot tell.

    Examples
    --------
    >>> answer = "debug*|6/10/4/20\\ngpu|0/8/0/8\\n"
    >>> fake = lambda cmd: subprocess.CompletedProcess(cmd, 0, answer, "")
    >>> partition_cpus(None, run=fake), partition_cpus("gpu", run=fake)
    (16, 8)
    """
    try:
        done = run(["sinfo", "--noheader", "--format=%P|%C"])
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    total = None
    for line in done.stdout.splitlines():
        name, _, cpus = line.strip().partition("|")
        default = name.endswith("*")
        if (partition is None and default) or name.rstrip("*") == partition:
            try:
                allocated, idle = (int(n) for n in cpus.split("/")[:2])
            except ValueError:
                return None
            total = (total or 0) + allocated + idle
    return total


class SlurmWatch:
    """The build's view of its jobs, refreshed at each :meth:`look`: squeue first, then sacct
    for the jobs squeue no longer knows, while the cluster keeps accounting.

    ``accounting`` is None until sacct was first needed, then True or False; when False,
    ``accounting_error`` says why (e.g. "Slurm accounting storage is disabled").
    """

    def __init__(self, run: Runner = run_tool, clock: Callable[[], float] = time.monotonic):
        self._run = run
        self._clock = clock
        self.accounting: bool | None = None
        self.accounting_error = ""
        self.states: dict[str, JobState] = {}        # the last readable answer
        self.unreadable_since: float | None = None   # squeue failing since then
        self.queue_error = ""
        self.looked_at: float | None = None

    def look(self, job_ids: Sequence[str]) -> bool:
        """Ask SLURM about ``job_ids``; False when the queue could not be read this time
        (the last states are kept, ``queue_error`` says why)."""
        now = self._clock()
        queue = read_queue(job_ids, self._run)
        if queue.error is not None:
            self.queue_error = queue.error
            if self.unreadable_since is None:
                self.unreadable_since = now
            return False
        self.unreadable_since, self.queue_error = None, ""
        states = dict(queue.states)
        missing = [j for j in job_ids if j not in states or states[j].ended]
        if missing and self.accounting is not False:
            accounted = read_accounting(missing, self._run)
            if accounted.error is not None:
                self.accounting, self.accounting_error = False, accounted.error
            else:
                self.accounting = True
                for job_id, state in accounted.states.items():
                    known = states.get(job_id)
                    if known is None or (state.ended and known.ended):
                        # sacct adds the exit code and who cancelled to squeue's end state
                        states[job_id] = state
        self.states = states
        self.looked_at = now
        return True

    def state(self, job_id: str) -> JobState | None:
        """The job's state in the last readable answer; None when SLURM did not know it."""
        return self.states.get(job_id)


# --------------------------------------------------------------------------------------
# Why a job ended without a result
# --------------------------------------------------------------------------------------
_STEPD = re.compile(r"\*\*\* (?:JOB|STEP) [\d._]+ ON \S+ CANCELLED AT \S+(?P<why>[^*]*)\*\*\*")
_OOM = re.compile(r"oom[-_ ]kill|out of memory|exceeded (?:job )?memory limit", re.IGNORECASE)


def log_tail(paths: Sequence[Path], lines: int = 3) -> list[str]:
    """The last non-empty lines of the first of ``paths`` that has any (a job's stderr log,
    then its stdout log); submitit's own INFO lines are skipped."""
    for path in paths:
        try:
            with open(path, "rb") as handle:
                handle.seek(0, 2)
                handle.seek(max(0, handle.tell() - 16384))
                text = handle.read().decode("utf-8", "replace")
        except OSError:
            continue
        kept = [line.rstrip() for line in text.splitlines()
                if line.strip() and not line.startswith("submitit INFO")]
        if kept:
            tail = kept[-lines:]
            # slurmstepd's "*** JOB 12 ON node CANCELLED AT ... ***" says why; srun's
            # lines after it do not
            said = [line for line in kept if _STEPD.search(line)]
            if said and said[-1] not in tail:
                tail = [said[-1], *tail[1:]]
            return tail
    return []


def state_from_log(lines: Sequence[str]) -> str | None:
    """The end state a job's log shows: slurmstepd's ``*** JOB 12 ON node CANCELLED AT ...
    DUE TO TIME LIMIT ***`` lines and the kernel's out-of-memory kill.

    Examples
    --------
    >>> state_from_log(["slurmstepd-vm: error: *** JOB 15 ON vm CANCELLED AT "
    ...                 "2026-12-07T14:18:28 DUE TO TIME LIMIT ***"])
    'TIMEOUT'
    >>> state_from_log(["slurmstepd: error: Detected 1 oom_kill event in StepId=7.0."])
    'OUT_OF_MEMORY'
    """
    for line in reversed(lines):
        if _OOM.search(line):
            return "OUT_OF_MEMORY"
        match = _STEPD.search(line)
        if match:
            why = match["why"].upper()
            return ("TIMEOUT" if "TIME LIMIT" in why else "NODE_FAIL" if "NODE FAIL" in why
                    else "PREEMPTED" if "PREEMPTION" in why else "CANCELLED")
    return None


def _user(detail: str) -> str:
    """``by 1000`` -> ``by alice`` (sacct names who cancelled a job by uid)."""
    match = re.fullmatch(r"by (\d+)", detail)
    if not match:
        return detail
    try:
        return f"by {pwd.getpwuid(int(match[1])).pw_name}"
    except KeyError:
        return detail


def ended_reason(state: JobState | None, log: Sequence[str], *, time_limit_min: int,
                 mem_gb: float, accounting: bool | None) -> str:
    """One line on why a job ended without a result, from SLURM's state and its log.

    ``state`` None: SLURM no longer knows the job (it left the queue, and sacct, where there
    is one, has no record of it).

    Examples
    --------
    >>> ended_reason(JobState("TIMEOUT"), [], time_limit_min=60, mem_gb=16, accounting=True)
    'reached its time limit of 60 min (SLURM state TIMEOUT; raise slurm.time)'
    >>> ended_reason(None, [], time_limit_min=60, mem_gb=16, accounting=False)
    'left the queue without a result, and this cluster keeps no accounting (sacct) to say why'
    """
    word = state.state if state is not None else state_from_log(log)
    if word is not None and (state is None or word in ("FAILED", "COMPLETED")):
        word = state_from_log(log) or word       # a log's OOM kill explains a FAILED job
    shown = ""
    if state is not None:
        extra = " ".join(p for p in (_user(state.detail),
                                     f"exit code {state.exit_code}"
                                     if state.exit_code not in ("", "0:0") else "") if p)
        shown = f"SLURM state {state.state}" + (f" {extra}" if extra else "")
    elif word is not None:
        shown = "its log says so; SLURM no longer knows the job"
    why = {
        "CANCELLED": "was cancelled from outside stimgen (scancel, or by an administrator)",
        "TIMEOUT": f"reached its time limit of {time_limit_min} min",
        "OUT_OF_MEMORY": f"ran out of memory ({mem_gb:g} GB asked)",
        "NODE_FAIL": "lost its node (node failure)",
        "BOOT_FAIL": "could not start: its node failed to boot",
        "PREEMPTED": "was preempted by a higher-priority job and not requeued",
        "DEADLINE": "missed its deadline",
        "FAILED": "failed before writing its result (see its log)",
        "COMPLETED": "ended without writing its result",
    }.get(word or "")
    fix = {"TIMEOUT": "raise slurm.time", "OUT_OF_MEMORY": "raise slurm.mem_gb"}.get(word or "")
    if why is None and word is not None:
        why = f"ended as {word} without a result"
    if why is None:
        if accounting is False:
            return ("left the queue without a result, and this cluster keeps no accounting "
                    "(sacct) to say why")
        return "left the queue without a result, and SLURM has no record of how it ended"
    notes = "; ".join(p for p in (shown, fix) if p)
    return f"{why} ({notes})" if notes else why


#: squeue's reasons for a pending job, in a researcher's words.
PENDING_REASONS = {
    "Resources": "waiting for free CPUs, GPUs or memory",
    "Priority": "behind jobs of higher priority",
    "ReqNodeNotAvail": "the nodes it may use are drained, down or reserved",
    "JobArrayTaskLimit": "array_parallelism: other identity jobs of the array run first",
    "Dependency": "waiting for another job",
    "BeginTime": "not allowed to start yet",
    "PartitionDown": "its partition is down",
    "PartitionInactive": "its partition is inactive",
    "Reservation": "waiting for its reservation",
}


def explain_pending(reason: str) -> str:
    """squeue's reason for a pending job with a short gloss, e.g. ``Resources (waiting for
    free CPUs, GPUs or memory)``; limits of an account or QOS are named as such.

    Examples
    --------
    >>> explain_pending("ReqNodeNotAvail, UnavailableNodes:vm")
    'ReqNodeNotAvail, UnavailableNodes:vm (the nodes it may use are drained, down or reserved)'
    """
    key = reason.split(",", 1)[0].strip()
    gloss = PENDING_REASONS.get(key)
    if gloss is None and key.startswith(("QOS", "Assoc")):
        gloss = "a limit of your account or QOS"
    return f"{reason} ({gloss})" if gloss else reason or "no reason given"


def poll_interval(waited: float, typical_job: float | None) -> float:
    """Seconds between two questions to SLURM: a tenth of a typical job's duration once a
    job has finished, else a tenth of the time waited so far; between 2 s and 60 s.

    Short jobs are noticed quickly; long ones do not have the build ask SLURM every few
    seconds for hours (a finished job is noticed anyway through its result file).

    Examples
    --------
    >>> poll_interval(5, None), poll_interval(300, None), poll_interval(300, 40)
    (2.0, 30.0, 4.0)
    >>> poll_interval(1e5, None)
    60.0
    """
    basis = typical_job if typical_job is not None else waited
    return float(min(60.0, max(2.0, basis / 10)))


def describe_wait(seconds: float) -> str:
    """``45 s``, ``3 min 05 s``, ``2 h 04 min``: how long something has been waited for.

    Examples
    --------
    >>> describe_wait(45.2), describe_wait(185), describe_wait(7440)
    ('45 s', '3 min 05 s', '2 h 04 min')
    """
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def queue_summary(states: Mapping[str, JobState]) -> dict[str, int]:
    """How many of these jobs SLURM has pending, running, and ended, in this answer."""
    counts = {"pending": 0, "running": 0, "ended": 0}
    for state in states.values():
        if state.ended:
            counts["ended"] += 1
        elif state.state in ("PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
                             "RESV_DEL_HOLD"):
            counts["pending"] += 1
        else:
            counts["running"] += 1
    return counts
