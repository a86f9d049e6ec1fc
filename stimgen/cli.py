"""The `stimgen` command: a thin shell over the Python API.

Errors a user can fix (StimgenError) are printed without a traceback and exit with 2.
"""
from __future__ import annotations

import json
import logging
import shlex
import sys
from pathlib import Path

import click

from stimgen import __version__
from stimgen.errors import StimgenError


# Commands whose modules import heavy libraries (torch, matplotlib): loaded only when used,
# so that `stimgen --help` and `stimgen validate` start instantly.
LAZY_COMMANDS = {
    "report": ("stimgen.report.commands", "report_command",
               "Regenerate report.html of a build folder from its data."),
    "parity": ("stimgen.parity", "parity_command",
               "Check this installation's networks against parity fixtures."),
    "models": ("stimgen.weights.commands", "models_group",
               "List, fetch, add, verify and inspect model weights."),
}


class StimgenGroup(click.Group):
    """A click group that loads heavy commands lazily and turns StimgenError into a clean
    message and exit status 2."""

    def list_commands(self, ctx):
        return sorted([*super().list_commands(ctx), *LAZY_COMMANDS])

    def get_command(self, ctx, name):
        if name in LAZY_COMMANDS and name not in self.commands:
            import importlib

            module, attribute, _ = LAZY_COMMANDS[name]
            self.add_command(getattr(importlib.import_module(module), attribute), name=name)
        return super().get_command(ctx, name)

    def format_commands(self, ctx, formatter):
        rows = []
        for name in self.list_commands(ctx):
            if name in LAZY_COMMANDS and name not in self.commands:
                rows.append((name, LAZY_COMMANDS[name][2]))
            else:
                rows.append((name, self.commands[name].get_short_help_str(limit=60)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except StimgenError as err:
            click.secho("error: ", fg="red", bold=True, err=True, nl=False)
            click.echo(err.render(), err=True)
            ctx.exit(err.exit_code)
        except KeyboardInterrupt:
            click.echo("\ninterrupted: finished work is kept; run the same command again to "
                       "resume", err=True)
            ctx.exit(130)


@click.group(cls=StimgenGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="stimgen")
@click.option("-q", "--quiet", is_flag=True, help="Print only errors and final paths; no progress bars.")
@click.pass_context
def main(ctx, quiet):
    """Validated, counterbalanced face-emotion stimuli from a protocol.yaml.

    Start with `stimgen init protocol.yaml`, check it with `stimgen validate`,
    then `stimgen build`. Documentation: docs/ in the repository.
    """
    ctx.obj = {"quiet": quiet}


def _quiet(ctx) -> bool:
    return bool(ctx.find_root().obj and ctx.find_root().obj.get("quiet"))


def _set_quiet(ctx, _param, value) -> None:
    if value:
        root = ctx.find_root()
        root.obj = {**(root.obj or {}), "quiet": True}


#: `stimgen build -q` works as well as `stimgen -q build`.
quiet_option = click.option("-q", "--quiet", is_flag=True, expose_value=False,
                            is_eager=True, callback=_set_quiet,
                            help="Print only errors and final paths; no progress bars.")


def _say(ctx, message: str = "", **style) -> None:
    if not _quiet(ctx):
        click.secho(message, **style)


# --------------------------------------------------------------------------------------
@main.command()
@click.argument("protocol", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path),
              help="Output folder (default: the protocol's output.folder, else build/<study>/).")
@click.option("--force", is_flag=True,
              help="Build into a non-empty folder that stimgen did not create, or change an "
                   "experiment that data was collected with (the old one is kept in "
                   "experiment/previous/). Files stimgen did not write are never touched.")
@click.option("-j", "--jobs", type=click.IntRange(min=1),
              help="Units run at once on this machine (default: for schematic builds of 64 "
                   "faces or more one per core, at most 8, else 1; for emostyle one per "
                   "visible GPU, 1 without a GPU).")
@click.option("--executor", type=click.Choice(["local", "slurm", "submitit-local"]),
              help="Where identities are rendered: local worker processes (default), a SLURM "
                   "job array, or one local job process per identity. See docs/cluster.md.")
@click.option("--partition", help="SLURM partition.")
@click.option("--account", help="SLURM account charged for the jobs.")
@click.option("--gpus-per-job", type=click.IntRange(min=0),
              help="GPUs per SLURM job (default: 1 for emostyle, 0 for schematic).")
@click.option("--time", "time_limit", metavar="TIME",
              help='Time limit per identity job: minutes or "H:MM:SS" (default 60).')
@click.option("--array-parallelism", type=click.IntRange(min=1),
              help="Most SLURM jobs running at once (default 32).")
@click.option("--max-retries", type=click.IntRange(min=0),
              help="Resubmissions of a failed identity job before giving up (default 2).")
@click.option("--dry-run", is_flag=True,
              help="Check the protocol end to end with tiny random models (noise faces) into "
                   "build/<study>-dry-run/; the report and manifest say so.")
@quiet_option
@click.pass_context
def build(ctx, protocol, out, force, jobs, executor, partition, account, gpus_per_job,
          time_limit, array_parallelism, max_retries, dry_run):
    """Build the stimuli, tables, experiment bundle and report of PROTOCOL.

    An interrupted build resumes: run the same command again and finished
    identities are reused after their files are checked. Execution settings come
    from these options, else the protocol's execution: section, else the user
    config file (~/.config/stimgen/config.yaml or $STIMGEN_CONFIG).
    """
    import stimgen
    from stimgen.config import resolve_execution

    loaded = stimgen.load_protocol(protocol)
    command = "stimgen " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    execution = resolve_execution(loaded.execution, {
        "executor": executor, "jobs": jobs, "max_retries": max_retries,
        "slurm": {"partition": partition, "account": account, "gpus_per_job": gpus_per_job,
                  "time": time_limit, "array_parallelism": array_parallelism}})
    if dry_run:
        from stimgen.pipeline import dry_run_output

        out = out if out is not None else dry_run_output(loaded)
        click.secho("DRY RUN with tiny random models: every face is noise; this checks the "
                    "protocol end to end, not the stimuli", fg="yellow", err=True)
    _say(ctx, _plan_text(loaded, out))
    _show_build_warnings()
    result = stimgen.build(loaded, out=out, force=force, execution=execution,
                           progress=not _quiet(ctx), command=command, dry_run=dry_run)
    counts = result.manifest["counts"]
    timing = sum(result.manifest["timings"].values())
    if result.reused_identities:
        _say(ctx, f"reused finished identities: {', '.join(result.reused_identities)}")
    if result.repairs:
        click.secho(f"recomputed {len(result.repairs)} identit(ies) whose earlier files were "
                    "damaged; listed under \"repairs\" in manifest.json", fg="yellow", err=True)
    _say(ctx, f"built {counts['stimuli']} stimuli in {timing:.1f} s: {counts['passed']} passed, "
              f"{counts['flagged']} flagged ({counts['out_of_tolerance']} out of tolerance, "
              f"{counts['weak_region']} in the weak region)", fg="green")
    for name in ("report", "experiment", "stimuli_table", "metrics_by_emotion"):
        if name in result.paths:
            _say(ctx, f"  {name:<20} {result.paths[name]}")
    click.echo(str(result.out))


class _ClickWarnings(logging.Handler):
    """Shows the build's warnings (e.g. damaged files it recomputed) on stderr, even with -q."""

    def emit(self, record):
        click.secho(f"warning: {record.getMessage()}", fg="yellow", err=True)


def _show_build_warnings() -> None:
    logger = logging.getLogger("stimgen")
    if not any(isinstance(h, _ClickWarnings) for h in logger.handlers):
        logger.addHandler(_ClickWarnings(logging.WARNING))


@main.command()
@click.argument("protocol", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path),
              help="Output folder to report in the plan.")
