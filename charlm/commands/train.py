"""``charlm train``: train a model on text files and save it as one .keras file."""

from __future__ import annotations

import json

import click

from charlm.config import (
    ADAMW_WEIGHT_DECAY,
    CELLS,
    CLIP_MODES,
    DEVICES,
    LR_SCHEDULES,
    OPEN_ENDED_PATIENCE,
    OPEN_ENDED_VAL_EVERY,
    OPTIMIZERS,
    STRATEGIES,
    TRAIN_DROPOUT,
    WSD_COOLDOWN,
    CheckpointConfig,
    ModelConfig,
    TrainConfig,
)
from charlm.data.tokenizers import KINDS

_M, _T = ModelConfig(), TrainConfig()


@click.command("train")
@click.argument("corpus", nargs=-1, type=click.Path())
@click.option("--out", "-o", type=click.Path(), help="Run directory [default: runs/<corpus>-<date-time>].")
@click.option("--tokenizer", type=click.Choice(KINDS), default="char", show_default=True,
              help="char: Unicode code points; byte: UTF-8 bytes (never unknown); word: words (whitespace-separated, "
                   "with the options below).")
@click.option("--normalize", type=click.Choice(["NFC", "NFKC"]), default=None,
              help="Unicode normalization for the char tokenizer [default: none].")
@click.option("--max-vocab", type=int, default=None,
              help="Word tokenizer: keep this many symbols, the most frequent words after the reserved ones.")
@click.option("--min-count", type=int, default=None,
              help="Word tokenizer: keep only words seen at least this often in the training part.")
@click.option("--lowercase", is_flag=True, help="Word tokenizer: lower-case every text the model reads.")
@click.option("--split-punctuation", is_flag=True,
              help='Word tokenizer: punctuation and symbols become words of their own ("old." -> "old ."), '
                   'numbers keep their separators ("3,000"), "hasn\'t" -> "has n\'t" (see docs/training.md).')
@click.option("--numbers-token", default=None,
              help='Word tokenizer: map every number ("42", "3,000", "1.5") to this word, e.g. "<num>".')
@click.option("--encoding-errors", type=click.Choice(["strict", "replace"]), default="strict", show_default=True,
              help="What to do with bytes that are not UTF-8: stop with an error, or replace them with U+FFFD.")
@click.option("--cell", type=click.Choice(CELLS), default=_M.cell, show_default=True, help="Recurrent layer type.")
@click.option("--layers", type=int, default=_M.layers, show_default=True, help="Stacked recurrent layers.")
@click.option("--hidden", type=int, default=_M.hidden, show_default=True, help="Units per recurrent layer.")
@click.option("--embedding", type=int, default=_M.embedding, show_default=True, help="Embedding size.")
@click.option("--dropout", type=float, default=TRAIN_DROPOUT, show_default=True,
              help="Dropout on the embedding, between layers and before the output (each place's rate "
                   "unless set by the three flags below). On a corpus too large to be seen more than once or "
                   "twice (100 MB in a CPU-hour), 0 learns faster.")
@click.option("--dropout-input", type=float, default=None,
              help="Dropout rate on the embedded tokens, the first layer's input (AWD-LSTM's dropouti) "
                   "[default: --dropout].")
@click.option("--dropout-hidden", type=float, default=None,
              help="Dropout rate between recurrent layers (AWD-LSTM's dropouth) [default: --dropout].")
@click.option("--dropout-output", type=float, default=None,
              help="Dropout rate on the top layer's output, before the logits (AWD-LSTM's dropout) "
                   "[default: --dropout].")
@click.option("--locked-dropout", is_flag=True,
              help="Variational dropout (Gal & Ghahramani 2016; AWD-LSTM's LockedDropout): each stream of a "
                   "window keeps one dropout mask for all its steps instead of a new one per step.")
@click.option("--weight-drop", type=float, default=_M.weight_drop, show_default=True,
              help="DropConnect on each layer's recurrent kernel (AWD-LSTM's wdrop): one mask per window, "
                   "entries dropped with this probability. Needs charlm's own kernels: not on a GPU.")
@click.option("--embedding-dropout", type=float, default=_M.embedding_dropout, show_default=True,
              help="Drop whole token types from each window's input (AWD-LSTM's dropoute): each vocabulary "
                   "entry's embedding zeroed with this probability, the rest scaled by 1/(1-P). Not on a GPU.")
@click.option("--tie-weights", is_flag=True,
              help="The output matrix is the embedding's transpose (Press & Wolf 2017; Inan et al. 2017); "
                   "where --hidden differs from --embedding, a linear projection H->E comes first.")
@click.option("--batch-size", type=int, default=_T.batch_size, show_default=True,
              help="B: parallel streams the text is cut into.")
@click.option("--bptt", type=int, default=_T.bptt, show_default=True,
              help="T: window length; gradients flow within a window, the state carries across windows.")
