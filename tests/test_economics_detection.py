"""Spec section 2 with imperfect detection: the collateral threshold in the Theorem-1 form of the
Modicum proof supplement, reproduced by ``experiments.run_episodes``.

Set-up: every node is an RTX 4090 (``hardware=gpu_only``: GPU speed 1.0, 5 555 555 555 555 555
wei/s) and every job is ``sdxl`` (non-deterministic, nu = 0.3), so an honest run of ``u`` units
takes ``u`` seconds and costs ``c = 5555555555555555 * u``; the instruction price is set so that
the job cost ``C`` equals the node's honest cost (a zero-profit price, P = c in the spec's terms;
``P`` here, the payment collateral, is 20 tokens >> C, so the node is paid C). Each node cheats on
a decision with probability 1/2 (fake result, cost 0); clients check with probability p = 1/2.

Theorem 1 (Modicum supplement) with reward r = C, fine f = m*C, mediation fee M, detection
probability Pj (a check catches a fake), probability Q that mediation judges an honest result
right, honest cost c and cheating cost Cd = 0, with the check probability p applied to both sides:

    honest:  (1 - p(1-Q)) C - p(1-Q)(f + M) - c
    cheat:   (1 - p Pj) C   - p Pj (f + M)   - Cd

In Lilypad v1 the client pays the mediation fee whatever the verdict, so M = 0 on the node's
side. Per unit of C (x = profit / C):

    honest:  x_h = 1 - p(1-Q)(1 + m) - c/C          cheat:  x_c = (1 - p Pj) - p Pj m

and cheating stops paying at m* where x_c = x_h; with Q = 1 that is m* = c / (p Pj C) - 1.

Cases (each run on both sides of its m*):

- proofs with soundness error 1/2 (Pj = 1/2, Q = 1) and a proof costing half a run (c' = 1.5 c,
  priced at C = 1.5 c): m* = 1 / (0.5 * 0.5) - 1 = 3;
- replication of the non-deterministic class without approximate agreement (Pj = 1: a fake
  never matches; Q = a = 0.7: an honest re-run disagrees with 0.3), C = c:
  0.5 - 0.5 m = -0.15 (1 + m)  ->  m* = 0.65 / 0.35 = 1.857;
- Modicum's defence with n = 2 runs (Q = 1; a fake passes when the runs differ, so
  Pj = a^2 = 0.49), C = c: m* = 1 / (0.5 * 0.49) - 1 = 3.08.
"""

from __future__ import annotations

import numpy as np
import pytest

from experiments import run_episodes

COST_S = 5_555_555_555_555_555  # consumer_gpu at 0.02 USD/token: int(0.40 / 0.02 * 1e18) // 3600
BASE = (
    "hardware=gpu_only", "market.modules=[sdxl]", "market.rp_wallet_tokens=10000",
    "market.n_job_creators=30", "market.n_resource_providers=15", "market.episode_ticks=100",
    "policies.rp.policy=cheat_with_probability", "policies.rp.cheat_probability=0.5",
    "policies.jc.check_probability=0.5",
)  # fmt: skip
P_CHECK = 0.5
A = 0.7  # P(an honest re-run of sdxl agrees) = 1 - nu

CASES = {
    # name: (overrides, instruction price, Pj, Q, m*)
    "proof": (
        ("verification=proofs", "verification.proof_soundness_error=0.5", "verification.proof_cost_fraction=0.5"),
        COST_S * 3 // 2, 0.5, 1.0, 3.0,
    ),
    "replication_nondeterministic": ((), COST_S, 1.0, A, 0.65 / 0.35),
    "modicum_defence": (("verification=modicum_defence", "verification.mediator_runs=2"), COST_S, A**2, 1.0,
                        1 / (P_CHECK * A**2) - 1),
}  # fmt: skip


@pytest.mark.parametrize(
    "case,m", [("proof", 1), ("proof", 10), ("replication_nondeterministic", 1),
               ("replication_nondeterministic", 8), ("modicum_defence", 1), ("modicum_defence", 10)],
)  # fmt: skip
def test_cheater_profit_with_detection_probability(compose, case, m):
    overrides, price, pj, q, m_star = CASES[case]
    cfg = compose(*BASE, *overrides, f"pricing.instruction_price_wei={price}",
                  f"pricing.results_collateral_multiple={m}")  # fmt: skip
    deals = run_episodes(cfg, episodes=3, seed=21).deals
    done = deals[deals.outcome.isin(["accepted", "check_passed", "check_failed"])]
    profit = (done.paid_to_rp_wei - done.slashed_rp_wei - done.rp_exec_cost_wei).astype(float)
    x = profit / done.job_cost_wei.astype(float)
    cheat, honest = x[done.cheated], x[~done.cheated]
    assert len(cheat) > 300 and len(honest) > 300

    # honest cost per unit of C, exact per deal: c' / C (the proof case pays half a run more)
    c = COST_S * done.units[~done.cheated]
    c_over_C = ((c + (c // 2 if case == "proof" else 0)) / done.job_cost_wei[~done.cheated]).astype(
        float
    )
    x_h = 1 - P_CHECK * (1 - q) * (1 + m) - c_over_C.mean()
    x_c = (1 - P_CHECK * pj) - P_CHECK * pj * m
    se_c = cheat.std(ddof=1) / np.sqrt(len(cheat))
    se_h = max(honest.std(ddof=1) / np.sqrt(len(honest)), 1e-12)
    assert abs(cheat.mean() - x_c) < 4 * se_c, (cheat.mean(), x_c, se_c)
    assert abs(honest.mean() - x_h) < 4 * se_h + 1e-9, (honest.mean(), x_h, se_h)
    # the side of the threshold decides which pays more, and the measurement shows it
    gap = cheat.mean() - honest.mean()
    se_gap = np.hypot(se_c, se_h)
    if m < m_star:
        assert x_c > x_h and gap > 3 * se_gap, (gap, se_gap)
    else:
        assert x_c < x_h and gap < -3 * se_gap, (gap, se_gap)
    # the outcomes behind it: a checked fake passes with 1 - Pj, an honest result with Q
    checked = done[done.checked]
    for mask, p_pass in ((checked.cheated, 1 - pj), (~checked.cheated, q)):
        passed = (checked[mask].outcome == "check_passed").mean()
        n = int(mask.sum())
        assert abs(passed - p_pass) <= 4 * np.sqrt(max(p_pass * (1 - p_pass), 1e-12) / n) + 1e-12
