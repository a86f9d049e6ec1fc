"""Executors and execution settings: GPUs per worker, the SLURM job script submitit writes,
fail-fast checks, settings precedence (command line > protocol > user config > defaults)."""
from __future__ import annotations

import os
import stat
import time
from concurrent.futures import wait
from pathlib import Path

import pytest
import submitit
from hypothesis import given, strategies as st
from submitit.slurm.slurm import _make_sbatch_string

import stimgen
from stimgen import executors
from stimgen.errors import BuildError, ProtocolError, StimgenError
from stimgen.executors import (ExecutorUnavailableError, UnitFailure, UnitsFailedError,
                               check_available, gpu_for_worker, jobs_folder, local_job_slots,
                               make_executor, slurm_parameters, visible_gpus)
from stimgen.config import ConfigError, resolve_execution, user_config_path
from stimgen.protocol.execution import ExecutionSpec, time_limit_minutes
from stimgen.protocol.loader import protocol_from_text

BASE = """\
study: {name: exec}
identities: [{id: id01, seed: 1}]
targets: {emotions: [circumplex:happy]}
"""


# --------------------------------------------------------------------------------------
# GPUs for local workers
# --------------------------------------------------------------------------------------
def test_visible_gpus_follow_cuda_visible_devices():
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "3,1"}) == ["3", "1"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}, device_count=4) == []
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "-1"}) == []
    assert visible_gpus({}, device_count=3) == ["0", "1", "2"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "GPU-8a1c, GPU-77ef"}) == ["GPU-8a1c", "GPU-77ef"]


@given(st.integers(1, 8), st.integers(1, 16))
def test_each_gpu_gets_a_worker_before_any_gets_two(n_gpus, n_workers):
    gpus = [str(i) for i in range(n_gpus)]
    assigned = [gpu_for_worker(w, gpus) for w in range(n_workers)]
    counts = [assigned.count(g) for g in gpus]
    assert max(counts) - min(counts) <= 1
    assert len(set(assigned)) == min(n_gpus, n_workers)


def _slow_env(_):
    time.sleep(0.5)      # keeps the worker busy, so that the pool starts the second one
    return os.environ.get("CUDA_VISIBLE_DEVICES")


def test_local_workers_see_one_gpu_each():
    with executors._worker_pool(2, ["0", "1"]) as pool:
        futures = [pool.submit(_slow_env, i) for i in range(2)]
        wait(futures)
    assert sorted(f.result() for f in futures) == ["0", "1"]


def test_gpu_backend_detection():
    schematic = protocol_from_text(BASE)
    assert not executors.uses_gpu(schematic.backend)
    emostyle = protocol_from_text(BASE + "backend: {name: emostyle}\n")
    assert executors.uses_gpu(emostyle.backend)
    on_cpu = protocol_from_text(BASE + "backend: {name: emostyle, options: {device: cpu}}\n")
    assert not executors.uses_gpu(on_cpu.backend)


def test_local_job_slots():
    spec = ExecutionSpec(executor="submitit-local")
    assert local_job_slots(spec.model_copy(update={"jobs": 3}), units=10, gpus=[]) == 3
    assert local_job_slots(spec.model_copy(update={"jobs": 3}), units=2, gpus=[]) == 2
    assert local_job_slots(spec, units=10, gpus=["0", "1"]) == 2
    assert local_job_slots(spec, units=10, gpus=[]) == min(os.cpu_count() or 1, 10)


# --------------------------------------------------------------------------------------
# Execution settings
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, minutes", [
    (45, 45), ("90", 90), ("30:30", 31), ("1:30:00", 90), ("2-12", 3600),
    ("1-00:30", 1470), ("0-01:00:01", 61)])
def test_slurm_time_formats(text, minutes):
    assert time_limit_minutes(text) == minutes


@pytest.mark.parametrize("text, message", [
    ("abc", 'time limit "abc" is not a SLURM time'), ("1h", 'time limit "1h" is not a SLURM time'),
    ("-5", 'time limit "-5" is not a SLURM time'),
    ("1:2:3:4", 'time limit "1:2:3:4" is not a SLURM time'),
    (True, 'time limit "True" is not a SLURM time'), ("0", "time limit must be at least one minute"),
    ("0-00:00:00", "time limit must be at least one minute")])
def test_bad_time_limits_are_refused(text, message):
    from pydantic_core import PydanticCustomError   # pydantic reports it at the field's path

    with pytest.raises(PydanticCustomError) as caught:
        time_limit_minutes(text)
    assert str(caught.value) == message
    assert caught.value.type == "time_limit" and caught.value.context["hint"]


