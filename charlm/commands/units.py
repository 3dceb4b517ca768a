"""``charlm units``: what individual units do: gate saturation, correlation with text features, and
what ablating them does to agreement."""

from __future__ import annotations

import json

import click

from charlm.agreement.formats import FORMATS
from charlm.errors import CharlmError


@click.command("units")
@click.argument("model", type=click.Path())
@click.argument("suites", nargs=-1, type=click.Path())
@click.option("--saturation", "what", flag_value="saturation",
              help="Each unit's fraction of tokens with each gate below 0.1 or above 0.9 (SimpleRNN: |h| > 0.9).")
@click.option("--features", "what", flag_value="features",
              help="Each unit's correlation with features of the text (position in word and line, quotes, "
                   "brackets, word in sentence) and with the columns of --feature-file.")
@click.option("--ablate", "what", flag_value="ablate",
              help="Ablate units one at a time and rescore the agreement SUITE(s): each unit's accuracy change, "
                   "ranked, against random units; cumulative and whole-layer ablation; number traces.")
@click.option("--file", "files", multiple=True, type=click.Path(),
              help="Text to read (repeatable) [default: the held-out end of the bundled corpus].")
@click.option("--text", default=None, help="Read this text instead of a file.")
@click.option("--max-tokens", type=click.IntRange(min=1), default=None, help="Read only the text's first N tokens.")
@click.option("--feature-file", type=click.Path(), default=None,
              help="--features: a TSV with a header and one row per token, each column a feature of your own.")
@click.option("--values", "value_names", default="h", show_default=True,
              help="--features: the values to correlate, comma-separated (h; an LSTM's c, i, f, g, o; a GRU's z, r, g).")
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True,
              help="--features: how many units to list per feature; --ablate: how many ranked units to list.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="auto", show_default=True,
              help="--ablate: the SUITE's format, as `charlm agree` reads it.")
@click.option("--unit", "unit_names", multiple=True,
              help="--ablate: ablate just this unit, LAYER:UNIT (layer from 1, unit from 0; repeatable).")
@click.option("--full", is_flag=True, help="--ablate: ablate every unit, however long it takes.")
@click.option("--top-k", type=click.IntRange(min=1), default=None,
              help="--ablate: ablate the K units a gradient attribution ranks first, whatever a full sweep "
                   "would cost; also the longest cumulative curve [default: 64; auto chooses].")
@click.option("--random-units", type=click.IntRange(min=0), default=32, show_default=True,
              help="--ablate: random units ablated as the null, unless every unit is.")
@click.option("--random-sets", type=click.IntRange(min=0), default=3, show_default=True,
              help="--ablate: random sets of k units beside each point of the cumulative curve.")
@click.option("--rank-by", type=click.Choice(["worst", "overall"]), default="worst", show_default=True,
              help="--ablate: rank units by the accuracy change on their worst condition/number/attractors "
                   "group, or on all items.")
@click.option("--traces", type=click.IntRange(min=0), default=3, show_default=True,
              help="--ablate: number traces (c and gates per word, SS/SP/PS/PP) for this many top units.")
@click.option("--trace-condition", default=None, help="--ablate: the condition the number traces average.")
@click.option("--seed", type=int, default=0, show_default=True, help="--ablate: seed of the random units.")
@click.option("--encoding-errors", type=click.Choice(["strict", "replace"]), default="strict", show_default=True,
              help="Bytes that are not UTF-8: stop with an error, or read them as U+FFFD.")
@click.option("--json", "as_json", is_flag=True, help="Print every figure as one JSON object.")
@click.option("--plot", type=click.Path(), default=None, help="Draw the figures to this PNG.")
def command(model, suites, what, files, text, max_tokens, feature_file, value_names, top, fmt, unit_names, full,
            top_k, random_units, random_sets, rank_by, traces, trace_condition, seed, encoding_errors, as_json, plot):
    """Measure what the units of MODEL do over a text, or (--ablate) on agreement SUITES.

    \b
    --saturation: per layer and gate, each unit's fraction of tokens at which
      the gate is left-saturated (< 0.1) or right-saturated (> 0.9), as in
      Karpathy et al. (2015): LSTM i, f, o; GRU z, r; SimpleRNN h (|h| > 0.9).
    --features: each unit's Pearson correlation with per-token features of the
      text and the units that track each best.
    --ablate: each unit's hidden state removed from every reader (its rows of
      the weights that read it zeroed), the SUITES rescored: each unit's
      accuracy change per condition, subject number and attractor count,
      ranked, against random units; the first k ranked units and whole layers
      ablated together; the top units' cell state and gates per word averaged
      over singular/plural subject x singular/plural attractor. Where ablating
      every unit would take over 10 minutes, units are first ranked by a
      gradient attribution and the top 64 ablated (--full, --top-k choose).

    The text is read as `charlm eval` reads it, one window after another with
    the state carried across, so a long text costs no more memory than a short one.
    """
    from charlm.inspect.features import feature_correlations, read_feature_file
    from charlm.inspect.plot import check_png, plot_ablation, plot_features, plot_saturation
    from charlm.inspect.saturation import saturation
    from charlm.inspect.text import read_text
    from charlm.nn.lm import load

    if what is None:
        raise CharlmError("say what to measure: --saturation, --features or --ablate")
    if suites and what != "ablate":
        raise CharlmError(f"agreement suites are read by --ablate only (got {suites[0]})")
    if plot:
        check_png(plot)
    if what == "ablate":
        result = _ablate(model, suites, fmt, unit_names, full, top_k, random_units, random_sets, rank_by, traces,
                         trace_condition, seed, files or text is not None)
        if plot:
            plot_ablation(result, plot)
        click.echo(json.dumps(result) if as_json else _ablation_table(result, top))
        return
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


