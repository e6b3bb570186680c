"""Every revert guard: wrong state, wrong caller, timeout not reached, mismatched second agree,
stored-deal checks, non-chosen mediator, access control of the internal contracts. A reverted
call moves nothing."""

from __future__ import annotations

import pytest

from bridge.errors import ChainCallError
from bridge.types import AgreementState as S
from bridge.types import ServiceType
from tests.chain.helpers import DEAL_ID, TOKEN, balances, default_terms, expect_revert
from tests.chain.model import choose_mediator

D = DEAL_ID
ZERO = "0x" + "00" * 20

pytestmark = pytest.mark.chain


@pytest.fixture
def agreed(client, parties, addr):
    terms = default_terms(addr, mediators=(addr["m1"], addr["m2"], addr["m3"]))
    client.agree(parties["rp"], terms)
    client.agree(parties["jc"], terms)
    return terms


@pytest.fixture
def submitted(client, parties, agreed):
    client.add_result(parties["rp"], D, "r", "d", 1)
    return agreed


@pytest.fixture
def checked(client, parties, submitted):
    t = client.now() + 10
    client.set_next_timestamp(t)
    client.check_result(parties["jc"], D)
    return choose_mediator(t, D, submitted.mediators)


# ------------------------------------------------------------------------------- agree


def test_agree_by_an_outsider(client, parties, addr):
    err = expect_revert("NotParty", client.agree, parties["solver"], default_terms(addr))
    assert err.error_args == {"dealId": D, "caller": addr["solver"]}


def test_agree_twice_by_the_same_party(client, parties, addr):
    client.agree(parties["rp"], default_terms(addr))
    err = expect_revert("AlreadyAgreed", client.agree, parties["rp"], default_terms(addr))
    assert err.error_args["caller"] == addr["rp"]


def test_agree_on_an_agreed_deal(client, parties, agreed):
    err = expect_revert("WrongState", client.agree, parties["jc"], agreed)
    assert err.error_args["expected"] == S.DealNegotiating
    assert err.error_args["actual"] == S.DealAgreed


@pytest.mark.parametrize(
    "change",
    [
        {"solver": "outsider"},
        {"mediators": ("m1", "m2")},
        {"mediators": ("m2",)},
        {"agree_timeout_s": 3601},
        {"submit_results_timeout_s": 1},
        {"judge_results_timeout_s": 1},
        {"mediate_results_timeout_s": 1},
        {"submit_results_collateral_wei": 1},
        {"judge_results_collateral_wei": 1},
        {"instruction_price_wei": 1},
        {"payment_collateral_wei": 1},
        {"results_collateral_multiple": 3},
        {"mediation_fee_wei": 1},
    ],
)
def test_second_agree_with_different_terms(client, parties, addr, change):
    client.agree(parties["rp"], default_terms(addr))
    resolved = {
        k: (tuple(addr[m] for m in v) if k == "mediators" else addr[v] if k == "solver" else v)
        for k, v in change.items()
    }
    before = balances(client, addr)
    expect_revert("TermsMismatch", client.agree, parties["jc"], default_terms(addr, **resolved))
    assert balances(client, addr) == before
    assert client.state(D) == S.DealNegotiating


def test_second_agree_naming_another_resource_provider(client, parties, addr):
    client.agree(parties["jc"], default_terms(addr))
    terms = default_terms(addr, resource_provider=addr["rp2"])
    expect_revert("TermsMismatch", client.agree, parties["rp2"], terms)


@pytest.mark.parametrize(
    ("change", "error", "args"),
    [
        ({"solver": ZERO}, "MissingMember", {"role": ServiceType.Solver}),
        ({"resource_provider": ZERO}, "MissingMember", {"role": ServiceType.ResourceProvider}),
        ({"mediators": ()}, "MissingMember", {"role": ServiceType.Mediator}),
        ({"resource_provider": "jc"}, "SameJobCreatorAndResourceProvider", {}),
        ({"agree_collateral_wei": 1}, "NonZeroAgreeCollateral", {"collateral": 1}),
        ({"mediate_results_collateral_wei": 2}, "NonZeroMediateCollateral", {"collateral": 2}),
        ({"agree_timeout_s": 2**40}, "ValueTooLarge", {"value": 2**40}),
        ({"payment_collateral_wei": 2**128}, "ValueTooLarge", {"value": 2**128}),
        ({"results_collateral_multiple": 2**200}, "ValueTooLarge", {"value": 2**200}),
    ],
)
def test_stored_deal_checks(client, parties, addr, change, error, args):
    resolved = {k: addr.get(v, v) if isinstance(v, str) else v for k, v in change.items()}
    err = expect_revert(error, client.agree, parties["jc"], default_terms(addr, **resolved))
    for k, v in args.items():
        assert err.error_args[k] == v
    assert not client.has_deal(D)


