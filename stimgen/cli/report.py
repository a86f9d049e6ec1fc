"""`stimgen report BUILD_DIR`: regenerate a build's report from its files alone.

A thin shell over :func:`stimgen.report.write_report`; a folder that is not a complete build
raises :class:`~stimgen.build_folder.BuildFolderError` (a StimgenError, exit status 2).
"""
from __future__ import annotations

import shlex
from pathlib import Path

import click

from stimgen.build_folder import STATE_DIR, build_lock
from stimgen.report import write_report


@click.command("report")
@click.argument("build_dir", type=click.Path(path_type=Path))
def report_command(build_dir: Path) -> None:
    """Regenerate BUILD_DIR/report.html and report_assets/ from the build folder alone."""
    command = shlex.join(["stimgen", "report", str(build_dir)])
    if (build_dir / STATE_DIR).is_dir():
        with build_lock(build_dir):         # never beside a build writing the same folder
            page = write_report(build_dir, command=command)
    else:
        page = write_report(build_dir, command=command)    # says why it is not a build
    click.echo(f"wrote {page}")
