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
                   ".csv and .tsv (or other files, by their header) TSV/CSV; .json a SyntaxGym "
                   "suite or BLiMP, by its structure.")
@click.option("--method", type=click.Choice(METHODS), default="sentence", show_default=True,
              help="For BLiMP pairs that also give a shared prefix: compare whole sentences (BLiMP's "
                   "own measure) or the differing word after the prefix.")
@click.option("--json", "as_json", is_flag=True, help="Print all figures as one JSON object.")
@click.option("--plot", type=click.Path(), help="Draw accuracy with intervals and baselines to this PNG.")
@click.option("--plot-by", type=click.Choice(["auto", "condition", "attractors", "file", "distance"]),
              default="auto", show_default=True,
              help="Groups of the plot (auto: distance with --by distance, else conditions, else attractor "
                   "counts, else files).")
@click.option("--by", "extra", type=click.Choice(["distance"]), multiple=True,
              help="Also break accuracy down by the distance from the subject's head noun to the verb, in "
                   "words (1, 2, 3-4, 5-7, 8-12, 13+) and characters (1-10, 11-20, 21-40, 41-60, 61+), "
                   "for items that give the subject's position.")
def command(model, data, fmt, method, as_json, plot, plot_by, extra):
    """Agreement accuracy of MODEL on DATA (files, directories or Gulordava stems).

    \b
    DATA formats:
      TSV or CSV with a header: prefix, correct, wrong [, suffix] or
        sentence_good, sentence_bad; optional condition, n_attractors,
        subj_number (sg/pl), subject_index (the subject's head noun among
        the prefix's words, from 0), where an empty cell, NA, N/A, NaN,
        None, null or - means unknown (the item is scored, in an "unknown"
        group).
      BLiMP JSONL: sentence_good, sentence_bad [, one_prefix_*].
      Linzen/Gulordava: STEM.text + STEM.gold + STEM.eval [+ STEM.tab], given
        as any one of them or as STEM; the .gold in Gulordava et al.'s layout
        (8 or more fields) or Linzen et al.'s (4: index, correct, wrong,
        attractors).
      SyntaxGym suites: JSON with meta, region_meta, predictions, items (one
        suite a file), told by their structure; a directory of them.

    A SyntaxGym suite's region surprisal (bits) is the sum or mean, per its
    meta.metric, of its tokens' surprisals: for character and byte models the
    region's characters with the one that ends it (a space, or the final line
    break), for word models its words.
    An item is correct when every prediction holds; the score is the mean of
    the suites' accuracies.

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
    attractor count and subject number (and with --by distance, by distance from
    subject to verb), beside content-blind baselines on the
    same items: always singular, always plural (where the number is known) and
    shorter form (ties count half). Items that cannot be scored (malformed rows,
    empty or identical forms, forms outside the vocabulary) are counted as
    skipped, with reasons and by condition; the exit status is non-zero only
    when none could be scored. A word model reads every prefix, form and
    sentence with the rules it was trained with (--lowercase,
    --split-punctuation, --numbers-token); items whose forms it lacks are
    skipped, never scored as <unk>, and scored items with other unknown words
    are counted.
    """
    from charlm.agreement import describe_skips
    from charlm.agreement.formats import load as load_data
    from charlm.agreement.scoring import ItemScorer, run_agreement
    from charlm.errors import CharlmError
    from charlm.nn.lm import load

    lm = load(model)
    loaded = load_data(data, fmt, method)
    scorer = ItemScorer(lm)
    # Agreement items and SyntaxGym suites; failing only when neither gives anything to report.
    agreement = run_agreement(lm, loaded=loaded, scorer=scorer, allow_empty=True) if loaded.items else None
    skips = list(agreement.skips if agreement else loaded.skips)
    if agreement is not None and agreement.summary["n"] == 0:
        agreement = None
    gym = None
    if loaded.suites:
        from charlm.agreement.gym_scoring import run_syntaxgym

        gym = run_syntaxgym(lm, loaded.suites, loaded.suite_skips, scorer)
    skips += gym.skips if gym else loaded.suite_skips
    if agreement is None and (gym is None or gym.summary["n_items"] == 0):
        raise CharlmError(f"nothing could be scored: {describe_skips(skips) or 'no items found'}")
    summary = {"model": str(model), **(agreement.summary if agreement else {"files": loaded.files})}
    if gym:
        summary["syntaxgym"] = gym.summary
    if plot and agreement is None:
        raise CharlmError("--plot draws agreement items, and none was scored (SyntaxGym suites are not drawn)")
    if skips:
        total = sum(s.count for s in skips)
        click.echo(f"charlm agree: skipped {total} items: {describe_skips(skips)}", err=True)
    unknown = summary.get("unknown_context") or {}
    if unknown.get("items"):
        groups = unknown["by_condition"]
        click.echo(f"charlm agree: {unknown['items']} scored item(s) read symbols outside the vocabulary as <unk> "
                   "around their forms" + (" (" + ", ".join(f"{name} {n}" for name, n in groups.items()) + ")"
                                           if set(groups) - {"unknown"} else ""), err=True)
    by_distance = "distance" in extra and agreement is not None
    if by_distance and "by_distance" not in summary:
        by_distance = False
        click.echo("charlm agree: no breakdown by distance: no item gives its subject's position (a "
                   "subject_index column, or a Gulordava .tab with len_context)", err=True)
    if plot:
        from charlm.agreement.plot import plot_summary

        plot_summary(summary, plot, "distance" if plot_by == "auto" and by_distance else plot_by)
    if as_json:
        click.echo(json.dumps(summary))
    else:
        tables = [format_table(summary, by_distance)] if agreement else []
        if gym:
            tables.append(format_gym_table(gym.summary))
        click.echo("\n\n".join(tables))


