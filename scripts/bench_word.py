"""A word model trained by charlm and by a PyTorch peer on the same text for the same number of
steps: test perplexity, training tokens/s and peak memory of each, side by side.

The text is WikiText-2 as it ships (already tokenised, rare words as ``<unk>``): the model trains
on ``wikitext2.valid.txt`` and is evaluated on ``wikitext2.test.txt``. The vocabulary is every
word of the training text (about 13,800 with charlm's specials); test words outside it read as
``<unk>``. The model is an LSTM 2x650 with embedding 650 and dropout (PyTorch's
word_language_model recipe: SGD at learning rate 20, global-norm clipping at 0.25, B=20, T=35).

    charlm   ``charlm.train`` (what ``charlm train --tokenizer word ...`` runs), then
             ``charlm.evaluate.evaluate`` on the test text (what ``charlm eval`` prints)
    torch    a word_language_model-style loop: ``nn.Embedding``, ``nn.LSTM`` (dropout between
             the layers), dropout, ``nn.Linear`` decoder; cross-entropy, ``clip_grad_norm_``,
             the same optimizer, learning rate, schedule and clipping; states detached between
             windows

Both start from the same weights (charlm's initial ones, given to the peer, whose LSTM then trains
one bias vector per layer as charlm's does, its b_hh held at 0; `--torch-init` for
word_language_model's own initialisation, which SGD at rate 20 was tuned with, both bias vectors
trained) and train on the same token ids in the same windows: charlm's training split (the text
less its last ``--val-fraction`` for charlm's validation) laid out in charlm's B streams, a fresh
state at each epoch's start. Their steps are the same arithmetic (tests/test_steps.py holds
charlm's SGD steps to PyTorch's), but not the same floats, and SGD at rate 20 amplifies the
difference until, within some twenty steps, the two runs are as far apart as two seeds.

The rate follows charlm's ``--lr-schedule`` on both sides: by default the full rate for the first
half of the steps, then linearly down to 0. At a constant rate of 20 the weights sit wherever the
last few steps threw them, and test perplexity swings from one step to the next by more than any
difference between the two sides (BENCHMARKS.md); the decay settles both. ``--lr-schedule
constant`` compares the unsettled runs; ``--seed`` draws other initial weights and dropout masks,
to size the noise. Both are evaluated through ``charlm.evaluate.stream_logprobs``
(the same tokens, the same parallel pieces and warm-up, ``<eol>`` as the start context), so
the two perplexities differ only by what the models learned. Each side runs in its own process,
one after the other; tokens/s is over the training steps after the first ``--skip`` (which
include compilation), without charlm's validation passes; peak memory is the process's peak
resident set size at the end of training (PyTorch's before it loads TensorFlow to evaluate).

    python scripts/bench_word.py                 # 300 steps each (10-15 minutes on 2 quiet cores)
    python scripts/bench_word.py --steps 5 --json
"""

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

