"""What bench_dropout.py, bench_tied.py, bench_ema.py and bench_regularisers.py share: charlm's
compiled training steps timed in turn on the same windows, in one process, and the flags for it.

Each trainer is a :class:`charlm.training.steps.CompiledSteps`; after ``args.warmup`` steps each,
``args.rounds`` stretches of ``args.steps`` steps are timed alternately (A B A B ...), and each
trainer's median tokens/s is returned.
"""

import statistics
import time


def start_tensorflow(threads: int):
    """Start TensorFlow as `charlm train` does, on ``threads`` intra-op threads."""
    from charlm.runtime import import_keras

    import_keras()  # first, as `charlm train` starts: it sets what TensorFlow and XLA read at start
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)


def add_timing_arguments(parser, steps: int = 4, warmup: int = 2):
    """The flags every script timing with :func:`time_in_turn` takes: --rounds, --steps, --warmup,
    --threads and --json."""
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=steps, help="training steps per timed stretch")
    parser.add_argument("--warmup", type=int, default=warmup)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true")


def time_in_turn(trainers: dict, vocab: int, args) -> dict:
    """{key: median training tokens/s} of ``trainers`` ({key: CompiledSteps}), timed in turn on
    the same four random windows of ``args.batch`` x ``args.bptt`` token ids below ``vocab``."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    windows = [tf.constant(rng.integers(0, vocab, (args.batch, args.bptt)), tf.int32) for _ in range(4)]
    states = {key: trainer.zero_states(args.batch) for key, trainer in trainers.items()}

    def stretch(key, steps):
        trainer = trainers[key]
        start = time.perf_counter()
        for i in range(steps):
            loss, _, states[key] = trainer.train_step(windows[i % 4], windows[(i + 1) % 4], states[key])
        float(loss)  # wait for the last step
        return steps * args.batch * args.bptt / (time.perf_counter() - start)

    for key in trainers:
        stretch(key, args.warmup)
    rates = {key: [] for key in trainers}
    for _ in range(args.rounds):
        for key in trainers:
            rates[key].append(stretch(key, args.steps))
    return {key: statistics.median(values) for key, values in rates.items()}
