"""``charlm gradients``: the vanishing-gradient curve, measured."""

from __future__ import annotations

import json
import os

import click

from charlm.errors import CharlmError

SHOWN_LAGS = (0, 1, 10, 50)  # and the largest lag


@click.command("gradients")
@click.argument("models", nargs=-1, required=True, type=click.Path())
@click.option("--file", "files", multiple=True, type=click.Path(),
              help="Text to read (repeatable) [default: the held-out end of the bundled corpus].")
@click.option("--text", default=None, help="Read this text instead of a file.")
@click.option("--max-tokens", type=click.IntRange(min=1), default=None,
              help="Read only the text's first N tokens (each model's own tokens).")
@click.option("--max-lag", type=click.IntRange(min=0), default=200, show_default=True,
              help="The largest lag k measured.")
@click.option("--positions", type=click.IntRange(min=1), default=64, show_default=True,
              help="How many positions t of the text to average over (all of them if fewer).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random choice of positions.")
@click.option("--encoding-errors", type=click.Choice(["strict", "replace"]), default="strict", show_default=True,
              help="Bytes that are not UTF-8: stop with an error, or read them as U+FFFD.")
@click.option("--json", "as_json", is_flag=True, help="Print every figure as one JSON object.")
@click.option("--plot", type=click.Path(), default=None,
              help="Draw the curves to this PNG (log scale, every model on one figure).")
def command(models, files, text, max_tokens, max_lag, positions, seed, encoding_errors, as_json, plot):
    """Measure how fast the gradient of each MODEL's prediction fades with distance.

    For positions t drawn at random from the text, the norm of the gradient of
    log p(x_t | x_<t) with respect to each layer's hidden state h (and an LSTM's
    cell state c) k tokens back, averaged over the positions, for k = 0 ... --max-lag,
    and the lags at which it has fallen to 1/10 and 1/100 of its value at k = 0.

    \b
    Lag 0 is the state the prediction of x_t is made from: the states after
    reading x_{t-1}. Lag k is the state after reading x_{t-1-k}. The gradient
    is the total derivative through the whole stack (a layer's state reaches the
    prediction through its own next step and through the layers above). A
    position with k or fewer tokens before it (counting the line-break context
    every text is read after) has no lag k: each lag's mean is over the
    positions that reach back that far.

    Several models are measured on the same text, each with its own tokenizer.
    --plot draws every model's curves on one log-scale figure, the lags where
    they fall to 1/10 and 1/100 marked.
    """
    from charlm.inspect.gradients import gradient_curve
    from charlm.inspect.plot import check_png, plot_gradients
    from charlm.inspect.text import read_text
    from charlm.nn.lm import load

    if plot:
        plot = check_png(plot)
        if plot.is_dir():
            raise CharlmError(f"--plot: {plot} is a directory")
        if not os.access(plot.parent, os.W_OK) or (plot.exists() and not os.access(plot, os.W_OK)):
            raise CharlmError(f"--plot: cannot write {plot}")
    lms = [load(model) for model in models]
    results, source = [], None
    for model, lm in zip(models, lms):
        source = read_text(lm, files, text, encoding_errors, max_tokens)
        result = gradient_curve(lm, source.text, max_lag=max_lag, positions=positions, seed=seed)
        results.append({"model": str(model), "unknown": source.unknown, **result})
    if plot:
        try:
            plot_gradients(results, plot)
        except OSError as error:
            raise CharlmError(f"--plot: cannot write {plot} ({error.strerror or error})") from None
    if as_json:
        click.echo(json.dumps({"text": source.source, "max_lag": max_lag, "seed": seed, "models": results}))
    else:
        click.echo(_table(results, source.source))


def _table(results: list, source: str) -> str:
    lines = [f"Gradient of log p(x_t) with respect to the state k tokens back, mean norm over positions t of {source}",
             "(k = 0 is the state the prediction of x_t is made from, after reading x_{t-1})"]
    for result in results:
        lags = result["lags"]
        shown = sorted({k for k in SHOWN_LAGS if k <= lags} | {lags})
        count = result["curves"][0]["count"]
        lines += ["", (f"{result['model']}: {result['cell'].upper()} {result['layers']}x{result['hidden']}, "
                       f"{len(result['positions'])} positions of {result['tokens']:,} tokens")]
        if lags < result["max_lag"]:
            lines.append(f"  (the text reaches back {lags} tokens at most: lags up to {lags})")
        if count[-1] < count[0]:
            lines.append(f"  (lag {lags} is reached by {count[-1]} of the {count[0]} positions; "
                         "the others are closer to the text's start)")
        lines.append(f"  {'layer':>5} {'state':<5} " + " ".join(f"{f'k={k}':>9}" for k in shown)
                     + f" {'1/10 at':>8} {'1/100 at':>8}")
        for curve in result["curves"]:
            norms = " ".join(f"{curve['norm'][k]:>9.3g}" for k in shown)
            falls = " ".join(f"{'> ' + str(lags) if curve[key] is None else curve[key]:>8}"
                             for key in ("lag_10", "lag_100"))
            lines.append(f"  {curve['layer']:>5} {curve['state']:<5} {norms} {falls}")
    return "\n".join(lines)
