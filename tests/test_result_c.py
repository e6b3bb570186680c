"""Result C (experiments/result_c.py): the jackpot boundary of each experiment config derived by
hand, the verdict logic on synthetic tables, and a tiny-budget run of the driver (real RLlib,
one Ray for the module), killed and resumed."""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest

from experiments import result_c as rc

T = 10**18


# -- the boundary, by hand ------------------------------------------------------------------------
def test_payment_range_of_the_common_market():
    # cowsay: work log-normal, median 2 units, sigma 0.3; the central 99.9 % spans
    # z = 3.2905: 2 e^(-0.987) = 0.745 -> ceil 1 unit, 2 e^(0.987) = 5.37 -> ceil 6 units;
    # one price level 1.0 at 2 tokens per unit: P in [2, 12] tokens (below the 40-token
    # payment collateral, so uncapped).
    assert rc.payment_range(rc.experiment_config("none")) == (2 * T, 12 * T)


def test_boundary_without_jackpot():
    # No forced errors: a check of an honest result finds nothing, J = 0, phi J = 0 < F = 2.
    b = rc.boundary(rc.experiment_config("none"))
    assert b.forced_error_rate == 0 and b.payout_wei == 0 and b.expected_payout_wei == 0
    assert b.check_cost_wei == 2 * T and b.ratio == 0
    # client return of a check of an honest result: 0 - F = -2 tokens for every job
    assert b.client_return_lo_wei == b.client_return_hi_wei == -2 * T
    assert b.side == "below" and rc.prediction(rc.experiment_config("none")) == "falls"


def test_boundary_below():
    # phi = 0.05 = 1/20; J = min(floor(0.4 tokens / (1/20)), floor(20000 tokens x 1/3))
    #   = min(8 tokens, 6666.67 tokens) = 8 tokens; phi J = 0.4 tokens = F / 5.
    # Largest job: phi (J + P_max) - F = (8 + 12) / 20 - 2 = -1 token; smallest: (8 + 2)/20 - 2
    # = -1.5 tokens. Well below: 2 x (phi (J + P_max)) = 2 x 1 = 2 <= F = 2.
    b = rc.boundary(rc.experiment_config("below"))
    assert b.forced_error_rate == Fraction(1, 20)
    assert b.payout_wei == 8 * T
    assert b.expected_payout_wei == Fraction(2, 5) * T
    assert b.ratio == Fraction(1, 5)
    assert b.client_return_hi_wei == -1 * T and b.client_return_lo_wei == Fraction(-3, 2) * T
    assert b.side == "below" and rc.prediction(rc.experiment_config("below")) == "falls"


def test_boundary_above():
    # J = min(floor(6 tokens x 20), floor(20000 / 3 tokens)) = 120 tokens; phi J = 6 = 3 F.
    # Expected drain of an episode: phi x (6 clients x 0.3 jobs per tick x 100 ticks = 180 jobs)
    # x 120 = 1080 tokens; the jackpot keeps 20000 - 1080 = 18920 >= J / (1/3) = 360 tokens,
    # so the payout stays J (the cap does not bind).
    b = rc.boundary(rc.experiment_config("above"))
    assert b.payout_wei == 120 * T and b.expected_payout_wei == 6 * T and b.ratio == 3
    assert b.expected_drain_wei == 1080 * T and b.need_wei == 360 * T and b.jackpot_holds
    # smallest job: (120 + 2) / 20 - 2 = 4.1 tokens; largest: (120 + 12) / 20 - 2 = 4.6 tokens
    assert b.client_return_lo_wei == Fraction(41, 10) * T
    assert b.client_return_hi_wei == Fraction(46, 10) * T
    assert b.side == "above" and rc.prediction(rc.experiment_config("above")) == "holds"


