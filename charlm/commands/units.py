"""``charlm units``: what individual units do: gate saturation, and correlation with text features."""

from __future__ import annotations

import json

import click

from charlm.errors import CharlmError


@click.command("units")
@click.argument("model", type=click.Path())
@click.option("--saturation", "what", flag_value="saturation",
              help="Each unit's fraction of tokens with each gate below 0.1 or above 0.9 (SimpleRNN: |h| > 0.9).")
@click.option("--features", "what", flag_value="features",
              help="Each unit's correlation with features of the text (position in word and line, quotes, "
                   "brackets, word in sentence) and with the columns of --feature-file.")
@click.option("--file", "files", multiple=True, type=click.Path(),
              help="Text to read (repeatable) [default: the held-out end of the bundled corpus].")
@click.option("--text", default=None, help="Read this text instead of a file.")
@click.option("--max-tokens", type=click.IntRange(min=1), default=None, help="Read only the text's first N tokens.")
@click.option("--feature-file", type=click.Path(), default=None,
              help="--features: a TSV with a header and one row per token, each column a feature of your own.")
@click.option("--values", "value_names", default="h", show_default=True,
              help="--features: the values to correlate, comma-separated (h; an LSTM's c, i, f, g, o; a GRU's z, r, g).")
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True,
              help="--features: how many units to list per feature.")
@click.option("--encoding-errors", type=click.Choice(["strict", "replace"]), default="strict", show_default=True,
              help="Bytes that are not UTF-8: stop with an error, or read them as U+FFFD.")
@click.option("--json", "as_json", is_flag=True, help="Print every figure as one JSON object.")
@click.option("--plot", type=click.Path(), default=None, help="Draw the figures to this PNG.")
def command(model, what, files, text, max_tokens, feature_file, value_names, top, encoding_errors, as_json, plot):
    """Measure what the units of MODEL do over a text.

    \b
    --saturation: per layer and gate, each unit's fraction of tokens at which
      the gate is left-saturated (< 0.1) or right-saturated (> 0.9), as in
      Karpathy et al. (2015): LSTM i, f, o; GRU z, r; SimpleRNN h (|h| > 0.9).
    --features: each unit's Pearson correlation with per-token features of the
      text and the units that track each best.

    The text is read as `charlm eval` reads it, one window after another with
    the state carried across, so a long text costs no more memory than a short one.
    """
    from charlm.inspect.features import feature_correlations, read_feature_file
    from charlm.inspect.plot import check_png, plot_features, plot_saturation
    from charlm.inspect.saturation import saturation
    from charlm.inspect.text import read_text
    from charlm.nn.lm import load

    if what is None:
        raise CharlmError("say what to measure: --saturation or --features")
    if plot:
        check_png(plot)
    lm = load(model)
    source = read_text(lm, files, text, encoding_errors, max_tokens)
    if what == "saturation":
        result = saturation(lm, source.text)
    else:
        extra = read_feature_file(feature_file, source.tokens) if feature_file else None
        names = [name.strip() for name in value_names.split(",") if name.strip()]
        result = feature_correlations(lm, source.text, names, extra, top)
    result = {"model": str(model), "text": source.source, "unknown": source.unknown, **result}
    if plot:
        (plot_saturation if what == "saturation" else plot_features)(result, plot)
    if as_json:
        click.echo(json.dumps(result))
    else:
        click.echo(_saturation_table(result) if what == "saturation" else _feature_table(result))


def _saturation_table(result: dict) -> str:
    thresholds = result["thresholds"]
    lines = [f"{result['cell'].upper()} saturation over {result['tokens']:,} tokens of {result['text']} "
             f"(left < {thresholds['left']:g}, right > {thresholds['right']:g})",
             f"{'layer':>5} {'gate':<5} {'median left':>11} {'median right':>12} {'units mostly left':>17} "
             f"{'units mostly right':>18}"]
    for layer, per_gate in enumerate(result["layers"], 1):
        for gate, entry in per_gate.items():
            mostly_left = sum(v > 0.5 for v in entry["left"])
            mostly_right = sum(v > 0.5 for v in entry["right"])
            lines.append(f"{layer:>5} {gate:<5} {entry['median_left']:>11.3f} {entry['median_right']:>12.3f} "
                         f"{mostly_left:>17} {mostly_right:>18}")
    return "\n".join(lines)


def _feature_table(result: dict) -> str:
    lines = [f"unit correlations with text features over {result['tokens']:,} tokens of {result['text']} "
             "(layer:unit value r)"]
    for feature in result["features"]:
        best = result["by_feature"][feature]["top"][:5]
        shown = ", ".join(f"{b['layer']}:{b['unit']} {b['value']} {b['r']:+.3f}" for b in best) or "(the feature does not vary)"
        lines.append(f"  {feature:<20} {shown}")
    return "\n".join(lines)
