"""``charlm plot``: training and validation loss of one or more runs, as an image."""

from __future__ import annotations

import click


@click.command("plot")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path())
@click.option("--out", "-o", type=click.Path(), default=None,
              help="Image file (.png, .svg or .pdf) [default: RUN_DIR/curves.png].")
@click.option("--title", default=None, help="Figure title [default: the run directory's name].")
def command(run_dirs, out, title):
    """Plot training and validation loss (and agreement accuracy when recorded)
    against steps and tokens seen, from each RUN_DIR's history.json and
    steps.csv. Several run directories share one figure, one colour each."""
    from charlm.plotting import plot_runs

    path = plot_runs(list(run_dirs), out, title)
    click.echo(f"plot written to {path}")
