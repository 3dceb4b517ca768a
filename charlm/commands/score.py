"""``charlm score``: the surprisal of every token of a text, one row per token."""

from __future__ import annotations

import json
import math

import click
import numpy as np

from charlm.commands.eval import stream_options
from charlm.errors import CharlmError


@click.command("score")
@click.argument("model", type=click.Path())
@click.argument("file", required=False, type=click.Path())
@click.option("--text", help="Score this text instead of a FILE.")
@stream_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with a list of tokens.")
def command(model, file, text, streams, window, warmup, encoding_errors, as_json):
    """Print the surprisal, -log2 p, of every token of FILE (or --text) under MODEL.

    One row per token: its position, the token (a character, a byte or a word;
    line breaks, tabs and backslashes escaped as \\n, \\t, \\\\) and its surprisal in
    bits given everything before it. The text is read as one stream after a line
    break, like `charlm eval`, so the first token's surprisal is that of a
    line-initial token (empty where the vocabulary has no line break).
    """
    from charlm.config import StreamSettings
    from charlm.data.corpus import read_corpus
    from charlm.evaluate import text_logprobs, token_label
    from charlm.nn.lm import load

    if (file is None) == (text is None):
        raise CharlmError("give either a FILE or --text, not both or neither")
    settings = StreamSettings(streams, window, warmup)
    if file is not None:
        text = read_corpus([file], encoding_errors).text
    if not text:
        raise CharlmError("the text to score is empty")
    lm = load(model)
    ids, logp = text_logprobs(lm, text, settings)
    bits = -logp / math.log(2)
    labels = [token_label(lm.tokenizer, i) for i in ids]
    if as_json:
        rows = [{"index": k, "token": label, "surprisal": None if math.isnan(b) else float(b)}
                for k, (label, b) in enumerate(zip(labels, bits))]
        total = float(bits[~np.isnan(bits)].sum())
        click.echo(json.dumps({"model": str(model), "tokenizer": lm.tokenizer.kind, "unit": "bits",
                               "total_surprisal": total, "tokens": rows}))
        return
    lines = ["index\ttoken\tsurprisal_bits"]
    lines += [f"{k}\t{label}\t{'' if math.isnan(b) else f'{b:.4f}'}" for k, (label, b) in enumerate(zip(labels, bits))]
    click.echo("\n".join(lines))

