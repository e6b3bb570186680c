"""Solvers: the v1 matching rules (spec section 6) and the surplus-maximising solver."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from twin.orderbook import FIXED, MARKET, JobOffers, ResourceOffers, Trust
from twin.solvers import SurplusSolver, V1Solver

RP_ACCOUNTS = np.array([10, 11, 12])


def book(
    prices,
    cpu=(4000, 4000, 4000),
    gpu=(0, 0, 0),
    vram=(0, 0, 0),
    posted=(0, 0, 0),
    solver=(0, 0, 0),
):
    n = len(prices)
    res = ResourceOffers(
        cpu[:n], gpu[:n], vram[:n], [8192] * n, [10_000] * n, np.array(solver[:n]), np.array(prices)
    )
    res.posted_at[:] = posted[:n]
    return res


def job(
    jobs, cpu=1000, gpu=0, vram=0, mode=MARKET, price=100, t=0, jc=1, units=10, solver=0, module=0
):
    return jobs.post(jc=jc, module=module, units=units, cpu=cpu, gpu=gpu, vram=vram, ram=1024, disk=100,
                     mode=mode, price=price, solver=solver, posted_at=t, expires_at=t + 1000)  # fmt: skip


def trust_all(n_accounts=20):
    return Trust(n_accounts, np.array([5, 6]), 0, np.arange(n_accounts), np.random.default_rng(0))


def test_market_job_takes_cheapest_ties_to_older():
    res = book([30, 20, 20], posted=(0, 5, 3))
    jobs = JobOffers()
    job(jobs)
    (m,) = V1Solver().match(jobs, res, trust_all(), RP_ACCOUNTS, 0, now=10)
    assert m.rp_row == 2 and m.price == 20  # 20 is cheapest; row 2 posted at 3 < 5


def test_fixed_job_takes_oldest_affordable():
    res = book([30, 20, 10], posted=(0, 1, 2))
    res.mode[:] = FIXED
    jobs = JobOffers()
    job(jobs, mode=FIXED, price=25)  # row 0 (30) unaffordable; rows 1, 2 affordable; row 1 older
    (m,) = V1Solver().match(jobs, res, trust_all(), RP_ACCOUNTS, 0, now=10)
    assert m.rp_row == 1


def test_price_rule_only_when_both_sides_fixed():
    res = book([30, 40, 50])  # market-priced resource offers
    jobs = JobOffers()
    job(jobs, mode=FIXED, price=1)
    assert len(V1Solver().match(jobs, res, trust_all(), RP_ACCOUNTS, 0, now=0)) == 1


def test_oldest_job_first_and_capacity_is_shared():
    # one RP with 4000 milli-CPU; three jobs of 1500: the two oldest fit, the third waits
    res = book([10], cpu=(4000,))
    jobs = JobOffers()
    a = job(jobs, cpu=1500, t=2)
    b = job(jobs, cpu=1500, t=1)
    c = job(jobs, cpu=1500, t=3)
    jobs.live.sort(key=lambda j: jobs.posted_at[j])
    ms = V1Solver().match(jobs, res, trust_all(), RP_ACCOUNTS[:1], 0, now=5)
    assert [x.job_offer for x in ms] == [b, a]
    assert res.free_cpu[0] == 1000 and jobs.live == [c]
    assert ms[0].resource_offer != ms[1].resource_offer  # the rest was re-offered under a new id


def test_resources_module_solver_and_mediators_must_match():
    res = book([10, 10, 10], gpu=(0, 1, 1), vram=(0, 8192, 24576), solver=(0, 0, 1))
    jobs = JobOffers()
    job(jobs, gpu=1, vram=10_000)  # needs a GPU with >= 10 GB: only row 2 ... which names solver 1
    assert V1Solver().match(jobs, res, trust_all(), RP_ACCOUNTS, 0, now=0) == []
    assert [m.rp_row for m in V1Solver().match(jobs, res, trust_all(), RP_ACCOUNTS, 1, now=0)] == []
    jobs2 = JobOffers()
    job(jobs2, gpu=1, vram=10_000, solver=1)
    assert [m.rp_row for m in V1Solver().match(jobs2, res, trust_all(), RP_ACCOUNTS, 1, now=0)] == [
        2
    ]
    # module allow-lists: row 0 allows only module 3
    res = book([10])
    res.modules_mask[0] = 1 << 3
    res.any_module_limits = True
    jobs3 = JobOffers()
    job(jobs3, module=2)
    assert V1Solver().match(jobs3, res, trust_all(), RP_ACCOUNTS[:1], 0, now=0) == []
    job(jobs3, module=3)
    assert len(V1Solver().match(jobs3, res, trust_all(), RP_ACCOUNTS[:1], 0, now=0)) == 1


def test_mediator_lists_must_intersect():
    rng = np.random.default_rng(0)
    trust = Trust(20, np.array([5, 6, 7]), 1, np.arange(20), rng)
    jc = 1
    mine = trust.trusted(jc)
    others = [a for a in RP_ACCOUNTS if trust.trusted(int(a)) == mine]
    res = book([10, 10, 10])
    jobs = JobOffers()
    job(jobs, jc=jc)
    ms = V1Solver().match(jobs, res, trust, RP_ACCOUNTS, 0, now=0)
    if others:
        assert ms and int(RP_ACCOUNTS[ms[0].rp_row]) in others
        assert trust.common(jc, int(RP_ACCOUNTS[ms[0].rp_row])) == mine
    else:
        assert ms == []


def reference_v1_round(jobs, res, trust, rp_accounts, solver_id, now):
    """The v1 rule applied job by job, literally: the feasible offers (twin.solvers.base.feasible)
    ranked by (price, -score, posted, row) for market jobs and (-score, posted, row) for
    fixed-price ones; the best one is reserved before the next job."""
    from twin.solvers.base import Match, feasible

    out = []
    for j in list(jobs.live):
        if jobs.solver[j] != solver_id or jobs.status[j] != JobOffers.OPEN:
            continue
        ok = np.flatnonzero(feasible(jobs, j, res, trust, rp_accounts, solver_id))
        if not len(ok):
            continue
        score = (lambda r: 0.0) if res.score is None else (lambda r: -float(res.score[r]))
        if jobs.mode[j] == MARKET:
            r = min(ok, key=lambda r: (res.price[r], score(r), res.posted_at[r], r))
        else:
            r = min(ok, key=lambda r: (score(r), res.posted_at[r], r))
        r = int(r)
        out.append(Match(j, r, int(res.offer_id[r]), int(res.price[r])))
        jobs.close(j, JobOffers.MATCHED)
        res.reserve(r, jobs.need(j), now)
    jobs.compact()
    return out


@pytest.mark.parametrize("seed", range(40))
def test_v1_solver_equals_the_rule_applied_job_by_job(seed):
    """Random books (ties in price and posting time, GPUs, fixed-price offers, module limits,
    reputation scores, partial trust, two solvers): the solver's round equals the literal rule."""
    import copy

    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 16))
    res = ResourceOffers(
        rng.choice([2000, 4000, 8000], n), rng.choice([0, 0, 1, 2], n), rng.choice([8192, 24576], n),
        rng.choice([4096, 16384], n), rng.choice([1000, 10_000], n), rng.integers(0, 2, n),
        rng.choice([10, 20, 30], n),
    )  # fmt: skip
    res.posted_at[:] = rng.choice([0, 5, 10], n)
    res.mode[:] = rng.choice([FIXED, MARKET], n)
    res.offering[:] = rng.random(n) < 0.9
    if seed % 3 == 0:
        res.modules_mask[:] = rng.choice([0, 1 << 1, (1 << 0) | (1 << 2)], n)
        res.any_module_limits = True
    if seed % 4 == 1:
        res.score = rng.choice([0.2, 0.5, 0.9], n)
    accounts = np.arange(100, 100 + n)
    trust = Trust(200, np.array([1, 2, 3, 4]), int(rng.integers(0, 4)), np.arange(200), rng)
    jobs = JobOffers()
    for _ in range(int(rng.integers(1, 14))):
        gpu = int(rng.choice([0, 0, 1]))
        job(jobs, cpu=int(rng.choice([1000, 2000, 4000])), gpu=gpu, vram=gpu * int(rng.choice([8000, 16000])),
            mode=int(rng.choice([FIXED, MARKET])), price=int(rng.choice([15, 25, 35])),
            jc=int(rng.integers(0, 200)), solver=int(rng.integers(0, 2)), module=int(rng.integers(0, 3)))  # fmt: skip
    for solver_id in (0, 1):
        ref_jobs, ref_res = copy.deepcopy(jobs), copy.deepcopy(res)
        expected = reference_v1_round(ref_jobs, ref_res, trust, accounts, solver_id, now=10)
        assert V1Solver().match(jobs, res, trust, accounts, solver_id, now=10) == expected
        assert np.array_equal(res.free, ref_res.free) and jobs.live == ref_jobs.live
        assert np.array_equal(res.offer_id, ref_res.offer_id)
        assert np.array_equal(res.posted_at, ref_res.posted_at)


