"""Result B (spec section 3) with learning pairs: the conditions derived from the configs by hand,
the table and verdict builders on hand-built inputs, the wealth that dual-deal rewards see, and a
tiny-budget run of the driver (experiments/result_b.py)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from experiments import result_b as rb
from twin.mechanisms.counter_collusion import Terms

TOKEN = 10**18
# cost_wei_per_s of a cpu_server (1.224 USD/h) at 0.00034 USD/token:
# int(1.224 / 0.00034 * 1e18) // 3600, about 1 token per second (float rounding: a few wei below)
K = int(1.224 / 0.00034 * 10**18) // 3600


def test_cost_range_of_the_result_b_market(compose):
    # cowsay: median 2 units, sigma 0.3; the central 99.9 % of log-normal work lies within
    # z = 3.2905 sigmas: 2 * exp(0.3 * 3.2905) = 2 * 2.6836 = 5.367 -> 6 units (rounded up),
    # 2 * exp(-0.98715) = 0.745 -> 1 unit (at least 1). A cpu_server runs 1 unit/s, so the runs
    # take 1 and 6 s at K wei/s: c in [K, 6K], i.e. [1, 6] tokens.
    assert abs(K - TOKEN) < 10**6
    for name in rb.EXPERIMENTS.values():
        assert rb.cost_range(compose(f"experiment={name}")) == (K, 6 * K)
    # a coverage of 50 %: z = 0.6745, 2 * exp(+-0.2023) = 2.448 / 1.634 -> 3 and 2 units
    cfg = compose("experiment=result_b_colluder")
    assert rb.cost_range(cfg, coverage=0.5) == (2 * K, 3 * K)
    # a machine that cannot run the job (no CPU speed) is skipped; none at all is an error
    with pytest.raises(ValueError, match="hardware.shares"):
        rb.cost_range(compose("experiment=result_b_colluder", "market.modules=[sdxl]"))


def test_conditions_at_by_hand():
    # w = 5, d = 16, ch = 6, t = 24, b = 0.5 tokens (result_b_colluder / _traitor)
    t = Terms(5, 16, 6, 24, 0.5, True, True)
    k = rb.conditions_at(t, 1)  # c = 1
    # tacit collusion stable iff d <= c + ch: 16 <= 7 no; leader loyal iff t > d - c - ch = 9
    # (24 > 9 yes); follower t >= 9 - 0.5 (yes); leader initiates iff b < c (0.5 < 1 yes);
    # betrayal pays iff d > c + ch (16 > 7 yes); loyalty dominant iff t > w - c + d = 20 (yes);
    # collusion risk-dominant iff c + ch - d = -9 > w - c + d = 20 (no)
    assert k == {"tacit_stable": False, "leader_loyal": True, "follower_loyal": True,
                 "leader_initiates": True, "betrayal_pays": True, "loyal_dominant": True,
                 "collusion_risk_dominant": False}  # fmt: skip
    # c = 0.4 < b: the leader would not pay the bribe
    assert not rb.conditions_at(t, 0.4)["leader_initiates"]
    # t = 19: t > w - c + d = 20 fails (loyal only against a loyal partner): not dominant
    assert not rb.conditions_at(Terms(5, 16, 6, 19, 0.5, True), 1)["loyal_dominant"]
    # prisoner_cheat: d = 1, c = 1: stable (1 <= 7); risk-dominant: 1 + 6 - 1 = 6 > 5 - 1 + 1 = 5
    k = rb.conditions_at(Terms(5, 1, 6, 0, 0), 1)
    assert k["tacit_stable"] and k["collusion_risk_dominant"]
    # ... but not with w = 6 (6 > 6 fails)
    assert not rb.conditions_at(Terms(6, 1, 6, 0, 0), 1)["collusion_risk_dominant"]


@pytest.mark.parametrize(
    "experiment,expected",
    [("prisoner_honest", "honest"), ("prisoner_cheat", "collude"), ("colluder", "collude"),
     ("traitor", "honest")],
)  # fmt: skip
def test_predictions_of_the_configs(compose, experiment, expected):
    # c in [1, 6] tokens, w = 5, ch = 6:
    # prisoner_honest d = 16 > 6 + 6: no stable collusion -> honest;
    # prisoner_cheat d = 1 <= 1 + 6: stable -> collude;
    # colluder d = 16, t = 24 > 16 - 1 - 6 = 9, b = 0.5 < 1 -> collude;
    # traitor: the same plus betrayal, which pays since 16 > 6 + 6 -> honest
    cfg = compose(f"experiment={rb.EXPERIMENTS[experiment]}")
    assert rb.prediction(cfg) == expected
    k = rb.conditions(cfg)
    assert list(k.columns) == ["at_c_lo", "at_c_hi", "every_job", "no_job"]


def test_a_config_straddling_the_boundary_is_refused(compose):
    # d = 9: d > c + ch holds for c < 3 tokens and fails for c >= 3: some jobs on each side
    cfg = compose(
        "experiment=result_b_prisoner_honest", f"counter_collusion.deposit_wei={9 * TOKEN}"
    )
    with pytest.raises(ValueError, match=r"straddle .* \[1, 6\] tokens"):
        rb.prediction(cfg)
    cfg = compose("experiment=result_b_traitor", f"counter_collusion.deposit_wei={9 * TOKEN}")
    with pytest.raises(ValueError, match="straddle"):
        rb.prediction(cfg)


def test_mean_ci_by_hand():
    # mean 0.4, sd 0.2, n = 3: t(0.975, 2) = 4.302653 -> half-width 4.302653 * 0.2 / sqrt(3)
    m, lo, hi = rb.mean_ci([0.2, 0.4, 0.6, float("nan")])
    half = 4.302653 * 0.2 / math.sqrt(3)
    assert m == pytest.approx(0.4) and lo == pytest.approx(0.4 - half, abs=1e-5)
    assert hi == pytest.approx(0.4 + half, abs=1e-5)
    assert rb.mean_ci([1.0, 1.0]) == (1.0, 1.0, 1.0)
    m, lo, hi = rb.mean_ci([0.3])
    assert m == 0.3 and math.isnan(lo) and math.isnan(hi)
    assert all(math.isnan(x) for x in rb.mean_ci([]))


def _dual(outcomes, decisions, agreed, pay):
    return pd.DataFrame({
        "outcome": outcomes, "decision_a": [d[0] for d in decisions],
        "decision_b": [d[1] for d in decisions], "agreed": agreed,
        "payoff_a_tokens": [p[0] for p in pay], "payoff_b_tokens": [p[1] for p in pay],
    })  # fmt: skip


def test_deal_rates_by_hand():
    dual = _dual(
        ["collusion", "honest", "betrayed", "cheat_caught"],
        [("cheat", "cheat"), ("honest", "honest"), ("betray", "cheat"), ("honest", "none")],
        [True, False, True, False],
        [(5, 5), (3, 3), (-16, 12), (10, -16)],
    )
    r = rb.deal_rates(dual)
    # 1 of 4 deals colluded, 1 betrayed, 2 agreed, 1 honest; decisions (7, 'none' dropped):
    # cheat, cheat, honest, honest, betray, cheat, honest -> 3 of 7 cheat;
    # mean node payoff over the 8 node-deals: (10 + 6 - 4 - 6) / 8 = 0.75
    assert r == {"dual_deals": 4.0, "collusion_rate": 0.25, "cheat_rate": 3 / 7, "agreed_rate": 0.5,
                 "betrayal_rate": 0.25, "honest_rate": 0.25, "node_payoff_tokens": 0.75}  # fmt: skip


def _runs():
    rows = []
    for x, pred, coll, cheat in [
        ("prisoner_honest", "honest", [0.0, 0.0, 0.0], [0.0, 0.01, 0.02]),
        ("prisoner_cheat", "collude", [1.0, 0.9, 0.8], [1.0, 0.9, 0.8]),
        ("colluder", "collude", [1.0, 0.0, 0.5], [1.0, 0.0, 0.5]),
        ("traitor", "honest", [0.0, 0.3, 0.0], [0.0, 0.3, 0.0]),
    ]:
        for s in range(3):
            rows.append({"experiment": x, "seed": s, "prediction": pred, "dual_deals": 100.0,
                         "collusion_rate": coll[s], "cheat_rate": cheat[s], "agreed_rate": coll[s],
                         "betrayal_rate": 0.0, "node_payoff_tokens": 1.0})  # fmt: skip
    return pd.DataFrame(rows)


def test_table_and_verdicts_on_hand_built_runs():
    tab = rb.table(_runs())
    assert list(tab.experiment) == list(rb.EXPERIMENTS) and (tab.seeds == 3).all()
    t = tab.set_index("experiment")
    half = 4.302653 * 0.1 / math.sqrt(3)  # prisoner_cheat: mean 0.9, sd 0.1
    assert t.loc["prisoner_cheat", "collusion_rate"] == pytest.approx(0.9)
    assert t.loc["prisoner_cheat", "collusion_rate_lo"] == pytest.approx(0.9 - half, abs=1e-5)
    assert t.loc["prisoner_honest", "collusion_rate_hi"] == 0.0
    assert t.loc["prisoner_honest", "dual_deals"] == 300
    # seeds with a collusion rate of at least 1/2: 3 (1, 0.9, 0.8), 2 (1, 0.5), 0 (0.3 at most)
    assert t.seeds_colluding.to_dict() == {"prisoner_honest": 0, "prisoner_cheat": 3,
                                           "colluder": 2, "traitor": 0}  # fmt: skip
    v = rb.verdicts(tab).set_index("experiment").verdict
    # honest: collusion CI [0, 0] and cheat CI upper 0.01 + 4.30 * 0.01 / sqrt(3) = 0.035 < 0.1;
    # prisoner_cheat: lower end 0.9 - 0.248 = 0.652 > 0.5; colluder: mean 0.5, sd 0.5, lower end
    # < 0; traitor: mean 0.1, upper end 0.1 + 4.30 * 0.173 / sqrt(3) = 0.53 > 0.1
    assert v.to_dict() == {"prisoner_honest": "reproduced", "prisoner_cheat": "reproduced",
                           "colluder": "not reproduced", "traitor": "not reproduced"}  # fmt: skip
    one = rb.table(_runs()[lambda d: d.seed == 0])
    assert set(rb.verdicts(one).verdict) == {"undecided"}


def test_dual_deal_deposits_count_as_wealth_until_settlement(compose):
    # Honest nodes under the prisoner's contract: at every tick, each party's wealth is its
    # ledger wealth (wallet + reclaimable escrow) plus what it has paid into the contracts of its
    # open dual deals: d = 16 tokens per open deal for a node, 2w + ch = 16 for the client.
    from twin.env import MarketEnv

    cfg = compose("experiment=result_b_prisoner_honest", "policies.rp.learning_share=0")
    env = MarketEnv(cfg)
    env.reset(seed=0)
    mk = env.market
    mech = next(m for m in mk.mechanisms if m.name == "counter_collusion")
    seen = 0
    while not mk.done:
        env.step({})
        extra = mk.wealth_tokens() - mk.ledger.wealth_tokens()
        want = np.zeros(mk.n_accounts)
        for di in mech.open:
            dd = mech.duals[di]
            want[list(dd.nodes)] += 16
            want[dd.jc] += 2 * 5 + 6
            seen += 1
        assert np.allclose(extra, want, atol=1e-9)
    assert seen > 10 and not mech.open
    # at the end the rewards add up to the payoffs, and an honest dual deal paid each node w - c
    dual = mech.tables(mk)["dual_deals"]
    assert (dual.outcome == "honest").all()
    np.testing.assert_allclose(dual.payoff_a_tokens, 5 - dual.cost_a_wei / TOKEN)


def test_contract_features_above_int64_amounts(compose):
    # t = 24 tokens = 2.4e19 wei does not fit an int64: the observation still carries its symlog
    from twin.env import MarketEnv
    from twin.observe import observe

    env = MarketEnv(compose("experiment=result_b_colluder", "policies.rp.learning_share=0"))
    env.reset(seed=0)
    names = env.features["rp"]
    col = names.index("counter_collusion.ccc_collusion_deposit")
    for _ in range(50):
        env.step({})
        X = observe(env.market, env.n_levels).rp  # (what the scripted nodes read next)
        focus = X[:, names.index("counter_collusion.ccc_focus")] > 0
        if focus.any():
            assert np.allclose(np.expm1(X[focus, col]), 24, rtol=1e-5)
            return
    raise AssertionError("no dual-deal decision in 50 ticks")


@pytest.mark.slow
def test_tiny_budget_driver(tmp_path):
    runs = rb.run("tiny", tmp_path, verbose=False)
    assert list(runs.experiment) == list(rb.EXPERIMENTS) and (runs.seed == 0).all()
    assert list(runs.prediction) == ["honest", "collude", "collude", "honest"]
    assert (runs.dual_deals > 0).all() and runs.collusion_rate.between(0, 1).all()
    for x in rb.EXPERIMENTS:
        assert (tmp_path / x / "seed_0" / "metrics.parquet").exists()
        assert (tmp_path / x / "seed_0" / "dual_deals.csv").exists()
    again = rb.run("tiny", tmp_path, verbose=False)  # everything done: nothing runs again
    pd.testing.assert_frame_equal(again, runs)
    tab = rb.table(runs)
    assert len(rb.verdicts(tab)) == 4
    curves = rb.learning_curves(tmp_path)
    assert set(curves.experiment) == set(rb.EXPERIMENTS) and len(curves) == 4


def test_analytic_table_of_the_configs():
    # the terms of the configs (tokens) and c in [1, 6] (see test_cost_range...):
    # prisoner_honest d = 16: tacit collusion unstable (16 > 6 + 6 for the dearest job),
    # betrayal would pay; prisoner_cheat d = 1: stable (1 <= 1 + 6), betrayal never pays;
    # colluder/traitor d = 16, t = 24 > 16 - 1 - 6 = 9, b = 0.5 < 1: loyal and initiating.
    # A condition holding for some jobs only would read "depends on c" (none does here).
    tab = rb.analytic_table("full")
    assert list(tab.index) == list(rb.EXPERIMENTS)
    assert list(tab.contracts) == ["prisoner", "prisoner", "prisoner+colluder",
                                   "prisoner+colluder+traitor"]  # fmt: skip
    assert list(tab.d) == [16, 1, 16, 16] and (tab.w == 5).all() and (tab.ch == 6).all()
    assert list(tab.t) == [0, 0, 24, 24] and list(tab.b) == [0, 0, 0.5, 0.5]
    assert (tab.c_lo == 1).all() and (tab.c_hi == 6).all()
    assert list(tab.tacit_stable) == [False, True, False, False]
    assert list(tab.betrayal_pays) == [True, False, True, True]
    # leader loyal iff t > d - c - ch: 0 > 16 - c - 6 >= 4 no; 0 > 1 - c - 6 yes; 24 > 9 yes;
    # leader initiates iff b < c: 0 < 1 and 0.5 < 1
    assert list(tab.leader_loyal) == [False, True, True, True]
    assert list(tab.leader_initiates) == [True] * 4
    assert list(tab.prediction) == ["honest", "collude", "collude", "honest"]


def test_outcome_shares_pool_the_seeds(tmp_path):
    # colluder: seed 0 has 3 deals (2 collusion, 1 honest), seed 1 has 1 (collusion): 3/4, 1/4;
    # traitor: 2 deals, 1 betrayed, 1 honest
    for x, s, outcomes in [("colluder", 0, ["collusion", "collusion", "honest"]),
                           ("colluder", 1, ["collusion"]), ("traitor", 0, ["betrayed", "honest"])]:  # fmt: skip
        d = tmp_path / x / f"seed_{s}"
        d.mkdir(parents=True)
        pd.DataFrame({"outcome": outcomes, "dual": range(len(outcomes))}).to_csv(
            d / "dual_deals.csv", index=False
        )
    shares = rb.outcome_shares(tmp_path)
    assert list(shares.index) == ["colluder", "traitor"]
    assert shares.loc["colluder"].to_dict() == {"betrayed": 0.0, "collusion": 0.75, "honest": 0.25}
    assert shares.loc["traitor"].to_dict() == {"betrayed": 0.5, "collusion": 0.0, "honest": 0.5}
    with pytest.raises(ValueError, match="dual_deals.csv"):
        rb.outcome_shares(tmp_path / "nothing")


def test_stage_game_equilibria_by_hand():
    # Colluder's contract, w = 5, d = 16, ch = 6, t = 24, b = 0.5, c = 2 tokens, a cheat costs 0;
    # node 0 leads. Agreed (and bound) subgame: both submit r -> prisoner's pays w each, the
    # colluder's contract takes b from the leader to the follower: (4.5, 5.5). The leader turning
    # honest: w + d - ch - c = 13, less its forfeited t + b = 24.5 -> -11.5 < 4.5; skipping:
    # -d - 24.5 = -40.5. The follower turning honest: 13 - 24 = -11 < 5.5: strict.
    # Unagreed subgame: honest/honest (w - c = 3 each); a wrong answer or none alone loses d:
    # -16 < 3: strict. Sign stage: agree/agree -> (4.5, 5.5) > 3: strict; refuse/refuse -> 3,
    # and a lone agreement leaves the pair unagreed: still 3, so only weak.
    T = TOKEN
    g = rb.stage_game(Terms(5 * T, 16 * T, 6 * T, 24 * T, T // 2, True, False), 2 * T)
    assert g.to_dict("records") == [
        {"outcome": "cheat/cheat", "leader_tokens": 4.5, "follower_tokens": 5.5,
         "sign": "agree/agree", "strict": True},
        {"outcome": "honest/honest", "leader_tokens": 3.0, "follower_tokens": 3.0,
         "sign": "refuse/refuse", "strict": False},
    ]  # fmt: skip
    # Adding the traitor's contract: against a partner submitting r, betraying pays
    # w + d - ch - c = 13 (less b for the leader) > 4.5; against a betrayer, betraying too gives
    # (13 - 16) / 2 = -1.5 on average (who reports first is a fair draw), -2 for the leader
    # (-1.5 - b) and -1 for the follower, while honesty gives 13 - t - b = -11.5 / 13 - t = -11.
    # So agreeing leads to betray/betray at (-2, -1) < 3: no equilibrium agrees; any sign
    # profile with a refusal leads to honest/honest (3, 3), weakly (a lone sign changes nothing).
    g = rb.stage_game(Terms(5 * T, 16 * T, 6 * T, 24 * T, T // 2, True, True), 2 * T)
    assert g.to_dict("records") == [
        {"outcome": "honest/honest", "leader_tokens": 3.0, "follower_tokens": 3.0,
         "sign": "agree/refuse, refuse/agree, refuse/refuse", "strict": False},
    ]  # fmt: skip
    # the configs, at the median job's cost c = 2 tokens: collusion is an equilibrium of
    # prisoner_cheat (5, 5: w each) and colluder, never of prisoner_honest and traitor
    eq = rb.equilibria("full").reset_index()
    assert (eq.c == 2.0).all()
    colluding = eq[eq.outcome == "cheat/cheat"].groupby("experiment").leader_tokens.max()
    assert colluding.to_dict() == {"colluder": 4.5, "prisoner_cheat": 5.0}
    assert eq[eq.experiment == "colluder"].strict.tolist() == [True, False]


def test_learning_curves_skip_unfinished_runs(tmp_path):
    # colluder seed 0 finished (run.csv), seed 1 killed after writing metrics: only seed 0 counts;
    # the "market" role row is not the nodes' payoff
    m = pd.DataFrame({"iteration": [1, 1, 2, 2], "role": ["rp", "market", "rp", "market"],
                      "learning_payoff_tokens": [-3.0, 9.0, 4.0, 9.0]})  # fmt: skip
    for s in (0, 1):
        d = tmp_path / "colluder" / f"seed_{s}"
        d.mkdir(parents=True)
        m.to_parquet(d / "metrics.parquet")
    pd.DataFrame([{"experiment": "colluder", "seed": 0}]).to_csv(
        tmp_path / "colluder" / "seed_0" / rb.RUN_CSV, index=False
    )
    c = rb.learning_curves(tmp_path)
    assert c.to_dict("list") == {"iteration": [1, 2], "learning_payoff_tokens": [-3.0, 4.0],
                                 "experiment": ["colluder"] * 2, "seed": [0, 0]}  # fmt: skip
    assert rb.runs_table(tmp_path).to_dict("records") == [{"experiment": "colluder", "seed": 0}]
    assert (tmp_path / rb.RUNS_CSV).exists()
