"""What the build makes of SLURM's answers (stimgen/scheduler.py), with the tools' outputs as
SLURM 22.05 prints them; the real scheduler is in tests/test_cluster_slurm.py."""
from __future__ import annotations

import subprocess

import pytest

from stimgen import scheduler
from stimgen.executors import identities_per_job, job_slots
from stimgen.protocol.execution import ExecutionSpec
from stimgen.protocol.loader import protocol_from_text
from stimgen.scheduler import JobState, SlurmWatch, ended_reason, log_tail, read_queue

DISABLED = "sacct: error: Slurm accounting storage is disabled"


class FakeTools:
    """squeue/sacct stand-ins: canned (status, stdout, stderr) by tool, with the calls kept."""

    def __init__(self, **answers):
        self.answers = answers
        self.calls: list[list[str]] = []

    def __call__(self, command):
        self.calls.append(list(command))
        status, out, err = self.answers[command[0]]
        return subprocess.CompletedProcess(command, status, out, err)


def test_queue_answer_keeps_our_jobs_and_ended_ones():
    tools = FakeTools(squeue=(0, "12_1|CANCELLED|None\n12_2|PENDING|Resources\n99|RUNNING|None\n",
                              ""))
    answer = read_queue(["12_1", "12_2", "13"], run=tools)
    assert answer.error is None
    assert answer.states == {"12_1": JobState("CANCELLED"), "12_2": JobState("PENDING",
                                                                               "Resources")}
    command = tools.calls[0]
    assert "--states=all" in command and "--array" in command and "--jobs=12,13" in command


def test_queue_that_knows_none_of_the_jobs_is_an_answer_not_an_error():
    tools = FakeTools(squeue=(1, "", "slurm_load_jobs error: Invalid job id specified\n"))
    assert read_queue(["12"], run=tools) == scheduler.Answer()
    tools = FakeTools(squeue=(1, "", "squeue: error: Unable to contact slurm controller\n"))
    assert read_queue(["12"], run=tools).error == \
        "squeue: error: Unable to contact slurm controller"


def test_watch_asks_sacct_only_about_jobs_the_queue_forgot_and_notes_no_accounting():
    tools = FakeTools(squeue=(0, "12_0|RUNNING|None\n", ""), sacct=(1, "", DISABLED + "\n"))
    watch = SlurmWatch(run=tools, clock=lambda: 5.0)
    assert watch.look(["12_0", "12_1"])
    assert [c[0] for c in tools.calls] == ["squeue", "sacct"]
    assert watch.accounting is False and watch.accounting_error == DISABLED
    assert watch.state("12_0").state == "RUNNING" and watch.state("12_1") is None
    watch.look(["12_0", "12_1"])
    assert [c[0] for c in tools.calls] == ["squeue", "sacct", "squeue"]   # not asked again


def test_watch_takes_exit_code_and_who_cancelled_from_sacct():
    tools = FakeTools(squeue=(0, "12_1|CANCELLED|None\n", ""),
                      sacct=(0, "12_0|TIMEOUT|0:0\n12_1|CANCELLED by 0|0:15\n", ""))
    watch = SlurmWatch(run=tools)
    watch.look(["12_0", "12_1"])
    assert watch.accounting is True
    assert watch.state("12_0") == JobState("TIMEOUT", exit_code="0:0", source="sacct")
    assert watch.state("12_1").detail == "by 0" and watch.state("12_1").exit_code == "0:15"


def test_unreadable_queue_keeps_the_last_answer():
    times = iter([1.0, 2.0, 3.0])
    tools = FakeTools(squeue=(0, "7|RUNNING|None\n", ""))
    watch = SlurmWatch(run=tools, clock=lambda: next(times))
    assert watch.look(["7"])
    tools.answers["squeue"] = (1, "", "squeue: error: Socket timed out on send/recv operation")
    assert not watch.look(["7"]) and not watch.look(["7"])
    assert watch.state("7").state == "RUNNING"                 # kept, not guessed away
    assert watch.unreadable_since == 2.0 and "Socket timed out" in watch.queue_error


