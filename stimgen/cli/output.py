"""What every command shares about printing: the -q/--quiet flag and messages it silences.

`stimgen -q CMD` and `stimgen CMD -q` both set the flag on the root context.
"""
from __future__ import annotations

import click


def is_quiet(ctx: click.Context) -> bool:
    """Whether -q/--quiet was given, on the root group or on the command."""
    obj = ctx.find_root().obj
    return bool(isinstance(obj, dict) and obj.get("quiet"))


def _set_quiet(ctx, _param, value) -> None:
    if value:
        root = ctx.find_root()
        root.obj = {**(root.obj or {}), "quiet": True}


#: `stimgen build -q` works as well as `stimgen -q build`.
quiet_option = click.option("-q", "--quiet", is_flag=True, expose_value=False,
                            is_eager=True, callback=_set_quiet,
                            help="Print only errors and final paths; no progress bars.")


def say(ctx: click.Context, message: str = "", **style) -> None:
    """Print ``message`` (with click.secho ``style``) unless -q was given."""
    if not is_quiet(ctx):
        click.secho(message, **style)
