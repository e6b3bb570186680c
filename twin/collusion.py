"""Collusion agreements: rings of mediators with the nodes (or clients) that bribe them.

A ring is part of the market state: ``ring_of[account]`` is the ring of a mediator, RP or JC
(-1: none) and ``bribe_wei`` the bribe a ring member pays its mediator for a colluding verdict.
Whether a mediator honours the agreement is its action each tick (``collude``); the
consequences live in the mediation protocol (:mod:`twin.mediation.v1`).
"""

from __future__ import annotations

import numpy as np


class CollusionRings:
    def __init__(self, n_accounts: int, n_rings: int, mediators: np.ndarray, mediators_per_ring: int,
                 rps: np.ndarray, rps_per_ring: int, jcs: np.ndarray, jcs_per_ring: int, bribe_wei: int,
                 rng: np.random.Generator) -> None:  # fmt: skip
        self.ring = np.full(n_accounts, -1, np.int64)
        self.bribe_wei = int(bribe_wei)
        self.n_rings = n_rings
        if not n_rings:
            return
        for group, per in (
            (mediators, mediators_per_ring),
            (rps, rps_per_ring),
            (jcs, jcs_per_ring),
        ):
            chosen = rng.permutation(np.asarray(group))[: n_rings * per]
            self.ring[chosen] = np.repeat(np.arange(n_rings), per)[: len(chosen)]

    def ring_of(self, account: int) -> int:
        return int(self.ring[account])

    def members(self, ring: int) -> np.ndarray:
        return np.flatnonzero(self.ring == ring)
