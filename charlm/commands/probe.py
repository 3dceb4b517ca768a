"""``charlm probe``: can the subject's number be read from the model's states, and does moving
the state along a probe's direction change its agreement?"""

from __future__ import annotations

import json

import click

from charlm.agreement.formats import FORMATS
from charlm.errors import CharlmError


@click.command("probe")
@click.argument("model", type=click.Path())
@click.argument("suites", nargs=-1, required=True, type=click.Path())
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="auto", show_default=True,
              help="The suites' format, as for charlm agree.")
@click.option("--values", "value_names", default=None,
              help="The values to probe, comma-separated [default: all: h; an LSTM's c, i, f, g, o; a GRU's "
                   "z, r, g; a SimpleRNN's a].")
@click.option("--l2", type=click.FloatRange(min=0, min_open=True), default=0.01, show_default=True,
              help="The probes' L2 penalty, on standardised features.")
@click.option("--test-fraction", type=click.FloatRange(0.05, 0.95), default=0.3, show_default=True,
              help="The share of items, by whole subject lemmas, held out to test the probes.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the split, the control task and "
                                                                     "the random directions.")
@click.option("--intervene", is_flag=True,
              help="Also move each layer's state along its probe's direction and rescore the held-out items.")
@click.option("--alpha", "alphas", default="0.1,0.25,0.5", show_default=True,
              help="--intervene: the pushes' sizes, comma-separated, as fractions of the state's mean norm.")
@click.option("--random-directions", type=click.IntRange(min=1), default=2, show_default=True,
              help="--intervene: random directions compared with each probe's.")
@click.option("--layer", type=click.IntRange(min=1), default=None,
              help="--intervene: only this layer (from 1) [default: every layer].")
@click.option("--file", "files", multiple=True, type=click.Path(),
              help="--intervene: held-out text for the cost in bits per character (repeatable) "
                   "[default: the held-out end of the bundled corpus].")
@click.option("--max-tokens", type=click.IntRange(min=1), default=20000, show_default=True,
              help="--intervene: read only the text's first N tokens.")
@click.option("--json", "as_json", is_flag=True, help="Print every figure as one JSON object.")
@click.option("--plot", type=click.Path(), default=None,
              help="Draw probe accuracy and selectivity against position (and the intervention) to this PNG.")
def command(model, suites, fmt, value_names, l2, test_fraction, seed, intervene, alphas, random_directions, layer,
            files, max_tokens, as_json, plot):
    """Decode the subject's number from MODEL's states on agreement SUITES.

    \b
    A diagnostic classifier (Giulianelli et al. 2018: L2-regularised logistic
    regression) is trained for each position, layer and value (h, c, each
    gate) to tell a singular subject from a plural one. Positions are words,
    a word's last token standing for it: before the subject's head noun, the
    noun, the words between it and the verb (as offsets, or in four bins by
    relative place where their number varies), and the word before the verb.
    Items are read as charlm agree reads them. Train and test items are split
    by the subject's lemma, so no noun is on both sides.

    \b
    Each accuracy (95% Wilson interval) stands beside the majority baseline
    and a control task (Hewitt & Liang 2019: a random label per lemma, which
    only memorising lemmas can learn; tested on held-out items of the lemmas
    trained on); selectivity = accuracy - control accuracy. Accuracies are
    also given for the items the model gets right and those it gets wrong.

    \b
    The suites need prefix items with the subject's number (a subj_number
    column, or verb forms that show it: is/are, was/were, has/have, -s) and,
    for positions other than the word before the verb, a subject_index column.

    \b
    --intervene: per layer, a probe trained on every word from the subject to
    the verb moves the state (h, and an LSTM's c) after the subject, or after
    every word up to the verb, towards the subject's number by --alpha times
    the state's mean norm; agreement on the held-out items is rescored against
    random directions, and the cost is the bits per character the same pushes
    add on held-out text.
    """
    from charlm.agreement.formats import load as load_suites
    from charlm.inspect.plot import check_png
    from charlm.inspect.probe import probe_suite, read_items, split_by_lemma
    from charlm.nn.kernels import TRACED
    from charlm.nn.lm import load

    alphas = _alphas(alphas)
    if plot:
        check_png(plot)
    lm = load(model)
    if layer is not None and layer > lm.config.layers:
        raise CharlmError(f"--layer {layer} does not exist: the model has {lm.config.layers} layer(s), 1 to "
                          f"{lm.config.layers}")
    names = None if value_names is None else [n.strip() for n in value_names.split(",") if n.strip()]
    loaded = load_suites(suites, fmt, "prefix")
    if not loaded.items:
        reasons = "; ".join(f"{s.source}: {s.reason}" for s in loaded.skips[:3])
        kind = " (SyntaxGym suites have no subject to probe)" if loaded.suites else ""
        raise CharlmError(f"no agreement items to probe in {', '.join(map(str, suites))}{kind}"
                          f"{': ' + reasons if reasons else ''}")
    # The intervention moves h (and an LSTM's c) whatever is probed.
    states = [n for n in ("h", "c") if n in TRACED[lm.config.cell]] if intervene else []
    reading = read_items(lm, loaded.items, None if names is None else list(dict.fromkeys([*names, *states])))
    test = split_by_lemma([a.lemma for a in reading.aligned], reading.labels, test_fraction, seed)
    result = {"model": str(model), "suites": loaded.files, "cell": lm.config.cell, "layers": lm.config.layers,
              "units": lm.config.hidden, **probe_suite(reading, test, l2, test_fraction, seed, names)}
    if intervene:
        result["intervention"] = _intervene(lm, reading, test, l2, alphas, random_directions, layer, files,
                                            max_tokens, seed)
    if plot:
        from charlm.inspect.plot import plot_probe

        plot_probe(result, plot)
    click.echo(json.dumps(result) if as_json else _table(result))