def test_missing_job_creator(client, parties, addr):
    # The RP is the caller, so the zero JC reaches the stored-deal checks.
    err = expect_revert(
        "MissingMember", client.agree, parties["rp"], default_terms(addr, job_creator=ZERO)
    )
    assert err.error_args["role"] == ServiceType.JobCreator


def test_agree_without_funds(client, parties, addr):
    broke = parties["outsider"]
    client.transfer(broke, addr["owner"], client.balance(addr["outsider"]))
    terms = default_terms(addr, job_creator=addr["outsider"])
    err = expect_revert("ERC20InsufficientBalance", client.agree, broke, terms)
    assert err.error_args["needed"] == 2 * TOKEN
    assert not client.has_deal(D)  # the stored deal was rolled back with the failed deposit


# --------------------------------------------------------------------------- results


def test_add_result_guards(client, parties, addr):
    expect_revert("DealNotFound", client.add_result, parties["rp"], D, "r", "d", 1)
    client.agree(parties["rp"], default_terms(addr))
    err = expect_revert("WrongState", client.add_result, parties["rp"], D, "r", "d", 1)
    assert (err.error_args["expected"], err.error_args["actual"]) == (
        S.DealAgreed,
        S.DealNegotiating,
    )
    client.agree(parties["jc"], default_terms(addr))
    expect_revert("NotResourceProvider", client.add_result, parties["jc"], D, "r", "d", 1)
    expect_revert("NotResourceProvider", client.add_result, parties["rp2"], D, "r", "d", 1)
    expect_revert("ValueTooLarge", client.add_result, parties["rp"], D, "r", "d", 2**64)
    client.add_result(parties["rp"], D, "r", "d", 1)
    expect_revert("WrongState", client.add_result, parties["rp"], D, "r", "d", 1)


def test_accept_and_check_guards(client, parties, agreed):
    for call in (client.accept_result, client.check_result):
        err = expect_revert("WrongState", call, parties["jc"], D)
        assert err.error_args["expected"] == S.ResultsSubmitted
    client.add_result(parties["rp"], D, "r", "d", 1)
    for call in (client.accept_result, client.check_result):
        expect_revert("NotJobCreator", call, parties["rp"], D)
        expect_revert("NotJobCreator", call, parties["outsider"], D)
        expect_revert("DealNotFound", call, parties["jc"], "other")
    client.accept_result(parties["jc"], D)
    for call in (client.accept_result, client.check_result):
        err = expect_revert("WrongState", call, parties["jc"], D)
        assert err.error_args["actual"] == S.ResultsAccepted


# -------------------------------------------------------------------------- timeouts


def test_timeout_agree_guards(client, parties, addr):
    terms = default_terms(addr, agree_timeout_s=100)
    t0 = client.now() + 100
    client.set_next_timestamp(t0)
    client.agree(parties["rp"], terms)
    client.set_next_timestamp(t0 + 101)
    expect_revert("NotParty", client.timeout_agree, parties["outsider"], D)
    expect_revert("NotParty", client.timeout_agree, parties["m1"], D)
    client.agree(parties["jc"], terms)  # agreeing after the deadline is allowed (pull-based)
    err = expect_revert("WrongState", client.timeout_agree, parties["jc"], D)
    assert err.error_args["actual"] == S.DealAgreed
    expect_revert("DealNotFound", client.timeout_agree, parties["jc"], "other")


def test_timeout_submit_guards(client, parties, addr):
    terms = default_terms(addr, submit_results_timeout_s=100)
    t0 = client.now() + 100
    client.set_next_timestamp(t0)
    client.agree(parties["rp"], terms)
    client.set_next_timestamp(t0 + 500)
    expect_revert("WrongState", client.timeout_submit_result, parties["jc"], D)
    client.set_next_timestamp(t0 + 1000)
    client.agree(parties["jc"], terms)
    client.set_next_timestamp(t0 + 1100)
    err = expect_revert("TimeoutNotReached", client.timeout_submit_result, parties["jc"], D)
    assert err.error_args == {"dealId": D, "now": t0 + 1100, "deadline": t0 + 1100}
    client.set_next_timestamp(t0 + 1101)
    expect_revert("NotJobCreator", client.timeout_submit_result, parties["rp"], D)
    client.timeout_submit_result(parties["jc"], D)
    expect_revert("WrongState", client.timeout_submit_result, parties["jc"], D)


