"""Result A (spec section 2): the analytic threshold of the experiment config, the market it
describes, and the analysis of a sweep's long-format dataset (hand-built here)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pandas as pd
import pytest

from experiments import result_a as ra
from experiments.run import run_episodes
from twin.config import ConfigError


@pytest.fixture(scope="module")
def cfg(compose):
    return compose("experiment=result_a_threshold")


def test_cost_price_ratio_is_one_half(cfg):
    # The one machine is a cpu_server: 1.224 USD/h at token_usd = 0.017 USD per token is
    # 72 tokens/h = 0.02 tokens/s = 2e16 wei/s. It runs cowsay (CPU work) at speed 1.0, so a job
    # of u units runs u seconds: c = u x 2e16 wei. The one price level 1.0 prices a unit at
    # instruction_price_wei = 4e16 wei, so P = u x 4e16 wei and c / P = 1/2 exactly.
    assert cfg.hardware.shares["cpu_server"] == 1.0 and cfg.market.token_usd == 0.017
    assert cfg.pricing.instruction_price_wei == 4 * 10**16
    assert ra.cost_price_ratio(cfg) == Fraction(1, 2)


@pytest.mark.parametrize(
    "p,f,k,m_star,m_inflate",
    [
        # m* = (1 - f)(c/P)/p - 1 with c/P = 1/2; inflate: (1 - 1/k)/p - 1
        (0.1, 0.0, 2, 0.5 / 0.1 - 1, 0.5 / 0.1 - 1),  # 4 and 4: the two boundaries coincide
        (0.05, 0.0, 2, 9.0, 9.0),  # 0.5 / 0.05 - 1
        (0.8, 0.0, 2, -0.375, -0.375),  # 0.5 / 0.8 - 1: cheating never pays, even at m = 0
        (0.1, 0.5, 3, 0.25 / 0.1 - 1, (2 / 3) / 0.1 - 1),  # 1.5 and 5.667: inflating pays longer
    ],
)
def test_threshold_multiples_by_hand(compose, p, f, k, m_star, m_inflate):
    cfg = compose("experiment=result_a_threshold", f"policies.jc.check_probability={p}",
                  f"execution.cheat_cost_fraction={f}", f"execution.inflate_factor={k}")  # fmt: skip
    assert ra.threshold_multiple(cfg) == pytest.approx(m_star, abs=1e-12)
    assert ra.inflate_threshold_multiple(cfg) == pytest.approx(m_inflate, abs=1e-12)
    assert ra.dishonesty_threshold_multiple(cfg) == pytest.approx(max(m_star, m_inflate))
    # the explicit p wins over the config's
    assert ra.threshold_multiple(cfg, p=0.25) == pytest.approx((1 - f) * 0.5 / 0.25 - 1)


def test_threshold_table(cfg):
    t = ra.threshold_table(cfg, [0.05, 0.1, 0.8])
    assert np.allclose(t.m_star, [9.0, 4.0, -0.375])  # 0.5 / p - 1
    assert np.allclose(t.boundary, t.m_star) and np.allclose(t.m_star_inflate, t.m_star)


def test_market_pays_honest_work_half_its_price(cfg):
    """The market itself has c/P = 1/2: an honest node's profit on every paid deal is exactly
    P - c = P/2 = c, to the wei (paid P = job cost, bore c = its execution cost)."""
    deals = run_episodes(cfg, episodes=1, seed=3).deals
    paid = deals[deals.outcome.isin(["accepted", "check_passed"])]
    assert len(paid) > 100
    assert (paid.paid_to_rp_wei == paid.job_cost_wei).all()
    assert (2 * paid.rp_exec_cost_wei == paid.job_cost_wei).all()


@pytest.mark.parametrize(
    "override,field",
    [
        ("hardware.shares.consumer_gpu=0.5", "hardware.shares"),
        ("pricing.price_levels=[1.0,1.5]", "pricing.price_levels"),
        ("market.modules=[cowsay,sdxl]", "market.modules"),
        ("market.modules=[llama3_8b]", "market.modules"),  # GPU work a cpu_server cannot run
    ],
)
def test_cost_price_ratio_refuses_markets_without_one_ratio(compose, override, field):
    cfg = compose("experiment=result_a_threshold", override)
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        ra.cost_price_ratio(cfg)


def test_threshold_rejects_bad_p(cfg):
    with pytest.raises(ValueError, match="check probability"):
        ra.threshold_multiple(cfg, p=0.0)


def test_grids_and_budgets():
    full = ra.grid("full")
    assert full.trials == 125 and len(full.seeds) == 5  # 5 x 5 cells x 5 seeds
    assert set(full.params) == {ra.P_KEY, ra.M_KEY}
    # deterrence ratios 2 p (1 + m) cover 0.1 .. 25.6: cells on both sides of the boundary
    r = [ra.deterrence_ratio(p, m, 0.5) for p in full.check_probabilities for m in full.multiples]
    regions = list(ra.region(r))
    assert regions.count("below") == 6 and regions.count("above") == 10
    tiny = ra.grid("tiny")
    assert sorted(ra.region([ra.deterrence_ratio(p, m, 0.5) for p, m in
                             zip(tiny.check_probabilities, tiny.multiples, strict=True)])) == ["above", "below"]  # fmt: skip
    with pytest.raises(ValueError, match="budget must be one of"):
        ra.grid("huge")


def test_sweep_overrides():
    tiny = ra.sweep_overrides("tiny")
    assert tiny[0] == "experiment=result_a_threshold" and "run.episodes=1" in tiny
    assert set(ra.TINY_OVERRIDES) <= set(tiny)
    assert f"{ra.P_KEY}=0.05,0.8" in tiny and f"{ra.M_KEY}=0,15" in tiny
    full = ra.sweep_overrides("full")
    assert f"{ra.P_KEY}=0.05,0.1,0.2,0.4,0.8" in full and f"{ra.M_KEY}=0,1,3,7,15" in full
    assert "run.episodes=2" in full and not set(ra.TINY_OVERRIDES) & set(full)


def test_experiment_config_budgets():
    full, tiny = ra.experiment_config("full"), ra.experiment_config("tiny", [f"{ra.M_KEY}=7"])
    assert full.train.iterations == 16 and full.train.gae_lambda == 0.95
    assert tiny.train.iterations == 1 and tiny.pricing.results_collateral_multiple == 7


# -- analysis of a hand-built sweep dataset ---------------------------------------------------------
def _dataset() -> pd.DataFrame:
    """Three cells x three seeds in the sweep's long format, plus noise the analysis must skip:
    another metric, a failed trial, and a trial re-run after a failure."""
    values = {
        (0.05, 0): [1.0, 1.0, 0.85],  # r = 0.05 * 1 / 0.5 = 0.1: well below
        (0.1, 3): [0.7, 0.5, 0.3],  # r = 0.1 * 4 / 0.5 = 0.8: near
        (0.4, 7): [0.0, 0.3, 0.0],  # r = 0.4 * 8 / 0.5 = 6.4: well above
    }
    rows, tid = [], 0
    for (p, m), vs in values.items():
        for seed, v in enumerate(vs):
            tid += 1
            base = {"sweep": "a", "trial_id": f"t{tid}", "seed": seed, ra.P_KEY: p, ra.M_KEY: m,
                    "overrides": f"{ra.P_KEY}={p} {ra.M_KEY}={m}", "node": "n0", "status": "ok"}  # fmt: skip
            rows.append({**base, "metric": ra.METRIC, "value": v})
            # one seed of the well-above cell walked away from its jobs: a loss
            pay = -55.0 if (p, m, seed) == (0.4, 7, 1) else 5.0
            rows.append({**base, "metric": ra.PAYOFF_METRIC, "value": pay})
    rows.append({**rows[0], "trial_id": "t99", "seed": 7, "status": "failed", "value": 0.0})
    return pd.DataFrame(rows)


def test_cell_table_by_hand():
    t = ra.cell_table(_dataset(), ratio=0.5).set_index(["p", "m"])
    assert list(t.seeds) == [3, 3, 3]  # the failed trial (seed 7) is left out
    below = t.loc[(0.05, 0)]
    # mean (1 + 1 + 0.85)/3 = 0.95; sd = sqrt(((0.05)^2 * 2 + 0.1^2) / 2) = sqrt(0.0075) = 0.0866;
    # 95 % t-interval with 2 degrees of freedom: t = 4.3027, half-width 4.3027 * 0.0866 / sqrt(3)
    assert below["mean"] == pytest.approx(0.95)
    assert below["std"] == pytest.approx(np.sqrt(0.0075))
    half = 4.302652729911275 * np.sqrt(0.0075) / np.sqrt(3)
    assert below["ci_high"] - below["mean"] == pytest.approx(half)
    assert (below["min"], below["max"]) == (0.85, 1.0)
    assert below["m_star"] == pytest.approx(0.5 / 0.05 - 1)  # 9
    assert t.loc[(0.4, 7), "r"] == pytest.approx(6.4)


def test_agreement_table_by_hand():
    t = ra.agreement(_dataset(), ratio=0.5).set_index(["p", "m"])
    assert list(t.region) == ["below", "near", "above"]
    assert list(t.predicted) == ["cheat", "", "honest"]
    assert t.loc[(0.05, 0), "agrees"] is True  # 0.95 >= 0.9
    assert t.loc[(0.1, 3), "agrees"] is None  # near: no verdict
    assert t.loc[(0.4, 7), "agrees"] is True  # mean 0.1 <= 0.1
    # payoff: (5 - 55 + 5) / 3 = -15 where one seed skipped; 5 elsewhere
    assert list(t.payoff_tokens) == pytest.approx([5.0, 5.0, -15.0])
    strict = ra.agreement(_dataset(), ratio=0.5, honest_max=0.05).set_index(["p", "m"])
    assert strict.loc[(0.4, 7), "agrees"] is False
    assert ra.summarize_agreement(strict) == {"cells": 3, "judged": 2, "agree": 1,
                                              "disagree": 1, "near": 1}  # fmt: skip
    # a wider margin leaves (0.4, 7) judged (6.4 >= 4) and (0.05, 0) too (0.1 <= 1/4)
    assert list(ra.agreement(_dataset(), 0.5, margin=4).region) == ["below", "near", "above"]
    assert list(ra.agreement(_dataset(), 0.5, margin=8).region) == ["below", "near", "near"]


def test_region_margin_must_exceed_one():
    with pytest.raises(ValueError, match="margin"):
        ra.region([1.0], margin=1.0)


def test_seed_values_names_missing_columns():
    with pytest.raises(ValueError, match=r"policies\.jc\.check_probability"):
        ra.seed_values(_dataset().drop(columns=[ra.P_KEY]))


def test_phase_diagram_draws_cells_and_boundary(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    fig = ra.phase_diagram(_dataset(), ratio=0.5)
    ax = fig.axes[0]
    # the boundary 1 + m* = (c/P)/p: at p = 0.1 it passes 1 + m = 5
    x, y = ax.lines[0].get_data()
    assert np.allclose(x * y, 0.5)
    assert [t.get_text() for t in ax.texts][0].startswith("0.95")
    fig.savefig(tmp_path / "a.png")
    with pytest.raises(ValueError, match="nothing to draw"):
        ra.phase_diagram(_dataset().assign(status="failed"), ratio=0.5)