def brute_force_surplus(bids, asks, units):
    best = 0.0
    jobs, rps = range(len(bids)), range(len(asks))
    for perm in itertools.permutations(rps, min(len(bids), len(asks))):
        for js in itertools.combinations(jobs, len(perm)):
            s = sum(
                (bids[j] - asks[r]) * units[j]
                for j, r in zip(js, perm, strict=True)
                if bids[j] >= asks[r]
            )
            best = max(best, s)
    return best


@pytest.mark.parametrize("seed", range(5))
def test_surplus_solver_maximises_surplus(seed):
    # each RP can run one job (cpu 1000 of 1000), so the optimum is an assignment: compare with
    # brute force over every assignment
    rng = np.random.default_rng(seed)
    asks = rng.integers(1, 50, 3).tolist()
    bids = rng.integers(1, 60, 4).tolist()
    units = rng.integers(1, 10, 4).tolist()
    res = book(asks, cpu=(1000, 1000, 1000))
    jobs = JobOffers()
    for b, u in zip(bids, units, strict=True):
        job(jobs, price=b, units=u)
    ms = SurplusSolver().match(jobs, res, trust_all(), RP_ACCOUNTS, 0, now=0)
    got = sum((bids[m.job_offer] - asks[m.rp_row]) * units[m.job_offer] for m in ms)
    assert got == brute_force_surplus(bids, asks, units)
    assert len({m.rp_row for m in ms}) == len(ms)


