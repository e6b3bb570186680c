"""The replay engine: one episode of an episode record, transaction by transaction, on a chain,
compared with the twin after every transaction and after every deal.

`Replayer(plan, w3, out_dir, keys, ...)` maps every twin account to its own chain account (each
party signs its own transactions, `bridge.keys`), deploys a fresh contract set (or attaches to a
`Deployment`), funds every account with its genesis wallet, and sends the plan's steps
(`bridge.plan`) in the twin's global order. Chain time follows the twin: before each step the next
block's timestamp is set to the twin's time of the call (`evm_setNextBlockTimestamp`; one block
per transaction, several blocks may share a second), so timeouts become callable exactly when the
twin called them and the v1 mediator choice, which hashes the `checkResult` block's timestamp,
picks the twin's mediator. A set-up transaction (funding, the owner's `setSlashingDestination`)
is mined at the time of the step it precedes: no block is left to the node's own clock, which
runs on with the wall clock from the last timestamp set and could pass the next step's time (a
chain already past a step's time raises `ChainTimeError`). On a chain whose clock is already
past the twin's times every step is shifted by a constant offset (the choice of mediator may then
differ, and is reported); on a public network (`time_mode="wall"`) steps go out as fast as the
chain allows and timeouts wait for the chain's clock.

After every transaction the engine compares the twin with the chain: the call reverted iff the
twin's call did (`CallReverted`), the protocol events are the twin's events (same order, amounts,
payees), and every touched account's wallet and escrow moved by what the twin moved. After each
deal's last transaction it compares the deal's `Agreement` (state and every timestamp) and the
reported instruction count. At the end it compares every account's balances, absolute, with the
twin's final ledger. Every difference is recorded with the transaction that caused it; a call that
reverts on chain where the twin's succeeded records which funds it left in escrow, and the deal's
later calls are skipped (nothing is stuck on the replayer's side).

Progress is journaled in `out_dir` (`state.json` once, `journal.jsonl` one line per event): every
transaction is written (signed, with its hash and nonce) *before* it is sent, and confirmed after
its receipt. `run()` on a directory with a journal resumes: a transaction that was sent but not
confirmed is looked up by hash (mined: confirmed now; not mined and its nonce still free: the same
signed bytes are sent again, which cannot execute twice), every account's nonce on chain must equal
what the journal accounts for (`NonceGapError` otherwise), and the replay continues with the next
step. Faults (unreachable RPC, wrong chain id, an underfunded account, out of gas, a nonce gap)
raise a `ReplayError` naming the account, the deal and the transaction.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from dataclasses import replace as dc_replace
from pathlib import Path
from typing import Any

import requests
from eth_abi import decode as abi_decode
from eth_account.signers.local import LocalAccount
from eth_utils import keccak, to_checksum_address
from web3 import Web3

from bridge.artifacts import all_abis
from bridge.contracts import LilypadClient
from bridge.deploy import ConsortiumOptions, Deployment, deploy
from bridge.errors import DecodedError, ErrorDecoder
from bridge.keys import Keys
from bridge.plan import EpisodePlan, Step, mediation_protocol
from bridge.transact import (
    GAS_MARGIN_ADD,
    GAS_MARGIN_DEN,
    GAS_MARGIN_NUM,
    LOCAL_CHAIN_IDS,
    LOCAL_MAX_FEE_WEI,
    PRIORITY_FEE_WEI,
)
from bridge.types import (
    AgreementState,
    DealStateChange,
    DealTerms,
    JackpotPaid,
    MediationRequested,
    MediationVoted,
    Payment,
    PaymentDirection,
    TaxCollected,
)
from twin.errors import UserError

STATE_FILE = "state.json"
JOURNAL_FILE = "journal.jsonl"
STATE_VERSION = 1
TRANSFER_TOPIC = "0x" + keccak(text="Transfer(address,address,uint256)").hex()
#: ETH given to each account for gas on a local chain (anvil_setBalance)
LOCAL_GAS_BALANCE_WEI = 1_000 * 10**18
#: seconds of chain time kept free before the first step for deployment and funding
SETUP_MARGIN_S = 600
RECEIPT_TIMEOUT_S = 120.0
SUMMARY_TIME_FIELDS = (
    "resource_provider_agreed_at", "job_creator_agreed_at", "deal_created_at", "deal_agreed_at",
    "results_submitted_at", "results_accepted_at", "results_checked_at", "mediation_accepted_at",
    "mediation_rejected_at", "timeout_agree_at", "timeout_submit_results_at",
    "timeout_judge_results_at", "timeout_mediate_results_at",
)  # fmt: skip
#: the Agreement timestamp set by the call that ends in each state
CLOSING_FIELD = {
    AgreementState.ResultsAccepted: "results_accepted_at",
    AgreementState.MediationAccepted: "mediation_accepted_at",
    AgreementState.MediationRejected: "mediation_rejected_at",
    AgreementState.TimeoutAgree: "timeout_agree_at",
    AgreementState.TimeoutSubmitResults: "timeout_submit_results_at",
    AgreementState.TimeoutJudgeResults: "timeout_judge_results_at",
    AgreementState.TimeoutMediateResults: "timeout_mediate_results_at",
}
FUNDING = ("fund gas", "fund genesis wallet")
TIMEOUT_CALLS = (
    "timeoutAgree",
    "timeoutSubmitResult",
    "timeoutJudgeResult",
    "timeoutMediateResult",
)


# ----------------------------------------------------------------------------------- errors


class ReplayError(RuntimeError):
    """A fault of the replay (not a divergence of the protocol): names what it can of the
    account, the deal and the transaction."""

    def __init__(self, what: str, *, account: str = "", deal: str = "", tx: str = "") -> None:
        self.what, self.account, self.deal, self.tx = what, account, deal, tx
        parts = [what]
        if account:
            parts.append(f"account {account}")
        if deal:
            parts.append(f"deal {deal}")
        if tx:
            parts.append(f"transaction {tx}")
        super().__init__("; ".join(parts))


class RpcUnreachableError(UserError, ReplayError):
    """The JSON-RPC endpoint does not answer."""


class WrongChainIdError(UserError, ReplayError):
    """The endpoint serves another chain than the deployment, the config or the journal."""


class UnderfundedAccountError(UserError, ReplayError):
    """An account cannot pay for gas, or the funder cannot fund the genesis wallets."""


class OutOfGasError(ReplayError):
    """A transaction ran out of gas (its gas limit was too low)."""


class NonceGapError(ReplayError):
    """An account's nonce on chain is not what the journal accounts for."""


class ReplayStateError(ReplayError):
    """The output directory's journal does not belong to this replay, or the chain lost state."""


class ReplayDivergenceError(ReplayError):
    """`strict=True`: the chain differs from the twin (the message says where)."""


class ChainTimeError(ReplayError):
    """`time_mode="set"`: the chain's latest block is already later than the twin's time of the
    next transaction, so that transaction cannot be mined at its time (a block was mined behind
    the replay's back, or the node refuses a block in the previous block's second)."""

    def __init__(self, what: str, *, wanted_s: int, latest_s: int, offset: int, **ctx: str) -> None:
        super().__init__(what, **ctx)
        self.wanted_s, self.latest_s, self.offset = wanted_s, latest_s, offset


# ---------------------------------------------------------------------------------- options


@dataclass(frozen=True)
class ReplayOptions:
    """How to replay. Amounts in wei, times in seconds."""

    #: "set": the next block's timestamp is set to each call's twin time (anvil, hardhat);
    #: "wall": the chain keeps its own time (public networks: timeouts wait for it);
    #: "auto": "set" when the node is anvil or hardhat, else "wall".
    time_mode: str = "auto"
    #: a call that will revert (the twin's preset says so, or the estimate fails) is still sent,
    #: so the report names its mined transaction; False only names the call and the error
    send_reverting: bool = True
    #: stop at the first difference (ReplayDivergenceError) instead of recording it and going on
    strict: bool = False
    #: stop (resumably) after sending this many steps in this run (None: all)
    stop_after_steps: int | None = None
    #: gas limit of a transaction that is expected to revert (no estimate is possible)
    revert_gas_limit: int = 1_500_000
    #: a fixed gas limit for every transaction (0: the estimate plus a margin)
    gas_limit: int = 0
    #: ETH for gas sent to each account that holds less, on a network without anvil_setBalance
    gas_funding_wei: int = 10**17
    #: wall mode: the longest wait for a timeout to become callable
    wall_wait_max_s: float = 7_200.0
    #: expected chain id (0: accept the endpoint's, unless the deployment names one)
    chain_id: int = 0
    #: estimate each transaction's gas first ("auto": on public networks only; on a local chain
    #: every transaction gets `local_gas_limit` and a revert is decoded from its trace)
    estimate_gas: str = "auto"
    #: gas limit of every transaction on a local chain when not estimating
    local_gas_limit: int = 3_000_000
    #: let a local node sign for the accounts whose keys it holds (anvil started with the same
    #: mnemonic: `eth_sendTransactionSync`, one request per transaction); else sign locally
    node_signing: bool = True

    def __post_init__(self) -> None:
        if self.time_mode not in ("auto", "set", "wall"):
            raise ValueError(f"time_mode must be auto, set or wall, not {self.time_mode!r}")
        if self.stop_after_steps is not None and self.stop_after_steps < 0:
            raise ValueError(f"stop_after_steps must be >= 0, got {self.stop_after_steps}")
        if self.estimate_gas not in ("auto", "always", "never"):
            raise ValueError(
                f"estimate_gas must be auto, always or never, not {self.estimate_gas!r}"
            )