def test_the_jackpot_cap_binds_and_a_config_near_the_boundary_gets_no_prediction():
    # A 30-token jackpot pays at most floor(30 / 3) = 10 tokens per forced error, not 120:
    # phi J = 0.5 tokens < 2 F = 4 (not well above) and phi (J + P_max) = (10 + 12) / 20 = 1.1
    # tokens > F / 2 = 1 (not well below): near the boundary.
    cfg = rc.experiment_config("above", overrides=("taxes.seed_jackpot_tokens=30",))
    b = rc.boundary(cfg)
    assert b.payout_wei == 10 * T and b.expected_payout_wei == T // 2
    assert b.side == "near"
    with pytest.raises(ValueError, match="near the boundary"):
        rc.prediction(cfg)
    # phi J = 2 F exactly (compensation 4 tokens: J = 80, phi J = 4 = 2 F): well above
    cfg = rc.experiment_config("above", overrides=("taxes.compensation_wei=4000000000000000000",))
    assert rc.boundary(cfg).side == "above"
    # ... but not when the jackpot cannot keep paying J: 80 / (1/3) = 240 tokens needed after an
    # expected drain of 180 / 20 x 80 = 720 tokens; a 900-token jackpot keeps 180 < 240.
    cfg = rc.experiment_config("above", overrides=("taxes.compensation_wei=4000000000000000000",
                                                   "taxes.seed_jackpot_tokens=900"))  # fmt: skip
    b = rc.boundary(cfg)
    assert b.payout_wei == 80 * T and not b.jackpot_holds and b.side == "near"


def test_node_threshold():
    # cpu_server: 1.224 USD/h at 0.00034 USD/token: int(1.224 / 0.00034 x 1e18) // 3600 wei/s
    # (the float quotient is 3599.9999999999995, so just under 1 token/s); speed 1 unit/s; the
    # price is 2 tokens per unit; m = 9: p* = (c/P) / (1 + m) = (c / 2e18) / 10, about 1/20.
    c = int(1.224 / 0.00034 * 10**18) // 3600
    assert rc.node_threshold(rc.experiment_config("none")) == Fraction(c, 2 * T) / 10
    assert abs(float(rc.node_threshold(rc.experiment_config("none"))) - 0.05) < 1e-15


def test_simulated_check_return_has_the_derived_sign():
    # Against honest nodes, without forced errors, checking every result instead of none costs
    # the clients exactly F = 2 tokens per checked deal and saves nothing; with the above
    # setting's jackpot it returns phi (J + P) - F in [4.1, 4.6] tokens on average (noisy: about
    # 9 forced errors per episode, each worth J + P = 122 to 132 tokens).
    none = rc.simulated_check_return(rc.experiment_config("none"), episodes=1)
    assert none == pytest.approx(-2.0, abs=0.02)
    assert rc.simulated_check_return(rc.experiment_config("above"), episodes=2) > 0
    with pytest.raises(ValueError, match="episodes"):
        rc.simulated_check_return(rc.experiment_config("none"), episodes=0)


def test_bad_arguments_name_the_allowed_values():
    with pytest.raises(ValueError, match="setting must be one of"):
        rc.experiment_config("sideways")
    with pytest.raises(ValueError, match="budget must be one of"):
        rc.budget_of("huge")
    with pytest.raises(ValueError, match="prediction must be"):
        rc.verdict("maybe", 0.5, 0.1, -0.5, -0.3)
    with pytest.raises(ValueError, match="settings"):
        rc.run("tiny", "/nonexistent/never", settings=("sideways",))
    with pytest.raises(ValueError, match="lacks columns"):
        rc.run_curve(pd.DataFrame({"iteration": [1], "role": ["jc"]}))


# -- curves and verdicts on synthetic tables ------------------------------------------------------
def metrics_table(check: list[float], cheat: list[float]) -> pd.DataFrame:
    """A metrics table as agents/train.py writes it: one row per iteration and role."""
    rows = []
    for i, (ck, ct) in enumerate(zip(check, cheat, strict=True), start=1):
        for role in ("market", "rp", "jc", "mediator"):
            rows.append({"iteration": i, "role": role,
                         "learning_check_rate": ck if role == "jc" else np.nan,
                         "learning_cheat_rate": ct if role == "rp" else np.nan})  # fmt: skip
    return pd.DataFrame(rows)


