"""Exponential backoff with full jitter for the sync loop: unlimited attempts, capped, reset on success.

Standard library only.
"""

from __future__ import annotations

import random
from collections.abc import Callable

CAP = 60.0
BASE = 1.0


class Backoff:
    """Delay before the next attempt: `base * 2**failures`, capped at `cap`, jittered in [50 %, 100 %]."""

    def __init__(self, *, base: float = BASE, cap: float = CAP, rand: Callable[[], float] = random.random) -> None:
        self.base = base
        self.cap = cap
        self.failures = 0
        self._rand = rand

    def next_delay(self) -> float:
        """Count one failure and return how long to wait before trying again."""
        ceiling = min(self.cap, self.base * (2 ** min(self.failures, 16)))
        self.failures += 1
        return float(ceiling * (0.5 + 0.5 * self._rand()))

    def reset(self) -> None:
        """After a success: the next failure waits `base` again."""
        self.failures = 0
