"""Which units an agreement suite needs: each unit ablated in turn (see :mod:`charlm.inspect.ablation`),
ranked, set against random units, ablated cumulatively, and whole layers ablated.

Every item falls in a group, condition × subject number × attractor count. A unit's *effect* is
the change of accuracy it causes (ablated minus intact), on all items (``rank_by="overall"``) or
on its worst group of at least :data:`MIN_GROUP` items (``"worst"``, the default: a unit that
carries one number across an attractor, as Lakretz et al. found, hurts a few groups and may help
others, so that overall accuracy hides it). Units are ranked by effect, most harmful first.

Which units are ablated one at a time:

- ``full``: every unit. The reference distribution of effects (the *null*) is every unit's.
- ``attribution``: the ``top_k`` units that the gradient estimate of
  :mod:`charlm.inspect.attribution` ranks first, and ``random_units`` units drawn at random
  (seeded), whose effects form the null.
- ``given``: the units asked for, and the random ones.
- ``auto`` (the default): ``full`` when ablating every unit is estimated to take at most
  ``budget_s`` seconds (from the time of the first ablations, of random units), else
  ``attribution``. The result says which was done, and why.

Each ranked unit's effect is set against the null: ``z`` = (effect − null mean) / null standard
deviation, and ``as_harmful``, the fraction of the null's units whose effect is as harmful or
more (lower or equal). The cumulative curve ablates the first k ranked units together, k = 1, 2,
4, ... up to ``top_k``, beside ``random_sets`` random sets of k units each.
"""

from __future__ import annotations

import time

import numpy as np

from charlm.inspect.ablation import Ablator
from charlm.inspect.attribution import margin_gradients

MIN_GROUP = 20  # items a group needs to be a unit's worst group (smaller ones move by big steps)
SWEEP_BUDGET_S = 600.0  # auto: ablate every unit when that is estimated to take at most this
TIMING_PASSES = 2  # ablations timed before the auto choice


