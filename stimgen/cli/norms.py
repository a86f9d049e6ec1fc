"""`stimgen norms BUILD_DIR DATA...`: human norms of a build's stimuli from participants' data.

A thin shell over :func:`stimgen.finish.write_norms`; unusable input raises a NormsError (a
StimgenError, exit status 2), usable-with-losses input is printed as warnings.
"""
from __future__ import annotations

from pathlib import Path

import click

from stimgen.build_folder import NORMS_SUMMARY_JSON, STATE_DIR, build_lock
from stimgen.finish import write_norms


@click.command("norms")
@click.argument("build_dir", type=click.Path(path_type=Path))
@click.argument("data", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--scale", nargs=2, type=float, default=None, metavar="MIN MAX",
              help="Raw valence/arousal scale, e.g. --scale 1 9 (default: the protocol's "
                   "sliders, else 1-9).")
@click.option("--max-missed-checks", type=click.IntRange(min=0), default=0, show_default=True,
              help="Exclude participants who miss more attention checks than this.")
def norms_command(build_dir: Path, data: tuple[Path, ...], scale, max_missed_checks: int) -> None:
    """Write BUILD_DIR/norms.tsv and norms_summary.json from DATA (PsychoPy data CSVs or
    folders of them, e.g. BUILD_DIR/experiment/data, or tidy ratings CSVs) and add a "Human
    norms" section to report.html. Data files are only read."""
    lock = build_lock(build_dir) if (build_dir / STATE_DIR).is_dir() else None
    if lock is not None:
        with lock:
            path, responses = write_norms(build_dir, data, scale=scale,
                                          max_missed_checks=max_missed_checks)
    else:
        path, responses = write_norms(build_dir, data, scale=scale,
                                      max_missed_checks=max_missed_checks)
    for warning in responses.warnings:
        click.echo(f"warning: {warning}", err=True)
    for excluded in responses.excluded:
        click.echo(f"excluded: participant {excluded['participant']} ({excluded['file']}): "
                   f"{excluded['reason']}", err=True)
    click.echo(f"{len(responses.sessions)} participant(s) kept, {len(responses.excluded)} "
               "excluded")
    click.echo(f"wrote {path}")
    click.echo(f"wrote {path.parent / NORMS_SUMMARY_JSON}")
