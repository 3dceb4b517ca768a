"""Observers that watch a run as it trains: samples every N steps, and a per-step loss log.

- :class:`SampleObserver` generates a short sample every N steps (or at each
  epoch end) with a fixed seed, so samples from different steps of a run differ
  only by what the model learned in between. It prints them through the run's
  log, appends them to ``samples.txt`` in the run directory and, given a
  :class:`charlm.training.tensorboard.TensorBoardObserver`, writes them as text summaries.
- :class:`StepLogObserver` appends one line per step to ``steps.csv`` in the run
  directory (step, tokens_seen, loss, grad_norm, lr), which ``charlm plot`` draws.
"""

from __future__ import annotations

import sys

from charlm.training.run import Observer

STEP_LOG = "steps.csv"
STEP_LOG_FIELDS = ("step", "tokens_seen", "loss", "grad_norm", "lr")
SAMPLE_LOG = "samples.txt"


class SampleObserver(Observer):
    """Prints a sample of the model being trained every ``every`` steps.

    Args:
        every: steps between samples; None: one sample at the end of each epoch.
        length: tokens per sample.
        prompt: the text each sample continues ("" starts from a fresh state).
        seed: the sampling seed, the same for every sample of the run.
        temperature: softmax temperature (None: 1.0).
        echo: print the samples through the run's log.
        tensorboard: a :class:`charlm.training.tensorboard.TensorBoardObserver` to log them to.
    """

    def __init__(self, every: int | None = None, length: int = 200, prompt: str = "", seed: int = 0,
                 temperature: float | None = None, echo: bool = True, tensorboard=None):
        from charlm.sample import SampleConfig

        self.every = every
        self.prompt = prompt
        self.echo = echo
        self.tensorboard = tensorboard
        self.config = SampleConfig(length=length, temperature=temperature, seed=seed)  # checks the settings
        self.samples: list[tuple[int, str]] = []  # (step, generated text)
        self._sampler = None

    def on_step_end(self, run, step, logs):
        if self.every and step % self.every == 0:
            self.sample(run, step)

    def on_epoch_end(self, run, epoch, row):
        if not self.every:
            self.sample(run, row["step"])

    def sample(self, run, step: int) -> str:
        """Generate one sample from the model's current weights and report it."""
        if self._sampler is None:
            self._sampler = _LiveSampler(run.lm)
        text = self._sampler.generate(self.prompt, self.config)
        self.samples.append((step, text))
        header = f"sample at step {step} (seed {self.config.seed}, prompt {self.prompt!r})"
        if self.echo:
            # A progress bar redrawn in place on a terminal has no newline yet.
            lead = "\n" if getattr(run, "show_progress", False) and sys.stderr.isatty() else ""
            run.log(f"{lead}--- {header} ---\n{self.prompt}{text}\n---")
        if run.out_dir is not None:
            with open(run.out_dir / SAMPLE_LOG, "a", encoding="utf-8") as f:
                f.write(f"--- {header} ---\n{self.prompt}{text}\n\n")
        if self.tensorboard is not None:
            # Markdown: a code block keeps line breaks and spacing as generated.
            self.tensorboard.add_text("samples/text", f"```\n{self.prompt}{text}\n```", step)
        return text


class _LiveSampler:
    """A :class:`charlm.sample.Sampler` whose weights are variables refreshed before each
    sample, so its XLA-compiled loops are built once per run rather than once per sample
    (a fresh Sampler bakes the weights in as constants and recompiles: seconds each time)."""

    def __init__(self, lm):
        self.lm = lm
        self.sampler = variable_sampler(lm)

    def generate(self, prompt: str, config) -> str:
        from charlm.sample import Sampler

        fresh = Sampler(self.lm)  # reads the current weights; compiles nothing until called
        values = [v for layer in fresh.layers for _, v in sorted(layer.items())] + [fresh.dense_w, fresh.dense_b]
        for variable, value in zip(sampler_variables(self.sampler), values):
            variable.assign(value)
        return self.sampler.run(prompt, config)[0].text


def variable_sampler(lm):
    """A :class:`charlm.sample.Sampler` of ``lm`` whose weights are ``tf.Variable``s
    rather than constants: they can be re-assigned without recompiling, and a SavedModel
    stores them as variables. Returns the sampler; ``sampler_variables(s)`` lists them."""
    import tensorflow as tf

    from charlm.sample import Sampler

    s = Sampler(lm)
    s.layers = [{k: tf.Variable(v, trainable=False, name=k) for k, v in layer.items()} for layer in s.layers]
    s.dense_w = tf.Variable(s.dense_w, trainable=False, name="dense_w")
    s.dense_b = tf.Variable(s.dense_b, trainable=False, name="dense_b")
    return s


def sampler_variables(sampler) -> list:
    """The weight variables of a :func:`variable_sampler`, in a fixed order."""
    return [v for layer in sampler.layers for _, v in sorted(layer.items())] + [sampler.dense_w, sampler.dense_b]


class StepLogObserver(Observer):
    """Appends ``step,tokens_seen,loss,grad_norm,lr`` per training step to ``steps.csv``.

    Lines are appended (flushed every ``flush_every`` steps and at each epoch end),
    so a run that stops early keeps its log; ``charlm plot`` keeps the last line
    for a step that appears twice (a resumed run).
    """

    def __init__(self, flush_every: int = 100):
        self.flush_every = flush_every
        self._file = None

    def on_train_begin(self, run):
        path = run.out_dir / STEP_LOG
        new = not path.exists() or path.stat().st_size == 0
        self._file = open(path, "a", encoding="utf-8")
        if new:
            self._file.write(",".join(STEP_LOG_FIELDS) + "\n")
        data = getattr(run, "data", None)
        config = run.config
        self._tokens_per_step = data.train.tokens_per_window if data is not None else config.batch_size * config.bptt

    def on_step_end(self, run, step, logs):
        self._file.write(
            f"{step},{step * self._tokens_per_step},{logs['loss']:.6g},{logs['grad_norm']:.6g},{logs['lr']:.6g}\n"
        )
        if step % self.flush_every == 0:
            self._file.flush()

    def on_epoch_end(self, run, epoch, row):
        self._file.flush()

    def on_train_end(self, run, summary):
        self._file.close()
        self._file = None


def monitoring_observers(tensorboard=None, sample_every: int | None = None, sample_length: int = 200,
                         sample_prompt: str = "", seed: int = 0) -> list[Observer]:
    """The observers ``charlm train``'s monitoring flags ask for: always the step log;
    TensorBoard given a directory; samples every ``sample_every`` steps (printed), or,
    with TensorBoard but no ``sample_every``, one per epoch for TensorBoard only."""
    observers: list[Observer] = [StepLogObserver()]
    board = None
    if tensorboard:
        from charlm.training.tensorboard import TensorBoardObserver

        board = TensorBoardObserver(tensorboard)
        observers.append(board)
    if sample_every or board is not None:
        observers.append(SampleObserver(sample_every, sample_length, sample_prompt, seed,
                                        echo=bool(sample_every), tensorboard=board))
    return observers
