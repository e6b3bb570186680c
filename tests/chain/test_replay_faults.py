"""Faults of the replay and resuming: each fault is a clear error naming the account, the deal and
the transaction; an interrupted replay resumes from the journal without sending anything twice
(every account's nonce on chain equals the transactions the journal confirmed), also when it
died between journaling a transaction and sending it, or between sending and confirming it."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from web3 import Web3

from bridge.anvil import Anvil, free_port
from bridge.keys import Keys
from bridge.replay import (
    NonceGapError,
    OutOfGasError,
    ReplayDivergenceError,
    Replayer,
    ReplayError,
    RpcUnreachableError,
    UnderfundedAccountError,
    WrongChainIdError,
)
from bridge.replay_app import ReplayConfig, replay
from tests.chain.replay_helpers import (
    addresses,
    assert_parity,
    fresh,
    plan_of,
    record_of,
    rpc,
)
from tests.chain.replay_helpers import replay as run_replay
from twin.config import ConfigError
from twin.market import GENESIS_TIME_S

pytestmark = pytest.mark.chain


@pytest.fixture(scope="module")
def node() -> Iterator[Anvil]:
    with Anvil(genesis_timestamp_s=GENESIS_TIME_S - 86_400, accounts=48) as n:
        yield n


@pytest.fixture
def w3(node: Anvil) -> Iterator[Web3]:
    w3 = Web3(Web3.HTTPProvider(node.url, request_kwargs={"timeout": 60}))
    with fresh(w3):
        yield w3


@pytest.fixture(scope="module")
def record(tmp_path_factory) -> Path:
    return record_of("cheating", tmp_path_factory.mktemp("records"))


def journal(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "journal.jsonl").read_text().splitlines()]


def assert_sent_once(w3: Web3, out: Path) -> None:
    """No duplicate: every step confirmed once, and each account's nonce on chain equals the
    transactions the journal holds for it (confirmed, or failed attempts)."""
    entries = journal(out)
    done = [e for e in entries if e["kind"] == "done"]
    keys = Counter(e["key"] for e in done)
    assert all(n == 1 for n in keys.values()), keys.most_common(3)
    state = json.loads((out / "state.json").read_text())
    sent = Counter(e["from"] for e in entries
                   if (e["kind"] == "done" and e.get("tx_hash")) or e["kind"] == "failed")  # fmt: skip
    for addr, start in state["nonces"].items():
        assert int(rpc(w3, "eth_getTransactionCount", [addr, "latest"]), 16) == start + sent[addr]


def test_unreachable_rpc_names_the_endpoint(record, tmp_path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 2}))
    with pytest.raises(RpcUnreachableError, match=f"cannot reach the JSON-RPC endpoint {url}"):
        Replayer(plan_of(record), w3, tmp_path, Keys()).run()


def test_wrong_chain_id_names_both(w3, record, tmp_path) -> None:
    with pytest.raises(WrongChainIdError, match="serves chain id 31337, but options.chain_id is 5"):
        run_replay(w3, plan_of(record), tmp_path, chain_id=5)


def test_public_network_keys_come_from_the_environment(record, tmp_path, monkeypatch) -> None:
    with Anvil(chain_id=4242) as other:
        w3 = Web3(Web3.HTTPProvider(other.url))
        with pytest.raises(ReplayError, match="must come from the environment"):
            Replayer(plan_of(record), w3, tmp_path, Keys()).run()
    monkeypatch.delenv("TWIN_REPLAY_MNEMONIC", raising=False)
    monkeypatch.setenv("TWIN_REPLAY_FUNDER_KEY", "0xnot-a-key-secret-value")
    with pytest.raises(ValueError, match="set TWIN_REPLAY_MNEMONIC in the environment"):
        Keys.from_env()
    monkeypatch.setenv("TWIN_REPLAY_MNEMONIC", "test " * 11 + "junk")
    with pytest.raises(ValueError, match="TWIN_REPLAY_FUNDER_KEY is not a hex private key") as e:
        Keys.from_env()
    assert "secret" not in str(e.value)  # a key is never echoed
    key = "0x" + "11" * 32
    monkeypatch.setenv("TWIN_REPLAY_FUNDER_KEY", key)
    keys = Keys.from_env()
    assert key[4:] not in repr(keys) and "junk" not in repr(keys)


def test_a_divergence_in_strict_mode_names_account_deal_and_transaction(w3, tmp_path,
                                                                        tmp_path_factory):  # fmt: skip
    # The deployed preset's record on our contracts: its first reverted judge timeout succeeds
    # on chain (ours treats it as an acceptance).
    record = record_of("deployed_timeouts", tmp_path_factory.mktemp("dep"))
    plan = plan_of(record)
    first = next(s for s in plan.steps if s.reverts)
    with pytest.raises(ReplayDivergenceError) as info:
        run_replay(w3, plan, tmp_path, strict=True)
    e = info.value
    assert e.deal == first.deal_id
    assert plan.accounts[first.caller].label in e.account
    assert e.tx.startswith(f"{first.function} (step {first.index}, tx 0x")
    assert "succeeded on chain where the twin's call reverted" in str(e)


def test_out_of_gas_names_the_call_and_resumes(w3, record, tmp_path) -> None:
    # 100 000 gas covers a token transfer (the funding) but not an agree (~265 000+).
    plan = plan_of(record)
    first = plan.steps[0]
    with pytest.raises(OutOfGasError) as info:
        run_replay(w3, plan, tmp_path, gas_limit=100_000)
    assert info.value.deal == first.deal_id and "agree (step 0" in info.value.tx
    assert plan.accounts[first.caller].label in info.value.account
    assert "out of gas: used " in str(info.value) and "of its gas limit 100000" in str(info.value)
    result = run_replay(w3, plan, tmp_path)  # resumed with estimated limits
    assert_parity(w3, result, plan, record)
    assert_sent_once(w3, tmp_path)
    assert sum(e["kind"] == "failed" for e in journal(tmp_path)) == 1


def test_underfunded_account_names_it_and_resumes(w3, record, tmp_path) -> None:
    plan = plan_of(record)
    stopped = run_replay(w3, plan, tmp_path, stop_after_steps=60)
    assert not stopped.complete
    address = addresses(tmp_path)
    for a in address.values():  # no gas money left anywhere
        rpc(w3, "anvil_setBalance", [a, "0x0"])
    with pytest.raises(UnderfundedAccountError) as info:
        run_replay(w3, plan, tmp_path)
    assert "cannot pay for gas" in str(info.value)
    done = {e["key"] for e in journal(tmp_path) if e["kind"] == "done"}
    nxt = next(s for s in plan.steps if f"step:{s.index}" not in done)
    assert info.value.deal == nxt.deal_id and info.value.tx.startswith(nxt.function)
    assert address[nxt.caller] in info.value.account
    for a in address.values():
        rpc(w3, "anvil_setBalance", [a, hex(10**21)])
    result = run_replay(w3, plan, tmp_path)
    assert_parity(w3, result, plan, record)
    assert_sent_once(w3, tmp_path)


def test_nonce_gap_after_a_crash_names_the_account(w3, record, tmp_path) -> None:
    plan = plan_of(record)
    run_replay(w3, plan, tmp_path, stop_after_steps=50)
    rp = next(a for a in plan.accounts if a.role == "rp")
    outsider = addresses(tmp_path)[rp.account]
    rpc(w3, "eth_sendTransaction", [{"from": outsider, "to": outsider, "value": "0x1"}])
    with pytest.raises(NonceGapError) as info:
        run_replay(w3, plan, tmp_path)
    assert outsider in info.value.account and rp.label in info.value.account
    assert "outside the replay" in str(info.value) and "next:" in info.value.tx


@pytest.mark.parametrize("node_signing", [True, False])
@pytest.mark.parametrize("crash_in", ["_transmit", "_confirm"])
def test_a_replay_killed_midway_resumes_without_sending_twice(
    crash_in, node_signing, w3, record, tmp_path, monkeypatch
) -> None:
    """Killed after journaling a transaction and before sending it (`_transmit`), or after it was
    mined and before it was confirmed (`_confirm`): the resumed replay sends the same nonce (and,
    signed locally, the same bytes) in the first case, and only confirms it in the second."""
    plan = plan_of(record)
    calls = {"n": 0}
    original = getattr(Replayer, crash_in)

    def crashing(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 70:
            if crash_in == "_confirm":
                kind = "mined"
                assert self._find_sent(args[1]) is not None
            else:
                kind = "unsent"
            raise KeyboardInterrupt(kind)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Replayer, crash_in, crashing)
    with pytest.raises(KeyboardInterrupt):
        run_replay(w3, plan, tmp_path, node_signing=node_signing)
    monkeypatch.setattr(Replayer, crash_in, original)
    entries = journal(tmp_path)
    pending = [e for e in entries if e["kind"] == "intent"][-1]
    assert pending["key"] not in {e["key"] for e in entries if e["kind"] == "done"}
    assert ("raw" in pending) == (not node_signing)
    result = run_replay(w3, plan, tmp_path, node_signing=node_signing)
    assert_parity(w3, result, plan, record)
    assert_sent_once(w3, tmp_path)


def test_twin_replay_app_stops_and_resumes_on_its_own_anvil(tmp_path) -> None:
    # The default target: a fresh anvil per episode whose state is kept in the episode's
    # directory, so a second run resumes on the same chain.
    cfg = ReplayConfig(scripted=True, overrides=["market.episode_ticks=6"], seed=3,
                       stop_after_steps=25)  # fmt: skip
    (first,) = replay(cfg, tmp_path)
    assert not first.complete
    cfg.stop_after_steps = -1
    (second,) = replay(cfg, tmp_path)
    assert second.complete and second.summary["deals_matching"] == len(second.deals) > 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["deals_replayed"] == summary["deals_matching"] and summary["complete"]
    assert (tmp_path / "episode_0" / "anvil-state.json").is_file()
    done = [e for e in journal(tmp_path / "episode_0") if e["kind"] == "done"]
    assert len({e["key"] for e in done}) == len(done)
    with pytest.raises(ConfigError, match="exactly one of checkpoint"):
        replay(ReplayConfig(), tmp_path / "none")
    with pytest.raises(ConfigError, match="contracts"):
        replay(ReplayConfig(scripted=True, contracts="v2"), tmp_path / "bad")
