"""Replication markets: the LMSR in wei on hand-derived values, the maker's bounded loss, rounds
(funding, bets, settlement, voiding), bettors' beliefs, then end-to-end in the market.

Hand values (b = 10 tokens = 10**19 wei; e = 2.718281828459045...):
- C(0, 0) = b ln 2 = 6.931471805599453094172... tokens -> subsidy 6931471805599453095 wei (up).
- Buying x YES from (0, 0) costs C(x, 0) - C(0, 0) = b ln((e^{x/b} + 1) / 2). For x = b = 10 tokens:
  10 ln((e + 1) / 2) = 10 ln(1.859140914229522...) = 6.201145069582775246317... tokens
  -> 6201145069582775247 wei (rounded up). The YES price after it is e / (e + 1) = 0.731058578630...
- Then buying 10 NO costs C(10, 10) - C(10, 0) = 10 (1 + ln 2) - 10 ln(e + 1) = 10 ln(2e / (e + 1))
  = 3.798854930417224753682... tokens -> 3798854930417224754 wei. Both trades together paid
  C(10, 10) - C(0, 0) = 10 tokens exactly, plus 1 wei of rounding (0.317... + 0.682... up).
- One unit (1 wei of payout) from (0, 0) costs b ln((e^{1/b} + 1) / 2) = 0.5 + 1.25e-20 wei -> 1 wei.
- A budget of 1 token from (0, 0) buys x = b ln(2 e^{m/b} - 1) = 10 ln(2 e^{0.1} - 1)
  = 1.909028289263818919789... tokens -> 1909028289263818919 units (floored), costing
  999999999999999999.57 -> 10**18 wei (up): the whole budget.
- Moving the YES price to 3/4 from (0, 0) takes q_yes - q_no = b logit(3/4) = b ln 3
  = 10.986122886681096913952... tokens -> 10986122886681096913 units (floored).
- Buying 500 tokens of YES (50 b) from (0, 0) costs b ln((e^{50} + 1) / 2)
  = 500 - b ln 2 + b ln(1 + e^{-50}) = 493.068528194400546905829... tokens -> ...906 wei (up);
  if YES wins the maker pays 500 tokens: loss 6931471805599453094 wei = floor(b ln 2), the bound.
"""

from __future__ import annotations

import copy
import math
import random
from decimal import Decimal, localcontext

import numpy as np
import pytest

from tests.test_mechanisms import SMALL, run_market, transfers
from twin.config import ConfigError
from twin.deals import DealState
from twin.events import EventKind, PaymentDirection, TransferReason
from twin.market import Market
from twin.mechanisms.prediction import (
    buy_cost_wei,
    lmsr_cost,
    lmsr_price,
    shares_for_budget,
    shares_to_price,
    subsidy_wei,
)
from twin.metrics import balances_from_events

TOKEN = 10**18
B = 10 * TOKEN
E = math.e


# -- the LMSR in wei ------------------------------------------------------------------------------
def test_subsidy_is_b_ln2_rounded_up():
    assert subsidy_wei(B) == 6931471805599453095
    assert subsidy_wei(B) == math.ceil(lmsr_cost(0, 0, B))


@pytest.mark.parametrize(
    "q_yes,q_no,shares,yes,cost",
    [
        (0, 0, B, True, 6201145069582775247),  # 10 ln((e + 1) / 2) tokens, up
        (0, 0, B, False, 6201145069582775247),  # symmetric
        (B, 0, B, False, 3798854930417224754),  # 10 ln(2e / (e + 1)) tokens, up
        (0, B, B, True, 3798854930417224754),  # symmetric
        (0, 0, 1, True, 1),  # half a wei, up
        (0, 0, 50 * B, True, 493068528194400546906),  # 500 - 10 ln 2 (+ 2e-21) tokens, up
    ],
)
def test_buy_cost(q_yes, q_no, shares, yes, cost):
    assert buy_cost_wei(q_yes, q_no, B, shares, yes) == cost


@pytest.mark.parametrize(
    "q_yes,q_no,price",
    [(0, 0, 0.5), (B, 0, E / (E + 1)), (0, B, 1 / (E + 1)), (B, B, 0.5), (10**40, 0, 1.0)],
)
def test_price(q_yes, q_no, price):
    assert lmsr_price(q_yes, q_no, B) == pytest.approx(price, rel=1e-12)


def test_two_trades_pay_the_cost_difference_plus_rounding():
    # (0,0) -> (10,0) -> (10,10): C(10,10) - C(0,0) = 10 tokens; each leg rounded up
    paid = buy_cost_wei(0, 0, B, B, True) + buy_cost_wei(B, 0, B, B, False)
    assert paid == 10 * TOKEN + 1