def test_surplus_solver_uses_leftover_capacity_in_later_rounds():
    res = book([10], cpu=(3000,))
    jobs = JobOffers()
    for _ in range(3):
        job(jobs, cpu=1000, price=20)
    ms = SurplusSolver().match(jobs, res, trust_all(), RP_ACCOUNTS[:1], 0, now=0)
    assert len(ms) == 3 and res.free_cpu[0] == 0


def test_offers_are_posted_cancelled_and_expired():
    """Post, cancel, expire: a cancelled or expired offer leaves the live book and is never
    matched; cancelling an offer that is no longer open changes nothing."""
    jobs = JobOffers()
    a, b, c = (job(jobs, t=t) for t in (0, 10, 20))  # expire at 1000, 1010, 1020
    assert jobs.live == [a, b, c]
    assert jobs.cancel([b]) == [b] and jobs.status[b] == JobOffers.CANCELLED
    assert jobs.cancel([b]) == [] and jobs.live == [a, c]
    assert jobs.expire(1000) == [a] and jobs.status[a] == JobOffers.EXPIRED  # at its expiry time
    assert jobs.live == [c]
    matches = V1Solver().match(jobs, book([100, 100, 100]), trust_all(), RP_ACCOUNTS, 0, 1001)
    assert [m.job_offer for m in matches] == [c]  # only the open offer
    d = job(jobs, t=1001)
    assert jobs.cancel() == [d] and jobs.live == []  # all live offers


def test_closed_market_cancels_unmatched_job_offers(compose):
    """When the market closes, clients withdraw their unmatched job offers: none stays open and
    every client's count of open offers is back to 0 (one node for many eager clients leaves
    offers unmatched at the close)."""
    from twin.market import Actions, Market

    cfg = compose("market.n_job_creators=8", "market.n_resource_providers=1",
                  "market.job_rate_per_tick=1.0", "market.episode_ticks=10")  # fmt: skip
    mk = Market(cfg, seed=3)
    acts = Actions.default(mk)
    for _ in range(cfg.market.episode_ticks):
        mk.step(acts)
    open_before = list(mk.jobs.live)
    assert open_before and mk.open_jobs[mk.jc_acct].sum() == len(open_before)
    mk.step(acts)  # the first tick after the close
    assert mk.closing and mk.jobs.live == []
    assert all(mk.jobs.status[j] == JobOffers.CANCELLED for j in open_before)
    assert (mk.open_jobs == 0).all()