@dataclass
class ReplayResult:
    """Outcome of one episode's replay (also written to the output directory)."""

    episode: int
    out_dir: Path
    complete: bool  # every step was sent (False: stopped early, resumable)
    deployment: Deployment
    deals: list[dict] = field(default_factory=list)  # one parity row per finished deal
    steps: list[dict] = field(default_factory=list)  # one row per step (journal "done")
    accounts: list[dict] = field(default_factory=list)  # final absolute comparison per account
    summary: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------------- helpers


def _tuple_events(events: Iterable[Any]) -> list[list]:
    """Chain events as JSON-able lists (addresses checksummed)."""
    out: list[list] = []
    for ev in events:
        if isinstance(ev, Payment):
            out.append(["Payment", ev.deal_id, ev.payee, int(ev.amount), int(ev.reason),
                        int(ev.direction)])  # fmt: skip
        elif isinstance(ev, DealStateChange):
            out.append(["DealStateChange", ev.deal_id, int(ev.state)])
        elif isinstance(ev, MediationRequested):
            out.append(["MediationRequested", ev.deal_id, ev.mediator])
        elif isinstance(ev, MediationVoted):
            out.append(["MediationVoted", ev.deal_id, ev.mediator, int(ev.vote)])
        elif isinstance(ev, TaxCollected | JackpotPaid):
            out.append([type(ev).__name__, ev.deal_id, ev.payer if isinstance(ev, TaxCollected)
                        else ev.payee, int(ev.amount)])  # fmt: skip
        else:
            out.append(list(ev))
    return out


def _short(ev: list) -> str:
    kind = ev[0]
    if kind == "Payment":
        return f"Payment({ev[2]}, {ev[3]}, {ev[4]}, {ev[5]})"
    if kind == "DealStateChange":
        return f"DSC({ev[2]})"
    if kind == "MediationRequested":
        return f"MediationRequested({ev[2]})"
    if kind == "MediationVoted":
        return f"MediationVoted({ev[2]}, {ev[3]})"
    if kind == "Transfer":
        return f"Transfer({ev[1]} -> {ev[2]}, {ev[3]})"
    return f"{kind}({', '.join(str(x) for x in ev[1:])})"


