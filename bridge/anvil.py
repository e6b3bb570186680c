"""Start, probe and stop a local anvil node (the binary pinned by package.json).

`Anvil` is a context manager: it picks a free loopback port, starts anvil with a fixed mnemonic,
chain id and hardfork, waits until the node answers JSON-RPC, and stops it (terminate, then kill)
on exit.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from twin.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MNEMONIC = "test test test test test test test test test test test junk"
DEFAULT_CHAIN_ID = 31337
# The EVM version the contracts are compiled for (scripts/build_contracts.mjs).
DEFAULT_HARDFORK = "prague"
SETUP_COMMAND = "bash scripts/setup.sh"


class AnvilNotFoundError(UserError, FileNotFoundError):
    """The anvil binary is not installed (the npm step of the set-up has not run)."""


class AnvilStartError(RuntimeError):
    """anvil exited or did not answer in time."""


def anvil_binary() -> Path:
    """Path of the anvil binary: `$TWIN_ANVIL`, else the npm platform package."""
    override = os.environ.get("TWIN_ANVIL")
    if override:
        path = Path(override)
    else:
        system = platform.system().lower()
        machine = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
            platform.machine().lower(), platform.machine().lower()
        )
        path = (
            REPO_ROOT
            / "node_modules"
            / "@foundry-rs"
            / f"anvil-{system}-{machine}"
            / "bin"
            / "anvil"
        )
    if not path.is_file() or not os.access(path, os.X_OK):
        raise AnvilNotFoundError(
            f"anvil binary not found at {path}; run the set-up first: `{SETUP_COMMAND}` "
            "(it installs the pinned npm tools), or set TWIN_ANVIL to an anvil binary"
        )
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rpc(url: str, method: str, params: list | None = None, timeout_s: float = 2.0):
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []})
    request = urllib.request.Request(
        url, data=body.encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        return json.loads(response.read())["result"]


class Anvil:
    """A local anvil node on 127.0.0.1.

    Args:
        port: TCP port; a free one when None.
        mnemonic: seed of the prefunded accounts (party accounts derive from it).
        chain_id: EIP-155 chain id.
        accounts: number of prefunded accounts.
        balance_ether: ether of each prefunded account (gas money only).
        genesis_timestamp_s: unix time of the genesis block (None: wall clock).
        hardfork: EVM hardfork, matching the compiled contracts.
        startup_timeout_s: how long to wait for the node to answer.
        extra_args: further command-line arguments (e.g. `("--steps-tracing",)`).
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        mnemonic: str = DEFAULT_MNEMONIC,
        chain_id: int = DEFAULT_CHAIN_ID,
        accounts: int = 20,
        balance_ether: int = 10_000,
        genesis_timestamp_s: int | None = None,
        hardfork: str = DEFAULT_HARDFORK,
        startup_timeout_s: float = 30.0,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.extra_args = tuple(extra_args)
        self.mnemonic = mnemonic
        self.chain_id = chain_id
        self.accounts = accounts
        self.balance_ether = balance_ether
        self.genesis_timestamp_s = genesis_timestamp_s
        self.hardfork = hardfork
        self.startup_timeout_s = startup_timeout_s
        self._requested_port = port
        self.port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise AnvilStartError("anvil is not running")
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> Anvil:
        """Starts the node and waits until it answers `eth_chainId`; idempotent."""
        if self.running:
            return self
        binary = anvil_binary()
        attempts = 1 if self._requested_port is not None else 3
        last_error = ""
        for _ in range(attempts):
            self.port = self._requested_port or free_port()
            self._log = tempfile.TemporaryFile()
            command = [
                str(binary),
                "--host", "127.0.0.1",
                "--port", str(self.port),
                "--mnemonic", self.mnemonic,
                "--chain-id", str(self.chain_id),
                "--accounts", str(self.accounts),
                "--balance", str(self.balance_ether),
                "--hardfork", self.hardfork,
            ]  # fmt: skip
            if self.genesis_timestamp_s is not None:
                command += ["--timestamp", str(self.genesis_timestamp_s)]
            command += list(self.extra_args)
            self._process = subprocess.Popen(
                command, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
            last_error = self._wait_ready()
            if not last_error:
                return self
            self.stop()
        raise AnvilStartError(f"anvil did not start: {last_error}")

    def _wait_ready(self) -> str:
        deadline = time.monotonic() + self.startup_timeout_s
        assert self._process is not None
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return f"exited with code {self._process.returncode}: {self._read_log()}"
            try:
                chain_id = int(_rpc(self.url, "eth_chainId"), 16)
            except (urllib.error.URLError, ConnectionError, OSError, KeyError, ValueError):
                time.sleep(0.05)
                continue
            if chain_id != self.chain_id:
                return f"answered chain id {chain_id}, expected {self.chain_id}"
            return ""
        return f"no answer within {self.startup_timeout_s} s: {self._read_log()}"

    def _read_log(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-2000:]

    def stop(self) -> None:
        """Stops the node (SIGTERM, then SIGKILL after 5 s); idempotent."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Anvil:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __del__(self) -> None:  # a forgotten node must not outlive the interpreter
        try:
            self.stop()
        except Exception:  # noqa: BLE001 - best effort during interpreter shutdown
            pass
