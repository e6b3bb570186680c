"""Executing jobs: honest runs, fake results, inflated counts, skipped jobs, and re-execution.

An RP decides per deal (:class:`~twin.deals.ExecMode`):

- ``Honest``: runs the job; pays ``runtime x cost_wei_per_s`` of its machine; the result is
  correct; the run fails (no result) with the job class's failure probability.
- ``Cheat``: returns a fake result after ``cheat_runtime_s`` at ``cheat_cost_fraction`` of the
  honest cost.
- ``Inflate``: runs honestly but reports ``inflate_factor`` x the true instruction count.
- ``Skip``: never submits (the JC will call the submit timeout).

A mediator re-executes a checked job (:func:`reexecute`): its output matches a correct result
unless the job class is non-deterministic and the two honest runs differ (probability
``nondeterminism_prob``); a fake result never matches. It compares the data id and the
instruction count, as v1's mediator does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from twin.deals import Deal, ExecMode
from twin.modules import JobClass, runtime_s


@dataclass(frozen=True, slots=True)
class ExecutionPlan:
    ready_in_s: int  # seconds until the result is ready (-1: never)
    cost_wei: int  # off-ledger cost the RP bears
    units_reported: int
    correct: bool
    failed: bool


def plan(mode: ExecMode, job: JobClass, units: int, speed: float, cost_wei_per_s: int,
         cheat_cost_fraction: float, cheat_runtime_s: int, inflate_factor: int,
         rng: np.random.Generator) -> ExecutionPlan:  # fmt: skip
    if mode == ExecMode.Skip:
        return ExecutionPlan(-1, 0, 0, False, False)
    run = runtime_s(units, speed)
    honest_cost = run * cost_wei_per_s
    if mode == ExecMode.Cheat:
        return ExecutionPlan(
            cheat_runtime_s, int(honest_cost * cheat_cost_fraction), units, False, False
        )
    failed = bool(rng.random() < job.failure_prob) if job.failure_prob > 0 else False
    reported = units * inflate_factor if mode == ExecMode.Inflate else units
    return ExecutionPlan(-1 if failed else run, honest_cost, reported, True, failed)


@dataclass(frozen=True, slots=True)
class Reexecution:
    data_matches: bool
    count_matches: bool
    runtime_s: int
    cost_wei: int


def reexecute(
    deal: Deal, job: JobClass, speed: float, cost_wei_per_s: int, rng: np.random.Generator
) -> Reexecution:
    """A mediator's honest re-run of ``deal``'s job on its own machine."""
    run = runtime_s(deal.units, speed)
    if not deal.correct:
        data = False
    elif job.nondeterminism_prob > 0:
        data = bool(rng.random() >= job.nondeterminism_prob)
    else:
        data = True
    return Reexecution(data, deal.units_reported == deal.units, run, run * cost_wei_per_s)
