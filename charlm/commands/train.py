"""``charlm train``: train a model on text files and save it as one .keras file."""

from __future__ import annotations

import json

import click

from charlm.config import CELLS, CLIP_MODES, OPTIMIZERS, ModelConfig, TrainConfig
from charlm.tokenizers import KINDS

_M, _T = ModelConfig(), TrainConfig()


@click.command("train")
@click.argument("corpus", nargs=-1, type=click.Path())
@click.option("--out", "-o", type=click.Path(), help="Run directory [default: runs/<corpus>-<date-time>].")
@click.option("--tokenizer", type=click.Choice(KINDS), default="char", show_default=True,
              help="char: Unicode code points; byte: UTF-8 bytes (never unknown); word: whitespace tokens.")
@click.option("--normalize", type=click.Choice(["NFC", "NFKC"]), default=None,
              help="Unicode normalization for the char tokenizer [default: none].")
@click.option("--max-vocab", type=int, default=None, help="Word tokenizer: keep this many most frequent words.")
@click.option("--encoding-errors", type=click.Choice(["strict", "replace"]), default="strict", show_default=True,
              help="What to do with bytes that are not UTF-8: stop with an error, or replace them with U+FFFD.")
@click.option("--cell", type=click.Choice(CELLS), default=_M.cell, show_default=True, help="Recurrent layer type.")
@click.option("--layers", type=int, default=_M.layers, show_default=True, help="Stacked recurrent layers.")
@click.option("--hidden", type=int, default=_M.hidden, show_default=True, help="Units per recurrent layer.")
@click.option("--embedding", type=int, default=_M.embedding, show_default=True, help="Embedding size.")
@click.option("--dropout", type=float, default=_M.dropout, show_default=True,
              help="Dropout on the embedding, between layers and before the output.")
@click.option("--batch-size", type=int, default=_T.batch_size, show_default=True,
              help="B: parallel streams the text is cut into.")
@click.option("--bptt", type=int, default=_T.bptt, show_default=True,
              help="T: window length; gradients flow within a window, the state carries across windows.")
@click.option("--epochs", type=int, default=_T.epochs, show_default=True)
@click.option("--max-steps", type=int, default=None, help="Stop after this many training steps in total.")
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), default=_T.optimizer, show_default=True)
@click.option("--lr", type=float, default=_T.lr, show_default=True, help="Learning rate.")
@click.option("--clipnorm", type=float, default=_T.clipnorm, show_default=True,
              help="Clip gradients to this norm (0: no clipping).")
@click.option("--clip-mode", type=click.Choice(CLIP_MODES), default=_T.clip_mode, show_default=True,
              help="global: scale all gradients together so their joint L2 norm is at most --clipnorm "
                   "(like PyTorch's clip_grad_norm_ and Keras' global_clipnorm); per-tensor: clip each "
                   "variable's gradient to --clipnorm on its own (Keras' clipnorm).")
@click.option("--val-fraction", type=float, default=_T.val_fraction, show_default=True,
              help="Fraction of the corpus, taken from its end as one block, held out for validation.")
@click.option("--seed", type=int, default=_T.seed, show_default=True,
              help="Same seed, corpus and machine: same losses.")
@click.option("--tensorboard", type=click.Path(file_okay=False), default=None,
              help="Write TensorBoard event files (losses, gradient norm, clipping, samples) to this directory.")
@click.option("--sample-every", type=click.IntRange(min=1), default=None,
              help="Print a sample every N steps (same seed each time, so samples compare).")
@click.option("--sample-length", type=click.IntRange(min=1), default=200, show_default=True,
              help="Tokens per --sample-every sample.")
@click.option("--sample-prompt", default="", help="Text the --sample-every samples continue.")
@click.option("--agreement", type=click.Path(), default=None,
              help="Report agreement accuracy on this file (any `charlm agree` format) after every epoch.")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary on stdout at the end.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or per-epoch lines.")
def command(corpus, out, as_json, quiet, clipnorm, tensorboard, sample_every, sample_length, sample_prompt,
            agreement, **settings):
    """Train a language model on CORPUS (files or directories; default: the bundled corpus).

    The text is split into a training part and, at its end, a validation part;
    the vocabulary comes from the training part only. Both are laid out as
    --batch-size parallel streams cut into windows of --bptt tokens: the
    recurrent state carries from one window to the next within an epoch and is
    reset at the start of each epoch and for validation. The best model by
    validation loss is saved as OUT/model.keras, with its tokenizer inside.
    """
    from charlm.training import train

    settings["clipnorm"] = clipnorm if clipnorm else None
    log = (lambda line: None) if quiet else None
    from charlm.monitor import monitoring_observers

    observers = monitoring_observers(tensorboard, sample_every, sample_length, sample_prompt, settings["seed"])
    if agreement:
        from charlm.agreement.observer import AgreementObserver

        observers = [*observers, AgreementObserver(agreement)]
    summary = train(list(corpus) or None, out, progress=not quiet, log=log, observers=observers, **settings)
    if as_json:
        click.echo(json.dumps(summary))
    else:
        click.echo(
            f"model saved to {summary['model_path']} (best val loss {summary['best_val_loss']:.4f} nats/token, "
            f"{summary['best_val_bits_per_char']:.4f} bits/char)"
        )
