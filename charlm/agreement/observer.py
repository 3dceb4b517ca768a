"""Agreement accuracy after every training epoch (``charlm train --agreement FILE``)."""

from __future__ import annotations

from charlm.agreement.formats import describe_skips, load
from charlm.agreement.scoring import ItemScorer, run_agreement
from charlm.errors import CharlmError
from charlm.training.observers import Observer


class AgreementObserver(Observer):
    """Scores the agreement data at ``paths`` at the end of every epoch.

    Adds ``agreement_accuracy`` and ``agreement_<condition>`` (one per condition)
    to the history row and logs one line. The data is read here, when the
    observer is made, so a bad file stops the run before any training.
    """

    def __init__(self, paths, fmt: str = "auto", method: str = "sentence"):
        paths = [paths] if isinstance(paths, str) or hasattr(paths, "__fspath__") else list(paths)
        self.loaded = load(paths, fmt, method)
        if not self.loaded.items:
            names = ", ".join(str(p) for p in paths)
            raise CharlmError(f"--agreement {names}: no usable agreement items ({describe_skips(self.loaded.skips)})")
        self.scorer = None

    def on_train_begin(self, run):
        self.scorer = ItemScorer(run.lm)

    def on_epoch_end(self, run, epoch: int, row: dict) -> dict:
        summary = run_agreement(run.lm, loaded=self.loaded, scorer=self.scorer).summary
        low, high = summary["ci95"]
        conditions = summary["by_condition"]
        detail = ", ".join(f"{name} {group['accuracy']:.3f}" for name, group in conditions.items())
        skipped = f", {summary['skipped']} skipped" if summary["skipped"] else ""
        run.log(f"epoch {epoch}: agreement accuracy {summary['accuracy']:.4f} [{low:.3f}, {high:.3f}] "
                f"on {summary['n']} items{skipped}" + (f" ({detail})" if detail else ""))
        extra = {"agreement_accuracy": summary["accuracy"]}
        extra.update({f"agreement_{name}": group["accuracy"] for name, group in conditions.items()})
        return extra
