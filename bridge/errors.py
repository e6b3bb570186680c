"""Decode revert data (custom errors of every built contract, `Error(string)`, `Panic(uint256)`)
and the error raised when a transaction reverts."""

from __future__ import annotations

from dataclasses import dataclass

from eth_abi import decode as abi_decode
from eth_utils import keccak, to_checksum_address

from bridge.abi import canonical_type
from bridge.types import ENUMS

PANIC_CODES = {
    0x01: "assert failed",
    0x11: "arithmetic overflow or underflow",
    0x12: "division or modulo by zero",
    0x21: "invalid enum value",
    0x32: "array index out of bounds",
    0x41: "out of memory",
}


@dataclass(frozen=True)
class DecodedError:
    name: str
    args: dict[str, object]
    data: str

    def __str__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.args.items())
        return f"{self.name}({inner})"


class ErrorDecoder:
    """Maps 4-byte selectors of the given ABI entries' errors to names and typed arguments."""

    def __init__(self, abi_entries: list[dict]) -> None:
        self._errors: dict[bytes, dict] = {}
        for entry in abi_entries:
            if entry.get("type") != "error":
                continue
            types = [canonical_type(i) for i in entry["inputs"]]
            selector = keccak(text=f"{entry['name']}({','.join(types)})")[:4]
            self._errors[selector] = {
                "name": entry["name"],
                "inputs": entry["inputs"],
                "types": types,
            }

    def decode(self, data: bytes | str | None) -> DecodedError:
        raw = _to_bytes(data)
        hexdata = "0x" + raw.hex()
        if len(raw) < 4:
            return DecodedError("EmptyRevert", {}, hexdata)
        selector, body = raw[:4], raw[4:]
        if selector == keccak(text="Error(string)")[:4]:
            (message,) = abi_decode(["string"], body)
            return DecodedError("Error", {"message": message}, hexdata)
        if selector == keccak(text="Panic(uint256)")[:4]:
            (code,) = abi_decode(["uint256"], body)
            return DecodedError(
                "Panic", {"code": hex(code), "meaning": PANIC_CODES.get(code, "?")}, hexdata
            )
        spec = self._errors.get(selector)
        if spec is None:
            return DecodedError("UnknownError", {"selector": "0x" + selector.hex()}, hexdata)
        values = abi_decode(spec["types"], body)
        args: dict[str, object] = {}
        for i, (inp, value) in enumerate(zip(spec["inputs"], values, strict=True)):
            args[inp.get("name") or f"arg{i}"] = _render(inp, value)
        return DecodedError(spec["name"], args, hexdata)


def _render(inp: dict, value: object) -> object:
    internal = inp.get("internalType", "")
    if internal.startswith("enum "):
        enum = ENUMS.get(internal.split()[-1].split(".")[-1])
        if enum is not None and isinstance(value, int):
            try:
                return enum(value)
            except ValueError:
                return value
    if inp["type"] == "address" and isinstance(value, str):
        return to_checksum_address(value)
    return value


def _to_bytes(data: bytes | str | None) -> bytes:
    if data is None:
        return b""
    if isinstance(data, bytes | bytearray):
        return bytes(data)
    text = data[2:] if data.startswith("0x") else data
    try:
        return bytes.fromhex(text)
    except ValueError:
        return b""


def revert_data_of(exc: BaseException) -> str | None:
    """The hex revert data carried by a web3 exception, if any."""
    candidates: list[object] = [getattr(exc, "data", None)]
    candidates.extend(exc.args)
    rpc = getattr(exc, "rpc_response", None)
    if isinstance(rpc, dict):
        candidates.append(rpc.get("error", {}).get("data"))
    for c in candidates:
        if isinstance(c, dict):
            c = c.get("data")
        if isinstance(c, str) and c.startswith("0x") and len(c) >= 10:
            try:
                bytes.fromhex(c[2:])
            except ValueError:
                continue
            return c
    return None


class ChainCallError(RuntimeError):
    """A contract call reverted; names the function, the caller and the decoded error."""

    def __init__(self, function: str, caller: str, error: DecodedError, caller_label: str = ""):
        self.function = function
        self.caller = caller
        self.error = error
        who = f"{caller_label} {caller}" if caller_label else caller
        super().__init__(f"{function} by {who} reverted: {error}")

    @property
    def error_name(self) -> str:
        return self.error.name

    @property
    def error_args(self) -> dict[str, object]:
        return self.error.args
