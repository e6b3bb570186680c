"""A reward for announcing a successful cheat, paid from the jackpot.

A node whose wrong result was paid for without a check can prove it (it holds the fake result
and the deal's record) and claim ``announce.reward_wei`` from the jackpot. Nodes announce
whenever the reward is positive (it costs them nothing more: the deal is final), so the protocol
measures undetected cheating (``announced_cheats``). If the jackpot cannot pay, the claim fails
and is counted as unpaid.
"""

from __future__ import annotations

from twin.events import TransferReason
from twin.mechanisms.base import Mechanism
from twin.mechanisms.fees import PAID_STATES


class AnnounceReward(Mechanism):
    name = "announce"
    accounts = ("jackpot",)

    @classmethod
    def enabled(cls, cfg) -> bool:
        return cfg.announce.reward_wei > 0

    @classmethod
    def from_config(cls, cfg) -> AnnounceReward:
        return cls(cfg.announce)

    def attach(self, mk) -> None:
        self.jackpot = mk.system["jackpot"]
        self.announced = self.unpaid = 0

    def on_deal_end(self, mk, d) -> None:
        if d.cheated and not d.checked and d.state in PAID_STATES:
            if mk.transfer(
                self.jackpot, d.rp, self.params.reward_wei, TransferReason.AnnounceReward, d.index
            ):
                self.announced += 1
            else:
                self.unpaid += 1

    def metrics(self, mk) -> dict[str, float]:
        return {"announced_cheats": float(self.announced), "announce_unpaid": float(self.unpaid)}
