"""Protocol fee (the revenue model): a fee per completed deal, paid by the JC to the treasury.

A deal is *completed* when its result was paid for: accepted, accepted by mediation, or accepted
by the judge timeout. Job classes listed in ``fees.waived_modules`` (public goods) pay nothing.
A JC whose wallet cannot cover the fee pays nothing and the shortfall is counted
(``protocol_fee_unpaid_wei``).
"""

from __future__ import annotations

from twin.deals import PAID_STATES
from twin.events import TransferReason
from twin.mechanisms.base import Mechanism


class ProtocolFee(Mechanism):
    name = "fees"
    accounts = ("treasury",)

    @classmethod
    def enabled(cls, cfg) -> bool:
        return cfg.fees.protocol_fee_wei > 0

    @classmethod
    def from_config(cls, cfg) -> ProtocolFee:
        return cls(cfg.fees)

    def attach(self, mk) -> None:
        self.treasury = mk.system["treasury"]
        self.waived = {
            i for i, name in enumerate(mk.module_names) if name in self.params.waived_modules
        }
        self.collected = 0
        self.unpaid = 0

    def on_deal_end(self, mk, d) -> None:
        if d.state not in PAID_STATES or d.module in self.waived:
            return
        fee = self.params.protocol_fee_wei
        if mk.transfer(d.jc, self.treasury, fee, TransferReason.ProtocolFee, d.index):
            self.collected += fee
        else:
            self.unpaid += fee

    def metrics(self, mk) -> dict[str, float]:
        return {
            "protocol_fee_tokens": self.collected / 1e18,
            "protocol_fee_unpaid_tokens": self.unpaid / 1e18,
        }
