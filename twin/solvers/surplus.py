"""A solver that maximises matched surplus over the whole book.

Surplus of a pair = (JC's instruction price - RP's instruction price) x the job's work units (the
JC's willingness to pay over the RP's ask). Each round solves a rectangular assignment problem
(``scipy.optimize.linear_sum_assignment``, maximising, with a zero-surplus "unmatched" option
per job) over the feasible pairs with non-negative
surplus, books the assigned pairs, and repeats on the remaining capacity until a round assigns
nothing: an RP can take one job per round and several over the rounds, up to its capacity.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from twin.orderbook import FIXED, JobOffers, ResourceOffers, Trust
from twin.solvers.base import Match

_NEG = -1e30


class SurplusSolver:
    name = "surplus"

    def match(self, jobs: JobOffers, res: ResourceOffers, trust: Trust, rp_accounts: np.ndarray,
              solver_id: int, now: int) -> list[Match]:  # fmt: skip
        out: list[Match] = []
        while True:
            js = np.array(
                [
                    j
                    for j in jobs.live
                    if jobs.solver[j] == solver_id and jobs.status[j] == JobOffers.OPEN
                ],
                np.int64,
            )
            if not len(js):
                break
            rows = np.flatnonzero(res.offering & (res.solver == solver_id))
            if not len(rows):
                break
            ok = (
                (res.free_cpu[rows][None, :] >= jobs.cpu[js][:, None])
                & (res.free_ram[rows][None, :] >= jobs.ram[js][:, None])
                & (res.free_disk[rows][None, :] >= jobs.disk[js][:, None])
                & (
                    (jobs.gpu[js][:, None] == 0)
                    | (
                        (res.free_gpu[rows][None, :] >= jobs.gpu[js][:, None])
                        & (res.vram[rows][None, :] >= jobs.vram[js][:, None])
                    )
                )
            )
            mm = res.modules_mask[rows]
            if res.any_module_limits:
                ok &= (mm[None, :] == 0) | (((mm[None, :] >> jobs.module[js][:, None]) & 1) == 1)
            fixed_both = (jobs.mode[js][:, None] == FIXED) & (res.mode[rows][None, :] == FIXED)
            ok &= ~fixed_both | (res.price[rows][None, :] <= jobs.price[js][:, None])
            if not trust.all:
                for a, j in enumerate(js):
                    ok[a] &= trust.intersects(int(jobs.jc[j]), rp_accounts[rows])
            surplus = (
                jobs.price[js][:, None].astype(float) - res.price[rows][None, :].astype(float)
            ) * jobs.units[js][:, None]
            ok &= surplus >= 0
            if not ok.any():
                break
            # one zero-surplus "stay unmatched" column per job, so no job is forced onto a pair
            # and the optimum may leave RPs idle
            w = np.hstack([np.where(ok, surplus, _NEG), np.zeros((len(js), len(js)))])
            ri, ci = linear_sum_assignment(w, maximize=True)
            keep = ci < len(rows)
            ri, ci = ri[keep], ci[keep]
            booked = 0
            for a, b in sorted(zip(ri.tolist(), ci.tolist(), strict=True)):
                if not ok[a, b]:
                    continue
                j, r = int(js[a]), int(rows[b])
                out.append(Match(j, r, int(res.offer_id[r]), int(res.price[r])))
                jobs.close(j, JobOffers.MATCHED)
                res.reserve(r, jobs.need(j), now)
                booked += 1
            jobs.compact()
            if not booked:
                break
        return out
