"""`stimgen parity DIR`: check this installation's networks against parity fixtures.

A thin shell over :func:`stimgen.parity.run_parity`: prints one row per output array.
"""
from __future__ import annotations

from pathlib import Path

import click

from stimgen.parity import ParityRow, run_parity


def format_rows(rows: list[ParityRow]) -> str:
    """A plain-text table: fixture, array, max abs error, tolerance, PASS/FAIL (+ note)."""
    header = ("fixture", "array", "max_abs_err", "tolerance", "result")
    body = [(r.fixture, r.array, f"{r.max_abs_err:.3g}", r.tolerance,
             ("PASS" if r.passed else "FAIL") + (f"  ({r.note})" if r.note else ""))
            for r in rows]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(line[:4], widths)) + "  " + line[4]
             for line in [header, *body]]
    return "\n".join(lines)


@click.command("parity")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--device", default="cpu", show_default=True,
              help="torch device to run the networks on, e.g. cuda.")
def parity_command(directory: Path, device: str) -> None:
    """Check this installation's networks against the parity fixtures in DIRECTORY.

    Prints one row per output array; exits 1 if any array differs from the reference
    beyond the tolerance, 2 if DIRECTORY holds no readable fixture.
    """
    rows = run_parity(directory, device=device)   # StimgenError: the CLI prints it, exit 2
    click.echo(format_rows(rows))
    failed = sum(not row.passed for row in rows)
    click.echo(f"\n{len(rows) - failed}/{len(rows)} arrays match the reference "
               f"({len({row.fixture for row in rows})} fixtures in {directory})")
    if failed:
        raise SystemExit(1)
