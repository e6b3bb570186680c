"""Verification methods per job class (``verification=`` group): replication (v1), none, proofs
and TEEs, approximate agreement, and Modicum's defence against the non-determinism attack.

Each job class gets a method (``verification.method``, overridden per class by
``verification.per_module``):

- ``replication`` (v1, the default): a mediator re-runs the job (:func:`twin.execution.reexecute`).
  A non-deterministic class (``nondeterminism_prob = nu > 0``) makes an honest re-run disagree
  with probability ``nu`` under exact comparison. *Approximate agreement*
  (``approx_tolerance = tau > 0``, non-deterministic classes only): honest outputs differ by a
  distance that is 0 with probability ``1 - nu`` and ``Exponential(mean 1)`` otherwise (unit: the
  class's mean honest discrepancy); a re-run agrees within the tolerance, so with probability
  ``a = 1 - nu * exp(-tau)``; a fake is at distance ``Exponential(mean fake_distance_scale)`` and
  passes with probability ``b = 1 - exp(-tau / fake_distance_scale)``. *Modicum's defence*
  (``mediator_runs = n >= 2``, non-deterministic classes): the mediator runs the job n times (n x
  cost and latency); the runs differ among themselves -- non-determinism is detected -- with
  probability ``1 - a**n``; a flagged job is treated as honest (accepted and paid). Then an honest
  result always passes and a fake passes with probability ``b**n + (1 - b**n)(1 - a**n)``.
- ``none``: no verification, trust and reputation only: results of the class cannot be checked
  (``can_check`` is False: a JC's check becomes an acceptance, and ``action_mask`` closes the
  JC's check action while such a result is its focus deal).
- ``proof`` / ``tee``: the node generates a proof (or runs in an enclave and attests): it bears
  ``proof_cost_fraction`` (``tee_cost_fraction``) x its honest run cost and ``proof_latency_s``
  (``tee_latency_s``) more runtime on every honest (or count-inflating) run; a fake comes with a
  forged proof at no extra cost. A check verifies the proof or the attestation instead of
  re-running: ``check_cost_fraction`` x a re-run, ``check_latency_s``; a correct result passes; a
  wrong one (fake data or an inflated count) passes with the soundness error
  (``proof_soundness_error``, ``tee_soundness_error``).

:func:`pass_probabilities` gives each class's closed-form probabilities that a check passes an
honest result and a fake; agents observe them for the deal they decide on (features
``focus_checkable``, ``focus_catch_prob``, ``focus_honest_pass_prob``, and for nodes
``focus_proof_cost``). Metrics: proof/attestation cost borne by nodes, checks per method, jobs
flagged non-deterministic, wrong results that passed a check, honest results that failed one and
the payments clients thereby kept (``free_results_tokens``: the gain of Modicum's client attack).

Sources: the Lilypad whitepaper (verification by replication; proofs and TEEs as alternatives;
determinism); the Modicum paper and its proof supplement (the non-deterministic-job client attack,
the mediator's n runs with detection probability ``1 - a**n``, Theorem 1 with the detection
probability ``Pj``).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from twin.deals import DealState, ExecMode
from twin.execution import Verification as Spec
from twin.mechanisms.base import Mechanism

METHODS = ("replication", "none", "proof", "tee")
_WRONG_PASSED = (DealState.MediationAccepted,)


def pass_probabilities(method: str, nu: float, *, tolerance: float = 0.0, runs: int = 1,
                       fake_distance_scale: float = 1000.0,
                       soundness_error: float = 0.0) -> tuple[float, float]:  # fmt: skip
    """(P(a check passes an honest result), P(a check passes a fake)) of one job class."""
    if method == "none":
        return 1.0, 1.0  # nothing is checked: everything passes
    if method in ("proof", "tee"):
        return 1.0, soundness_error
    if nu <= 0:
        return 1.0, 0.0
    a = 1.0 - nu * math.exp(-tolerance)
    b = 1.0 - math.exp(-tolerance / fake_distance_scale) if tolerance > 0 else 0.0
    if runs <= 1:
        return a, b
    return 1.0, b**runs + (1.0 - b**runs) * (1.0 - a**runs)


class Verification(Mechanism):
    name = "verification"

    @classmethod
    def enabled(cls, cfg) -> bool:
        v = cfg.verification
        return (
            v.method != "replication"
            or any(m != "replication" for m in v.per_module.values())
            or v.approx_tolerance > 0
            or v.mediator_runs > 1
        )

    @classmethod
    def from_config(cls, cfg) -> Verification:
        return cls(cfg.verification)

    def method_of(self, module_name: str) -> str:
        return self.params.per_module.get(module_name, self.params.method)

    def attach(self, mk) -> None:
        p = self.params
        self.methods = tuple(self.method_of(n) for n in mk.module_names)
        specs = []
        for meth in self.methods:
            if meth in ("proof", "tee"):
                s = p.proof_soundness_error if meth == "proof" else p.tee_soundness_error
                specs.append(Spec(meth, s, p.check_cost_fraction, p.check_latency_s))
            elif meth == "replication" and (p.approx_tolerance > 0 or p.mediator_runs > 1):
                specs.append(Spec("replication", tolerance=p.approx_tolerance,
                                  fake_distance_scale=p.fake_distance_scale, runs=p.mediator_runs))  # fmt: skip
            else:
                specs.append(None)  # v1 replication (or none: never checked)
        self.specs = tuple(specs)
        frac = {"proof": p.proof_cost_fraction, "tee": p.tee_cost_fraction}
        lat = {"proof": p.proof_latency_s, "tee": p.tee_latency_s}
        self.cost_fraction = tuple(Fraction(str(frac.get(m, 0.0))) for m in self.methods)
        self.latency_s = tuple(lat.get(m, 0) for m in self.methods)
        self.pass_prob = np.array([
            pass_probabilities(m, j.nondeterminism_prob, tolerance=p.approx_tolerance, runs=p.mediator_runs,
                               fake_distance_scale=p.fake_distance_scale,
                               soundness_error=p.proof_soundness_error if m == "proof" else p.tee_soundness_error)
            for m, j in zip(self.methods, mk.job_classes, strict=True)
        ])  # fmt: skip
        self.checkable = np.array([m != "none" for m in self.methods])
        self._every_checkable = bool(self.checkable.all())  # (action_mask: nothing to close)
        #: per module, the focus features (checkable, catch probability, honest pass probability)
        self._focus_values = [(float(c), float(1.0 - fake), float(honest))
                              for c, (honest, fake) in zip(self.checkable, self.pass_prob, strict=True)]  # fmt: skip
        fl = mk.fleet
        self._cpu_speed, self._gpu_speed = fl.cpu_speed.tolist(), fl.gpu_speed.tolist()
        self._cost_wei_per_s = [int(c) for c in fl.cost_wei_per_s]
        self._proof_feature: dict[int, float] = {}  # open deal -> its focus_proof_cost (fixed)
        self.proof_cost = 0
        self.n_proofs = self.n_unverifiable = self.n_flagged = 0
        self.n_checks = dict.fromkeys(METHODS, 0)
        self.n_wrong_passed = self.n_honest_failed = 0
        self.free_wei = 0  # payments JCs kept through failed checks of honest results

    # -- hooks -----------------------------------------------------------------------------------
    def on_deal_created(self, mk, d) -> None:
        d.verification = self.specs[d.module]

    def on_executed(self, mk, d) -> None:
        f = self.cost_fraction[d.module]
        lat = self.latency_s[d.module]
        if (f or lat) and d.mode in (ExecMode.Honest, ExecMode.Inflate) and d.ready_at >= 0:
            extra = int(d.exec_cost * f)
            d.exec_cost += extra
            mk._add_cost(d.rp, extra)
            d.ready_at += lat
            self.proof_cost += extra
            self.n_proofs += 1

    def can_check(self, mk, d) -> bool:
        return bool(self.checkable[d.module])

    def action_mask(self, mk, role: str, mask: np.ndarray) -> None:
        """Closes the JC's ``check`` action (column 1) where its focus deal -- the oldest result
        it has to judge -- cannot be checked (:meth:`can_check`). Called, where the observation
        builder dispatches the ``action_mask`` hook, with the role's mask (seats x actions)."""
        if role != "jc" or self._every_checkable or not mk.judge_q:
            return
        for acct, di in mk.judge_q.first().items():
            if not self.can_check(mk, mk.deals[di]):
                mask[int(mk.row[acct]), 1] = 0

    def on_deal_end(self, mk, d) -> None:
        self._proof_feature.pop(d.index, None)
        if not self.checkable[d.module]:
            self.n_unverifiable += 1
        if not d.checked:
            return
        self.n_checks[self.methods[d.module]] += 1
        self.n_flagged += d.flagged
        wrong = not (d.correct and d.units_reported == d.units)
        if wrong and d.state in _WRONG_PASSED:
            self.n_wrong_passed += 1
        elif not wrong and d.state == DealState.MediationRejected:
            self.n_honest_failed += 1
            self.free_wei += min(d.job_cost, d.payment_collateral)

    # -- observation and metrics -----------------------------------------------------------------
    def feature_names(self, role: str) -> tuple[str, ...]:
        base = ("focus_checkable", "focus_catch_prob", "focus_honest_pass_prob")
        return base + ("focus_proof_cost",) if role == "rp" else base

    def write_features(self, mk, fb) -> None:
        deals, values = mk.deals, self._focus_values
        for role, X in fb.out.items():
            f = fb.focus.get(role)
            if not f:
                continue
            for r, di in f.items():  # (the few focus rows one at a time: no fancy indexing)
                X[r, 0:3] = values[deals[di].module]
            if role == "rp":  # (a deal's node, units and module are fixed: once per deal)
                cache = self._proof_feature
                for r, di in f.items():
                    v = cache.get(di)
                    if v is None:
                        v = cache[di] = self._proof_cost_feature(mk, r, deals[di])
                    X[r, 3] = v

    def _proof_cost_feature(self, mk, r: int, d) -> float:
        """``log1p`` of node row ``r``'s proof/attestation cost for deal ``d``, in tokens."""
        job = mk.job_classes[d.module]
        speed = self._gpu_speed[r] if job.kind == "gpu" else self._cpu_speed[r]
        run = max(1, math.ceil(d.units / speed)) if speed > 0 else 0
        frac = self.cost_fraction[d.module]  # the cost as a float: num / den, correctly rounded
        cost = run * self._cost_wei_per_s[r] * frac.numerator / frac.denominator
        return math.log1p(cost / 1e18)

    def metrics(self, mk) -> dict[str, float]:
        return {
            "proof_cost_tokens": self.proof_cost / 1e18,
            "proofs": float(self.n_proofs),
            "unverifiable_deals": float(self.n_unverifiable),
            "checks_replication": float(self.n_checks["replication"]),
            "checks_proof": float(self.n_checks["proof"]),
            "checks_tee": float(self.n_checks["tee"]),
            "flagged_nondeterministic": float(self.n_flagged),
            "wrong_results_passed_checks": float(self.n_wrong_passed),
            "honest_results_failed_checks": float(self.n_honest_failed),
            "free_results_tokens": self.free_wei / 1e18,
        }
