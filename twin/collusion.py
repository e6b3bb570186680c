"""Collusion agreements: rings of mediators with the nodes (or clients) that bribe them.

A ring is part of the market state: ``ring_of[account]`` is the ring of a mediator, RP or JC
(-1: none) and ``bribe_wei`` the bribe a ring member pays *each* of its ring's mediators for a
colluding verdict. The agreement (:meth:`CollusionRings.agreement`): on a deal whose RP is in the
ring and whose result is wrong, the ring's mediators vote *accept*, bribed by the RP; on a deal
whose JC is in the ring and whose result is correct, they vote *reject* (the JC gets the work for
free), bribed by the JC. In a consortium (:mod:`twin.mediation.consortium`) every ring mediator
drawn for the deal is party to the agreement, so the ring votes as a group.

Whether a mediator honours the agreement is its action each tick (``collude``); a ring mediator
that votes on its honest re-execution although the agreement applies *defects*. What a colluder
can observe about its partners is part of the state too: when votes are public, each ring
mediator drawn in a round with ring partners sees, once the round's votes are in, whether each
partner voted as agreed (:meth:`observe_round`): ``defected_last`` (a partner defected in the
last such round) and the counts of loyal and defected partner votes it has seen. Under
commit-reveal (anti-collusion by obfuscation) votes are not linkable to mediators, nothing is
observed and these stay 0. The consequences of collusion live in the mediation protocols
(:mod:`twin.mediation.v1`, :mod:`twin.mediation.consortium`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from twin.deals import Deal


class CollusionRings:
    def __init__(self, n_accounts: int, n_rings: int, mediators: np.ndarray, mediators_per_ring: int,
                 rps: np.ndarray, rps_per_ring: int, jcs: np.ndarray, jcs_per_ring: int, bribe_wei: int,
                 rng: np.random.Generator) -> None:  # fmt: skip
        self.ring = np.full(n_accounts, -1, np.int64)
        self.bribe_wei = int(bribe_wei)
        self.n_rings = n_rings
        self.is_mediator = np.zeros(n_accounts, bool)
        self.is_mediator[np.asarray(mediators, np.int64)] = True
        # what each mediator has observed of its ring partners' votes (public votes only)
        self.loyal_seen = np.zeros(n_accounts, np.int64)
        self.defected_seen = np.zeros(n_accounts, np.int64)
        self.defected_last = np.zeros(n_accounts, np.int8)
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

    def partners(self, mediator: int) -> np.ndarray:
        """The other mediators of ``mediator``'s ring (empty when it is in none)."""
        ring = self.ring[mediator]
        if ring < 0:
            return np.zeros(0, np.int64)
        out = np.flatnonzero((self.ring == ring) & self.is_mediator)
        return out[out != mediator]

    def agreement(self, d: Deal, mediator: int) -> tuple[int, bool] | None:
        """``(briber, agreed vote)`` of ``mediator``'s ring on deal ``d``, or None when no
        agreement applies: a ring RP's wrong result is to be accepted (the RP bribes); a correct
        result delivered to a ring JC is to be rejected (the JC bribes)."""
        ring = self.ring[mediator]
        if ring < 0:
            return None
        wrong = not (d.correct and d.units_reported == d.units)
        if wrong and self.ring[d.rp] == ring:
            return d.rp, True
        if not wrong and self.ring[d.jc] == ring:
            return d.jc, False
        return None

    def observe_round(self, d: Deal, ballots: dict[int, bool], public: bool = True) -> int:
        """The votes of one closed round (``mediator -> accept``). When votes are ``public``,
        every ring mediator that had ring partners in the round under an applicable agreement
        learns whether each partner voted as agreed; under commit-reveal nobody learns anything.
        Returns the number of defections in the round (ground truth, for metrics)."""
        by_ring: dict[int, list[tuple[int, bool]]] = {}
        for m, accept in ballots.items():
            ag = self.agreement(d, m)
            if ag is not None:
                by_ring.setdefault(int(self.ring[m]), []).append((m, accept == ag[1]))
        defections = 0
        for group in by_ring.values():
            defections += sum(not kept for _, kept in group)
            if not public or len(group) < 2:
                continue
            for m, _ in group:
                kept = [k for p, k in group if p != m]
                loyal = sum(kept)
                self.loyal_seen[m] += loyal
                self.defected_seen[m] += len(kept) - loyal
                self.defected_last[m] = int(loyal < len(kept))
        return defections

    def loyalty(self, accounts: np.ndarray) -> np.ndarray:
        """Beta mean (uniform prior) of the loyal share of partner votes each account has seen."""
        a = np.asarray(accounts, np.int64)
        return (self.loyal_seen[a] + 1.0) / (self.loyal_seen[a] + self.defected_seen[a] + 2.0)
