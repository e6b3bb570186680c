"""The solver interface."""

from __future__ import annotations

from typing import NamedTuple, Protocol

import numpy as np

from twin.orderbook import FIXED, JobOffers, ResourceOffers, Trust


class Match(NamedTuple):  # (a tuple: made several times a tick, 4x cheaper than a dataclass)
    job_offer: int
    rp_row: int  # row in ResourceOffers
    resource_offer: int  # the RP's offer id at match time
    price: int  # the deal's instruction price (the RP's, as v1)


class Solver(Protocol):
    name: str

    def match(self, jobs: JobOffers, res: ResourceOffers, trust: Trust, rp_accounts: np.ndarray,
              solver_id: int, now: int) -> list[Match]: ...  # fmt: skip


def feasible(
    jobs: JobOffers,
    j: int,
    res: ResourceOffers,
    trust: Trust,
    rp_accounts: np.ndarray,
    solver_id: int,
) -> np.ndarray:
    """v1 match rule for one job against every RP: resources fit, module allowed, same solver,
    mediator lists intersect, and with fixed pricing on both sides the RP's price <= the JC's."""
    ok = res.fits(jobs.need(j), int(jobs.vram[j]), int(jobs.module[j]))
    ok &= res.solver == solver_id
    if jobs.mode[j] == FIXED:
        ok &= (res.mode != FIXED) | (res.price <= jobs.price[j])
    if not trust.all and ok.any():
        idx = np.flatnonzero(ok)
        ok[idx] = trust.intersects(int(jobs.jc[j]), rp_accounts[idx])
    return ok
