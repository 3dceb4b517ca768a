"""Training-step throughput of charlm.nn.kernels against plain Keras layers and PyTorch.

The model is the one charlm trains: Embedding(V, E) -> L stacked recurrent layers of width H ->
Dense(V), sparse softmax cross-entropy over B x T tokens, global-norm gradient clipping at 5.0,
Adam, recurrent states carried from one step to the next without gradient (truncated BPTT).

Each variant runs in its own worker process (so TensorFlow's and PyTorch's thread pools never
share a process), and the workers are timed in turn, A B C A B C ..., after a warm-up, because the
2-core machine is shared and noisy: compare the ratios, not the absolute figures. Variants:

    keras           keras.layers.{LSTM,GRU,SimpleRNN} in a tf.function
    keras_jit       the same with jit_compile=True
    charlm          charlm's compiled steps, exactly as `charlm train` runs a window
    charlm_eval     charlm's evaluation forward pass, as `charlm eval` runs a window of a long
                    text by default (its default streams as the batch, its default window)
    fast            charlm.nn.kernels.rnn_sequence (tf.while_loop) in a tf.function
    fast_jit        the same with jit_compile=True
    torch           torch.nn.{LSTM,GRU,RNN} (if torch is installed)

A configuration is ``cell:layers:hidden:batch``, optionally followed by ``V=`` (vocabulary, default
65), ``E=`` (embedding, default 64), ``T=`` (window, default 64) and ``opt=`` (adam, the default,
or sgd), e.g. ``lstm:2:650:20:V=33000:E=650:T=35`` for a word model. Every worker reports its peak
resident memory (the process's maximum RSS: the framework, the model, the optimizer and the
step's temporaries).

Example:
    python scripts/bench_kernels.py                       # the standard configurations
    python scripts/bench_kernels.py --configs lstm:2:256:64 --variants keras,fast_jit,torch
"""

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

CLIP = 5.0
LR = {"adam": 2e-3, "sgd": 1.0}  # Adam: charlm's default; the rate does not change the speed
# cell:layers:hidden:batch
DEFAULT_CONFIGS = ["lstm:2:256:64", "gru:2:256:64", "rnn:2:256:64", "lstm:2:256:32",
                   "lstm:2:512:128"]
DEFAULT_VARIANTS = ["keras", "fast", "fast_jit", "torch"]
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # for charlm imports


@dataclass(frozen=True)
class Config:
    """One benchmarked model and its training shape (see the module docstring for the syntax)."""

    cell: str
    layers: int
    hidden: int
    batch: int
    vocab: int = 65
    embedding: int = 64
    bptt: int = 64
    optimizer: str = "adam"

    def label(self) -> str:
        """E.g. "lstm 2x256 B=64", with V, E, T and the optimizer where they are not the defaults."""
        defaults = Config(self.cell, self.layers, self.hidden, self.batch)
        extra = [f"{key}={getattr(self, name)}" for key, (name, _) in _KEYS.items()
                 if getattr(self, name) != getattr(defaults, name)]
        return " ".join([f"{self.cell} {self.layers}x{self.hidden} B={self.batch}", *extra])


_KEYS = {"V": ("vocab", int), "E": ("embedding", int), "T": ("bptt", int), "opt": ("optimizer", str)}


def _parse_config(text) -> Config:
    """``cell:layers:hidden:batch[:V=..][:E=..][:T=..][:opt=..]`` -> :class:`Config`."""
    cell, layers, hidden, batch, *extra = text.split(":")
    options = {}
    for item in extra:
        key, _, value = item.partition("=")
        if key not in _KEYS:
            raise SystemExit(f"unknown key {key!r} in configuration {text!r} (V=, E=, T=, opt=)")
        name, kind = _KEYS[key]
        options[name] = kind(value)
    config = Config(cell, int(layers), int(hidden), int(batch), **options)
    if config.optimizer not in LR:
        raise SystemExit(f"opt= takes adam or sgd, got {config.optimizer!r}")
    return config


