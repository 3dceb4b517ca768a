"""``charlm info``: what a model file holds, and how it was trained."""

from __future__ import annotations

import json

import click


@click.command("info")
@click.argument("model", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print the description as one JSON object.")
def command(model, as_json):
    """Describe MODEL (a .keras file written by charlm): cell, layers, sizes and
    parameter counts, tokenizer and vocabulary, the training settings and corpus
    fingerprint, the best validation loss and bits per character, and the
    Keras/TensorFlow versions it was saved with."""
    from charlm.nn.modelinfo import describe, format_description

    description = describe(model)
    click.echo(json.dumps(description, indent=2) if as_json else format_description(description))
