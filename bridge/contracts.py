"""A thin typed client over a deployed Lilypad contract set.

Every party signs its own transactions from a local account (`parties_from_mnemonic`). Each
protocol call returns a `TxResult` with the decoded `Payment` / `DealStateChange` /
`MediationRequested` (and, under consortium mediation, `MediationVoted`) events of the
transaction, in log order; a revert raises `ChainCallError`
naming the function, the caller and the decoded custom error. Chain time can be advanced or set,
and the chain state snapshotted and restored (anvil).

Hot reads (balances, escrow, per-deal escrow, agreements) use raw `eth_call`s, batched where
several are needed; `controller`, `storage`, ... are also exposed as web3 contract objects for
anything else.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from eth_abi import decode as abi_decode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak, to_checksum_address
from web3 import Web3

from bridge.abi import AbiCodec
from bridge.anvil import DEFAULT_MNEMONIC
from bridge.artifacts import all_abis, load_artifact
from bridge.deploy import MEDIATION_CONTRACTS, Deployment
from bridge.errors import ErrorDecoder
from bridge.transact import RpcError, Sender
from bridge.types import (
    Agreement,
    AgreementState,
    DealStateChange,
    DealTerms,
    JackpotPaid,
    MediationRequested,
    MediationVoted,
    Payment,
    PaymentDirection,
    PaymentReason,
    ProtocolEvent,
    Result,
    TaxCollected,
    TxResult,
)

Account.enable_unaudited_hdwallet_features()

PAYMENT_TOPIC = "0x" + keccak(text="Payment(string,address,uint256,uint8,uint8)").hex()
DEAL_STATE_CHANGE_TOPIC = "0x" + keccak(text="DealStateChange(string,uint8)").hex()
MEDIATION_REQUESTED_TOPIC = "0x" + keccak(text="MediationRequested(string,address)").hex()
MEDIATION_VOTED_TOPIC = "0x" + keccak(text="MediationVoted(string,address,uint8)").hex()
TAX_COLLECTED_TOPIC = "0x" + keccak(text="TaxCollected(string,address,uint256)").hex()
JACKPOT_PAID_TOPIC = "0x" + keccak(text="JackpotPaid(string,address,uint256)").hex()


def account_from_mnemonic(index: int, mnemonic: str = DEFAULT_MNEMONIC) -> LocalAccount:
    """The local account at `m/44'/60'/0'/0/index` of `mnemonic`."""
    return Account.from_mnemonic(mnemonic, account_path=f"m/44'/60'/0'/0/{index}")


def parties_from_mnemonic(
    names: Iterable[str], mnemonic: str = DEFAULT_MNEMONIC, first_index: int = 0
) -> dict[str, LocalAccount]:
    """One local account per party name, at consecutive derivation indices."""
    return {name: account_from_mnemonic(first_index + i, mnemonic) for i, name in enumerate(names)}


class LilypadClient:
    """Drives one deployment. `labels` (address -> name) makes error messages readable."""

    def __init__(
        self, w3: Web3, deployment: Deployment, labels: Mapping[str, str] | None = None
    ) -> None:
        self.w3 = w3
        self.deployment = deployment
        self.decoder = ErrorDecoder(all_abis())
        self.sender = Sender(w3, self.decoder, labels)
        mediation_name = MEDIATION_CONTRACTS.get(deployment.mediation_kind, "LilypadMediation")
        names = {
            "controller": ("LilypadController", deployment.controller),
            "storage": ("LilypadStorage", deployment.storage),
            "payments": ("LilypadPayments", deployment.payments),
            "mediation": (mediation_name, deployment.mediation),
            "users": ("LilypadUsers", deployment.users),
            "token": ("LilypadToken", deployment.token),
        }
        if deployment.jackpot:
            names["jackpot"] = ("LilypadJackpot", deployment.jackpot)
        self._codecs: dict[str, AbiCodec] = {}
        self._addresses: dict[str, str] = {}
        for key, (contract_name, address) in names.items():
            abi = load_artifact(contract_name).abi
            self._codecs[key] = AbiCodec(abi)
            self._addresses[key] = to_checksum_address(address)
            setattr(self, key, w3.eth.contract(address=address, abi=abi))
        # Which protocol events each contract emits (topic0 -> decoder), in log order.
        self._event_sources: dict[str, set[str]] = {
            self._addresses["payments"].lower(): {PAYMENT_TOPIC},
            self._addresses["storage"].lower(): {DEAL_STATE_CHANGE_TOPIC},
            self._addresses["mediation"].lower(): {
                MEDIATION_REQUESTED_TOPIC,
                MEDIATION_VOTED_TOPIC,
            },
        }
        if deployment.jackpot:
            self._event_sources[self._addresses["jackpot"].lower()] = {
                TAX_COLLECTED_TOPIC,
                JACKPOT_PAID_TOPIC,
            }

    def add_labels(self, labels: Mapping[str, str]) -> None:
        self.sender.labels.update({k.lower(): v for k, v in labels.items()})

    # ---------------------------------------------------------------- transactions

    def transact(self, account: LocalAccount, contract: str, function: str, *args: Any) -> TxResult:
        """Sends `contract.function(*args)` (contract: "controller", "token", ...) from `account`."""
        data = self._codecs[contract].encode_call(function, *args)
        receipt = self.sender.send(account, self._addresses[contract], data, function)
        return self._result(receipt, function, account.address)

    def agree(self, account: LocalAccount, terms: DealTerms) -> TxResult:
        return self.transact(account, "controller", "agree", *terms.abi_args())

    def add_result(
        self,
        account: LocalAccount,
        deal_id: str,
        results_id: str,
        data_id: str,
        instruction_count: int,
    ) -> TxResult:
        args = (deal_id, results_id, data_id, instruction_count)
        return self.transact(account, "controller", "addResult", *args)

    def accept_result(self, account: LocalAccount, deal_id: str) -> TxResult:
        return self.transact(account, "controller", "acceptResult", deal_id)

    def check_result(self, account: LocalAccount, deal_id: str) -> TxResult:
        return self.transact(account, "controller", "checkResult", deal_id)

    def timeout_agree(self, account: LocalAccount, deal_id: str) -> TxResult:
        return self.transact(account, "controller", "timeoutAgree", deal_id)

    def timeout_submit_result(self, account: LocalAccount, deal_id: str) -> TxResult:
        return self.transact(account, "controller", "timeoutSubmitResult", deal_id)

    def timeout_judge_result(self, account: LocalAccount, deal_id: str) -> TxResult:
        return self.transact(account, "controller", "timeoutJudgeResult", deal_id)

    def timeout_mediate_result(self, account: LocalAccount, deal_id: str) -> TxResult:
        return self.transact(account, "controller", "timeoutMediateResult", deal_id)

    def mediation_accept_result(self, account: LocalAccount, deal_id: str) -> TxResult:
        return self.transact(account, "mediation", "mediationAcceptResult", deal_id)

    def mediation_reject_result(self, account: LocalAccount, deal_id: str) -> TxResult:
        return self.transact(account, "mediation", "mediationRejectResult", deal_id)

    def transfer(self, account: LocalAccount, to: str, amount_wei: int) -> TxResult:
        return self.transact(account, "token", "transfer", to, amount_wei)

    def pay_escrow(self, account: LocalAccount, amount_wei: int) -> TxResult:
        return self.transact(account, "token", "payEscrow", amount_wei)

    def withdraw_escrow(self, account: LocalAccount, amount_wei: int) -> TxResult:
        return self.transact(account, "token", "withdrawEscrow", amount_wei)

    def set_slashing_destination(self, account: LocalAccount, destination: str) -> TxResult:
        return self.transact(account, "payments", "setSlashingDestination", destination)

    # ------------------------------------------------------------------------ reads

    def view(self, contract: str, function: str, *args: Any) -> tuple:
        """Calls a view function; returns the decoded outputs as a tuple."""
        data = self._codecs[contract].encode_call(function, *args)
        result = self.sender.rpc(
            "eth_call", [{"to": self._addresses[contract], "data": "0x" + data.hex()}, "latest"]
        )
        return self._codecs[contract].decode_output(function, bytes.fromhex(result[2:]))

    def balance(self, address: str) -> int:
        """Wallet (ERC-20) balance in base units."""
        return int(self.view("token", "balanceOf", address)[0])

    def escrow(self, address: str) -> int:
        """Pooled escrow balance in base units."""
        return int(self.view("token", "escrowBalanceOf", address)[0])

    def balances(self, addresses: Iterable[str]) -> dict[str, tuple[int, int]]:
        """(wallet, escrow) of each address, read in one JSON-RPC batch."""
        addresses = list(addresses)
        token, codec = self._addresses["token"], self._codecs["token"]
        requests = []
        for a in addresses:
            for fn in ("balanceOf", "escrowBalanceOf"):
                data = "0x" + codec.encode_call(fn, a).hex()
                requests.append(("eth_call", [{"to": token, "data": data}, "latest"]))
        responses = self.w3.provider.make_batch_request(requests)
        if isinstance(responses, dict):
            raise RpcError(f"batch eth_call failed: {responses.get('error')}")
        values = []
        for r in sorted(responses, key=lambda r: r["id"]):
            if "error" in r:
                raise RpcError(f"eth_call failed: {r['error']}")
            values.append(int(r["result"], 16))
        return {a: (values[2 * i], values[2 * i + 1]) for i, a in enumerate(addresses)}

    def total_supply(self) -> int:
        return int(self.view("token", "totalSupply")[0])

    def deal_escrow(self, deal_id: str) -> tuple[int, int]:
        """(job creator, resource provider) tokens the deal holds in escrow."""
        jc, rp = self.view("payments", "dealEscrow", deal_id)
        return int(jc), int(rp)

    def agreement(self, deal_id: str) -> Agreement:
        return Agreement.from_abi(self.view("storage", "getAgreement", deal_id)[0])

    def state(self, deal_id: str) -> AgreementState:
        return self.agreement(deal_id).state

    def deal(self, deal_id: str) -> DealTerms:
        return DealTerms.from_abi(self.view("storage", "getDeal", deal_id)[0])

    def result(self, deal_id: str) -> Result:
        return Result(*self.view("storage", "getResult", deal_id)[0])

    def has_deal(self, deal_id: str) -> bool:
        return bool(self.view("storage", "hasDeal", deal_id)[0])

    def deals_for_party(self, address: str) -> list[str]:
        return list(self.view("storage", "getDealsForParty", address)[0])

    def mediator(self, deal_id: str) -> str:
        return to_checksum_address(self.view("mediation", "getMediator", deal_id)[0])

    def jackpot_balance(self) -> int:
        """Tokens in the tax / jackpot pool (0 without a pool)."""
        return self.balance(self.deployment.jackpot) if self.deployment.jackpot else 0

    # ---------------------------------------------------------------------- events

    def events(self, receipt: dict) -> tuple[ProtocolEvent, ...]:
        """The protocol events of a raw receipt, in log order."""
        out: list[ProtocolEvent] = []
        for log in receipt["logs"]:
            topics = self._event_sources.get(log["address"].lower(), ())
            if not log["topics"] or log["topics"][0] not in topics:
                continue
            topic = log["topics"][0]
            data = bytes.fromhex(log["data"][2:])
            if topic == PAYMENT_TOPIC:
                deal_id, payee, amount, reason, direction = abi_decode(
                    ["string", "address", "uint256", "uint8", "uint8"], data
                )
                out.append(
                    Payment(deal_id, to_checksum_address(payee), amount,
                            PaymentReason(reason), PaymentDirection(direction))
                )  # fmt: skip
            elif topic == DEAL_STATE_CHANGE_TOPIC:
                deal_id, state = abi_decode(["string", "uint8"], data)
                out.append(DealStateChange(deal_id, AgreementState(state)))
            elif topic == MEDIATION_VOTED_TOPIC:
                deal_id, mediator, vote = abi_decode(["string", "address", "uint8"], data)
                out.append(MediationVoted(deal_id, to_checksum_address(mediator), int(vote)))
            elif topic in (TAX_COLLECTED_TOPIC, JACKPOT_PAID_TOPIC):
                deal_id, who, amount = abi_decode(["string", "address", "uint256"], data)
                kind = TaxCollected if topic == TAX_COLLECTED_TOPIC else JackpotPaid
                out.append(kind(deal_id, to_checksum_address(who), amount))
            else:
                deal_id, mediator = abi_decode(["string", "address"], data)
                out.append(MediationRequested(deal_id, to_checksum_address(mediator)))
        return tuple(out)

    def _result(self, receipt: dict, function: str, caller: str) -> TxResult:
        block = self.sender.rpc("eth_getBlockByNumber", [receipt["blockNumber"], False])
        return TxResult(
            function=function,
            caller=caller,
            tx_hash=receipt["transactionHash"],
            block_number=int(receipt["blockNumber"], 16),
            timestamp=int(block["timestamp"], 16),
            gas_used=int(receipt["gasUsed"], 16),
            events=self.events(receipt),
        )

    # ------------------------------------------------------------------------ time

    def now(self) -> int:
        """Timestamp of the latest block."""
        return int(self.sender.rpc("eth_getBlockByNumber", ["latest", False])["timestamp"], 16)

    def set_next_timestamp(self, timestamp: int) -> None:
        """The next mined block (e.g. the next transaction) gets exactly `timestamp`."""
        self.sender.rpc("evm_setNextBlockTimestamp", [int(timestamp)])

    def increase_time(self, seconds: int) -> None:
        """Moves chain time forward by `seconds` and mines a block."""
        self.sender.rpc("evm_increaseTime", [int(seconds)])
        self.mine()

    def mine(self) -> None:
        self.sender.rpc("evm_mine", [])

    def snapshot(self) -> str:
        return self.sender.rpc("evm_snapshot", [])

    def revert(self, snapshot_id: str) -> None:
        if not self.sender.rpc("evm_revert", [snapshot_id]):
            raise RpcError(f"evm_revert({snapshot_id}) failed")
