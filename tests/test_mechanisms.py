"""Mechanisms: table-driven rules with hand-derived values, then end-to-end checks in the market."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from experiments import run_episodes
from twin.deals import DealState
from twin.events import EventKind, TransferReason
from twin.mechanisms.base import Mechanism
from twin.mechanisms.reputation import Reputation
from twin.mechanisms.schema import ReputationConfig, SlashingConfig, TaxConfig
from twin.mechanisms.slashing import SlashingShares
from twin.mechanisms.taxes import TaxesAndJackpot, challenger_shares, exact_share

TOKEN = 10**18
SMALL = (
    "market.n_job_creators=6",
    "market.n_resource_providers=4",
    "market.n_mediators=2",
    "market.episode_ticks=60",
)


def transfers(mk, reason):
    return [r for r in mk.log.rows if r[0] == EventKind.Transfer and r[6] == reason]


def run_market(cfg, seed=0):
    from twin.env import MarketEnv

    env = MarketEnv(cfg)
    env.reset(seed=seed)
    while not env.market.done:
        env.step({})
    return env.market


# -- taxes and jackpots -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "amount,rate,expected",
    [
        (10**18, 0.05, 5 * 10**16),  # 5 % of one token
        (15, 0.05, 0),  # floor(0.75) = 0
        (99, 1 / 3, 33),  # the float 1/3 is read back as the fraction 1/3: 99 / 3 = 33
        (10, 0.999, 9),  # floor(9.99)
    ],
)
def test_exact_share(amount, rate, expected):
    assert exact_share(amount, rate) == expected


@pytest.mark.parametrize(
    "payout,k,decay,expected",
    [
        (100, 1, 0.5, [100]),  # one challenger takes it all
        (100, 2, 0.5, [25, 25]),  # total 100 * 0.5 = 50, split equally
        (100, 3, 0.5, [8, 8, 8]),  # total 25, floor(25 / 3) = 8 each
        (100, 2, 1.0, [50, 50]),  # no decay: equal split of the whole payout
    ],
)
def test_challenger_shares(payout, k, decay, expected):
    assert challenger_shares(payout, k, decay) == expected


def test_sybils_do_not_raise_the_total():
    totals = [sum(challenger_shares(10**18, k, 0.5)) for k in range(1, 8)]
    assert all(a >= b for a, b in zip(totals, totals[1:], strict=False)) and totals[0] == 10**18


@pytest.mark.parametrize(
    "jackpot_tokens,expected_tokens",
    [
        (300, 50),  # target = compensation 1 / rate 0.02 = 50 tokens; cap = 300 / 3 = 100 -> 50
        (90, 30),  # cap = 90 / 3 = 30 < 50 -> 30
    ],
)
def test_forced_error_payout_rule(jackpot_tokens, expected_tokens):
    m = TaxesAndJackpot(TaxConfig(rate=0.0, forced_error_rate=0.02, compensation_wei=TOKEN))
    assert m.payout(jackpot_tokens * TOKEN) == expected_tokens * TOKEN


def test_taxes_feed_the_jackpot(compose):
    # every paid deal moves floor(payment * 0.05) from its JC to the jackpot; nothing else does
    cfg = compose(*SMALL, "taxes=jackpot")
    mk = run_market(cfg)
    jp = mk.system["jackpot"]
    paid = [
        d
        for d in mk.deals
        if d.state
        in (DealState.ResultsAccepted, DealState.MediationAccepted, DealState.TimeoutJudgeResults)
    ]
    taxes = transfers(mk, TransferReason.Tax)
    assert len(taxes) == len(paid) > 20
    assert sorted(r[5] for r in taxes) == sorted(d.payment * 5 // 100 for d in paid)
    assert mk.ledger.wallet[jp] == 100 * TOKEN + sum(r[5] for r in taxes)  # seeded with 100 tokens
    assert mk.ledger.total() == mk.ledger.minted


def test_forced_errors_pay_the_checker_and_spare_the_node(compose):
    # Honest nodes, JCs that always check, half of the results forced wrong. For each caught
    # forced error: the RP's R is slashed into the jackpot and refunded to it (net 0), and the JC
    # wins min(compensation / rate, jackpot / 3) = min(1 / 0.5, J / 3) tokens = 2 tokens here.
    cfg = compose(*SMALL, "taxes=forced_errors", "taxes.forced_error_rate=0.5", "policies.jc.policy=always_check",
                  "market.modules=[cowsay]")  # fmt: skip
    mk = run_market(cfg)
    forced = [d for d in mk.deals if d.forced_error and d.state == DealState.MediationRejected]
    assert len(forced) > 10
    refunds = {r[2]: r[5] for r in transfers(mk, TransferReason.ForcedErrorRefund)}
    payouts = {r[2]: (r[4], r[5]) for r in transfers(mk, TransferReason.JackpotPayout)}
    for d in forced:
        assert refunds[d.index] == d.results_collateral == d.slashed
        assert payouts[d.index] == (d.jc, 2 * TOKEN)
    honest_rejected = [
        d for d in mk.deals if not d.forced_error and d.state == DealState.MediationRejected
    ]
    assert honest_rejected == []  # deterministic job class: only forced errors fail checks


# -- slashing destinations ------------------------------------------------------------------------
def test_slashing_split():
    m = SlashingShares(SlashingConfig(owner=0.25, client=0.5, burn=0.25))
    m.attach(
        SimpleNamespace(system={"slashing_pool": 90, "burn": 91}, flows=SimpleNamespace(slash_to=0))
    )
    mk = SimpleNamespace(owner=0, system={"burn": 91}, rp_acct=np.array([5, 6, 7]))
    d = SimpleNamespace(jc=1, rp=5, mediator=3)
    # 1000 wei slashed from the RP: owner 250, client (the JC) 500, burn 250
    assert sorted(m.split(mk, d, 1000, slashed_party=5)) == [(0, 250), (1, 500), (91, 250)]
    # the JC slashed (judge timeout): the client share goes to its counterparty, the RP
    assert (5, 500) in m.split(mk, d, 1000, slashed_party=1)
    m2 = SlashingShares(SlashingConfig(owner=0.0, nodes=1.0))
    m2.attach(
        SimpleNamespace(system={"slashing_pool": 90, "burn": 91}, flows=SimpleNamespace(slash_to=0))
    )
    # 101 wei to the two other nodes: 50 each, 1 wei of dust to the owner
    assert sorted(m2.split(mk, d, 101, slashed_party=5)) == [(0, 1), (6, 50), (7, 50)]


def test_slashing_shares_in_the_market(compose):
    cfg = compose(
        *SMALL,
        "slashing=client_and_burn",
        "policies.rp.policy=always_cheat",
        "policies.jc.policy=always_check",
    )
    mk = run_market(cfg)
    rejected = [d for d in mk.deals if d.state == DealState.MediationRejected]
    assert len(rejected) > 10
    shares = transfers(mk, TransferReason.SlashShare)
    for d in rejected:
        mine = [(r[4], r[5]) for r in shares if r[2] == d.index]
        R = d.results_collateral
        assert (d.jc, R // 2) in mine and (mk.system["burn"], R // 4) in mine
        assert sum(w for _, w in mine) == R
    assert mk.ledger.wallet[mk.system["slashing_pool"]] == 0
    assert mk.ledger.total() == mk.ledger.minted


# -- reputation ---------------------------------------------------------------------------------
def _rep(score, **kw):
    r = Reputation(ReputationConfig(score=score, **kw))
    mk = SimpleNamespace(
        n_accounts=3, now=0, rp_acct=np.array([1, 2]), res=SimpleNamespace(score=None)
    )
    r.attach(mk)
    return r


def test_reputation_scores():
    r = _rep("pass_rate")
    r.passed[1], r.checked[1] = 3, 4
    assert r.score(0)[1] == pytest.approx((3 + 1) / (4 + 2))  # 2/3
    b = _rep("beta")
    b.completed[1], b.failed[1], b.missed[1] = 8, 1, 1
    assert b.score(0)[1] == pytest.approx((8 + 1) / (8 + 2 + 2))  # 0.75
    dcy = _rep("decayed", half_life_s=100.0)
    dcy.dec_pass[1], dcy.dec_fail[1] = 4, 0
    assert dcy.score(0)[1] == pytest.approx((4 + 1) / (4 + 2))  # 5/6
    assert dcy.score(100)[1] == pytest.approx((2 + 1) / (2 + 2))  # one half-life: 3/4


def test_reputation_scores_now_follow_deal_ends_and_time():
    # the kept scores are recomputed when a deal ends (the counts change) and, for decayed
    # scores, when the time moves; in between they are the same array
    from twin.deals import DealState

    r = _rep("pass_rate")
    s0 = r.scores_now(0)
    assert r.scores_now(50) is s0 and s0[1] == pytest.approx(1 / 2)  # prior 1/(1+1)
    d = SimpleNamespace(rp=1, state=DealState.MediationAccepted, checked=True, stuck=False)
    r.on_deal_end(SimpleNamespace(now=10), d)  # one check passed: (1 + 1) / (1 + 2)
    assert r.scores_now(10)[1] == pytest.approx(2 / 3) and r.scores_now(10) is not s0
    dcy = _rep("decayed", half_life_s=100.0)
    dcy.on_deal_end(SimpleNamespace(now=0), d)  # one decayed pass at t = 0: (1 + 1) / (1 + 2)
    assert dcy.scores_now(0)[1] == pytest.approx(2 / 3)
    # one half-life later the pass counts 1/2: (0.5 + 1) / (0.5 + 2) = 0.6
    assert dcy.scores_now(100)[1] == pytest.approx(0.6)
    assert dcy.scores_now(100).tolist() == dcy.score(100).tolist()


def test_reputation_bars_caught_cheaters(compose):
    # nodes that always cheat and are always checked fail every check: their beta score falls
    # below 0.3 after a few deals and they stop getting work
    cfg = compose(*SMALL, "reputation=beta", "policies.rp.policy=always_cheat", "policies.jc.policy=always_check",
                  "market.episode_ticks=120")  # fmt: skip
    res = run_episodes(cfg, 1, 0)
    assert res.summary["min_rp_score"] < 0.3
    by_rp = res.deals.groupby("rp").size()
    assert by_rp.max() <= 6  # a = b = 1: after 3 failures (1 / 5 = 0.2 < 0.3) no more matches


# -- fees, storage, announce --------------------------------------------------------------------
def test_protocol_fee_waived_for_public_goods(compose):
    cfg = compose(*SMALL, "fees=protocol_fee", "market.modules=[cowsay,sdxl]")
    mk = run_market(cfg)
    fees = transfers(mk, TransferReason.ProtocolFee)
    paid = [
        d
        for d in mk.deals
        if d.state
        in (DealState.ResultsAccepted, DealState.MediationAccepted, DealState.TimeoutJudgeResults)
    ]
    sdxl = mk.module_names.index("sdxl")
    assert len(fees) == sum(d.module == sdxl for d in paid) > 5  # cowsay is waived
    assert all(r[5] == 5 * 10**16 for r in fees)
    assert mk.ledger.wallet[mk.system["treasury"]] == 5 * 10**16 * len(fees)


def test_storage_window(compose):
    # window 1800 s at 0.1 token/h: fee = 10**17 * 1800 // 3600 = 5 * 10**16 per result;
    # the judge timeout (3600 s) shrinks to the window
    cfg = compose(*SMALL, "storage=window")
    mk = run_market(cfg)
    submitted = [d for d in mk.deals if d.submitted_at]
    assert all(d.judge_timeout == 1800 for d in mk.deals)
    fees = transfers(mk, TransferReason.StorageFee)
    assert len(fees) == len(submitted) and all(r[5] == 5 * 10**16 for r in fees)
    mech = next(m for m in mk.mechanisms if m.name == "storage")
    d = submitted[0]
    mk.now = d.submitted_at + 1800
    assert mech.can_check(mk, d)
    mk.now += 1
    assert not mech.can_check(mk, d)


def test_announce_reward_counts_undetected_cheats(compose):
    cfg = compose(*SMALL, "announce=reward", "taxes=jackpot", "policies.rp.policy=always_cheat")
    mk = run_market(cfg)
    undetected = [
        d
        for d in mk.deals
        if d.cheated
        and not d.checked
        and d.state in (DealState.ResultsAccepted, DealState.TimeoutJudgeResults)
    ]
    rewards = transfers(mk, TransferReason.AnnounceReward)
    assert len(rewards) == len(undetected) > 10
    assert all(r[5] == 5 * 10**17 and r[4] == mk.deals[r[2]].rp for r in rewards)


# -- observation columns: public_features or write_features ----------------------------------
class _Returned(Mechanism):
    """Implements only public_features: the default write_features places what it returns."""

    name = "returned"

    def feature_names(self, role):
        return {"rp": ("row",), "jc": ("a", "b")}.get(role, ())

    def public_features(self, mk, focus):
        # rp: one value per seat (a matrix); jc: one tuple broadcast to every seat
        return {"rp": np.arange(mk.n_rp, dtype=float)[:, None], "jc": (0.25, -1.5)}


class _Written(Mechanism):
    """Implements only write_features: the default public_features runs it on zero matrices."""

    name = "written"

    def feature_names(self, role):
        return ("focus_rp",) if role in ("jc", "mediator") else ()

    def write_features(self, mk, fb):
        for role in ("jc", "mediator"):
            fb.out[role][fb.rows(role), 0] = fb.rps(role) + 0.5


def test_features_written_either_way(compose):
    from twin.env import MarketEnv
    from twin.observe import FEATURES, Observer

    cfg = compose(
        "market.n_job_creators=3", "market.n_resource_providers=4", "market.n_mediators=2"
    )
    env = MarketEnv(cfg)
    env.reset(seed=0)
    mk = env.market
    for _ in range(15):  # until some client has a result to judge (a focus deal)
        if mk.judge_q.first():
            break
        env.step({a: 2 for a in env.agents if a.startswith("jc")})  # clients wait
    jc_focus = {a - int(mk.jc_acct[0]): di for a, di in mk.judge_q.first().items()}
    assert jc_focus, "no client had a result to judge"
    mk.mechanisms = [*mk.mechanisms, _Returned(None), _Written(None)]
    o = Observer(mk, len(cfg.pricing.price_levels))()
    nr, nj, nm = len(FEATURES["rp"]), len(FEATURES["jc"]), len(FEATURES["mediator"])
    # rp: _Returned's column is each seat's row number; _Written adds none
    assert o.rp.shape[1] == nr + 1 and o.rp[:, nr].tolist() == [0.0, 1.0, 2.0, 3.0]
    # jc: _Returned's (0.25, -1.5) in every row, then _Written's RP account + 0.5 on focus rows
    assert o.jc.shape[1] == nj + 3
    assert (o.jc[:, nj : nj + 2] == np.float32([0.25, -1.5])).all()
    want = np.zeros(mk.n_jc, np.float32)
    for r, di in jc_focus.items():
        want[r] = mk.deals[di].rp + 0.5
    assert o.jc[:, nj + 2].tolist() == want.tolist()
    # mediators have no focus deal here (nobody checked): zeros
    assert o.mediator.shape[1] == nm + 1 and not o.mediator[:, nm].any()
    # public_features of a write_features-only mechanism: new float64 matrices, same values
    f = _Written(None).public_features(mk, {"jc": jc_focus})
    assert set(f) == {"jc", "mediator"} and f["jc"].dtype == np.float64
    assert f["jc"][:, 0].tolist() == want.tolist() and not f["mediator"].any()
