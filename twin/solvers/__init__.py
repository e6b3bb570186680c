"""Solvers match job offers with resource offers.

A :class:`~twin.solvers.base.Solver` reads the orderbook and returns matches ``(job_offer, rp)``
for the offers that name it, reserving capacity as it goes. ``v1`` follows the shipped Lilypad
solver (spec section 6); ``surplus`` maximises the matched surplus over the whole book with
scipy's assignment solver. Several solvers coexist: each offer names its solver.
"""

from twin.solvers.base import Match, Solver
from twin.solvers.surplus import SurplusSolver
from twin.solvers.v1 import V1Solver

SOLVERS: dict[str, type[Solver]] = {"v1": V1Solver, "surplus": SurplusSolver}

__all__ = ["Match", "SOLVERS", "Solver", "SurplusSolver", "V1Solver"]
