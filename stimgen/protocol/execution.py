"""The `execution:` section of a protocol: where a build's units of work run (spec only).

Which settings win when the command line, the protocol and the user config file disagree is
:mod:`stimgen.config`'s business.
"""
from __future__ import annotations

import math
import re
from typing import Annotated, Literal, Union

from pydantic import AfterValidator, Field, field_validator
from pydantic_core import PydanticCustomError

from stimgen.protocol.base import ProtocolModel

# sbatch options stimgen sets itself: overriding them would lose the logs or the array.
_RESERVED_SBATCH = {"array", "output", "error", "open-mode", "job-name", "signal", "wckey"}
_SLURM_TIME = re.compile(r"^(?:(?P<days>\d+)-)?(?P<a>\d+)(?::(?P<b>\d+))?(?::(?P<c>\d+))?$")


def time_limit_minutes(value: Union[int, str]) -> int:
    """Whole minutes of a SLURM time limit: ``120``, ``"90"``, ``"1:30:00"``, ``"2-00:00:00"``.

    Follows sbatch's ``--time`` formats: minutes, minutes:seconds, hours:minutes:seconds,
    days-hours, days-hours:minutes and days-hours:minutes:seconds. Seconds round up.

    Examples
    --------
    >>> time_limit_minutes("1:30:00"), time_limit_minutes("2-12"), time_limit_minutes(45)
    (90, 3600, 45)
    """
    text = str(value).strip()
    match = _SLURM_TIME.match(text) if not isinstance(value, bool) else None
    if match is None:
        raise PydanticCustomError(
            "time_limit", 'time limit "{value}" is not a SLURM time',
            {"value": text, "hint": 'write minutes (120) or "H:MM:SS" / "D-HH:MM:SS", '
                                    'e.g. "2:00:00"'})
    days = int(match["days"] or 0)
    parts = [int(p) for p in (match["a"], match["b"], match["c"]) if p is not None]
    if match["days"] is not None:                      # D-H, D-H:M, D-H:M:S
        hours, minutes, seconds = (parts + [0, 0])[:3]
    elif len(parts) == 3:                              # H:M:S
        hours, minutes, seconds = parts
    else:                                              # M, M:S
        hours, minutes, seconds = 0, parts[0], (parts[1] if len(parts) == 2 else 0)
    total = days * 1440 + hours * 60 + minutes + math.ceil(seconds / 60)
    if total < 1:
        raise PydanticCustomError("time_limit", "time limit must be at least one minute",
                                  {"hint": "e.g. time: 60"})
    return total


TimeLimit = Annotated[Union[int, str], AfterValidator(time_limit_minutes)]


class SlurmOptions(ProtocolModel):
    """The SLURM jobs `--executor slurm` submits: one per identity, or a few schematic
    identities each (`identities_per_job`); up to 4 jobs go as separate jobs, more as one
    job array."""

    partition: str | None = None
    """Partition (queue) to submit to; default: the cluster's default partition."""
    account: str | None = None
    """Account charged for the jobs (sbatch --account), if your cluster needs one."""
    gpus_per_job: int | None = Field(default=None, ge=0, le=16)
    """GPUs per job; default: 1 for the emostyle backend, 0 for schematic."""
    cpus_per_job: int = Field(default=4, ge=1, le=512)
    """CPU cores per job (image encoding, data loading); a schematic job renders its
    identities with this many worker processes."""
    mem_gb: float = Field(default=16.0, gt=0.0, le=4096.0)
    """Memory per job in GB."""
    time: TimeLimit = 60
    """Time limit of one job (all its identities): minutes (120) or SLURM's "H:MM:SS" /
    "D-HH:MM:SS"."""
    array_parallelism: int = Field(default=32, ge=1, le=10_000)
    """Most jobs running at once (be kind to a shared cluster)."""
    setup: list[str] = Field(default_factory=list)
    """Shell lines run before each job, e.g. "module load cuda/12.1" or "source venv/bin/activate"."""
    extra: dict[str, Union[str, int]] = Field(default_factory=dict)
    """Further sbatch options without the leading "--", e.g. {qos: high, constraint: a100}."""

    @field_validator("extra")
    @classmethod
    def _not_reserved(cls, value):
        taken = sorted(k for k in value if k.replace("_", "-") in _RESERVED_SBATCH)
        if taken:
            raise ValueError(f"sbatch option(s) {', '.join(taken)} are set by stimgen itself "
                             "(they place the logs and the job array); remove them")
        return value


class ExecutionSpec(ProtocolModel):
    """Where the units of work (one identity each) run; see docs/cluster.md."""

    executor: Literal["local", "slurm", "submitit-local"] = "local"
    """`local`: worker processes on this machine (one per GPU for emostyle); `slurm`: jobs on
    a SLURM cluster; `submitit-local`: job processes on this machine, run like SLURM jobs."""
    jobs: int | None = Field(default=None, ge=1, le=1024)
    """Units run at once on this machine (local, submitit-local). Default with `local`: for
    schematic builds of 64 faces or more one per core, at most 8, else 1; for emostyle one per
    visible GPU, 1 without a GPU. With `submitit-local`: one per visible GPU, else one per core.
    On SLURM use `slurm.array_parallelism`."""
    identities_per_job: Union[Literal["auto"], Annotated[int, Field(ge=1, le=100_000)]] = "auto"
    """Identities rendered by one job (slurm, submitit-local). `auto`: one per job for emostyle
    (each identity takes minutes; keep `gpus_per_job` per identity); for schematic, whose
    identities take seconds, the identities are spread over the jobs that can run at once
    (`array_parallelism`, the partition's CPUs), so that each job's start-up (a fresh
    Python, imports) is paid once per job rather than once per identity."""
    max_retries: int = Field(default=2, ge=0, le=20)
    """Times an identity whose job failed (an error, or killed: cancelled, out of time or
    memory) is resubmitted before the build reports it (slurm, submitit-local)."""
    log_folder: str | None = None
    """Folder for job scripts and logs (relative to the output folder); default
    `.stimgen/jobs` inside it. Must be reachable from the cluster's nodes."""
    slurm: SlurmOptions = Field(default_factory=SlurmOptions)
    """SLURM job settings (used by `executor: slurm`)."""
