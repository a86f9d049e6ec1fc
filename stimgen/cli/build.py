"""`stimgen build`, `validate`, `init`, `emotions` and `schema`: the commands on a protocol.

Each parses its options, calls the Python API and prints; they import only light modules at
start, so that `stimgen --help` and `stimgen validate` start instantly.
"""
from __future__ import annotations

import json
import logging
import shlex
import sys
import textwrap
import warnings
from pathlib import Path

import click

from stimgen.cli.output import is_quiet, quiet_option, say
from stimgen.cli.plan_summary import plan_summary
from stimgen.errors import StimgenError


def _identities_per_job(ctx, param, value):
    """`--identities-per-job`: a whole number of at least 1, or `auto`."""
    if value is None or value == "auto":
        return value
    if value.isdigit() and int(value) >= 1:
        return int(value)
    raise click.BadParameter(f'"{value}" is neither a whole number of at least 1 nor "auto"')


@click.command()
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
@click.option("--cpus-per-job", type=click.IntRange(min=1),
              help="CPU cores per SLURM job (default 4); schematic jobs render with as many "
                   "worker processes.")
@click.option("--identities-per-job", metavar="N|auto", callback=_identities_per_job,
              help="Identities one job renders (slurm, submitit-local; default auto: 1 for "
                   "emostyle, schematic identities spread over the jobs that can run at once).")
@click.option("--time", "time_limit", metavar="TIME",
              help='Time limit per job: minutes or "H:MM:SS" (default 60).')
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
          cpus_per_job, identities_per_job, time_limit, array_parallelism, max_retries,
          dry_run):
    """Build the stimuli, tables, experiment bundle and report of PROTOCOL.

    A stopped build resumes: run the same command again and every finished
    stimulus is reused after its files are checked (Ctrl-C and SIGTERM stop
    within seconds, with status 130 and 143; see docs/reliability.md). Execution settings come
    from these options, else the protocol's execution: section, else the user
    config file (~/.config/stimgen/config.yaml or $STIMGEN_CONFIG).
    """
    import stimgen
    from stimgen.config import resolve_execution

    loaded = stimgen.load_protocol(protocol)
    command = "stimgen " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    execution = resolve_execution(loaded.execution, {
        "executor": executor, "jobs": jobs, "max_retries": max_retries,
        "identities_per_job": identities_per_job,
        "slurm": {"partition": partition, "account": account, "gpus_per_job": gpus_per_job,
                  "cpus_per_job": cpus_per_job, "time": time_limit,
                  "array_parallelism": array_parallelism}})
    if dry_run:
        from stimgen.pipeline import dry_run_output

        out = out if out is not None else dry_run_output(loaded)
        click.secho("DRY RUN with tiny random models: every face is noise; this checks the "
                    "protocol end to end, not the stimuli", fg="yellow", err=True)
    say(ctx, plan_summary(loaded, out))
    show_build_warnings()                       # the protocol's warnings come from build()
    result = stimgen.build(loaded, out=out, force=force, execution=execution,
                           progress=not is_quiet(ctx), command=command, dry_run=dry_run)
    counts = result.manifest["counts"]
    timing = sum(result.manifest["timings"].values())
    if result.kept_stimuli:
        say(ctx, f"kept {result.kept_stimuli} stimuli finished before the build was stopped")
    if result.reused_identities:
        say(ctx, f"reused finished identities: {', '.join(result.reused_identities)}")
    if result.repairs:
        click.secho(f"recomputed {len(result.repairs)} identit(ies) whose earlier files were "
                    "damaged; listed under \"repairs\" in manifest.json", fg="yellow", err=True)
    weak = (f", {counts['weak_region']} in the weak region" if loaded.flags_weak_region()
            else "")                    # EmoStyle's weak region: no reason to look elsewhere
    say(ctx, f"built {counts['stimuli']} stimuli in {timing:.1f} s: {counts['passed']} passed, "
              f"{counts['flagged']} flagged ({counts['out_of_tolerance']} out of tolerance"
              f"{weak})", fg="green")
    for name in ("report", "experiment", "stimuli_table", "metrics_by_emotion"):
        if name in result.paths:
            say(ctx, f"  {name:<20} {result.paths[name]}")
    click.echo(str(result.out))