def test_shares_for_budget():
    assert shares_for_budget(0, 0, B, TOKEN, True) == 1909028289263818919
    assert buy_cost_wei(0, 0, B, 1909028289263818919, True) == TOKEN
    assert buy_cost_wei(0, 0, B, 1909028289263818920, True) > TOKEN
    # the budget that 10 tokens of YES cost buys exactly those 10 tokens back
    assert shares_for_budget(0, 0, B, 6201145069582775247, True) == B
    assert shares_for_budget(0, 0, B, 0, True) == 0


@pytest.mark.parametrize(
    "q_yes,q_no,p,yes,units",
    [
        (0, 0, 0.75, True, 10986122886681096913),  # b ln 3, floored
        (0, 0, 0.25, False, 10986122886681096913),  # symmetric: NO down to 1/4
        (B, 0, 0.5, True, 0),  # already above 0.5: no YES needed
        (B, 0, 0.5, False, B),  # NO back to 0.5: q_no = q_yes
        (0, 0, 1.0, True, None),  # certainty: no finite amount
        (0, 0, 0.0, False, None),
        (0, 0, 0.0, True, 0),  # YES never lowers the price
    ],
)
def test_shares_to_price(q_yes, q_no, p, yes, units):
    assert shares_to_price(q_yes, q_no, B, p, yes) == units


def test_worst_case_loss_is_floor_b_ln2():
    cost = buy_cost_wei(0, 0, B, 50 * B, True)
    assert 50 * B - cost == 6931471805599453094 == subsidy_wei(B) - 1


@pytest.mark.parametrize("seed", range(6))
def test_maker_loss_is_bounded_over_random_trades(seed):
    # Any sequence of buys from (0, 0): payments >= C(q) - C(0, 0) and C(q) >= max(q), so the
    # maker's loss q_winner - payments <= b ln 2 whichever side wins, and the subsidy covers it.
    rng = random.Random(seed)  # Python ints: amounts beyond int64
    b = rng.randrange(10**9, 10**24)
    qy = qn = paid = 0
    for _ in range(60):
        yes = rng.random() < 0.5 + 0.4 * (seed % 3 - 1)  # balanced, YES-heavy, NO-heavy
        if rng.random() < 0.5:
            n = rng.randrange(1, 5 * b)
        else:  # the most units a budget buys: the next unit would exceed it
            m = rng.randrange(1, 3 * b)
            n = shares_for_budget(qy, qn, b, m, yes)
            assert buy_cost_wei(qy, qn, b, n, yes) <= m < buy_cost_wei(qy, qn, b, n + 1, yes)
        paid += buy_cost_wei(qy, qn, b, n, yes)
        qy, qn = (qy + n, qn) if yes else (qy, qn + n)
        assert paid >= lmsr_cost(qy, qn, b) - lmsr_cost(0, 0, b)
    with localcontext() as ctx:
        ctx.prec = 60
        bound = Decimal(b) * Decimal(2).ln()
    for winner in (qy, qn):
        assert winner - paid <= bound
        assert winner <= subsidy_wei(b) + paid


@pytest.mark.parametrize("seed", range(2))
def test_fixed_point_cost_is_within_its_error_bound(seed):
    # cost_fx (C(q) times 2^Q on integers) against C(q) in 100-digit decimal arithmetic, over
    # many magnitudes of b and of the imbalance q_yes - q_no: within 2^-90 wei, as documented.
    # Consequently the charges (ceil of a difference) and the budget inverse agree with the
    # decimal values wherever those are not within 2^-80 wei of an integer.
    from twin import fixedmath as fx
    from twin.mechanisms.prediction import cost_fx

    rng = random.Random(seed)
    with localcontext() as ctx:
        ctx.prec = 100
        tol = Decimal(2) ** -90
        for _ in range(40):
            b = rng.randrange(10**9, 10**24)
            qy, qn = rng.randrange(0, 20 * b), rng.randrange(0, 20 * b)
            hi, lo = max(qy, qn), min(qy, qn)
            ref = hi + b * (1 + ((lo - hi) / Decimal(b)).exp()).ln()
            got = Decimal(cost_fx(qy, qn, b)) / Decimal(1 << fx.Q)
            assert abs(got - ref) < tol
            n = rng.randrange(1, 3 * b)
            ref1 = max(qy + n, qn) + b * (1 + (-abs(qy + n - qn) / Decimal(b)).exp()).ln()
            diff = ref1 - ref
            if abs(diff - diff.to_integral_value()) > Decimal(2) ** -80:
                assert buy_cost_wei(qy, qn, b, n, True) == math.ceil(diff)
            m, yes = rng.randrange(1, 3 * b), rng.random() < 0.5
            k = shares_for_budget(qy, qn, b, m, yes)
            assert buy_cost_wei(qy, qn, b, k, yes) <= m < buy_cost_wei(qy, qn, b, k + 1, yes)


