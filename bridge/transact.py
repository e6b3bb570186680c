"""Sign and send transactions from local accounts (eth-account), one account per party.

A call is first estimated (which surfaces a revert before anything is mined); a revert raises
`ChainCallError` naming the function, the caller and the decoded custom error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.contract.contract import ContractFunction
from web3.exceptions import ContractLogicError, Web3RPCError
from web3.types import TxReceipt

from bridge.errors import ChainCallError, DecodedError, ErrorDecoder, revert_data_of

# Gas headroom over the estimate (refunds make the estimate the minimal limit that succeeds).
GAS_MARGIN_NUM, GAS_MARGIN_DEN = 5, 4
RECEIPT_TIMEOUT_S = 60.0


class Sender:
    """Sends transactions signed by local accounts and decodes reverts."""

    def __init__(
        self,
        w3: Web3,
        decoder: ErrorDecoder,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        self.w3 = w3
        self.decoder = decoder
        self.labels = {k.lower(): v for k, v in (labels or {}).items()}
        self.chain_id = w3.eth.chain_id

    def label(self, address: str) -> str:
        return self.labels.get(address.lower(), "")

    def _fees(self) -> dict[str, int]:
        base_fee = int(self.w3.eth.get_block("latest")["baseFeePerGas"])
        priority = 10**9
        return {"maxFeePerGas": 2 * base_fee + priority, "maxPriorityFeePerGas": priority}

    def _fail(self, function: str, account: LocalAccount, exc: BaseException) -> ChainCallError:
        data = revert_data_of(exc)
        if data is None:
            error = DecodedError(type(exc).__name__, {"message": str(exc)}, "0x")
        else:
            error = self.decoder.decode(data)
        return ChainCallError(function, account.address, error, self.label(account.address))

    def call(self, account: LocalAccount, fn: ContractFunction, function: str) -> TxReceipt:
        """Estimates, signs, sends and waits for `fn` sent by `account`."""
        sender = {"from": account.address}
        try:
            gas = fn.estimate_gas(sender, block_identifier="pending")
        except (ContractLogicError, Web3RPCError, ValueError) as exc:
            raise self._fail(function, account, exc) from None
        tx = fn.build_transaction(
            {
                **sender,
                "chainId": self.chain_id,
                "nonce": self.w3.eth.get_transaction_count(account.address, "pending"),
                "gas": gas * GAS_MARGIN_NUM // GAS_MARGIN_DEN + 10_000,
                **self._fees(),
            }
        )
        return self._send(account, tx, function)

    def deploy(self, account: LocalAccount, contract: Any, args: tuple, function: str) -> TxReceipt:
        """Deploys `contract` (a web3 contract factory) with constructor `args`."""
        constructor = contract.constructor(*args)
        sender = {"from": account.address}
        try:
            gas = constructor.estimate_gas(sender)
        except (ContractLogicError, Web3RPCError, ValueError) as exc:
            raise self._fail(function, account, exc) from None
        tx = constructor.build_transaction(
            {
                **sender,
                "chainId": self.chain_id,
                "nonce": self.w3.eth.get_transaction_count(account.address, "pending"),
                "gas": gas * GAS_MARGIN_NUM // GAS_MARGIN_DEN + 10_000,
                **self._fees(),
            }
        )
        return self._send(account, tx, function)

    def _send(self, account: LocalAccount, tx: dict, function: str) -> TxReceipt:
        signed = account.sign_transaction(tx)
        tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
        receipt = self.w3.eth.wait_for_transaction_receipt(
            tx_hash, timeout=RECEIPT_TIMEOUT_S, poll_latency=0.005
        )
        if receipt["status"] != 1:
            raise ChainCallError(
                function, account.address, self._trace_revert(tx_hash), self.label(account.address)
            )
        return receipt

    def _trace_revert(self, tx_hash: bytes) -> DecodedError:
        """Revert data of a mined, failed transaction (anvil's `debug_traceTransaction`)."""
        try:
            trace = self.w3.provider.make_request(
                "debug_traceTransaction", [Web3.to_hex(tx_hash), {"tracer": "callTracer"}]
            )
            output = trace["result"].get("output")
        except Exception as exc:  # noqa: BLE001 - tracing is best effort
            return DecodedError("Reverted", {"trace": str(exc)}, "0x")
        return self.decoder.decode(output)
