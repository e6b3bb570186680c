"""The optional mechanisms (docs/contracts.md): k-of-n consortium mediation, the tax / jackpot
pool, and a constructor-set slashing destination; exact events and balances."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bridge.contracts import LilypadClient
from bridge.deploy import JackpotOptions
from bridge.types import AgreementState as S
from bridge.types import JackpotPaid, TaxCollected
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

pytestmark = pytest.mark.chain

D = DEAL_ID
T_ = TOKEN


def _fresh(module_level: LilypadClient) -> Iterator[LilypadClient]:
    snapshot = module_level.snapshot()
    yield module_level
    module_level.revert(snapshot)


@pytest.fixture(scope="module")
def consortium_module(w3, parties) -> LilypadClient:
    return deploy_funded(w3, parties, mediation_kind="consortium", consortium_threshold=2)[1]


@pytest.fixture
def consortium(consortium_module) -> Iterator[LilypadClient]:
    yield from _fresh(consortium_module)


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


def test_consortium_asks_every_mediator_and_two_votes_decide(consortium, parties, addr):
    c = consortium
    mediators = (addr["m1"], addr["m2"], addr["m3"])
    terms = default_terms(addr, mediators=mediators)
    expect_revert("NotAwaitingMediation", c.mediation_accept_result, parties["m1"], D)
    _submitted(c, parties, terms)
    jc, rp = addr["jc"], addr["rp"]
    r = c.check_result(parties["jc"], D)
    assert r.events == (
        pay(D, jc, 1 * T_, 2, 2),
        pay(D, jc, 1 * T_, 4, 0),
        dsc(D, S.ResultsChecked),
        *(requested(D, m) for m in mediators),
    )
    assert c.mediator(D) == addr["m1"]
    before = balances(c, addr)
    assert c.mediation_accept_result(parties["m2"], D).events == ()  # 1 accept of 2
    expect_revert("AlreadyVoted", c.mediation_reject_result, parties["m2"], D)
    expect_revert("NotMediator", c.mediation_accept_result, parties["outsider"], D)
    assert c.mediation_reject_result(parties["m1"], D).events == ()  # 1 accept, 1 reject
    assert_moves(before, balances(c, addr), {})
    r = c.mediation_accept_result(parties["m3"], D)  # 2 accepts: decided
    # F = 1 token split among the 3 voters in voting order (m2, m1, m3): 333...333 each, the
    # remainder 1 wei to the first voter. pay = min(C, P) = 1; P - pay = 1; R = 2.
    share = T_ // 3
    assert r.events == (
        pay(D, rp, 1 * T_, 3, 1),
        pay(D, addr["m2"], share + 1, 4, 1),
        pay(D, addr["m1"], share, 4, 1),
        pay(D, addr["m3"], share, 4, 1),
        pay(D, jc, 1 * T_, 0, 2),
        pay(D, rp, 2 * T_, 1, 2),
        dsc(D, S.MediationAccepted),
    )
    assert_moves(
        before,
        balances(c, addr),
        {
            "jc": (1 * T_, -3 * T_),
            "rp": (3 * T_, -2 * T_),
            "m2": (share + 1, 0),
            "m1": (share, 0),
            "m3": (share, 0),
        },
    )
    expect_revert("NotAwaitingMediation", c.mediation_reject_result, parties["m3"], D)
    voters, accepts, rejects = c.view("mediation", "getVotes", D)
    assert (list(voters), accepts, rejects) == ([addr["m2"], addr["m1"], addr["m3"]], 2, 1)


def test_consortium_rejection_splits_the_fee_among_its_voters(consortium, parties, addr):
    c = consortium
    terms = default_terms(addr, mediators=(addr["m1"], addr["m2"], addr["m3"]))
    _submitted(c, parties, terms)
    c.check_result(parties["jc"], D)
    c.mediation_reject_result(parties["m3"], D)
    r = c.mediation_reject_result(parties["m1"], D)
    jc, rp = addr["jc"], addr["rp"]
    assert r.events == (
        pay(D, jc, 2 * T_, 0, 2),
        pay(D, addr["m3"], T_ // 2, 4, 1),
        pay(D, addr["m1"], T_ // 2, 4, 1),
        pay(D, rp, 2 * T_, 1, 3),
        dsc(D, S.MediationRejected),
    )


def test_consortium_threshold_is_capped_by_the_mediators(consortium, parties, addr):
    c = consortium
    _submitted(c, parties, default_terms(addr, mediators=(addr["m2"],)))  # k = 2 > n = 1
    c.check_result(parties["jc"], D)
    r = c.mediation_accept_result(parties["m2"], D)
    assert r.events[-1] == dsc(D, S.MediationAccepted)
    assert pay(D, addr["m2"], 1 * T_, 4, 1) in r.events


def test_consortium_dust_shares_move_nothing(consortium, parties, addr):
    c = consortium
    terms = default_terms(addr, mediators=(addr["m1"], addr["m2"], addr["m3"]), mediation_fee_wei=2)
    _submitted(c, parties, terms)
    c.check_result(parties["jc"], D)
    c.mediation_accept_result(parties["m1"], D)
    c.mediation_reject_result(parties["m2"], D)
    r = c.mediation_reject_result(parties["m3"], D)
    # F = 2 wei among 3 voters: share 0, remainder 2 to m1; zero shares emit nothing.
    fee_events = [e for e in r.events if getattr(e, "reason", None) == 4]
    assert fee_events == [pay(D, addr["m1"], 2, 4, 1)]


def test_consortium_without_a_decision_ends_by_timeout(consortium, parties, addr):
    c = consortium
    terms = default_terms(addr, mediators=(addr["m1"], addr["m2"]), mediate_results_timeout_s=10)
    b0 = balances(c, addr)
    _submitted(c, parties, terms)
    t = c.now() + 5
    c.set_next_timestamp(t)
    c.check_result(parties["jc"], D)
    c.mediation_accept_result(parties["m1"], D)
    c.mediation_reject_result(parties["m2"], D)  # 1-1 with t = 2: no decision possible
    c.set_next_timestamp(t + 11)
    r = c.timeout_mediate_result(parties["rp"], D)
    assert r.events[-1] == dsc(D, S.TimeoutMediateResults)
    assert_moves(b0, balances(c, addr), {})  # everyone whole, no mediator paid


def test_consortium_threshold_bounds(w3, parties):
    from bridge.deploy import deploy
    from bridge.errors import ChainCallError

    for k in (0, 16):
        with pytest.raises(ChainCallError) as info:
            deploy(w3, parties["outsider"], mediation_kind="consortium", consortium_threshold=k)
        assert info.value.error_name == "InvalidThreshold"


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
