"""``charlm show``: a text coloured by a model's units, as one self-contained HTML page."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from charlm.errors import CharlmError

DEFAULT_TOKENS = 2_000  # of the bundled held-out text, when no --file or --text is given


@click.command("show")
@click.argument("model", type=click.Path())
@click.option("--file", "files", multiple=True, type=click.Path(),
              help="Text to read (repeatable) [default: the held-out end of the bundled corpus].")
@click.option("--text", default=None, help="Read this text instead of a file.")
@click.option("--max-tokens", type=click.IntRange(min=1), default=None,
              help=f"Read only the text's first N tokens [default: all of --file or --text; "
                   f"{DEFAULT_TOKENS:,} of the bundled text].")
@click.option("--units", default=None,
              help="Units to preselect on the page (and the units --json writes): LAYER:UNIT pairs, "
                   "comma-separated, layers from 1 and units from 0, e.g. 1:37,2:200.")
@click.option("--values", "value_names", default=None,
              help="The values in the page, comma-separated [default: h, and c for an LSTM where the page can hold it]: h; an LSTM's "
                   "c, i, f, g, o; a GRU's z, r, g; a SimpleRNN's a.")
@click.option("--encoding-errors", type=click.Choice(["strict", "replace"]), default="strict", show_default=True,
              help="Bytes that are not UTF-8: stop with an error, or read them as U+FFFD.")
@click.option("-o", "--out", type=click.Path(), default=None,
              help="The page to write (PAGE.html); with --json, the JSON file [default: standard output].")
@click.option("--json", "as_json", is_flag=True,
              help="Write the numbers instead of a page: tokens, surprisal, top-5 next tokens, the values of "
                   "the --units units (every unit without --units) and the gate saturation.")
def command(model, files, text, max_tokens, units, value_names, encoding_errors, out, as_json):
    """Write a page that shows a text coloured by the units of MODEL.

    \b
    The page is one HTML file with everything inline (no network, no
    external file): each token coloured by the value of a chosen unit
    (layer, value and unit picked on the page, or preselected with --units);
    pointing at a token shows its surprisal and the model's five most
    likely next tokens; "find units" ranks the units that stand out inside
    a span selected with the mouse; a panel plots each gate's saturation.
    Values are stored at 8 bits relative to each unit's range (fewer, down
    to 3, where the page would pass 10 MB; a longer text is refused).
    """
    from charlm.fileio import atomic_path
    from charlm.inspect import page as pages
    from charlm.inspect.text import read_text
    from charlm.nn.lm import load

    if out is None and not as_json:
        raise CharlmError("say where to write the page: -o PAGE.html (or --json for the numbers)")
    if out is not None:
        _check_output(out)
    lm = load(model)
    config = lm.config
    values = pages.check_values(value_names, config.cell)
    chosen = pages.check_units(units, config.layers, config.hidden)
    if max_tokens is None and not files and text is None:
        max_tokens = DEFAULT_TOKENS
    source = read_text(lm, files, text, encoding_errors, max_tokens)
    count = len(chosen) if as_json and chosen else config.layers * config.hidden
    # Without --values a page that cannot hold h and c keeps h alone: check what h alone needs.
    pages.check_size(source.tokens, count, values if value_names or as_json else values[:1], as_json=as_json)
    shown = pages.show(lm, source.text, values, units,
                       about={"model": str(model), "text": source.source, "unknown": source.unknown})
    described = f"{source.tokens:,} tokens of {source.source}, {source.unknown:,} unknown to the model"
    summary = f"{described}, values {', '.join(values)}"
    if as_json:
        body = json.dumps(pages.numbers(shown), ensure_ascii=False, allow_nan=False)
        if len(body) > pages.LIMIT:
            raise CharlmError(f"the JSON would be {len(body) / 1e6:.3g} MB, over the {pages.LIMIT / 1e6:.3g} MB "
                              "limit; read fewer tokens (--max-tokens) or fewer units (--units)")
        if out is None:
            click.echo(body)
            click.echo(f"charlm: {summary}", err=True)
            return
        body = body.encode("utf-8")
    else:
        note = ""
        try:
            body, bits = pages.page(shown)
        except pages.PageTooLarge:
            if value_names or len(values) == 1:
                raise
            shown = pages.keeping(shown, values[:1])
            body, bits = pages.page(shown)
            note = f"; {', '.join(values)} would pass {pages.LIMIT / 1e6:g} MB, so the page holds {values[0]} " \
                   f"(--values {','.join(values)} with fewer --max-tokens for the rest)"
        summary = f"{described}, values {', '.join(shown.values)} at {bits} bits{note}"
    _write(out, body, atomic_path)
    click.echo(f"charlm: wrote {out} ({len(body) / 1e6:.2f} MB): {summary}", err=True)


def _check_output(out):
    """A one-line error, before any work, for an output path that cannot be written."""
    path = Path(out)
    if path.is_dir():
        raise CharlmError(f"cannot write {out}: it is a directory")
    parent = path.parent
    if not parent.is_dir():
        raise CharlmError(f"cannot write {out}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise CharlmError(f"cannot write {out}: permission denied")


def _write(out, body: bytes, atomic_path):
    try:
        with atomic_path(out) as tmp:
            tmp.write_bytes(body)
    except OSError as error:
        raise CharlmError(f"cannot write {out}: {error.strerror or error}") from None
