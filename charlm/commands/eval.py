"""``charlm eval``: a model's loss, perplexity and bits per character/byte on a text."""

from __future__ import annotations

import json

import click

from charlm.config import StreamSettings

_S = StreamSettings()


def stream_options(function):
    """The batching options shared by ``charlm eval`` and ``charlm score``."""
    options = [
        click.option("--streams", type=int, default=_S.streams, show_default=True,
                     help="Cut the text into at most this many pieces read side by side (1: one serial pass)."),
        click.option("--window", type=int, default=_S.window, show_default=True,
                     help="Tokens per forward pass (lowered for large vocabularies to bound memory)."),
        click.option("--warmup", type=int, default=_S.warmup, show_default=True,
                     help="Tokens each piece but the first reads, unscored, before its own, so that no "
                          "scored token starts from a cold state."),
        click.option("--encoding-errors", type=click.Choice(["strict", "replace"]), default="strict",
                     show_default=True, help="Bytes that are not UTF-8: stop with an error, or read them as U+FFFD."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


@click.command("eval")
@click.argument("model", type=click.Path())
@click.argument("files", nargs=-1, required=True, type=click.Path())
@stream_options
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
def command(model, files, streams, window, warmup, encoding_errors, as_json):
    """Evaluate MODEL on FILES (joined with a line break between files, like training).

    The text is read as one continuous stream, the recurrent state carried across
    windows (batched as parallel pieces, each but the first warmed up on the
    --warmup tokens before it). The first token is predicted after a line break,
    the context every line of a training corpus starts from. Reports the loss in
    nats per token, perplexity, bits per character and bits per UTF-8 byte (total
    bits over the text's characters or bytes), the token, character, byte and word
    counts, per-word perplexity and the out-of-vocabulary rate.
    """
    from charlm.data.corpus import read_corpus
    from charlm.evaluate import evaluate
    from charlm.nn.lm import load

    settings = StreamSettings(streams, window, warmup)
    corpus = read_corpus(files, encoding_errors)
    lm = load(model)
    result = {"model": str(model), "files": list(corpus.files), **evaluate(lm, corpus.text, settings)}
    if as_json:
        click.echo(json.dumps(result))
        return
    r = result
    click.echo(f"{len(r['files'])} file(s), {r['tokens']:,} {r['tokenizer']} tokens, {r['chars']:,} characters, "
               f"{r['bytes']:,} UTF-8 bytes, {r['words']:,} words")
    click.echo(f"loss           {r['loss']:.4f} nats/token")
    click.echo(f"perplexity     {r['perplexity']:.4f} per token")
    click.echo(f"bits/char      {_fmt(r['bits_per_char'])}")
    click.echo(f"bits/byte      {_fmt(r['bits_per_byte'])}")
    click.echo(f"word ppl       {_fmt(r['word_perplexity'], 2)} (total loss per word)")
    click.echo(f"unknown        {r['unknown']:,} tokens ({100 * r['oov_rate']:.2f}%)")


def _fmt(value, digits=4):
    return "n/a" if value is None else f"{value:.{digits}f}"