@quiet_option
@click.pass_context
def validate(ctx, protocol, out):
    """Check PROTOCOL and print the plan without building anything.

    Everything a build would refuse about the protocol is refused here, with
    file:line:column, including an experiment that cannot be planned over the
    stimuli the protocol makes. Designs that run but undermine themselves are
    printed as warnings on stderr.
    """
    import stimgen
    from stimgen.design import plan_experiment

    loaded = stimgen.load_protocol(protocol)
    plan = plan_experiment(loaded)
    _say(ctx, _plan_text(loaded, out, plan))
    warnings = plan.warnings if plan else ()
    for warning in warnings:
        click.secho(f"warning: {warning.render(str(protocol))}", fg="yellow", err=True)
    counted = f" ({len(warnings)} warning{'s' if len(warnings) > 1 else ''})" if warnings else ""
    click.secho(f"{protocol}: valid{counted}", fg="green")


def _plan_text(protocol, out, plan=None) -> str:
    """What a build of ``protocol`` will make; ``plan``: its experiment plan, if made already."""
    from stimgen.plan import plan_targets
    from stimgen.wording import quantity

    targets = plan_targets(protocol.targets)
    n_ids = len(protocol.identities)
    kinds = sorted({i.kind for i in protocol.identities})
    start, end = protocol.validation.weak_region
    in_weak = sum(1 for t in targets if t.angle is not None and _in_weak(t.angle, start, end))
    lines = [
        f"study       {protocol.study.name}",
        f"stimuli     {quantity(n_ids, 'identity')} x {quantity(len(targets), 'target')} = "
        f"{quantity(n_ids * len(targets), 'stimulus')}",
        f"identities  {', '.join(i.id for i in protocol.identities[:8])}"
        f"{' ...' if n_ids > 8 else ''} ({'/'.join(kinds)})",
        f"backend     {protocol.backend.name}",
        f"rater       {protocol.resolved_rater()}",
        f"tolerance   distance <= {protocol.validation.tolerance.distance:g}, "
        f"direction <= {protocol.validation.tolerance.direction:g} deg",
        f"weak region {start:g}-{end:g} deg ({in_weak} of {len(targets)} targets inside)",
        f"output      {out or protocol.default_output()}",
    ]
    if protocol.experiment is not None:
        if plan is None:
            from stimgen.design import plan_experiment

            plan = plan_experiment(protocol)
        lines += _experiment_lines(protocol.experiment, plan)
    return "\n".join(lines)