@pytest.mark.parametrize("state, log, accounting, expected", [
    (JobState("CANCELLED", detail="by 0", exit_code="0:15", source="sacct"), [], True,
     "was cancelled from outside stimgen (scancel, or by an administrator) (SLURM state "
     "CANCELLED by root exit code 0:15)"),
    (JobState("TIMEOUT"), [], None, "reached its time limit of 30 min (SLURM state TIMEOUT; "
                                    "raise slurm.time)"),
    (JobState("OUT_OF_MEMORY"), [], None, "ran out of memory (2 GB asked) (SLURM state "
                                          "OUT_OF_MEMORY; raise slurm.mem_gb)"),
    (JobState("FAILED", exit_code="0:9", source="sacct"),
     ["slurmstepd: error: Detected 1 oom_kill event in StepId=5.0."], True,
     "ran out of memory (2 GB asked) (SLURM state FAILED exit code 0:9; raise slurm.mem_gb)"),
    (JobState("NODE_FAIL"), [], None, "lost its node (node failure) (SLURM state NODE_FAIL)"),
    (None, ["slurmstepd-n3: error: *** JOB 9 ON n3 CANCELLED AT 2026-01-01T00:00:00 DUE TO "
            "TIME LIMIT ***"], False,
     "reached its time limit of 30 min (its log says so; SLURM no longer knows the job; raise "
     "slurm.time)"),
    (None, ["Traceback (most recent call last):"], True,
     "left the queue without a result, and SLURM has no record of how it ended"),
    (JobState("COMPLETED"), [], True, "ended without writing its result (SLURM state "
                                      "COMPLETED)"),
])
def test_why_a_job_ended(state, log, accounting, expected):
    assert ended_reason(state, log, time_limit_min=30, mem_gb=2, accounting=accounting) \
        == expected


def test_log_tail_keeps_slurms_reason_before_sruns_lines(tmp_path):
    err = tmp_path / "5_0_log.err"
    err.write_text("submitit INFO (x) - Starting\nsome warning\n"
                   "slurmstepd-vm: error: *** JOB 5 ON vm CANCELLED AT 2026-12-07T14:25:03 ***\n"
                   "srun: Job step aborted: Waiting up to 32 seconds for job step to finish.\n"
                   "srun: forcing job termination\nsrun: error: vm: task 0: Killed\n\n")
    assert log_tail([err]) == [
        "slurmstepd-vm: error: *** JOB 5 ON vm CANCELLED AT 2026-12-07T14:25:03 ***",
        "srun: forcing job termination", "srun: error: vm: task 0: Killed"]
    empty, out = tmp_path / "6_0_log.err", tmp_path / "6_0_log.out"
    empty.write_text("")
    out.write_text("stimgen: identity a done in 1.0 s\n")
    assert log_tail([empty, out]) == ["stimgen: identity a done in 1.0 s"]
    assert log_tail([tmp_path / "missing"]) == []


def test_poll_interval_follows_job_length():
    assert scheduler.poll_interval(0, None) == 2.0              # just submitted: quick looks
    assert scheduler.poll_interval(120, None) == 12.0           # a tenth of the wait so far
    assert scheduler.poll_interval(3600, 30) == 3.0             # jobs take 30 s: look often
    assert scheduler.poll_interval(3600, 7200) == 60.0          # GPU jobs of 2 h: once a minute


def test_partition_cpus_leave_out_drained_nodes_and_survive_errors():
    tools = FakeTools(sinfo=(0, "debug*|2/6/8/16\n", ""))
    assert scheduler.partition_cpus(None, run=tools) == 8
    assert scheduler.partition_cpus("gpu", run=tools) is None
    assert scheduler.partition_cpus(None, run=FakeTools(sinfo=(1, "", "error"))) is None


def test_identities_share_jobs_only_when_they_are_cheap():
    schematic = protocol_from_text("study: {name: s}\nidentities: [{id: a, seed: 1}]\n"
                                   "targets: {emotions: [happy]}\n")
    emostyle = protocol_from_text("study: {name: e}\nidentities: [{id: a, seed: 1}]\n"
                                  "targets: {emotions: [happy]}\nbackend: {name: emostyle}\n")
    spec = ExecutionSpec(executor="slurm", slurm={"cpus_per_job": 4, "array_parallelism": 8})
    slots = job_slots(spec, identities=40, gpus=[], partition_cpus=16)
    assert slots == 4                                      # 16 CPUs / 4 per job
    assert identities_per_job(spec, schematic.backend, 40, slots) == 10
    assert identities_per_job(spec, emostyle.backend, 40, slots) == 1
    assert job_slots(spec, identities=40, gpus=[], partition_cpus=None) == 8
    assert job_slots(spec, identities=3, gpus=[], partition_cpus=None) == 3
    fixed = spec.model_copy(update={"identities_per_job": 3})
    assert identities_per_job(fixed, emostyle.backend, 40, slots) == 3