def _alphas(text: str) -> list:
    try:
        alphas = [float(a) for a in text.split(",") if a.strip()]
    except ValueError:
        alphas = []
    if not alphas or any(not a >= 0 or a == float("inf") for a in alphas):
        raise CharlmError(f"--alpha takes non-negative numbers, comma-separated (e.g. 0.1,0.25), not {text!r}")
    return alphas


def _intervene(lm, reading, test, l2, alphas, random_directions, layer, files, max_tokens, seed) -> dict:
    from charlm.inspect.intervene import intervene
    from charlm.inspect.text import read_text

    if not any(reading.aligned[k].steps for k in range(len(reading.aligned)) if test[k]):
        raise CharlmError("--intervene needs items that give the subject's position (a subject_index column)")
    source = read_text(lm, files, None, "strict", max_tokens)
    result = intervene(lm, reading, test, l2, alphas, random_directions,
                       None if layer is None else [layer - 1], source.text, seed)
    return {"text": source.source, **result}


def _pct(value) -> str:
    return "  -  " if value is None else f"{100 * value:5.1f}%"


def _table(result: dict) -> str:
    split = result["split"]
    lines = [f"Probing a {result['layers']}x{result['units']} {result['cell'].upper()} for the subject's number: "
             f"{result['items']:,} items ({split['train_items']:,} to train on {split['train_lemmas']} lemmas, "
             f"{split['test_items']:,} to test on {split['test_lemmas']} others), L2 {result['l2']:g}",
             f"the model's agreement on them: {_pct(result['agreement']['all']['accuracy']).strip()}"]
    if result["skipped"]:
        lines.append("skipped: " + "; ".join(f"{n} {r}" for r, n in result["skipped_reasons"].items()))
    if result["without_subject_index"]:
        lines.append(f"{result['without_subject_index']:,} items give no subject_index: they are probed before the "
                     f"verb only, each its own lemma")
    for position in result["positions"]:
        majority = position["majority"]
        lines += ["", f"{position['label']} (test n={position['n_test']:,}; majority {majority['label']} "
                      f"{_pct(majority['accuracy']).strip()})",
                  f"  {'layer':>5} {'value':<5} {'accuracy':>8} {'95% CI':>15} {'control':>8} {'select.':>7} "
                  f"{'right':>7} {'wrong':>7}"]
        for entry in result["probes"]:
            if entry["position"] == position["name"]:
                low, high = entry["ci95"]
                selectivity = "" if entry["selectivity"] is None else f"{100 * entry['selectivity']:+.1f}"
                lines.append(f"  {entry['layer']:>5} {entry['value']:<5} {_pct(entry['accuracy']):>8} "
                             f"[{100 * low:5.1f}, {100 * high:5.1f}] {_pct(entry['control']['accuracy']):>8} "
                             f"{selectivity:>7} {_pct(entry['right']['accuracy']):>7} "
                             f"{_pct(entry['wrong']['accuracy']):>7}")
    if "intervention" in result:
        lines += ["", *_intervention_table(result["intervention"])]
    return "\n".join(lines)


def _intervention_table(result: dict) -> list:
    lines = [f"Intervention on {result['items']:,} held-out items (pushes: alpha x the state's mean norm; random: "
             f"mean of {result['random_directions']} directions; cost: bits per character added on "
             f"{result['text']})"]
    for layer in result["layers"]:
        probes = ", ".join(f"{v} {_pct(a).strip()}" for v, a in layer["probe_accuracy"].items())
        lines += [f"layer {layer['layer']} (pooled probe accuracy {probes}): agreement "
                  f"{_pct(layer['baseline']['accuracy']).strip()} without pushes",
                  f"  {'where':<11} {'alpha':>5} {'probe':>15} {'random':>15} {'cost probe':>11} {'cost random':>11}"]
        entries = {(e["where"], e["alpha"], e["direction"]): e for e in layer["conditions"]}
        for where, alpha in dict.fromkeys((e["where"], e["alpha"]) for e in layer["conditions"]):
            cells, costs = [], []
            for kind in ("probe", "random"):
                e = entries[(where, alpha, kind)]
                cells.append(f"{_pct(e['accuracy'])} ({100 * e['change']:+.1f})")
                costs.append("" if e.get("cost_bits_per_char") is None else f"{e['cost_bits_per_char']:+.4f}")
            lines.append(f"  {where:<11} {alpha:>5g} {cells[0]:>15} {cells[1]:>15} {costs[0]:>11} {costs[1]:>11}")
    return lines