def _in_weak(angle, start, end) -> bool:
    from stimgen.circumplex import in_angle_interval

    return bool(in_angle_interval(angle, start, end))


def _experiment_lines(experiment, plan) -> list[str]:
    """The experiment part of the plan: groups, trials, breaks and session length."""
    summary, session = plan.design.summary, plan.session
    groups = plan.design.groups
    names = groups[0] if len(groups) == 1 else f"{groups[0]} ... {groups[-1]}"
    levels = ", ".join(summary.get("levels", []))
    counted = {
        "random": f"{len(groups)} order{'s' if len(groups) > 1 else ''} ({names}), each its "
                  "own random order",
        "blocked": f"{len(groups)} groups ({names}): {len(summary.get('levels', []))} "
                   f"{summary.get('factor')} blocks ({levels}) in the orders of a balanced "
                   "Latin square",
        "latin-square": f"{len(groups)} lists ({names}): each identity in one of "
                        f"{len(summary.get('levels', []))} {summary.get('factor')} conditions "
                        f"({levels}) per list",
    }[summary["design"]]
    main = summary["main_trials_per_group"]
    main_text = str(main[0]) if len(main) == 1 else f"{main[0]}-{main[-1]}"
    shown = (f"{summary['stimuli_in_design']} stimuli"
             + (f" x {summary['repetitions']} repetitions" if summary["repetitions"] > 1
                else ", each once"))
    if summary["design"] == "latin-square":
        shown = f"a share of the {summary['stimuli_in_design']} stimuli per list"
    trials = f"{session.trials} per participant: "
    if summary["practice_trials"]:
        source = {"repeat": "repeats of main-trial stimuli",
                  "unused": "stimuli not in the main trials"}[summary["practice_source"]]
        trials += f"{summary['practice_trials']} practice ({source}) + "
    trials += f"{main_text} main ({shown})"
    if summary.get("catch_trials"):
        trials += f"; {summary['catch_trials']} of the main trials are catch trials"
    lines = [f"experiment  {_experiment_line(experiment)}",
             f"groups      {counted}",
             f"assignment  {plan.design.rule}",
             f"trials      {trials}",
             f"breaks      {_breaks_text(experiment, summary)}",
             f"session     {_session_text(session, summary)}",
             f"            one trial: {session.assumption}"]
    if experiment.stimuli.exclude_out_of_tolerance:
        lines.append("note        stimuli out of tolerance are left out once rated, so the "
                     "built experiment can have fewer trials (this plan assumes none is)")
    if summary.get("note"):
        lines.append(f"note        {summary['note']}")
    return lines


