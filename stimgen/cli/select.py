"""`stimgen select BUILD_DIR --per-target K`: the best stimuli of a build as a subset build.

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
@click.option("--per-target", "per_target", type=int, default=None, metavar="K",
              help="Keep the K best stimuli of every target (an emotion at one intensity; "
                   "neutral is one target). Required.")
@click.option("--per-emotion", "per_emotion", type=int, default=None, metavar="K",
              help="Another name of --per-target (messages name the one you typed).")
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
@click.pass_context
def select_command(ctx: click.Context, build_dir: Path, per_target: int | None,
                   per_emotion: int | None, by: str, max_distance, min_hit_rate, out,
                   force: bool) -> None:
    """Write a subset build of BUILD_DIR with its best stimuli: the images, their rows of
    stimuli.tsv and norms.tsv, the error tables, the experiment and the report made again for
    them, and a manifest that records the selection rule. BUILD_DIR is only read."""
    k_option, per_target = k_as_typed(ctx, per_target, per_emotion)
    options = [str(build_dir), k_option, str(per_target), "--by", by]
    options += ["--max-distance", f"{max_distance:g}"] if max_distance is not None else []
    options += ["--min-hit-rate", f"{min_hit_rate:g}"] if min_hit_rate is not None else []
    options += ["-o", str(out)] if out is not None else []
    show_build_warnings()                  # a target short of K, on stderr
    subset = write_subset(build_dir, out, per_target=per_target, by=by,
                          max_distance=max_distance, min_hit_rate=min_hit_rate,
                          command=shlex.join(["stimgen", "select", *options]), force=force,
                          k_option=k_option)
    click.echo(chosen_line(subset.choice, by))
    click.echo(f"wrote {subset.out}")


def k_as_typed(ctx: click.Context, per_target: int | None,
               per_emotion: int | None) -> tuple[str, int]:
    """K and the name of its option as typed: two click options, not one with two names,
    because click does not record which name of an option was used."""
    if per_target is not None and per_emotion is not None:
        raise click.UsageError("--per-target and --per-emotion are one option; give it once",
                               ctx)
    if per_target is None and per_emotion is None:
        raise click.UsageError("Missing option '--per-target K' (or its other name "
                               "'--per-emotion K').", ctx)
    return ("--per-target", per_target) if per_target is not None \
        else ("--per-emotion", per_emotion)


def chosen_line(choice: Choice, by: str) -> str:
    """The command's last line but one: what was chosen, and how many targets kept none."""
    chosen, targets = choice.chosen, choice.targets
    empty = sum(1 for t in targets if t["chosen"] == 0)
    none = f" ({quantity(empty, 'target')} kept none)" if empty else ""
    return (f"{quantity(len(chosen), 'stimulus')} chosen for {quantity(len(targets), 'target')}"
            f"{none}, from {quantity(chosen['identity'].nunique(), 'identity')} (by {by})")