def _random_windows(rows, length, n, vocab):
    """n (inputs, targets) pairs of random token ids below ``vocab``, each (rows, length) int32,
    the same in every worker."""
    import tensorflow as tf

    gen = tf.random.Generator.from_seed(1)
    def ids():
        return gen.uniform((rows, length), 0, vocab, tf.int32)

    return [(ids(), ids()) for _ in range(n)]


def _tf_worker(variant, config, threads, inter_op):
    """Returns step(): one training step with the TensorFlow variant, synchronised."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(inter_op)
    import keras

    from charlm.nn.kernels import rnn_sequence

    cell, layers, hidden, batch = config.cell, config.layers, config.hidden, config.batch
    V, E, T = config.vocab, config.embedding, config.bptt
    layer_cls = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU,
                 "rnn": keras.layers.SimpleRNN}[cell]
    n_states = 2 if cell == "lstm" else 1
    keras.utils.set_random_seed(0)
    emb = keras.layers.Embedding(V, E)
    rnns = [layer_cls(hidden, return_sequences=True, return_state=True) for _ in range(layers)]
    dense = keras.layers.Dense(V)
    emb.build((batch, T))
    for i, layer in enumerate(rnns):
        layer.build((batch, T, E if i == 0 else hidden))
    dense.build((batch, T, hidden))
    variables = emb.trainable_variables + dense.trainable_variables + [
        v for layer in rnns for v in layer.trainable_variables]
    opt_cls = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD}[config.optimizer]
    opt = opt_cls(learning_rate=LR[config.optimizer])
    opt.build(variables)
    states = [[tf.Variable(tf.zeros((batch, hidden)), trainable=False) for _ in range(n_states)]
              for _ in rnns]
    fast = variant.startswith("fast")

    @tf.function(jit_compile=variant.endswith("jit"))
    def train_step(x, y):
        with tf.GradientTape() as tape:
            h = emb(x)
            finals = []
            for layer, st in zip(rnns, states):
                init = [s.value() for s in st]
                if fast:
                    h, fs = rnn_sequence(cell, h, init, layer.cell.kernel,
                                         layer.cell.recurrent_kernel, layer.cell.bias)
                else:
                    h, *fs = layer(h, initial_state=init)
                finals.append(fs)
            logits = dense(h)
            loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        grads = tape.gradient(loss, variables)
        grads, _ = tf.clip_by_global_norm(grads, CLIP)
        opt.apply_gradients(zip(grads, variables))
        for st, fs in zip(states, finals):
            for s, f in zip(st, fs):
                s.assign(f)
        return loss

    data = _random_windows(batch, T, 4, V)
    counter = [0]

    def step():
        x, y = data[counter[0] % len(data)]
        counter[0] += 1
        return float(train_step(x, y))

    return step


def _charlm_worker(variant, config, threads, inter_op):
    """Returns step(): one window through charlm's own compiled steps, as ``charlm train`` runs it
    (variant "charlm"), or one window of evaluation as ``charlm eval`` runs it ("charlm_eval")."""
    # charlm's backend first, as `charlm train` starts: it sets the environment TensorFlow and
    # XLA read at start-up (the pooling allocator, XLA's region analysis).
    from charlm.runtime import import_keras

    keras = import_keras()
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(inter_op)
    from charlm.config import ModelConfig, StreamSettings, TrainConfig
    from charlm.data.tokenizers import CharTokenizer
    from charlm.evaluate import TokenScorer, pass_window
    from charlm.nn.lm import LanguageModel
    from charlm.nn.model import build_model
    from charlm.training.steps import CompiledSteps

    V, T, batch = config.vocab, config.bptt, config.batch
    keras.utils.set_random_seed(0)
    model_config = ModelConfig(cell=config.cell, layers=config.layers, hidden=config.hidden,
                               embedding=config.embedding)
    model = build_model(model_config, V)
    counter = [0]
    if variant == "charlm_eval":
        # The shape `charlm eval` reads a long text in, whatever the training batch: its default
        # streams, in windows as long as its bound on the logits allows.
        rows = StreamSettings().streams
        window = pass_window(rows, V)
        tokenizer = CharTokenizer([f"{i}" if i < 10 else chr(0x100 + i) for i in range(V)])
        scorer = TokenScorer(LanguageModel(model, tokenizer, model_config))
        data = [(x.numpy(), y.numpy()) for x, y in _random_windows(rows, window, 2, V)]
        eval_states = [None]

        def eval_step():
            x, y = data[counter[0] % len(data)]
            counter[0] += 1
            logp, eval_states[0] = scorer(x, y, eval_states[0])
            return float(logp[0, 0])

        eval_step.tokens = rows * window
        return eval_step
    data = _random_windows(batch, T, 4, V)
    train_config = TrainConfig(batch_size=batch, bptt=T, clipnorm=CLIP, optimizer=config.optimizer,
                               lr=LR[config.optimizer])
    trainer = CompiledSteps(model, model_config, train_config)
    states = [trainer.zero_states(batch)]

    def step():
        x, y = data[counter[0] % len(data)]
        counter[0] += 1
        loss, _, states[0] = trainer.train_step(x, y, states[0])
        return float(loss)

    return step


def _torch_worker(config, threads):
    """Returns step(): one training step with torch.nn.{LSTM,GRU,RNN}."""
    import torch

    cell, layers, hidden, batch = config.cell, config.layers, config.hidden, config.batch
    V, E, T = config.vocab, config.embedding, config.bptt
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    rnn_cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell]
    emb = torch.nn.Embedding(V, E)
    rnn = rnn_cls(E, hidden, num_layers=layers, batch_first=True)
    fc = torch.nn.Linear(hidden, V)
    params = list(emb.parameters()) + list(rnn.parameters()) + list(fc.parameters())
    opt_cls = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}[config.optimizer]
    opt = opt_cls(params, lr=LR[config.optimizer])
    loss_fn = torch.nn.CrossEntropyLoss()
    zeros = torch.zeros(layers, batch, hidden)
    hidden_state = [(zeros, zeros.clone()) if cell == "lstm" else zeros]
    data = [(torch.randint(0, V, (batch, T)), torch.randint(0, V, (batch, T)))
            for _ in range(4)]
    counter = [0]

    def detach(h):
        return tuple(t.detach() for t in h) if isinstance(h, tuple) else h.detach()

    def step():
        x, y = data[counter[0] % len(data)]
        counter[0] += 1
        out, h = rnn(emb(x), detach(hidden_state[0]))
        hidden_state[0] = h
        loss = loss_fn(fc(out).reshape(-1, V), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, CLIP)
        opt.step()
        return float(loss)

    return step


def _worker(args):
    """Serves 'N' on stdin: runs N steps, answers 'wall_s cpu_s tokens peak_rss_bytes' on
    stdout."""
    config = _parse_config(args.worker_config)
    if args.worker == "torch":
        step = _torch_worker(config, args.threads)
    elif args.worker.startswith("charlm"):
        step = _charlm_worker(args.worker, config, args.threads, args.inter_op)
    else:
        step = _tf_worker(args.worker, config, args.threads, args.inter_op)
    tokens = getattr(step, "tokens", config.batch * config.bptt)  # per step: B x T, or an evaluation window's
    out = sys.stdout
    sys.stdout = sys.stderr  # keep library chatter off the protocol channel
    for line in sys.stdin:
        n = int(line)
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(n):
            step()
        wall, cpu_s = time.perf_counter() - start, time.process_time() - cpu
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: kilobytes
        print(wall, cpu_s, n * tokens, peak, file=out, flush=True)


class _Worker:
    """A worker process timing one variant of one configuration."""

    def __init__(self, variant, config, args):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
                   PYTHONPATH=os.pathsep.join(filter(None, [_REPO, os.environ.get("PYTHONPATH")])))
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--worker", variant, "--worker-config", config,
             "--threads", str(args.threads), "--inter-op", str(args.inter_op)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env=env)

    def run(self, n):
        self.proc.stdin.write(f"{n}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("worker died")
        wall, cpu, tokens, peak = line.split()
        self.peak_rss = int(peak)
        return float(wall), float(cpu), int(tokens)

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()



def _bench_config(config, variants, args):
    """Interleaved rounds over the variants.

    Returns ({variant: first-step seconds}, {variant: [tokens per wall second, per round]},
    {variant: [tokens per process CPU second, per round]}, {variant: peak RSS in bytes})."""
    workers = {}
    for v in variants:
        workers[v] = _Worker(v, config, args)
    try:
        first = {v: w.run(1)[0] for v, w in workers.items()}  # tracing + compilation
        for w in workers.values():
            w.run(args.warmup)
        rates = {v: [] for v in variants}
        cpu_rates = {v: [] for v in variants}
        for _ in range(args.rounds):
            for v, w in workers.items():
                wall, cpu, tokens = w.run(args.steps)
                rates[v].append(tokens / wall)
                cpu_rates[v].append(tokens / cpu)
        peaks = {v: w.peak_rss for v, w in workers.items()}
    finally:
        for w in workers.values():
            w.close()
    return first, rates, cpu_rates, peaks


def _matmul_ceiling(threads):
    """fp32 GFLOP/s of a 2048^3 product and of one recurrent-step-sized product, for context
    (the best of five timings of about 20 GFLOP each)."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    result = {}
    for m, k, n in [(2048, 2048, 2048), (64, 256, 1024)]:
        a, b = tf.random.normal((m, k)), tf.random.normal((k, n))
        reps = max(1, int(2e10 / (2 * m * k * n)))

        @tf.function
        def loop(a=a, b=b, reps=reps):
            acc = tf.zeros((m, n))
            for _ in tf.range(reps):
                acc += tf.matmul(a, b)
            return acc

        loop().numpy()
        best = float("inf")
        for _ in range(5):  # the best of five: a ceiling, and the machine is shared
            start = time.perf_counter()
            loop().numpy()
            best = min(best, time.perf_counter() - start)
        result[f"{m}x{k}x{n}"] = 2 * m * k * n * reps / best / 1e9
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", default=",".join(DEFAULT_CONFIGS),
                        help="comma-separated cell:layers:hidden:batch[:V=..][:E=..][:T=..][:opt=..]")
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=8, help="training steps per measurement")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads (TF and torch)")
    parser.add_argument("--inter-op", type=int, default=1, help="TF inter-op threads")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--worker-config", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args)
        return

    variants = args.variants.split(",")
    if "torch" in variants:
        try:
            import torch  # noqa: F401
        except ImportError:
            print("torch not installed: skipping the torch variant")
            variants.remove("torch")
    print(f"clip {CLIP}; intra-op threads {args.threads}, "
          f"TF inter-op threads {args.inter_op}; {args.rounds} rounds x {args.steps} steps")
    ceiling = _matmul_ceiling(args.threads)
    print("matmul GFLOP/s: " + ", ".join(f"{k} {v:.0f}" for k, v in ceiling.items()))
    print("wall: median tokens/s [min-max]; cpu: median tokens per process CPU-second (less "
          "sensitive to other load, but spinning thread pools count as work)")
    for config in args.configs.split(","):
        first, rates, cpu_rates, peaks = _bench_config(config, variants, args)
        print(f"\n{_parse_config(config).label()}")
        for name, table in (("wall", rates), ("cpu", cpu_rates)):
            med = {v: statistics.median(r) for v, r in table.items()}
            for v in variants:
                ratios = [f"{med[v] / med[ref]:.2f}x {ref}" for ref in ("keras", "torch")
                          if ref in med and v != ref]
                extra = (f" first step {first[v]:.1f}s, peak RSS {peaks[v] / 2**20:,.0f} MiB"
                         if name == "wall" else "")
                print(f"  {name:4s} {v:10s} {med[v]:8.0f} [{min(table[v]):.0f}-"
                      f"{max(table[v]):.0f}]  {', '.join(ratios)}{extra}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