def show_warning_line(message: str) -> None:
    """``warning: message`` on stderr, on a line of its own even while a progress bar runs:
    tqdm clears its bars, the line is written, the bars are drawn again below it."""
    from tqdm import tqdm

    with tqdm.external_write_mode(file=sys.stderr):
        click.secho(f"warning: {message}", fg="yellow", err=True)


class _ClickWarnings(logging.Handler):
    """Shows the build's warnings (e.g. damaged files it recomputed) on stderr, even with -q."""

    def emit(self, record):
        show_warning_line(record.getMessage())


def _show_python_warning(message, category, filename, lineno, file=None, line=None):
    """`warnings.showwarning` for the CLI: stimgen's own warnings (a photo with several
    faces) as ``warning: …`` lines, any other with its usual file:line form; all above the bar."""
    if category.__module__.split(".")[0] == "stimgen":
        show_warning_line(str(message))
        return
    from tqdm import tqdm

    with tqdm.external_write_mode(file=sys.stderr):
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def show_build_warnings() -> None:
    """Route the build's logged warnings and Python warnings to stderr lines that never
    share a line with the progress bar (worker processes send theirs back to this one)."""
    logger = logging.getLogger("stimgen")
    if not any(isinstance(h, _ClickWarnings) for h in logger.handlers):
        logger.addHandler(_ClickWarnings(logging.WARNING))
    warnings.showwarning = _show_python_warning


@click.command()
@click.argument("protocol", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path),
              help="Output folder to report in the plan.")
@quiet_option
@click.pass_context
def validate(ctx, protocol, out):
    """Check PROTOCOL and print the plan without building anything.

    Everything a build would refuse about the protocol is refused here, with
    file:line:column, including an experiment that cannot be planned over the
    stimuli the protocol makes and every photo the build could not use (opened,
    size-checked and face-detected as the build does). Designs that run but undermine
    themselves, clips too short to be checked for flicker, and model files or
    packages the build needs but this machine lacks (with the command that installs
    each) are printed as warnings on stderr.
    """
    import stimgen
    from stimgen.protocol.loader import plan_experiment
    from stimgen.dynamic import unmeasured_flicker
    from stimgen.preflight import missing_packages
    from stimgen.plan import render_spec, resolve_raters
    from stimgen.raters.selection import rater_models
    from stimgen.weights import weights_missing

    loaded = stimgen.load_protocol(protocol)
    plan = plan_experiment(loaded)
    say(ctx, plan_summary(loaded, out, plan))
    found = [w.render(str(protocol)) for w in loaded.warnings + (plan.warnings if plan else ())]
    flicker = unmeasured_flicker(loaded.output.dynamic)
    if flicker is not None:
        found.append(flicker.render(str(protocol)))
    resolved, raters = resolve_raters(loaded)   # the raters the build will load, as it does
    # this machine: a valid protocol, but a build here would stop (weights, packages)
    models = list(render_spec(resolved).models) + rater_models(raters.names)
    for missing in (weights_missing(models),
                    missing_packages(loaded, raters.names)):
        if missing is not None:
            found.append(f"a build on this machine would stop: {missing.render()}")
    try:
        found += _check_photos(ctx, loaded)     # every photo, opened as the build opens it
    finally:                                    # the warnings too when a photo is refused
        for warning in found:
            click.secho(f"warning: {warning}", fg="yellow", err=True)
    counted = f" ({len(found)} warning{'s' if len(found) > 1 else ''})" if found else ""
    click.secho(f"{protocol}: valid{counted}", fg="green")


def _check_photos(ctx, protocol) -> list[str]:
    """Open every photo of ``protocol`` as the build will and find its face; raise the
    ProtocolError of those the build would refuse; return the build's warnings about them."""
    from stimgen.preflight import check_photos, photo_error, photos_of

    count = len(photos_of(protocol))
    if not count:
        return []
    say(ctx, f"checking {count} photo(s) as the build will read them (decoding, size limits, "
             "face detection on the CPU) ...", err=True)
    progress = None
    if not is_quiet(ctx) and count > 1 and sys.stderr.isatty():
        def progress(done, total):
            click.echo(f"\r  {done}/{total} photos", err=True, nl=done == total)
    check = check_photos(protocol, progress=progress)
    if check.problems:
        raise photo_error(protocol, check.problems)
    return check.warnings


@click.command()
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
    say(ctx, f"wrote {path}; next: stimgen validate {path} && stimgen build {path}")


@click.command()
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
              show_default=True, help="Output format.")
