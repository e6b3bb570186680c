"""Mediation protocols: who is asked to re-check a result, and how their votes decide it.

The market calls a :class:`~twin.mediation.base.MediationProtocol` when a JC checks a result
(``select``) and when a requested mediator has re-executed (``vote``, then ``decide``). ``v1`` is
Lilypad v1's single mediator chosen by ``keccak256(timestamp, dealId) mod len(mediators)``.
Other protocols (consortia, recursive mediation, auctions) implement the same interface.
"""

from twin.mediation.base import MediationProtocol, Vote
from twin.mediation.v1 import V1Mediation, v1_mediator_index

PROTOCOLS: dict[str, type] = {"v1": V1Mediation}

__all__ = ["MediationProtocol", "PROTOCOLS", "V1Mediation", "Vote", "v1_mediator_index"]
