"""Per-seat decision queues: the deals waiting for one seat's decision, oldest first.

A deal enters a seat's queue when it needs that seat's decision (RP: agreed, not executed; JC:
results submitted; mediator: check requested) and leaves it when decided or when a timeout ends
the wait. Work per tick is proportional to the seats with something to decide, not to the number
of waiting deals (a JC that waits costs O(1)), and ``count`` gives each account's queue length
for the observations without a scan.
"""

from __future__ import annotations

from collections import deque

import numpy as np


class SeatQueues:
    __slots__ = ("q", "count", "_count")

    def __init__(self, n_accounts: int) -> None:
        self.q: dict[int, deque[tuple[int, int]]] = {}
        self.count = np.zeros(n_accounts, np.int64)
        self._count = memoryview(self.count)  # item updates without numpy scalars (2x cheaper)

    def __getstate__(self) -> dict:  # a memoryview cannot be copied or pickled: rebound on load
        return {"q": self.q, "count": self.count}

    def __setstate__(self, state: dict) -> None:
        self.q, self.count = state["q"], state["count"]
        self._count = memoryview(self.count)

    def __bool__(self) -> bool:
        return bool(self.q)

    def push(self, account: int, deal: int, tick: int) -> None:
        q = self.q.get(account)
        if q is None:
            q = self.q[account] = deque()
        q.append((deal, tick))
        self._count[account] += 1

    def remove(self, account: int, deal: int) -> None:
        q = self.q.get(account)
        if not q:
            return
        for e in q:
            if e[0] == deal:
                q.remove(e)
                self._count[account] -= 1
                break
        if not q:
            del self.q[account]

    def seats(self) -> list[int]:
        """Accounts with a non-empty queue, ascending (the processing order of a phase)."""
        return sorted(self.q)

    def pop_due(self, account: int, tick: int) -> list[int]:
        """Remove and return the deals queued before ``tick`` (decidable now), oldest first."""
        q = self.q.get(account)
        out: list[int] = []
        while q and q[0][1] < tick:
            out.append(q.popleft()[0])
        if out:
            self._count[account] -= len(out)
            if not q:
                del self.q[account]
        return out

    def first(self) -> dict[int, int]:
        """Oldest queued deal per account."""
        return {a: q[0][0] for a, q in self.q.items()}
