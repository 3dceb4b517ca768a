"""``charlm import``: a PyTorch RNN language model (state dict and vocabulary) as a charlm model file."""

from __future__ import annotations

from pathlib import Path

import click

from charlm.config import CELLS


@click.command("import")
@click.argument("state_dict", type=click.Path())
@click.argument("vocabulary", type=click.Path())
@click.option("--out", "-o", type=click.Path(), required=True, help="The charlm model file to write (.keras).")
@click.option("--unk", default="<unk>", show_default=True, help="The vocabulary's unknown word (becomes <unk>).")
@click.option("--eos", default="<eos>", show_default=True,
              help="The vocabulary's end-of-sentence word, read where charlm reads a line break (becomes <eol>).")
@click.option("--cell", type=click.Choice(CELLS), default=None,
              help="The recurrent layers' type [default: from the state dict]; a plain RNN needs --cell rnn "
                   "(tanh: a state dict does not record the nonlinearity).")
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
def command(state_dict, vocabulary, out, unk, eos, cell, force):
    """Import STATE_DICT, a PyTorch RNNModel's weights (Gulordava et al.'s colorlessgreenRNNs,
    PyTorch's word_language_model example: an nn.Embedding 'encoder', an nn.LSTM, nn.GRU or
    nn.RNN 'rnn' and an nn.Linear 'decoder', tied or not), saved with
    torch.save(model.state_dict(), PATH), and VOCABULARY, its words one a line (a word's id is
    its line), as a charlm word model that eval, score, agree, sample and the inspection
    commands read like any other. A file holding a whole pickled model is refused: see
    docs/training.md ('Importing PyTorch models') for the two lines that turn it into a state
    dict. Needs PyTorch."""
    from charlm.errors import CharlmError
    from charlm.nn.importing import import_torch

    target = Path(out)
    if target.suffix != ".keras":
        raise CharlmError(f"--out must name a .keras file, got {out}")
    if target.exists() and not force:
        raise CharlmError(f"--out {out} exists; choose another path or pass --force")
    imported = import_torch(state_dict, vocabulary, unk=unk, eos=eos, cell=cell)
    imported.lm.save(target)
    click.echo(f"imported {state_dict}: {imported.describe()}; saved to {target}")
