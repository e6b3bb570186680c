"""Helpers of the replay tests: scripted episode records of small markets, replays on a shared
anvil (snapshot / revert around each one), and independent checks of parity: the chain's whole
event log against the record's, and every account's balances against the record's final ledger,
read straight from the token."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from web3 import Web3

from bridge.contracts import LilypadClient
from bridge.deploy import Deployment
from bridge.keys import Keys
from bridge.plan import EpisodePlan, read_plans
from bridge.replay import Replayer, ReplayOptions, ReplayResult

SMALL = ("market.episode_ticks=15",)
#: scripted markets, each a few dozen deals (twin config overrides)
RECORDS: dict[str, tuple[str, ...]] = {
    # honest nodes, clients check 10 % (the default population)
    "honest": SMALL,
    # half the results are fake; clients check half of them: mediators accept and reject
    "cheating": SMALL + ("policies.rp.policy=cheat_with_probability",
                         "policies.rp.cheat_probability=0.5", "policies.jc.check_probability=0.5"),
    # clients never judge (judge timeouts); nodes too poor to post R (submit timeouts) or to
    # agree twice in a tick (lone JC agreements, agree timeouts); Ts = 1 < Tj = 2
    "timeouts": SMALL + ("experiment=deployed_defects", "protocol=lilypad_v1",
                         "market.rp_wallet_tokens=1.5",
                         "timeouts.judge_results_collateral_wei=2000000000000000000"),
    # mediators slower than the 60 s mediate window: mediate timeouts
    "mediate": SMALL + ("timeouts.mediate_results_s=60", "policies.jc.policy=always_check"),
    # the same markets under the deployed preset
    "deployed_timeouts": SMALL + ("experiment=deployed_defects", "protocol=lilypad_v1_deployed",
                                  "market.rp_wallet_tokens=1.5",
                                  "timeouts.judge_results_collateral_wei=2000000000000000000"),
    "deployed_mediate": SMALL + ("timeouts.mediate_results_s=60", "timeouts.judge_results_s=90",
                                 "policies.jc.policy=always_check",
                                 "protocol=lilypad_v1_deployed"),
    # Ts = 2 > Tj = 1: a lone JC's agree timeout takes 1 token of its other deals' escrow
    "deployed_drain": SMALL + ("protocol=lilypad_v1_deployed", "market.rp_wallet_tokens=2.5",
                               "timeouts.submit_results_collateral_wei=2000000000000000000"),
    # mechanisms replayed with token transfers and slashing destinations
    "slashing_shares": SMALL + ("slashing=client_and_burn", "policies.rp.policy=cheat_with_probability",
                                "policies.rp.cheat_probability=0.5",
                                "policies.jc.check_probability=0.5"),
    "taxes": SMALL + ("taxes=jackpot",),
    # forced errors: their slashes go to the jackpot, the others to the owner
    "forced_errors": SMALL + ("experiment=mech_forced_errors", "market.episode_ticks=20",
                              "taxes.forced_error_rate=0.3", "policies.jc.check_probability=1.0"),
    # a ring: a colluding mediator and two cheating nodes that bribe it
    "bribes": SMALL + ("experiment=collusion_ring",),
    # consortium mediation on LilypadMediationConsortium: 3 of 4 in up to 3 rounds (at most 10
    # mediators), the fee to the verdict's voters
    "consortium": ("market.episode_ticks=25", "experiment=mech_consortium_recursive"),
    # 2 of 3 in up to 4 rounds, no cap, the fee to every voter
    "consortium_equal": ("market.episode_ticks=25", "experiment=mech_consortium_recursive",
                         "mediation.n_mediators=3", "mediation.threshold=2",
                         "mediation.max_nodes=0", "mediation.max_rounds=4",
                         "mediation.fee_split=equal"),
}  # fmt: skip


#: seeds whose small markets show every path the record is named for (default 7)
SEEDS = {
    "timeouts": 1,
    "deployed_timeouts": 1,
    "deployed_drain": 0,
    "bribes": 5,
    "forced_errors": 3,
    "consortium_equal": 3,
}


def record_of(name: str, directory: Path) -> Path:
    """The record of the scripted market `name` (written once per directory)."""
    seed = SEEDS.get(name, 7)
    import twin
    from experiments.replay_scripted import record_scripted

    path = directory / f"{name}.jsonl"
    if not path.is_file():
        record_scripted(twin.compose(list(RECORDS[name])), 1, seed, path)
    return path


def rpc(w3: Web3, method: str, params: list | None = None):
    response = w3.provider.make_request(method, params or [])
    assert "error" not in response, response
    return response["result"]


@contextmanager
def fresh(w3: Web3) -> Iterator[Web3]:
    """The chain as it is now, restored afterwards (time included)."""
    snapshot = rpc(w3, "evm_snapshot")
    try:
        yield w3
    finally:
        rpc(w3, "evm_revert", [snapshot])


def replay(w3: Web3, plan: EpisodePlan, out: Path, variant: str = "", **options) -> ReplayResult:
    deploy_options = {"variant": variant} if variant else {}
    return Replayer(plan, w3, out, Keys(), None, deploy_options, ReplayOptions(**options)).run()


def plan_of(path: Path) -> EpisodePlan:
    (plan,) = read_plans(path)
    return plan


def addresses(out: Path) -> dict[int, str]:
    state = json.loads((out / "state.json").read_text())
    return {int(k): v for k, v in state["addresses"].items()}


def chain_event_log(w3: Web3, deployment: Deployment) -> list[tuple]:
    """Every Payment / DealStateChange / MediationRequested / MediationVoted the deployment ever
    emitted, in order."""
    client = LilypadClient(w3, deployment)
    logs = rpc(w3, "eth_getLogs", [{"fromBlock": hex(deployment.block_number), "toBlock": "latest",
                                    "address": [deployment.payments, deployment.storage,
                                                deployment.mediation]}])  # fmt: skip
    out = []
    for ev in client.events({"logs": logs}):
        kind = type(ev).__name__
        if kind == "Payment":
            out.append((kind, ev.deal_id, ev.payee, ev.amount, int(ev.reason), int(ev.direction)))
        elif kind == "DealStateChange":
            out.append((kind, ev.deal_id, int(ev.state)))
        elif kind == "MediationVoted":
            out.append((kind, ev.deal_id, ev.mediator, ev.vote))
        else:
            out.append((kind, ev.deal_id, ev.mediator))
    return out


def record_event_log(path: Path, address: dict[int, str]) -> list[tuple]:
    """The record's protocol events, in seq order, with the replay's chain addresses."""
    out = []
    for line in path.read_text().splitlines():
        r = json.loads(line)
        if r.get("type") != "event":
            continue
        if r["event"] == "Payment":
            out.append(("Payment", r["deal_id"], address[r["payee"]], int(r["amount_wei"]),
                        r["reason_code"], r["direction_code"]))  # fmt: skip
        elif r["event"] == "DealStateChange":
            out.append(("DealStateChange", r["deal_id"], r["state"]))
        elif r["event"] == "MediationRequested":
            out.append(("MediationRequested", r["deal_id"], address[r["mediator"]]))
        elif r["event"] == "MediationVoted":
            out.append(("MediationVoted", r["deal_id"], address[r["mediator"]], r["vote"]))
    return out


def assert_parity(w3: Web3, result: ReplayResult, plan: EpisodePlan, record: Path) -> None:
    """Twin and chain agree: every deal, every transaction, every account to the wei, the whole
    event log, and the escrow each account is left with (the twin's locked funds)."""
    assert result.complete
    bad = [r for r in result.deals if not r["match"]]
    assert not bad, bad[0]
    assert len(result.deals) == len(plan.deals) > 0
    assert all(r["twin_state"] == r["chain_state"] for r in result.deals)
    assert all(e["match"] for e in result.steps), next(e for e in result.steps if not e["match"])
    # independent of the engine: balances read from the token, against the record's final ledger
    client = LilypadClient(w3, result.deployment)
    address = addresses(result.out_dir)
    read = client.balances(address.values())
    for a, (wallet, escrow, locked) in enumerate(plan.final_balances):
        assert read[address[a]] == (wallet, escrow), (plan.accounts[a].label, read[address[a]])
        # every deal is over: what the chain still holds in escrow is stranded for good, which
        # is what the twin counts as locked (deployed-contract defects; 0 otherwise)
        assert read[address[a]][1] == locked, (plan.accounts[a].label, read[address[a]], locked)
    assert chain_event_log(w3, result.deployment) == record_event_log(record, address)