def format_table(summary: dict, by_distance: bool = False) -> str:
    """The human-readable report: one line per group, then the overall line; the
    breakdowns by distance too where ``by_distance`` (and the summary has them)."""
    head = f"{'':44} {'n':>6} {'accuracy':>9} {'95% interval':>16}  {'always-sg':>9} {'always-pl':>9} {'shorter':>8}"
    lines = []
    sections = [("file", "by_file"), ("condition", "by_condition"), ("attractors", "by_attractors"),
                ("subject", "by_subj_number")]
    if by_distance and "by_distance" in summary:
        sections += [("distance (words)", "by_distance"), ("distance (characters)", "by_char_distance")]
    for title, key in sections:
        groups = summary[key]
        # One group says nothing, except a condition's name or a distance asked for; one "unknown"
        # group says nothing at all.
        telling = key in ("by_condition", "by_distance", "by_char_distance")
        if len(groups) < 2 and not (telling and groups and "unknown" not in groups):
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
    # By condition where conditions are known (a lone "unknown" group says nothing).
    by_condition = summary.get("skipped_by_condition") or {}
    if set(by_condition) - {"unknown"}:
        lines.append("  by condition: " + ", ".join(f"{name} {sum(reasons.values())}"
                                                   for name, reasons in by_condition.items()))
    return "\n".join([head, *lines])


def _row(label: str, group: dict) -> str:
    low, high = group["ci95"]
    base, counted = group["baselines"], group["baselines_n"]
    cells = []
    for k in ("always_singular", "always_plural", "shorter_form"):
        cell = "-" if base[k] is None else f"{base[k]:.3f}" + ("*" if counted[k] < group["n"] else "")
        cells.append(f"{cell:>9}")
    return f"  {label[:42]:42} {group['n']:>6} {group['accuracy']:>9.3f}   [{low:.3f}, {high:.3f}]  {' '.join(cells)}"


def format_gym_table(gym: dict) -> str:
    """The SyntaxGym report: per suite, its accuracy (all predictions held) and each
    prediction's, then the score, the mean over suites."""
    lines = [f"{'SyntaxGym suite':44} {'items':>6} {'accuracy':>9} {'95% interval':>16}"]
    for suite in gym["suites"]:
        if not suite["n"]:
            lines.append(f"  {suite['name'][:42]:42} {0:>6}         -")
            continue
        lines.append(_gym_row(suite["name"], suite))
        if len(suite["predictions"]) > 1:
            for prediction in suite["predictions"]:
                lines.append(_gym_row("  " + prediction["formula"], prediction))
    if gym["score"] is not None:
        lines.append(f"  {'score (mean over ' + str(gym['n_suites']) + ' suites)':42} {gym['n_items']:>6} "
                     f"{gym['score']:>9.3f}")
    if gym["skipped"]:
        lines.append(f"skipped {gym['skipped']} item(s)")
    return "\n".join(lines)


def _gym_row(label: str, group: dict) -> str:
    low, high = group["ci95"]
    return f"  {label[:42]:42} {group['n']:>6} {group['accuracy']:>9.3f}   [{low:.3f}, {high:.3f}]"