DATA = REPO.parent / "shared" / "data" / "corpora"


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def _rate(times, skip, tokens_per_step, pauses=()):
    """Training tokens/s from the start time and the end time of every step: over the steps
    after the first ``skip`` (at most half of them), leaving out any step whose interval holds
    one of ``pauses`` (a validation)."""
    skip = min(skip, (len(times) - 1) // 2)
    spans = [(a, b) for a, b in zip(times[skip:], times[skip + 1:])
             if not any(a < p <= b for p in pauses)]
    if not spans:
        return None
    return len(spans) * tokens_per_step / sum(b - a for a, b in spans)


def _tail_mean(losses, n=20):
    """The mean training loss of the last ``n`` steps (nats per token)."""
    tail = losses[-n:]
    return sum(tail) / len(tail) if tail else None


def charlm_worker(args, shared):
    """Trains and evaluates with charlm; writes the training layout and the test ids for the
    PyTorch peer to ``shared`` (an .npz); returns the figures."""
    import numpy as np

    import charlm
    from charlm.evaluate import evaluate, start_ids
    from charlm.training.observers import Observer

    class Clock(Observer):
        def __init__(self):
            self.steps, self.pauses, self.losses = [], [], []

        def on_train_begin(self, run):
            self.initial = {layer.name: [w.copy() for w in layer.get_weights()] for layer in run.lm.model.layers
                            if layer.get_weights()}
            self.steps.append(time.perf_counter())

        def on_step_end(self, run, step, logs):
            self.steps.append(time.perf_counter())
            self.losses.append(logs["loss"])

        def on_epoch_end(self, run, epoch, row):
            self.pauses.append(time.perf_counter())

        def on_train_end(self, run, summary):
            self.run = run

    clock = Clock()
    # As many epochs as steps: --steps, not charlm's default of 3 epochs, ends the run.
    settings = {"tokenizer": "word", "cell": "lstm", "layers": 2, "hidden": args.hidden, "embedding": args.hidden,
                "dropout": args.dropout, "batch_size": args.batch_size, "bptt": args.bptt, "epochs": args.steps,
                "max_steps": args.steps, "optimizer": args.optimizer, "lr": args.lr, **schedule_settings(args),
                "clipnorm": args.clip, "val_fraction": args.val_fraction, "checkpoint_every": 0, "seed": args.seed}
    if args.tie_weights:
        settings["tie_weights"] = True
    if args.split_punctuation:  # so that the kept model reads BLiMP's "sketch." as "sketch ."
        settings["split_punctuation"] = True
    with tempfile.TemporaryDirectory() as out:
        summary = charlm.train(str(args.train), out=str(Path(out) / "run"), progress=False, observers=[clock],
                               **settings)
    train_peak = _peak_rss_mib()
    run = clock.run
    lm, batches = run.lm, run.data.train
    test_text = args.test.read_text(encoding="utf-8")
    initial = {f"init/{name}/{k}": w for name, weights in clock.initial.items() for k, w in enumerate(weights)}
    np.savez(shared, streams=batches.streams, bptt=batches.bptt, vocab_size=lm.tokenizer.vocab_size,
             pad_id=lm.tokenizer.pad_id, test_ids=lm.tokenizer.encode(test_text),
             start=start_ids(lm.tokenizer), **initial)
    started = time.perf_counter()
    result = evaluate(lm, test_text)
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        lm.save(args.keep / "model.keras")  # the model as evaluated, for charlm agree and the rest
    return {
        "steps": summary["steps"],
        "vocab_size": lm.tokenizer.vocab_size,
        "train_tokens": int(batches.streams.size),
        "final_train_loss": _tail_mean(clock.losses),
        "tokens_per_s": _rate(clock.steps, args.skip, batches.tokens_per_window, clock.pauses),
        "peak_rss_mib": train_peak,
        "test_loss": result["loss"],
        "test_perplexity": result["perplexity"],
        "test_tokens": result["tokens"],
        "test_oov_rate": result["oov_rate"],
        "eval_tokens_per_s": result["tokens"] / (time.perf_counter() - started),
        "eval_peak_rss_mib": _peak_rss_mib(),
    }


def schedule_settings(args) -> dict:
    """charlm's learning-rate schedule settings from the command line."""
    if args.lr_schedule == "constant":
        return {"lr_schedule": "constant"}
    return {"lr_schedule": args.lr_schedule, "lr_decay_start": args.lr_decay_start}


def scheduled_rates(args) -> list:
    """The learning rate of each training step as charlm's run sets it (:mod:`charlm.training.schedule`)."""
    from charlm.config import TrainConfig
    from charlm.training.schedule import run_progress, scheduled_lr

    config = TrainConfig(optimizer=args.optimizer, lr=args.lr, **schedule_settings(args))
    return [scheduled_lr(config, run_progress(config, step, args.steps, 0.0)) for step in range(args.steps)]


def load_keras_init(model, data):
    """Give the PyTorch peer charlm's initial weights: the embedding, each LSTM layer (Keras'
    kernel (E, 4H), recurrent kernel (H, 4H) and bias (4H,), gates i, f, g, o in PyTorch's order
    too: transposed, the bias as b_ih, b_hh 0 and frozen, so that the layer has one bias vector,
    trained at charlm's rate and counted once by the clipping, as charlm's) and the decoder
    (Keras' kernel (H, V))."""
    import torch

    def weight(name, k):
        return torch.from_numpy(data[f"init/{name}/{k}"].copy())

    with torch.no_grad():
        model.encoder.weight.copy_(weight("embedding", 0))
        for layer in range(model.rnn.num_layers):
            getattr(model.rnn, f"weight_ih_l{layer}").copy_(weight(f"lstm_{layer}", 0).T)
            getattr(model.rnn, f"weight_hh_l{layer}").copy_(weight(f"lstm_{layer}", 1).T)
            getattr(model.rnn, f"bias_ih_l{layer}").copy_(weight(f"lstm_{layer}", 2))
            getattr(model.rnn, f"bias_hh_l{layer}").zero_()
            getattr(model.rnn, f"bias_hh_l{layer}").requires_grad_(False)
        if model.decoder.weight is model.encoder.weight:  # tied: the bias is a (1, V) Dense kernel
            model.decoder.bias.copy_(weight("output_bias", 0)[0])
        else:
            model.decoder.weight.copy_(weight("logits", 0).T)
            model.decoder.bias.copy_(weight("logits", 1))


def torch_worker(args, shared):
    """Trains the PyTorch peer on charlm's windows, then evaluates it on the same test ids
    through charlm's stream layout; returns the figures."""
    from types import SimpleNamespace

    import numpy as np
    import torch
    from torch_peers import LSTMModel  # word_language_model's RNNModel (the scripts folder is on sys.path)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    data = np.load(shared)
    streams, T, V = data["streams"], int(data["bptt"]), int(data["vocab_size"])
    B = streams.shape[0]
    windows = (streams.shape[1] - 1) // T
    model = LSTMModel(V, args.hidden, args.hidden, 2, args.dropout, args.tie_weights)
    if not args.torch_init:
        load_keras_init(model, data)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}[args.optimizer](params, lr=args.lr)
    rates = scheduled_rates(args)
    loss_fn = torch.nn.CrossEntropyLoss()

    def zeros(rows):
        return tuple(torch.zeros(2, rows, args.hidden) for _ in range(2))

    model.train()
    times, losses = [time.perf_counter()], []
    for step in range(args.steps):
        k = step % windows
        if k == 0:
            hidden = zeros(B)  # each epoch starts from a fresh state, as charlm's does
        x = torch.from_numpy(streams[:, k * T:(k + 1) * T].T.astype(np.int64))  # (T, B)
        y = torch.from_numpy(streams[:, k * T + 1:(k + 1) * T + 1].T.astype(np.int64))
        hidden = tuple(h.detach() for h in hidden)
        for group in optimizer.param_groups:
            group["lr"] = rates[step]
        logits, hidden = model(x, hidden)
        loss = loss_fn(logits.reshape(-1, V), y.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, args.clip)
        optimizer.step()
        losses.append(loss.item())
        times.append(time.perf_counter())
    train_peak = _peak_rss_mib()

    # TensorFlow from here on: after the training peak is read.
    from charlm.evaluate import stream_logprobs

    model.eval()

    def score(inputs, targets, states=None):
        """charlm's TokenScorer protocol: (B, W) ids -> (log p of each target (B, W), states)."""
        with torch.no_grad():
            x = torch.from_numpy(np.ascontiguousarray(inputs.T, dtype=np.int64))
            logits, states = model(x, states if states is not None else zeros(x.shape[1]))
            logp = torch.log_softmax(logits, dim=-1)
            y = torch.from_numpy(np.ascontiguousarray(targets.T, dtype=np.int64))
            return logp.gather(2, y[..., None])[..., 0].T.numpy(), states

    score.vocab_size = V
    score.lm = SimpleNamespace(tokenizer=SimpleNamespace(pad_id=int(data["pad_id"])))
    started = time.perf_counter()
    logp = stream_logprobs(score, data["test_ids"], data["start"])
    seconds = time.perf_counter() - started
    loss = float(-logp.mean())
    return {
        "steps": args.steps,
        "final_train_loss": _tail_mean(losses),
        "tokens_per_s": _rate(times, args.skip, B * T),
        "peak_rss_mib": train_peak,
        "test_loss": loss,
        "test_perplexity": math.exp(min(loss, 700.0)),
        "test_tokens": len(logp),
        "eval_tokens_per_s": len(logp) / seconds,
        "eval_peak_rss_mib": _peak_rss_mib(),
    }


