"""Storage window: inputs and outputs are kept for ``storage.window_s`` after the result.

A result can be checked only while its inputs are stored (``can_check``), and collateral lock-up
follows the window: the deal's judge timeout is shortened to the window when the window is the
shorter of the two (checks are impossible after it, so the RP need not wait longer). Storage is
paid by the JC to the treasury when the result is submitted:
``fee = storage.fee_wei_per_hour * window_s // 3600``. A JC that cannot pay it loses the window
(its result becomes uncheckable at once).
"""

from __future__ import annotations

from twin.events import TransferReason
from twin.mechanisms.base import Mechanism


class StorageWindow(Mechanism):
    name = "storage"
    accounts = ("treasury",)

    @classmethod
    def enabled(cls, cfg) -> bool:
        return cfg.storage.window_s > 0

    @classmethod
    def from_config(cls, cfg) -> StorageWindow:
        return cls(cfg.storage)

    def attach(self, mk) -> None:
        self.treasury = mk.system["treasury"]
        self.fee = self.params.fee_wei_per_hour * self.params.window_s // 3600
        self.unstored: set[int] = set()
        self.collected = 0
        self.expired_checks = 0

    def on_deal_created(self, mk, d) -> None:
        d.judge_timeout = min(d.judge_timeout, self.params.window_s)

    def on_result_submitted(self, mk, d) -> None:
        if self.fee:
            if mk.transfer(d.jc, self.treasury, self.fee, TransferReason.StorageFee, d.index):
                self.collected += self.fee
            else:
                self.unstored.add(d.index)

    def can_check(self, mk, d) -> bool:
        ok = d.index not in self.unstored and mk.now <= d.submitted_at + self.params.window_s
        if not ok:
            self.expired_checks += 1
        return ok

    def on_deal_end(self, mk, d) -> None:
        self.unstored.discard(d.index)

    def metrics(self, mk) -> dict[str, float]:
        return {
            "storage_fee_tokens": self.collected / 1e18,
            "checks_after_window": float(self.expired_checks),
        }
