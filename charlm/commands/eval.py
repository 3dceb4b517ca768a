"""``charlm eval``: a model's loss, perplexity and bits per character/byte on a text."""

from __future__ import annotations

import json

import click

from charlm.config import DynamicEvalConfig, StreamSettings, flag

_S = StreamSettings()
_D = DynamicEvalConfig()
# The options that only dynamic evaluation reads.
_DYNAMIC_OPTIONS = ("dynamic_lr", "dynamic_decay", "segment", "train_text", "stat_batches")


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
@click.option("--dynamic", is_flag=True,
              help="Also report dynamic evaluation: the model adapts to the text as it reads it "
                   "(Krause et al. 2018), a figure of its own beside the static one.")
@click.option("--dynamic-lr", type=float, default=_D.dynamic_lr, show_default=True,
              help="Dynamic evaluation's learning rate: each step is this times the gradient over "
                   "the gradient's root mean square on training text.")
@click.option("--dynamic-decay", type=float, default=_D.dynamic_decay, show_default=True,
              help="Dynamic evaluation's pull back towards the trained weights at each step (0 to 1).")
@click.option("--segment", type=int, default=_D.segment, show_default=True,
              help="Tokens dynamic evaluation scores before each step.")
@click.option("--train-text", type=click.Path(), multiple=True,
              help="Training text for dynamic evaluation's gradient statistics (repeatable; default: "
                   "the training split of the corpus the model file records).")
@click.option("--stat-batches", type=int, default=_D.stat_batches, show_default=True,
              help="Batches of training text the gradient statistics are gathered on.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
@click.pass_context
def command(ctx, model, files, streams, window, warmup, encoding_errors, dynamic, dynamic_lr, dynamic_decay,
            segment, train_text, stat_batches, as_json):
    """Evaluate MODEL on FILES (joined with a line break between files, like training).

    The text is read as one continuous stream, the recurrent state carried across
    windows (batched as parallel pieces, each but the first warmed up on the
    --warmup tokens before it). The first token is predicted after a line break,
    the context every line of a training corpus starts from. Reports the loss in
    nats per token, perplexity, bits per character and bits per UTF-8 byte (total
    bits over the text's characters or bytes), the token, character, byte and word
    counts, per-word perplexity and the out-of-vocabulary rate.

    With --dynamic, the same figures under dynamic evaluation follow on lines of
    their own (in --json, as the object "dynamic"): the text read again as one stream in
    segments of --segment tokens, each scored and then learnt from, with steps
    scaled by gradient statistics of training text and pulled back towards the
    trained weights. The model file is never changed.
    """
    given = [name for name in _DYNAMIC_OPTIONS
             if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE]
    if given and not dynamic:
        raise click.UsageError(f"{flag(given[0])} applies to dynamic evaluation; add --dynamic")
    dynamic_config = DynamicEvalConfig(dynamic_lr, dynamic_decay, segment, stat_batches) if dynamic else None
    from charlm.data.corpus import read_corpus
    from charlm.evaluate import evaluate
    from charlm.nn.lm import load

    settings = StreamSettings(streams, window, warmup)
    corpus = read_corpus(files, encoding_errors)
    lm = load(model)
    if dynamic:  # read before the static pass, so that a missing training text stops at once
        from charlm.dynamic_eval import dynamic_evaluate, training_text

        train, source = training_text(lm, train_text, encoding_errors)
    result = {"model": str(model), "files": list(corpus.files), **evaluate(lm, corpus.text, settings)}
    if dynamic:
        result["dynamic"] = dynamic_evaluate(lm, corpus.text, train, dynamic_config, source)
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
    if dynamic:
        d = r["dynamic"]
        stats = d["statistics"]
        click.echo(f"dynamic evaluation (lr {d['lr']:g}, decay {d['decay']:g}, segment {d['segment']}; gradient "
                   f"statistics of {stats['batches']} batches of {stats['rows']}x{d['segment']} tokens of "
                   f"{stats['source']}; {d['seconds']:.1f}s):")
        click.echo(f"  loss         {d['loss']:.4f} nats/token ({d['loss'] - r['loss']:+.4f} from static)")
        click.echo(f"  perplexity   {d['perplexity']:.4f} per token")
        click.echo(f"  bits/char    {_fmt(d['bits_per_char'])}")
        click.echo(f"  bits/byte    {_fmt(d['bits_per_byte'])}")
        click.echo(f"  word ppl     {_fmt(d['word_perplexity'], 2)}")


def _fmt(value, digits=4):
    return "n/a" if value is None else f"{value:.{digits}f}"
