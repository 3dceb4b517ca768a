"""A one-line progress display on stderr: step, loss and tokens/s.

On a terminal the line is redrawn in place a few times a second; elsewhere (a
log file, CI) a plain line is printed every tenth of the epoch.
"""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total_steps: int, label: str, enabled: bool = True, stream=None):
        self.stream = stream or sys.stderr
        self.total = max(1, total_steps)
        self.label = label
        self.enabled = enabled
        self.interactive = enabled and self.stream.isatty()
        self.start = time.perf_counter()
        self.last_draw = 0.0
        self.next_milestone = 0.1

    def update(self, step: int, loss: float, tokens: int):
        """``step`` steps done in this segment, ``tokens`` trained in it, latest ``loss``."""
        if not self.enabled:
            return
        now = time.perf_counter()
        elapsed = max(now - self.start, 1e-9)
        fraction = step / self.total
        if self.interactive:
            if now - self.last_draw < 0.25 and step < self.total:
                return
            self.last_draw = now
            width = 24
            filled = int(width * fraction)
            bar = "█" * filled + "·" * (width - filled)
            eta = elapsed / max(fraction, 1e-9) - elapsed
            self.stream.write(
                f"\r{self.label} {bar} {step}/{self.total}  loss {loss:.4f}  "
                f"{tokens / elapsed:,.0f} tok/s  eta {_duration(eta)}  "
            )
            self.stream.flush()
        elif fraction >= self.next_milestone or step == self.total:
            while fraction >= self.next_milestone:
                self.next_milestone += 0.1
            self.stream.write(
                f"{self.label} {step}/{self.total}  loss {loss:.4f}  {tokens / elapsed:,.0f} tok/s\n"
            )
            self.stream.flush()

    def close(self):
        if self.interactive:
            self.stream.write("\n")
            self.stream.flush()


def _duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"
