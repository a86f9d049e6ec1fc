"""`stimgen rate IMAGES_OR_FOLDERS...`: rate any face images with a rater, into a TSV.

A thin shell over :mod:`stimgen.raters.images`; errors are StimgenErrors (exit status 2),
and the TSV is written atomically only once every image was rated.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import click

from stimgen.cli.output import is_quiet, quiet_option, say


@click.command("rate")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--rater", "rater_name", required=True, metavar="NAME",
              help="emonet or hsemotion (geometric needs a neutral face: builds only).")
@click.option("--weights", type=click.Path(dir_okay=False, path_type=Path),
              help="Use this weights file instead of the installed registry copy.")
@click.option("--framing", type=click.Choice(["detect", "ffhq", "full"]), default="detect",
              show_default=True,
              help="detect: find the face (largest one); ffhq: images are FFHQ-aligned "
                   "frames (emostyle output); full: each image is already a face crop.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
              help="Write the ratings to this TSV file (default, or -: print the TSV on "
                   "standard output).")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True,
              help="Faces rated per network call.")
@quiet_option
@click.pass_context
def rate_command(ctx, paths, rater_name, weights, framing, output, batch_size):
    """Rate the faces in PATHS (image files, folders of images, build folders).

    Writes one row per image: file, rater, framing, valence, arousal, the predicted
    category and its probabilities (hsemotion), the detected face box and score
    (--framing detect) and a sharpness measure. Every image is checked before any
    is rated: one unreadable image or image without a face stops the command, and
    nothing is written. Model ratings are not human norms.
    """
    from stimgen.build_folder import table_bytes
    from stimgen.raters.images import (collect_warnings, image_rater, rate_images,
                                       summarize_ratings)
    from stimgen.storage import atomic_write_bytes

    if output is not None and str(output) == "-":       # the usual name of standard output
        output = None
    if output is not None and output.is_dir():
        raise click.BadParameter(f"{output} is a folder; give a file name such as ratings.tsv",
                                 param_hint="-o/--output")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rater = image_rater(rater_name, weights)
        table = rate_images(paths, rater, framing=framing, batch_size=batch_size)
    for message in collect_warnings(caught):
        click.secho(f"warning: {message}", fg="yellow", err=True)
    data = table_bytes(table, "\t")
    if output is None:
        click.echo(data.decode("utf-8"), nl=False)
        for line in summarize_ratings(table):
            if not is_quiet(ctx):
                click.echo(line, err=True)
        return
    atomic_write_bytes(output, data)
    for line in summarize_ratings(table):
        say(ctx, line)
    click.echo(f"wrote {output}")
