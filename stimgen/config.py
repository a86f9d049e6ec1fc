"""Settings of this machine or cluster: the user config file and which setting wins.

Execution settings come from four places, the first that sets a field wins: command-line
options, the protocol's `execution:` section, the user config file
(``$STIMGEN_CONFIG``, else ``$XDG_CONFIG_HOME/stimgen/config.yaml``), the defaults of
:class:`~stimgen.protocol.execution.ExecutionSpec`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from pydantic import Field, ValidationError

from stimgen.errors import StimgenError
from stimgen.protocol.base import ProtocolModel
from stimgen.protocol.execution import ExecutionSpec
from stimgen.protocol.yaml_source import parse_yaml, problems_from_validation


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
        problems = problems_from_validation(err, doc, UserConfig)
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
