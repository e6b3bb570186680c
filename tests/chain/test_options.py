"""The optional mechanisms (docs/contracts.md): consortium mediation (k of n, in rounds), the tax / jackpot
pool, and a constructor-set slashing destination; exact events and balances."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bridge.contracts import LilypadClient
from bridge.deploy import ConsortiumOptions, JackpotOptions
from bridge.types import AgreementState as S
from bridge.types import JackpotPaid, MediationVoted, TaxCollected
from tests.chain.conftest import deploy_funded
from tests.chain.helpers import (
    DEAL_ID,
    TOKEN,
    assert_moves,
    balances,
    default_terms,
    dsc,
    expect_revert,
    pay,
    requested,
)
from twin.mediation.consortium import hash_draw

pytestmark = pytest.mark.chain

D = DEAL_ID
T_ = TOKEN


def voted(deal_id: str, mediator: str, vote: int) -> MediationVoted:
    return MediationVoted(deal_id, mediator, vote)


def _consortium(w3, parties, options: ConsortiumOptions) -> LilypadClient:
    return deploy_funded(w3, parties, mediation_kind="consortium", consortium=options)[1]


def _fresh(module_level: LilypadClient) -> Iterator[LilypadClient]:
    snapshot = module_level.snapshot()
    yield module_level
    module_level.revert(snapshot)


@pytest.fixture(scope="module")
def consortium_module(w3, parties) -> LilypadClient:
    return _consortium(w3, parties, ConsortiumOptions(2, 2, max_rounds=2, fee_split="equal"))


@pytest.fixture
def consortium(consortium_module) -> Iterator[LilypadClient]:
    yield from _fresh(consortium_module)


@pytest.fixture(scope="module")
def majority_module(w3, parties) -> LilypadClient:
    return _consortium(w3, parties, ConsortiumOptions(3, 2, max_rounds=1, fee_split="majority"))


@pytest.fixture
def majority(majority_module) -> Iterator[LilypadClient]:
    yield from _fresh(majority_module)


@pytest.fixture(scope="module")
def jackpot_module(w3, parties) -> LilypadClient:
    options = JackpotOptions(tax_numerator=1, tax_denominator=10, payout_numerator=1,
                             payout_denominator=3)  # fmt: skip
    client = deploy_funded(w3, parties, jackpot=options, slashing_destination="jackpot")[1]
    client.transfer(parties["owner"], client.deployment.jackpot, 30 * T_)  # seed the pool
    return client


@pytest.fixture
def jackpot(jackpot_module) -> Iterator[LilypadClient]:
    yield from _fresh(jackpot_module)


def _submitted(client, parties, terms, n: int = 1) -> None:
    client.agree(parties["rp"], terms)
    client.agree(parties["jc"], terms)
    client.add_result(parties["rp"], terms.deal_id, "r", "d", n)


def _supply_is_conserved(client, addr) -> None:
    read = client.balances(addr.values())
    total = sum(w + e for w, e in read.values()) + client.jackpot_balance()
    assert client.total_supply() == total


# ------------------------------------------------------------------ consortium
# Draws are v1's hash rule generalised (docs/contracts.md section 1): the expected mediators come
# from `hash_draw`, the twin's definition of the rule (keccak256 of the block time and the deal
# id, chained), over the deal's mediators not drawn before, in deal order.


def _drawn(c, parties, terms, t: int, names: tuple[str, ...], size: int) -> tuple[str, ...]:
    """Checks the deal at block time `t`; returns the names drawn for the first round."""
    c.set_next_timestamp(t)
    r = c.check_result(parties["jc"], D)
    drawn = tuple(names[i] for i in hash_draw(t, D, range(len(names)), size))
    jc = terms.job_creator
    assert r.events == (
        pay(D, jc, 1 * T_, 2, 2),
        pay(D, jc, terms.mediation_fee_wei, 4, 0),
        dsc(D, S.ResultsChecked),
        *(requested(D, parties[n].address) for n in drawn),
    )
    return drawn


def test_consortium_rounds_draw_by_the_hash_chain_and_pay_every_voter(consortium, parties, addr):
    # n = 2, k = 2, two rounds, equal split. Five deal mediators: round 1 draws 2; a 1-1 split
    # has no consensus (k = 2), so the closing vote draws 2 of the 3 left at its block time.
    c = consortium
    names = ("m1", "m2", "m3", "jc2", "rp2")
    terms = default_terms(addr, mediators=tuple(addr[n] for n in names))
    expect_revert("NotAwaitingMediation", c.mediation_accept_result, parties["m1"], D)
    _submitted(c, parties, terms)
    t = c.now() + 10
    a, b = _drawn(c, parties, terms, t, names, 2)
    assert c.mediator(D) == addr[a]
    (outside,) = [n for n in names if n not in (a, b)][:1]
    expect_revert("NotMediator", c.mediation_accept_result, parties[outside], D)
    before = balances(c, addr)
    c.set_next_timestamp(t + 20)
    assert c.mediation_accept_result(parties[a], D).events == (voted(D, addr[a], 1),)
    expect_revert("AlreadyVoted", c.mediation_reject_result, parties[a], D)
    c.set_next_timestamp(t + 30)
    left = [n for n in names if n not in (a, b)]
    c_, d_ = (left[i] for i in hash_draw(t + 30, D, range(len(left)), 2))
    r = c.mediation_reject_result(parties[b], D)
    assert r.events == (voted(D, addr[b], 0), requested(D, addr[c_]), requested(D, addr[d_]))
    assert_moves(before, balances(c, addr), {})  # votes without a verdict move nothing
    expect_revert("AlreadyVoted", c.mediation_accept_result, parties[b], D)  # round 1 is over
    c.mediation_accept_result(parties[c_], D)
    r = c.mediation_accept_result(parties[d_], D)  # round 2: 2 accepts >= k, 2 > 0: accepted
    # C = price 1 x 1 instruction = 1 token, pay = min(C, P = 2) = 1, P - pay = 1, R = m 2 x 1 = 2.
    # F = 1 token among the 4 voters of both rounds, in draw order: 0.25 token each, no remainder.
    jc, rp, q = addr["jc"], addr["rp"], T_ // 4
    assert r.events == (
        voted(D, addr[d_], 1),
        pay(D, rp, 1 * T_, 3, 1),
        *(pay(D, addr[n], q, 4, 1) for n in (a, b, c_, d_)),
        pay(D, jc, 1 * T_, 0, 2),
        pay(D, rp, 2 * T_, 1, 2),
        dsc(D, S.MediationAccepted),
    )
    assert_moves(before, balances(c, addr), {"jc": (1 * T_, -3 * T_), "rp": (3 * T_, -2 * T_),
                                             **{n: (q, 0) for n in (a, b, c_, d_)}})  # fmt: skip
    expect_revert("NotAwaitingMediation", c.mediation_reject_result, parties[d_], D)
    drawn, votes, rounds = c.view("mediation", "getCase", D)
    assert (list(drawn), list(votes), rounds) == (
        [addr[n] for n in (a, b, c_, d_)],
        [1, 0, 1, 1],
        2,
    )


def test_consortium_majority_split_pays_the_verdicts_voters(majority, parties, addr):
    # n = 3, k = 2, one round, majority split. Two rejects do not decide while the round is open;
    # the last vote (an accept) closes it 1-2: rejected, and F goes to the two rejecters.
    c = majority
    names = ("m1", "m2", "m3")
    terms = default_terms(addr, mediators=tuple(addr[n] for n in names))
    _submitted(c, parties, terms)
    x, y, z = _drawn(c, parties, terms, c.now() + 10, names, 3)
    assert c.mediation_reject_result(parties[x], D).events == (voted(D, addr[x], 0),)
    assert c.mediation_reject_result(parties[y], D).events == (voted(D, addr[y], 0),)
    before = balances(c, addr)
    r = c.mediation_accept_result(parties[z], D)
    # reject: P = 2 back to the JC, F = 1 token / 2 = 0.5 each to x and y, R = 2 slashed.
    jc, rp = addr["jc"], addr["rp"]
    assert r.events == (
        voted(D, addr[z], 1),
        pay(D, jc, 2 * T_, 0, 2),
        pay(D, addr[x], T_ // 2, 4, 1),
        pay(D, addr[y], T_ // 2, 4, 1),
        pay(D, rp, 2 * T_, 1, 3),
        dsc(D, S.MediationRejected),
    )
    assert_moves(before, balances(c, addr), {"jc": (2 * T_, -3 * T_), "rp": (0, -2 * T_),
                                             x: (T_ // 2, 0), y: (T_ // 2, 0),
                                             "owner": (2 * T_, 0)})  # fmt: skip


def test_consortium_dust_shares_move_nothing(consortium, parties, addr):
    c = consortium
    names = ("m1", "m2", "m3", "jc2", "rp2")
    terms = default_terms(addr, mediators=tuple(addr[n] for n in names), mediation_fee_wei=3)
    _submitted(c, parties, terms)
    t = c.now() + 10
    a, b = _drawn(c, parties, terms, t, names, 2)
    c.mediation_accept_result(parties[a], D)
    c.set_next_timestamp(t + 30)
    left = [n for n in names if n not in (a, b)]
    c_, d_ = (left[i] for i in hash_draw(t + 30, D, range(len(left)), 2))
    c.mediation_reject_result(parties[b], D)
    c.mediation_reject_result(parties[c_], D)
    r = c.mediation_reject_result(parties[d_], D)
    # F = 3 wei among 4 voters: share 0, the remainder 3 to the first in draw order (a); zero
    # shares emit nothing.
    assert [e for e in r.events if getattr(e, "reason", None) == 4] == [pay(D, addr[a], 3, 4, 1)]


def test_consortium_without_a_round_left_ends_by_timeout(consortium, parties, addr):
    # Three deal mediators, n = k = 2: a 1-1 round leaves one candidate, a round smaller than k:
    # no new round; the deal ends by timeoutMediateResult and nobody is paid.
    c = consortium
    names = ("m1", "m2", "m3")
    terms = default_terms(
        addr, mediators=tuple(addr[n] for n in names), mediate_results_timeout_s=60
    )
    b0 = balances(c, addr)
    _submitted(c, parties, terms)
    t = c.now() + 5
    a, b = _drawn(c, parties, terms, t, names, 2)
    c.mediation_accept_result(parties[a], D)
    assert c.mediation_reject_result(parties[b], D).events == (voted(D, addr[b], 0),)
    (rest,) = [n for n in names if n not in (a, b)]
    expect_revert("NotMediator", c.mediation_accept_result, parties[rest], D)
    c.set_next_timestamp(t + 61)
    r = c.timeout_mediate_result(parties["rp"], D)
    assert r.events[-1] == dsc(D, S.TimeoutMediateResults)
    assert_moves(b0, balances(c, addr), {})  # everyone whole, no mediator paid


@pytest.mark.parametrize(
    "options,name",
    [
        (ConsortiumOptions(n_mediators=0, threshold=1), "perRound"),
        (ConsortiumOptions(n_mediators=2, threshold=0), "threshold"),
        (ConsortiumOptions(n_mediators=2, threshold=3), "threshold"),
        (ConsortiumOptions(n_mediators=2, threshold=2, max_rounds=0), "maxRounds"),
        (ConsortiumOptions(n_mediators=3, threshold=2, max_nodes=2), "maxNodes"),
    ],
)
def test_consortium_parameter_bounds(options, name, w3, parties):
    from bridge.deploy import deploy
    from bridge.errors import ChainCallError

    with pytest.raises(ChainCallError) as info:
        deploy(w3, parties["outsider"], mediation_kind="consortium", consortium=options)
    assert info.value.error_name == "InvalidParameter" and name in str(info.value)


# ---------------------------------------------------------------------- jackpot


def test_paid_jobs_are_taxed_into_the_pool(jackpot, parties, addr):
    c = jackpot
    b0, pool0 = balances(c, addr), c.jackpot_balance()
    _submitted(c, parties, default_terms(addr), n=1)
    r = c.accept_result(parties["jc"], D)
    # pay = 1 token; tax = floor(1 token * 1 / 10) = 0.1 token from the JC's wallet, after the
    # deal's payments and before its state change.
    tax = T_ // 10
    assert r.events[-2:] == (TaxCollected(D, addr["jc"], tax), dsc(D, S.ResultsAccepted))
    assert_moves(b0, balances(c, addr), {"jc": (-1 * T_ - tax, 0), "rp": (1 * T_, 0)})
    assert c.jackpot_balance() == pool0 + tax
    _supply_is_conserved(c, addr)


def test_judge_timeout_and_mediated_acceptance_are_taxed(jackpot, parties, addr):
    c = jackpot
    terms = default_terms(addr, judge_results_timeout_s=5)
    t = c.now() + 10
    c.set_next_timestamp(t)
    _submitted(c, parties, terms, n=5)  # C = 5 > P = 2: pay = 2, tax = 0.2
    c.set_next_timestamp(t + 100)
    r = c.timeout_judge_result(parties["rp"], D)
    assert TaxCollected(D, addr["jc"], 2 * T_ // 10) in r.events
    other = default_terms(addr, "deal-2")
    _submitted(c, parties, other)
    c.check_result(parties["jc"], "deal-2")
    r = c.mediation_accept_result(parties["m1"], "deal-2")
    assert r.events[-2] == TaxCollected("deal-2", addr["jc"], T_ // 10)
    _supply_is_conserved(c, addr)


def test_tax_is_skipped_when_the_wallet_cannot_cover_it(jackpot, parties, addr):
    c = jackpot
    _submitted(c, parties, default_terms(addr))
    c.transfer(parties["jc"], addr["owner"], c.balance(addr["jc"]))  # empty the JC's wallet
    r = c.accept_result(parties["jc"], D)
    # The JC gets P - pay = 1 and Tj = 1 back, but the tax is charged only from what the wallet
    # holds when it is due: 2 tokens >= 0.1, so it is paid.
    assert TaxCollected(D, addr["jc"], T_ // 10) in r.events
    other = default_terms(
        addr, "deal-3", payment_collateral_wei=1 * T_, judge_results_collateral_wei=0
    )
    _submitted(c, parties, other)
    c.transfer(parties["jc"], addr["owner"], c.balance(addr["jc"]))
    r = c.accept_result(parties["jc"], "deal-3")  # pay = P = 1, nothing refunded, wallet 0
    assert not any(isinstance(e, TaxCollected) for e in r.events)


def test_caught_cheats_win_a_share_of_the_pool(jackpot, parties, addr):
    c = jackpot
    _submitted(c, parties, default_terms(addr))
    c.check_result(parties["jc"], D)
    pool_before = c.jackpot_balance()
    b0 = balances(c, addr)
    r = c.mediation_reject_result(parties["m1"], D)
    # The RP's R = 2 is slashed into the pool, then the JC wins floor(pool / 3).
    won = (pool_before + 2 * T_) // 3
    jc, rp = addr["jc"], addr["rp"]
    assert r.events == (
        pay(D, jc, 2 * T_, 0, 2),
        pay(D, addr["m1"], 1 * T_, 4, 1),
        pay(D, rp, 2 * T_, 1, 3),
        JackpotPaid(D, jc, won),
        dsc(D, S.MediationRejected),
    )
    assert_moves(
        b0,
        balances(c, addr),
        {"jc": (2 * T_ + won, -3 * T_), "rp": (0, -2 * T_), "m1": (1 * T_, 0)},
    )
    assert c.jackpot_balance() == pool_before + 2 * T_ - won
    _supply_is_conserved(c, addr)


def test_jackpot_rates_are_owner_set(jackpot, parties, addr):
    c = jackpot
    expect_revert(
        "OwnableUnauthorizedAccount", c.transact, parties["jc"], "jackpot", "setRates", 1, 2, 1, 2
    )
    expect_revert("InvalidRate", c.transact, parties["owner"], "jackpot", "setRates", 3, 2, 1, 2)
    expect_revert("InvalidRate", c.transact, parties["owner"], "jackpot", "setRates", 0, 0, 1, 2)
    c.transact(parties["owner"], "jackpot", "setRates", 0, 1, 1, 2)
    _submitted(c, parties, default_terms(addr))
    r = c.accept_result(parties["jc"], D)
    assert not any(isinstance(e, TaxCollected) for e in r.events)
    expect_revert("NotPayments", c.transact, parties["jc"], "jackpot", "payJackpot", D, addr["jc"])


def test_timeout_slashes_go_to_the_configured_destination(jackpot, parties, addr):
    c = jackpot
    terms = default_terms(addr, submit_results_timeout_s=5)
    t = c.now() + 10
    c.set_next_timestamp(t)
    c.agree(parties["rp"], terms)
    c.agree(parties["jc"], terms)
    pool0 = c.jackpot_balance()
    c.set_next_timestamp(t + 10)
    c.timeout_submit_result(parties["jc"], D)
    assert c.jackpot_balance() == pool0 + 1 * T_  # the RP's Ts
    assert c.view("payments", "slashingDestination")[0] == c.deployment.jackpot
