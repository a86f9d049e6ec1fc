"""The `stimgen` command: a thin shell over the Python API, one module per command family.

Errors a user can fix (StimgenError) are printed without a traceback and exit with 2.
:mod:`~stimgen.cli.build` holds build, validate, init, emotions and schema;
:mod:`~stimgen.cli.report`, :mod:`~stimgen.cli.models`, :mod:`~stimgen.cli.parity`,
:mod:`~stimgen.cli.rate` and :mod:`~stimgen.cli.select` are loaded only when their command runs.
"""
from __future__ import annotations

import importlib

import click

from stimgen.version import __version__
from stimgen.cli import build as build_commands
from stimgen.errors import StimgenError

# Commands whose modules import heavy libraries (torch, matplotlib): loaded only when used,
# so that `stimgen --help` and `stimgen validate` start instantly.
LAZY_COMMANDS = {
    "report": ("stimgen.cli.report", "report_command",
               "Regenerate report.html of a build folder from its data."),
    "norms": ("stimgen.cli.norms", "norms_command",
              "Human norms of a build's stimuli from participants' data files."),
    "select": ("stimgen.cli.select", "select_command",
               "Write a subset build of a build's best stimuli (by norms or model)."),
    "parity": ("stimgen.cli.parity", "parity_command",
               "Check this installation's networks against parity fixtures."),
    "models": ("stimgen.cli.models", "models_group",
               "List, fetch, add, verify and inspect model weights."),
    "rate": ("stimgen.cli.rate", "rate_command",
             "Rate the faces of any images with a rater, into a TSV."),
}


class StimgenGroup(click.Group):
    """A click group that loads heavy commands lazily and turns StimgenError into a clean
    message and exit status 2."""

    def list_commands(self, ctx):
        return sorted([*super().list_commands(ctx), *LAZY_COMMANDS])

    def get_command(self, ctx, name):
        if name in LAZY_COMMANDS and name not in self.commands:
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
        from stimgen.interrupt import exit_status, signal_name, stopping_on_signals

        try:
            with stopping_on_signals():     # SIGTERM ends a command as Ctrl-C does
                return super().invoke(ctx)
        except StimgenError as err:
            click.secho("error: ", fg="red", bold=True, err=True, nl=False)
            click.echo(err.render(), err=True)
            ctx.exit(err.exit_code)
        except KeyboardInterrupt as stop:
            how = signal_name(getattr(stop, "signum", 2))
            kept = (": every finished stimulus is kept; run the same command again to resume"
                    if ctx.invoked_subcommand == "build" else "")
            click.echo(f"\ninterrupted ({how}){kept}", err=True)
            ctx.exit(exit_status(stop))


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


for _command in build_commands.COMMANDS:
    main.add_command(_command)
