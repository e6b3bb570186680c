"""The replay bridge on a real anvil: scripted episodes run in the twin and replayed on chain give
identical balances for every account to the wei, identical final states and identical event
sequences (`assert_parity`); the deployed preset predicts the reproduction of the deployed
contracts exactly, and the intended preset's divergences from it are reported, not crashed on.

One anvil for the module (genesis a day before the twin's, so chain time can follow the twin's),
every replay between `evm_snapshot` and `evm_revert` (chain time included).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from web3 import Web3

from bridge.anvil import Anvil
from bridge.contracts import LilypadClient, account_from_mnemonic
from bridge.deploy import deploy
from bridge.errors import ChainCallError
from bridge.types import AgreementState, DealTerms
from tests.chain.replay_helpers import (
    addresses,
    assert_parity,
    fresh,
    plan_of,
    record_of,
    replay,
    rpc,
)
from twin.market import GENESIS_TIME_S

pytestmark = pytest.mark.chain


@pytest.fixture(scope="module")
def node() -> Iterator[Anvil]:
    # the node holds every party's key (anvil's mnemonic), so it signs for them
    with Anvil(genesis_timestamp_s=GENESIS_TIME_S - 86_400, accounts=48) as n:
        yield n


@pytest.fixture
def w3(node: Anvil) -> Iterator[Web3]:
    w3 = Web3(Web3.HTTPProvider(node.url, request_kwargs={"timeout": 60}))
    with fresh(w3):
        yield w3


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("records")


@pytest.mark.parametrize(
    "name,variant",
    [
        ("honest", ""),
        ("cheating", ""),
        ("timeouts", ""),
        ("mediate", ""),
        ("deployed_timeouts", "deployed_v1_defects"),
        ("deployed_mediate", "deployed_v1_defects"),
        ("deployed_drain", "deployed_v1_defects"),
    ],
)
def test_scripted_episodes_replay_to_the_wei(name, variant, w3, records, tmp_path) -> None:
    record = record_of(name, records)
    plan = plan_of(record)
    paths = {s.function for s in plan.steps}
    # each market exercises what it is named for
    expected = {
        "cheating": {"mediationRejectResult", "mediationAcceptResult"},
        "timeouts": {"timeoutSubmitResult", "timeoutJudgeResult", "timeoutAgree"},
        "mediate": {"timeoutMediateResult"},
        "deployed_timeouts": {"timeoutSubmitResult", "timeoutJudgeResult", "timeoutAgree"},
        "deployed_mediate": {"timeoutMediateResult"},
        "deployed_drain": {"timeoutAgree"},
    }.get(name, {"acceptResult"})
    assert expected <= paths, paths
    result = replay(w3, plan, tmp_path, variant)
    assert_parity(w3, result, plan, record)
    if name.startswith("deployed"):  # the preset's reverted calls are mined and revert on chain
        reverted = [e for e in result.steps if e["status"] == "reverted"]
        assert len(reverted) == sum(s.reverts for s in plan.steps)
        assert reverted or name != "deployed_timeouts"


def test_deployed_preset_agrees_with_the_reproduction_on_every_defect(w3, records, tmp_path):
    """Defect by defect, the deployed preset's record and the chain variant agree:
    1. the submit and judge timeouts revert on chain and their collateral stays in escrow;
    2. a lone JC's agree timeout refunds P + Ts (Ts = 1 here, Tj = 2: 1 token stays, locked);
    3. the mediate timeout runs from the submission with the judge window (checked above with
       `deployed_mediate`: the twin calls it 91 s after submission, before the v1 window ends);
    4. tx.origin: see test_contract_wallet_party_*.
    """
    record = record_of("deployed_timeouts", records)
    plan = plan_of(record)
    result = replay(w3, plan, tmp_path, "deployed_v1_defects")
    assert_parity(w3, result, plan, record)
    by_step = {e["step"]: e for e in result.steps}
    lone = [s for s in plan.steps if s.function == "timeoutAgree"]
    assert lone
    for s in lone:
        d = plan.deals[s.deal_id]
        refunds = [ev.amount for ev in s.events if ev.kind == "Payment"]
        assert s.caller == d.job_creator
        assert refunds == [d.payment_collateral_wei, d.submit_results_collateral_wei]
        assert by_step[s.index]["status"] == "ok"
    for s in plan.steps:
        if s.function in ("timeoutSubmitResult", "timeoutJudgeResult"):
            assert s.reverts and by_step[s.index]["status"] == "reverted"
            assert "EmptyRevert" in by_step[s.index]["error"]
    stuck = [r for r in result.deals if r["chain_state"] in ("DealAgreed", "ResultsSubmitted")]
    assert stuck and all(r["twin_state"] == r["chain_state"] for r in stuck)


def test_intended_preset_reports_its_divergences_from_the_deployed_contracts(w3, records, tmp_path):
    # The lilypad_v1 record on the reproduction: every submit / judge timeout the twin settled
    # reverts on chain, leaving the deal's collateral locked; a lone JC gets P + Ts, not P + Tj.
    record = record_of("timeouts", records)
    plan = plan_of(record)
    result = replay(w3, plan, tmp_path, "deployed_v1_defects")
    assert result.complete and result.summary["deals_matching"] < len(plan.deals)
    rows = {r["deal_id"]: r for r in result.deals}
    for s in plan.steps:
        row = rows[s.deal_id] if s.deal_id else None
        if s.function in ("timeoutSubmitResult", "timeoutJudgeResult"):
            assert not row["match"]
            assert row["caused_by"].startswith(f"{s.function} (step {s.index}, tx 0x")
            assert "reverted on chain (EmptyRevert())" in row["first_difference"]
            d = plan.deals[s.deal_id]
            released = sum(ev.amount for ev in s.events if ev.kind == "Payment")
            assert sum(row["locked_wei"].values()) == released > 0
            assert set(row["locked_wei"]) <= {plan.accounts[d.job_creator].label,
                                              plan.accounts[d.resource_provider].label}  # fmt: skip
            assert row["twin_state"] != row["chain_state"]
        if s.function == "timeoutAgree":
            d = plan.deals[s.deal_id]
            assert not row["match"] and row["chain_state"] == row["twin_state"] == "TimeoutAgree"
            assert (f"twin Payment({addresses(tmp_path)[d.job_creator]}, "
                    f"{d.judge_results_collateral_wei}, 2, 2)") in row["first_difference"]  # fmt: skip
    report = (tmp_path / "report.md").read_text()
    assert "Funds left locked by reverted calls" in report


def test_deployed_preset_on_our_contracts_reports_calls_that_succeed(w3, records, tmp_path):
    record = record_of("deployed_timeouts", records)
    plan = plan_of(record)
    result = replay(w3, plan, tmp_path)
    differing = [r for r in result.deals if not r["match"]]
    assert differing and result.complete
    assert any("succeeded on chain where the twin's call reverted" in r["first_difference"]
               for r in differing)  # fmt: skip


def test_intended_mediate_window_reverts_on_the_reproduction(w3, records, tmp_path):
    # v1 preset: the JC times the mediation out 61 s after its check; the reproduction measures
    # the window from the submission with the 3600 s judge timeout: TimeoutNotReached.
    record = record_of("mediate", records)
    plan = plan_of(record)
    result = replay(w3, plan, tmp_path, "deployed_v1_defects")
    timeouts = [e for e in result.steps if e["function"] == "timeoutMediateResult"]
    assert timeouts and all(e["status"] == "reverted" for e in timeouts)
    assert all("TimeoutNotReached" in e["error"] for e in timeouts)


@pytest.mark.parametrize("name", ["slashing_shares", "taxes", "bribes", "forced_errors"])
def test_mechanisms_replayed_with_transfers_and_slashing_destinations(name, w3, records,
                                                                      tmp_path) -> None:  # fmt: skip
    # Slashing shares: slashes go to the twin's slashing pool (the deployment's slashing
    # destination), which then pays the shares with token transfers; taxes and the jackpot,
    # bribes: wallet-to-wallet token transfers signed by their source.
    record = record_of(name, records)
    plan = plan_of(record)
    transfers = [s for s in plan.steps if s.function == "transfer"]
    assert transfers
    result = replay(w3, plan, tmp_path)
    assert_parity(w3, result, plan, record)
    if name == "slashing_shares":  # slashes went to the pool, not the owner, then were shared
        slashed = [ev for s in plan.steps for ev in s.events if ev.kind == "Payment"
                   and ev.direction == 3]  # fmt: skip
        assert slashed and all(ev.destination != plan.owner for ev in slashed)
        assert {s.transfer_reason for s in transfers} >= {"SlashShare"}
        (pool,) = {ev.destination for ev in slashed}  # the twin's slashing_pool account
        assert result.deployment.slashing_destination == addresses(tmp_path)[pool]
    if name == "bribes":
        assert {s.transfer_reason for s in transfers} == {"Bribe"}
    if name == "forced_errors":  # the owner switches the slashing destination as the twin does
        import json

        entries = map(json.loads, (tmp_path / "journal.jsonl").read_text().splitlines())
        switches = [e for e in entries
                    if e["kind"] == "done" and e["function"] == "setSlashingDestination"]  # fmt: skip
        assert len(switches) >= 2 and {"ForcedErrorRefund", "JackpotPayout"} <= {
            s.transfer_reason for s in transfers
        }


@pytest.mark.parametrize("name", ["consortium", "consortium_equal"])
def test_consortium_mediation_replays_to_the_wei(name, w3, records, tmp_path) -> None:
    # The record's consortium is deployed with its parameters; every vote is the voter's
    # transaction on LilypadMediationConsortium, whose hash draws (first rounds at checkResult,
    # new rounds at the closing vote) must request exactly the twin's mediators.
    record = record_of(name, records)
    plan = plan_of(record)
    votes = [s for s in plan.steps if s.function.startswith("mediation")]
    verdicts = [s for s in votes if any(e.kind == "DealStateChange" for e in s.events)]
    assert len(votes) > len(verdicts) > 0  # votes that decide, and votes that do not
    if name == "consortium":  # split rounds draw new ones
        assert any(e.kind == "MediationRequested" for s in votes for e in s.events)
    result = replay(w3, plan, tmp_path)
    assert result.deployment.mediation_kind == "consortium"
    mediation = plan.config["mediation"]
    assert result.deployment.consortium == {k: mediation[k] for k in (
        "n_mediators", "threshold", "max_rounds", "max_nodes", "fee_split")}  # fmt: skip
    assert_parity(w3, result, plan, record)


def test_attaching_a_consortium_record_to_v1_mediation_is_refused(w3, records, tmp_path):
    from bridge.deploy import Deployment
    from bridge.keys import Keys
    from bridge.replay import Replayer, ReplayError

    path = deploy(w3, account_from_mnemonic(0)).save(tmp_path / "deployment.json")
    plan = plan_of(record_of("consortium", records))
    with pytest.raises(ReplayError, match="deployment.mediation_kind is 'v1'.*'consortium'"):
        Replayer(plan, w3, tmp_path / "out", Keys(), Deployment.load(path)).run()


def _party_wallet(w3: Web3, owner, variant: str):
    """A deployment (ours or the reproduction) and a PartyWallet contract owned by `owner`."""
    from bridge.abi import AbiCodec
    from bridge.artifacts import load_artifact

    funder = account_from_mnemonic(0)
    deployment = deploy(w3, funder, variant=variant)
    client = LilypadClient(w3, deployment)
    art = load_artifact("PartyWallet")
    receipt = client.sender.send(owner, None, AbiCodec(art.abi).encode_constructor(art.bytecode),
                                 "deploy PartyWallet")  # fmt: skip
    wallet = Web3.to_checksum_address(receipt["contractAddress"])
    client.transfer(funder, wallet, 100 * 10**18)
    return client, wallet, AbiCodec(art.abi)


@pytest.mark.parametrize("variant,reverts", [("", False), ("deployed_v1_defects", True)])
def test_contract_wallet_party_is_refused_only_by_tx_origin_auth(variant, reverts, w3) -> None:
    # Defect 4: a JC that is a contract wallet agrees through it. Ours authenticates msg.sender
    # (the wallet): accepted, P + Tj leave the wallet. The reproduction authenticates tx.origin
    # (the wallet's owner, not a party): NotParty.
    owner, rp, solver, med = (account_from_mnemonic(i) for i in (40, 41, 42, 43))
    client, wallet, codec = _party_wallet(w3, owner, variant)
    terms = DealTerms("bafkreiwallet", solver.address, wallet, rp.address, (med.address,))
    data = client._codecs["controller"].encode_call("agree", *terms.abi_args())
    call = codec.encode_call("execute", client._addresses["controller"], data)
    if reverts:
        with pytest.raises(ChainCallError) as info:
            client.sender.send(owner, wallet, call, "execute(agree)")
        assert info.value.error_name == "NotParty"
        assert info.value.error_args["caller"] == owner.address
    else:
        client.sender.send(owner, wallet, call, "execute(agree)")
        assert client.state(terms.deal_id) == AgreementState.DealNegotiating
        assert client.escrow(wallet) == terms.payment_collateral_wei + (
            terms.judge_results_collateral_wei
        )


def test_chain_time_follows_the_twin(w3, records, tmp_path):
    # Every agreement timestamp on chain is the twin's time of the call (checked per deal by the
    # engine); spot-check one deal here against the record's times directly.
    record = record_of("cheating", records)
    plan = plan_of(record)
    result = replay(w3, plan, tmp_path)
    client = LilypadClient(w3, result.deployment)
    checked = next(s for s in plan.steps if s.function == "checkResult")
    agreement = client.agreement(checked.deal_id)
    assert agreement.results_checked_at == checked.time_s
    agree = next(s for s in plan.steps if s.deal_id == checked.deal_id)
    assert agreement.deal_created_at == agree.time_s
    # the v1 mediator choice hashed that timestamp: the chain chose the twin's mediator
    requested = next(ev for ev in checked.events if ev.kind == "MediationRequested")
    assert client.mediator(checked.deal_id) == addresses(tmp_path)[requested.mediator]
    assert rpc(w3, "eth_chainId") == hex(31337)


def test_set_up_transactions_between_steps_are_mined_at_the_twin_time(w3, records, tmp_path,
                                                                      monkeypatch) -> None:  # fmt: skip
    # The owner's setSlashingDestination between two steps of one second (forced errors slash
    # into the jackpot) is mined at the twin's time of the step it precedes. Left to anvil's own
    # clock (the last set timestamp plus the wall time since), one second of wall time before it
    # (a loaded machine) put its block a second past that step, whose evm_setNextBlockTimestamp
    # then failed. The delay here makes that certain instead of rare.
    import json
    import time

    from bridge.replay import Replayer

    record = record_of("forced_errors", records)
    plan = plan_of(record)
    transmit = Replayer._transmit
    delayed: list[str] = []

    def slow_transmit(self, tx, intent):
        if tx.function == "setSlashingDestination" and not delayed:
            delayed.append(tx.key)
            time.sleep(1.05)
        return transmit(self, tx, intent)

    monkeypatch.setattr(Replayer, "_transmit", slow_transmit)
    result = replay(w3, plan, tmp_path)
    assert_parity(w3, result, plan, record)
    entries = [json.loads(line) for line in (tmp_path / "journal.jsonl").read_text().splitlines()]
    done = [e for e in entries if e["kind"] == "done" and e.get("block")]
    switches = [i for i, e in enumerate(done) if e["function"] == "setSlashingDestination"]
    assert delayed and switches and done[switches[0]]["key"] == delayed[0]
    offset = result.summary["time_offset_s"]
    for i in switches:
        before, after = plan.steps[done[i - 1]["step"]], plan.steps[done[i + 1]["step"]]
        block = rpc(w3, "eth_getBlockByNumber", [hex(done[i]["block"]), False])
        stamp = int(block["timestamp"], 16)
        assert stamp == after.time_s + offset, (done[i], stamp)
        if i == switches[0]:  # no second to spare: a clock a second ahead cannot be absorbed
            assert before.time_s == after.time_s


def test_a_chain_clock_past_the_twin_names_the_step_and_both_timestamps(w3, records, tmp_path,
                                                                        monkeypatch) -> None:  # fmt: skip
    # A block mined behind the replay's back, later than the next step's twin time: the step
    # cannot be mined at its time, and the error says which step and by how much.
    from bridge.replay import ChainTimeError, Replayer

    record = record_of("cheating", records)
    plan = plan_of(record)
    target = plan.steps[3]
    do = Replayer._do

    def interfering_do(self, tx):
        if tx.step is target:
            ahead = target.time_s + self.offset + 5
            rpc(w3, "evm_setNextBlockTimestamp", [ahead])
            rpc(w3, "evm_mine")
        return do(self, tx)

    monkeypatch.setattr(Replayer, "_do", interfering_do)
    with pytest.raises(ChainTimeError) as info:
        replay(w3, plan, tmp_path)
    message = str(info.value)
    wanted = target.time_s + info.value.offset
    assert f"step {target.index}" in message and target.function in message
    assert str(wanted) in message and str(wanted + 5) in message
    assert "evm_setNextBlockTimestamp" in message


def test_wall_clock_mode_completes_and_reports_other_mediator_choices(w3, records, tmp_path):
    # A public chain's clock cannot be set: calls go out at the chain's own time. Every deal
    # still ends as in the twin; where the v1 choice (keccak of the check's block timestamp)
    # picked another mediator, that mediator casts the twin's verdict and the difference is
    # reported; clients' and nodes' balances are unaffected.
    record = record_of("cheating", records)
    plan = plan_of(record)
    assert not any(s.function.startswith("timeout") for s in plan.steps)
    result = replay(w3, plan, tmp_path, time_mode="wall")
    assert result.complete and result.summary["time_mode"] == "wall"
    assert all(r["twin_state"] == r["chain_state"] for r in result.deals)
    for r in result.deals:
        assert r["match"] or "MediationRequested" in r["first_difference"], r
    roles = {a.label: a.role for a in plan.accounts}
    assert all(a["match"] for a in result.accounts if roles[a["label"]] in ("jc", "rp"))


def test_attach_to_an_existing_deployment_whose_owner_is_the_funder(w3, records, tmp_path):
    # A deployment made earlier (its JSON: addresses plus the funding account), owner = slashing
    # destination = funder, as `deploy` makes it by default. The twin's owner maps to the
    # slashing destination; its balances are compared from what it held once the parties were
    # funded, so the funder's own tokens do not count.
    from dataclasses import replace as dc_replace

    from bridge.deploy import Deployment
    from bridge.keys import Keys
    from bridge.replay import Replayer, WrongChainIdError

    funder = account_from_mnemonic(0)
    path = deploy(w3, funder).save(tmp_path / "deployment.json")
    record = record_of("cheating", records)
    plan = plan_of(record)
    with pytest.raises(WrongChainIdError, match="deployment.chain_id is 1"):
        bad = dc_replace(Deployment.load(path), chain_id=1)
        Replayer(plan, w3, tmp_path / "bad", Keys(), bad).run()
    result = Replayer(plan, w3, tmp_path / "out", Keys(), Deployment.load(path)).run()
    assert result.complete and result.deployment == Deployment.load(path)
    assert addresses(tmp_path / "out")[plan.owner] == funder.address
    assert result.summary["deals_matching"] == len(plan.deals)
    assert all(a["match"] for a in result.accounts)
    slashed = sum(ev.amount for s in plan.steps for ev in s.events
                  if ev.kind == "Payment" and ev.direction == 3)  # fmt: skip
    owner = next(a for a in result.accounts if a["account"] == plan.owner)
    assert owner["chain_wallet_wei"] == slashed > 0
