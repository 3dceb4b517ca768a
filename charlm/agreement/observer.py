"""Agreement accuracy after every training epoch (``charlm train --agreement FILE``)."""

from __future__ import annotations

from charlm.agreement.formats import describe_skips, load
from charlm.agreement.gym_scoring import run_syntaxgym
from charlm.agreement.scoring import ItemScorer, run_agreement
from charlm.errors import CharlmError
from charlm.training.observers import Observer


class AgreementObserver(Observer):
    """Scores the agreement data at ``paths`` at the end of every epoch.

    Agreement items add ``agreement_accuracy`` and ``agreement_<condition>`` (one per
    condition) to the history row; SyntaxGym suites add ``syntaxgym_score`` (the mean over
    suites) and ``syntaxgym_<suite>``; each logs one line. The data is read here, when the
    observer is made, so a bad file stops the run before any training.
    """

    def __init__(self, paths, fmt: str = "auto", method: str = "sentence"):
        paths = [paths] if isinstance(paths, str) or hasattr(paths, "__fspath__") else list(paths)
        self.loaded = load(paths, fmt, method)
        if not self.loaded.items and not self.loaded.suites:
            names = ", ".join(str(p) for p in paths)
            skips = [*self.loaded.skips, *self.loaded.suite_skips]
            raise CharlmError(f"--agreement {names}: no usable agreement items ({describe_skips(skips)})")
        self.scorer = None

    def on_train_begin(self, run):
        self.scorer = ItemScorer(run.lm)

    def on_epoch_end(self, run, epoch: int, row: dict) -> dict:
        extra = {}
        if self.loaded.items:
            extra.update(self._agreement(run, epoch))
        if self.loaded.suites:
            extra.update(self._syntaxgym(run, epoch))
        return extra

    def _agreement(self, run, epoch: int) -> dict:
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

    def _syntaxgym(self, run, epoch: int) -> dict:
        summary = run_syntaxgym(run.lm, self.loaded.suites, self.loaded.suite_skips, self.scorer).summary
        suites = [s for s in summary["suites"] if s["n"]]
        detail = ", ".join(f"{s['name']} {s['accuracy']:.3f}" for s in suites)
        score = summary["score"]
        run.log(f"epoch {epoch}: SyntaxGym score {'n/a' if score is None else f'{score:.4f}'} over "
                f"{summary['n_suites']} suites, {summary['n_items']} items" + (f" ({detail})" if detail else ""))
        extra = {"syntaxgym_score": score}
        extra.update({f"syntaxgym_{s['name']}": s["accuracy"] for s in suites})
        return extra