def _schedule_label(args) -> str:
    if args.lr_schedule == "constant":
        return "constant"
    return f"{args.lr_schedule} decay to 0 from {args.lr_decay_start:g} of the steps"


def _run_worker(side, args, shared):
    """One side in its own process; its result is the last line of its stdout."""
    argv = [sys.executable, __file__, "--worker", side, "--shared", shared, *args.passed]
    done = subprocess.run(argv, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="training steps of each side")
    parser.add_argument("--train", type=Path, default=DATA / "wikitext2.valid.txt")
    parser.add_argument("--test", type=Path, default=DATA / "wikitext2.test.txt")
    parser.add_argument("--hidden", type=int, default=650, help="hidden and embedding width")
    parser.add_argument("--dropout", type=float, default=0.2)
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--bptt", type=int, default=35)
    parser.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd")
    parser.add_argument("--lr", type=float, default=20.0)
    parser.add_argument("--lr-schedule", choices=["constant", "linear", "cosine"], default="linear",
                        help="charlm's schedule, on both sides (default: linear from --lr-decay-start)")
    parser.add_argument("--lr-decay-start", type=float, default=0.5,
                        help="fraction of the steps at the full rate before the decay (default 0.5)")
    parser.add_argument("--seed", type=int, default=0, help="charlm's initial weights and both sides' dropout")
    parser.add_argument("--clip", type=float, default=0.25, help="global gradient-norm clipping")
    parser.add_argument("--val-fraction", type=float, default=0.05, help="charlm's validation split")
    parser.add_argument("--tie-weights", action="store_true", help="the decoder is the embedding")
    parser.add_argument("--split-punctuation", action="store_true",
                        help="charlm's word rule (both sides train on its ids): punctuation as tokens of its own")
    parser.add_argument("--skip", type=int, default=5, help="first steps left out of tokens/s")
    parser.add_argument("--threads", type=int, default=2, help="PyTorch's threads")
    parser.add_argument("--torch-init", action="store_true",
                        help="Start the PyTorch peer from its own initialisation (word_language_model's) instead "
                             "of charlm's initial weights.")
    parser.add_argument("--keep", type=Path, help="Folder to keep charlm's trained model in (model.keras).")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--worker", choices=["charlm", "torch"], help=argparse.SUPPRESS)
    parser.add_argument("--shared", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker = charlm_worker if args.worker == "charlm" else torch_worker
        result = worker(args, args.shared)
        print(json.dumps(result), flush=True)
        return
    for path in (args.train, args.test):
        if not path.exists():
            sys.exit(f"{path} is absent (WikiText-2 lives in ../shared/data/corpora/)")
    try:
        import torch  # noqa: F401
    except ImportError:
        sys.exit("PyTorch is not installed: this benchmark compares charlm with it")
    args.passed = [a for a in sys.argv[1:] if a != "--json"]
    with tempfile.TemporaryDirectory() as tmp:
        shared = os.path.join(tmp, "shared.npz")
        results = {"charlm": _run_worker("charlm", args, shared)}
        results["torch"] = _run_worker("torch", args, shared)
    c, t = results["charlm"], results["torch"]
    results["tokens_per_s_ratio"] = c["tokens_per_s"] / t["tokens_per_s"] if c["tokens_per_s"] and t["tokens_per_s"] else None
    results["settings"] = {k: v for k, v in vars(args).items() if k not in ("worker", "shared", "passed", "json")}
    results["settings"].update(train=str(args.train), test=str(args.test))
    if args.json:
        print(json.dumps(results, default=str))  # --keep is a path
        return
    print(f"LSTM 2x{args.hidden}, vocabulary {c['vocab_size']:,} words, {args.steps} steps of "
          f"{args.batch_size}x{args.bptt}, {args.optimizer} lr {args.lr:g} ({_schedule_label(args)}), "
          f"clip {args.clip:g}, dropout {args.dropout:g}{', tied' if args.tie_weights else ''}, seed {args.seed}")
    print(f"test: {c['test_tokens']:,} tokens, {c['test_oov_rate']:.1%} <unk>")
    for name, r in (("charlm", c), ("torch", t)):
        rate = f"{r['tokens_per_s']:7,.0f} tok/s" if r["tokens_per_s"] else "(too few steps)"
        print(f"  {name:6s} test perplexity {r['test_perplexity']:9.2f} | training loss (last 20 steps) "
              f"{r['final_train_loss']:.3f} | training {rate} | "
              f"eval {r['eval_tokens_per_s']:7,.0f} tok/s | peak RSS {r['peak_rss_mib']:,.0f} MiB training, "
              f"{r['eval_peak_rss_mib']:,.0f} MiB after eval")
    ratio = results["tokens_per_s_ratio"]
    print(f"charlm / torch training tokens/s: {ratio:.2f}x" if ratio else "too few steps for a rate")


if __name__ == "__main__":
    main()
