"""Collateral variants of the Lilypad whitepaper: results collateral up front, non-binary timeout
penalties, and collateral pooling across a node's deals (``collateral=`` group).

v1 (``collateral=v1``) posts the results collateral ``R = m*C`` with the result (``addResult``),
pays a result in full whenever it arrives before the submit timeout, and backs every deal with its
own collateral. Each variant below is switched on by its own parameter and combines with the
others; the deal flows (:class:`twin.deals.DealFlows`) move the money, with the v1 events
(``Payment`` with reason ``ResultsCollateral``), so every terminal path still releases all escrow.

**Up front** (``results_timing=up_front``). The RP posts the results collateral at its ``agree``,
before anyone knows the job cost ``C`` (it depends on the instruction count of the result). The
amount posted is defined from the job offer's *expected* work::

    R0 = m * instructionPrice * E[units],   E[units] = ceil(work_median_units * exp(work_sigma**2 / 2))

(the mean of the job class's log-normal work distribution, :mod:`twin.modules`, rounded up to a
whole unit). At ``addResult`` the deal settles to ``R = m*C``: the RP tops up ``R - R0``
(``Payment(RP, R - R0, ResultsCollateral, PaidIn)``) or is refunded ``R0 - R``
(``Payment(RP, R0 - R, ResultsCollateral, Refunded)``). A deal that ends before a result
(agree or submit timeout) refunds ``R0`` to the RP (the submit timeout slashes only ``Ts``).

**Late results** (``late_grace_s > 0``). With ``s`` = seconds from agree to ``addResult``,
``g = late_grace_s``, ``T`` = the deal's submit timeout and ``f = late_payment_floor``, the RP earns
``share(s) x min(C, P)`` where::

    share(s) = 1                                    for s <= g
    share(s) = 1 - (1 - f) * (s - g) / (T - g)      for g < s < T
    share(s) = f                                    for s >= T   (no penalty at all when T <= g)

The withheld part ``floor(min(C, P) * (1 - f) * min(s - g, T - g) / (T - g))`` is exact in wei
(``f`` read as a fraction of denominator <= 10**9) and is refunded to the JC with the rest of ``P``
on every paying path (accept, mediation accept, judge timeout); the cap ``min(C, P)`` still
applies before the reduction.

**Pooling** (``pooling_ratio = k > 1``). A node posts ``ceil(R / k)`` per deal (and
``ceil(R0 / k)`` up front); its *pool* -- the results collateral of all its open deals -- backs all
of them. A slashing takes the deal's full ``R`` from the pool: first the deal's own share, then the
shares of the node's other open deals, oldest first, up to what the pool holds; whatever the pool
lacks is recorded as unpaid (``Deal.slash_unpaid``, exact in wei) and nobody receives it. A deal
whose share was drawn releases only what is left of it. Pooling risk, measured every tick for each
node with results outstanding (``owed`` = sum of ``R`` of its submitted/checked deals,
``held`` = its pool):

- exposure ratio ``owed / held`` (1 without pooling), per node averaged over time
  (:meth:`CollateralVariants.exposure_by_node`); a pool drawn empty while owing is counted apart
  (``pool_empty_share``);
- worst-case shortfall ``max(0, owed - held)``: what the pool lacks if every open deal is slashed
  at once;
- shortfall probability ``P(sum of R over the slashed deals > held)`` when each open deal is
  slashed independently with probability ``q`` = the share of this episode's results slashed so
  far (exact enumeration up to 12 open deals, a normal approximation beyond);
- realised: the share of slashings that found the pool short, and the unpaid total.

Metrics: up-front top-ups and refunds, late results and the payment withheld, and the pooling
measures above (``pool_*``). Features: a node's pool cover ``held / owed`` (its own, or the focus
deal's node's), the share of the payment a focus deal earns if its result comes now (or came), and
the focus deal's up-front collateral.

Source: the Lilypad whitepaper's collateral section (results collateral as a multiple of the
price, optional non-binary timeout penalties, pooling for capital efficiency).
"""

from __future__ import annotations

import bisect
import functools
import math
from fractions import Fraction
from itertools import combinations

import numpy as np

from twin.deals import DealState
from twin.mechanisms.base import Mechanism


def expected_units(job) -> int:
    """E[units] of a job class: the mean of its log-normal work, rounded up to a whole unit."""
    return max(1, math.ceil(job.work_median_units * math.exp(job.work_sigma**2 / 2)))


@functools.cache
def _fraction(x: float) -> Fraction:
    return Fraction(str(x)).limit_denominator(10**9)