def ablation_study(lm, items, skips=(), *, units=None, mode: str = "auto", top_k: int = 64,
                   random_units: int = 32, random_sets: int = 3, rank_by: str = "worst", seed: int = 0,
                   budget_s: float = SWEEP_BUDGET_S, log=None) -> dict:
    """Ablate the units of ``lm`` over agreement ``items`` (see the module docstring) and return
    a JSON-ready dict: ``method``, ``baseline``, ``units`` (ranked), ``null``, ``cumulative``,
    ``layers_ablated`` and, after an attribution, ``attribution``. ``units``: (layer 0-based,
    unit) pairs to ablate (mode ``given``); ``log``: a function of one line, for progress."""
    log = log or (lambda line: None)
    ablator = Ablator(lm, items, skips)
    config = lm.config
    every = [(layer, unit) for layer in range(config.layers) for unit in range(config.hidden)]
    rng = np.random.default_rng(seed)
    drawn = [every[k] for k in rng.permutation(len(every))]
    effects = {}  # unit -> (items,) correct with it ablated

    def ablate(chosen, what):
        todo = [u for u in dict.fromkeys(chosen) if u not in effects]
        started, step = time.perf_counter(), max(1, len(todo) // 10)
        for done, unit in enumerate(todo, 1):
            effects[unit] = ablator.correct([unit])
            if done % step == 0 and TIMING_PASSES < done < len(todo):
                left = (time.perf_counter() - started) / done * (len(todo) - done)
                log(f"{what}: {done}/{len(todo)} units ablated, about {_duration(left)} left")

    if mode == "auto" and not units:
        ablate(drawn[:TIMING_PASSES], "timing")  # random units: their effects join the null
    else:
        ablator.correct()  # a pass as long as an ablation's, to time
    per_pass = ablator.seconds
    estimate = per_pass * len(every)
    method = {"seconds_per_pass": per_pass, "estimated_full_s": estimate, "budget_s": budget_s}
    attribution = None
    if units:
        method.update(kind="given", reason=f"the {len(units)} unit(s) asked for")
        candidates = list(dict.fromkeys(units))
    elif mode == "full" or (mode == "auto" and estimate <= budget_s):
        why = "asked for (--full)" if mode == "full" else f"estimated {_duration(estimate)}, within the budget"
        method.update(kind="full", reason=f"every unit ablated: {why}")
        candidates = every
    else:
        why = ("asked for (--top-k)" if mode == "top-k" else
               f"ablating all {len(every)} would take about {_duration(estimate)}, over {_duration(budget_s)}")
        method.update(kind="attribution",
                      reason=f"the {min(top_k, len(every))} units a gradient attribution ranks first, "
                             f"and {random_units} random ones: {why}")
        log(f"ranking units by gradient attribution ({why})")
        started = time.perf_counter()
        gradients = margin_gradients(lm, ablator.scorer, ablator.items, ablator.group_of, len(ablator.groups))
        attribution = _attribution_scores(gradients, ablator.sizes, rank_by)  # (layers, H)
        order = np.argsort(-attribution.ravel(), kind="stable")[: min(top_k, len(every))]
        candidates = [every[k] for k in order]
        method["attribution_s"] = time.perf_counter() - started
    null_units = every if method["kind"] == "full" else drawn[:random_units]
    log(f"{method['reason']}; about {_duration(per_pass * len(set(candidates) | set(null_units)))}")
    ablate([*null_units, *candidates], "ablating units one at a time")

    base_accuracy, base_groups = ablator.accuracy(ablator.base)
    eligible = ablator.sizes >= MIN_GROUP if (ablator.sizes >= MIN_GROUP).any() else ablator.sizes > 0

    def effect_of(correct) -> dict:
        accuracy, groups = ablator.accuracy(correct)
        change = groups - base_groups
        worst = int(np.flatnonzero(eligible)[np.argmin(change[eligible])])
        return {"accuracy": accuracy, "change": accuracy - base_accuracy,
                "groups": dict(zip(ablator.groups, change.tolist())),
                "worst_group": ablator.groups[worst], "worst_change": float(change[worst])}

    def key(entry) -> float:
        return entry["worst_change"] if rank_by == "worst" else entry["change"]

    entries = {unit: effect_of(effects[unit]) for unit in effects}
    null = np.array([key(entries[unit]) for unit in null_units])
    mean, std = (float(null.mean()), float(null.std())) if len(null) else (None, None)
    ranked = sorted(candidates, key=lambda u: (key(entries[u]), entries[u]["change"], u))
    listed = []
    for unit in ranked:
        entry = entries[unit]
        effect = key(entry)
        listed.append({"layer": unit[0] + 1, "unit": unit[1], "effect": effect, **entry,
                       "z": (effect - mean) / std if std else None,
                       "as_harmful": float(np.mean(null <= effect)) if len(null) else None,
                       "attribution": None if attribution is None else float(attribution[unit])})
    result = {
        "cell": config.cell, "layers": config.layers, "hidden": config.hidden, "n": len(ablator.items),
        "skipped": len(ablator.skips), "rank_by": rank_by, "min_group": MIN_GROUP, "seed": seed, "method": method,
        "baseline": {"accuracy": base_accuracy,
                     "groups": {name: {"n": int(size), "accuracy": float(acc)}
                                for name, size, acc in zip(ablator.groups, ablator.sizes, base_groups)}},
        "units": listed,
        "null": {"kind": "every unit" if method["kind"] == "full" else "random units",
                 "units": [[u[0] + 1, u[1]] for u in null_units], "effects": null.tolist(), "mean": mean, "std": std},
    }
    if attribution is not None:
        ablated = list(dict.fromkeys([*candidates, *null_units]))
        result["attribution"] = {
            "scores": attribution.tolist(),
            "spearman": _spearman([attribution[u] for u in ablated], [-key(entries[u]) for u in ablated]),
        }
    log("cumulative ablation and whole layers")
    result["cumulative"] = _cumulative(ablator, ranked[:top_k], every, random_sets, rng)
    result["layers_ablated"] = [
        {"layer": layer + 1, **effect_of(ablator.correct([(layer, u) for u in range(config.hidden)]))}
        for layer in range(config.layers)]
    return result


def _attribution_scores(gradients, sizes, rank_by) -> np.ndarray:
    """Each unit's estimated harm (layers, H), in nats of margin per item: the estimated mean
    margin loss dM_g/ds / n_g on its worst eligible group (``worst``) or on all items."""
    if rank_by == "overall":
        return gradients.sum(axis=0) / sizes.sum()
    per_item = gradients / np.maximum(sizes, 1)[:, None, None]
    eligible = sizes >= MIN_GROUP if (sizes >= MIN_GROUP).any() else sizes > 0
    return per_item[eligible].max(axis=0)


def _cumulative(ablator, ranked, every, random_sets, rng) -> dict:
    """Accuracy with the first k ranked units ablated together, k = 1, 2, 4, ... len(ranked),
    and with ``random_sets`` random sets of k units (``random_units``: [layer (1-based), unit]
    of each set)."""
    ks = sorted({*(2 ** p for p in range(len(ranked).bit_length()) if 2 ** p <= len(ranked)), len(ranked)} - {0})
    top, random, drawn = [], [], []
    for k in ks:
        accuracy, groups = ablator.accuracy(ablator.correct(ranked[:k]))
        top.append({"accuracy": accuracy, "groups": dict(zip(ablator.groups, groups.tolist()))})
        sets = [[every[i] for i in rng.choice(len(every), size=k, replace=False)] for _ in range(random_sets)]
        random.append([ablator.accuracy(ablator.correct(units))[0] for units in sets])
        drawn.append([[[layer + 1, unit] for layer, unit in units] for units in sets])
    return {"k": ks, "top": top, "random": random, "random_units": drawn}


def _spearman(a, b) -> float | None:
    """Spearman's rank correlation of two sequences (average ranks for ties); None when either
    does not vary."""
    ranks = [_ranks(np.asarray(x, float)) for x in (a, b)]
    if len(ranks[0]) < 2 or min(r.std() for r in ranks) == 0:
        return None
    return float(np.corrcoef(*ranks)[0, 1])


def _ranks(x) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x))
    for value in np.unique(x):  # ties share their mean rank
        same = x == value
        ranks[same] = ranks[same].mean()
    return ranks


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"