class _Journal:
    """Append-only JSON lines, flushed after every line: a crash of the process loses nothing.
    Lines are also synced to disk (`fsync`, ~10 ms) after each finished deal. Losing the last
    lines to a crash of the machine cannot make a transaction run twice (each is pinned to its
    nonce): the resumed replay then stops with a `NonceGapError` instead of resuming."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._f = path.open("a")

    def write(self, obj: dict) -> None:
        self._f.write(json.dumps(obj, separators=(",", ":")) + "\n")
        self._f.flush()
        if obj.get("kind") == "deal":
            os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()

    @staticmethod
    def read(path: Path) -> list[dict]:
        if not path.is_file():
            return []
        out = []
        with path.open() as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    break  # a line cut by a crash: nothing after it was confirmed
        return out


@dataclass
class _Tx:
    """One transaction of the run: a setup transaction or a plan step."""

    key: str  # "setup:<i>" or "step:<i>"
    sender: int  # twin account, or -1 for the funder, -2 for the deployment owner
    to: str
    data: bytes
    function: str
    value: int = 0
    step: Step | None = None
    label: str = ""
    #: twin time its block is mined at (time_mode "set"): its step's, or for a set-up transaction
    #: the step's it precedes (None: no step follows, its block keeps the node's time)
    time_s: int | None = None


# ------------------------------------------------------------------------------------ engine


class Replayer:
    """Replays one episode plan on the chain behind `w3` (see the module docstring).

    Args:
        plan: the episode (`bridge.plan.read_plans`).
        w3: a connected Web3 (HTTP provider).
        out_dir: where the journal and the report go (resumes when it holds a journal).
        keys: the signing keys (`bridge.keys.Keys`).
        deployment: an existing deployment to attach to; None deploys a fresh contract set.
        deploy_options: options of `bridge.deploy.deploy` for a fresh deployment
            (e.g. `{"variant": "deployed_v1_defects"}`).
        options: `ReplayOptions`.
    """

    def __init__(
        self,
        plan: EpisodePlan,
        w3: Web3,
        out_dir: str | Path,
        keys: Keys,
        deployment: Deployment | None = None,
        deploy_options: dict | None = None,
        options: ReplayOptions | None = None,
        rpc_url: str = "",
    ) -> None:
        self.plan, self.w3, self.keys = plan, w3, keys
        self.out = Path(out_dir)
        self.attach = deployment
        self.consortium = mediation_protocol(plan.config) == "consortium"
        self.deploy_options = dict(deploy_options or {})
        if self.consortium:  # the record's consortium, deployed with its parameters
            self.deploy_options.setdefault("mediation_kind", "consortium")
            self.deploy_options.setdefault(
                "consortium", ConsortiumOptions.from_twin(plan.config.get("mediation", {}))
            )
        self.opt = options or ReplayOptions()
        self.rpc_url = rpc_url or getattr(w3.provider, "endpoint_uri", "") or ""
        self._id = 0
        self._session: requests.Session | None = None
        if self.rpc_url.startswith(("http://", "https://")):
            self._session = requests.Session()
            # a loopback node needs no proxy lookup per request (2 ms each)
            host = self.rpc_url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)[0]
            self._session.trust_env = host not in ("127.0.0.1", "localhost", "[::1]")
        self.decoder = ErrorDecoder(all_abis())
        self.accounts = plan.accounts
        self._labels = {a.account: a.label for a in self.accounts}
        self.last_step = plan.last_step_of()
        self.steps_of: dict[str, list[Step]] = {}
        for s in plan.steps:
            if s.deal_id and s.is_call:
                self.steps_of.setdefault(s.deal_id, []).append(s)

    # ------------------------------------------------------------------------ JSON-RPC
    def _post(self, payload: dict | list, what: str, ctx: dict | None = None) -> Any:
        """One HTTP JSON-RPC request (a lean session: no proxy lookup per request)."""
        if self._session is None:
            return (self.w3.provider.make_batch_request([(p["method"], p["params"]) for p in payload])
                    if isinstance(payload, list) else
                    self.w3.provider.make_request(payload["method"], payload["params"]))  # fmt: skip
        try:
            response = self._session.post(self.rpc_url, json=payload, timeout=RECEIPT_TIMEOUT_S)
            return response.json()
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                ConnectionError, OSError, ValueError) as e:  # fmt: skip
            raise RpcUnreachableError(
                f"cannot reach the JSON-RPC endpoint {self.rpc_url} ({what}: {type(e).__name__})",
                **(ctx or {}),
            ) from None

    def _rpc(self, method: str, params: list, ctx: dict | None = None) -> Any:
        self._id += 1
        try:
            response = self._post({"jsonrpc": "2.0", "id": self._id, "method": method,
                                   "params": params}, method, ctx)  # fmt: skip
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                ConnectionError, OSError) as e:  # fmt: skip
            raise RpcUnreachableError(
                f"cannot reach the JSON-RPC endpoint {self.rpc_url or '(provider)'} ({method}: "
                f"{type(e).__name__})",
                **(ctx or {}),
            ) from None
        if "error" in response:
            raise _RpcFailure(method, response["error"])
        return response["result"]

    def _ctx(self, tx: _Tx) -> dict:
        s = tx.step
        where = f"{tx.function}" + (f" (step {s.index}, twin time {s.time_s})" if s else "")
        return {"account": self._who(tx.sender), "deal": s.deal_id if s else "", "tx": where}

    def _who(self, sender: int) -> str:
        if sender == -1:
            return f"funder {self.keys.funder.address}"
        if sender == -2:
            return f"owner {self.deployment.owner}"
        return f"{self._labels.get(sender, sender)} ({self.address[sender]})"

    # -------------------------------------------------------------------------- set-up
    def _connect(self) -> int:
        try:
            chain_id = int(self._rpc("eth_chainId", []), 16)
        except _RpcFailure as e:
            raise RpcUnreachableError(f"{self.rpc_url}: eth_chainId failed: {e}") from None
        wanted = {
            "options.chain_id": self.opt.chain_id,
            "deployment.chain_id": self.attach.chain_id if self.attach else 0,
        }
        for name, value in wanted.items():
            if value and value != chain_id:
                raise WrongChainIdError(
                    f"the endpoint {self.rpc_url} serves chain id {chain_id}, but {name} is {value}"
                )
        return chain_id

    def _signer(self, sender: int) -> LocalAccount:
        if sender == -1:
            return self.keys.funder
        if sender == -2:
            owner = to_checksum_address(self.deployment.owner)
            for candidate in (
                self.keys.funder,
                *(self.keys.party(a.account) for a in self.accounts),
            ):
                if candidate.address == owner:
                    return candidate
            raise ReplayError(
                f"the deployment's owner {owner} must change the slashing destination, and this "
                "replay holds no key for it"
            )
        key = self.keys.party(sender)
        if key.address != self.address.get(sender, key.address):
            raise ReplayError(
                f"twin account {self._labels.get(sender, sender)} maps to {self.address[sender]} "
                "(the deployment's slashing destination), for which this replay holds no key"
            )
        return key

    def _fresh_start(self, chain_id: int) -> dict:
        if chain_id not in LOCAL_CHAIN_IDS and self.keys.is_public_test_mnemonic:
            raise ReplayError(
                f"chain id {chain_id} is not a local chain: its keys must come from the environment "
                "(bridge.keys.Keys.from_env: TWIN_REPLAY_MNEMONIC, TWIN_REPLAY_FUNDER_KEY), never "
                "anvil's public test mnemonic"
            )
        plan = self.plan
        slash_accounts = [ev.destination for s in plan.steps for ev in s.events
                          if ev.kind == "Payment" and ev.direction == PaymentDirection.Slashed]  # fmt: skip
        first_slash = slash_accounts[0] if slash_accounts else plan.owner
        address = {a.account: self.keys.address(a.account) for a in self.accounts}
        funder = self.keys.funder
        if self.attach is not None:
            d = self.attach
            if to_checksum_address(d.funder) != funder.address:
                raise ReplayError(
                    f"deployment.funder is {d.funder}, but the funding key is {funder.address}"
                )
            for name in ("controller", "storage", "payments", "mediation", "token"):
                code = self._rpc("eth_getCode", [getattr(d, name), "latest"])
                if code in ("0x", "0x0", ""):
                    raise ReplayError(
                        f"deployment.{name}: no contract at {getattr(d, name)} on chain {chain_id}"
                    )
            self._check_attached_mediation(d)
            # slashed collateral goes where the deployment sends it: the twin's owner is that
            address[plan.owner] = to_checksum_address(d.slashing_destination)
            deployment = d
        else:
            balance = int(self._rpc("eth_getBalance", [funder.address, "latest"]), 16)
            if balance == 0:
                raise UnderfundedAccountError(
                    "the funder has no ETH to deploy the contracts", account=funder.address
                )
            try:
                deployment = deploy(
                    self.w3, funder, owner=address[plan.owner], funder=funder.address,
                    slashing_destination=address[first_slash], **self.deploy_options,
                )  # fmt: skip
            except (requests.exceptions.ConnectionError, ConnectionError) as e:
                raise RpcUnreachableError(f"deployment failed: {e}") from None
        self.deployment = deployment
        self.address = address
        client = LilypadClient(self.w3, deployment)
        supply_needed = sum(a.genesis_wallet_wei for a in self.accounts)
        funder_tokens = client.balance(funder.address)
        if funder_tokens < supply_needed:
            raise UnderfundedAccountError(
                f"the funder holds {funder_tokens} wei of tokens, the genesis wallets need "
                f"{supply_needed}", account=funder.address,
            )  # fmt: skip
        latest = int(self._rpc("eth_getBlockByNumber", ["latest", False])["timestamp"], 16)
        mode = self._time_mode()
        offset = 0
        if mode == "set" and latest + SETUP_MARGIN_S > plan.first_time_s:
            offset = latest + SETUP_MARGIN_S - plan.first_time_s
        state = {
            "version": STATE_VERSION,
            "record": plan.record_path,
            "record_sha256": plan.record_sha256,
            "episode": plan.episode,
            "chain_id": chain_id,
            "rpc_url": self.rpc_url,
            "deployment": deployment.to_dict(),
            "attached": self.attach is not None,
            "time_mode": mode,
            "time_offset_s": offset,
            "addresses": {str(k): v for k, v in address.items()},
            "initial_slashing_destination": first_slash if self.attach is None else plan.owner,
            "preset": plan.preset,
            "variant": deployment.variant,
            "keys": repr(self.keys),
        }
        senders = {funder.address}
        senders |= {v for a, v in address.items() if self.keys.address(a) == v}
        state["nonces"] = {
            a: int(self._rpc("eth_getTransactionCount", [a, "latest"]), 16) for a in senders
        }
        self._fund_gas(chain_id, state)
        _atomic_write(self.out / STATE_FILE, state)
        return state

    def _check_attached_mediation(self, d: Deployment) -> None:
        """An attached deployment must run the record's mediation protocol and parameters."""
        kind = "consortium" if self.consortium else "v1"
        if d.mediation_kind != kind:
            raise ReplayError(
                f"deployment.mediation_kind is {d.mediation_kind!r}, but the record's "
                f"mediation.protocol is {mediation_protocol(self.plan.config)!r}: attach to a "
                f"deployment with mediation_kind={kind!r}"
            )
        if self.consortium:
            wanted = asdict(self.deploy_options["consortium"])
            if d.consortium != wanted:
                raise ReplayError(
                    f"deployment.consortium is {d.consortium}, but the record's mediation "
                    f"parameters are {wanted}"
                )

    def _time_mode(self) -> str:
        if self.opt.time_mode != "auto":
            return self.opt.time_mode
        try:
            version = str(self._rpc("web3_clientVersion", []))
        except _RpcFailure:
            return "wall"
        return "set" if ("anvil" in version.lower() or "hardhat" in version.lower()) else "wall"

    def _fund_gas(self, chain_id: int, state: dict) -> None:
        """Gas money for every account: anvil_setBalance on a local chain; otherwise ETH from the
        funder (setup transactions) for each account below `gas_funding_wei`."""
        state["gas_transfers"] = []
        for a in self.accounts:
            addr = self.address[a.account]
            if addr != self.keys.address(a.account):
                continue  # not ours (an attached deployment's slashing destination)
            have = int(self._rpc("eth_getBalance", [addr, "latest"]), 16)
            if chain_id in LOCAL_CHAIN_IDS:
                if have < LOCAL_GAS_BALANCE_WEI // 2:
                    try:
                        self._rpc("anvil_setBalance", [addr, hex(LOCAL_GAS_BALANCE_WEI)])
                        continue
                    except _RpcFailure:
                        pass
                else:
                    continue
            if have < self.opt.gas_funding_wei:
                state["gas_transfers"].append([a.account, self.opt.gas_funding_wei - have])

    def _build_txs(self, state: dict) -> list[_Tx]:
        """The whole list of transactions of the run, in order (deterministic from the state)."""
        client = self.client
        token, payments = client._addresses["token"], client._addresses["payments"]
        tok, pay = client._codecs["token"], client._codecs["payments"]
        txs: list[_Tx] = []
        for account, wei in state["gas_transfers"]:
            txs.append(_Tx(f"setup:{len(txs)}", -1, self.address[account], b"", "fund gas",
                           value=int(wei), label=self._labels[account]))  # fmt: skip
        for a in self.accounts:
            if a.genesis_wallet_wei:
                data = tok.encode_call("transfer", self.address[a.account], a.genesis_wallet_wei)
                txs.append(_Tx(f"setup:{len(txs)}", -1, token, data, "fund genesis wallet",
                               label=a.label))  # fmt: skip
        destination = int(state["initial_slashing_destination"])
        for s in self.plan.steps:
            slashed = {ev.destination for ev in s.events
                       if ev.kind == "Payment" and ev.direction == PaymentDirection.Slashed}  # fmt: skip
            if len(slashed) > 1:
                raise ReplayError(
                    f"step {s.index} ({s.function}) slashes to several accounts {sorted(slashed)}: "
                    "one transaction has one slashing destination", deal=s.deal_id,
                )  # fmt: skip
            if slashed and (new := slashed.pop()) != destination:
                data = pay.encode_call("setSlashingDestination", self.address[new])
                txs.append(_Tx(f"setup:{len(txs)}", -2, payments, data, "setSlashingDestination",
                               label=self._labels[new]))  # fmt: skip
                destination = new
            txs.append(self._step_tx(s))
        following: int | None = None
        for tx in reversed(txs):
            if tx.step is not None:
                following = tx.step.time_s
            tx.time_s = following
        return txs

    def _step_tx(self, s: Step) -> _Tx:
        client = self.client
        if s.function == "transfer":
            data = client._codecs["token"].encode_call("transfer", self.address[s.recipient],
                                                      s.amount_wei)  # fmt: skip
            return _Tx(f"step:{s.index}", s.caller, client._addresses["token"], data, "transfer",
                       step=s)  # fmt: skip
        d = self.plan.deals[s.deal_id]
        if s.function == "agree":
            args = self._terms(d).abi_args()
        elif s.function == "addResult":
            args = (s.deal_id, *_result_ids(s.deal_id, s.instruction_count), s.instruction_count)
        else:
            args = (s.deal_id,)
        contract = "mediation" if s.function.startswith("mediation") else "controller"
        data = client._codecs[contract].encode_call(s.function, *args)
        return _Tx(f"step:{s.index}", s.caller, client._addresses[contract], data, s.function,
                   step=s)  # fmt: skip

    def _terms(self, d) -> DealTerms:
        a = self.address
        return DealTerms(
            deal_id=d.deal_id, solver=a[d.solver], job_creator=a[d.job_creator],
            resource_provider=a[d.resource_provider], mediators=tuple(a[m] for m in d.mediators),
            agree_timeout_s=d.agree_timeout_s, submit_results_timeout_s=d.submit_results_timeout_s,
            judge_results_timeout_s=d.judge_results_timeout_s,
            mediate_results_timeout_s=d.mediate_results_timeout_s,
            submit_results_collateral_wei=d.submit_results_collateral_wei,
            judge_results_collateral_wei=d.judge_results_collateral_wei,
            instruction_price_wei=d.instruction_price_wei,
            payment_collateral_wei=d.payment_collateral_wei,
            results_collateral_multiple=d.results_collateral_multiple,
            mediation_fee_wei=d.mediation_fee_wei,
        )  # fmt: skip

    # ------------------------------------------------------------------------------ run
    def run(self) -> ReplayResult:
        """Replays (or resumes) the episode; returns the result and writes the report files."""
        self.out.mkdir(parents=True, exist_ok=True)
        chain_id = self._connect()
        state_path = self.out / STATE_FILE
        if state_path.is_file():
            state = json.loads(state_path.read_text())
            self._check_state(state, chain_id)
            self.deployment = Deployment.from_dict(state["deployment"])
            self.address = {int(k): v for k, v in state["addresses"].items()}
        else:
            state = self._fresh_start(chain_id)
        self.state = state
        self.chain_id = chain_id
        self.mode = state["time_mode"]
        self.offset = int(state["time_offset_s"])
        self.client = LilypadClient(self.w3, self.deployment)
        self.account_of = {v.lower(): int(k) for k, v in self.address.items()}
        self.baseline: dict[int, tuple[int, int]] | None = None  # taken once funded
        self.txs = self._build_txs(state)
        local = self.chain_id in LOCAL_CHAIN_IDS
        self.fixed_fees = local
        self.estimate = self.opt.estimate_gas == "always" or (
            self.opt.estimate_gas == "auto" and not local
        )
        self.node_accounts: set[str] = set()
        if local and self.opt.node_signing:
            try:
                self.node_accounts = {a.lower() for a in self._rpc("eth_accounts", [])}
            except _RpcFailure:
                pass
        self.sync_send = True  # eth_send*TransactionSync; turned off if the node lacks it
        self.journal_entries = _Journal.read(self.out / JOURNAL_FILE)
        self._rebuild(state)
        self.cache = self._balances(a.account for a in self.accounts)
        self.journal = _Journal(self.out / JOURNAL_FILE)
        complete = False
        try:
            self._reconcile()
            sent = 0
            for tx in self.txs:
                if tx.key in self.done:
                    continue
                if self.opt.stop_after_steps is not None and sent >= self.opt.stop_after_steps:
                    break
                if self.baseline is None and tx.function not in FUNDING:
                    self._take_baseline()
                self._do(tx)
                sent += 1
            else:
                complete = True
        finally:
            self.journal.close()
        return self._finish(complete)

    def _take_baseline(self) -> None:
        """Every account's balances once funded, less its genesis wallet: the chain should hold
        `baseline + twin` from now on (0 + twin for a fresh account; an account that already
        held tokens, e.g. an attached deployment's owner that is also the funder, keeps them)."""
        read = self._balances(a.account for a in self.accounts)
        self.cache.update(read)  # the funder may be an account too (an attached owner)
        self.baseline = {
            a.account: (read[a.account][0] - a.genesis_wallet_wei, read[a.account][1])
            for a in self.accounts
        }
        self.journal.write(
            {"kind": "baseline", "balances": {str(k): list(v) for k, v in self.baseline.items()}}
        )

    def _check_state(self, state: dict, chain_id: int) -> None:
        if state.get("version") != STATE_VERSION:
            raise ReplayStateError(f"{self.out / STATE_FILE}: unknown state version")
        if (
            state["record_sha256"] != self.plan.record_sha256
            or state["episode"] != self.plan.episode
        ):
            raise ReplayStateError(
                f"{self.out} holds the replay of another record or episode "
                f"({state['record']} episode {state['episode']}); use a new output directory"
            )
        if state["chain_id"] != chain_id:
            raise WrongChainIdError(
                f"the journal in {self.out} was written on chain id {state['chain_id']}, the "
                f"endpoint {self.rpc_url} serves chain id {chain_id}"
            )

    # ----------------------------------------------------------------------- rebuilding
    def _rebuild(self, state: dict) -> None:
        """The in-memory progress from the journal: confirmed transactions, the twin ledger up to
        them, the deals' divergences, the nonces."""
        self.done: dict[str, dict] = {}
        self.intents: dict[str, dict] = {}
        self.deal_rows: dict[str, dict] = {}
        failed: dict[str, int] = {}
        for e in self.journal_entries:
            if e["kind"] == "intent":
                self.intents[e["key"]] = e
            elif e["kind"] == "done":
                self.done[e["key"]] = e
            elif e["kind"] == "deal":
                self.deal_rows[e["deal_id"]] = e
            elif e["kind"] == "baseline":
                self.baseline = {int(k): (int(v[0]), int(v[1])) for k, v in e["balances"].items()}
            elif e["kind"] == "failed":  # an attempt that used its nonce and did nothing
                self.intents.pop(e["key"], None)
                failed[e["from"]] = failed.get(e["from"], 0) + 1
        n = len(self.accounts)
        self.twin = [[a.genesis_wallet_wei, 0] for a in self.accounts]
        self.diverged: dict[str, str] = {}
        self.chain_mediator: dict[str, int] = {}
        self.first_account_diff: dict[int, str] = {}
        self.nonce = {a: int(v) + failed.get(a, 0) for a, v in state["nonces"].items()}
        for tx in self.txs:
            entry = self.done.get(tx.key)
            if entry is None:
                break
            self._after_done(tx, entry)
        assert len(self.twin) == n

    def _after_done(self, tx: _Tx, entry: dict) -> None:
        """Applies a confirmed transaction to the in-memory progress."""
        if entry.get("tx_hash"):
            addr = entry["from"]
            self.nonce[addr] = self.nonce.get(addr, 0) + 1
        s = tx.step
        if s is None:
            return
        self._apply_twin(s)
        if entry.get("diverged"):
            self.diverged.setdefault(s.deal_id, entry["diverged"])
        if entry.get("chain_mediator") is not None:
            self.chain_mediator[s.deal_id] = int(entry["chain_mediator"])
        for acct in entry.get("balance_diffs", {}):
            self.first_account_diff.setdefault(int(acct), entry.get("ref", ""))

    def _apply_twin(self, s: Step) -> None:
        """The twin's ledger movements of step `s` (docs/episode-record.md)."""
        t = self.twin
        for ev in s.events:
            if ev.kind == "Payment":
                if ev.direction == PaymentDirection.PaidIn:
                    t[ev.payee][0] -= ev.amount
                    t[ev.payee][1] += ev.amount
                elif ev.direction == PaymentDirection.Refunded:
                    t[ev.payee][1] -= ev.amount
                    t[ev.payee][0] += ev.amount
                else:
                    t[ev.source][1] -= ev.amount
                    t[ev.destination][0] += ev.amount
            elif ev.kind == "Transfer":
                t[ev.source][0] -= ev.amount
                t[ev.destination][0] += ev.amount

    # ------------------------------------------------------------------------ resuming
    def _reconcile(self) -> None:
        """Confirms a transaction that was sent but not confirmed, and checks every nonce."""
        pending = [k for k in self.intents if k not in self.done]
        if len(pending) > 1:
            raise ReplayStateError(f"{self.out}: several unconfirmed transactions {pending}")
        if pending:
            intent = self.intents[pending[0]]
            tx = next(t for t in self.txs if t.key == intent["key"])
            if tx.step is not None and intent["from"] != self._signer(tx.sender).address:
                tx = dc_replace(tx, sender=self.account_of[intent["from"].lower()])
            receipt = self._find_sent(intent)
            if receipt is None:
                addr = intent["from"]
                chain_nonce = int(self._rpc("eth_getTransactionCount", [addr, "pending"]), 16)
                if chain_nonce != int(intent["nonce"]):
                    raise NonceGapError(
                        f"the transaction journaled with nonce {intent['nonce']} is not on chain, "
                        f"and the account's nonce is now {chain_nonce}: another transaction used "
                        "it", **self._ctx(tx),
                    )  # fmt: skip
                self._set_block_time(tx)
                # the same nonce (and, signed locally, the same bytes): it cannot run twice
                receipt = self._transmit(tx, intent)
            try:
                self._confirm(tx, intent, receipt)
            except OutOfGasError:
                pass  # journaled as a failed attempt: the step is sent again below
        for addr, expected in self.nonce.items():
            chain_nonce = int(self._rpc("eth_getTransactionCount", [addr, "latest"]), 16)
            if chain_nonce != expected:
                who = next((self._who(a) for a, x in self.address.items() if x == addr), addr)
                if chain_nonce < expected:
                    raise ReplayStateError(
                        f"the chain lost confirmed transactions: nonce {chain_nonce} on chain, "
                        f"the journal accounts for {expected} (a node restarted without its state?)",
                        account=who,
                    )  # fmt: skip
                raise NonceGapError(
                    f"nonce gap: nonce {chain_nonce} on chain, the journal accounts for "
                    f"{expected}: transactions were sent from this account outside the replay",
                    account=who, tx=f"next: {self._next_key()}",
                )  # fmt: skip

    def _next_key(self) -> str:
        for tx in self.txs:
            if tx.key not in self.done:
                return f"{tx.function} ({tx.key})"
        return "none"

    # ------------------------------------------------------------------------ sending
    def _do(self, tx: _Tx) -> None:
        s = tx.step
        if s is not None and s.deal_id in self.diverged and s.is_call:
            entry = {"kind": "done", "key": tx.key, "status": "skipped", "tx_hash": None,
                     "step": s.index, "function": s.function, "deal_id": s.deal_id,
                     "match": False, "difference": f"skipped: the deal diverged earlier "
                     f"({self.diverged[s.deal_id]})"}  # fmt: skip
            self.journal.write(entry)
            self.done[tx.key] = entry
            self._after_done(tx, entry)
            self._maybe_finish_deal(s)
            return
        caller = tx.sender
        if (
            s is not None
            and s.function.startswith("mediation")
            and s.deal_id in self.chain_mediator
        ):
            caller = self.chain_mediator[s.deal_id]  # the chain chose another mediator
            tx = dc_replace(tx, sender=caller)
        account = self._signer(caller)
        self._set_block_time(tx)
        touched = self._touched(s) if s is not None else []
        waits = self.mode == "wall" and s is not None and s.function in TIMEOUT_CALLS
        if self.estimate or waits:
            error, gas = self._estimate(tx, account)
            if error is not None and waits:  # the chain's clock decides when it is callable
                error, gas = self._wait_callable(tx, account, error)
        else:
            error, gas = None, self.opt.gas_limit or self.opt.local_gas_limit
        before = {a: self.cache[a] for a in touched}
        if error is not None and not self.opt.send_reverting:
            self._record(tx, None, None, before, error)
            return
        if error is not None:
            gas = self.opt.revert_gas_limit
        nonce = self.nonce.get(account.address, 0)
        intent = {"kind": "intent", "key": tx.key, "from": account.address, "nonce": nonce,
                  "gas_limit": gas, "before": {str(k): list(v) for k, v in before.items()},
                  "estimate_error": str(error) if error else ""}  # fmt: skip
        if account.address.lower() not in self.node_accounts:
            intent["raw"], intent["tx_hash"] = self._sign(tx, account, nonce, gas)
        self.journal.write(intent)
        self.intents[tx.key] = intent
        receipt = self._transmit(tx, intent)
        self._confirm(tx, intent, receipt)

    def _transmit(self, tx: _Tx, intent: dict) -> dict:
        """Sends the journaled transaction and returns its receipt: signed by the node (it holds
        the key) or the locally signed bytes."""
        if "raw" not in intent:
            body = {"from": intent["from"], "to": to_checksum_address(tx.to),
                    "data": "0x" + tx.data.hex(), "value": hex(tx.value),
                    "nonce": hex(int(intent["nonce"])), "gas": hex(int(intent["gas_limit"])),
                    **{k: hex(v) for k, v in self._fees(tx).items()}}  # fmt: skip
            try:
                return self._rpc("eth_sendTransactionSync", [body], self._ctx(tx))
            except _RpcFailure as e:
                self._send_failed(tx, e)
        if self.sync_send:
            try:
                return self._rpc("eth_sendRawTransactionSync", [intent["raw"]], self._ctx(tx))
            except _RpcFailure as e:
                if "not found" not in str(e).lower() and "not supported" not in str(e).lower():
                    self._send_failed(tx, e)
                self.sync_send = False
        self._send_raw(tx, intent["raw"])
        return self._receipt(tx, intent["tx_hash"])

    def _find_sent(self, intent: dict) -> dict | None:
        """The receipt of a journaled transaction, if it was mined."""
        if intent.get("tx_hash"):
            return self._rpc("eth_getTransactionReceipt", [intent["tx_hash"]])
        try:  # signed by the node: found by sender and nonce (anvil's Otterscan API)
            found = self._rpc("ots_getTransactionBySenderAndNonce",
                              [intent["from"], hex(int(intent["nonce"]))])  # fmt: skip
        except _RpcFailure:
            found = None
        if not found:
            return None
        return self._rpc("eth_getTransactionReceipt", [found if isinstance(found, str)
                                                        else found["hash"]])  # fmt: skip

    def _set_block_time(self, tx: _Tx) -> None:
        """`time_mode="set"`: the block that mines `tx` gets the twin's time (plus the offset).
        Every transaction sets it, set-up transactions included: a block left to the node's own
        clock (anvil: the last set timestamp plus the wall time since, at least the previous
        block's) is a second past the next step's time as soon as the wall clock crosses a
        second in between (likelier on a loaded machine), and that step could then not be mined
        at its time. Several blocks may share a second (anvil accepts a timestamp equal to the
        previous block's). The timestamp is set before the gas estimate, which runs on the
        pending block at that time."""
        if self.mode != "set" or tx.time_s is None:
            return
        wanted = tx.time_s + self.offset
        try:
            self._rpc("evm_setNextBlockTimestamp", [wanted], self._ctx(tx))
        except _RpcFailure as e:
            message = str(e.error.get("message", e.error))
            latest = self._rpc("eth_getBlockByNumber", ["latest", False], self._ctx(tx))
            stamp, number = int(latest["timestamp"], 16), int(latest["number"], 16)
            if stamp < wanted:  # not a matter of time
                raise ReplayError(f"evm_setNextBlockTimestamp({wanted}) failed: {message}",
                                  **self._ctx(tx)) from None  # fmt: skip
            why = ("a block was mined behind the replay's back?" if stamp > wanted else
                   "this node refuses a block in the previous block's second; anvil 1.7.1, "
                   "pinned by package.json, accepts it")  # fmt: skip
            where = f"step {tx.step.index}" if tx.step else f"{tx.key}, before the next step"
            raise ChainTimeError(
                f"chain time: {tx.function} ({where}) must be mined at {wanted} (twin time "
                f"{tx.time_s} + offset {self.offset}), but the chain's latest block {number} "
                f"has timestamp {stamp} ({why}); evm_setNextBlockTimestamp failed: {message}",
                wanted_s=wanted, latest_s=stamp, offset=self.offset, **self._ctx(tx),
            ) from None  # fmt: skip

    def _estimate(self, tx: _Tx, account: LocalAccount) -> tuple[DecodedError | None, int]:
        call = {"from": account.address, "to": tx.to, "data": "0x" + tx.data.hex()}
        if tx.value:
            call["value"] = hex(tx.value)
        try:
            gas = int(self._rpc("eth_estimateGas", [call, "pending"], self._ctx(tx)), 16)
        except _RpcFailure as e:
            return self._decode_failure(e.error), 0
        if self.opt.gas_limit:
            return None, self.opt.gas_limit
        return None, gas * GAS_MARGIN_NUM // GAS_MARGIN_DEN + GAS_MARGIN_ADD

    def _wait_callable(self, tx: _Tx, account: LocalAccount, error: DecodedError):
        """Wall mode: waits until a timeout call stops failing with TimeoutNotReached."""
        deadline = time.monotonic() + self.opt.wall_wait_max_s
        while error is not None and error.name == "TimeoutNotReached":
            if time.monotonic() > deadline:
                break
            now, due = int(error.args.get("now", 0)), int(error.args.get("deadline", 0))
            time.sleep(min(max(1, due - now + 1), 15))
            error, gas = self._estimate(tx, account)
            if error is None:
                return None, gas
        return error, 0

    def _decode_failure(self, error: dict) -> DecodedError:
        data = error.get("data")
        if isinstance(data, dict):
            data = data.get("data")
        if isinstance(data, str) and data.startswith("0x"):
            return self.decoder.decode(data)
        message = str(error.get("message", error))
        if "revert" in message.lower():
            return DecodedError("EmptyRevert", {"message": message}, "0x")
        return DecodedError("RpcError", {"message": message}, "0x")

    def _sign(self, tx: _Tx, account: LocalAccount, nonce: int, gas: int) -> tuple[str, str]:
        fees = self._fees(tx)
        body = {"chainId": self.chain_id, "nonce": nonce, "gas": gas, "data": tx.data,
                "value": tx.value, "type": 2, "to": to_checksum_address(tx.to), **fees}  # fmt: skip
        signed = account.sign_transaction(body)
        return "0x" + signed.raw_transaction.hex(), "0x" + signed.hash.hex()

    def _fees(self, tx: _Tx) -> dict[str, int]:
        if self.fixed_fees:
            return {"maxFeePerGas": LOCAL_MAX_FEE_WEI, "maxPriorityFeePerGas": PRIORITY_FEE_WEI}
        block = self._rpc("eth_getBlockByNumber", ["latest", False], self._ctx(tx))
        base = int(block["baseFeePerGas"], 16)
        return {
            "maxFeePerGas": 2 * base + PRIORITY_FEE_WEI,
            "maxPriorityFeePerGas": PRIORITY_FEE_WEI,
        }

    def _send_raw(self, tx: _Tx, raw: str) -> None:
        try:
            self._rpc("eth_sendRawTransaction", [raw], self._ctx(tx))
        except _RpcFailure as e:
            if "already known" in str(e).lower():
                return  # the same signed bytes are already pending
            self._send_failed(tx, e)

    def _send_failed(self, tx: _Tx, e: _RpcFailure) -> None:
        """Raises the fault of a rejected transaction (the node refused it before mining)."""
        message = str(e.error.get("message", e.error))
        low = message.lower()
        if "insufficient funds" in low or "insufficient balance" in low or "lack of funds" in low:
            raise UnderfundedAccountError(f"cannot pay for gas ({message})", **self._ctx(tx))
        if "nonce" in low:
            raise NonceGapError(f"nonce rejected ({message})", **self._ctx(tx))
        if "intrinsic gas" in low or "gas too low" in low:
            raise OutOfGasError(f"gas limit below the intrinsic gas ({message})", **self._ctx(tx))
        raise ReplayError(f"{e.method} failed: {message}", **self._ctx(tx))

    def _receipt(self, tx: _Tx, tx_hash: str) -> dict:
        deadline = time.monotonic() + RECEIPT_TIMEOUT_S
        delay = 0.0005
        while True:
            receipt = self._rpc("eth_getTransactionReceipt", [tx_hash], self._ctx(tx))
            if receipt is not None:
                return receipt
            if time.monotonic() > deadline:
                raise ReplayError(f"no receipt for {tx_hash} within {RECEIPT_TIMEOUT_S} s",
                                  **self._ctx(tx))  # fmt: skip
            time.sleep(delay)
            delay = min(2 * delay, 0.5)

    # ------------------------------------------------------------------ confirmation
    def _confirm(self, tx: _Tx, intent: dict, receipt: dict) -> None:
        ok = int(receipt["status"], 16) == 1
        error: DecodedError | None = None
        gas_used = int(receipt["gasUsed"], 16)
        if not ok:
            error = self._trace_error(receipt["transactionHash"])
            limit = int(intent["gas_limit"])
            # out of gas, or an inner call starved of gas (it gets at most 63/64 of what is left,
            # e.g. a blob write that then reverts): nearly the whole limit is used either way
            if error.name == "OutOfGas" or gas_used >= limit * 63 // 64:
                # the attempt used its nonce and did nothing: journaled, the step is sent again
                failed = {"kind": "failed", "key": tx.key, "from": intent["from"],
                          "tx_hash": receipt["transactionHash"], "reason": "out of gas"}  # fmt: skip
                self.journal.write(failed)
                self.intents.pop(tx.key, None)
                self.nonce[intent["from"]] = self.nonce.get(intent["from"], 0) + 1
                raise OutOfGasError(
                    f"out of gas: used {gas_used} of its gas limit {limit} ({error}) "
                    f"(tx {receipt['transactionHash']}); raise the limit (gas_limit=0 estimates "
                    "it) and resume", **self._ctx(tx),
                )  # fmt: skip
        before = {int(k): tuple(v) for k, v in intent.get("before", {}).items()}
        self._record(tx, receipt, ok, before, error)

    def _trace_error(self, tx_hash: str) -> DecodedError:
        try:
            trace = self._rpc("debug_traceTransaction", [tx_hash, {"tracer": "callTracer"}])
        except _RpcFailure as e:
            return DecodedError("Reverted", {"trace": str(e)}, "0x")
        if "outofgas" in str(trace.get("error", "")).lower().replace(" ", ""):
            return DecodedError("OutOfGas", {}, "0x")
        return self.decoder.decode(trace.get("output"))

    def _record(self, tx: _Tx, receipt: dict | None, ok: bool | None,
                before: dict[int, tuple[int, int]], error: DecodedError | None) -> None:  # fmt: skip
        """Compares a mined (or not sent) transaction with the twin and journals the outcome."""
        s = tx.step
        entry: dict[str, Any] = {"kind": "done", "key": tx.key, "function": tx.function,
                                 "tx_hash": receipt["transactionHash"] if receipt else None,
                                 "from": self._signer(tx.sender).address}  # fmt: skip
        if receipt is not None:
            entry.update(block=int(receipt["blockNumber"], 16), gas=int(receipt["gasUsed"], 16))
        entry["status"] = "ok" if ok else ("reverted" if receipt is not None else "not sent")
        if error is not None:
            entry["error"] = str(error)
        if s is None:
            if not ok:
                raise ReplayError(f"set-up transaction failed: {error}", **self._ctx(tx))
            if tx.label:
                acct = next(a.account for a in self.accounts if a.label == tx.label)
                self.cache.update(self._balances([acct]))
            self.journal.write(entry)
            self.done[tx.key] = entry
            self._after_done(tx, entry)
            return
        entry.update(step=s.index, deal_id=s.deal_id, caller=self._labels.get(tx.sender, ""),
                     time_s=s.time_s)  # fmt: skip
        ref = f"{s.function} (step {s.index}" + (f", tx {entry['tx_hash']})" if entry["tx_hash"]
                                                  else ", not sent)")  # fmt: skip
        entry["ref"] = ref
        twin_events = [self._twin_event(ev) for ev in s.events]
        chain_events = self._chain_events(tx, receipt) if ok else []
        entry["twin_events"], entry["chain_events"] = twin_events, chain_events
        differences: list[str] = []
        twin_ok = not s.reverts
        if bool(ok) != twin_ok:
            if twin_ok:
                differences.append(f"reverted on chain ({error}) where the twin's call succeeded")
                entry["diverged"] = ref
                entry["locked"] = self._locked_by(s)
            else:
                differences.append(f"succeeded on chain where the twin's call reverted "
                                   f"({s.revert_reason})")  # fmt: skip
                entry["diverged"] = ref
        if chain_events != twin_events:
            differences.append(_event_difference(twin_events, chain_events))
        for ev in chain_events if not self.consortium else ():  # v1: the chain's one choice
            if ev[0] == "MediationRequested":
                chosen = self.account_of.get(str(ev[2]).lower())
                twin_m = next((e.mediator for e in s.events if e.kind == "MediationRequested"), -1)
                if chosen is not None and chosen != twin_m:
                    entry["chain_mediator"] = chosen
        self._apply_twin(s)  # twin ledger after this step
        named = {self.account_of[str(x).lower()] for ev in chain_events for x in ev[1:]
                 if isinstance(x, str) and str(x).lower() in self.account_of}  # fmt: skip
        for acct in named - set(before):
            before[acct] = self.cache[acct]
        after = self._balances(before) if (before and receipt is not None) else dict(before)
        self.cache.update(after)
        diffs: dict[str, list] = {}
        compared = 0
        for acct, (bw, be) in before.items():
            tw = self._twin_delta(s, acct)
            cw, ce = after[acct][0] - bw, after[acct][1] - be
            compared += 2
            if (cw, ce) != tw:
                diffs[str(acct)] = [tw[0], tw[1], cw, ce]
        entry["amounts_compared"] = compared + sum(1 for e in twin_events if e[0] == "Payment")
        entry["wei_moved"] = sum(int(e[3]) for e in twin_events if e[0] == "Payment") + sum(
            int(e[3]) for e in twin_events if e[0] == "Transfer"
        )
        if diffs:
            entry["balance_diffs"] = diffs
            first = next(iter(diffs))
            tw0, tw1, cw, ce = diffs[first]
            differences.append(
                f"{self._labels.get(int(first), first)} moved wallet {cw:+d} escrow {ce:+d} wei "
                f"on chain, wallet {tw0:+d} escrow {tw1:+d} in the twin"
            )
        entry["match"] = not differences
        entry["difference"] = "; ".join(differences) if differences else None
        self.journal.write(entry)
        self.done[tx.key] = entry
        # nonce, divergence, mediator bookkeeping (twin ledger already applied above)
        if entry.get("tx_hash"):
            self.nonce[entry["from"]] = self.nonce.get(entry["from"], 0) + 1
        if entry.get("diverged"):
            self.diverged.setdefault(s.deal_id, entry["diverged"])
        if entry.get("chain_mediator") is not None:
            self.chain_mediator[s.deal_id] = int(entry["chain_mediator"])
        for acct in diffs:
            self.first_account_diff.setdefault(int(acct), ref)
        if differences and self.opt.strict:
            raise ReplayDivergenceError(entry["difference"], account=self._who(tx.sender),
                                        deal=s.deal_id, tx=ref)  # fmt: skip
        self._maybe_finish_deal(s)

    def _twin_event(self, ev) -> list:
        a = self.address
        if ev.kind == "Payment":
            return ["Payment", ev.deal_id, a[ev.payee], ev.amount, ev.reason, ev.direction]
        if ev.kind == "DealStateChange":
            return ["DealStateChange", ev.deal_id, ev.state]
        if ev.kind == "MediationRequested":
            return ["MediationRequested", ev.deal_id, a[ev.mediator]]
        if ev.kind == "MediationVoted":
            return ["MediationVoted", ev.deal_id, a[ev.mediator], ev.vote]
        return ["Transfer", a[ev.source], a[ev.destination], ev.amount]

    def _chain_events(self, tx: _Tx, receipt: dict) -> list[list]:
        if tx.function == "transfer":
            token = self.client._addresses["token"].lower()
            out = []
            for log in receipt["logs"]:
                if log["address"].lower() == token and log["topics"][0] == TRANSFER_TOPIC:
                    src = to_checksum_address("0x" + log["topics"][1][-40:])
                    dst = to_checksum_address("0x" + log["topics"][2][-40:])
                    (amount,) = abi_decode(["uint256"], bytes.fromhex(log["data"][2:]))
                    out.append(["Transfer", src, dst, int(amount)])
            return out
        return _tuple_events(self.client.events(receipt))

    def _touched(self, s: Step) -> list[int]:
        accts: set[int] = set()
        for ev in s.events:
            for a in (ev.payee, ev.source, ev.destination, ev.mediator):
                if a >= 0:
                    accts.add(a)
        if s.function == "transfer":
            accts |= {s.caller, s.recipient}
        elif s.deal_id:
            d = self.plan.deals[s.deal_id]
            accts |= {d.job_creator, d.resource_provider, *d.mediators}
        return sorted(accts)

    def _twin_delta(self, s: Step, acct: int) -> tuple[int, int]:
        w = e = 0
        for ev in s.events:
            if ev.kind == "Payment":
                if ev.direction == PaymentDirection.PaidIn and ev.payee == acct:
                    w, e = w - ev.amount, e + ev.amount
                elif ev.direction == PaymentDirection.Refunded and ev.payee == acct:
                    w, e = w + ev.amount, e - ev.amount
                elif ev.direction in (PaymentDirection.PaidOut, PaymentDirection.Slashed):
                    if ev.source == acct:
                        e -= ev.amount
                    if ev.destination == acct:
                        w += ev.amount
            elif ev.kind == "Transfer":
                if ev.source == acct:
                    w -= ev.amount
                if ev.destination == acct:
                    w += ev.amount
        return w, e

    def _locked_by(self, s: Step) -> dict[str, int]:
        """Escrow that the twin's call would have released, per account: what the reverted call
        left locked on chain."""
        out: dict[str, int] = {}
        for ev in s.events:
            if ev.kind != "Payment" or ev.direction == PaymentDirection.PaidIn:
                continue
            who = ev.payee if ev.direction == PaymentDirection.Refunded else ev.source
            label = self._labels.get(who, str(who))
            out[label] = out.get(label, 0) + ev.amount
        return out

    def _balances(self, accounts: Iterable[int]) -> dict[int, tuple[int, int]]:
        """(wallet, escrow) of each account, read in one batch request."""
        accounts = list(accounts)
        if not accounts:
            return {}
        token, codec = self.client._addresses["token"], self.client._codecs["token"]
        batch = []
        for a in accounts:
            for fn in ("balanceOf", "escrowBalanceOf"):
                self._id += 1
                data = "0x" + codec.encode_call(fn, self.address[a]).hex()
                batch.append({"jsonrpc": "2.0", "id": self._id, "method": "eth_call",
                              "params": [{"to": token, "data": data}, "latest"]})  # fmt: skip
        responses = self._post(batch, "read balances")
        if isinstance(responses, dict):
            raise ReplayError(f"reading balances failed: {responses.get('error')}")
        by_id = {r["id"]: r for r in responses}
        values = []
        for req in batch:
            r = by_id[req["id"]]
            if "error" in r:
                raise ReplayError(f"reading balances failed: {r['error']}")
            values.append(int(r["result"], 16))
        return {a: (values[2 * i], values[2 * i + 1]) for i, a in enumerate(accounts)}

    # ------------------------------------------------------------------------- deals
    def _maybe_finish_deal(self, s: Step) -> None:
        if not s.deal_id or self.last_step.get(s.deal_id) != s.index:
            return
        if s.deal_id in self.deal_rows:
            return
        row = self._deal_row(s.deal_id)
        self.journal.write({"kind": "deal", **row})
        self.deal_rows[s.deal_id] = row

    def _expected_agreement(self, deal_id: str) -> tuple[int, dict[str, int], int]:
        """(state, timestamps, instruction count) the twin's calls give the deal on chain."""
        d = self.plan.deals[deal_id]
        t: dict[str, int] = dict.fromkeys(SUMMARY_TIME_FIELDS, 0)
        state, count = AgreementState.DealNegotiating, 0
        off = self.offset
        for s in self.steps_of.get(deal_id, []):
            if s.reverts:
                continue
            at = s.time_s + off
            if s.function == "agree":
                if not t["deal_created_at"]:
                    t["deal_created_at"] = at
                key = ("resource_provider_agreed_at" if s.caller == d.resource_provider
                       else "job_creator_agreed_at")  # fmt: skip
                t[key] = at
                if t["resource_provider_agreed_at"] and t["job_creator_agreed_at"]:
                    t["deal_agreed_at"] = at
                    state = AgreementState.DealAgreed
            else:
                for ev in s.events:
                    if ev.kind == "DealStateChange":
                        state = AgreementState(ev.state)
                if s.function == "addResult":
                    t["results_submitted_at"], count = at, s.instruction_count
                elif s.function == "checkResult":
                    t["results_checked_at"] = at
                elif state in CLOSING_FIELD:
                    t[CLOSING_FIELD[state]] = at
        return int(state), t, count

    def _deal_row(self, deal_id: str) -> dict:
        d = self.plan.deals[deal_id]
        calls = {s.index for s in self.steps_of.get(deal_id, [])}
        every = [self.done.get(f"step:{s.index}") for s in self.plan.steps if s.deal_id == deal_id]
        every = [e for e in every if e is not None]
        entries = [e for e in every if e["step"] in calls]
        first = next((e for e in every if not e.get("match", True)), None)
        twin_state, twin_times, twin_count = self._expected_agreement(deal_id)
        agreement = self.client.agreement(deal_id)
        chain_times = {f: int(getattr(agreement, f)) for f in SUMMARY_TIME_FIELDS}
        differences = []
        if int(agreement.state) != twin_state:
            differences.append(f"state: twin {AgreementState(twin_state).name}, chain "
                               f"{agreement.state.name}")  # fmt: skip
        elif self.mode == "set" and chain_times != twin_times:
            field_ = next(f for f in SUMMARY_TIME_FIELDS if chain_times[f] != twin_times[f])
            differences.append(f"agreement {field_}: twin {twin_times[field_]}, chain "
                               f"{chain_times[field_]}")  # fmt: skip
        if twin_count and agreement.state not in (AgreementState.DealNegotiating,
                                                  AgreementState.DealAgreed):  # fmt: skip
            n = int(self.client.result(deal_id).instruction_count)
            if n != twin_count:
                differences.append(f"instruction count: twin {twin_count}, chain {n}")
        gas = sum(int(e.get("gas", 0)) for e in entries)
        path = [e["function"] for e in entries]
        locked: dict[str, int] = {}
        for e in every:
            for k, v in (e.get("locked") or {}).items():
                locked[k] = locked.get(k, 0) + v
        if first is not None:
            what = first["difference"]
            at = first.get("ref") or first.get("function")
        elif differences:
            what, at = "; ".join(differences), "deal end (getAgreement)"
        else:
            what, at = None, None
        return {
            "deal_id": deal_id, "deal_index": d.deal_index,
            "job_creator": self._labels[d.job_creator],
            "resource_provider": self._labels[d.resource_provider],
            "path": path, "steps": len(entries), "gas": gas,
            "twin_state": AgreementState(twin_state).name, "chain_state": agreement.state.name,
            "match": first is None and not differences,
            "first_difference": what, "caused_by": at,
            "agreement_differences": differences, "locked_wei": locked,
        }  # fmt: skip

    # ------------------------------------------------------------------------ finish
    def _finish(self, complete: bool) -> ReplayResult:
        steps = [self.done[t.key] for t in self.txs if t.key in self.done and t.step is not None]
        deals = sorted(self.deal_rows.values(), key=lambda r: r["deal_index"])
        accounts: list[dict] = []
        if complete and self.baseline is None:  # an episode without a single step
            self.journal = _Journal(self.out / JOURNAL_FILE)
            self._take_baseline()
            self.journal.close()
        if complete:
            read = self._balances(a.account for a in self.accounts)
            for a in self.accounts:
                bw, be = self.baseline[a.account]
                tw, te = self.twin[a.account]
                cw, ce = read[a.account][0] - bw, read[a.account][1] - be
                fw, fe, fl = self.plan.final_balances[a.account]
                accounts.append({
                    "account": a.account, "label": a.label, "address": self.address[a.account],
                    "twin_wallet_wei": tw, "chain_wallet_wei": cw, "twin_escrow_wei": te,
                    "chain_escrow_wei": ce, "twin_locked_wei": fl,
                    "match": (tw, te) == (cw, ce),
                    # settled episodes: escrow left at the end is stranded for good; the twin
                    # calls it locked (deployed-contract defects)
                    "locked_match": fl == ce if te == fl else None,
                    "record_consistent": (tw, te) == (fw, fe),
                    "first_difference_at": self.first_account_diff.get(a.account),
                })  # fmt: skip
        gas_total = sum(int(e.get("gas", 0)) for e in steps)
        n_compared = sum(int(e.get("amounts_compared", 0)) for e in steps) + 4 * len(accounts)
        wei_moved = sum(int(e.get("wei_moved", 0)) for e in steps)
        summary = {
            "episode": self.plan.episode, "complete": complete,
            "deals_in_episode": len(self.plan.deals), "deals_replayed": len(deals),
            "deals_matching": sum(1 for r in deals if r["match"]),
            "steps": len(self.plan.steps), "steps_sent": sum(1 for e in steps if e.get("tx_hash")),
            "steps_matching": sum(1 for e in steps if e.get("match")),
            "token_amounts_compared": n_compared, "tokens_moved": wei_moved / 10**18,
            "accounts_matching": sum(1 for a in accounts if a["match"]),
            "locked_mismatches": sum(1 for a in accounts if a["locked_match"] is False),
            "accounts": len(accounts), "total_gas": gas_total,
            "time_mode": self.mode, "time_offset_s": self.offset,
            "preset": self.plan.preset, "variant": self.deployment.variant or "ours",
            "chain_id": self.chain_id,
        }  # fmt: skip
        from bridge.report import write_episode_report

        result = ReplayResult(self.plan.episode, self.out, complete, self.deployment, deals,
                              steps, accounts, summary)  # fmt: skip
        write_episode_report(result, self.plan, self.deployment)
        return result


