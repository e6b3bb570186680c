"""Every lifecycle path of a deal on a real chain: exact events (docs/protocol-flows.md), exact
wallet and escrow movements of every party (derived by hand in the comments; whole tokens, spec
defaults: Ts = Tj = 1, P = 2, instruction price 1, m = 2, F = 1), timestamps and views."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bridge.types import Agreement
from bridge.types import AgreementState as S
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
from tests.chain.model import choose_mediator

D = DEAL_ID
T_ = TOKEN

pytestmark = pytest.mark.chain


def agreed_deal(client, parties, addr, terms, t0: int):
    """RP agrees at t0, JC at t0 + 10 (deal agreed)."""
    client.set_next_timestamp(t0)
    client.agree(parties["rp"], terms)
    client.set_next_timestamp(t0 + 10)
    client.agree(parties["jc"], terms)


def submitted_deal(client, parties, addr, terms, t0: int, n: int = 1):
    """... and the RP adds a result with n instructions at t0 + 20."""
    agreed_deal(client, parties, addr, terms, t0)
    client.set_next_timestamp(t0 + 20)
    client.add_result(parties["rp"], terms.deal_id, "results-cid", "data-cid", n)


def test_happy_path(client, parties, addr):
    terms = default_terms(addr)
    t0 = client.now() + 100
    rp, jc = addr["rp"], addr["jc"]

    b0 = balances(client, addr)
    client.set_next_timestamp(t0)
    r = client.agree(parties["rp"], terms)
    # RP deposits Ts = 1: wallet -1, escrow +1.
    assert r.events == (dsc(D, S.DealNegotiating), pay(D, rp, 1 * T_, 2, 0))
    b1 = balances(client, addr)
    assert_moves(b0, b1, {"rp": (-1 * T_, 1 * T_)})

    client.set_next_timestamp(t0 + 10)
    r = client.agree(parties["jc"], terms)
    # JC deposits P + Tj = 2 + 1: wallet -3, escrow +3.
    assert r.events == (pay(D, jc, 2 * T_, 0, 0), pay(D, jc, 1 * T_, 2, 0), dsc(D, S.DealAgreed))
    b2 = balances(client, addr)
    assert_moves(b1, b2, {"jc": (-3 * T_, 3 * T_)})

    client.set_next_timestamp(t0 + 20)
    r = client.add_result(parties["rp"], D, "results-cid", "data-cid", 1)
    # C = 1 * 1 = 1, R = 2 * 1 = 2. RP deposits R (wallet -2, escrow +2), Ts refunded (+1, -1).
    assert r.events == (
        pay(D, rp, 2 * T_, 1, 0),
        pay(D, rp, 1 * T_, 2, 2),
        dsc(D, S.ResultsSubmitted),
    )
    b3 = balances(client, addr)
    assert_moves(b2, b3, {"rp": (-1 * T_, 1 * T_)})

    client.set_next_timestamp(t0 + 30)
    r = client.accept_result(parties["jc"], D)
    # pay = min(C, P) = 1 to the RP from the JC's escrow; JC refunded P - pay = 1 and Tj = 1;
    # RP refunded R = 2. JC: wallet +2, escrow -3. RP: wallet +1 + 2 = +3, escrow -2.
    assert r.events == (
        pay(D, rp, 1 * T_, 3, 1),
        pay(D, jc, 1 * T_, 0, 2),
        pay(D, jc, 1 * T_, 2, 2),
        pay(D, rp, 2 * T_, 1, 2),
        dsc(D, S.ResultsAccepted),
    )
    b4 = balances(client, addr)
    assert_moves(b3, b4, {"jc": (2 * T_, -3 * T_), "rp": (3 * T_, -2 * T_)})
    # Whole path: the JC paid C = 1, the RP earned it; no escrow left; nobody else moved.
    assert_moves(b0, b4, {"jc": (-1 * T_, 0), "rp": (1 * T_, 0)})
    assert client.deal_escrow(D) == (0, 0)

    assert client.agreement(D) == Agreement(
        S.ResultsAccepted, t0, t0 + 10, t0, t0 + 10, t0 + 20, t0 + 30, 0, 0, 0, 0, 0, 0, 0
    )
    assert client.deal(D) == terms
    result = client.result(D)
    assert (result.deal_id, result.results_id, result.data_id, result.instruction_count) == (
        D,
        "results-cid",
        "data-cid",
        1,
    )
    assert client.view("storage", "getJobCost", D)[0] == 1 * T_
    assert client.view("storage", "getResultsCollateral", D)[0] == 2 * T_
    assert client.has_deal(D) and not client.has_deal("unknown")
    assert client.view("storage", "isState", D, int(S.ResultsAccepted))[0]
    assert client.view("storage", "isState", "unknown", 0)[0]  # unknown reads as state 0
    assert client.deals_for_party(jc) == [D] and client.deals_for_party(rp) == [D]
    assert client.deals_for_party(addr["solver"]) == []


def test_job_creator_agrees_first(client, parties, addr):
    terms = default_terms(addr)
    t0 = client.now() + 100
    jc, rp = addr["jc"], addr["rp"]
    client.set_next_timestamp(t0)
    r = client.agree(parties["jc"], terms)
    assert r.events == (
        dsc(D, S.DealNegotiating),
        pay(D, jc, 2 * T_, 0, 0),
        pay(D, jc, 1 * T_, 2, 0),
    )
    client.set_next_timestamp(t0 + 5)
    r = client.agree(parties["rp"], terms)
    assert r.events == (pay(D, rp, 1 * T_, 2, 0), dsc(D, S.DealAgreed))
    a = client.agreement(D)
    assert (a.job_creator_agreed_at, a.resource_provider_agreed_at) == (t0, t0 + 5)
    assert (a.deal_created_at, a.deal_agreed_at) == (t0, t0 + 5)


def test_deals_for_party_lists_in_agreement_order(client, parties, addr):
    ids = ["deal-a", "deal-b", "deal-c"]
    client.agree(parties["rp"], default_terms(addr, ids[0]))
    client.agree(parties["jc"], default_terms(addr, ids[1]))
    client.agree(parties["jc2"], default_terms(addr, ids[2], job_creator=addr["jc2"]))
    assert client.deals_for_party(addr["rp"]) == ids
    assert client.deals_for_party(addr["jc"]) == ids[:2]
    assert client.deals_for_party(addr["jc2"]) == ids[2:]


def _check(client, parties, addr, terms, t0):
    submitted_deal(client, parties, addr, terms, t0)
    before = balances(client, addr)
    client.set_next_timestamp(t0 + 30)
    r = client.check_result(parties["jc"], D)
    mediator = choose_mediator(t0 + 30, D, terms.mediators)
    jc = addr["jc"]
    # JC refunded Tj = 1 (wallet +1, escrow -1), then deposits F = 1 (wallet -1, escrow +1).
    assert r.events == (
        pay(D, jc, 1 * T_, 2, 2),
        pay(D, jc, 1 * T_, 4, 0),
        dsc(D, S.ResultsChecked),
        requested(D, mediator),
    )
    assert_moves(before, balances(client, addr), {})
    assert client.mediator(D) == mediator
    return mediator


def test_check_then_mediator_accepts(client, parties, addr):
    terms = default_terms(addr, mediators=(addr["m1"], addr["m2"], addr["m3"]))
    t0 = client.now() + 100
    b0 = balances(client, addr)
    mediator = _check(client, parties, addr, terms, t0)
    name = {addr[n]: n for n in ("m1", "m2", "m3")}[mediator]
    jc, rp = addr["jc"], addr["rp"]

    before = balances(client, addr)
    client.set_next_timestamp(t0 + 40)
    r = client.mediation_accept_result(parties[name], D)
    # RP paid pay = 1 from the JC's escrow; mediator paid F = 1 from the JC's escrow; JC
    # refunded P - pay = 1; RP refunded R = 2. JC: wallet +1, escrow -(1 + 1 + 1) = -3.
    # RP: wallet +1 + 2 = +3, escrow -2. Mediator: wallet +1.
    assert r.events == (
        pay(D, rp, 1 * T_, 3, 1),
        pay(D, mediator, 1 * T_, 4, 1),
        pay(D, jc, 1 * T_, 0, 2),
        pay(D, rp, 2 * T_, 1, 2),
        dsc(D, S.MediationAccepted),
    )
    after = balances(client, addr)
    assert_moves(
        before, after, {"jc": (1 * T_, -3 * T_), "rp": (3 * T_, -2 * T_), name: (1 * T_, 0)}
    )
    # Whole path: JC paid C + F = 2, RP earned C = 1, the mediator F = 1.
    assert_moves(b0, after, {"jc": (-2 * T_, 0), "rp": (1 * T_, 0), name: (1 * T_, 0)})
    assert client.deal_escrow(D) == (0, 0)
    a = client.agreement(D)
    assert (a.results_checked_at, a.mediation_accepted_at, a.results_accepted_at) == (
        t0 + 30,
        t0 + 40,
        0,
    )


def test_check_then_mediator_rejects(client, parties, addr):
    terms = default_terms(addr, mediators=(addr["m1"], addr["m2"], addr["m3"]))
    t0 = client.now() + 100
    b0 = balances(client, addr)
    mediator = _check(client, parties, addr, terms, t0)
    name = {addr[n]: n for n in ("m1", "m2", "m3")}[mediator]
    jc, rp = addr["jc"], addr["rp"]

    before = balances(client, addr)
    client.set_next_timestamp(t0 + 40)
    r = client.mediation_reject_result(parties[name], D)
    # JC refunded P = 2; mediator paid F = 1 from the JC's escrow; RP's R = 2 slashed to the
    # owner. JC: wallet +2, escrow -3. RP: escrow -2. Mediator: wallet +1. Owner: wallet +2.
    assert r.events == (
        pay(D, jc, 2 * T_, 0, 2),
        pay(D, mediator, 1 * T_, 4, 1),
        pay(D, rp, 2 * T_, 1, 3),
        dsc(D, S.MediationRejected),
    )
    after = balances(client, addr)
    assert_moves(
        before, after,
        {"jc": (2 * T_, -3 * T_), "rp": (0, -2 * T_), name: (1 * T_, 0), "owner": (2 * T_, 0)},
    )  # fmt: skip
    # Whole path: the JC paid only F = 1; the RP (whose Ts came back at addResult) lost exactly
    # R = 2, which the owner received.
    assert_moves(
        b0, after, {"jc": (-1 * T_, 0), "rp": (-2 * T_, 0), name: (1 * T_, 0), "owner": (2 * T_, 0)}
    )
    assert client.deal_escrow(D) == (0, 0)
    assert client.agreement(D).mediation_rejected_at == t0 + 40


def test_timeout_agree_refunds_the_resource_provider(client, parties, addr):
    terms = default_terms(addr, agree_timeout_s=50)
    t0 = client.now() + 100
    b0 = balances(client, addr)
    client.set_next_timestamp(t0)
    client.agree(parties["rp"], terms)
    client.set_next_timestamp(t0 + 50)  # not after the deadline t0 + 50: strict
    err = expect_revert("TimeoutNotReached", client.timeout_agree, parties["jc"], D)
    assert err.error_args["deadline"] == t0 + 50 and err.error_args["now"] == t0 + 50
    client.set_next_timestamp(t0 + 51)
    r = client.timeout_agree(parties["jc"], D)  # the party that never agreed may call it too
    # RP refunded Ts = 1: back where it started.
    assert r.events == (pay(D, addr["rp"], 1 * T_, 2, 2), dsc(D, S.TimeoutAgree))
    assert_moves(b0, balances(client, addr), {})
    assert client.agreement(D).timeout_agree_at == t0 + 51
    assert client.deal_escrow(D) == (0, 0)


def test_timeout_agree_refunds_the_job_creator_p_plus_tj(client, parties, addr):
    # Ts != Tj, so a refund of P + Ts (defect 2 of the deployed v1) would show.
    terms = default_terms(addr, agree_timeout_s=50, submit_results_collateral_wei=5 * T_)
    t0 = client.now() + 100
    b0 = balances(client, addr)
    client.set_next_timestamp(t0)
    client.agree(parties["jc"], terms)
    client.set_next_timestamp(t0 + 51)
    r = client.timeout_agree(parties["jc"], D)
    jc = addr["jc"]
    # JC refunded P = 2 and Tj = 1 (not Ts = 5).
    assert r.events == (pay(D, jc, 2 * T_, 0, 2), pay(D, jc, 1 * T_, 2, 2), dsc(D, S.TimeoutAgree))
    assert_moves(b0, balances(client, addr), {})


def test_timeout_submit_result(client, parties, addr):
    terms = default_terms(addr, submit_results_timeout_s=70)
    t0 = client.now() + 100
    b0 = balances(client, addr)
    agreed_deal(client, parties, addr, terms, t0)  # agreed at t0 + 10
    client.set_next_timestamp(t0 + 80)
    expect_revert("TimeoutNotReached", client.timeout_submit_result, parties["jc"], D)
    client.set_next_timestamp(t0 + 81)
    r = client.timeout_submit_result(parties["jc"], D)
    jc, rp = addr["jc"], addr["rp"]
    # JC refunded P = 2 and Tj = 1; RP's Ts = 1 slashed to the owner.
    assert r.events == (
        pay(D, jc, 2 * T_, 0, 2),
        pay(D, jc, 1 * T_, 2, 2),
        pay(D, rp, 1 * T_, 2, 3),
        dsc(D, S.TimeoutSubmitResults),
    )
    # Whole path: RP lost Ts = 1 to the owner; the JC is whole.
    assert_moves(b0, balances(client, addr), {"rp": (-1 * T_, 0), "owner": (1 * T_, 0)})
    assert client.deal_escrow(D) == (0, 0)
    assert client.agreement(D).timeout_submit_results_at == t0 + 81


def test_timeout_judge_result_is_an_acceptance(client, parties, addr):
    terms = default_terms(addr, judge_results_timeout_s=30)
    t0 = client.now() + 100
    b0 = balances(client, addr)
    submitted_deal(client, parties, addr, terms, t0)  # submitted at t0 + 20
    client.set_next_timestamp(t0 + 50)
    expect_revert("TimeoutNotReached", client.timeout_judge_result, parties["rp"], D)
    client.set_next_timestamp(t0 + 51)
    r = client.timeout_judge_result(parties["rp"], D)
    jc, rp = addr["jc"], addr["rp"]
    # RP paid pay = 1; JC refunded P - pay = 1; RP refunded R = 2; JC's Tj = 1 slashed.
    assert r.events == (
        pay(D, rp, 1 * T_, 3, 1),
        pay(D, jc, 1 * T_, 0, 2),
        pay(D, rp, 2 * T_, 1, 2),
        pay(D, jc, 1 * T_, 2, 3),
        dsc(D, S.TimeoutJudgeResults),
    )
    # Whole path: JC paid C = 1 and lost Tj = 1; RP earned C = 1; owner got Tj = 1.
    assert_moves(
        b0, balances(client, addr), {"jc": (-2 * T_, 0), "rp": (1 * T_, 0), "owner": (1 * T_, 0)}
    )
    assert client.deal_escrow(D) == (0, 0)


def test_timeout_mediate_result_counts_from_the_check(client, parties, addr):
    # judge window 10 s, mediate window 100 s: the deployed defect 3 (window from the submission
    # with the judge timeout) would allow the call at t0 + 31.
    terms = default_terms(addr, judge_results_timeout_s=10, mediate_results_timeout_s=100)
    t0 = client.now() + 100
    b0 = balances(client, addr)
    mediator = _check(client, parties, addr, terms, t0)  # submitted t0 + 20, checked t0 + 30
    client.set_next_timestamp(t0 + 31)
    expect_revert("TimeoutNotReached", client.timeout_mediate_result, parties["rp"], D)
    client.set_next_timestamp(t0 + 130)
    err = expect_revert("TimeoutNotReached", client.timeout_mediate_result, parties["rp"], D)
    assert err.error_args["deadline"] == t0 + 130
    client.set_next_timestamp(t0 + 131)
    r = client.timeout_mediate_result(parties["rp"], D)
    jc, rp = addr["jc"], addr["rp"]
    # RP refunded R = 2; JC refunded P = 2 and F = 1.
    assert r.events == (
        pay(D, rp, 2 * T_, 1, 2),
        pay(D, jc, 2 * T_, 0, 2),
        pay(D, jc, 1 * T_, 4, 2),
        dsc(D, S.TimeoutMediateResults),
    )
    # Whole path: everyone whole (the mediator never decided, so it is not paid).
    assert_moves(b0, balances(client, addr), {})
    name = {addr[n]: n for n in ("m1",)}[mediator]
    expect_revert("WrongState", client.mediation_accept_result, parties[name], D)


def test_payment_is_capped_at_the_payment_collateral(client, parties, addr):
    terms = default_terms(addr)
    t0 = client.now() + 100
    b0 = balances(client, addr)
    submitted_deal(client, parties, addr, terms, t0, n=5)  # C = 5 > P = 2, R = 10
    client.set_next_timestamp(t0 + 30)
    r = client.accept_result(parties["jc"], D)
    jc, rp = addr["jc"], addr["rp"]
    # RP paid min(C, P) = 2; JC's P - pay = 0 emits nothing; Tj = 1 and R = 10 refunded.
    assert r.events == (
        pay(D, rp, 2 * T_, 3, 1),
        pay(D, jc, 1 * T_, 2, 2),
        pay(D, rp, 10 * T_, 1, 2),
        dsc(D, S.ResultsAccepted),
    )
    assert_moves(b0, balances(client, addr), {"jc": (-2 * T_, 0), "rp": (2 * T_, 0)})


def test_zero_amounts_move_nothing_and_emit_nothing(client, parties, addr):
    terms = default_terms(
        addr,
        submit_results_collateral_wei=0,
        judge_results_collateral_wei=0,
        mediation_fee_wei=0,
    )
    t0 = client.now() + 100
    jc, rp = addr["jc"], addr["rp"]
    b0 = balances(client, addr)
    client.set_next_timestamp(t0)
    assert client.agree(parties["rp"], terms).events == (dsc(D, S.DealNegotiating),)
    client.set_next_timestamp(t0 + 1)
    assert client.agree(parties["jc"], terms).events == (
        pay(D, jc, 2 * T_, 0, 0),
        dsc(D, S.DealAgreed),
    )
    client.set_next_timestamp(t0 + 2)
    # n = 0: C = 0, R = 0, Ts = 0.
    assert client.add_result(parties["rp"], D, "r", "d", 0).events == (dsc(D, S.ResultsSubmitted),)
    client.set_next_timestamp(t0 + 3)
    r = client.check_result(parties["jc"], D)
    assert r.events == (dsc(D, S.ResultsChecked), requested(D, addr["m1"]))
    client.set_next_timestamp(t0 + 4)
    r = client.mediation_accept_result(parties["m1"], D)
    # pay = 0, F = 0, R = 0: only P = 2 comes back.
    assert r.events == (pay(D, jc, 2 * T_, 0, 2), dsc(D, S.MediationAccepted))
    assert_moves(b0, balances(client, addr), {})
    assert rp  # the RP never moved


def test_all_zero_deal_emits_only_state_changes(client, parties, addr):
    terms = default_terms(
        addr,
        submit_results_collateral_wei=0,
        judge_results_collateral_wei=0,
        payment_collateral_wei=0,
        instruction_price_wei=0,
        mediation_fee_wei=0,
    )
    b0 = balances(client, addr)
    assert client.agree(parties["jc"], terms).events == (dsc(D, S.DealNegotiating),)
    assert client.agree(parties["rp"], terms).events == (dsc(D, S.DealAgreed),)
    assert client.add_result(parties["rp"], D, "r", "d", 7).events == (dsc(D, S.ResultsSubmitted),)
    assert client.accept_result(parties["jc"], D).events == (dsc(D, S.ResultsAccepted),)
    assert_moves(b0, balances(client, addr), {})


def test_pooled_escrow_is_accounted_per_deal(client, parties, addr):
    """Two deals of the same JC and RP: ending one never touches the other's collateral."""
    a, b = "deal-a", "deal-b"
    ta = default_terms(addr, a, agree_timeout_s=10)
    tb = default_terms(addr, b, payment_collateral_wei=7 * T_, judge_results_collateral_wei=3 * T_)
    t0 = client.now() + 100
    client.set_next_timestamp(t0)
    client.agree(parties["jc"], ta)  # JC escrow: P + Tj = 3 for deal a
    client.set_next_timestamp(t0 + 1)
    client.agree(parties["jc"], tb)  # + 7 + 3 = 10 for deal b
    client.set_next_timestamp(t0 + 2)
    client.agree(parties["rp"], tb)
    assert client.escrow(addr["jc"]) == 13 * T_
    assert client.deal_escrow(a) == (3 * T_, 0)
    assert client.deal_escrow(b) == (10 * T_, 1 * T_)
    client.set_next_timestamp(t0 + 11)
    client.timeout_agree(parties["rp"], a)
    assert client.escrow(addr["jc"]) == 10 * T_
    assert client.deal_escrow(b) == (10 * T_, 1 * T_)
    client.add_result(parties["rp"], b, "r", "d", 1)
    client.accept_result(parties["jc"], b)
    assert client.escrow(addr["jc"]) == 0 and client.escrow(addr["rp"]) == 0


