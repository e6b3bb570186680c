"""The in-memory ledger: a wallet and a pooled escrow balance per account, in integer wei.

This is the simulator's backend of the one ledger interface (STYLE item 6); the chain bridge is the
other backend. Balances are exact Python integers (token base units, 18 decimals: amounts of
thousands of tokens exceed int64), kept in lists for fast scalar updates. Float mirrors in whole
tokens (``wallet_tokens``, ``escrow_tokens``, ``locked_tokens``) serve observations and rewards.

Every operation moves tokens between two balances, so ``total()`` never changes after genesis;
``mint`` is the only way tokens enter (genesis allocations). Escrow that a protocol defect leaves
locked for good is tracked in ``locked`` (it is still in escrow, so conservation still holds,
but it is not wealth its owner can reclaim).
"""

from __future__ import annotations

import numpy as np

WEI_PER_TOKEN = 10**18


class InsufficientFunds(ValueError):
    """A movement asked for more than the balance holds."""

    def __init__(self, account: int, balance: str, have: int, need: int) -> None:
        super().__init__(f"account {account}: {balance} holds {have} wei, needs {need} wei")
        self.account, self.balance, self.have, self.need = account, balance, have, need


class Ledger:
    """Wallets and pooled escrow per account. All amounts are non-negative ``int`` wei."""

    __slots__ = (
        "wallet",
        "escrow",
        "locked",
        "wallet_tokens",
        "escrow_tokens",
        "locked_tokens",
        "minted",
        "_wt",
        "_et",
        "_lt",
    )

    def __init__(self, n_accounts: int) -> None:
        self.wallet: list[int] = [0] * n_accounts
        self.escrow: list[int] = [0] * n_accounts
        self.locked: list[int] = [0] * n_accounts
        self.wallet_tokens = np.zeros(n_accounts)
        self.escrow_tokens = np.zeros(n_accounts)
        self.locked_tokens = np.zeros(n_accounts)
        self.minted = 0
        self._bind()

    def _bind(self) -> None:
        # the movements update the float mirrors through memoryviews of the same buffers: an item
        # update then makes no numpy scalars (2x cheaper), with the same double arithmetic
        self._wt = memoryview(self.wallet_tokens)
        self._et = memoryview(self.escrow_tokens)
        self._lt = memoryview(self.locked_tokens)

    def __getstate__(self) -> dict:  # memoryviews cannot be copied or pickled: rebound on load
        return {k: getattr(self, k) for k in self.__slots__ if not k.startswith("_")}

    def __setstate__(self, state: dict) -> None:
        for k, v in state.items():
            setattr(self, k, v)
        self._bind()

    @property
    def n_accounts(self) -> int:
        return len(self.wallet)

    def total(self) -> int:
        """All tokens held anywhere (wallets plus escrow)."""
        return sum(self.wallet) + sum(self.escrow)

    def wealth_tokens(self) -> np.ndarray:
        """Per account: wallet plus the escrow it can still reclaim, in tokens (float)."""
        return self.wallet_tokens + self.escrow_tokens - self.locked_tokens

    # -- movements ---------------------------------------------------------------------------
    def mint(self, account: int, amount: int) -> None:
        """Genesis allocation (the only operation that changes ``total``)."""
        _check_amount(amount)
        self.wallet[account] += amount
        self._wt[account] += amount / WEI_PER_TOKEN
        self.minted += amount

    def pay_in(self, account: int, amount: int) -> None:
        """Wallet -> own escrow."""
        w = self.wallet[account]
        if w < amount:
            raise InsufficientFunds(account, "wallet", w, amount)
        self.wallet[account] = w - amount
        self.escrow[account] += amount
        f = amount / WEI_PER_TOKEN
        self._wt[account] -= f
        self._et[account] += f

    def refund(self, account: int, amount: int) -> None:
        """Own escrow -> wallet."""
        e = self.escrow[account]
        if e < amount:
            raise InsufficientFunds(account, "escrow", e, amount)
        self.escrow[account] = e - amount
        self.wallet[account] += amount
        f = amount / WEI_PER_TOKEN
        self._et[account] -= f
        self._wt[account] += f

    def pay_out(self, source: int, destination: int, amount: int) -> None:
        """``source``'s escrow -> ``destination``'s wallet (job payment, fees, slashing)."""
        e = self.escrow[source]
        if e < amount:
            raise InsufficientFunds(source, "escrow", e, amount)
        self.escrow[source] = e - amount
        self.wallet[destination] += amount
        f = amount / WEI_PER_TOKEN
        self._et[source] -= f
        self._wt[destination] += f

    def transfer(self, source: int, destination: int, amount: int) -> None:
        """Wallet -> wallet."""
        w = self.wallet[source]
        if w < amount:
            raise InsufficientFunds(source, "wallet", w, amount)
        self.wallet[source] = w - amount
        self.wallet[destination] += amount
        f = amount / WEI_PER_TOKEN
        self._wt[source] -= f
        self._wt[destination] += f

    def lock(self, account: int, amount: int) -> None:
        """Mark ``amount`` of ``account``'s escrow as locked for good (a defect stranded it)."""
        self.locked[account] += amount
        self._lt[account] += amount / WEI_PER_TOKEN

    def can_pay_in(self, account: int, amount: int) -> bool:
        return self.wallet[account] >= amount


def _check_amount(amount: int) -> None:
    if not isinstance(amount, int) or amount < 0:
        raise ValueError(f"amount must be a non-negative int (wei), got {amount!r}")


def tokens_to_wei(tokens: float | int | str) -> int:
    """Exact conversion of a decimal token amount (e.g. ``"0.5"`` or ``2``) to wei."""
    from decimal import Decimal

    d = Decimal(str(tokens)) * WEI_PER_TOKEN
    if d != d.to_integral_value():
        raise ValueError(f"{tokens} tokens is not a whole number of wei")
    return int(d)