class _RpcFailure(Exception):
    """A JSON-RPC error response (a revert, a rejected transaction, an unknown method)."""

    def __init__(self, method: str, error: dict) -> None:
        self.method, self.error = method, error
        super().__init__(f"{method}: {error.get('message', error)}")


def _event_difference(twin: list[list], chain: list[list]) -> str:
    for i, (t, c) in enumerate(zip(twin, chain, strict=False)):
        if t != c:
            return f"event {i}: twin {_short(t)}, chain {_short(c)}"
    if len(twin) > len(chain):
        return f"event {len(chain)}: twin {_short(twin[len(chain)])}, chain none"
    return f"event {len(twin)}: twin none, chain {_short(chain[len(twin)])}"


def _result_ids(deal_id: str, count: int) -> tuple[str, str]:
    """Deterministic result and data CIDs of a replayed result (the twin does not model them)."""
    from twin.ids import content_id

    results = content_id({"deal": deal_id, "kind": "results", "instructionCount": count})
    data = content_id({"deal": deal_id, "kind": "data", "instructionCount": count})
    return results, data


def _atomic_write(path: Path, obj: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def gas_table(steps: list[dict]) -> list[dict]:
    """Per function: count, total, mean, min and max gas of the mined transactions."""
    by: dict[str, list[int]] = {}
    for e in steps:
        if e.get("gas"):
            by.setdefault(e["function"], []).append(int(e["gas"]))
    return [
        {"function": f, "count": len(g), "total_gas": sum(g), "mean_gas": sum(g) // len(g),
         "min_gas": min(g), "max_gas": max(g)}
        for f, g in sorted(by.items())
    ]  # fmt: skip


def path_gas(deals: list[dict]) -> list[dict]:
    """Mean gas of a full deal per path (the deal's sequence of calls)."""
    by: dict[tuple[str, ...], list[int]] = {}
    for r in deals:
        by.setdefault(tuple(r["path"]), []).append(int(r["gas"]))
    rows = [{"path": " > ".join(p), "deals": len(g), "mean_gas": sum(g) // len(g),
             "min_gas": min(g), "max_gas": max(g)} for p, g in by.items()]  # fmt: skip
    return sorted(rows, key=lambda r: -r["deals"])


__all__ = [
    "ChainTimeError", "NonceGapError", "OutOfGasError", "ReplayDivergenceError", "ReplayError",
    "ReplayOptions", "ReplayResult", "ReplayStateError", "Replayer", "RpcUnreachableError",
    "UnderfundedAccountError", "WrongChainIdError", "gas_table", "path_gas",
]  # fmt: skip
