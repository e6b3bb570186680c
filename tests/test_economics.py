"""The economics check of spec section 2, with scripted policies and honest mediators.

A node that always cheats is paid C when its result is not checked (probability 1 - p) and loses
its results collateral R = m*C when a check catches it (probability p; the mediator re-runs the
deterministic job and rejects the fake result). A fake result costs it nothing
(``cheat_cost_fraction = 0``), and C <= P so the payment cap does not bind. Hence its profit per
deal is C with probability 1 - p and -m*C with probability p:

    E[profit / C] = (1 - p) - p*m        and        E[profit] = ((1 - p) - p*m) * E[C]

(the check decision is independent of C). An honest node is paid C on every completed deal
(accepted, or checked and passed) and bears its execution cost, so its profit per deal is exactly
C - cost.
"""

from __future__ import annotations

import numpy as np
import pytest

from experiments import run_episodes

BASE = (
    "market.modules=[cowsay]",  # deterministic: honest mediators reject exactly the fake results
    "pricing.payment_collateral_wei=50000000000000000000",  # P = 50 tokens >> C (< 1 token): no cap
    "market.rp_wallet_tokens=10000",
    "market.n_job_creators=20", "market.n_resource_providers=10", "market.episode_ticks=100",
)  # fmt: skip


@pytest.mark.parametrize("p,m", [(0.25, 2), (0.1, 8), (0.5, 1)])
def test_cheater_profit_per_deal(compose, p, m):
    cfg = compose(*BASE, "policies.rp.policy=always_cheat", f"policies.jc.check_probability={p}",
                  f"pricing.results_collateral_multiple={m}")  # fmt: skip
    deals = run_episodes(cfg, episodes=3, seed=11).deals
    done = deals[deals.outcome.isin(["accepted", "check_failed"])]
    assert len(done) > 400 and done.cheated.all()
    x = done.rp_profit_tokens / done.job_cost_tokens  # 1 or -m per deal
    assert set(np.round(x, 9)) <= {1.0, -float(m)}
    expected = (1 - p) - p * m
    se = x.std(ddof=1) / np.sqrt(len(x))
    assert abs(x.mean() - expected) < 4 * se, (x.mean(), expected, se)
    # the same in tokens per deal: E[profit] = ((1 - p) - p m) E[C]
    se_abs = done.rp_profit_tokens.std(ddof=1) / np.sqrt(len(done))
    assert (
        abs(done.rp_profit_tokens.mean() - expected * done.job_cost_tokens.mean())
        < 4 * se_abs + 1e-12
    )


def test_honest_profit_is_payment_minus_cost(compose):
    cfg = compose(*BASE, "policies.rp.policy=honest", "policies.jc.check_probability=0.3")
    deals = run_episodes(cfg, episodes=2, seed=5).deals
    done = deals[deals.outcome.isin(["accepted", "check_passed"])]
    assert len(done) > 200 and not done.cheated.any()
    assert (deals.outcome == "check_failed").sum() == 0  # deterministic jobs always pass
    profit_wei = done.paid_to_rp_wei - done.slashed_rp_wei - done.rp_exec_cost_wei
    assert (profit_wei == done.job_cost_wei - done.rp_exec_cost_wei).all()
    assert (done.paid_to_rp_wei == done.job_cost_wei).all()
    assert np.allclose(done.rp_profit_tokens, (done.job_cost_wei - done.rp_exec_cost_wei) / 1e18)
