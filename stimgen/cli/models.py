"""`stimgen models ...`: list, fetch, add, verify, inspect and make-tiny, over stimgen.weights.

A thin shell: each command parses its arguments, calls one function of the Python API and
prints the result; errors are StimgenErrors, printed by the root `stimgen` group.
"""
from __future__ import annotations

import os
from pathlib import Path

import click

from stimgen.cli.output import is_quiet
from stimgen.weights.fetch import ChecksumMismatchError, add_model, fetch_model, verify_models
from stimgen.weights.registry import (
    STAGES, ModelStatus, all_statuses, get_model, load_registry, models_dir, models_for_stages,
)

STATE_COLOURS = {"missing": "red", "present": "yellow", "verified": "green", "recorded": "green",
                 "mismatch": "red", "tiny": "magenta"}


def _cache_line() -> str:
    where = "STIMGEN_HOME" if os.environ.get("STIMGEN_HOME") else "default; set STIMGEN_HOME to move it"
    return f"model cache: {models_dir()} ({where})"


def _human_size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def _sha_line(status: ModelStatus) -> str:
    entry, record = status.entry, status.record
    if entry.sha256:
        return f"sha256: {entry.sha256}"
    if record is not None:
        return f"sha256: {record.sha256} (recorded {record.recorded_at[:10]}; none published)"
    prefix = f" (published prefix {entry.sha256_prefix})" if entry.sha256_prefix else ""
    return f"sha256: {entry.sha256_display}{prefix}"


def format_status(status: ModelStatus, verbose: bool = False) -> list[str]:
    """Lines that `stimgen models list` prints for one model."""
    entry = status.entry
    size = (_human_size(status.path.stat().st_size) if status.installed
            else _human_size(entry.size_bytes) if entry.size_bytes else entry.size_note)
    state = click.style(f"{status.state:<9}", fg=STATE_COLOURS[status.state])
    lines = [f"  {entry.name:<18} {state} {entry.file}, {size}",
             f"      {entry.title}",
             f"      needed by: {', '.join(entry.needed_by) or 'no build (optional)'}",
             f"      licence: {entry.license}",
             f"      {_sha_line(status)}"]
    if status.state == "tiny":
        lines.append(click.style("      RANDOM TINY MODEL (make-tiny): outputs are noise", fg="magenta"))
    if verbose:
        lines += [f"      source: {url}" for url in entry.urls]
        lines += [f"      licence text: {entry.license_url}", f"      cite: {entry.citation}"]
    return lines


@click.group("models")
def models_group():
    """Model weights: list, fetch, add, verify, inspect, make-tiny.

    Files live in $STIMGEN_HOME/models (default ~/.cache/stimgen/models).
    Each model has its own licence, shown by `stimgen models list`.
    """


@models_group.command("list")
@click.option("-v", "--verbose", is_flag=True, help="Also show download sources and citations.")
def list_command(verbose):
    """Show every model: installed or missing, size, licence, sha256.

    States: missing, present (not yet hashed), verified (matches the published
    sha256), recorded (no published sha256; ours recorded), mismatch, tiny.
    """
    click.echo(_cache_line())
    for status in all_statuses():
        click.echo("\n".join(format_status(status, verbose)))


@models_group.command("fetch")
@click.argument("names", nargs=-1)
@click.option("--all", "fetch_all", is_flag=True, help="Fetch every model in the registry.")
@click.option("--stage", "stages", multiple=True, type=click.Choice(STAGES),
              help="Fetch what a build stage needs (repeatable).")
@click.option("--force", is_flag=True, help="Download again even if the file is installed.")
@click.pass_context
def fetch_command(ctx, names, fetch_all, stages, force):
    """Download NAMES (or --all, or --stage) into the model cache.

    A download cut mid-file is tried again from the start (run the command again if
    it still fails); files are checked against the published sha256 when there is one
    and are installed only when complete. On a machine without internet, download elsewhere and use
    `stimgen models add NAME PATH`.
    """
    if fetch_all:
        entries = list(load_registry())
    else:
        entries = [get_model(n) for n in names] + models_for_stages(stages)
    if not entries:
        raise click.UsageError("name the models to fetch, or pass --all or --stage "
                               "(see `stimgen models list`)")
    click.echo(_cache_line())
    for entry in dict((e.name, e) for e in entries).values():
        click.echo(f"{entry.name}: {entry.file} · licence: {entry.license} ({entry.license_url})")
        path = fetch_model(entry.name, force=force, progress=not is_quiet(ctx))
        status = next(s for s in all_statuses() if s.entry.name == entry.name)
        click.echo(f"  {click.style(status.state, fg=STATE_COLOURS[status.state])} {path}")
        click.echo(f"  {_sha_line(status)}")