@click.option("--epochs", type=int, default=None,
              help="Stop after this many epochs [default: no limit]. With none of --epochs, --max-steps and "
                   f"--max-minutes, the run goes on until validation loss has not improved for --patience "
                   f"validations (default {OPEN_ENDED_PATIENCE}), then cools the rate down over the last "
                   f"--cooldown ({WSD_COOLDOWN:g}) of the run and stops (see docs/training.md).")
@click.option("--max-steps", type=int, default=None, help="Stop after this many training steps in total.")
@click.option("--max-minutes", type=float, default=None,
              help="The run's budget in wall-clock minutes of its training loop (validation and checkpoints "
                   "included; summed over --resume): it stops at the step boundary where the budget is spent, "
                   "then validates and saves as at an epoch end. The schedules follow it (see --lr-schedule).")
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), default=_T.optimizer, show_default=True,
              help="adamw: Adam with decoupled weight decay (--weight-decay).")
@click.option("--lr", type=float, default=_T.lr, show_default=True, help="Learning rate.")
@click.option("--weight-decay", type=float, default=None,
              help=f"With --optimizer adamw: each step shrinks every weight matrix (not the biases) by "
                   f"--lr x this, apart from the gradient (PyTorch's AdamW) [default: {ADAMW_WEIGHT_DECAY:g}].")
@click.option("--ema", type=float, default=None,
              help="Keep an exponential moving average of the weights with this decay (e.g. 0.999, warm-started; "
                   "see docs/training.md): validation, the best model and model.keras use the average.")
@click.option("--lr-schedule", type=click.Choice(LR_SCHEDULES), default=_T.lr_schedule, show_default=True,
              help="constant: --lr throughout; wsd: warmup, --lr, then a cooldown to 0 over the last --cooldown "
                   "of the run; cosine or linear: decay from --lr towards 0 at the run's end. The run's end is "
                   "its last step (--epochs, --max-steps) or the end of --max-minutes, whichever comes first; "
                   "with none of them, wsd's cooldown starts when validation stops improving.")
@click.option("--warmup", type=float, default=_T.warmup, show_default=True,
              help="With --lr-schedule wsd, cosine or linear: the fraction of the run over which the rate "
                   "rises linearly from 0 to --lr.")
@click.option("--cooldown", type=float, default=None,
              help="With --lr-schedule wsd: the fraction of the run at its end over which the rate falls to 0 "
                   "(as 1-sqrt, Hägele et al. 2024) [default: 0.2].")
@click.option("--lr-decay-start", type=float, default=_T.lr_decay_start, show_default=True,
              help="With --lr-schedule cosine or linear: the fraction of the run trained at the full --lr "
                   "before the decay begins.")
@click.option("--patience", type=int, default=None,
              help="Stop early once validation loss has not improved for this many validations "
                   f"(the best model is kept) [default: none; {OPEN_ENDED_PATIENCE} with none of --epochs, "
                   "--max-steps and --max-minutes].")
@click.option("--val-every", type=int, default=None,
              help="Also validate (history row, best model, checkpoint) every this many steps inside "
                   f"epochs [default: at epoch ends only; with none of --epochs, --max-steps and --max-minutes, "
                   f"every {OPEN_ENDED_VAL_EVERY:,} steps where an epoch is longer].")
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
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True,
              help="auto: a TPU if one is announced, else the GPUs, else the CPU.")
@click.option("--strategy", type=click.Choice(STRATEGIES), default="auto", show_default=True,
              help="tf.distribute strategy. auto: TPUStrategy on a TPU, MirroredStrategy over several GPUs, "
                   "else one device; multi-worker reads the cluster from TF_CONFIG. Under R replicas the "
                   "--batch-size streams are split into R blocks, each replica carrying its own streams' "
                   "states; the loss is the mean over all tokens and --clipnorm clips the summed gradient, "
                   "exactly as on one device.")
@click.option("--steps-per-execution", type=int, default=1, show_default=True,
              help="Training steps per compiled call (fewer host round trips; useful on TPU).")
@click.option("--mixed-precision", is_flag=True,
              help="float16 (GPU) or bfloat16 (TPU, CPU) activations; logits, loss and softmax stay float32.")
@click.option("--tensorboard", type=click.Path(file_okay=False), default=None,
              help="Write TensorBoard event files (losses, gradient norm, clipping, samples) to this directory.")
@click.option("--sample-every", type=click.IntRange(min=1), default=None,
              help="Print a sample every N steps (same seed each time, so samples compare).")
@click.option("--sample-length", type=click.IntRange(min=1), default=200, show_default=True,
              help="Tokens per --sample-every sample.")
@click.option("--sample-prompt", default="", help="Text the --sample-every samples continue.")
@click.option("--agreement", type=click.Path(), default=None,
              help="Report agreement accuracy on this file (any `charlm agree` format, SyntaxGym suites "
                   "included) after every epoch.")
