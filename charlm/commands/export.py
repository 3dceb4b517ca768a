"""``charlm export``: a TensorFlow SavedModel that generates text, servable without charlm."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("export")
@click.argument("model", type=click.Path())
@click.option("--saved-model", "saved_model", type=click.Path(), required=True,
              help="Directory to write the SavedModel to (must not exist, or be empty, unless --force).")
@click.option("--force", is_flag=True, help="Replace an existing --saved-model directory.")
@click.option("--max-length", type=click.IntRange(min=1), default=10_000, show_default=True,
              help="Largest 'length' a request may ask for (longer requests are cut to it).")
def command(model, saved_model, force, max_length):
    """Export MODEL (a charlm .keras file) as a TensorFlow SavedModel whose
    'serving_default' signature takes prompts (string [batch]), length (int32),
    temperature (float32; 0: the most likely token) and seed (int64), and returns
    'generated' (the continuations) and 'text' (prompt + continuation).
    Loading it needs only TensorFlow: tf.saved_model.load(DIR), or TF Serving."""
    from charlm.export import check_target, export_saved_model
    from charlm.nn.lm import load

    check_target(Path(saved_model), force)  # before the slow part: loading the model
    path = export_saved_model(load(model), saved_model, force=force, max_length=max_length)
    click.echo(f"SavedModel written to {path} (signature 'serving_default')")
