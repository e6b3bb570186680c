"""Mediation protocols (``mediation=``): the k-of-n decision, the fee split, recursive rounds,
selection rules, colluding rings in a consortium, defection and commit-reveal.

Pure rules are table-driven with values derived by hand (in each row's comment); the market-level
cases drive a one-JC, one-RP market tick by tick with fixed actions and derive every payment of
the deal from its terms: ``P = 20`` tokens, ``F = 1`` token, bribe ``b = 0.5`` token per colluding
mediator, ``pay = min(C, P)`` and ``R = 2 C`` read from the deal (``C`` is its job cost).
"""

from __future__ import annotations

import math
from fractions import Fraction
from types import SimpleNamespace

import numpy as np
import pytest
from sha3 import keccak_256

from agents.baselines import PolicyContext, make_policy
from tests.test_mechanisms import run_market
from twin.config import ConfigError
from twin.deals import Deal, DealFlows, DealState, ExecMode
from twin.events import VOTE_SEALED, EventKind, EventLog, TransferReason
from twin.events import PaymentDirection as Dir
from twin.events import PaymentReason as Rsn
from twin.ledger import Ledger
from twin.market import Actions, Market
from twin.mechanisms.schema import MediationConfig
from twin.mediation import v1_mediator_index
from twin.mediation.consortium import (
    ConsortiumMediation,
    fee_payees,
    hash_draw,
    ring_consensus_probability,
    split_fee,
    tally,
    weighted_draw,
)
from twin.protocol import PRESETS

TOKEN = 10**18
F, BRIBE, P = TOKEN, TOKEN // 2, 20 * TOKEN
PAID_IN, PAID_OUT, REFUNDED, SLASHED = Dir.PaidIn, Dir.PaidOut, Dir.Refunded, Dir.Slashed


# -- the k-of-n decision ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "accepts,rejects,k,expected",
    [
        (3, 2, 3, True),  # 3 of 5: three accepts decide
        (2, 3, 3, False),  # 3 of 5: three rejects decide
        (5, 0, 3, True),
        (2, 0, 3, None),  # only 2 mediators could be drawn (small trusted set): no consensus
        (2, 1, 2, True),  # 2 of 3
        (1, 2, 2, False),
        (2, 2, 3, None),  # 3 of 4 split 2-2: no consensus (a new round, if allowed)
        (3, 1, 3, True),
        (1, 3, 3, False),
        (2, 1, 3, None),  # 3 of 3 (unanimity) with one dissent
        (2, 2, 2, None),  # 2 of 4: both sides reach k, a tie decides nothing
        (3, 1, 2, True),  # 2 of 4: both reach k, the larger side wins
        (1, 0, 1, True),  # 1 of 1 (v1)
        (0, 1, 1, False),
    ],
)
def test_k_of_n_decision_table(accepts, rejects, k, expected):
    assert tally(accepts, rejects, k) is expected


# -- the fee split ------------------------------------------------------------------------------
A, B, C_, D_, E_, G_ = 11, 12, 13, 14, 15, 16


@pytest.mark.parametrize(
    "fee,ballots,verdict,rule,expected",
    [
        # equal, 3 voters, F = 4: 4 // 3 = 1 each, remainder 1 to the first in draw order
        (4, [(A, True), (B, False), (C_, True)], True, "equal", [(A, 2), (B, 1), (C_, 1)]),
        # one token among 3: 333333333333333333 each, 1 wei of dust to the first
        (TOKEN, [(A, True), (B, True), (C_, False)], True, "equal",
         [(A, 333333333333333334), (B, 333333333333333333), (C_, 333333333333333333)]),
        # F = 1 wei among 3: 0 each, the wei to the first (zero shares emit no event)
        (1, [(A, False), (B, False), (C_, False)], False, "equal", [(A, 1), (B, 0), (C_, 0)]),
        # majority: the two accepters share 5 -> 2 each + 1 to the first of them (A)
        (5, [(A, True), (B, False), (C_, True)], True, "majority", [(A, 3), (C_, 2)]),
        # majority on a reject: the lone rejecter takes everything
        (5, [(A, True), (B, False), (C_, True)], False, "majority", [(B, 5)]),
        # two rounds (A, B split; C, D reject), F = 7: equal -> 7 // 4 = 1, remainder 3 to A
        (7, [(A, True), (B, False), (C_, False), (D_, False)], False, "equal",
         [(A, 4), (B, 1), (C_, 1), (D_, 1)]),
        # same, majority: B, C, D -> 7 // 3 = 2, remainder 1 to B (first rejecter in draw order)
        (7, [(A, True), (B, False), (C_, False), (D_, False)], False, "majority",
         [(B, 3), (C_, 2), (D_, 2)]),
    ],
)  # fmt: skip
def test_fee_split_table(fee, ballots, verdict, rule, expected):
    shares = split_fee(fee, fee_payees(ballots, verdict, rule))
    assert shares == expected and sum(w for _, w in shares) == fee


def test_split_fee_needs_a_payee():
    with pytest.raises(ValueError):
        split_fee(10, [])