def emotions(fmt):
    """List the named emotions: the 28 circumplex terms and the basic emotions, with their
    valence-arousal at intensity 1 and the source of each number."""
    from stimgen.circumplex import (BASIC_SOURCES, VOCABULARY_RULE, all_emotions,
                                    basic_emotion_sources, basic_emotions)

    rows = [{"name": e.name, "key": e.key, "vocabulary": e.vocabulary,
             "aliases": [a for a in e.aliases if a != e.key], "angle": round(e.angle, 1),
             "valence": round(e.unit_va[0], 4), "arousal": round(e.unit_va[1], 4),
             "published_va": list(e.point) if e.point else None,
             "prototype": e.prototype, "circumplex_term": e.circumplex_term,
             "source_term": e.source_term, "source": e.source} for e in all_emotions()]
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
    elif fmt == "csv":
        click.echo(_emotions_csv(rows), nl=False)
    else:
        click.echo(textwrap.fill("How to write them: " + VOCABULARY_RULE, width=96))
        click.echo("")
        header = f"{'emotion':<12} {'key':<12} {'angle':>6} {'valence':>8} {'arousal':>8}"
        for vocabulary, title in (("circumplex", "28 circumplex terms: target = intensity x "
                                   "(cos angle, sin angle); angles from the EmoStyle "
                                   "evaluation protocol (Darne, Quan & Luo 2025), as their "
                                   "code requests them (the paper prints whole degrees)"),
                                  ("basic", "basic emotions: target = intensity x the unit "
                                   "vector toward the published (valence, arousal) of the "
                                   "source term (Russell & Mehrabian 1977; contempt: Warriner, "
                                   "Kuperman & Brysbaert 2013); schematic faces show the FACS "
                                   "prototype (Ekman, Friesen & Hager 2002)")):
            click.echo(title)
            click.echo(header + ("  published (v, a)  also accepted / source: term"
                                 if vocabulary == "basic" else ""))
            for r in (r for r in rows if r["vocabulary"] == vocabulary):
                line = (f'{r["name"]:<12} {r["key"]:<12} {r["angle"]:>6g} {r["valence"]:>8.3f} '
                        f'{r["arousal"]:>8.3f}')
                if vocabulary == "basic":
                    short = next(name for name, full in BASIC_SOURCES.values()
                                 if r["source"].startswith(full))
                    line += (f'  ({r["published_va"][0]:+.2f}, {r["published_va"][1]:+.2f})  '
                             f'{", ".join(r["aliases"]) or "-"} / {short}: '
                             f'"{r["source_term"]}"')
                click.echo(line)
            click.echo("")
        same = ", ".join(f'{r["name"]} = {r["circumplex_term"]}' for r in rows
                         if r.get("circumplex_term"))
        click.echo(f"As answer choices and norming labels, a basic emotion's names also match "
                   f"the circumplex term of the same emotion: {same}.")
        for emotion in basic_emotions():
            others = [e for k, e in basic_emotion_sources(emotion.key).items()
                      if k != emotion.source_key]
            for other in others:
                click.echo(f"{emotion.name} also has a published point from "
                           f"{BASIC_SOURCES[other.source_key][0]}: ({other.point[0]:+.3f}, "
                           f"{other.point[1]:+.3f}), {other.angle:.0f} deg; a protocol picks it "
                           f"with targets: {{basic_sources: {{{emotion.key}: "
                           f"{other.source_key}}}}}.")
        click.echo("Not a target: neutral (use targets.neutral: true).")


def _emotions_csv(rows: list[dict]) -> str:
    """The rows of `stimgen emotions` as CSV (RFC 4180 quoting, by the csv module): the JSON
    format's fields, aliases joined by "|" as in stimgen/data/basic_emotions_va.csv and the
    published point split into two columns, empty where a field is None."""
    import csv
    import io

    columns = ["name", "key", "vocabulary", "aliases", "angle", "valence", "arousal",
               "published_valence", "published_arousal", "prototype", "circumplex_term",
               "source_term", "source"]
    text = io.StringIO()
    writer = csv.DictWriter(text, columns, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        point = r["published_va"] or (None, None)
        writer.writerow({**{k: v for k, v in r.items() if k in columns},
                         "aliases": "|".join(r["aliases"]),
                         "published_valence": point[0], "published_arousal": point[1]})
    return text.getvalue()


@click.command()
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


#: The commands of this module, in the order they are added to the `stimgen` group.
COMMANDS = (build, validate, init, emotions, schema)
