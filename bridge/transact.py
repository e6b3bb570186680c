"""Sign and send transactions from local accounts (eth-account), one account per party, with raw
JSON-RPC (fast enough for property tests that send thousands of transactions).

A call is first estimated against the pending block (which surfaces a revert before anything is
mined, and honours `evm_setNextBlockTimestamp`); a revert raises `ChainCallError` naming the
function, the caller and the decoded custom error.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from eth_account.signers.local import LocalAccount
from web3 import Web3

from bridge.errors import ChainCallError, DecodedError, ErrorDecoder

# Gas headroom over the estimate (the estimate is the smallest limit that succeeds).
GAS_MARGIN_NUM, GAS_MARGIN_DEN = 5, 4
GAS_MARGIN_ADD = 10_000
RECEIPT_TIMEOUT_S = 60.0
LOCAL_CHAIN_IDS = frozenset({31337, 1337})
# Fee cap on a local dev chain (anvil's base fee starts at 1 gwei and only moves a little).
LOCAL_MAX_FEE_WEI = 100 * 10**9
PRIORITY_FEE_WEI = 10**9


class RpcError(RuntimeError):
    """A JSON-RPC request failed (not a contract revert)."""


class Sender:
    """Sends transactions signed by local accounts and decodes reverts."""

    def __init__(
        self, w3: Web3, decoder: ErrorDecoder, labels: Mapping[str, str] | None = None
    ) -> None:
        self.w3 = w3
        self.decoder = decoder
        self.labels = {k.lower(): v for k, v in (labels or {}).items()}
        self.chain_id = int(self.rpc("eth_chainId", []), 16)

    def label(self, address: str) -> str:
        return self.labels.get(address.lower(), "")

    def rpc(self, method: str, params: list):
        response = self.w3.provider.make_request(method, params)
        if "error" in response:
            raise RpcError(f"{method} failed: {response['error']}")
        return response["result"]

    def _fees(self) -> dict[str, int]:
        if self.chain_id in LOCAL_CHAIN_IDS:
            return {"maxFeePerGas": LOCAL_MAX_FEE_WEI, "maxPriorityFeePerGas": PRIORITY_FEE_WEI}
        base_fee = int(self.rpc("eth_getBlockByNumber", ["latest", False])["baseFeePerGas"], 16)
        return {
            "maxFeePerGas": 2 * base_fee + PRIORITY_FEE_WEI,
            "maxPriorityFeePerGas": PRIORITY_FEE_WEI,
        }

    def send(self, account: LocalAccount, to: str | None, data: bytes, function: str) -> dict:
        """Estimates, signs, sends and waits for one transaction; returns the raw receipt."""
        call = {"from": account.address, "data": "0x" + data.hex()}
        if to is not None:
            call["to"] = to
        response = self.w3.provider.make_request("eth_estimateGas", [call, "pending"])
        if "error" in response:
            raise ChainCallError(
                function,
                account.address,
                self._decode_rpc_error(response["error"]),
                self.label(account.address),
            )
        gas = int(response["result"], 16)
        nonce = int(self.rpc("eth_getTransactionCount", [account.address, "pending"]), 16)
        tx = {
            "chainId": self.chain_id,
            "nonce": nonce,
            "gas": gas * GAS_MARGIN_NUM // GAS_MARGIN_DEN + GAS_MARGIN_ADD,
            "data": data,
            "value": 0,
            "type": 2,
            **self._fees(),
        }
        if to is not None:
            tx["to"] = Web3.to_checksum_address(to)
        signed = account.sign_transaction(tx)
        tx_hash = self.rpc("eth_sendRawTransaction", ["0x" + signed.raw_transaction.hex()])
        receipt = self._wait(tx_hash)
        if int(receipt["status"], 16) != 1:
            raise ChainCallError(
                function, account.address, self._trace_revert(tx_hash), self.label(account.address)
            )
        return receipt

    def _wait(self, tx_hash: str) -> dict:
        deadline = time.monotonic() + RECEIPT_TIMEOUT_S
        delay = 0.001
        while True:
            receipt = self.rpc("eth_getTransactionReceipt", [tx_hash])
            if receipt is not None:
                return receipt
            if time.monotonic() > deadline:
                raise RpcError(f"no receipt for {tx_hash} within {RECEIPT_TIMEOUT_S} s")
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    def _decode_rpc_error(self, error: dict) -> DecodedError:
        data = error.get("data")
        if isinstance(data, dict):
            data = data.get("data")
        if isinstance(data, str) and data.startswith("0x"):
            return self.decoder.decode(data)
        return DecodedError("RpcError", {"message": error.get("message", str(error))}, "0x")

    def _trace_revert(self, tx_hash: str) -> DecodedError:
        """Revert data of a mined, failed transaction (anvil's `debug_traceTransaction`)."""
        try:
            trace = self.rpc("debug_traceTransaction", [tx_hash, {"tracer": "callTracer"}])
        except RpcError as exc:
            return DecodedError("Reverted", {"trace": str(exc)}, "0x")
        return self.decoder.decode(trace.get("output"))
