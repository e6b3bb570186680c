"""Collateral variants (twin/mechanisms/collateral.py): hand-derived flows, schedules and pools.

Deal terms as in tests/test_deals.py: instruction price 3, units 5 -> C = 15; P = 20; m = 2 ->
R = 30; F = 4; Ts = 6; Tj = 7; genesis JC 100, RP 100 (wallets).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from tests.test_deals import (
    JC,
    JP,
    MED,
    MF,
    OWNER,
    PAID_IN,
    PAID_OUT,
    PC,
    RC,
    REFUNDED,
    RP,
    SLASHED,
    TC,
    balances,
    events,
    make,
    new_deal,
)
from tests.test_mechanisms import SMALL, run_market
from twin.deals import CallRejected, DealState
from twin.events import EventKind
from twin.events import PaymentDirection as Dir
from twin.events import PaymentReason as Rsn
from twin.mechanisms.collateral import (
    CollateralVariants,
    expected_units,
    late_share,
    late_withheld,
    shortfall_probability,
)
from twin.mechanisms.schema import CollateralConfig
from twin.modules import MODULES

TOKEN = 10**18


def attach(flows, deals, **params):
    """A collateral mechanism attached to a bare DealFlows (no market)."""
    mech = CollateralVariants(CollateralConfig(**params))
    mk = SimpleNamespace(
        flows=flows, job_classes=tuple(MODULES.values()), deals=deals, n_accounts=5
    )
    mech.attach(mk)
    return mech, mk


# -- up front ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "module,units",
    [
        # ceil(median * exp(sigma^2 / 2)): the mean of the log-normal work, rounded up
        ("cowsay", 3),  # 2 * e^0.045 = 2.092
        ("sdxl", 9),  # 8 * e^0.045 = 8.368
        ("llama3_8b", 23),  # 20 * e^0.125 = 22.66
        ("whisper", 68),  # 60 * e^0.125 = 67.99
        ("ffmpeg_transcode", 144),  # 120 * e^0.18 = 143.67
        ("duckdb_query", 42),  # 30 * e^0.32 = 41.31
        ("lora_finetune", 1950),  # 1800 * e^0.08 = 1949.92
    ],
)
def test_expected_units(module, units):
    assert expected_units(MODULES[module]) == units


UP_AGREE = [("DSC", 0), ("Pay", RP, 6, TC, PAID_IN)]
JC_AGREE = [("Pay", JC, 20, PC, PAID_IN), ("Pay", JC, 7, TC, PAID_IN), ("DSC", 1)]
ACCEPT = [
    ("Pay", RP, 15, JP, PAID_OUT),
    ("Pay", JC, 5, PC, REFUNDED),
    ("Pay", JC, 7, TC, REFUNDED),
    ("Pay", RP, 30, RC, REFUNDED),
    ("DSC", 3),
]


@pytest.mark.parametrize(
    "r0,settle",
    [
        # expected 4 units: R0 = 2 * 3 * 4 = 24 < R = 30: the RP tops up 6 at addResult
        (24, [("Pay", RP, 6, RC, PAID_IN)]),
        # expected 7 units: R0 = 42 > R = 30: the RP is refunded 12 at addResult
        (42, [("Pay", RP, 12, RC, REFUNDED)]),
        # expected 5 units: R0 = R = 30: nothing to settle (a zero movement emits nothing)
        (30, []),
    ],
)
def test_up_front_settles_at_add_result(r0, settle):
    # Whatever R0 was, the accepted deal ends exactly as v1's happy path: RP 100 + 15 = 115,
    # JC 100 - 15 = 85, every escrow 0.
    ledger, log, flows, d = make()
    d.results_up_front = r0
    flows.agree(10, d, RP)
    assert ledger.escrow[RP] == 6 + r0  # Ts + R0 in escrow after the RP's agree
    flows.agree(10, d, JC)
    flows.add_result(20, d)
    assert d.results_held == 30 and ledger.escrow[RP] == 30
    flows.accept_result(30, d)
    assert balances(ledger) == {OWNER: (0, 0), JC: (85, 0), RP: (115, 0), MED: (0, 0)}
    assert events(log) == (
        UP_AGREE
        + [("Pay", RP, r0, RC, PAID_IN)]
        + JC_AGREE
        + settle
        + [("Pay", RP, 6, TC, REFUNDED), ("DSC", 2)]
        + ACCEPT
    )


def test_up_front_terminal_paths_release_everything():
    # submit timeout: JC gets P + Tj back (100), Ts = 6 slashed to the owner, R0 = 24 refunded:
    # RP 100 - 6 = 94.
    ledger, log, flows, d = make()
    d.results_up_front = 24
    flows.agree(10, d, RP)
    flows.agree(10, d, JC)
    flows.timeout_submit(111, d, JC)
    assert balances(ledger) == {OWNER: (6, 0), JC: (100, 0), RP: (94, 0), MED: (0, 0)}
    assert events(log)[-3:] == [
        ("Pay", RP, 6, TC, SLASHED),
        ("Pay", RP, 24, RC, REFUNDED),
        ("DSC", 8),
    ]
    # agree timeout with only the RP in: Ts and R0 back: RP 100
    ledger, log, flows, d = make()
    d.results_up_front = 24
    flows.agree(10, d, RP)
    flows.timeout_agree(111, d, RP)
    assert balances(ledger)[RP] == (100, 0)
    assert events(log)[-3:] == [
        ("Pay", RP, 6, TC, REFUNDED),
        ("Pay", RP, 24, RC, REFUNDED),
        ("DSC", 7),
    ]
    # caught cheating after an up-front R0 = 42 (12 refunded at addResult): the slashing takes
    # R = 30: RP 100 - 30 = 70, owner 30, JC 100 - F = 96, mediator 4
    ledger, log, flows, d = make()
    d.results_up_front = 42
    flows.agree(10, d, RP)
    flows.agree(10, d, JC)
    flows.add_result(20, d)
    flows.check_result(30, d, MED)
    flows.mediation_reject(40, d)
    assert balances(ledger) == {OWNER: (30, 0), JC: (96, 0), RP: (70, 0), MED: (4, 0)}
    # an RP that cannot fund Ts + R0 = 6 + 24 = 30 from a wallet of 20 cannot agree
    ledger, log, flows, d = make(rp_wallet=20)
    d.results_up_front = 24
    with pytest.raises(CallRejected):
        flows.agree(10, d, RP)


def test_up_front_amount_on_deal_creation():
    # R0 = m * price * E[units]: sdxl at price 3 and m = 2: 2 * 3 * 9 = 54; pooled with ratio
    # 4: ceil(54 / 4) = 14
    _, _, flows, d = make()
    d.module = list(MODULES).index("sdxl")
    mech, mk = attach(flows, [d], results_timing="up_front")
    mech.on_deal_created(mk, d)
    assert d.results_up_front == 54
    mech, mk = attach(flows, [d], results_timing="up_front", pooling_ratio=4.0)
    mech.on_deal_created(mk, d)
    assert d.results_up_front == 14


# -- late results -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "elapsed,expected_pay",
    [
        # full = 1 token, grace g = 600 s, submit timeout T = 3600 s, floor f = 0.5:
        # withheld = floor(full * (1 - f) * min(s - g, T - g) / (T - g))
        (0, TOKEN),
        (600, TOKEN),  # at the grace limit: full payment
        (601, TOKEN - 10**18 // 2 // 3000),  # 1 s late: 1e18 * 0.5 / 3000 = 1.67e14 withheld
        (1350, TOKEN * 7 // 8),  # a quarter of the way: 1 - 0.5 * 0.25 = 0.875
        (2100, TOKEN * 3 // 4),  # half-way: 1 - 0.5 * 0.5 = 0.75
        (3600, TOKEN // 2),  # at the submit timeout: the floor
        (5000, TOKEN // 2),  # later still: the floor
    ],
)
def test_late_payment_schedule(elapsed, expected_pay):
    full = TOKEN
    assert full - late_withheld(full, elapsed, 600, 3600, 0.5) == expected_pay
    assert late_share(elapsed, 600, 3600, 0.5) == pytest.approx(expected_pay / full, abs=1e-12)


@pytest.mark.parametrize(
    "full,elapsed,grace,timeout,floor,withheld",
    [
        (15, 600, 200, 1000, 0.5, 3),  # 15 * 0.5 * 400 / 800 = 3.75 -> 3
        (15, 1000, 200, 1000, 0.0, 15),  # floor 0: nothing is earned at the timeout
        (15, 999, 1000, 1000, 0.0, 0),  # grace >= timeout: never a penalty
        (20, 700, 200, 1200, 0.25, 7),  # 20 * 0.75 * 500 / 1000 = 7.5 -> 7
    ],
)
def test_late_withheld_exact(full, elapsed, grace, timeout, floor, withheld):
    assert late_withheld(full, elapsed, grace, timeout, floor) == withheld


@pytest.mark.parametrize(
    "units,withheld,pay",
    [
        # C = 15 <= P: withheld floor(15 * 0.5 * 400 / 800) = 3, pay 12, JC refunded 20 - 12 = 8
        (5, 3, 12),
        # C = 30 > P = 20: the cap first, min(C, P) = 20; withheld floor(20 * 0.25) = 5; pay 15
        (10, 5, 15),
    ],
)
def test_late_result_pays_less_and_refunds_the_jc(units, withheld, pay):
    # T = 1000 s, grace 200 s, floor 0.5; agreed at t = 10, submitted at t = 610 (600 s late of
    # agree: 400 s past the grace of a window of 800 s). RP 100 + pay; JC 100 - pay.
    ledger, log, flows, d = make(window=1000, units=units)
    mech, mk = attach(flows, [d], late_grace_s=200, late_payment_floor=0.5)
    flows.agree(10, d, RP)
    flows.agree(10, d, JC)
    flows.add_result(610, d)
    mech.on_result_submitted(mk, d)
    assert d.late_withheld == withheld and d.payment == pay
    flows.accept_result(620, d)
    assert balances(ledger) == {OWNER: (0, 0), JC: (100 - pay, 0), RP: (100 + pay, 0), MED: (0, 0)}
    assert events(log)[-5:-3] == [
        ("Pay", RP, pay, JP, PAID_OUT),
        ("Pay", JC, 20 - pay, PC, REFUNDED),
    ]


# -- pooling ------------------------------------------------------------------------------------
def pooled(n_deals, ratio, units=5, rp_wallet=100, jc_wallet=200):
    ledger, log, flows, _ = make(rp_wallet=rp_wallet, jc_wallet=jc_wallet)
    deals = [new_deal(i, units=units) for i in range(n_deals)]
    mech, mk = attach(flows, deals, pooling_ratio=ratio)
    for d in deals:
        mech.on_deal_created(mk, d)
        flows.agree(10, d, RP)
        flows.agree(10, d, JC)
        flows.add_result(20, d)
        mech.on_result_submitted(mk, d)  # (as the market calls it after every addResult)
        flows.check_result(30, d, MED)
    return ledger, log, flows, deals, mech


def slash(flows, mech, d, t=40):
    flows.mediation_reject(t, d)
    mech.on_deal_end(None, d)


def test_pool_two_deals_slashed_at_once():
    # ratio 2: each deal posts ceil(30 / 2) = 15; the pool holds 30 against 60 owed (exposure 2).
    # Deal 0 slashed: takes R = 30 (its 15 and deal 1's 15). Deal 1 slashed next: the pool is
    # empty: 0 taken (no event), 30 unpaid. Owed 60 - held 30 = shortfall 30.
    ledger, log, flows, (a, b), mech = pooled(2, 2.0)
    assert (a.results_held, b.results_held, ledger.escrow[RP]) == (15, 15, 30)
    assert mech.exposure(RP) == 2.0
    slash(flows, mech, a)
    assert (a.slash_unpaid, b.results_held) == (0, 0)
    assert events(log)[-2:] == [("Pay", RP, 30, RC, SLASHED), ("DSC", 6)]
    slash(flows, mech, b)
    assert events(log)[-2:] == [("Pay", MED, 4, MF, PAID_OUT), ("DSC", 6)]  # nothing slashed
    assert b.slash_unpaid == 30 and mech.unpaid == 30 and (mech.n_short, mech.n_slashings) == (1, 2)
    # RP: 100 - 2 * 15 posted = 70, all of it slashed to the owner; JC: 200 - 2 * F = 192
    assert balances(ledger) == {OWNER: (30, 0), JC: (192, 0), RP: (70, 0), MED: (8, 0)}


def test_pool_slash_then_release():
    # Deal 0 slashed (30: its 15 + deal 1's 15); deal 1 then passes its check: paid C = 15 and
    # released what is left of its share (0). RP: 70 + 15 = 85; JC: 200 - 4 - (4 + 15) = 177.
    ledger, log, flows, (a, b), mech = pooled(2, 2.0)
    slash(flows, mech, a)
    flows.mediation_accept(50, b)
    assert events(log)[-2:] == [("Pay", JC, 5, PC, REFUNDED), ("DSC", 5)]  # no R refund
    assert balances(ledger) == {OWNER: (30, 0), JC: (177, 0), RP: (85, 0), MED: (8, 0)}


@pytest.mark.parametrize(
    "n,ratio,taken,unpaid,left",
    [
        (2, 3.0, 20, 10, [0, 0]),  # shares ceil(30 / 3) = 10: pool 20 < R = 30: 10 unpaid
        (3, 2.0, 30, 0, [0, 0, 15]),  # shares 15: own 15 + the oldest other's 15
        (3, 4.0, 24, 6, [0, 0, 0]),  # shares ceil(7.5) = 8: pool 24 < 30: 6 unpaid
        (1, 1.0, 30, 0, [0]),  # no pooling: v1, the deal's own R
    ],
)
def test_pool_draws(n, ratio, taken, unpaid, left):
    ledger, log, flows, deals, mech = pooled(n, ratio)
    slash(flows, mech, deals[0])
    assert deals[0].slashed == taken and deals[0].slash_unpaid == unpaid
    assert [d.results_held for d in deals] == left
    assert ledger.escrow[RP] == sum(left)


@pytest.mark.parametrize(
    "owed,held,q,expected",
    [
        ([30, 30], 30, 0.1, 0.01),  # short only when both are slashed: q^2
        ([30, 30], 60, 0.5, 0.0),  # fully backed
        ([10, 20, 30], 30, 0.5, 0.375),  # {10,30}, {20,30}: 2 q^2 (1-q); {10,20,30}: q^3
        ([40], 30, 0.2, 0.2),  # one deal owing more than the pool: short whenever slashed
        ([], 0, 0.5, 0.0),
    ],
)
def test_shortfall_probability(owed, held, q, expected):
    assert shortfall_probability(owed, held, q) == pytest.approx(expected)


@pytest.mark.parametrize("seed", range(6))
def test_shortfall_probability_counts_every_subset(seed):
    """The exact branch equals the definition: the sum over every subset S of the open deals
    with sum(R in S) > held of q^|S| (1 - q)^(n - |S|), enumerated here by brute force (sizes
    in increasing order, as the function adds them), bit for bit."""
    import itertools

    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 13))
    owed = [int(x) for x in rng.choice([10**18, 3 * 10**18, 7 * 10**18 + 1], n)]
    held, q = int(rng.random() * sum(owed)), float(rng.random())
    if seed % 2:  # a subset sums to exactly what the pool holds (not a shortfall)
        held = sum(x for x in owed if rng.random() < 0.5)
    p = 0.0
    for k in range(1, n + 1):
        over = sum(1 for c in itertools.combinations(owed, k) if sum(c) > held)
        p += q**k * (1.0 - q) ** (n - k) * over
    assert shortfall_probability(owed, held, q) == p


def test_shortfall_probability_normal_beyond_twelve_deals():
    # 16 deals of 1 each, q = 0.5, held 8: P(Binomial(16, 0.5) > 8) = 0.4018 exactly; the normal
    # approximation (mean 8, sd 2, no continuity correction) gives 0.5
    assert shortfall_probability([1] * 16, 8, 0.5) == pytest.approx(0.5)


def test_pool_tick_metrics():
    # two open deals owing 30 each against a pool of 30: exposure 2, worst-case shortfall 30
    # wei; q = 0 (nothing slashed yet): shortfall probability 0
    ledger, log, flows, deals, mech = pooled(2, 2.0)
    mk = SimpleNamespace(rp_acct=[RP], tick=1)
    mech.on_tick_end(mk)
    assert (mech.exposure_sum, mech.worst_sum, mech.prob_sum) == (2.0, 30, 0.0)
    assert mech.exposure_by_node(SimpleNamespace(rp_acct=[RP]))[0] == 2.0


# -- in the market --------------------------------------------------------------------------------
def payments(mk, reason, direction):
    return [
        r for r in mk.log.rows if r[0] == EventKind.Payment and r[5] == reason and r[6] == direction
    ]


def test_up_front_in_the_market(compose):
    cfg = compose(*SMALL, "collateral=up_front", "policies.rp.policy=cheat_with_probability",
                  "policies.jc.check_probability=0.5", "market.job_rate_per_tick=0.4")  # fmt: skip
    mk = run_market(cfg)
    mech = next(m for m in mk.mechanisms if m.name == "collateral")
    on_chain = [d for d in mk.deals if d.rp_agreed_at]
    assert len(on_chain) > 20
    for d in on_chain:
        assert (
            d.results_up_front
            == d.results_multiple * d.instruction_price * mech.expected_units[d.module]
        )
    # per deal, the results collateral paid in equals what came back (refunded or slashed)
    paid_in, back = {}, {}
    for r in payments(mk, Rsn.ResultsCollateral, Dir.PaidIn):
        paid_in[r[2]] = paid_in.get(r[2], 0) + r[4]
    for direction in (Dir.Refunded, Dir.Slashed):
        for r in payments(mk, Rsn.ResultsCollateral, direction):
            back[r[2]] = back.get(r[2], 0) + r[4]
    assert paid_in == back
    # at addResult the deal settles to R: R0 + top-up - refund = m * C
    for d in (d for d in on_chain if d.submitted_at):
        at = {(r[6]): r[4] for r in mk.log.rows if r[0] == EventKind.Payment and r[2] == d.index
              and r[5] == Rsn.ResultsCollateral and r[1] == d.submitted_at}  # fmt: skip
        assert (
            d.results_up_front + at.get(Dir.PaidIn, 0) - at.get(Dir.Refunded, 0)
            == d.results_collateral
        )
        assert len(at) <= 1  # a top-up or a refund, never both
    assert sum(mk.ledger.escrow) == 0 and mk.ledger.total() == mk.ledger.minted
    m = mech.metrics(mk)
    assert m["up_front_topped_up_tokens"] > 0 and m["up_front_refunded_tokens"] > 0


def test_late_penalty_in_the_market(compose):
    # grace 60 s: every result takes at least two ticks (120 s) from agree, so every paid deal
    # is paid min(C, P) less the schedule's cut; the JC gets the cut back with P - pay
    cfg = compose(*SMALL, "collateral=late_penalty", "collateral.late_grace_s=60")
    mk = run_market(cfg)
    paid = [d for d in mk.deals if d.state in (DealState.ResultsAccepted, DealState.MediationAccepted,
                                               DealState.TimeoutJudgeResults)]  # fmt: skip
    assert len(paid) > 30
    pay = {r[2]: r[4] for r in payments(mk, Rsn.JobPayment, Dir.PaidOut)}
    for d in paid:
        full = min(d.job_cost, d.payment_collateral)
        cut = late_withheld(full, d.submitted_at - d.agreed_at, 60, d.submit_timeout, 0.5)
        assert cut > 0 and pay[d.index] == full - cut == d.payment
    assert sum(mk.ledger.escrow) == 0


def test_pooling_in_the_market(compose):
    cfg = compose(*SMALL, "collateral=pooled", "policies.rp.policy=always_cheat",
                  "policies.jc.policy=always_check", "market.job_rate_per_tick=0.6")  # fmt: skip
    mk = run_market(cfg)
    mech = next(m for m in mk.mechanisms if m.name == "collateral")
    rejected = [d for d in mk.deals if d.state == DealState.MediationRejected]
    assert len(rejected) > 20
    for d in rejected:  # a slashing takes R from the pool, or what the pool held
        assert d.slashed + d.slash_unpaid == d.results_collateral
    # each deal posted ceil(R / 2); everything posted came back or was slashed
    posted = sum(r[4] for r in payments(mk, Rsn.ResultsCollateral, Dir.PaidIn))
    assert posted == sum(-(-d.results_collateral // 2) for d in mk.deals if d.submitted_at)
    out = sum(r[4] for r in payments(mk, Rsn.ResultsCollateral, Dir.Slashed)) + sum(
        r[4] for r in payments(mk, Rsn.ResultsCollateral, Dir.Refunded)
    )
    assert out == posted and sum(mk.ledger.escrow) == 0
    m = mech.metrics(mk)
    assert m["pool_unpaid_tokens"] * 1e18 == pytest.approx(sum(d.slash_unpaid for d in rejected))
    assert 0 < m["pool_short_slash_rate"] <= 1 and m["pool_shortfall_probability"] > 0
    # R = 2C is even, so a share is exactly R / 2 and owed / held >= 2 (more after draws)
    assert m["pool_exposure_mean"] >= 2.0 - 1e-9


def test_collateral_features(compose):
    cfg = compose(*SMALL, "collateral=pooled", "collateral.late_grace_s=60")
    mk = run_market(cfg)
    mech = next(m for m in mk.mechanisms if m.name == "collateral")
    feats = mech.public_features(mk, {})
    assert feats["rp"].shape == (mk.n_rp, len(mech.feature_names("rp")))
    assert (feats["rp"][:, 0] == 1.0).all()  # market closed, nothing owed: fully covered
    assert feats["jc"].shape == (mk.n_jc, 2) and feats["mediator"].shape == (mk.n_med, 1)
