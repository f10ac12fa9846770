"""The one back-off policy: exponential, capped, optionally jittered.

Used wherever nodeagent retries: the API publisher and its watch loop (jittered, so that a fleet
recovering from an API outage spreads out), the daemon's retry of a failed apply (from one
reconcile interval up to an hour) and of an incomplete reconcile step (from one second up to one
interval). The last two retry one node's own work, so they are not jittered (``jitter=0``): their
delays are exact.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delays of ``base · 2ⁿ`` capped at ``cap``, each drawn from ``[(1-jitter)·d, d]`` (n: failures so far).

    The jitter matters at fleet scale: 5,000 agents that lost the API server at the same moment
    must not all retry at the same moment (the thundering herd client-go's back-off managers avoid
    the same way). ``reset()`` after a success.
    """

    base: float = 0.5
    cap: float = 60.0
    jitter: float = 0.5
    rng: random.Random = field(default_factory=random.Random)
    failures: int = 0

    def next_delay(self) -> float:
        """The delay before the next attempt; counts one more failure."""
        ceiling = min(self.cap, self.base * (2 ** min(self.failures, 32)))
        self.failures += 1
        return ceiling * (1.0 - self.jitter * self.rng.random())

    def reset(self) -> None:
        self.failures = 0


def jittered(period: float, spread: float, rng: random.Random | None = None) -> float:
    """``period`` stretched by a random factor in ``[1, 1+spread]`` (client-go's watch timeouts)."""
    return period * (1.0 + spread * (rng or random).random())