def _breaks_text(experiment, summary) -> str:
    counts = summary["breaks_per_group"]
    if counts == [0]:
        return "none"
    number = str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    when = []
    if experiment.breaks.every:
        when.append(f"after every {experiment.breaks.every} main trials")
    if summary["design"] == "blocked" and experiment.breaks.between_blocks:
        when.append("between blocks")
    return f"{number} per participant, {' and '.join(when)}"


def _session_text(session, summary) -> str:
    def minutes(value: float) -> str:
        return "under 1 min" if value < 1 else f"about {value:.0f} min"

    text = f"{minutes(session.minutes)} of trials per participant"
    if session.longest_minutes is not None \
            and minutes(session.longest_minutes) != minutes(session.minutes):
        text += (f" ({minutes(session.longest_minutes)} if every response waits for its "
                 "time limit)")
    breaks = summary["breaks_per_group"][-1]
    return text + "; instructions" + (" and self-paced breaks" if breaks else "") \
        + " come on top"


def _experiment_line(experiment) -> str:
    task = getattr(getattr(experiment, "task", None), "type", "?")
    design = getattr(getattr(experiment, "design", None), "type", "?")
    return f"{task} task, {design} design"


@main.command()
@click.argument("path", required=False, default="protocol.yaml",
                type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@quiet_option
@click.pass_context
def init(ctx, path, force):
    """Write a commented starter protocol to PATH (default protocol.yaml)."""
    from stimgen.starter import STARTER_PROTOCOL
    from stimgen.storage import atomic_write_text

    if path.exists() and not force:
        raise StimgenError(f"{path} already exists", hint="pass --force to overwrite it, or "
                                                          "choose another path")
    atomic_write_text(path, STARTER_PROTOCOL)
    _say(ctx, f"wrote {path}; next: stimgen validate {path} && stimgen build {path}")


@main.command()
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
              show_default=True, help="Output format.")
def emotions(fmt):
    """List the 28 named circumplex emotions with their angle and unit VA."""
    from stimgen.circumplex import named_emotions

    rows = [(e.name, e.key, e.angle, *e.unit_va) for e in named_emotions()]
    if fmt == "json":
        click.echo(json.dumps([{"name": n, "key": k, "angle": a, "valence": round(v, 4),
                                "arousal": round(r, 4)} for n, k, a, v, r in rows], indent=2))
    elif fmt == "csv":
        click.echo("name,key,angle,valence,arousal")
        for n, k, a, v, r in rows:
            click.echo(f"{n},{k},{a:g},{v:.4f},{r:.4f}")
    else:
        click.echo(f"{'emotion':<12} {'key':<12} {'angle':>6} {'valence':>8} {'arousal':>8}")
        for n, k, a, v, r in rows:
            click.echo(f"{n:<12} {k:<12} {a:>6g} {v:>8.3f} {r:>8.3f}")


@main.command()
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the schema to this file instead of standard output.")
def schema(out):
    """Print the protocol's JSON Schema (for editor completion and checks)."""
    from stimgen.protocol.schema import protocol_json_schema
    from stimgen.storage import atomic_write_text

    text = json.dumps(protocol_json_schema(), indent=2) + "\n"
    if out:
        atomic_write_text(out, text)
    else:
        click.echo(text, nl=False)