# -- rounds in a market -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def base(compose):
    return compose(*SMALL, "prediction=lmsr")


def market(base, **fields):
    cfg = copy.deepcopy(base)
    for path, value in fields.items():
        group, key = path.split("__")
        setattr(getattr(cfg, group), key, value)
    mk = Market(cfg, seed=0)
    return mk, next(m for m in mk.mechanisms if m.name == "prediction")


def test_a_round_funded_bet_and_settled(base):
    mk, pm = market(base)
    owner, maker = mk.owner, pm.maker
    assert mk.ledger.wallet[owner] == 1000 * TOKEN  # owner_seed_tokens, minted at genesis
    rp, a, c = (int(x) for x in mk.rp_acct[:3])
    rnd = pm.open_round(mk, rp)
    sub = 6931471805599453095
    assert mk.ledger.wallet[maker] == sub and mk.ledger.wallet[owner] == 1000 * TOKEN - sub
    # a (believes YES certain) buys 10 tokens' worth of units for the cost of 10 units exactly
    assert pm.buy(mk, rnd, a, True, 6201145069582775247, 1.0) == B
    assert pm.price(rnd) == pytest.approx(E / (E + 1))
    # c believes 0.5: buys NO, but only down to the price 0.5 -> 10 tokens of NO, 3.7988... tokens
    assert pm.buy(mk, rnd, c, False, 100 * TOKEN, 0.5) == B
    assert rnd.paid == {a: 6201145069582775247, c: 3798854930417224754}
    assert rnd.cost == lmsr_cost(B, B, B)  # the cached C(q) follows the trades
    assert mk.ledger.wallet[maker] == sub + 10 * TOKEN + 1
    wa, wc = mk.ledger.wallet[a], mk.ledger.wallet[c]
    pm.settle(mk, rnd, replicated=True, deal=7)
    assert mk.ledger.wallet[a] == wa + B and mk.ledger.wallet[c] == wc  # YES units pay 1 wei each
    # the funder gets back subsidy + payments - payouts: it gains the 1 wei of rounding
    assert mk.ledger.wallet[maker] == 0 and mk.ledger.wallet[owner] == 1000 * TOKEN + 1
    assert pm.net_subsidy == -1 and rp not in pm.rounds
    h = pm.history[0]
    assert (h.rp, h.deal, h.replicated, h.q_yes, h.q_no, h.paid_out) == (rp, 7, True, B, B, B)
    assert h.price == pytest.approx(0.5)
    kinds = [r[6] for r in mk.log.rows if r[0] == EventKind.Transfer]
    assert kinds == [TransferReason.MarketSubsidy, TransferReason.MarketBet, TransferReason.MarketBet,
                     TransferReason.MarketPayout, TransferReason.MarketSubsidy]  # fmt: skip


@pytest.mark.parametrize(
    "replicated,owner_net", [(True, -3798854930417224753), (False, 6201145069582775247)]
)
def test_settlement_funder_net(base, replicated, owner_net):
    # one YES buyer of 10 tokens of units at 6.2011... tokens: if YES wins the maker pays 10 tokens
    # and loses 10 - 6.2011... = 3.7988... tokens (< b ln 2); if NO wins it keeps the payment
    mk, pm = market(base)
    rp, a = int(mk.rp_acct[0]), int(mk.rp_acct[1])
    rnd = pm.open_round(mk, rp)
    pm.buy(mk, rnd, a, True, 6201145069582775247, 1.0)
    pm.settle(mk, rnd, replicated)
    assert mk.ledger.wallet[mk.owner] - 1000 * TOKEN == owner_net
    assert mk.ledger.wallet[pm.maker] == 0  # fmt: skip


def test_void_refunds_everyone(base):
    mk, pm = market(base)
    rp, a = int(mk.rp_acct[0]), int(mk.rp_acct[1])
    before = list(mk.ledger.wallet)
    rnd = pm.open_round(mk, rp)
    pm.buy(mk, rnd, a, False, TOKEN, 0.0)
    pm.void(mk, rnd)
    assert mk.ledger.wallet == before and pm.voided == 1 and not pm.rounds
    assert [r[6] for r in transfers(mk, TransferReason.MarketRefund)] == [
        TransferReason.MarketRefund
    ]


