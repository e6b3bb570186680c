"""Lilypad v1 mediation: one mediator, chosen by the block timestamp and the deal id.

Choice: ``mediators[keccak256(abi.encodePacked(uint256(timestamp), dealId)) % len(mediators)]``
(predictable, or steerable by whoever sets the timestamp). An honest mediator re-executes the job
and accepts only when both the data id and the instruction count equal the RP's. A colluding
mediator (action ``collude``) whose ring includes the RP accepts a wrong result and takes the
ring's bribe from the RP; whose ring includes the JC rejects a correct result and takes the bribe
from the JC. Where no ring member is a party, colluding changes nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sha3 import keccak_256

from twin.execution import reexecute
from twin.mediation.base import Vote

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from twin.deals import Deal
    from twin.market import Market


def v1_mediator_index(timestamp: int, deal_id: str, n: int) -> int:
    """``uint256(keccak256(abi.encodePacked(uint256 timestamp, string dealId))) % n``."""
    h = keccak_256(timestamp.to_bytes(32, "big") + deal_id.encode()).digest()
    return int.from_bytes(h, "big") % n


class V1Mediation:
    name = "v1"

    def select(self, market: Market, deal: Deal, t: int) -> tuple[int, ...]:
        i = v1_mediator_index(t, market.deal_id(deal.index), len(deal.mediators))
        return (deal.mediators[i],)

    def vote(
        self, market: Market, deal: Deal, mediator: int, collude: bool, rng: np.random.Generator
    ) -> Vote:
        job = market.job_classes[deal.module]
        speed, cost = market.mediator_machine(mediator, job)
        rex = reexecute(deal, job, speed, cost, rng)
        wrong = not (deal.correct and deal.units_reported == deal.units)
        if collude:
            ring = market.collusion.ring_of(mediator)
            if ring >= 0:
                if wrong and market.collusion.ring_of(deal.rp) == ring:
                    return Vote(
                        mediator,
                        True,
                        True,
                        deal.rp,
                        market.collusion.bribe_wei,
                        0,
                        market.cheap_latency_s,
                    )
                if not wrong and market.collusion.ring_of(deal.jc) == ring:
                    return Vote(
                        mediator,
                        False,
                        True,
                        deal.jc,
                        market.collusion.bribe_wei,
                        0,
                        market.cheap_latency_s,
                    )
        accept = rex.data_matches and rex.count_matches
        if not market.mediator_reexecutes:
            return Vote(mediator, accept, False, -1, 0, 0, market.cheap_latency_s)
        return Vote(mediator, accept, False, -1, 0, rex.cost_wei, rex.runtime_s)

    def decide(self, market: Market, deal: Deal, votes: list[Vote]) -> bool | None:
        return votes[0].accept if votes else None

    def settle(self, market: Market, deal: Deal, accept: bool, votes: list[Vote]) -> bool:
        if accept:
            return market.flows.mediation_accept(market.now, deal)
        return market.flows.mediation_reject(market.now, deal)