def late_withheld(full: int, elapsed_s: int, grace_s: int, timeout_s: int, floor: float) -> int:
    """Wei withheld from a payment ``full`` for a result ``elapsed_s`` after agree (exact)."""
    if elapsed_s <= grace_s or timeout_s <= grace_s or full <= 0:
        return 0
    cut = 1 - _fraction(floor)
    late = min(elapsed_s - grace_s, timeout_s - grace_s)
    return full * cut.numerator * late // (cut.denominator * (timeout_s - grace_s))


def late_share(elapsed_s: int, grace_s: int, timeout_s: int, floor: float) -> float:
    """The share of the payment a result ``elapsed_s`` after agree earns (float, for features)."""
    if elapsed_s <= grace_s or timeout_s <= grace_s:
        return 1.0
    return 1.0 - (1.0 - floor) * min(1.0, (elapsed_s - grace_s) / (timeout_s - grace_s))


def _sums_by_size(xs: list[int]) -> list[list[int]]:
    """The sums of the subsets of ``xs``, by subset size, each list sorted."""
    by: list[list[int]] = [[0]]
    for x in xs:
        nxt = [list(sums) for sums in by] + [[]]
        for size, sums in enumerate(by):
            nxt[size + 1].extend([v + x for v in sums])
        by = nxt
    return [sorted(sums) for sums in by]


def _subsets_over(owed: list[int], held: int) -> list[int]:
    """For each size k, how many k-subsets of ``owed`` sum to more than ``held`` (exact): the
    subset sums of the two halves, paired by size, counted by bisection (meet in the middle)."""
    if len(owed) <= 4:  # a few subsets: enumerated
        return [
            sum(1 for c in combinations(owed, k) if sum(c) > held) for k in range(len(owed) + 1)
        ]
    half = len(owed) // 2
    lo, hi = _sums_by_size(owed[:half]), _sums_by_size(owed[half:])
    counts = [0] * (len(owed) + 1)
    for i, left in enumerate(lo):
        for j, right in enumerate(hi):
            m = len(right)
            counts[i + j] += sum(m - bisect.bisect_right(right, held - a) for a in left)
    return counts


_COUNTS: dict[tuple[tuple[int, ...], int], list[int]] = {}  # _subsets_over, memoised


def shortfall_probability(owed: list[int], held: int, q: float) -> float:
    """P(sum of ``owed[j]`` over the slashed deals > ``held``), each deal slashed independently
    with probability ``q``: exact for up to 12 deals, a normal approximation beyond."""
    n = len(owed)
    if n == 0 or q <= 0.0 or sum(owed) <= held:
        return 0.0
    if n <= 12:
        key = (tuple(owed), held)  # a node's open deals change slowly: most ticks hit the cache
        counts = _COUNTS.get(key)
        if counts is None:
            if len(_COUNTS) >= 4096:
                _COUNTS.clear()
            counts = _COUNTS[key] = _subsets_over(owed, held)
        p = 0.0
        for k in range(1, n + 1):
            w = q**k * (1.0 - q) ** (n - k)
            p += w * counts[k]
        return p
    mean = q * sum(owed)
    sd = math.sqrt(q * (1 - q) * sum(x * x for x in owed))
    return 0.5 * math.erfc((held - mean) / (sd * math.sqrt(2))) if sd > 0 else float(mean > held)


_OWING = frozenset((DealState.ResultsSubmitted, DealState.ResultsChecked))  # R is owed