def test_unfunded_round_waits(base):
    mk, pm = market(base, prediction__owner_seed_tokens=0.0)
    assert pm.open_round(mk, int(mk.rp_acct[0])) is None and pm.unfunded == 1 and not pm.rounds


def test_beliefs(base):
    mk, pm = market(base)
    rp, other = int(mk.rp_acct[0]), int(mk.rp_acct[1])
    scores = np.array([0.5, 0.9, 0.5, 0.5])
    assert pm.belief(mk, other, rp, scores) == 0.5  # outsiders: the public score
    pm.n_pending[rp], pm.n_wrong[rp] = 4, 1
    assert pm.belief(mk, rp, rp, scores) == 0.75  # the insider: 3 of its 4 pending are right
    assert pm.belief(mk, other, rp, scores) == 0.5
    pm.n_pending[rp] = pm.n_wrong[rp] = 0
    assert pm.belief(mk, rp, rp, scores) == 0.5  # nothing pending: the public score


def test_insiders_bet_on_their_own_market(base):
    # bets_per_tick = 0: only insiders trade. RP 0 has 2 results in flight, both wrong (belief 0):
    # it buys NO for its 1-token budget, uncapped: 1.9090... tokens of units (hand value above).
    # RP 1 has one correct result in flight: YES, the same amount. RP 2 has none: no bet.
    mk, pm = market(base, prediction__bets_per_tick=0)
    a, c, z = (int(x) for x in mk.rp_acct[:3])
    pm.n_pending[a], pm.n_wrong[a] = 2, 2
    pm.n_pending[c] = 1
    mk.tick = 1
    pm.on_tick_end(mk)  # opens every round, then bets
    assert len(pm.rounds) == mk.n_rp
    assert pm.rounds[a].no == {a: 1909028289263818919} and not pm.rounds[a].yes
    assert pm.rounds[c].yes == {c: 1909028289263818919} and not pm.rounds[c].no
    assert not pm.rounds[z].paid and pm.bets == 2 and pm.volume == 2 * TOKEN
    # without insider bets nobody trades
    mk, pm = market(base, prediction__bets_per_tick=0, prediction__insider_bets=False)
    pm.n_pending[a], pm.n_wrong[a] = 2, 2
    mk.tick = 1
    pm.on_tick_end(mk)
    assert pm.bets == 0


def test_features(base):
    mk, pm = market(base)
    rp = int(mk.rp_acct[1])
    rnd = pm.open_round(mk, rp)
    pm.buy(mk, rnd, int(mk.rp_acct[0]), True, 10 * TOKEN, 1.0)
    p = pm.price(rnd)
    assert p > 0.5
    mk.deals = [type("D", (), {"rp": rp})()]
    f = pm.public_features(mk, {"jc": {3: 0}, "mediator": {}})
    assert f["rp"][:, 0].tolist() == [0.5, p, 0.5, 0.5]
    assert f["jc"][3, 0] == p and f["jc"][0, 0] == 0.5 and f["mediator"].shape == (mk.n_med, 1)
    assert pm.feature_names("rp") == ("own_market_price",)
    assert pm.feature_names("jc") == ("focus_rp_market_price",)


def test_jackpot_funding_needs_the_jackpot(compose):
    with pytest.raises(ConfigError, match="prediction.funded_from = 'jackpot' needs the jackpot"):
        compose("prediction=lmsr_jackpot")
    cfg = compose(*SMALL, "prediction=lmsr_jackpot", "taxes=jackpot")
    mk = run_market(cfg)
    pm = next(m for m in mk.mechanisms if m.name == "prediction")
    jp = mk.system["jackpot"]
    subs = transfers(mk, TransferReason.MarketSubsidy)
    assert subs and all(jp in (r[3], r[4]) for r in subs)
    taxes = sum(r[5] for r in transfers(mk, TransferReason.Tax))
    assert mk.ledger.wallet[jp] == 100 * TOKEN + taxes - pm.net_subsidy
    assert mk.ledger.wallet[mk.owner] == sum(
        r[4] for r in mk.log.rows if r[0] == EventKind.Payment and r[6] == PaymentDirection.Slashed
    )  # no owner seed when the jackpot funds the markets


