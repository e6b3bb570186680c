"""A thin typed client over a deployed Lilypad contract set.

Every party signs its own transactions from a local account (`parties_from_mnemonic`). Each
protocol call returns a `TxResult` with the decoded `Payment` / `DealStateChange` /
`MediationRequested` events of the transaction, in log order; a revert raises `ChainCallError`
naming the function, the caller and the decoded custom error. Chain time can be advanced or set.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from eth_abi import decode as abi_decode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak, to_checksum_address
from web3 import Web3
from web3.types import TxReceipt

from bridge.anvil import DEFAULT_MNEMONIC
from bridge.artifacts import all_abis, load_artifact
from bridge.deploy import Deployment
from bridge.errors import ErrorDecoder
from bridge.transact import Sender
from bridge.types import (
    Agreement,
    AgreementState,
    DealStateChange,
    DealTerms,
    MediationRequested,
    Payment,
    PaymentDirection,
    PaymentReason,
    ProtocolEvent,
    Result,
    TxResult,
)

Account.enable_unaudited_hdwallet_features()

PAYMENT_TOPIC = keccak(text="Payment(string,address,uint256,uint8,uint8)")
DEAL_STATE_CHANGE_TOPIC = keccak(text="DealStateChange(string,uint8)")
MEDIATION_REQUESTED_TOPIC = keccak(text="MediationRequested(string,address)")


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

        def contract(name: str, address: str):
            return w3.eth.contract(address=address, abi=load_artifact(name).abi)

        mediation_name = {"v1": "LilypadMediation"}.get(
            deployment.mediation_kind, "LilypadMediation"
        )
        self.controller = contract("LilypadController", deployment.controller)
        self.storage = contract("LilypadStorage", deployment.storage)
        self.payments = contract("LilypadPayments", deployment.payments)
        self.mediation = contract(mediation_name, deployment.mediation)
        self.users = contract("LilypadUsers", deployment.users)
        self.token = contract("LilypadToken", deployment.token)
        self._event_sources = {
            to_checksum_address(deployment.payments): PAYMENT_TOPIC,
            to_checksum_address(deployment.storage): DEAL_STATE_CHANGE_TOPIC,
            to_checksum_address(deployment.mediation): MEDIATION_REQUESTED_TOPIC,
        }

    def add_labels(self, labels: Mapping[str, str]) -> None:
        self.sender.labels.update({k.lower(): v for k, v in labels.items()})

    # ----------------------------------------------------------------- protocol calls

    def _run(self, account: LocalAccount, fn, function: str) -> TxResult:
        receipt = self.sender.call(account, fn, function)
        return self._result(receipt, function, account.address)

    def agree(self, account: LocalAccount, terms: DealTerms) -> TxResult:
        return self._run(account, self.controller.functions.agree(*terms.abi_args()), "agree")

    def add_result(
        self,
        account: LocalAccount,
        deal_id: str,
        results_id: str,
        data_id: str,
        instruction_count: int,
    ) -> TxResult:
        fn = self.controller.functions.addResult(deal_id, results_id, data_id, instruction_count)
        return self._run(account, fn, "addResult")

    def accept_result(self, account: LocalAccount, deal_id: str) -> TxResult:
        return self._run(account, self.controller.functions.acceptResult(deal_id), "acceptResult")

    def check_result(self, account: LocalAccount, deal_id: str) -> TxResult:
        return self._run(account, self.controller.functions.checkResult(deal_id), "checkResult")

    def timeout_agree(self, account: LocalAccount, deal_id: str) -> TxResult:
        return self._run(account, self.controller.functions.timeoutAgree(deal_id), "timeoutAgree")

    def timeout_submit_result(self, account: LocalAccount, deal_id: str) -> TxResult:
        fn = self.controller.functions.timeoutSubmitResult(deal_id)
        return self._run(account, fn, "timeoutSubmitResult")

    def timeout_judge_result(self, account: LocalAccount, deal_id: str) -> TxResult:
        fn = self.controller.functions.timeoutJudgeResult(deal_id)
        return self._run(account, fn, "timeoutJudgeResult")

    def timeout_mediate_result(self, account: LocalAccount, deal_id: str) -> TxResult:
        fn = self.controller.functions.timeoutMediateResult(deal_id)
        return self._run(account, fn, "timeoutMediateResult")

    def mediation_accept_result(self, account: LocalAccount, deal_id: str) -> TxResult:
        fn = self.mediation.functions.mediationAcceptResult(deal_id)
        return self._run(account, fn, "mediationAcceptResult")

    def mediation_reject_result(self, account: LocalAccount, deal_id: str) -> TxResult:
        fn = self.mediation.functions.mediationRejectResult(deal_id)
        return self._run(account, fn, "mediationRejectResult")

    # ---------------------------------------------------------------------- tokens

    def transfer(self, account: LocalAccount, to: str, amount_wei: int) -> TxResult:
        return self._run(account, self.token.functions.transfer(to, amount_wei), "transfer")

    def pay_escrow(self, account: LocalAccount, amount_wei: int) -> TxResult:
        return self._run(account, self.token.functions.payEscrow(amount_wei), "payEscrow")

    def withdraw_escrow(self, account: LocalAccount, amount_wei: int) -> TxResult:
        fn = self.token.functions.withdrawEscrow(amount_wei)
        return self._run(account, fn, "withdrawEscrow")

    def set_slashing_destination(self, account: LocalAccount, destination: str) -> TxResult:
        fn = self.payments.functions.setSlashingDestination(destination)
        return self._run(account, fn, "setSlashingDestination")

    # ------------------------------------------------------------------------ reads

    def balance(self, address: str) -> int:
        """Wallet (ERC-20) balance in base units."""
        return int(self.token.functions.balanceOf(address).call())

    def escrow(self, address: str) -> int:
        """Pooled escrow balance in base units."""
        return int(self.token.functions.escrowBalanceOf(address).call())

    def total_supply(self) -> int:
        return int(self.token.functions.totalSupply().call())

    def deal_escrow(self, deal_id: str) -> tuple[int, int]:
        """(job creator, resource provider) tokens the deal holds in escrow."""
        jc, rp = self.payments.functions.dealEscrow(deal_id).call()
        return int(jc), int(rp)

    def agreement(self, deal_id: str) -> Agreement:
        return Agreement.from_abi(self.storage.functions.getAgreement(deal_id).call())

    def state(self, deal_id: str) -> AgreementState:
        return self.agreement(deal_id).state

    def deal(self, deal_id: str) -> DealTerms:
        return DealTerms.from_abi(self.storage.functions.getDeal(deal_id).call())

    def result(self, deal_id: str) -> Result:
        return Result(*self.storage.functions.getResult(deal_id).call())

    def has_deal(self, deal_id: str) -> bool:
        return bool(self.storage.functions.hasDeal(deal_id).call())

    def deals_for_party(self, address: str) -> list[str]:
        return list(self.storage.functions.getDealsForParty(address).call())

    def mediator(self, deal_id: str) -> str:
        return to_checksum_address(self.mediation.functions.getMediator(deal_id).call())

    # ---------------------------------------------------------------------- events

    def events(self, receipt: TxReceipt) -> tuple[ProtocolEvent, ...]:
        """The protocol events of a receipt, in log order."""
        out: list[ProtocolEvent] = []
        for log in receipt["logs"]:
            topic = self._event_sources.get(to_checksum_address(log["address"]))
            if topic is None or not log["topics"] or bytes(log["topics"][0]) != topic:
                continue
            data = bytes(log["data"])
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
            else:
                deal_id, mediator = abi_decode(["string", "address"], data)
                out.append(MediationRequested(deal_id, to_checksum_address(mediator)))
        return tuple(out)

    def _result(self, receipt: TxReceipt, function: str, caller: str) -> TxResult:
        block = self.w3.eth.get_block(receipt["blockNumber"])
        return TxResult(
            function=function,
            caller=caller,
            tx_hash=Web3.to_hex(receipt["transactionHash"]),
            block_number=int(receipt["blockNumber"]),
            timestamp=int(block["timestamp"]),
            gas_used=int(receipt["gasUsed"]),
            events=self.events(receipt),
        )

    # ------------------------------------------------------------------------ time

    def now(self) -> int:
        """Timestamp of the latest block."""
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def set_next_timestamp(self, timestamp: int) -> None:
        """The next mined block (e.g. the next transaction) gets exactly `timestamp`."""
        self._rpc("evm_setNextBlockTimestamp", [int(timestamp)])

    def increase_time(self, seconds: int) -> None:
        """Moves chain time forward by `seconds` and mines a block."""
        self._rpc("evm_increaseTime", [int(seconds)])
        self.mine()

    def mine(self) -> None:
        self._rpc("evm_mine", [])

    def snapshot(self) -> str:
        return self._rpc("evm_snapshot", [])

    def revert(self, snapshot_id: str) -> None:
        if not self._rpc("evm_revert", [snapshot_id]):
            raise RuntimeError(f"evm_revert({snapshot_id}) failed")

    def _rpc(self, method: str, params: list):
        response = self.w3.provider.make_request(method, params)
        if "error" in response:
            raise RuntimeError(f"{method} failed: {response['error']}")
        return response.get("result")