def test_timeout_judge_guards(client, parties, submitted):
    t = client.agreement(D).results_submitted_at + 3600
    client.set_next_timestamp(t)
    expect_revert("TimeoutNotReached", client.timeout_judge_result, parties["rp"], D)
    client.set_next_timestamp(t + 1)
    expect_revert("NotResourceProvider", client.timeout_judge_result, parties["jc"], D)
    client.check_result(parties["jc"], D)
    err = expect_revert("WrongState", client.timeout_judge_result, parties["rp"], D)
    assert err.error_args["actual"] == S.ResultsChecked


def test_timeout_mediate_guards(client, parties, submitted):
    expect_revert("WrongState", client.timeout_mediate_result, parties["rp"], D)
    t = client.now() + 10
    client.set_next_timestamp(t)
    client.check_result(parties["jc"], D)
    client.set_next_timestamp(t + 3600)
    expect_revert("TimeoutNotReached", client.timeout_mediate_result, parties["jc"], D)
    client.set_next_timestamp(t + 3601)
    expect_revert("NotParty", client.timeout_mediate_result, parties["m1"], D)
    client.timeout_mediate_result(parties["jc"], D)


# ------------------------------------------------------------------------- mediation


def test_only_the_chosen_mediator_may_vote(client, parties, addr, checked):
    names = {addr[n]: n for n in ("m1", "m2", "m3")}
    chosen = names[checked]
    for other in ("m1", "m2", "m3", "jc", "rp", "outsider"):
        if other == chosen:
            continue
        for call in (client.mediation_accept_result, client.mediation_reject_result):
            err = expect_revert("NotMediator", call, parties[other], D)
            assert err.error_args == {"dealId": D, "caller": addr[other], "mediator": checked}
    client.mediation_reject_result(parties[chosen], D)
    expect_revert("WrongState", client.mediation_accept_result, parties[chosen], D)


def test_no_mediator_before_the_check(client, parties, addr, submitted):
    assert client.mediator(D) == ZERO
    err = expect_revert("NotMediator", client.mediation_accept_result, parties["m1"], D)
    assert err.error_args["mediator"] == ZERO


def test_controller_mediation_callbacks_are_for_the_mediation_contract(
    client, parties, addr, checked
):
    mediator = parties[{addr[n]: n for n in ("m1", "m2", "m3")}[checked]]
    expect_revert(
        "NotMediationContract",
        client.transact, mediator, "controller", "mediationAcceptResult", D, [checked],
    )  # fmt: skip


# ------------------------------------------------------------------- access control


def test_internal_contracts_only_answer_their_callers(client, parties, addr):
    outsider = parties["outsider"]
    money = (addr["jc"], addr["rp"], 1, 1, 1, 1, 1, 1)
    calls = [
        ("storage", "announceState", (D,), "NotController"),
        ("storage", "closeDeal", (D, 3), "NotController"),
        ("storage", "createDeal", (D, b"", addr["jc"], addr["rp"], True), "NotController"),
        ("storage", "recordResult", (D, b"", 1), "NotController"),
        ("payments", "acceptResult", (D, money), "NotController"),
        ("payments", "agreeJobCreator", (D, money), "NotController"),
        ("token", "escrowDeposit", (addr["jc"], 1), "NotPayments"),
        ("token", "escrowRelease", (addr["jc"], addr["outsider"], 1), "NotPayments"),
        ("mediation", "requestMediation", (D, [addr["m1"]]), "NotController"),
    ]
    for contract, function, args, error in calls:
        expect_revert(error, client.transact, outsider, contract, function, *args)


def test_storage_fallback_only_serves_blob_writes_in_progress(client, parties, addr):
    for data in (b"", b"\x12\x34\x56\x78"):
        with pytest.raises(ChainCallError) as info:
            client.sender.send(parties["outsider"], client.storage.address, data, "fallback")
        assert info.value.error_name == "UnknownFunction"


def test_plain_transfers_to_the_token_contract_are_refused(client, parties, addr):
    expect_revert(
        "TransferToTokenContract", client.transfer, parties["jc"], client.token.address, 1
    )


def test_a_reverted_call_moves_nothing(client, parties, addr, submitted):
    before = balances(client, addr)
    expect_revert("NotJobCreator", client.accept_result, parties["rp"], D)
    expect_revert("WrongState", client.agree, parties["jc"], submitted)
    expect_revert("TimeoutNotReached", client.timeout_judge_result, parties["rp"], D)
    expect_revert("NotMediator", client.mediation_reject_result, parties["m1"], D)
    assert balances(client, addr) == before