class CollateralVariants(Mechanism):
    name = "collateral"

    @classmethod
    def enabled(cls, cfg) -> bool:
        c = cfg.collateral
        return c.results_timing == "up_front" or c.late_grace_s > 0 or c.pooling_ratio > 1.0

    @classmethod
    def from_config(cls, cfg) -> CollateralVariants:
        return cls(cfg.collateral)

    def attach(self, mk) -> None:
        p = self.params
        self.up_front = p.results_timing == "up_front"
        self.late = p.late_grace_s > 0
        self.ratio = Fraction(str(p.pooling_ratio)).limit_denominator(10**6)
        self.pooled = self.ratio > 1
        if self.pooled:
            mk.flows.pool = self
        self.expected_units = tuple(expected_units(j) for j in mk.job_classes)
        #: per RP, its open deals that may hold results collateral (insertion order: oldest first)
        self.open: dict[int, dict[int, None]] = {}
        #: per RP, its open deals with a result in (submitted or checked): the nodes that owe
        #: results collateral, so on_tick_end need not scan every open deal
        self._owing: dict[int, dict[int, None]] = {}
        self._new: list[int] = []
        #: (tick, covers) as on_tick_end found them: the observation after the tick reuses them
        self._covers_at: tuple[int, dict[int, float]] = (-1, {})
        self.deals = mk.deals
        self.topped_up = self.refunded = self.withheld = 0
        self.n_late = self.n_slashings = self.n_short = self.unpaid = 0
        self.n_results = self.n_results_slashed = 0
        self.exposure_sum = self.exposure_max = self.prob_sum = 0.0
        self.n_node_ticks = self.n_ticks = self.n_empty = 0
        self.worst_sum = 0  # wei, summed over ticks
        #: per account (lists: on_tick_end adds to a few entries each tick; numpy scalar updates
        #: cost more): exposure ratios summed, and the ticks they were taken
        self.node_exposure_sum = [0.0] * mk.n_accounts
        self.node_ticks = [0] * mk.n_accounts

    # -- amounts ---------------------------------------------------------------------------------
    def share(self, amount: int) -> int:
        """What a node posts for ``amount`` of obligations: ``ceil(amount / pooling_ratio)``."""
        r = self.ratio
        return -(-amount * r.denominator // r.numerator)

    def posted(self, d) -> int:
        """Results collateral deal ``d`` holds once its result is in (``DealFlows`` pool hook)."""
        return self.share(d.results_collateral)

    def draws(self, d) -> list[tuple[object, int]]:
        """(other deal, wei) that a slashing of ``d`` takes from the node's other open deals, oldest
        first, to cover ``R`` beyond ``d``'s own share (``DealFlows`` pool hook)."""
        need = d.results_collateral - d.results_held
        out = []
        for di in self.open.get(d.rp, ()):
            if need <= 0:
                break
            o = self.deals[di]
            if di == d.index or o.results_held <= 0 or o.terminal or o.stuck:
                continue
            w = min(o.results_held, need)
            out.append((o, w))
            need -= w
        return out

    def pool_of(self, rp: int) -> tuple[list[int], int]:
        """(R of each slashable open deal, pool held) of node ``rp``, in wei."""
        owed, held, deals = [], 0, self.deals
        for di in self.open.get(rp, ()):
            o = deals[di]
            held += o.results_held
            if o.state in _OWING:
                owed.append(o.results_collateral)
        return owed, held

    def covers(self) -> dict[int, float]:
        """:meth:`cover` of every node that owes results collateral (the others' is 1), in one
        pass over the open deals."""
        out, deals = {}, self.deals
        for rp, open_ in self.open.items():
            owed = held = 0
            for di in open_:
                o = deals[di]
                held += o.results_held
                if o.state in _OWING:
                    owed += o.results_collateral
            if owed:
                out[rp] = min(1.0, held / owed)
        return out

    def exposure(self, rp: int) -> float:
        """owed / held of node ``rp`` (0 with nothing owed; inf when owed with an empty pool)."""
        owed, held = self.pool_of(rp)
        total = sum(owed)
        if not total:
            return 0.0
        return total / held if held else math.inf

    # -- hooks -----------------------------------------------------------------------------------
    def on_deal_created(self, mk, d) -> None:
        if self.up_front:
            full = d.results_multiple * d.instruction_price * self.expected_units[d.module]
            d.results_up_front = self.share(full)
        if self.pooled:
            self.open.setdefault(d.rp, {})[d.index] = None
            self._new.append(d.index)

    def on_result_submitted(self, mk, d) -> None:
        if self.pooled:
            self._owing.setdefault(d.rp, {})[d.index] = None
        if self.up_front:
            diff = d.results_held - d.results_up_front
            if diff > 0:
                self.topped_up += diff
            else:
                self.refunded -= diff
        if self.late:
            full = min(d.job_cost, d.payment_collateral)
            p = self.params
            w = late_withheld(full, d.submitted_at - d.agreed_at, p.late_grace_s, d.submit_timeout,
                              p.late_payment_floor)  # fmt: skip
            d.late_withheld = w
            if w:
                self.n_late += 1
                self.withheld += w

    def on_deal_end(self, mk, d) -> None:
        if self.pooled:
            self.open.get(d.rp, {}).pop(d.index, None)
            owing = self._owing.get(d.rp)
            if owing and d.index in owing:
                del owing[d.index]
                if not owing:
                    del self._owing[d.rp]
        if d.submitted_at:
            self.n_results += 1
        if d.state == DealState.MediationRejected:
            self.n_results_slashed += 1
            self.n_slashings += 1
            if d.slash_unpaid:
                self.n_short += 1
                self.unpaid += d.slash_unpaid

    def on_tick_end(self, mk) -> None:
        if not self.pooled:
            return
        for di in self._new:  # matches that never reached the chain hold nothing
            d = self.deals[di]
            if not (d.rp_agreed_at or d.jc_agreed_at):
                self.open.get(d.rp, {}).pop(di, None)
        self._new.clear()
        q = self.n_results_slashed / self.n_results if self.n_results else 0.0
        worst = 0
        covers = {}
        all_deals, owing = self.deals, self._owing
        # only nodes with a result in owe anything; in the order of ``open`` (the float sums)
        for rp, deals in self.open.items() if owing else ():
            if rp not in owing:
                continue
            owed, held = [], 0  # self.pool_of(rp), inlined (every node that owes, per tick)
            for di in deals:
                o = all_deals[di]
                held += o.results_held
                if o.state in _OWING:
                    owed.append(o.results_collateral)
            total = sum(owed)
            if not total:
                continue
            covers[rp] = min(1.0, held / total)  # (as covers() computes it)
            self.prob_sum += shortfall_probability(owed, held, q)
            self.n_node_ticks += 1
            worst += max(0, total - held)
            if not held:  # drawn empty by earlier slashings: unbounded exposure, counted apart
                self.n_empty += 1
                continue
            ratio = total / held
            self.exposure_sum += ratio
            self.exposure_max = max(self.exposure_max, ratio)
            self.node_exposure_sum[rp] += ratio
            self.node_ticks[rp] += 1
        self.worst_sum += worst
        self.n_ticks += 1
        # no later hook of the tick moves results collateral or opens/ends deals, so these are
        # the covers the observation after this tick sees (public_features reuses them)
        self._covers_at = (mk.tick, covers)

    def exposure_by_node(self, mk) -> np.ndarray:
        """Per RP (group row): its exposure ratio averaged over the ticks it owed results
        collateral against a non-empty pool (0 when it never did)."""
        t = np.array(self.node_ticks)[mk.rp_acct]
        summed = np.array(self.node_exposure_sum)[mk.rp_acct]
        return np.where(t > 0, summed / np.maximum(t, 1), 0.0)

    # -- observation and metrics -----------------------------------------------------------------
    def feature_names(self, role: str) -> tuple[str, ...]:
        return {
            "rp": ("pool_cover", "focus_late_share", "focus_results_up_front"),
            "jc": ("focus_late_share", "focus_rp_pool_cover"),
            "mediator": ("focus_rp_pool_cover",),
        }[role]

    def cover(self, rp: int) -> float:
        """held / owed of node ``rp``, in [0, 1] (1: fully backed, or nothing owed)."""
        if not self.pooled:
            return 1.0
        owed, held = self.pool_of(rp)
        total = sum(owed)
        return 1.0 if not total else min(1.0, held / total)

    def write_features(self, mk, fb) -> None:
        p, focus, deals = self.params, fb.focus, mk.deals
        tick, covers = self._covers_at
        if tick != mk.tick:
            covers = self.covers()  # (empty without pooling: every cover is 1)
        rp, jc, med = fb.out.get("rp"), fb.out.get("jc"), fb.out.get("mediator")
        if rp is not None:
            rp[:, 0] = 1.0
            if covers:
                rp[mk.row[list(covers)], 0] = list(covers.values())
            for r, di in focus.get("rp", {}).items():
                d = deals[di]
                rp[r, 1] = late_share(mk.now - d.agreed_at, p.late_grace_s, d.submit_timeout,
                                      p.late_payment_floor) if self.late else 1.0  # fmt: skip
                rp[r, 2] = math.log1p(d.results_up_front / 1e18)
        if jc is not None:
            jc[:] = 1.0
            for r, di in focus.get("jc", {}).items():
                d = deals[di]
                full = min(d.job_cost, d.payment_collateral)
                jc[r, 0] = 1.0 - d.late_withheld / full if full else 1.0
                jc[r, 1] = covers.get(d.rp, 1.0)
        if med is not None:
            med[:] = 1.0
            for r, di in focus.get("mediator", {}).items():
                med[r, 0] = covers.get(deals[di].rp, 1.0)

    def metrics(self, mk) -> dict[str, float]:
        out: dict[str, float] = {}
        if self.up_front:
            out["up_front_topped_up_tokens"] = self.topped_up / 1e18
            out["up_front_refunded_tokens"] = self.refunded / 1e18
        if self.late:
            out["late_results"] = float(self.n_late)
            out["late_withheld_tokens"] = self.withheld / 1e18
        if self.pooled:
            nt = max(1, self.n_node_ticks)
            out.update({
                "pool_exposure_mean": self.exposure_sum / max(1, self.n_node_ticks - self.n_empty),
                "pool_exposure_max": self.exposure_max,
                "pool_exposure_node_max": float(self.exposure_by_node(mk).max(initial=0.0)),
                "pool_empty_share": self.n_empty / nt,
                "pool_shortfall_probability": self.prob_sum / nt,
                "pool_worst_shortfall_tokens": self.worst_sum / max(1, self.n_ticks) / 1e18,
                "pool_short_slash_rate": self.n_short / max(1, self.n_slashings),
                "pool_unpaid_tokens": self.unpaid / 1e18,
            })  # fmt: skip
        return out
