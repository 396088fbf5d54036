"""One back-off for every loop that retries: the batcher, the indexer, the anchorer and the
relay's evidence sender.

The wait after the n-th consecutive failure is ``base * 2**(n - 1)``, at most ``cap``;
with ``jitter`` it is spread over ``[0.75, 1.25)`` of that, so that many workers failing
together (a ledger that went away) do not retry in step. A success starts over.
"""

from __future__ import annotations

import random
from collections.abc import Callable


def backoff_delay(
    failures: int, base: float, cap: float, *, jitter: bool = False, rand: Callable[[], float] = random.random
) -> float:
    """Seconds to wait after ``failures`` consecutive failures (0 for none)."""
    if failures < 1:
        return 0.0
    delay = min(cap, base * 2.0 ** min(failures - 1, 64))
    return delay * (0.75 + 0.5 * rand()) if jitter else delay


class Backoff:
    """The consecutive failures of one loop and the wait each calls for."""

    def __init__(self, base: float, cap: float, *, jitter: bool = False) -> None:
        self.base = base
        self.cap = cap
        self.jitter = jitter
        self.failures = 0

    def failed(self) -> float:
        """Count a failure; return how long to wait before the next try."""
        self.failures += 1
        return backoff_delay(self.failures, self.base, self.cap, jitter=self.jitter)

    def succeeded(self) -> None:
        self.failures = 0
