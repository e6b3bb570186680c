"""Taxes and jackpots (after Truebit), with forced errors.

- **Tax**: on every paid deal the JC pays ``taxes.rate`` x the job payment into the jackpot
  (exact: the rate is read as a fraction with denominator <= 10**9; wei are floored).
- **Forced errors**: each honest (or inflating) run is, with probability ``forced_error_rate``, a
  result the protocol forces to be wrong; the node is told privately. Its results collateral, if
  slashed, goes to the jackpot and is refunded to the node from there, so a forced error costs the
  node nothing but the unpaid job. A JC whose check catches a forced error wins a payout from the
  jackpot: ``min(compensation_wei / forced_error_rate, payout_cap_share * jackpot)`` (Truebit: at
  least the fair compensation for one check divided by the forced-error rate, at most a third of
  the jackpot per forced error).
- **Several challengers** share ``payout * challenger_decay ** (k - 1)`` equally
  (:func:`challenger_shares`), so splitting into k Sybil identities never raises the total.

The jackpot is a system account: its balance is part of the conserved money. The jackpot size,
the tax rate and the forced-error rate are public (observed by every seat).
"""

from __future__ import annotations

import functools
from fractions import Fraction

from twin.deals import DealState, ExecMode
from twin.events import TransferReason
from twin.mechanisms.base import Mechanism
from twin.mechanisms.fees import PAID_STATES


@functools.cache
def _rate_fraction(rate: float) -> tuple[int, int]:
    f = Fraction(str(rate)).limit_denominator(10**9)
    return f.numerator, f.denominator


def exact_share(amount: int, rate: float) -> int:
    """``floor(amount * rate)`` with ``rate`` read as a fraction of denominator <= 10**9."""
    num, den = _rate_fraction(rate)
    return amount * num // den


def challenger_shares(payout: int, k: int, decay: float) -> list[int]:
    """Shares of ``k`` challengers of one forced error: ``payout * decay**(k-1)`` split equally
    (floored). One challenger gets the whole payout; k identities of one party get less."""
    if k <= 0:
        return []
    total = exact_share(payout, decay ** (k - 1)) if k > 1 else payout
    return [total // k] * k


class TaxesAndJackpot(Mechanism):
    name = "taxes"
    accounts = ("jackpot",)

    @classmethod
    def enabled(cls, cfg) -> bool:
        t = cfg.taxes
        return t.rate > 0 or t.forced_error_rate > 0 or t.seed_jackpot_tokens > 0

    @classmethod
    def from_config(cls, cfg) -> TaxesAndJackpot:
        return cls(cfg.taxes)

    def attach(self, mk) -> None:
        from twin.ledger import tokens_to_wei

        self.jackpot = mk.system["jackpot"]
        seed = tokens_to_wei(self.params.seed_jackpot_tokens)
        if seed:
            mk.ledger.mint(self.jackpot, seed)
        self.taxed = self.paid_out = self.refunded = 0
        self.forced = self.forced_caught = 0

    def payout(self, jackpot_wei: int) -> int:
        p = self.params
        cap = exact_share(jackpot_wei, p.payout_cap_share)
        if p.forced_error_rate <= 0:
            return cap
        target = int(
            Fraction(p.compensation_wei)
            / Fraction(str(p.forced_error_rate)).limit_denominator(10**9)
        )
        return min(target, cap)

    def on_executed(self, mk, d) -> None:
        rate = self.params.forced_error_rate
        if rate > 0 and d.mode in (ExecMode.Honest, ExecMode.Inflate) and not d.failed:
            if mk.rng.random() < rate:
                d.forced_error = True
                d.correct = False
                d.slash_to = self.jackpot
                self.forced += 1

    def on_deal_end(self, mk, d) -> None:
        if self.params.rate > 0 and d.state in PAID_STATES:
            tax = exact_share(d.payment, self.params.rate)
            if mk.transfer(d.jc, self.jackpot, tax, TransferReason.Tax, d.index):
                self.taxed += tax
        if d.forced_error and d.state == DealState.MediationRejected:
            self.forced_caught += 1
            if d.slashed:  # make the node whole: its slashed collateral went into the jackpot
                mk.transfer(
                    self.jackpot, d.rp, d.slashed, TransferReason.ForcedErrorRefund, d.index
                )
                self.refunded += d.slashed
            for share in challenger_shares(
                self.payout(mk.ledger.wallet[self.jackpot]), 1, self.params.challenger_decay
            ):
                if mk.transfer(self.jackpot, d.jc, share, TransferReason.JackpotPayout, d.index):
                    self.paid_out += share

    def feature_names(self, role: str) -> tuple[str, ...]:
        return ("jackpot", "tax_rate", "forced_error_rate")

    def write_features(self, mk, fb) -> None:
        import math

        v = (
            math.log1p(mk.ledger.wallet[self.jackpot] / 1e18),
            self.params.rate,
            self.params.forced_error_rate,
        )
        for view in fb.out.values():  # the same public values for every seat
            view[...] = v

    def metrics(self, mk) -> dict[str, float]:
        return {
            "jackpot_tokens": mk.ledger.wallet[self.jackpot] / 1e18,
            "tax_tokens": self.taxed / 1e18,
            "jackpot_payout_tokens": self.paid_out / 1e18,
            "forced_errors": float(self.forced),
            "forced_errors_caught": float(self.forced_caught),
        }