# -- the verdict flow (DealFlows.mediation_verdict), terms of tests/test_deals.py ---------------
OWNER, JC, RP, M1, M2, M3 = 0, 1, 2, 3, 4, 5


def _checked_deal():
    """C = 3 * 5 = 15, P = 20, R = 30, F = 4, Ts = 6, Tj = 7; JC and RP start with 100 each."""
    ledger, log = Ledger(6), EventLog()
    ledger.mint(JC, 100)
    ledger.mint(RP, 100)
    flows = DealFlows(ledger, log, PRESETS["lilypad_v1"], OWNER)
    d = Deal(0, JC, RP, 9, (M1, M2, M3), 0, 5, 3, 20, 2, 4, (100,) * 4, 6, 7, 0, 0, 0)
    d.units_reported = 5
    flows.agree(10, d, RP)
    flows.agree(10, d, JC)
    flows.add_result(20, d)
    flows.check_result(30, d, M1)
    flows.request_mediators(30, d, (M2, M3))
    return ledger, log, flows, d


def _compact(rows):
    out = []
    for r in rows:
        if r[0] == EventKind.DealStateChange:
            out.append(("DSC", r[3]))
        elif r[0] == EventKind.Payment:
            out.append(("Pay", r[3], r[4], int(r[5]), int(r[6])))
        elif r[0] == EventKind.MediationRequested:
            out.append(("MR", r[3]))
        elif r[0] == EventKind.Transfer:
            out.append(("Transfer", r[3], r[4], r[5], int(r[6])))
        elif r[0] == EventKind.MediationVoted:
            out.append(("Voted", r[3], r[4]))
        elif r[0] == EventKind.VoteRevealed:
            out.append(("Revealed", r[3]))
    return out


def test_consortium_check_requests_every_mediator():
    _, log, _, _ = _checked_deal()
    assert _compact(log.rows)[-6:] == [
        ("Pay", JC, 7, Rsn.TimeoutCollateral, REFUNDED),
        ("Pay", JC, 4, Rsn.MediationFee, PAID_IN),
        ("DSC", 4),
        ("MR", M1),
        ("MR", M2),
        ("MR", M3),
    ]


@pytest.mark.parametrize(
    "accept,shares,events,wallets",
    [
        # accept, F = 4 split (2, 1, 1): RP paid 15 and gets R back; JC refunded P - 15 = 5.
        # JC 100 - 20 - 7 + 7 - 4 + 5 = 81; RP 100 - 6 - 30 + 6 + 15 + 30 = 115
        (True, [(M1, 2), (M2, 1), (M3, 1)],
         [("Pay", RP, 15, 3, 1), ("Pay", M1, 2, 4, 1), ("Pay", M2, 1, 4, 1), ("Pay", M3, 1, 4, 1),
          ("Pay", JC, 5, 0, 2), ("Pay", RP, 30, 1, 2), ("DSC", 5)],
         {OWNER: 0, JC: 81, RP: 115, M1: 2, M2: 1, M3: 1}),
        # reject, majority payees M2, M3 (2 each): JC refunded P; R = 30 slashed to the owner.
        # JC 100 - 20 - 7 + 7 - 4 + 20 = 96; RP 100 - 6 - 30 + 6 = 70
        (False, [(M2, 2), (M3, 2)],
         [("Pay", JC, 20, 0, 2), ("Pay", M2, 2, 4, 1), ("Pay", M3, 2, 4, 1), ("Pay", RP, 30, 1, 3),
          ("DSC", 6)],
         {OWNER: 30, JC: 96, RP: 70, M1: 0, M2: 2, M3: 2}),
    ],
)  # fmt: skip
def test_mediation_verdict_flows(accept, shares, events, wallets):
    ledger, log, flows, d = _checked_deal()
    mark = len(log.rows)
    assert flows.mediation_verdict(40, d, accept, shares)
    assert _compact(log.rows[mark:]) == events
    assert {a: ledger.wallet[a] for a in wallets} == wallets
    assert sum(ledger.escrow) == 0 and ledger.total() == 200
    assert d.state == (DealState.MediationAccepted if accept else DealState.MediationRejected)


@pytest.mark.parametrize("accept", [True, False])
def test_single_payee_verdict_is_v1(accept):
    _, log_a, flows_a, d_a = _checked_deal()
    _, log_b, flows_b, d_b = _checked_deal()
    (flows_a.mediation_accept if accept else flows_a.mediation_reject)(40, d_a)
    flows_b.mediation_verdict(40, d_b, accept, [(M1, 4)])
    assert log_a.rows == log_b.rows


def test_verdict_shares_must_split_the_fee():
    _, _, flows, d = _checked_deal()
    with pytest.raises(ValueError):
        flows.mediation_verdict(40, d, True, [(M1, 3)])
    assert d.state == DealState.ResultsChecked


