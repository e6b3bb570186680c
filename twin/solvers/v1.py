"""The shipped Lilypad solver's matching rules (spec section 6).

Job offers are processed oldest first. A market-priced job takes the cheapest matching resource
offer (ties to the older offer); a fixed-priced job takes the oldest affordable one. A match is
final (never retried). Capacity is reserved as matches are made, so a later job in the same round
sees what is left of a machine.

The round walks the jobs in order in Python over the offers of this solver (a few dozen): each
offer's fields are read into lists once, and the offers are kept sorted by their rank key --
(price, posting time, row) for market-priced jobs, (posting time, row) for fixed-price ones. A
job takes the first offer in that order that passes :func:`twin.solvers.base.feasible`'s rule;
its reservation re-posts the offer at ``now``, which moves it to its new place in each order.
Reservations are written back to the book once, at the end of the round. With reputation
ranking on (``res.score`` set by the reputation mechanism), the higher-scored offer wins among
equally priced ones (market jobs) or among affordable ones (fixed-price jobs), before the
posting-time rule. (Per job, a few Python comparisons per offer walked cost less than a dozen
numpy calls over the whole book.)
"""

from __future__ import annotations

from bisect import insort

import numpy as np

from twin.orderbook import FIXED, JobOffers, ResourceOffers, Trust
from twin.solvers.base import Match

_COLUMNS = tuple(JobOffers.COLUMN[f] for f in ("vram", "module", "mode", "price", "jc"))


class V1Solver:
    name = "v1"

    def match(self, jobs: JobOffers, res: ResourceOffers, trust: Trust, rp_accounts: np.ndarray,
              solver_id: int, now: int) -> list[Match]:  # fmt: skip
        live = jobs.live
        if not live:
            return []
        rows = jobs.table[live]  # every field of every live offer, in one read
        col, open_ = JobOffers.COLUMN, JobOffers.OPEN
        c_solver, c_status = col["solver"], col["status"]
        table = rows.tolist()
        todo = [
            k
            for k, row in enumerate(table)
            if row[c_solver] == solver_id and row[c_status] == open_
        ]
        if not todo:
            return []
        mine = np.flatnonzero(res.offering & (res.solver == solver_id))
        if not len(mine):
            return []
        # The round in Python over the few offers of this solver: each offer's fields as lists,
        # the offers (rows) kept sorted by their rank key; a job walks that order and takes the
        # first offer that fits. A reservation re-posts the offer at ``now``: it moves to its
        # new place. (np.lexsort is stable and ``mine`` ascending: ties go to the lower row.)
        price, posted, free = res.price.tolist(), res.posted_at.tolist(), res.free.tolist()
        if res.score is None:
            by_market = mine[np.lexsort((res.posted_at[mine], res.price[mine]))].tolist()
            market_key = lambda r: (price[r], posted[r], r)  # noqa: E731
            fixed_key = lambda r: (posted[r], r)  # noqa: E731
        else:  # reputation ranking: the higher score first, as a rank (equal scores tie)
            s = -np.asarray(res.score, float)
            neg_rank = np.searchsorted(np.sort(s), s)
            by_market = mine[np.lexsort((res.posted_at[mine], neg_rank[mine], res.price[mine]))].tolist()  # fmt: skip
            neg = neg_rank.tolist()
            market_key = lambda r: (price[r], neg[r], posted[r], r)  # noqa: E731
            fixed_key = lambda r: (neg[r], posted[r], r)  # noqa: E731
        by_fixed = None  # built at the first fixed-price job
        vram = res.vram.tolist()
        rp_bits = None if trust.all else trust.bits[rp_accounts]
        modules = res.modules_mask.tolist() if res.any_module_limits else None
        rp_fixed = None  # per offer: its fixed price, or None for a market-priced offer
        oid = None  # offer ids, read at the first match
        c_vram, c_module, c_mode, c_price, c_jc = _COLUMNS
        n0, n1, n2, n3 = JobOffers.NEED  # columns of a job's needs (milli-CPU, GPUs, RAM, disk)
        out: list[Match] = []
        taken: list[int] = []  # rows reserved, in match order
        for k in todo:
            row = table[k]
            c, g, ram, disk = row[n0], row[n1], row[n2], row[n3]
            v, module, fixed_job, bid = (
                row[c_vram],
                row[c_module],
                row[c_mode] == FIXED,
                row[c_price],
            )
            allowed = None  # offers whose mediator list meets the client's
            if rp_bits is not None:
                allowed = (rp_bits & trust.bits[row[c_jc]]).any(axis=1).tolist()
            if fixed_job:
                if by_fixed is None:
                    by_fixed = sorted(mine.tolist(), key=fixed_key)
                    modes = res.mode.tolist()
                    rp_fixed = [
                        p if m == FIXED else None for p, m in zip(price, modes, strict=True)
                    ]
                order = by_fixed
            else:
                order = by_market
            for r in order:
                f = free[r]
                if f[0] < c or f[1] < g or f[2] < ram or f[3] < disk or (g and vram[r] < v):
                    continue
                if modules is not None and modules[r] and not (modules[r] >> module) & 1:
                    continue
                if fixed_job and rp_fixed[r] is not None and rp_fixed[r] > bid:
                    continue
                if allowed is not None and not allowed[r]:
                    continue
                break
            else:
                continue  # nothing fits: the job stays in the book
            if oid is None:
                oid, next_id = res.offer_id.tolist(), res.next_offer_id
            out.append(Match(live[k], r, oid[r], price[r]))
            oid[r], next_id = next_id, next_id + 1
            taken.append(r)
            free[r] = [f[0] - c, f[1] - g, f[2] - ram, f[3] - disk]
            # the re-posted offer's new place in each order (posted: now)
            posted[r] = now
            by_market.remove(r)
            insort(by_market, r, key=market_key)
            if by_fixed is not None:
                by_fixed.remove(r)
                insort(by_fixed, r, key=fixed_key)
        if out:
            # the round's reservations, written back at once (as ResourceOffers.reserve would)
            rs = sorted(set(taken))
            for r in rs:  # (a row at a time: cheaper than one fancy assignment of a few rows)
                res.free[r] = free[r]
            res.offer_id[rs] = [oid[r] for r in rs]
            res.posted_at[rs] = now
            res.next_offer_id = next_id
            jobs.status[[m.job_offer for m in out]] = JobOffers.MATCHED
            jobs.compact()
        return out
