"""`stimgen report BUILD_DIR`: regenerate a build's report from its files alone.

A thin shell over :func:`stimgen.report.write_report`; a folder that is not a complete build
raises :class:`~stimgen.build_folder.BuildFolderError` (a StimgenError, exit status 2).
"""
from __future__ import annotations

import shlex
from pathlib import Path

import click

from stimgen.report import write_report


@click.command("report")
@click.argument("build_dir", type=click.Path(path_type=Path))
def report_command(build_dir: Path) -> None:
    """Regenerate BUILD_DIR/report.html and report_assets/ from the build folder alone."""
    page = write_report(build_dir, command=shlex.join(["stimgen", "report", str(build_dir)]))
    click.echo(f"wrote {page}")
