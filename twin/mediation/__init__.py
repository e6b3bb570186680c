"""Mediation protocols: who is asked to re-check a result, and how their votes decide it.

The market calls a :class:`~twin.mediation.base.MediationProtocol` when a JC checks a result
(``select``), when a requested mediator has re-executed (``vote``), each time a vote is cast
(``decide``) and on the verdict (``settle``). Protocols (``mediation.protocol``):

- ``v1`` (:mod:`twin.mediation.v1`): Lilypad v1's single mediator chosen by
  ``keccak256(timestamp, dealId) mod len(mediators)``;
- ``consortium`` (:mod:`twin.mediation.consortium`): k of n mediators, recursive rounds,
  selection by hash, uniformly, by auction or by reputation, a fee split, colluding rings that
  vote as a group, and commit-reveal (anti-collusion by obfuscation).
"""

from twin.mediation.base import MediationProtocol, Vote
from twin.mediation.consortium import ConsortiumMediation
from twin.mediation.v1 import V1Mediation, v1_mediator_index

PROTOCOLS: dict[str, type] = {"v1": V1Mediation, "consortium": ConsortiumMediation}

__all__ = [
    "ConsortiumMediation",
    "MediationProtocol",
    "PROTOCOLS",
    "V1Mediation",
    "Vote",
    "v1_mediator_index",
]