def test_free_escrow_is_kept_apart_from_deals(client, parties, addr):
    jc = parties["jc"]
    client.pay_escrow(jc, 5 * T_)
    assert client.escrow(addr["jc"]) == 5 * T_
    terms = default_terms(addr)
    client.agree(jc, terms)  # deposits come from the wallet, not the free escrow
    assert client.escrow(addr["jc"]) == 8 * T_
    assert client.view("token", "freeEscrowBalanceOf", addr["jc"])[0] == 5 * T_
    expect_revert("InsufficientFreeEscrow", client.withdraw_escrow, jc, 6 * T_)
    client.withdraw_escrow(jc, 5 * T_)
    assert client.escrow(addr["jc"]) == 3 * T_
    assert client.view("token", "totalEscrow")[0] == 3 * T_


def test_slashing_destination_is_owner_settable(client, parties, addr):
    expect_revert(
        "OwnableUnauthorizedAccount",
        client.set_slashing_destination, parties["outsider"], addr["outsider"],
    )  # fmt: skip
    expect_revert(
        "InvalidSlashingDestination",
        client.set_slashing_destination, parties["owner"], "0x" + "00" * 20,
    )  # fmt: skip
    client.set_slashing_destination(parties["owner"], addr["treasury"])
    assert client.view("payments", "slashingDestination")[0] == addr["treasury"]
    terms = default_terms(addr, submit_results_timeout_s=5)
    t0 = client.now() + 100
    b0 = balances(client, addr)
    agreed_deal(client, parties, addr, terms, t0)
    client.set_next_timestamp(t0 + 16)
    client.timeout_submit_result(parties["jc"], D)
    assert_moves(b0, balances(client, addr), {"rp": (-1 * T_, 0), "treasury": (1 * T_, 0)})


def test_long_ids_and_many_mediators_round_trip(client, parties, addr):
    deal_id = "x" * 300
    mediators = tuple(addr[n] for n in ("m1", "m2", "m3", "outsider", "treasury"))
    terms = default_terms(addr, deal_id, mediators=mediators, agree_timeout_s=2**40 - 1,
                          payment_collateral_wei=2**100)  # fmt: skip
    terms = replace(terms, instruction_price_wei=2**127)
    client.agree(parties["rp"], terms)
    assert client.deal(deal_id) == terms
    assert client.deals_for_party(addr["rp"]) == [deal_id]
