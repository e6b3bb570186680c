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

A deal whose ``verification`` is set (:class:`Verification`, by
:mod:`twin.mechanisms.verification`) is checked by that method instead:

- ``proof`` / ``tee``: the mediator verifies the proof or attestation instead of re-running: it
  costs ``check_cost_fraction`` x a re-run and takes ``check_latency_s``; a correct result passes;
  a wrong one (fake data or a wrong instruction count) passes only with ``soundness_error``.
- ``replication`` with approximate agreement (``tolerance > 0``, non-deterministic classes only):
  two honest outputs are identical with probability ``1 - nu`` (``nu``: the class's
  ``nondeterminism_prob``) and otherwise differ by a distance ``~ Exponential(mean 1)`` (unit:
  the class's mean honest discrepancy); a run agrees with the result when the distance is
  ``<= tolerance``. So one honest run agrees with probability ``a = 1 - nu * exp(-tolerance)``.
  A fake's distance from a run is ``~ Exponential(mean fake_distance_scale)``: it passes a run
  with probability ``1 - exp(-tolerance / fake_distance_scale)`` (0 for exact comparison).
- ``replication`` with Modicum's defence (``runs = n >= 2``, non-deterministic classes only):
  the mediator runs the job n times (n x the cost and latency of one run). Each run reproduces
  the job's honest output with probability ``a`` and otherwise gives an output of its own, so the
  n runs are not all identical -- the mediator *detects non-determinism* -- with probability
  ``1 - a**n``. Verdict: when every run agrees with the result, it passes; otherwise, when the
  runs differ among themselves, the job is *flagged* non-deterministic and treated as honest (it
  passes; ``deal.flagged``); otherwise (identical runs that the result does not match) it fails.
  An honest result therefore always passes; a fake passes exactly when the runs differ
  (probability ``1 - a**n``, with exact comparison): the defence ends the client attack but
  makes replication blind to fakes on the job classes it flags.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

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
    flagged: bool = False  # the runs showed the job to be non-deterministic (Modicum's defence)


@dataclass(frozen=True, slots=True)
class Verification:
    """How a check of one deal is done (set per job class; a deal without one: v1 replication).

    ``method``: ``replication`` or ``proof`` / ``tee``; proof/tee: ``soundness_error`` (P(a wrong
    result passes a check)), ``check_cost_fraction`` (a check's cost as a fraction of the
    mediator's re-run), ``check_latency_s``; replication: ``tolerance`` and ``fake_distance_scale``
    (approximate agreement) and ``runs`` (Modicum's defence), both for non-deterministic classes.
    """

    method: str = "replication"
    soundness_error: float = 0.0
    check_cost_fraction: float = 0.0
    check_latency_s: int = 1
    tolerance: float = 0.0
    fake_distance_scale: float = 1000.0
    runs: int = 1


def reexecute(
    deal: Deal, job: JobClass, speed: float, cost_wei_per_s: int, rng: np.random.Generator
) -> Reexecution:
    """A mediator's honest re-run of ``deal``'s job on its own machine (or the check of the
    deal's ``verification`` method; a flagged job is recorded in ``deal.flagged``)."""
    if deal.verification is not None:
        rex = verify(deal, job, deal.verification, speed, cost_wei_per_s, rng)
        deal.flagged = deal.flagged or rex.flagged
        return rex
    run = runtime_s(deal.units, speed)
    if not deal.correct:
        data = False
    elif job.nondeterminism_prob > 0:
        data = bool(rng.random() >= job.nondeterminism_prob)
    else:
        data = True
    return Reexecution(data, deal.units_reported == deal.units, run, run * cost_wei_per_s)


def verify(deal: Deal, job: JobClass, v: Verification, speed: float, cost_wei_per_s: int,
           rng: np.random.Generator) -> Reexecution:  # fmt: skip
    """A mediator's check of ``deal`` by method ``v`` (see the module docstring for the model)."""
    run = runtime_s(deal.units, speed)
    count_ok = deal.units_reported == deal.units
    if v.method in ("proof", "tee"):
        ok = (deal.correct and count_ok) or bool(rng.random() < v.soundness_error)
        cost = int(Fraction(run * cost_wei_per_s) * Fraction(str(v.check_cost_fraction)))
        return Reexecution(ok, ok, v.check_latency_s, cost)
    if v.method != "replication":
        raise ValueError(f"deal {deal.index}: verification {v.method!r} allows no check")
    nu = job.nondeterminism_prob
    n = v.runs if nu > 0 else 1
    tol = v.tolerance if nu > 0 else 0.0

    def reproduces() -> bool:  # one run reproduces the job's honest output (within tolerance)
        if nu <= 0 or rng.random() >= nu:
            return True
        return tol > 0 and float(rng.exponential(1.0)) <= tol

    if deal.correct:
        agree = [reproduces() for _ in range(n)]
        # a run that does not reproduce the output differs from every other (one run: no test)
        identical = n == 1 or all(agree)
    else:  # a fake: a run agrees with it only within a tolerance
        agree = [tol > 0 and float(rng.exponential(v.fake_distance_scale)) <= tol for _ in range(n)]
        identical = n == 1 or all([reproduces() for _ in range(n)])
    flagged = not all(agree) and not identical
    data = all(agree) or flagged
    return Reexecution(data, count_ok, n * run, n * run * cost_wei_per_s, flagged)