# -- selection rules ----------------------------------------------------------------------------
def test_v1_hash_generalisation():
    deal_id, t, cands = "bafy-deal", 1_700_000_123, (101, 102, 103, 104, 105)
    drawn = hash_draw(t, deal_id, cands, 3)
    # deterministic, distinct, and its first draw is v1's mediator
    assert drawn == hash_draw(t, deal_id, cands, 3) and len(set(drawn)) == 3
    assert drawn[0] == cands[v1_mediator_index(t, deal_id, len(cands))]
    # the chain by hand: h0 = keccak(uint256 t ++ id), h1 = keccak(h0), ...; each pick removed
    h0 = keccak_256(t.to_bytes(32, "big") + deal_id.encode()).digest()
    h1 = keccak_256(h0).digest()
    h2 = keccak_256(h1).digest()
    pool = list(cands)
    expect = [pool.pop(int.from_bytes(h, "big") % n) for h, n in ((h0, 5), (h1, 4), (h2, 3))]
    assert list(drawn) == expect
    assert sorted(hash_draw(t, deal_id, cands, 5)) == sorted(cands)  # n = |set|: a permutation
    assert hash_draw(t, deal_id, cands, 9) == hash_draw(t, deal_id, cands, 5)  # capped
    assert any(hash_draw(t + s, deal_id, cands, 3) != drawn for s in range(1, 4))


def _stub_mech(selection="auction", accounts=8, meds=(3, 4, 5, 6), **kw):
    mech = ConsortiumMediation(MediationConfig(protocol="consortium", n_mediators=2, threshold=2,
                                               selection=selection, **kw))  # fmt: skip
    mk = SimpleNamespace(
        n_accounts=accounts, system={}, med_acct=np.array(meds), rng=np.random.default_rng(0)
    )
    mech.attach(mk)
    return mech, mk


def test_auction_picks_the_lowest_asks():
    mech, mk = _stub_mech()
    # every mediator re-runs 10 units at speed 1.0: 10 s; costs 100 wei/s, but mediator 6 runs
    # at 50 wei/s: re-execution costs 1000, 1000, 1000, 500 wei
    mk.job_classes = [SimpleNamespace(kind="cpu")]
    mk.mediator_machine = lambda m, job: (1.0, 50 if m == 6 else 100)
    mech.markup_bp[[3, 4, 5, 6]] = [5000, 0, 2500, 10000]
    d = SimpleNamespace(module=0, units=10, mediators=(3, 4, 5, 6), index=0)
    # asks: 1000 * 1.5 = 1500, 1000 * 1.0 = 1000, 1000 * 1.25 = 1250, 500 * 2.0 = 1000
    assert mech.asks(mk, d, d.mediators) == [1500, 1000, 1250, 1000]
    # the 2 lowest: 4 and 6 tie at 1000, the lower markup (4: 0 bp) first
    assert mech.draw(mk, d, 0, d.mediators, 2) == (4, 6)
    assert mech.draw(mk, d, 0, d.mediators, 3) == (4, 6, 5)
    assert mech.draw(mk, d, 0, (3, 5), 1) == (5,)  # later rounds draw from what is left


def test_auction_markups_drawn_on_a_basis_point_grid():
    mech, mk = _stub_mech(ask_markup_max=0.5, meds=tuple(range(1, 8)))
    bp = mech.markup_bp[mk.med_acct]
    assert bp.dtype.kind == "i" and (bp >= 0).all() and (bp <= 5000).all() and len(set(bp)) > 1
    assert mech.markup_bp[0] == 0  # not a mediator


def test_reputation_weighting_changes_frequencies():
    mech, mk = _stub_mech("reputation")
    # beta scores with prior 1: (8+1)/(8+0+2) = 0.9, (3+1)/(3+3+2) = 0.5, (0+1)/(0+8+2) = 0.1
    mech.agreed[[3, 4, 5]] = [8, 3, 0]
    mech.disagreed[[3, 4, 5]] = [0, 3, 8]
    assert mech.score([3, 4, 5]) == pytest.approx([0.9, 0.5, 0.1])
    rng = np.random.default_rng(1)
    n = 20_000
    first = [weighted_draw(rng, (3, 4, 5), mech.score([3, 4, 5]), 1)[0] for _ in range(n)]
    freq = np.array([first.count(m) for m in (3, 4, 5)]) / n
    expect = np.array([0.9, 0.5, 0.1]) / 1.5  # 0.6, 1/3, 1/15
    assert np.all(np.abs(freq - expect) <= 4 * np.sqrt(expect * (1 - expect) / n))
    # two of three: the 0.1 mediator is left out most often; P(left out) = sum over the first
    # pick of P(first) * P(other one second): 0.6*(0.5/0.6) + (1/3)*(0.9/1.0) = 0.8
    pairs = [weighted_draw(rng, (3, 4, 5), mech.score([3, 4, 5]), 2) for _ in range(n)]
    out5 = sum(5 not in p for p in pairs) / n
    assert abs(out5 - 0.8) <= 4 * math.sqrt(0.8 * 0.2 / n)
    # the consortium uses it: a mediator with a bad record is drawn less than uniformly
    d = SimpleNamespace(mediators=(3, 4, 5), index=0)
    picks = [mech.draw(mk, d, 0, d.mediators, 1)[0] for _ in range(3000)]
    assert picks.count(3) > picks.count(4) > picks.count(5)


