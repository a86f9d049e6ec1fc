"""`stimgen select BUILD_DIR --per-emotion K`: the best stimuli of a build as a subset build.

A thin shell over :func:`stimgen.select.write_subset`; bad options and unusable folders raise
a StimgenError (exit status 2), targets with fewer eligible stimuli than K are warnings.
"""
from __future__ import annotations

import shlex
from pathlib import Path

import click

from stimgen.cli.build import show_build_warnings
from stimgen.select import RANKINGS, Choice, write_subset
from stimgen.wording import quantity


@click.command("select")
@click.argument("build_dir", type=click.Path(path_type=Path))
@click.option("--per-emotion", "--per-target", "per_target", type=int, required=True,
              metavar="K",
              help="Keep the K best stimuli of every target (an emotion at one intensity; "
                   "neutral is one target). --per-target is the same option.")
@click.option("--by", type=click.Choice(RANKINGS), default="norms", show_default=True,
              help="Rank by the human means of norms.tsv, or by the build's primary rater.")
@click.option("--max-distance", type=float, default=None, metavar="D",
              help="Leave out stimuli farther than D from their target (valence-arousal units).")
@click.option("--min-hit-rate", type=float, default=None, metavar="H",
              help="Leave out stimuli whose human hit rate is below H (0-1; needs labels).")
@click.option("-o", "--out", "--output", "out", type=click.Path(path_type=Path), default=None,
              help="The subset folder (default: BUILD_DIR-selected beside the build); "
                   "--output is the same option.")
@click.option("--force", is_flag=True,
              help="When data was collected with the subset folder's experiment and this "
                   "selection changes it: keep that experiment in experiment/previous/ and "
                   "write the new one.")
def select_command(build_dir: Path, per_target: int, by: str, max_distance, min_hit_rate,
                   out, force: bool) -> None:
    """Write a subset build of BUILD_DIR with its best stimuli: the images, their rows of
    stimuli.tsv and norms.tsv, the error tables, the experiment and the report made again for
    them, and a manifest that records the selection rule. BUILD_DIR is only read."""
    options = [str(build_dir), "--per-emotion", str(per_target), "--by", by]
    options += ["--max-distance", f"{max_distance:g}"] if max_distance is not None else []
    options += ["--min-hit-rate", f"{min_hit_rate:g}"] if min_hit_rate is not None else []
    options += ["-o", str(out)] if out is not None else []
    show_build_warnings()                  # a target short of K, on stderr
    subset = write_subset(build_dir, out, per_target=per_target, by=by,
                          max_distance=max_distance, min_hit_rate=min_hit_rate,
                          command=shlex.join(["stimgen", "select", *options]), force=force)
    click.echo(chosen_line(subset.choice, by))
    click.echo(f"wrote {subset.out}")



def chosen_line(choice: Choice, by: str) -> str:
    """The command's last line but one: what was chosen, and how many targets kept none."""
    chosen, targets = choice.chosen, choice.targets
    empty = sum(1 for t in targets if t["chosen"] == 0)
    none = f" ({quantity(empty, 'target')} kept none)" if empty else ""
    return (f"{quantity(len(chosen), 'stimulus')} chosen for {quantity(len(targets), 'target')}"
            f"{none}, from {quantity(chosen['identity'].nunique(), 'identity')} (by {by})")