@click.option("--checkpoint-every", type=int, default=CheckpointConfig.checkpoint_every, show_default=True,
              help="Write a checkpoint (weights, optimizer, position, RNN states, random state) every N steps, "
                   "and at each epoch end; 0: at epoch ends only.")
@click.option("--keep", type=int, default=CheckpointConfig.keep, show_default=True,
              help="How many of the newest checkpoints to keep in OUT/checkpoints.")
@click.option("--resume", type=click.Path(), default=None,
              help="Continue the run in this directory exactly where its newest checkpoint left it. Only "
                   "--epochs, --max-steps, --max-minutes, --lr, --lr-schedule, --warmup, --cooldown, "
                   "--lr-decay-start, --patience, --val-every, --weight-decay, --clipnorm, --clip-mode, "
                   "--checkpoint-every, --keep and the device settings may change; flags that change the model "
                   "or data are refused.")
@click.option("--init-from", type=click.Path(), default=None,
              help="Fine-tune: start from this model's weights and tokenizer (ids are never re-mapped).")
@click.option("--extend-vocab", is_flag=True,
              help="With --init-from: add the new corpus's unknown characters (or words) to the vocabulary "
                   "instead of mapping them to <unk>.")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="Where tokenized corpora are cached, keyed by content and tokenizer settings "
                   "[default: .charlm-cache beside the run directory].")
@click.option("--tfds-split", default=None,
              help="For a tfds:NAME[/CONFIG] corpus: one split, cut by --val-fraction, or TRAIN,VALIDATION "
                   "[default: train,validation if both exist, else train].")
@click.option("--tfds-key", default=None, help="For tfds:NAME: the text feature [default: text].")
@click.option("--tfds-data-dir", type=click.Path(file_okay=False), default=None,
              help="For tfds:NAME: the TFDS data directory [default: TFDS's, ~/tensorflow_datasets].")
@click.option("--tfds-manual-dir", type=click.Path(file_okay=False), default=None,
              help="For tfds:NAME: a folder with the dataset's downloaded files, to prepare it offline.")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary on stdout at the end.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or per-epoch lines.")
def command(corpus, out, as_json, quiet, clipnorm, tensorboard, sample_every, sample_length, sample_prompt,
            agreement, resume, init_from, extend_vocab, **settings):
    """Train a language model on CORPUS (files, directories, globs, or tfds:NAME[/CONFIG]; default: the bundled corpus).

    The text is split into a training part and, at its end, a validation part;
    the vocabulary comes from the training part only. Both are laid out as
    --batch-size parallel streams cut into windows of --bptt tokens: the
    recurrent state carries from one window to the next within an epoch and is
    reset at the start of each epoch and for validation. The best model by
    validation loss is saved as OUT/model.keras, with its tokenizer inside.
    """
    from charlm.agreement.observer import AgreementObserver
    from charlm.training.run import train
    from charlm.training.stopping import TrainingInterrupted

    settings["clipnorm"] = clipnorm if clipnorm else None
    log = (lambda line: None) if quiet else None
    observers = _monitoring(tensorboard, sample_every, sample_length, sample_prompt, settings["seed"])
    if agreement:
        observers.append(AgreementObserver(agreement))
    if resume or init_from:  # settings come from the run or the model; pass only the flags given
        source = click.get_current_context().get_parameter_source
        settings = {k: v for k, v in settings.items() if source(k) != click.core.ParameterSource.DEFAULT}
    try:
        summary = train(list(corpus) or None, out, resume=resume, init_from=init_from, extend_vocab=extend_vocab,
                        progress=not quiet, log=log, observers=observers, **settings)
    except TrainingInterrupted as stop:  # a checkpoint was written: not an error, but not success either
        click.echo(f"charlm: {stop}", err=True)
        raise click.exceptions.Exit(stop.exit_code) from None
    if as_json:
        click.echo(json.dumps(summary))
    else:
        click.echo(
            f"model saved to {summary['model_path']} (best val loss {summary['best_val_loss']:.4f} nats/token, "
            f"{summary['best_val_bits_per_char']:.4f} bits/char)"
        )


def _monitoring(tensorboard, sample_every, sample_length, sample_prompt, seed) -> list:
    """The observers the monitoring flags ask for: always the step log; TensorBoard given a
    directory; samples every ``sample_every`` steps (printed), or, with TensorBoard but no
    ``sample_every``, one per epoch for TensorBoard only."""
    from charlm.training.observers import SampleObserver, StepLogObserver
    from charlm.training.tensorboard import TensorBoardObserver

    observers = [StepLogObserver()]
    board = TensorBoardObserver(tensorboard) if tensorboard else None
    if board is not None:
        observers.append(board)
    if sample_every or board is not None:
        observers.append(SampleObserver(sample_every, sample_length, sample_prompt, seed,
                                        echo=bool(sample_every), tensorboard=board))
    return observers
