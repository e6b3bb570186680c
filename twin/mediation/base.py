"""The mediation-protocol interface.

The market drives a protocol through four calls:

- ``select`` when a JC checks a result (``checkResult``): the mediators of the first round, in
  draw order (the first is the deal's ``mediator``; v1: exactly one);
- ``vote`` in the ``mediate`` phase, once per requested mediator: the mediator's vote given its
  action (``collude``); a collusive vote may name a briber, whom the market charges the bribe;
- ``decide`` each time a vote is cast (its latency after the request), with the votes cast so
  far on the deal (the latest last): True accept, False reject, None not decided (yet). A protocol
  with several rounds opens the next round here by calling
  :meth:`twin.market.Market.request_mediators`;
- ``settle`` once ``decide`` returned a verdict: performs the verdict's money flows
  (:class:`twin.deals.DealFlows`) and returns whether the call went through.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from twin.deals import Deal
    from twin.market import Market


@dataclass(frozen=True, slots=True)
class Vote:
    mediator: int
    accept: bool
    collusive: bool  # the vote followed a collusion agreement, not the re-execution
    bribe_from: int  # account that pays the bribe when the vote is taken (-1: none)
    bribe_wei: int
    cost_wei: int  # the mediator's re-execution cost (off-ledger)
    latency_s: int  # seconds from the request until the vote is cast


class MediationProtocol(Protocol):
    name: str

    def select(self, market: Market, deal: Deal, t: int) -> tuple[int, ...]:
        """Mediators asked to check ``deal`` at time ``t`` (v1: exactly one)."""

    def vote(
        self, market: Market, deal: Deal, mediator: int, collude: bool, rng: np.random.Generator
    ) -> Vote:
        """The vote of ``mediator`` on ``deal`` (``collude``: the mediator's action this tick)."""

    def decide(self, market: Market, deal: Deal, votes: list[Vote]) -> bool | None:
        """True: accept, False: reject, None: wait for more votes (``votes``: cast so far)."""

    def settle(self, market: Market, deal: Deal, accept: bool, votes: list[Vote]) -> bool:
        """Perform the verdict ``accept`` on ``deal`` (its money flows); False if it reverted."""