def test_run_curve_and_its_summary():
    m = metrics_table(
        [np.nan, 0.4, 0.7, 0.1, np.nan, 0.0, 0.2], [np.nan, 0.6, 0.2, 0.1, np.nan, 0.3, 0.5]
    )
    c = rc.run_curve(m)
    assert c.iteration.tolist() == [1, 2, 3, 4, 5, 6, 7]
    assert c.check_rate.iloc[2] == 0.7 and c.cheat_rate.iloc[2] == 0.2
    s = rc.summarize_curve(c, window=2)
    # iterations 1 and 5 finished no episode (NaN) and are left out: first = iteration 2,
    # peak = 0.7 (iteration 3), final = mean of iterations 6 and 7 (the last two with rates)
    assert s["first_check"] == 0.4 and s["first_cheat"] == 0.6 and s["peak_check"] == 0.7
    assert s["final_check"] == pytest.approx(0.1) and s["final_cheat"] == pytest.approx(0.4)
    assert s["low_cheat"] == 0.1
    # no cheat rate at most HONEST = 0.02: the nodes count as honest from the lowest, 0.1 at
    # iteration 4; the peak up to it 0.7 (iteration 3); later: iterations 6 and 7 -> 0.1; the
    # cheat rate returns from 0.1 to 0.5
    assert s["honest_iteration"] == 4 and s["peak_check"] == 0.7
    assert s["later_check"] == pytest.approx(0.1) and s["return_cheat"] == 0.5
    # honest at the last iteration: the later mean is that iteration's own rate
    last = rc.summarize_curve(c[c.iteration <= 3], window=1)
    assert last["peak_check"] == last["later_check"] == 0.7
    # window 3: iterations 4, 6, 7 (5 has no rates)
    assert rc.summarize_curve(c, 3)["final_check"] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="window"):
        rc.summarize_curve(c, 0)


def test_the_peak_is_the_one_before_the_nodes_learned_honesty():
    # A cycle: checking peaks at 0.8 while nodes learn honesty (cheat 0.01 <= 0.02 at iteration
    # 3), falls to 0, cheating returns (0.3, 0.6) and checking comes back to 0.9. The peak is
    # 0.8 (up to iteration 3), not the later 0.9; later = (0.2 + 0.0 + 0.9) / 3 = 0.3667.
    c = rc.run_curve(metrics_table([0.5, 0.8, 0.6, 0.2, 0.0, 0.9], [0.5, 0.1, 0.01, 0.0, 0.3, 0.6]))
    s = rc.summarize_curve(c, window=1)
    assert s["honest_iteration"] == 3 and s["peak_check"] == 0.8
    assert s["later_check"] == pytest.approx(1.1 / 3)
    assert s["final_check"] == 0.9 and s["low_cheat"] == 0.0 and s["return_cheat"] == 0.6


def runs_table(setting: str, prediction: str, peak, after) -> pd.DataFrame:
    # the final check rate deliberately differs from the later mean: the verdict reads the latter
    # (a run that stops where checking has come back in a cycle still fell on average)
    return pd.DataFrame({"setting": setting, "seed": range(len(peak)), "prediction": prediction,
                         "first_check": 0.3, "peak_check": peak, "later_check": after,
                         "final_check": 0.9, "first_cheat": 0.5, "low_cheat": 0.01,
                         "return_cheat": 0.2, "final_cheat": 0.1})  # fmt: skip


def test_verdicts_on_synthetic_runs():
    runs = pd.concat([
        # falls: peak 0.4 -> later 0.05 on every seed: change -0.35 +- 0
        runs_table("none", "falls", [0.4, 0.4, 0.4], [0.05, 0.05, 0.05]),
        # falls predicted, but the mean later rate 0.3 > 0.5 x 0.4: not reproduced
        runs_table("below", "falls", [0.4, 0.4, 0.4], [0.3, 0.25, 0.35]),
        # holds: after - peak = -0.02, -0.04, -0.06 (mean -0.04, sd 0.02, half-width
        # t(0.975, 2) x 0.02 / sqrt(3) = 4.3027 x 0.011547 = 0.04968): lower end -0.0897 > -0.1
        runs_table("above", "holds", [0.92, 0.94, 0.96], [0.9, 0.9, 0.9]),
    ], ignore_index=True)  # fmt: skip
    tab = rc.table(runs)
    above = tab.set_index("setting").loc["above"]
    assert above.check_change == pytest.approx(-0.04)
    assert above.check_change_lo == pytest.approx(-0.04 - 4.302652729911275 * 0.02 / np.sqrt(3))
    assert above.cheat_return == pytest.approx(0.19)  # highest after the low 0.2 - lowest 0.01
    v = rc.verdicts(tab).set_index("setting").verdict
    assert v.to_dict() == {"none": "reproduced", "below": "not reproduced", "above": "reproduced"}


