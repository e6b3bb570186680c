"""Where slashed collateral goes: configurable shares instead of v1's "all to the owner".

With any share other than ``owner = 1``, every slashing of a deal (results collateral, timeout
collateral) is paid into a ``slashing_pool`` system account (the v1 ``Payment(..., Slashed)``
event names the pool), and when the deal ends the mechanism splits what the deal lost among:
the owner, the *client* (the slashed party's counterparty: the JC when the RP was slashed, the
RP when the JC was), the deal's mediator(s), the burn account (out of circulation, still counted
in the conserved total), the jackpot, and the other nodes (every RP but the deal's, equally).
Shares are normalised; each part is floored and the rounding dust goes to the owner.
Deals whose slashing another mechanism redirected (forced errors) are left alone.
"""

from __future__ import annotations

from fractions import Fraction

from twin.events import TransferReason
from twin.mechanisms.base import Mechanism

DESTINATIONS = ("owner", "client", "mediators", "burn", "jackpot", "nodes")


class SlashingShares(Mechanism):
    name = "slashing"

    @classmethod
    def enabled(cls, cfg) -> bool:
        s = cfg.slashing
        return any(getattr(s, k) > 0 for k in DESTINATIONS if k != "owner")

    @classmethod
    def from_config(cls, cfg) -> SlashingShares:
        m = cls(cfg.slashing)
        m.accounts = ("slashing_pool", "burn") + (("jackpot",) if cfg.slashing.jackpot > 0 else ())
        return m

    def attach(self, mk) -> None:
        self.pool = mk.system["slashing_pool"]
        mk.flows.slash_to = self.pool
        raw = {k: Fraction(str(getattr(self.params, k))) for k in DESTINATIONS}
        total = sum(raw.values())
        self.shares = {k: v / total for k, v in raw.items() if v > 0}
        #: (destination, numerator, denominator) of each share, read once per slashed deal
        self._parts = [(k, v.numerator, v.denominator) for k, v in self.shares.items()]
        self.burn = mk.system["burn"]
        self.burnt = 0

    def split(self, mk, d, amount: int, slashed_party: int) -> list[tuple[int, int]]:
        """(account, wei) parts of ``amount``; the dust goes to the owner."""
        parts: list[tuple[int, int]] = []
        given = 0
        for k, num, den in self._parts:
            wei = amount * num // den
            if k == "owner":
                targets = [mk.owner]
            elif k == "client":
                targets = [d.jc if slashed_party == d.rp else d.rp]
            elif k == "mediators":
                targets = list(
                    getattr(d, "voters", ()) or ([d.mediator] if d.mediator >= 0 else [mk.owner])
                )
            elif k == "burn":
                targets = [self.burn]
            elif k == "jackpot":
                targets = [mk.system["jackpot"]]
            else:
                targets = [int(a) for a in mk.rp_acct if a != d.rp] or [mk.owner]
            each = wei // len(targets)
            if each > 0:  # (parts of 0 wei are left out)
                parts += [(t, each) for t in targets]
                given += each * len(targets)
        if amount > given:
            parts.append((mk.owner, amount - given))
        return parts

    def on_deal_end(self, mk, d) -> None:
        if not d.slashed or (d.slash_to >= 0 and d.slash_to != self.pool):
            return
        # the slashed party: the RP loses Ts or R; the JC loses Tj (judge timeout)
        slashed_party = d.jc if d.state == 9 else d.rp
        for acct, wei in self.split(mk, d, d.slashed, slashed_party):
            mk.transfer(self.pool, acct, wei, TransferReason.SlashShare, d.index)
            if acct == self.burn:
                self.burnt += wei

    def metrics(self, mk) -> dict[str, float]:
        return {"burnt_tokens": self.burnt / 1e18}