@pytest.mark.parametrize(
    "trusted,ring,n,k,expected",
    [
        (7, 3, 5, 3, Fraction(6, 21)),  # C(3,3) C(4,2) / C(7,5) = 6 / 21
        (6, 3, 3, 2, Fraction(10, 20)),  # [C(3,2) C(3,1) + C(3,3)] / C(6,3) = (9 + 1) / 20
        (3, 2, 3, 2, Fraction(1)),  # all three drawn: both ring mediators are in
        (5, 1, 3, 2, Fraction(0)),  # one ring mediator can never make 2 votes
    ],
)
def test_ring_consensus_probability(trusted, ring, n, k, expected):
    assert ring_consensus_probability(trusted, ring, n, k) == pytest.approx(float(expected))


# -- configuration ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "overrides,needle",
    [
        (("mediation.n_mediators=3",), "mediation.n_mediators = 3 needs mediation.protocol=consortium"),
        (("mediation.commit_reveal=true",), "mediation.commit_reveal = True needs"),
        (("mediation=consortium", "mediation.threshold=6"), "mediation.threshold (k = 6) must be <="),
        (("mediation=consortium", "mediation.max_nodes=4"), "mediation.max_nodes = 4 must be 0"),
    ],
)  # fmt: skip
def test_mediation_config_is_validated(compose, overrides, needle):
    with pytest.raises(ConfigError) as e:
        compose(*overrides)
    assert needle in str(e.value)


@pytest.mark.parametrize(
    "option", ["consortium", "consortium_recursive", "auction", "reputation", "commit_reveal"]
)
def test_mediation_options_compose(compose, option):
    cfg = compose(f"mediation={option}")
    assert cfg.mediation.protocol == "consortium"
    assert cfg.mediation.threshold <= cfg.mediation.n_mediators


# -- scripted colluders defect ----------------------------------------------------------------
@pytest.mark.parametrize("p,expected_share", [(0.0, 1.0), (1.0, 0.0), (0.25, 0.75)])
def test_scripted_colluder_defects(p, expected_share):
    pol = make_policy("mediator", "colluding_mediator", ctx=PolicyContext(defect_probability=p))
    mask = np.ones((4000, 2), np.int8)
    mask[:1000, 1] = 0  # no ring party on the focus deal: nothing to collude on
    acts = pol.act_batch(np.zeros((4000, 1)), mask, np.random.default_rng(0))[:, 0]
    assert acts[:1000].sum() == 0
    share = acts[1000:].mean()
    assert abs(share - expected_share) <= 4 * math.sqrt(0.25 / 3000)


# -- the market: a ring of two in a 2-of-3 consortium ----------------------------------------------
MINI = ("market.n_job_creators=1", "market.n_resource_providers=1", "market.n_mediators=3",
        "market.modules=[cowsay]", "market.job_rate_per_tick=1.0", "market.max_open_jobs_per_jc=1",
        "market.episode_ticks=1", "mediation=consortium", "mediation.n_mediators=3",
        "mediation.threshold=2", "mediation.selection=v1_hash", "collusion=rings",
        "collusion.mediators_per_ring=2", "collusion.rps_per_ring=1")  # fmt: skip


def _run(mk, collude_accounts=(), mode=ExecMode.Cheat):
    """The RP fakes its result, the JC checks, the given mediators honour the ring's agreement."""
    a = Actions.default(mk)
    a.rp_mode[:] = int(mode)
    a.jc_check_prob[:] = 1.0
    for m in collude_accounts:
        a.med_collude[mk.row[m]] = True
    while not mk.done:
        mk.step(a)
    assert len(mk.deals) == 1
    return mk.deals[0]


def _ring(mk):
    ring = [int(m) for m in mk.med_acct if mk.collusion.ring[m] >= 0]
    honest = [int(m) for m in mk.med_acct if mk.collusion.ring[m] < 0]
    assert len(ring) == 2 and len(honest) == 1 and mk.collusion.ring[mk.rp_acct[0]] >= 0
    return ring, honest[0]


def _drawn(mk):
    return [r[3] for r in mk.log.rows if r[0] == EventKind.MediationRequested and r[2] == 0]


def _after_votes(mk):
    """Events of deal 0 after its last vote: the verdict."""
    rows = [r for r in mk.log.rows if r[2] == 0]
    last = max(
        i for i, r in enumerate(rows) if r[0] in (EventKind.MediationVoted, EventKind.VoteRevealed)
    )
    return _compact(rows[last + 1 :])


def _deltas(mk):
    return {a: mk.ledger.wallet[a] - mk.genesis_wallets[a] for a in range(mk.n_accounts)}


