"""The `execution:` section (where a build's units of work run) and the user config file.

Settings come from four places, the first that sets a field wins: command-line options,
the protocol's `execution:` section, the user config file, the defaults below.
"""
from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping, Union

from pydantic import AfterValidator, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from stimgen.errors import StimgenError
from stimgen.protocol.base import ProtocolModel

EXECUTORS = ("local", "slurm", "submitit-local")

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
    """The SLURM job array `--executor slurm` submits: one array task per identity."""

    partition: str | None = None
    """Partition (queue) to submit to; default: the cluster's default partition."""
    account: str | None = None
    """Account charged for the jobs (sbatch --account), if your cluster needs one."""
    gpus_per_job: int | None = Field(default=None, ge=0, le=16)
    """GPUs per identity job; default: 1 for the emostyle backend, 0 for schematic."""
    cpus_per_job: int = Field(default=4, ge=1, le=512)
    """CPU cores per identity job (image encoding, data loading)."""
    mem_gb: float = Field(default=16.0, gt=0.0, le=4096.0)
    """Memory per identity job in GB."""
    time: TimeLimit = 60
    """Time limit of one identity job: minutes (120) or SLURM's "H:MM:SS" / "D-HH:MM:SS"."""
    array_parallelism: int = Field(default=32, ge=1, le=10_000)
    """Most identity jobs of the array running at once (be kind to a shared cluster)."""
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
    """`local`: worker processes on this machine (one per GPU for emostyle); `slurm`: a job
    array on a SLURM cluster; `submitit-local`: one job process per identity on this machine."""
    jobs: int | None = Field(default=None, ge=1, le=1024)
    """Units run at once on this machine (local, submitit-local). Default with `local`: for
    schematic builds of 64 faces or more one per core, at most 8, else 1; for emostyle one per
    visible GPU, 1 without a GPU. With `submitit-local`: one per visible GPU, else one per core.
    On SLURM use `slurm.array_parallelism`."""
    max_retries: int = Field(default=2, ge=0, le=20)
    """Times a failed identity job is resubmitted before the build reports it (slurm,
    submitit-local)."""
    log_folder: str | None = None
    """Folder for job scripts and logs (relative to the output folder); default
    `.stimgen/jobs` inside it. Must be reachable from the cluster's nodes."""
    slurm: SlurmOptions = Field(default_factory=SlurmOptions)
    """SLURM job settings (used by `executor: slurm`)."""


class UserConfig(ProtocolModel):
    """The user config file: settings of this machine or cluster, shared by every protocol."""

    execution: ExecutionSpec = Field(default_factory=ExecutionSpec)
    """Defaults for every build's `execution:` section."""


class ConfigError(StimgenError):
    """A user config file or an execution setting that does not validate."""


def user_config_path(environ: Mapping[str, str] | None = None) -> Path:
    """``$STIMGEN_CONFIG``, else ``$XDG_CONFIG_HOME/stimgen/config.yaml``, else
    ``~/.config/stimgen/config.yaml``."""
    environ = os.environ if environ is None else environ
    if environ.get("STIMGEN_CONFIG"):
        return Path(environ["STIMGEN_CONFIG"]).expanduser()
    base = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "stimgen" / "config.yaml"


def load_user_config(path: str | Path) -> dict[str, Any]:
    """The explicitly set fields of a user config file's `execution:` section ({} if absent).

    Raises
    ------
    ConfigError
        When the file is not valid YAML or does not validate; every problem is listed with
        its line and column.
    """
    from stimgen.protocol.loader import parse_yaml, problems_from_validation

    path = Path(path)
    if not path.is_file():
        return {}
    text = path.read_text(encoding="utf-8")
    if all(not line.strip() or line.lstrip().startswith("#") for line in text.splitlines()):
        return {}                    # empty or comments only: no settings
    try:
        doc = parse_yaml(text, str(path))
        config = UserConfig.model_validate(doc.data or {})
    except ValidationError as err:
        problems = problems_from_validation(err, doc)
        raise ConfigError(f"{path}: {len(problems)} problem(s) in the stimgen user config\n"
                          + "\n".join(f"  {p.render(str(path))}" for p in problems),
                          hint="see docs/cluster.md; the file's keys are those of a "
                               "protocol's `execution:` section, under `execution:`") from None
    except StimgenError as err:      # YAML syntax, refused constructs
        raise ConfigError(err.message.replace("in the protocol", "in the stimgen user config"),
                          hint=err.hint) from None
    return config.execution.model_dump(exclude_unset=True)


def resolve_execution(protocol_section: ExecutionSpec | None,
                      overrides: Mapping[str, Any] | None = None, *,
                      config_path: str | Path | None = None) -> ExecutionSpec:
    """Merge the execution settings: ``overrides`` (the command line) > the protocol's
    section > the user config file > defaults, field by field.

    Parameters
    ----------
    protocol_section : ExecutionSpec or None
        ``protocol.execution``; only the fields written in the protocol count.
    overrides : mapping, optional
        Command-line values, nested like the section (``{"slurm": {"partition": "gpu"}}``);
        ``None`` values are ignored.
    config_path : path, optional
        The user config file; default :func:`user_config_path`.

    Examples
    --------
    >>> spec = resolve_execution(None, {"executor": "submitit-local", "jobs": 2},
    ...                          config_path="/nonexistent")
    >>> spec.executor, spec.jobs, spec.slurm.time
    ('submitit-local', 2, 60)
    """
    layers = [load_user_config(config_path or user_config_path())]
    if protocol_section is not None:
        layers.append(protocol_section.model_dump(exclude_unset=True))
    layers.append(_without_none(overrides or {}))
    merged: dict[str, Any] = {}
    for layer in layers:
        merged = _deep_merge(merged, layer)
    try:
        return ExecutionSpec.model_validate(merged)
    except ValidationError as err:
        lines = [f"  {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()]
        raise ConfigError("invalid execution settings:\n" + "\n".join(lines),
                          hint="check the command-line options (stimgen build --help)") from None


def _without_none(values: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            value = _without_none(value)
            if not value:
                continue
        if value is not None:
            out[key] = value
    return out


def _deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
