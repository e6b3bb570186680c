"""Signing keys of the replay: one account per twin account, plus the funding account.

- **Local chains** (anvil): keys derive from a mnemonic (default anvil's public test mnemonic):
  the funder is index `funder_index` (0: anvil's prefunded deployer) and twin account `a` is index
  `first_party_index + a`, at `m/44'/60'/0'/0/<index>`.
- **Public networks**: keys come from environment variables only, never from files in the repo:
  `TWIN_REPLAY_MNEMONIC` (the parties' mnemonic, same derivation) and `TWIN_REPLAY_FUNDER_KEY`
  (the funding account's private key, hex). Keys are never printed or written: objects of this
  module show addresses only.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

from eth_account import Account
from eth_account.hdaccount import seed_from_mnemonic
from eth_account.hdaccount.deterministic import HDPath, Node, derive_child_key
from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address

from bridge.anvil import DEFAULT_MNEMONIC
from twin.errors import UserError

MNEMONIC_ENV = "TWIN_REPLAY_MNEMONIC"
FUNDER_KEY_ENV = "TWIN_REPLAY_FUNDER_KEY"
ACCOUNT_PATH = "m/44'/60'/0'/0"


class KeysError(UserError, ValueError):
    """Keys are missing or do not match the deployment (message names the variable)."""


@functools.lru_cache(maxsize=8)
def _parent(mnemonic: str) -> tuple[bytes, bytes]:
    """(key, chain code) of `m/44'/60'/0'/0` (derived once; children are one step each)."""
    from eth_account.hdaccount.deterministic import hmac_sha512

    main = hmac_sha512(b"Bitcoin seed", seed_from_mnemonic(mnemonic, ""))
    key, chain = main[:32], main[32:]
    for node in HDPath(ACCOUNT_PATH)._path:
        key, chain = derive_child_key(key, chain, node)
    return key, chain


@functools.lru_cache(maxsize=4096)
def mnemonic_account(mnemonic: str, index: int) -> LocalAccount:
    """The account at `m/44'/60'/0'/0/index` of `mnemonic`."""
    key, chain = _parent(mnemonic)
    child, _ = derive_child_key(key, chain, Node.decode(str(index)))
    return Account.from_key(child)


@dataclass(frozen=True)
class Keys:
    """Where the replay's keys come from. Holds the mnemonic (never shown in its repr)."""

    mnemonic: str = DEFAULT_MNEMONIC
    first_party_index: int = 1
    funder_index: int = 0
    funder_key: str = ""  # private key of the funder (public networks); "" = mnemonic index
    source: str = "local mnemonic"

    def __repr__(self) -> str:
        return f"Keys(source={self.source!r}, funder={self.funder.address})"

    __str__ = __repr__

    @property
    def funder(self) -> LocalAccount:
        if self.funder_key:
            return Account.from_key(self.funder_key)
        return mnemonic_account(self.mnemonic, self.funder_index)

    def party(self, account: int) -> LocalAccount:
        """The key of twin account `account`."""
        return mnemonic_account(self.mnemonic, self.first_party_index + account)

    def address(self, account: int) -> str:
        return to_checksum_address(self.party(account).address)

    @property
    def is_public_test_mnemonic(self) -> bool:
        return self.mnemonic == DEFAULT_MNEMONIC and not self.funder_key

    @classmethod
    def from_env(
        cls,
        mnemonic_var: str = MNEMONIC_ENV,
        funder_key_var: str = FUNDER_KEY_ENV,
        first_party_index: int = 0,
    ) -> Keys:
        """Keys of a public network, from environment variables (both required)."""
        mnemonic = os.environ.get(mnemonic_var, "").strip()
        funder_key = os.environ.get(funder_key_var, "").strip()
        missing = [v for v, x in ((mnemonic_var, mnemonic), (funder_key_var, funder_key)) if not x]
        if missing:
            raise KeysError(
                f"keys: set {' and '.join(missing)} in the environment (a public network's keys "
                "never come from files or the command line)"
            )
        try:
            Account.from_key(funder_key)
        except Exception:  # noqa: BLE001 - any parse failure: do not echo the value
            raise KeysError(f"keys: {funder_key_var} is not a hex private key") from None
        try:
            seed_from_mnemonic(mnemonic, "")
        except Exception:  # noqa: BLE001
            raise KeysError(f"keys: {mnemonic_var} is not a BIP-39 mnemonic") from None
        return cls(
            mnemonic, first_party_index, 0, funder_key, source=f"environment ({mnemonic_var})"
        )