@pytest.mark.parametrize("split", ["equal", "majority"])
def test_ring_of_two_accepts_a_fake_result(compose, split):
    mk = Market(compose(*MINI, f"mediation.fee_split={split}"), seed=3)
    ring, honest = _ring(mk)
    d = _run(mk, collude_accounts=ring)
    jc, rp, pay, R = d.jc, d.rp, d.payment, d.results_collateral
    drawn = _drawn(mk)
    assert sorted(drawn) == sorted(mk.med_acct.tolist())  # n = 3 of 3: everyone is asked
    assert d.state == DealState.MediationAccepted and d.cheated and d.collusive
    # both colluders accept (bribed 0.5 token each by the RP when they vote), the honest one rejects
    bribes = [(r[3], r[4], r[5]) for r in mk.log.rows if r[0] == EventKind.Transfer]
    assert bribes == [(rp, m, BRIBE) for m in sorted(ring)]
    votes = {r[3]: r[4] for r in mk.log.rows if r[0] == EventKind.MediationVoted}
    assert votes == {ring[0]: 1, ring[1]: 1, honest: 0}
    # the fee: equal -> F // 3 = 333333333333333333 each, 1 wei to the first drawn;
    # majority -> the two colluders, in draw order, F // 2 = 0.5 token each
    payees = drawn if split == "equal" else [m for m in drawn if m in ring]
    share = F // len(payees)
    shares = {m: share + (F - share * len(payees) if i == 0 else 0) for i, m in enumerate(payees)}
    assert _after_votes(mk) == [("Pay", rp, pay, 3, 1)] + [
        ("Pay", m, shares[m], 4, 1) for m in payees
    ] + [("Pay", jc, P - pay, 0, 2), ("Pay", rp, R, 1, 2), ("DSC", 5)]
    assert d.voters == tuple(payees)
    # net: JC pays pay + F; RP earns pay less two bribes; colluders: share + bribe; honest: share
    delta = _deltas(mk)
    assert delta[jc] == -pay - F and delta[rp] == pay - 2 * BRIBE
    for m in ring:
        assert delta[m] == shares[m] + BRIBE
    assert delta[honest] == shares.get(honest, 0) and delta[mk.owner] == 0
    assert sum(mk.ledger.escrow) == 0 and mk.ledger.total() == mk.ledger.minted