def test_verdict_thresholds():
    # falls: needs later <= peak / 2 AND the change's interval below 0
    assert rc.verdict("falls", 0.4, 0.2, -0.3, -0.1) == "reproduced"
    assert rc.verdict("falls", 0.4, 0.21, -0.3, -0.1) == "not reproduced"
    assert rc.verdict("falls", 0.4, 0.1, -0.5, 0.01) == "not reproduced"
    # holds: the change's interval above -0.1 (a drop of 0.09 at most is still "holds")
    assert rc.verdict("holds", 0.9, 0.85, -0.09, 0.0) == "reproduced"
    assert rc.verdict("holds", 0.9, 0.85, -0.11, 0.0) == "not reproduced"
    # one seed: no interval
    assert rc.verdict("holds", 0.4, 1.0, float("nan"), float("nan")) == "undecided"


# -- the driver at the tiny budget ----------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """One setting trained at the tiny budget; then its ``run.json`` is removed (a session
    killed after the training's last checkpoint) and a re-run resumes it from that checkpoint;
    then a budget with one more iteration extends it."""
    from agents.schema import RayConfig
    from agents.train import ray_session

    out = tmp_path_factory.mktemp("result_c")
    with ray_session(RayConfig(), tmp_path_factory.mktemp("ray")):  # one Ray for both runs
        first = rc.run("tiny", out, settings=("above",), verbose=False)
        (out / "above" / "seed_0" / rc.RUN_ROW).unlink()
        again = rc.run("tiny", out, settings=("above",), verbose=False)
        curve2 = rc.curves(out)
        longer = dataclasses.replace(rc.BUDGETS["tiny"], iterations=3)
        extended = rc.run(longer, out, settings=("above",), verbose=False)
    return out, first, again, curve2, extended


@pytest.mark.slow
def test_tiny_run_writes_rows_and_curves_and_resumes(tiny_runs):
    out, first, again, curve2, extended = tiny_runs
    assert first.setting.tolist() == ["above"] and first.seed.tolist() == [0]
    assert first.prediction.tolist() == ["holds"] and first.iterations.tolist() == [2]
    for col in rc.MEASURES:
        assert first[col].between(0, 1).all(), col
    assert (out / "above" / "seed_0" / "metrics.parquet").exists()
    assert pd.read_csv(out / rc.RUNS_CSV).setting.tolist() == ["above"]
    # the resumed training restored its final checkpoint: same iterations, same curve figures
    pd.testing.assert_frame_equal(
        again.drop(columns=["train_seconds", "seconds"]),
        first.drop(columns=["train_seconds", "seconds"]),
    )
    assert set(curve2.setting) == {"above"} and set(curve2.iteration) == {1, 2}
    # a budget of 3 iterations extended the 2-iteration run: iterations 1-2 kept as they were
    assert extended.iterations.tolist() == [3]
    cv = rc.curves(out)
    assert cv.iteration.tolist() == [1, 2, 3]
    pd.testing.assert_frame_equal(cv[cv.iteration <= 2], curve2)
    # a further call has nothing to do (no training, no Ray): the same rows; the smaller
    # budget too (the run has at least its iterations)
    assert rc.run("tiny", out, settings=("above",), verbose=False).equals(extended)
    fig = rc.plot_curves(cv, threshold=0.05)
    assert len(fig.axes) == 2 and fig.axes[0].get_lines()
    seeds_fig = rc.plot_seeds(cv, threshold=0.05)  # one column (one setting), two rows
    assert len(seeds_fig.axes) == 2 and len(seeds_fig.axes[0].get_lines()) == 2  # seed + p*
    assert rc.verdicts(rc.table(again)).verdict.tolist() == ["undecided"]  # one seed
