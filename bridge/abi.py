"""Fast ABI encoding and decoding of calls from a contract ABI (eth-abi directly, selectors
computed once), for the hot paths of the client: web3's contract objects are flexible but cost
milliseconds per call."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import keccak, to_checksum_address


def canonical_type(entry: dict) -> str:
    """ABI type string of one input or output (tuples expanded)."""
    t = entry["type"]
    if t.startswith("tuple"):
        inner = ",".join(canonical_type(c) for c in entry["components"])
        return f"({inner}){t[len('tuple') :]}"
    return t


class AbiCodec:
    """Encodes calls to, and decodes results of, the functions of one ABI (unique names)."""

    def __init__(self, abi: Sequence[dict]) -> None:
        self._functions: dict[str, tuple[bytes, list[str], list[str]]] = {}
        self._outputs: dict[str, list[dict]] = {}
        self._constructor: list[str] = []
        for entry in abi:
            if entry.get("type") == "function":
                inputs = [canonical_type(i) for i in entry["inputs"]]
                outputs = [canonical_type(o) for o in entry.get("outputs", [])]
                selector = keccak(text=f"{entry['name']}({','.join(inputs)})")[:4]
                self._functions[entry["name"]] = (selector, inputs, outputs)
                self._outputs[entry["name"]] = entry.get("outputs", [])
            elif entry.get("type") == "constructor":
                self._constructor = [canonical_type(i) for i in entry["inputs"]]

    def encode_call(self, name: str, *args: Any) -> bytes:
        selector, inputs, _ = self._functions[name]
        return selector + abi_encode(inputs, list(args))

    def decode_output(self, name: str, data: bytes) -> tuple:
        """Decoded outputs, addresses checksummed."""
        values = abi_decode(self._functions[name][2], data)
        return tuple(
            _checksum(entry, value)
            for entry, value in zip(self._outputs[name], values, strict=True)
        )

    def encode_constructor(self, bytecode: str, *args: Any) -> bytes:
        code = bytes.fromhex(bytecode[2:] if bytecode.startswith("0x") else bytecode)
        return code + (abi_encode(self._constructor, list(args)) if self._constructor else b"")


def _checksum(entry: dict, value: Any) -> Any:
    """`value` (decoded as `entry`'s type) with every address checksummed."""
    t = entry["type"]
    if t.endswith("]"):
        inner = {**entry, "type": t[: t.rindex("[")]}
        return tuple(_checksum(inner, v) for v in value)
    if t == "tuple":
        return tuple(_checksum(c, v) for c, v in zip(entry["components"], value, strict=True))
    if t == "address":
        return to_checksum_address(value)
    return value
