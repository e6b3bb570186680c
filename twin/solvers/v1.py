"""The shipped Lilypad solver's matching rules (spec section 6).

Job offers are processed oldest first. A market-priced job takes the cheapest matching resource
offer (ties to the older offer); a fixed-priced job takes the oldest affordable one. A match is
final (never retried). Capacity is reserved as matches are made, so a later job in the same round
sees what is left of a machine.
"""

from __future__ import annotations

import numpy as np

from twin.orderbook import MARKET, JobOffers, ResourceOffers, Trust
from twin.solvers.base import Match, feasible


class V1Solver:
    name = "v1"

    def match(self, jobs: JobOffers, res: ResourceOffers, trust: Trust, rp_accounts: np.ndarray,
              solver_id: int, now: int) -> list[Match]:  # fmt: skip
        out: list[Match] = []
        for j in jobs.live:
            if jobs.solver[j] != solver_id or jobs.status[j] != JobOffers.OPEN:
                continue
            ok = feasible(jobs, j, res, trust, rp_accounts, solver_id)
            cand = np.flatnonzero(ok)
            if not len(cand):
                continue
            if jobs.mode[j] == MARKET:  # cheapest; ties to the older offer, then the lower row
                pc = res.price[cand]
                cand = cand[pc == pc.min()]
            if res.score is not None and len(cand) > 1:  # reputation ranking (when enabled)
                sc = res.score[cand]
                cand = cand[sc == sc.max()]
            if len(cand) > 1:  # fixed price: the oldest affordable offer (lower row on ties)
                cand = cand[np.argmin(res.posted_at[cand])]
            r = int(cand) if np.ndim(cand) == 0 else int(cand[0])
            out.append(Match(j, r, int(res.offer_id[r]), int(res.price[r])))
            jobs.close(j, JobOffers.MATCHED)
            res.reserve(r, jobs.need(j), now)
        if out:
            jobs.compact()
        return out
