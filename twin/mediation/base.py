"""The mediation-protocol interface."""

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
    bribe_from: int  # account that pays the bribe (-1: none)
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
        """True: accept, False: reject, None: wait for more votes."""