@models_group.command("add")
@click.argument("name")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--link", is_flag=True, help="Symlink the file instead of copying it.")
@click.option("--force", is_flag=True,
              help="Install even if the kind or sha256 does not match, or the file is a "
                   "random tiny model from make-tiny (then recorded as tiny).")
def add_command(name, path, link, force):
    """Install a file you already have as model NAME (checked, then copied).

    Refused: a file of another kind, one whose sha256 differs from the published one,
    and a random tiny model written by `stimgen models make-tiny`, unless --force.
    """
    installed = add_model(name, path, link=link, force=force)
    status = next(s for s in all_statuses() if s.entry.name == name)
    click.echo(f"{name}: {click.style(status.state, fg=STATE_COLOURS[status.state])} {installed}")
    click.echo(f"  {_sha_line(status)}")
    if status.state == "tiny":
        click.secho(f"warning: {name} is now a RANDOM TINY MODEL: every build that uses it "
                    "makes noise and says so; `stimgen models fetch "
                    f"{name}` installs the published file", fg="magenta", err=True)


@models_group.command("verify")
@click.argument("names", nargs=-1)
def verify_command(names):
    """Re-hash installed files and compare them with the published sha256.

    Exits with status 2 if any file differs from the published one.
    """
    click.echo(_cache_line())
    results = verify_models(names or None)
    for result in results:
        state = click.style(f"{result.state:<9}", fg=STATE_COLOURS[result.state])
        click.echo(f"  {result.name:<18} {state} {result.sha256 or '-'}")
        if result.state == "mismatch":
            click.echo(f"      expected {result.expected}")
    bad = [r.name for r in results if r.state == "mismatch"]
    if bad:
        raise ChecksumMismatchError(
            f"{len(bad)} installed file(s) differ from the sha256 published or recorded at "
            f"install: {', '.join(bad)}",
            hint=f"run `stimgen models fetch --force {' '.join(bad)}`")


@models_group.command("inspect")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def inspect_command(file):
    """Load FILE safely and say what it is (kind, architecture, parameters).

    Nothing in the file is executed; a file that asks to run code is refused
    and the global it asks for is named.
    """
    from stimgen.weights.inspect import inspect_checkpoint
    from stimgen.weights.tiny import tiny_evidence

    info = inspect_checkpoint(file)
    click.echo(f"file:       {info.path}")
    click.echo(f"kind:       {info.kind} ({info.description})")
    click.echo(f"network:    {info.network}")
    for key, value in info.config.items():
        click.echo(f"  {key}: {value}")
    click.echo(f"parameters: {info.parameter_count:,}")
    tiny = tiny_evidence(file, kind=info.kind)
    if tiny:
        click.secho(f"tiny:       RANDOM TINY MODEL from `stimgen models make-tiny` ({tiny}): "
                    "outputs are noise", fg="magenta")
    known = [e.name for e in load_registry() if e.kind == info.kind]
    if known:
        click.echo(f"registry:   {', '.join(known)} (`stimgen models add NAME {file}`)")


@models_group.command("make-tiny")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--install", is_flag=True,
              help="Also install them in the model cache, marked as tiny (replaced by fetch).")
@click.option("--resolution", type=int, default=32, show_default=True,
              help="Generator resolution, pixels (power of two).")
@click.option("--seed", type=int, default=0, show_default=True)
def make_tiny_command(directory, install, resolution, seed):
    """Write tiny random checkpoints in the published formats into DIRECTORY.

    For checking a protocol or the GPU backend on CPU before spending GPU hours:
    every file loads like the published one, but outputs are noise.
    """
    from stimgen.weights.tiny import TINY_WARNING, install_tiny, make_tiny

    paths = make_tiny(directory, resolution=resolution, seed=seed)
    for name, path in paths.items():
        click.echo(f"  {name:<18} {path} ({_human_size(path.stat().st_size)})")
    if install:
        install_tiny(paths)
        click.echo(f"installed in {models_dir()}")
    click.secho(TINY_WARNING, fg="magenta", err=True)
