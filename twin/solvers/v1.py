"""The shipped Lilypad solver's matching rules (spec section 6).

Job offers are processed oldest first. A market-priced job takes the cheapest matching resource
offer (ties to the older offer); a fixed-priced job takes the oldest affordable one. A match is
final (never retried). Capacity is reserved as matches are made, so a later job in the same round
sees what is left of a machine.

The round applies the rule of :func:`twin.solvers.base.feasible` to each job in turn, with what
does not change during a round computed once: the offers of this solver, the fixed-price and
trust filters, and each offer's rank by (price, posting time, row). The preferred offer of a job
is then the feasible one of smallest rank key (``argmin``); a reservation re-posts the offer, so
only its posting-time rank changes. With reputation ranking on (``res.score`` set by the
reputation mechanism), the higher-scored offer wins among equally priced ones (market jobs) or
among affordable ones (fixed-price jobs), before the posting-time rule.
"""

from __future__ import annotations

import numpy as np

from twin.orderbook import FIXED, MARKET, JobOffers, ResourceOffers, Trust
from twin.solvers.base import Match

_NONE = np.iinfo(np.int64).max  # rank key of an offer that does not fit


def _rank(values: np.ndarray, sorted_values: np.ndarray) -> np.ndarray:
    """Order-preserving integer rank of each value: how many of ``sorted_values`` are smaller
    (equal values get equal ranks)."""
    return np.searchsorted(sorted_values, values)


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
        mine = res.offering & (res.solver == solver_id)
        if not mine.any():
            return []
        # rank keys: market jobs prefer (price, posted_at, row), fixed jobs (posted_at, row); a
        # reservation re-posts the offer at ``now`` (ranks < n + 1, so keys < (n + 1)^3)
        n = len(res.price)
        price_rank = _rank(res.price, np.sort(res.price))
        posted = np.sort(np.append(res.posted_at, now))
        posted_rank, rank_now = _rank(res.posted_at, posted), int(np.searchsorted(posted, now))
        tier = (n + 1) * n
        key_fixed = posted_rank * n + np.arange(n)
        score_rank = None
        if res.score is not None:  # reputation ranking: higher score first (keys < (n + 1)^4)
            neg = -np.asarray(res.score, float)
            score_rank = _rank(neg, np.sort(neg))
            key_fixed += score_rank * tier
        key_market = price_rank * (tier * (n + 1)) + key_fixed
        rp_fixed, any_fixed = None, False  # RPs with fixed-price offers (for fixed-price jobs)
        rp_bits = None if trust.all else trust.bits[rp_accounts]
        vram_ok: dict[int, np.ndarray] = {}
        module_ok: dict[int, np.ndarray] = {}

        needs = rows[:, JobOffers.NEED_INDEX]  # (milli-CPU, GPUs, RAM MB, disk MB) each job needs
        c_vram, c_module, c_mode, c_price, c_jc = (
            col[f] for f in ("vram", "module", "mode", "price", "jc")
        )
        out: list[Match] = []
        free = res.free
        for k in todo:
            j, row, need = live[k], table[k], needs[k]
            vram, module, mode, price, jc = (
                row[c_vram],
                row[c_module],
                row[c_mode],
                row[c_price],
                row[c_jc],
            )
            ok = np.logical_and.reduce(free >= need, axis=1)
            ok &= mine
            if need[1]:
                v = vram_ok.get(vram)
                if v is None:
                    v = vram_ok[vram] = res.vram >= vram
                ok &= v
            if res.any_module_limits:
                m = module_ok.get(module)
                if m is None:
                    mm = res.modules_mask
                    m = module_ok[module] = (mm == 0) | ((mm >> module) & 1).astype(bool)
                ok &= m
            if mode == FIXED:
                if rp_fixed is None:
                    rp_fixed = res.mode == FIXED
                    any_fixed = bool(rp_fixed.any())
                if any_fixed:
                    ok &= ~rp_fixed | (res.price <= price)
            if rp_bits is not None:
                ok &= (rp_bits & trust.bits[jc]).any(axis=1)
            r = int(np.where(ok, key_market if mode == MARKET else key_fixed, _NONE).argmin())
            if not ok[r]:
                continue
            out.append(Match(j, r, int(res.offer_id[r]), int(res.price[r])))
            jobs.close(j, JobOffers.MATCHED)
            res.reserve(r, need, now)
            key_fixed[r] = (
                rank_now * n + r + (int(score_rank[r]) * tier if score_rank is not None else 0)
            )
            key_market[r] = int(price_rank[r]) * (tier * (n + 1)) + key_fixed[r]
        if out:
            jobs.compact()
        return out
