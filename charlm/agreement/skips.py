"""What an agreement file held that could not be scored, and how it is reported: nothing is
dropped without a :class:`Skip` record."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Skip:
    """``count`` items of ``source`` that could not be scored, and why (with the items'
    ``condition`` where the skip is of one item whose condition is known)."""

    source: str
    reason: str
    count: int = 1
    line: int | None = None
    condition: str | None = None


def describe_skips(skips) -> str:
    """What was skipped, in one line: counts of items per reason, then unusable files."""
    counts = {}
    for skip in skips:
        if skip.count:
            counts[skip.reason] = counts.get(skip.reason, 0) + skip.count
    parts = [f"{n} item{'s' * (n != 1)}: {reason}" for reason, n in counts.items()]
    parts += [f"{skip.source}: {skip.reason}" for skip in skips if not skip.count]
    return "; ".join(parts)