# -- end to end -----------------------------------------------------------------------------------
def test_markets_settle_on_check_verdicts(compose):
    cfg = compose(*SMALL, "prediction=lmsr", "staking=on", "prediction.bets_per_tick=6",
                  "policies.rp.policy=cheat_with_probability", "policies.rp.cheat_probability=0.3",
                  "policies.jc.check_probability=0.5")  # fmt: skip
    mk = run_market(cfg)
    pm = next(m for m in mk.mechanisms if m.name == "prediction")
    st = next(m for m in mk.mechanisms if m.name == "staking")
    assert pm.settled > 5 and pm.bets > 50
    assert set(pm.bettors.tolist()) == set(mk.rp_acct.tolist()) | set(st.delegators.tolist())
    payouts = transfers(mk, TransferReason.MarketPayout)
    for h in pm.history:
        d = mk.deals[h.deal]
        assert d.rp == h.rp and d.checked
        assert h.replicated == (d.state == DealState.MediationAccepted)
        assert sum(r[5] for r in payouts if r[2] == h.deal) == h.paid_out
        assert h.paid_out == (h.q_yes if h.replicated else h.q_no)
        assert h.paid_out - h.collected <= subsidy_wei(pm.b)  # the maker's bounded loss
    # every round settled or voided: the maker holds nothing; bets are paid out or refunded
    assert not pm.rounds and mk.ledger.wallet[pm.maker] == 0
    bets = sum(r[5] for r in transfers(mk, TransferReason.MarketBet))
    refunds = sum(r[5] for r in transfers(mk, TransferReason.MarketRefund))
    assert bets == pm.volume == sum(h.collected for h in pm.history) + refunds
    slashed = sum(
        r[4] for r in mk.log.rows if r[0] == EventKind.Payment and r[6] == PaymentDirection.Slashed
    )
    assert mk.ledger.wallet[mk.owner] == 1000 * TOKEN + slashed + st.slashed - pm.net_subsidy  # fmt: skip
    assert mk.ledger.total() == mk.ledger.minted
    wallet, escrow = balances_from_events(mk.genesis_wallets, mk.log.rows)
    assert wallet == mk.ledger.wallet and escrow == mk.ledger.escrow
    m = pm.metrics(mk)
    assert m["market_brier"] == pytest.approx(
        np.mean([(h.price - h.replicated) ** 2 for h in pm.history])
    )


def own_payouts(mk, pm):
    """MarketPayout transfers to the RP whose own round they settle (insider winnings)."""
    rp_of = {h.deal: h.rp for h in pm.history}
    return [r for r in transfers(mk, TransferReason.MarketPayout) if rp_of.get(r[2]) == r[4]]


@pytest.mark.parametrize("insider", [True, False])
def test_everyone_bets_against_caught_cheaters(compose, insider):
    # Nodes always cheat and are always caught: every round resolves NO. Insiders know their
    # pending results are wrong (belief 0); outsiders believe the pass rate (0 + 1) / (k + 2) <= 1/2.
    # A bettor never pushes the price past its belief, so from 1/2 prices only fall (YES is bought
    # only back up to an outsider's belief <= 1/2) and the Brier score beats 1/4. With insider
    # bets a cheater wins on its own market (hedging its slashing); without, it never does.
    cfg = compose(*SMALL, "prediction=lmsr", "prediction.bets_per_tick=4", "policies.rp.policy=always_cheat",
                  "policies.jc.policy=always_check", f"prediction.insider_bets={insider}")  # fmt: skip
    mk = run_market(cfg)
    pm = next(m for m in mk.mechanisms if m.name == "prediction")
    assert pm.settled > 5 and pm.bets > 20 and not any(h.replicated for h in pm.history)
    assert all(h.price <= 0.5 + 1e-12 and h.q_no >= h.q_yes for h in pm.history)
    assert pm.metrics(mk)["market_brier"] < 0.25
    if insider:
        assert pm.insider_profit > 0 and own_payouts(mk, pm)
    else:
        assert pm.insider_profit == 0 and not own_payouts(mk, pm)


def test_observations_carry_the_prices(compose):
    # through the environment: after the first tick every RP has a market; before any trade
    # on it, its own price is 1/2
    from twin.env import MarketEnv

    env = MarketEnv(
        compose(*SMALL, "prediction=lmsr", "prediction.bets_per_tick=0", "env.expose=all")
    )
    env.reset(seed=0)
    obs, *_ = env.step({})
    pm = next(m for m in env.market.mechanisms if m.name == "prediction")
    col = env.features["rp"].index("prediction.own_market_price")
    assert "prediction.focus_rp_market_price" in env.features["jc"]
    prices = pm.prices(env.market)
    assert len(pm.rounds) == env.market.n_rp
    assert [obs[f"rp_{r}"]["observation"][col] for r in range(env.market.n_rp)] == pytest.approx(
        prices
    )
