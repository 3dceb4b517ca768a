"""``charlm agree``: does the model prefer the correctly inflected form?"""

from __future__ import annotations

import json
from pathlib import Path

import click

from charlm.agreement.formats import FORMATS, METHODS


@click.command("agree")
@click.argument("model", type=click.Path())
@click.argument("data", nargs=-1, required=True, type=click.Path())
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="auto", show_default=True,
              help="auto: .jsonl is BLiMP; .text/.gold/.eval/.tab (or their stem) the Gulordava layout; "
                   ".csv and .tsv (or other files, by their header) TSV/CSV.")
@click.option("--method", type=click.Choice(METHODS), default="sentence", show_default=True,
              help="For BLiMP pairs that also give a shared prefix: compare whole sentences (BLiMP's "
                   "own measure) or the differing word after the prefix.")
@click.option("--json", "as_json", is_flag=True, help="Print all figures as one JSON object.")
@click.option("--plot", type=click.Path(), help="Draw accuracy with intervals and baselines to this PNG.")
@click.option("--plot-by", type=click.Choice(["auto", "condition", "attractors", "file"]), default="auto",
              show_default=True, help="Groups of the plot (auto: conditions, else attractor counts, else files).")
def command(model, data, fmt, method, as_json, plot, plot_by):
    """Agreement accuracy of MODEL on DATA (files, directories or Gulordava stems).

    \b
    DATA formats:
      TSV or CSV with a header: prefix, correct, wrong [, suffix] or
        sentence_good, sentence_bad; optional condition, n_attractors,
        subj_number (sg/pl), where an empty cell, NA, N/A, NaN, None, null
        or - means unknown (the item is scored, in an "unknown" group).
      BLiMP JSONL: sentence_good, sentence_bad [, one_prefix_*].
      Linzen/Gulordava: STEM.text + STEM.gold + STEM.eval [+ STEM.tab], given
        as any one of them or as STEM.

    An item counts as correct when the model gives the correct version more
    probability. Prefix items compare log p(" " + form + boundary | prefix), the
    boundary being the character after the form (so "is" does not also collect
    the probability of "island"); a word model compares the form's words alone.
    Sentence pairs compare the log-probability of each whole sentence and the
    line break ending it. Ties count as wrong.

    Every item starts from a fresh state primed with the same fixed context, a
    line break: training text is one sentence a line, so the item's first word
    is read as sentence-initial, and no item's score depends on another's.

    Reports accuracy with a 95% Wilson interval, overall and by file, condition,
    attractor count and subject number, beside content-blind baselines on the
    same items: always singular, always plural (where the number is known) and
    shorter form (ties count half). Items that cannot be scored (malformed rows,
    empty or identical forms, forms outside the vocabulary) are counted as
    skipped, with reasons; the exit status is non-zero only when none could be
    scored.
    """
    from charlm.agreement import describe_skips, run_agreement
    from charlm.nn.lm import load

    lm = load(model)
    result = run_agreement(lm, data, fmt, method)
    summary = {"model": str(model), **result.summary}
    if result.skips:
        click.echo(f"charlm agree: skipped {summary['skipped']} items: {describe_skips(result.skips)}", err=True)
    if plot:
        from charlm.agreement.plot import plot_summary

        plot_summary(summary, plot, plot_by)
    if as_json:
        click.echo(json.dumps(summary))
    else:
        click.echo(format_table(summary))


def format_table(summary: dict) -> str:
    """The human-readable report: one line per group, then the overall line."""
    head = f"{'':44} {'n':>6} {'accuracy':>9} {'95% interval':>16}  {'always-sg':>9} {'always-pl':>9} {'shorter':>8}"
    lines = []
    sections = [("file", "by_file"), ("condition", "by_condition"), ("attractors", "by_attractors"),
                ("subject", "by_subj_number")]
    for title, key in sections:
        groups = summary[key]
        # One group says nothing, except a condition's name; one "unknown" group says nothing at all.
        if len(groups) < 2 and not (key == "by_condition" and groups and "unknown" not in groups):
            continue
        lines.append(f"by {title}")
        for name, group in groups.items():
            label = Path(name).stem if key == "by_file" else name
            lines.append(_row(label, group))
        lines.append("")
    lines.append(_row("all", summary))
    partial = [k for k, n in summary["baselines_n"].items() if summary["baselines"][k] is not None and n < summary["n"]]
    if partial:
        lines.append(f"  * always-sg/pl on the {summary['baselines_n'][partial[0]]} items whose number is known")
    if summary["skipped"]:
        lines.append(f"skipped {summary['skipped']} item(s): " + ", ".join(
            f"{n} {reason}" for reason, n in summary["skipped_reasons"].items()))
    return "\n".join([head, *lines])


def _row(label: str, group: dict) -> str:
    low, high = group["ci95"]
    base, counted = group["baselines"], group["baselines_n"]
    cells = []
    for k in ("always_singular", "always_plural", "shorter_form"):
        cell = "-" if base[k] is None else f"{base[k]:.3f}" + ("*" if counted[k] < group["n"] else "")
        cells.append(f"{cell:>9}")
    return f"  {label[:42]:42} {group['n']:>6} {group['accuracy']:>9.3f}   [{low:.3f}, {high:.3f}]  {' '.join(cells)}"