def test_ring_of_two_rejects_a_correct_result_for_a_ring_jc(compose):
    # the ring holds the JC (not the RP): its two mediators reject the honest RP's correct result,
    # each bribed 0.5 token by the JC; the RP loses R to the owner, the JC gets P back and pays
    # F plus two bribes; F // 2 to each colluder (majority), nothing to the honest mediator
    mk = Market(compose(*MINI, "collusion.rps_per_ring=0", "collusion.jcs_per_ring=1",
                        "mediation.fee_split=majority"), seed=3)  # fmt: skip
    ring = [int(m) for m in mk.med_acct if mk.collusion.ring[m] >= 0]
    assert len(ring) == 2 and mk.collusion.ring[mk.jc_acct[0]] == mk.collusion.ring[ring[0]]
    d = _run(mk, collude_accounts=ring, mode=ExecMode.Honest)
    jc, rp, R = d.jc, d.rp, d.results_collateral
    assert d.correct and not d.cheated and d.state == DealState.MediationRejected
    bribes = [(r[3], r[4], r[5]) for r in mk.log.rows if r[0] == EventKind.Transfer]
    assert bribes == [(jc, m, BRIBE) for m in sorted(ring)]
    payees = [m for m in _drawn(mk) if m in ring]
    assert _after_votes(mk) == [("Pay", jc, P, 0, 2)] + [("Pay", m, F // 2, 4, 1) for m in payees] + [
        ("Pay", rp, R, 1, 3), ("DSC", 6)]  # fmt: skip
    delta = _deltas(mk)
    assert delta[jc] == -F - 2 * BRIBE and delta[rp] == -R and delta[mk.owner] == R
    assert all(delta[m] == F // 2 + BRIBE for m in ring)


@pytest.mark.parametrize("slashing", ["owner", "mediators"])
def test_a_defection_changes_the_outcome(compose, slashing):
    # one colluder defects: 1 accept (the loyal one) vs 2 rejects -> the fake result is rejected
    over = ("slashing.owner=0", "slashing.mediators=1") if slashing == "mediators" else ()
    mk = Market(compose(*MINI, "mediation.fee_split=majority", *over), seed=3)
    ring, honest = _ring(mk)
    loyal, defector = ring
    d = _run(mk, collude_accounts=[loyal])
    jc, rp, R = d.jc, d.rp, d.results_collateral
    assert d.state == DealState.MediationRejected
    drawn = _drawn(mk)
    payees = [m for m in drawn if m != loyal]  # the majority: the defector and the honest one
    assert d.voters == tuple(payees)
    # only the loyal colluder is bribed (per collusive vote); F // 2 to each rejecter
    bribes = [(r[3], r[4], r[5], r[6]) for r in mk.log.rows if r[0] == EventKind.Transfer
              and r[6] == TransferReason.Bribe]  # fmt: skip
    assert bribes == [(rp, loyal, BRIBE, TransferReason.Bribe)]
    pool = mk.system.get("slashing_pool", mk.owner)
    verdict = [("Pay", jc, P, 0, 2)] + [("Pay", m, F // 2, 4, 1) for m in payees]
    verdict += [("Pay", rp, R, 1, 3), ("DSC", 6)]
    assert _after_votes(mk)[: len(verdict)] == verdict
    slashed = [r for r in mk.log.rows if r[0] == EventKind.Payment and r[6] == SLASHED]
    assert [(r[3], r[4], r[8]) for r in slashed] == [(rp, R, pool)]
    delta = _deltas(mk)
    assert delta[jc] == -F and delta[rp] == -R - BRIBE and delta[loyal] == BRIBE
    if slashing == "owner":  # v1: R to the owner
        assert delta[mk.owner] == R
        assert delta[defector] == delta[honest] == F // 2
    else:  # all of R to the deal's voters (the payees): R // 2 each, the odd wei to the owner
        shares = [(r[4], r[5]) for r in mk.log.rows if r[0] == EventKind.Transfer
                  and r[6] == TransferReason.SlashShare]  # fmt: skip
        assert sorted(shares) == sorted(
            [(m, R // 2) for m in payees] + [(mk.owner, R % 2)] * (R % 2)
        )
        assert delta[defector] == delta[honest] == F // 2 + R // 2
        assert delta[mk.owner] == R % 2
    assert mk.ledger.total() == mk.ledger.minted and sum(mk.ledger.escrow) == 0
    # what the colluders observed: the loyal one saw its partner defect, the defector saw loyalty
    mech = mk.mediation
    Z = mech.public_features(mk, {})["mediator"]
    names = mech.feature_names("mediator")
    col = {n: names.index(n) for n in names}
    r_loyal, r_def = mk.row[loyal], mk.row[defector]
    assert Z[r_loyal, col["votes_public"]] == 1.0
    assert Z[r_loyal, col["ring_partner_defected_last"]] == 1.0
    assert Z[r_loyal, col["ring_partner_loyalty"]] == pytest.approx(1 / 3)  # (0 + 1) / (1 + 2)
    assert Z[r_def, col["ring_partner_defected_last"]] == 0.0
    assert Z[r_def, col["ring_partner_loyalty"]] == pytest.approx(2 / 3)  # (1 + 1) / (1 + 2)
    # reputation: votes that matched the verdict (reject) count as agreement
    assert (mech.agreed[[defector, honest, loyal]] == [1, 1, 0]).all()
    assert mech.disagreed[loyal] == 1


def test_commit_reveal_hides_votes_and_prepays_bribes(compose):
    mk = Market(
        compose(*MINI, "mediation.fee_split=majority", "mediation.commit_reveal=true"), seed=3
    )
    ring, honest = _ring(mk)
    loyal, defector = ring
    d = _run(mk, collude_accounts=[loyal])
    jc, rp, R = d.jc, d.rp, d.results_collateral
    pool = mk.system["mediation_pool"]
    assert d.state == DealState.MediationRejected
    drawn = _drawn(mk)
    rows = _compact([r for r in mk.log.rows if r[2] == 0])
    # the bribe is paid up front, right after the check, to both drawn ring mediators (draw order);
    # the defector keeps it although it votes against the agreement
    i = rows.index(("MR", drawn[-1]))
    assert rows[i + 1 : i + 3] == [("Transfer", rp, m, BRIBE, TransferReason.Bribe)
                                   for m in drawn if m in ring]  # fmt: skip
    # sealed votes, then anonymous reveals (rejects first), then the verdict paying F to the pool
    assert sorted(e for e in rows if e[0] == "Voted") == sorted(
        ("Voted", m, VOTE_SEALED) for m in drawn
    )
    assert [e for e in rows if e[0] == "Revealed"] == [
        ("Revealed", 0),
        ("Revealed", 0),
        ("Revealed", 1),
    ]
    assert _after_votes(mk) == [("Pay", jc, P, 0, 2), ("Pay", pool, F, 4, 1), ("Pay", rp, R, 1, 3),
                                ("DSC", 6)]  # fmt: skip
    # unlinkable payouts: one transfer per payee from the pool, naming no deal
    payouts = [(r[4], r[5]) for r in mk.log.rows if r[0] == EventKind.Transfer
               and r[6] == TransferReason.MediationPayout]  # fmt: skip
    assert sorted(payouts) == sorted([(defector, F // 2), (honest, F // 2)])
    assert all(r[2] == -1 for r in mk.log.rows if r[0] == EventKind.Transfer
               and r[6] == TransferReason.MediationPayout)  # fmt: skip
    delta = _deltas(mk)
    assert delta[rp] == -R - 2 * BRIBE and delta[loyal] == BRIBE
    assert delta[defector] == BRIBE + F // 2 and delta[honest] == F // 2
    assert delta[jc] == -F and delta[mk.owner] == R and mk.ledger.wallet[pool] == 0
    # the colluders cannot observe their partners: the loyalty features are 0
    mech = mk.mediation
    Z = mech.public_features(mk, {})["mediator"]
    names = mech.feature_names("mediator")
    for n in ("votes_public", "ring_partner_defected_last", "ring_partner_loyalty"):
        assert (Z[:, names.index(n)] == 0).all()
    assert mech.defections == 1  # (the twin still knows, for its metrics)


def test_commit_reveal_briber_that_cannot_pay_gets_no_collusion(compose):
    # the bribe (1000 tokens) exceeds the RP's wallet (200 tokens): nothing is prepaid,
    # so the colluders have nothing to honour and vote on their re-execution: rejected
    mk = Market(
        compose(
            *MINI, "mediation.commit_reveal=true", "collusion.bribe_wei=1000000000000000000000"
        ),
        seed=3,
    )
    ring, _ = _ring(mk)
    d = _run(mk, collude_accounts=ring)
    assert d.state == DealState.MediationRejected and not d.collusive and d.bribe == 0


def test_features_have_the_declared_shapes(compose):
    mk = Market(compose(*MINI), seed=3)
    mech = mk.mediation
    feats = mech.public_features(mk, {"mediator": {}, "rp": {}})
    for role, n in (("mediator", mk.n_med), ("rp", mk.n_rp)):
        assert feats[role].shape == (n, len(mech.feature_names(role)))
    assert mech.feature_names("jc") == ()
    # a ring RP about to execute sees its ring's share of the trusted set and its chance of a
    # ring majority: 2 of 3 ring mediators, all 3 drawn, 2 needed -> share 2/3, probability 1
    a = Actions.default(mk)
    mk.step(a)  # the deal is agreed; the RP decides next tick
    ((rp_row, di),) = ((int(mk.row[r]), d) for r, d in mk.exec_q.first().items())
    X = mech.public_features(mk, {"rp": {rp_row: di}})["rp"]
    assert X[rp_row] == pytest.approx([2 / 3, 1.0])


# -- recursive mediation ------------------------------------------------------------------------
REC = ("market.n_job_creators=1", "market.n_resource_providers=1", "market.n_mediators=6",
       "market.modules=[cowsay]", "market.job_rate_per_tick=1.0", "market.max_open_jobs_per_jc=1",
       "market.episode_ticks=1", "mediation=consortium", "mediation.n_mediators=2",
       "mediation.threshold=2", "mediation.selection=auction", "collusion=rings",
       "collusion.mediators_per_ring=2", "collusion.rps_per_ring=1")  # fmt: skip


@pytest.mark.parametrize(
    "max_rounds,max_nodes,rounds,state",
    [
        # asks order the mediators c1, h1, c2, h2, h3, h4 (c: ring colluders, h: honest);
        # rounds of 2, 2 needed: {c1, h1} splits 1-1, {c2, h2} splits 1-1, {h3, h4} rejects
        (1, 0, 1, DealState.TimeoutMediateResults),  # no second round: the mediate timeout
        (2, 0, 2, DealState.TimeoutMediateResults),  # two split rounds, then the timeout
        (3, 0, 3, DealState.MediationRejected),  # the third round decides
        (3, 5, 2, DealState.TimeoutMediateResults),  # a third round could hold 1 < k mediator
        (3, 6, 3, DealState.MediationRejected),
        (5, 0, 3, DealState.MediationRejected),  # decided before the cap matters
    ],
)
@pytest.mark.parametrize("split", ["equal", "majority"])
def test_recursive_rounds(compose, max_rounds, max_nodes, rounds, state, split):
    cfg = compose(*REC, f"mediation.max_rounds={max_rounds}", f"mediation.max_nodes={max_nodes}",
                  f"mediation.fee_split={split}")  # fmt: skip
    mk = Market(cfg, seed=0)
    meds = [int(m) for m in mk.med_acct]
    c1, h1, c2, h2, h3, h4 = meds
    mk.collusion.ring[mk.med_acct] = -1
    mk.collusion.ring[[c1, c2]] = mk.collusion.ring[mk.rp_acct[0]]
    mk.mediation.markup_bp[meds] = [0, 100, 200, 300, 400, 500]
    d = _run(mk, collude_accounts=[c1, c2])
    order = [c1, h1, c2, h2, h3, h4]
    assert _drawn(mk) == order[: 2 * rounds]
    assert d.state == state
    delta = _deltas(mk)
    bribed = [m for m in (c1, c2) if m in _drawn(mk)]  # each colluding vote is bribed by the RP
    lost = d.results_collateral if state == DealState.MediationRejected else 0
    assert delta[d.rp] == -lost - BRIBE * len(bribed)
    if state == DealState.TimeoutMediateResults:
        # nobody is paid a fee: the JC gets P and F back (it lost nothing); voters earn nothing
        assert delta[d.jc] == 0 and all(delta[m] == (BRIBE if m in bribed else 0) for m in meds)
        assert d.voters == () and mk.mediation.undecided == 1
        return
    # decided in round 3: equal -> six voters, F // 6 = 166666666666666666, 4 wei to c1;
    # majority -> the four rejecters h1, h2, h3, h4, F // 4 = 0.25 token each
    payees = order if split == "equal" else [h1, h2, h3, h4]
    each = F // len(payees)
    expect = {m: each + (F - each * len(payees) if i == 0 else 0) for i, m in enumerate(payees)}
    if split == "equal":
        assert expect[c1] == 166666666666666670
    assert d.voters == tuple(payees)
    for m in meds:
        assert delta[m] == expect.get(m, 0) + (BRIBE if m in (c1, c2) else 0)
    assert delta[d.jc] == -F and mk.mediation.rounds_held == 3


# -- end to end ---------------------------------------------------------------------------------
def test_consortium_of_one_is_v1(compose):
    # a 1-of-1 consortium with the v1 hash rule reproduces v1's event log exactly, except for the
    # consortium's own vote events (v1 has no vote event)
    base = ("market.n_mediators=4", "market.episode_ticks=60", "collusion=rings",
            "policies.mediator.policy=colluding_mediator", "policies.rp.policy=cheat_with_probability",
            "policies.jc.check_probability=0.5")  # fmt: skip
    a = run_market(compose(*base))
    b = run_market(compose(*base, "mediation.protocol=consortium"))
    votes = [r for r in b.log.rows if r[0] == EventKind.MediationVoted]
    assert len(votes) > 10 and sum(d.checked for d in b.deals) == len(votes)
    assert a.log.rows == [r for r in b.log.rows if r[0] != EventKind.MediationVoted]


@pytest.mark.parametrize(
    "trusted,ring,n,k,detect",
    [
        # X ring mediators among n drawn of `trusted` ~ hypergeometric; honest mediators reject a
        # fake result, colluders accept it: detected iff n - X >= k, i.e. X <= n - k.
        # 7 mediators, 3 colluders, 3 of 5: P(X <= 2) = [C(3,1)C(4,4) + C(3,2)C(4,3)] / C(7,5)
        #   = (3 + 12) / 21 = 5/7
        (7, 3, 5, 3, Fraction(5, 7)),
        # 6 mediators, 3 colluders, 2 of 3: P(X <= 1) = [C(3,0)C(3,3) + C(3,1)C(3,2)] / C(6,3)
        #   = (1 + 9) / 20 = 1/2
        (6, 3, 3, 2, Fraction(1, 2)),
    ],
)
def test_detection_probability_is_hypergeometric(compose, trusted, ring, n, k, detect):
    cfg = compose(
        "market.n_job_creators=12", "market.n_resource_providers=4", f"market.n_mediators={trusted}",
        "market.modules=[cowsay]", "market.job_rate_per_tick=0.5", "market.episode_ticks=200",
        "market.rp_wallet_tokens=100000", "mediation=consortium", f"mediation.n_mediators={n}",
        f"mediation.threshold={k}", "mediation.selection=uniform", "collusion=rings",
        f"collusion.mediators_per_ring={ring}", "collusion.rps_per_ring=4",
        "policies.rp.policy=always_cheat", "policies.jc.policy=always_check",
        "policies.mediator.policy=colluding_mediator",
    )  # fmt: skip
    mk = run_market(cfg, seed=1)
    checked = [d for d in mk.deals if d.checked]
    decided = [
        d for d in checked if d.state in (DealState.MediationAccepted, DealState.MediationRejected)
    ]
    assert len(decided) == len(checked) > 400  # k > n/2 and n odd: every round decides
    p_hat = sum(d.state == DealState.MediationRejected for d in decided) / len(decided)
    p = float(detect)
    assert abs(p_hat - p) <= 3.3 * math.sqrt(p * (1 - p) / len(decided))  # 99.9 % interval


def test_reputation_selection_shuns_outvoted_colluders(compose):
    # a ring of two colluders among six, 2 of 3; the colluders are outvoted whenever only one of
    # them is drawn (P = 0.6 under uniform draws), so their beta scores fall and reputation-weighted
    # selection draws them less often than uniform selection does
    def ring_share(selection):
        cfg = compose(
            "market.n_job_creators=12", "market.n_resource_providers=4", "market.n_mediators=6",
            "market.modules=[cowsay]", "market.job_rate_per_tick=0.5", "market.episode_ticks=150",
            "market.rp_wallet_tokens=100000", "mediation=reputation",
            f"mediation.selection={selection}", "collusion=rings", "collusion.mediators_per_ring=2",
            "collusion.rps_per_ring=4", "policies.rp.policy=always_cheat",
            "policies.jc.policy=always_check", "policies.mediator.policy=colluding_mediator",
        )  # fmt: skip
        mk = run_market(cfg, seed=2)
        ring = {int(m) for m in mk.med_acct if mk.collusion.ring[m] >= 0}
        asked = [r[3] for r in mk.log.rows if r[0] == EventKind.MediationRequested]
        scores = mk.mediation.score(mk.med_acct)
        ring_rows = [mk.row[m] for m in ring]
        honest_rows = [r for r in range(mk.n_med) if r not in ring_rows]
        return sum(m in ring for m in asked) / len(asked), scores[ring_rows], scores[honest_rows]

    uniform, _, _ = ring_share("uniform")
    weighted, ring_scores, honest_scores = ring_share("reputation")
    assert abs(uniform - 2 / 6) < 0.05  # uniform: each mediator is a third of the requests' share
    assert weighted < uniform - 0.05
    assert ring_scores.max() < honest_scores.min()


def test_defect_probability_through_the_env(compose):
    # scripted colluders that always defect never honour the agreement: the fake result fails
    for p, state in ((0.0, DealState.MediationAccepted), (1.0, DealState.MediationRejected)):
        cfg = compose(*MINI, f"mediation.defect_probability={p}", "policies.rp.policy=always_cheat",
                      "policies.jc.policy=always_check", "policies.mediator.policy=colluding_mediator")  # fmt: skip
        mk = run_market(cfg, seed=3)
        assert [d.state for d in mk.deals] == [state]
