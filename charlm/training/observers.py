"""Observers: what watches a run as it trains, and the two that every run can use.

- :class:`Observer` is the interface: hooks the run calls; the defaults do nothing.
- :class:`SampleObserver` generates a short sample every N steps (or at each
  epoch end) with a fixed seed, so samples from different steps of a run differ
  only by what the model learned in between. It prints them through the run's
  log, appends them to ``samples.txt`` in the run directory and, given a
  :class:`charlm.training.tensorboard.TensorBoardObserver`, writes them as text summaries.
- :class:`StepLogObserver` appends one line per step to ``steps.csv`` in the run
  directory (step, tokens_seen, loss, grad_norm, lr), which ``charlm plot`` draws.

Agreement accuracy per epoch is :class:`charlm.agreement.observer.AgreementObserver`.
"""

from __future__ import annotations

import sys

from charlm.config import SampleConfig
from charlm.sample import Sampler

# The columns of a run's history row, one per validation; observers may add more.
HISTORY_FIELDS = (
    "epoch", "step", "tokens_seen", "train_loss", "val_loss", "val_bits_per_char",
    "val_perplexity", "tokens_per_s", "seconds", "saved",
)
STEP_LOG = "steps.csv"
STEP_LOG_FIELDS = ("step", "tokens_seen", "loss", "grad_norm", "lr")
SAMPLE_LOG = "samples.txt"


class Observer:
    """Something that watches a run (TensorBoard, samples, agreement accuracy).

    The run (:class:`charlm.training.run.Run`) calls these hooks; the defaults do nothing.
    ``run`` gives access to ``run.lm`` (the :class:`charlm.nn.lm.LanguageModel` being
    trained), ``run.out_dir``, ``run.model_config``, ``run.train_config``, ``run.data`` and
    ``run.log``.
    """

    def on_train_begin(self, run):
        pass

    def on_step_end(self, run, step: int, logs: dict):
        """After every training step; ``logs``: loss, grad_norm, clipped (bool), lr, tokens_per_s."""

    def on_epoch_end(self, run, epoch: int, row: dict) -> dict | None:
        """After each validation (an epoch's end, or a run's end inside one), with the history
        row (:data:`HISTORY_FIELDS`); may return extra columns for it (e.g. agreement accuracy)."""

    def on_train_end(self, run, summary: dict):
        pass


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
        self.every = every
        self.prompt = prompt
        self.echo = echo
        self.tensorboard = tensorboard
        self.sample_config = SampleConfig(length=length, temperature=temperature, seed=seed)  # checks the settings
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
            # Variables, refreshed before each sample: its compiled loops are built once per
            # run, where a sampler with the weights as constants would recompile every time.
            self._sampler = Sampler(run.lm, variables=True)
        self._sampler.refresh()
        text = self._sampler.run(self.prompt, self.sample_config)[0].text
        self.samples.append((step, text))
        header = f"sample at step {step} (seed {self.sample_config.seed}, prompt {self.prompt!r})"
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
        self._tokens_per_step = run.data.train.tokens_per_window

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