def _ablate(model, suites, fmt, unit_names, full, top_k, random_units, random_sets, rank_by, traces,
            trace_condition, seed, reads_text) -> dict:
    """The --ablate result: every input checked before the long work starts."""
    from charlm.agreement.formats import load as load_suites
    from charlm.inspect.ablation import parse_unit
    from charlm.inspect.ablation_study import ablation_study
    from charlm.inspect.number_traces import number_traces, trace_layout
    from charlm.nn.lm import load

    if not suites:
        raise CharlmError("--ablate needs an agreement SUITE after the model "
                          "(e.g. corpora/agreement/data/agreement.tsv)")
    if reads_text:
        raise CharlmError("--ablate reads the agreement SUITE, not --file or --text")
    if full and top_k is not None:
        raise CharlmError("give either --full or --top-k, not both")
    if unit_names and (full or top_k is not None):
        raise CharlmError("--unit ablates just the units given; leave out --full and --top-k")
    lm = load(model)
    units = [parse_unit(name, lm.config.layers, lm.config.hidden) for name in unit_names]
    loaded = load_suites(suites, fmt)
    if not loaded.items:
        why = "SyntaxGym suites are not read by --ablate" if loaded.suites else "no agreement items found"
        raise CharlmError(f"nothing to ablate units on in {', '.join(map(str, suites))}: {why}")
    layout, note = None, None
    if traces:
        try:
            layout = trace_layout(loaded.items, trace_condition)
        except CharlmError as error:
            if trace_condition is not None:
                raise
            note = str(error)
    mode = "full" if full else "top-k" if top_k is not None else "auto"
    result = ablation_study(lm, loaded.items, loaded.skips, units=units, mode=mode, top_k=top_k or 64,
                            random_units=random_units, random_sets=random_sets, rank_by=rank_by, seed=seed,
                            log=lambda line: click.echo(f"charlm: {line}", err=True))
    result = {"model": str(model), "suites": loaded.files, **result}
    if layout is not None:
        result["traces"] = number_traces(lm, layout, [(u["layer"] - 1, u["unit"]) for u in result["units"][:traces]])
    elif note:
        result["traces_note"] = note
    return result


def _ablation_table(result: dict, top: int) -> str:
    method, base = result["method"], result["baseline"]
    lines = [f"{result['cell'].upper()} {result['layers']}x{result['hidden']} on {result['n']:,} agreement items "
             f"({result['skipped']} skipped): intact {_pct(base['accuracy'])}",
             f"method: {method['kind']}: {method['reason']} ({method['seconds_per_pass']:.1f} s a pass)"]
    if "attribution" in result and result["attribution"]["spearman"] is not None:
        lines.append(f"  attribution against the ablations' effects: Spearman {result['attribution']['spearman']:+.2f}")
    for layer in result["layers_ablated"]:
        lines.append(f"all of layer {layer['layer']} ablated: {_pct(layer['accuracy'])} ({100 * layer['change']:+.1f})")
    null = result["null"]
    if null["effects"]:
        lines.append(f"null: {len(null['effects'])} {null['kind']}, effect mean {100 * null['mean']:+.2f}, "
                     f"sd {100 * null['std']:.2f} points")
    what = "worst group" if result["rank_by"] == "worst" else "all items"
    lines.append(f"ranked by effect, the accuracy change (points) on the unit's {what}; z and the share of the "
                 f"null as harmful against the null")
    lines.append(f"{'rank':>4} {'unit':>7} {'overall':>8} {'effect':>7} {'z':>6} {'null as bad':>11}  worst group")
    for rank, unit in enumerate(result["units"][:top], 1):
        z = "" if unit["z"] is None else f"{unit['z']:+.1f}"
        share = "" if unit["as_harmful"] is None else f"{100 * unit['as_harmful']:.0f}%"
        lines.append(f"{rank:>4} {unit['layer']:>3}:{unit['unit']:<3} {100 * unit['change']:>+8.1f} "
                     f"{100 * unit['effect']:>+7.1f} {z:>6} {share:>11}  {unit['worst_group']}")
    cumulative = result["cumulative"]
    if cumulative["k"]:
        points = [f"{k}: {_pct(t['accuracy'])}" + (f" (random {_pct(sum(r) / len(r))})" if r else "")
                  for k, t, r in zip(cumulative["k"], cumulative["top"], cumulative["random"])]
        lines.append("first k ranked ablated together: " + ", ".join(points))
    if "traces" in result:
        traces = result["traces"]
        lines.append(f"number traces: {traces['condition']}, " + ", ".join(f"{g} {n}" for g, n in traces["n"].items())
                     + " items")
    elif "traces_note" in result:
        lines.append(f"number traces omitted: {result['traces_note']}")
    return "\n".join(lines)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


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