def _config(tmp_path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_precedence_command_line_over_protocol_over_user_config(tmp_path):
    config = _config(tmp_path, """\
execution:
  executor: slurm
  max_retries: 5
  slurm: {partition: cpu, account: lab, time: "4:00:00", extra: {qos: low}}
""")
    protocol = protocol_from_text(BASE + """\
execution:
  slurm: {partition: gpu, extra: {constraint: a100}}
""")
    spec = resolve_execution(protocol.execution, {"max_retries": 1, "jobs": None,
                                                  "slurm": {"time": "30", "account": None}},
                             config_path=config)
    assert spec.executor == "slurm"                 # user config
    assert spec.slurm.account == "lab"              # user config (command line gave None)
    assert spec.slurm.partition == "gpu"            # protocol over user config
    assert spec.max_retries == 1                    # command line over user config
    assert spec.slurm.time == 30                    # command line over user config
    assert spec.slurm.extra == {"qos": "low", "constraint": "a100"}   # merged key by key
    assert spec.slurm.cpus_per_job == 4             # default


def test_no_user_config_means_defaults(tmp_path):
    spec = resolve_execution(None, config_path=tmp_path / "absent.yaml")
    assert spec == ExecutionSpec()
    assert resolve_execution(None, config_path=_config(tmp_path, "")) == ExecutionSpec()


def test_user_config_location(tmp_path):
    assert user_config_path({"STIMGEN_CONFIG": "/x/c.yaml"}) == Path("/x/c.yaml")
    assert user_config_path({"XDG_CONFIG_HOME": "/cfg"}) == Path("/cfg/stimgen/config.yaml")
    assert user_config_path({}) == Path.home() / ".config" / "stimgen" / "config.yaml"


def test_user_config_errors_name_file_line_and_fix(tmp_path):
    config = _config(tmp_path, "execution:\n  slurm:\n    partiton: gpu\n    time: soon\n")
    with pytest.raises(ConfigError) as info:
        resolve_execution(None, config_path=config)
    text = info.value.render()
    assert f"{config}:3:5" in text and 'did you mean "partition"' in text
    assert f"{config}:4:" in text and "SLURM time" in text
    assert "user config" in text


def test_user_config_hints_name_config_keys_not_protocol_keys(tmp_path):
    # "outptu" is closest to the protocol's `output:`, which a user config cannot hold.
    config = _config(tmp_path, "outptu: build\nexecutoin:\n  jobs: 2\n")
    with pytest.raises(ConfigError) as info:
        resolve_execution(None, config_path=config)
    text = info.value.render()
    assert f'{config}:1:1: outptu: unknown key "outptu" (hint: allowed keys here: execution)' \
        in text
    assert f'{config}:2:1: executoin: unknown key "executoin" (hint: did you mean ' \
        '"execution"?)' in text
    assert "output" not in text.replace("outptu", "") and "targets" not in text


def test_protocol_execution_section_is_validated():
    with pytest.raises(ProtocolError, match="execution.executor"):
        protocol_from_text(BASE + "execution: {executor: pbs}\n")
    with pytest.raises(ProtocolError, match="set by stimgen itself"):
        protocol_from_text(BASE + "execution: {slurm: {extra: {output: /tmp/x}}}\n")


def test_user_config_applies_to_python_builds(tmp_path, monkeypatch):
    monkeypatch.setenv("STIMGEN_CONFIG", str(_config(tmp_path, "execution: {executor: slurm}\n")))
    monkeypatch.setenv("PATH", str(tmp_path))          # no sbatch here
    with pytest.raises(ExecutorUnavailableError, match="sbatch is not on PATH"):
        stimgen.build(protocol_from_text(BASE), out=tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()             # refused before any work


# --------------------------------------------------------------------------------------
# SLURM: the job script submitit would submit, without SLURM
# --------------------------------------------------------------------------------------
def test_slurm_without_sbatch_fails_fast(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ExecutorUnavailableError) as info:
        check_available(ExecutionSpec(executor="slurm"))
    assert isinstance(info.value, StimgenError)
    assert "sbatch" in info.value.message and "submitit-local" in info.value.hint
    check_available(ExecutionSpec(executor="submitit-local"))     # needs no SLURM


@pytest.fixture
def fake_slurm_tools(tmp_path, monkeypatch):
    """sbatch and srun stand-ins on PATH, so that submitit's SlurmExecutor can be built."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sbatch", "srun"):
        path = bin_dir / tool
        path.write_text("#!/bin/sh\necho 'sbatch: error: invalid partition specified: nope' >&2\n"
                        "exit 1\n")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return bin_dir


SLURM_SECTION = """\
execution:
  executor: slurm
  max_retries: 1
  slurm:
    partition: gpu
    account: mylab
    time: "2:00:00"
    mem_gb: 24
    array_parallelism: 4
    setup: ["module load cuda/12.1", "source ~/venvs/stimgen/bin/activate"]
    extra: {qos: high, constraint: a100}
"""


def test_slurm_job_script_carries_every_setting(fake_slurm_tools, tmp_path):
    protocol = protocol_from_text(BASE + "backend: {name: emostyle}\n" + SLURM_SECTION)
    spec = resolve_execution(protocol.execution, config_path=tmp_path / "none.yaml")
    folder = jobs_folder(spec, tmp_path / "out")
    assert folder == (tmp_path / "out" / ".stimgen" / "jobs").absolute()
    executor = make_executor(spec, folder, gpu_backend=executors.uses_gpu(protocol.backend),
                             job_name="stimgen-exec")
    assert isinstance(executor, submitit.SlurmExecutor)
    script = executor._make_submission_file_text("python -m submitit.core._submit x", "uid")
    flags = {line for line in script.splitlines() if line.startswith("#SBATCH")}
    for expected in ("--partition=gpu", "--account=mylab", "--time=120", "--gpus-per-node=1",
                     "--cpus-per-task=4", "--mem=24GB", "--qos=high", "--constraint=a100",
                     "--job-name=stimgen-exec", "--nodes=1", "--ntasks-per-node=1"):
        assert f"#SBATCH {expected}" in flags
    assert script.index("module load cuda/12.1") < script.index("srun")
    assert f"--output={folder}/%j_0_log.out" in script

    # One array for all identities, at most array_parallelism of them at once; each task
    # logs to <array id>_<task>_0_log.err.
    array = _make_sbatch_string(command="run", folder=folder, map_count=10,
                                **executor.parameters)
    assert "#SBATCH --array=0-9%4" in array
    assert f"#SBATCH --error={folder}/%A_%a_0_log.err" in array


def test_sbatch_refusal_is_reported_with_its_message(fake_slurm_tools, tmp_path):
    spec = ExecutionSpec(executor="slurm", slurm={"partition": "nope"})
    with pytest.raises(BuildError) as info:
        stimgen.build(protocol_from_text(BASE), out=tmp_path / "out", progress=False,
                      execution=spec)
    assert "sbatch refused the job(s) for id01" in info.value.message
    assert "invalid partition specified: nope" in info.value.message
    assert str(tmp_path / "out" / ".stimgen" / "jobs") in info.value.hint


def test_slurm_parameters_for_cpu_backend_ask_no_gpu():
    params = slurm_parameters(ExecutionSpec(executor="slurm"), gpu_backend=False, job_name="x")
    assert "gpus_per_node" not in params and "partition" not in params
    assert params["time"] == 60 and params["mem"] == "16GB"
    params = slurm_parameters(ExecutionSpec(slurm={"gpus_per_job": 2, "mem_gb": 1.5}),
                              gpu_backend=False, job_name="x")
    assert params["gpus_per_node"] == 2 and params["mem"] == "1536MB"


def test_failed_units_error_names_each_unit_and_its_log(tmp_path):
    failures = [UnitFailure("id02", 3, "RuntimeError: boom", tmp_path / "17_0_log.err")]
    err = UnitsFailedError(failures, total=4)
    text = err.render()
    assert "1 of 4 identities failed" in text and "id02 (3 attempt(s)): RuntimeError" in text
    assert str(tmp_path / "17_0_log.err") in text and "run the same command again" in text


def test_error_summary_finds_the_exception_line():
    trace = ("Job (task=0) failed during processing with trace:\n----------------------\n"
             "Traceback (most recent call last):\n  File \"x.py\", line 1\n"
             "RuntimeError: injected fault\n\n----------------------\nYou can check full logs")
    assert executors._error_summary(RuntimeError(trace)) == "RuntimeError: injected fault"
    killed = RuntimeError("Job 12 (task: 0) with path /x/12_0_result.pkl\n"
                          "has not produced any output (state: TIMEOUT)\nError stream produced:")
    assert executors._error_summary(killed) == "the job ended without a result (state: TIMEOUT)"


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------
def test_cli_slurm_without_sbatch_exits_2_before_any_work(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from stimgen.cli import main

    protocol = tmp_path / "p.yaml"
    protocol.write_text(BASE, encoding="utf-8")
    monkeypatch.setenv("STIMGEN_CONFIG", str(tmp_path / "none.yaml"))
    monkeypatch.setenv("PATH", str(tmp_path))
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["build", str(protocol), "-o", str(out),
                                       "--executor", "slurm", "--partition", "gpu"])
    assert result.exit_code == 2
    assert "sbatch is not on PATH" in result.output and "Traceback" not in result.output
    assert not out.exists()
    result = CliRunner().invoke(main, ["build", str(protocol), "-o", str(out),
                                       "--executor", "slurm", "--time", "soon"])
    assert result.exit_code == 2 and 'slurm.time: time limit "soon"' in result.output


def test_dead_worker_becomes_a_build_error(tmp_path, monkeypatch):
    """A worker killed mid-build (OOM killer, kill -9) ends in a BuildError, not a traceback."""
    import stimgen
    from stimgen.errors import BuildError

    protocol_file = tmp_path / "p.yaml"
    protocol_file.write_text(
        "study: {name: dead}\nidentities: [{id: a, seed: 1}, {id: b, seed: 2}]\n"
        "targets: {emotions: [circumplex:happy, circumplex:sad], intensities: [1.0]}\noutput: {image_size: 64}\n")
    protocol = stimgen.load_protocol(protocol_file)
    # The test-only crash hook (docs/reliability.md) ends the worker like kill -9 would.
    monkeypatch.setenv("STIMGEN_TEST_CRASH_AT", "stimulus@2")
    with pytest.raises(BuildError, match="worker process died"):
        stimgen.build(protocol, out=tmp_path / "out", jobs=2, progress=False)
