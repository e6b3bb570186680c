"""Verification methods (twin/mechanisms/verification.py, twin/execution.py): closed forms derived
by hand, Monte-Carlo frequencies within confidence intervals, and the market end to end.

Confidence intervals: a frequency of N Bernoulli(p) draws is compared with p within
4 * sqrt(p (1 - p) / N) (about 1 in 16 000 to fail by chance; the seeds are fixed).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.test_mechanisms import SMALL, run_market
from twin.deals import Deal, DealState, ExecMode
from twin.execution import Verification as Spec
from twin.execution import reexecute, verify
from twin.mechanisms.verification import pass_probabilities
from twin.modules import MODULES, runtime_s

SDXL = MODULES["sdxl"]  # nu = 0.3
COWSAY = MODULES["cowsay"]  # deterministic


def within(freq: float, p: float, n: int) -> bool:
    return abs(freq - p) <= 4 * math.sqrt(max(p * (1 - p), 1e-12) / n) + 1e-12


def deal(units=10, correct=True, inflate=False, spec=None):
    d = Deal(0, 1, 2, 3, (4,), 0, units, 1, 100, 2, 1, (100,) * 4, 1, 1, 0, 0, 0)
    d.units_reported = units * (2 if inflate else 1)
    d.correct = correct
    d.verification = spec
    return d


# -- closed forms -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "method,nu,kw,honest,fake",
    [
        ("replication", 0.3, {}, 0.7, 0.0),  # exact: an honest re-run agrees with 1 - nu
        ("replication", 0.0, {"runs": 3}, 1.0, 0.0),  # deterministic: the defence changes nothing
        # approximate: a = 1 - 0.3 e^-3 = 0.985064; b = 1 - e^(-3 / 1000) = 0.0029955
        ("replication", 0.3, {"tolerance": 3.0}, 1 - 0.3 * math.exp(-3), 1 - math.exp(-0.003)),
        # Modicum n = 3: honest always passes; a fake passes when the runs differ: 1 - 0.7^3
        ("replication", 0.3, {"runs": 3}, 1.0, 1 - 0.7**3),
        # n = 2 with tolerance 3: b^2 + (1 - b^2)(1 - a^2)
        (
            "replication",
            0.3,
            {"runs": 2, "tolerance": 3.0},
            1.0,
            (1 - math.exp(-0.003)) ** 2
            + (1 - (1 - math.exp(-0.003)) ** 2) * (1 - (1 - 0.3 * math.exp(-3)) ** 2),
        ),
        ("proof", 0.3, {"soundness_error": 1e-9}, 1.0, 1e-9),
        ("tee", 0.0, {"soundness_error": 1e-4}, 1.0, 1e-4),
        ("none", 0.3, {}, 1.0, 1.0),  # nothing is checked
    ],
)
def test_pass_probabilities(method, nu, kw, honest, fake):
    h, f = pass_probabilities(method, nu, **kw)
    assert h == pytest.approx(honest, abs=1e-15) and f == pytest.approx(fake, abs=1e-15)


# -- one check at a time ------------------------------------------------------------------------
def test_v1_replication_unchanged_without_a_spec():
    # no spec: the v1 re-run; the same draws as a replication spec with one exact run
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    for _ in range(200):
        a = reexecute(deal(), SDXL, 1.0, 7, rng_a)
        b = reexecute(deal(spec=Spec("replication")), SDXL, 1.0, 7, rng_b)
        assert (a.data_matches, a.count_matches, a.runtime_s, a.cost_wei) == (
            b.data_matches, b.count_matches, b.runtime_s, b.cost_wei)  # fmt: skip


@pytest.mark.parametrize(
    "method,speed,cost_s,units,runtime,cost",
    [
        # a proof check: 1 s and 0.1 % of the re-run cost: run = ceil(10 / 1.0) = 10 s at
        # 1000 wei/s = 10 000 wei -> 10 wei
        ("proof", 1.0, 1000, 10, 1, 10),
        ("tee", 0.5, 999, 7, 1, 13),  # run = ceil(7 / 0.5) = 14 s; 14 * 999 / 1000 = 13.986 -> 13
    ],
)
def test_proof_check_cost_and_latency(method, speed, cost_s, units, runtime, cost):
    spec = Spec(method, 0.0, 0.001, 1)
    rex = verify(deal(units), SDXL, spec, speed, cost_s, np.random.default_rng(0))
    assert (rex.runtime_s, rex.cost_wei, rex.data_matches) == (runtime, cost, True)


def test_modicum_runs_scale_the_cost():
    # n = 3 runs of a non-deterministic job: 3 x (10 s, 10 000 wei); a deterministic job: 1 run
    spec = Spec("replication", runs=3)
    rex = verify(deal(10), SDXL, spec, 1.0, 1000, np.random.default_rng(0))
    assert (rex.runtime_s, rex.cost_wei) == (30, 30_000)
    rex = verify(deal(10), COWSAY, spec, 1.0, 1000, np.random.default_rng(0))
    assert (rex.runtime_s, rex.cost_wei) == (10, 10_000)


N = 20_000


@pytest.mark.parametrize("s", [0.2, 0.05])
def test_soundness_error_frequency(s):
    # a fake (or an inflated count) passes a proof check with probability s; an honest result
    # always passes
    rng = np.random.default_rng(1)
    spec = Spec("proof", s, 0.001, 1)
    fakes = sum(verify(deal(correct=False), SDXL, spec, 1.0, 1, rng).data_matches for _ in range(N))
    inflated = [verify(deal(inflate=True), SDXL, spec, 1.0, 1, rng) for _ in range(N)]
    assert within(fakes / N, s, N)
    assert within(sum(r.data_matches and r.count_matches for r in inflated) / N, s, N)
    assert all(verify(deal(), SDXL, spec, 1.0, 1, rng).data_matches for _ in range(1000))


@pytest.mark.parametrize("tol", [0.0, 1.0, 3.0])
def test_approximate_agreement_pass_rates(tol):
    # honest: 1 - 0.3 e^-tol (0.7, 0.8896, 0.9851); fakes: 1 - e^(-tol / 1000) (0, 0.0010, 0.0030)
    rng = np.random.default_rng(2)
    spec = Spec("replication", tolerance=tol)
    honest = sum(verify(deal(), SDXL, spec, 1.0, 1, rng).data_matches for _ in range(N)) / N
    fakes = (
        sum(verify(deal(correct=False), SDXL, spec, 1.0, 1, rng).data_matches for _ in range(N)) / N
    )
    a, b = pass_probabilities("replication", 0.3, tolerance=tol)
    assert within(honest, a, N) and within(fakes, b, N)
    # tolerance applies to non-deterministic classes only: a fake of a deterministic class fails
    assert not any(
        verify(deal(correct=False), COWSAY, spec, 1.0, 1, rng).data_matches for _ in range(500)
    )


@pytest.mark.parametrize("n", [2, 3, 5])
def test_modicum_detection_probability(n):
    # a = 0.7: the n runs differ (non-determinism detected, job flagged) with 1 - a^n
    # (0.51, 0.657, 0.832); an honest result always passes; a fake passes exactly when flagged
    rng = np.random.default_rng(4)
    spec = Spec("replication", runs=n)
    honest = [verify(deal(), SDXL, spec, 1.0, 1, rng) for _ in range(N)]
    assert all(r.data_matches for r in honest)
    assert within(sum(r.flagged for r in honest) / N, 1 - 0.7**n, N)
    fakes = [verify(deal(correct=False), SDXL, spec, 1.0, 1, rng) for _ in range(N)]
    assert all(r.data_matches == r.flagged for r in fakes)
    assert within(sum(r.flagged for r in fakes) / N, 1 - 0.7**n, N)


def test_reexecute_records_the_flag():
    rng = np.random.default_rng(5)
    spec = Spec("replication", runs=4)
    ds = [deal(spec=spec) for _ in range(200)]
    flags = [reexecute(d, SDXL, 1.0, 1, rng).flagged for d in ds]
    assert [d.flagged for d in ds] == flags and any(flags) and not all(flags)


# -- in the market --------------------------------------------------------------------------------
def mech_of(mk):
    return next(m for m in mk.mechanisms if m.name == "verification")


def test_v1_config_has_no_verification_mechanism(compose):
    from twin.mechanisms import build_mechanisms

    assert build_mechanisms(compose()) == []


def test_no_verification_makes_checks_impossible(compose):
    # the JCs always try to check; with verification=none every result is accepted unchecked
    cfg = compose(*SMALL, "verification=none", "policies.jc.policy=always_check",
                  "policies.rp.policy=always_cheat")  # fmt: skip
    mk = run_market(cfg)
    mech = mech_of(mk)
    submitted = [d for d in mk.deals if d.submitted_at]
    assert len(submitted) > 20 and not any(d.checked for d in mk.deals)
    assert all(d.state == DealState.ResultsAccepted for d in submitted)
    assert not mech.can_check(mk, submitted[0])
    assert mech.metrics(mk)["unverifiable_deals"] == sum(
        1 for d in mk.deals if d.rp_agreed_at or d.jc_agreed_at
    )


def test_per_module_methods(compose):
    cfg = compose(*SMALL, "verification=tee", "+verification.per_module.cowsay=none")
    mk = run_market(cfg)
    mech = mech_of(mk)
    by_name = dict(zip(mk.module_names, mech.methods, strict=True))
    assert by_name == {"cowsay": "none", "ffmpeg_transcode": "replication", "duckdb_query": "replication",
                       "sdxl": "tee", "llama3_8b": "tee", "whisper": "tee", "lora_finetune": "tee"}  # fmt: skip
    checked = [d for d in mk.deals if d.checked]
    assert checked and all(mk.module_names[d.module] != "cowsay" for d in checked)
    # a TEE run costs 10 % more (floored); replicated and unverifiable classes cost a plain run
    fl = mk.fleet
    runs = [d for d in mk.deals if d.mode == ExecMode.Honest and not d.failed]
    for d in runs:
        r, job = int(mk.row[d.rp]), mk.job_classes[d.module]
        run = runtime_s(d.units, float(fl.gpu_speed[r] if job.kind == "gpu" else fl.cpu_speed[r]))
        h = run * int(fl.cost_wei_per_s[r])
        assert d.exec_cost == (h + h // 10 if by_name[job.name] == "tee" else h)
    assert {by_name[mk.job_classes[d.module].name] for d in runs} >= {"tee", "replication", "none"}


@pytest.mark.parametrize(
    "override,needle",
    [
        ("+verification.per_module.foo=tee", "verification.per_module: unknown job class 'foo'"),
        (
            "+verification.per_module.sdxl=magic",
            "verification.per_module.sdxl = 'magic' is not allowed",
        ),
        ("verification.method=magic", "verification.method = 'magic' is not allowed"),
        ("verification.mediator_runs=0", "verification.mediator_runs = 0 is out of range"),
        (
            "collateral.late_payment_floor=1.5",
            "collateral.late_payment_floor = 1.5 is out of range",
        ),
        ("collateral.pooling_ratio=0.5", "collateral.pooling_ratio = 0.5 is out of range"),
    ],
)
def test_bad_values_name_the_field(compose, override, needle):
    from twin.config import ConfigError

    with pytest.raises(ConfigError) as e:
        compose(override)
    assert needle in str(e.value)


def test_proof_cost_and_latency_borne_by_the_node(compose):
    # every honest run pays floor(0.5 x its run cost) more and is ready 60 s later:
    # ready_at = decision time + ceil(units / speed) + 60
    cfg = compose(*SMALL, "verification=proofs", "market.modules=[sdxl,cowsay]")
    mk = run_market(cfg)
    runs = [d for d in mk.deals if d.mode == ExecMode.Honest and not d.failed]
    assert len(runs) > 20
    fl = mk.fleet
    extra = 0
    for d in runs:
        r = int(mk.row[d.rp])
        job = mk.job_classes[d.module]
        run = runtime_s(d.units, float(fl.gpu_speed[r] if job.kind == "gpu" else fl.cpu_speed[r]))
        honest = run * int(fl.cost_wei_per_s[r])
        assert d.exec_cost == honest + honest // 2
        extra += honest // 2
        decided_at = mk.now - (mk.tick - d.decided_tick) * mk.cfg.market.tick_s
        assert d.ready_at == decided_at + run + 60
    assert mech_of(mk).proof_cost == extra


ATTACK = (
    "market.modules=[sdxl,cowsay]", "policies.jc.policy=modicum_attacker", "policies.rp.policy=honest",
    "pricing.instruction_price_wei=1000000000000000000",  # 1 token per unit: C about 8 tokens
    "pricing.payment_collateral_wei=100000000000000000000",  # P = 100 tokens: no cap
    "pricing.mediation_fee_wei=10000000000000000",  # F = 0.01 token
    "market.rp_wallet_tokens=100000", "market.jc_wallet_tokens=100000",
    "market.n_job_creators=30", "market.n_resource_providers=20", "market.episode_ticks=100",
)  # fmt: skip


def attack(compose, *extra):
    from experiments import run_episodes

    res = run_episodes(compose(*ATTACK, *extra), episodes=2, seed=7)
    d = res.deals
    return d[d.outcome.isin(["accepted", "check_passed", "check_failed"])], res


def test_modicum_client_attack_gain(compose):
    # Honest nodes; the attacker checks every sdxl result (a = 0.7) and accepts cowsay ones.
    # Checked: it pays F, and pays C only when the re-run agrees (probability a); a failed check
    # refunds P and slashes the honest node m*C. Its gain per checked deal over accepting:
    #     C - (F + a C) = (1 - a) C - F     in expectation (1 - a) E[C] - F.
    deals, _ = attack(compose)
    sdxl, cow = deals[deals.module == "sdxl"], deals[deals.module == "cowsay"]
    assert sdxl.checked.all() and not cow.checked.any() and len(sdxl) > 300
    passed = sdxl.outcome == "check_passed"
    assert within(passed.mean(), 0.7, len(sdxl))
    F = 10**16
    spend = sdxl.paid_to_rp_wei + sdxl.mediation_fee_paid_wei
    assert (spend == F + passed * sdxl.job_cost_wei).all()  # exact per deal
    gain = (sdxl.job_cost_wei - spend) / 1e18
    expected = 0.3 * sdxl.job_cost_tokens.mean() - F / 1e18
    se = math.sqrt(gain.var(ddof=1) / len(gain))
    assert abs(gain.mean() - expected) < 4 * se and gain.mean() > 1.0
    # the honest nodes lose m*C on each failed check
    failed = sdxl[~passed]
    assert (failed.slashed_rp_wei == 2 * failed.job_cost_wei).all()


def test_modicum_defence(compose):
    # n = 3: every honest result passes (the attack gains -F exactly); the runs differ and flag
    # the job with probability 1 - 0.7^3 = 0.657; the mediator pays 3 runs
    deals, res = attack(compose, "verification=modicum_defence")
    sdxl = deals[deals.module == "sdxl"]
    assert len(sdxl) > 300 and (sdxl.outcome == "check_passed").all()
    spend = sdxl.paid_to_rp_wei + sdxl.mediation_fee_paid_wei
    assert (sdxl.job_cost_wei - spend == -(10**16)).all()
    flagged = res.summary["flagged_nondeterministic"] * 2  # the summary averages the 2 episodes
    n = int(res.deals.checked.sum())
    assert n == len(sdxl) and flagged == sdxl.flagged.sum()
    assert within(flagged / n, 1 - 0.7**3, n)
    # the mediators paid 3 runs per check: their cost is 3 x the honest re-run cost
    meds = res.agents[res.agents.role == "mediator"]
    assert meds.cost_tokens.sum() > 0


def test_approximate_agreement_in_the_market(compose):
    # honest sdxl results always checked: pass rate 1 - 0.3 e^-3 = 0.985 (exact comparison: 0.7)
    from experiments import run_episodes

    cfg = compose(*ATTACK, "verification=approximate", "policies.jc.policy=always_check")
    d = run_episodes(cfg, episodes=2, seed=3).deals
    d = d[(d.module == "sdxl") & d.outcome.isin(["check_passed", "check_failed"])]
    a = 1 - 0.3 * math.exp(-3)
    assert len(d) > 300 and within((d.outcome == "check_passed").mean(), a, len(d))
    cfg = compose(*ATTACK, "verification=approximate", "policies.jc.policy=always_check",
                  "policies.rp.policy=always_cheat")  # fmt: skip
    d = run_episodes(cfg, episodes=1, seed=3).deals
    d = d[d.outcome.isin(["check_passed", "check_failed"])]
    assert len(d) > 150 and (d.outcome == "check_failed").mean() > 0.98  # fakes pass w.p. 0.003


def test_verification_features(compose):
    cfg = compose(*SMALL, "verification=modicum_defence", "market.modules=[sdxl]")
    mk = run_market(cfg)
    mech = mech_of(mk)
    d = next(d for d in mk.deals if d.submitted_at)
    focus = {"jc": {int(mk.row[d.jc]): d.index}, "rp": {int(mk.row[d.rp]): d.index}}
    f = mech.public_features(mk, focus)
    assert f["jc"].shape == (mk.n_jc, 3) and f["rp"].shape == (mk.n_rp, 4)
    # checkable, catch probability a^3 = 0.343, honest pass 1; no proof cost
    assert f["jc"][int(mk.row[d.jc])].tolist() == pytest.approx([1.0, 0.343, 1.0])
    assert f["rp"][int(mk.row[d.rp])].tolist() == pytest.approx([1.0, 0.343, 1.0, 0.0])


def test_check_action_masked_for_unverifiable_classes(compose):
    # cowsay unverifiable, sdxl replicated: stop the market with results waiting for judgement
    # (JCs never judge), then the mask closes "check" exactly for the JCs whose focus is cowsay
    from twin.env import MarketEnv
    from twin.observe import observe

    cfg = compose(*SMALL, "+verification.per_module.cowsay=none", "market.modules=[cowsay,sdxl]",
                  "policies.jc.policy=never_judge", "market.job_rate_per_tick=0.5")  # fmt: skip
    env = MarketEnv(cfg)
    env.reset(seed=0)
    mk = env.market
    for _ in range(8):
        env.step({})
    focus = mk.judge_q.first()
    mods = {int(mk.row[a]): mk.module_names[mk.deals[di].module] for a, di in focus.items()}
    assert set(mods.values()) == {"cowsay", "sdxl"}
    # the observation's mask already went through the mechanism's action_mask hook
    mask = observe(mk, len(cfg.pricing.price_levels)).jc_mask.copy()
    assert all(mask[r, 1] == (m == "sdxl") for r, m in mods.items())
    assert all(mask[r, 0] == 1 for r in mods)  # accepting stays open
    mask[:, 1] = 1  # the hook alone closes exactly the unverifiable classes' check
    mech_of(mk).action_mask(mk, "jc", mask)
    assert all(mask[r, 1] == (m == "sdxl") for r, m in mods.items())


@pytest.mark.parametrize("jc_action", ["discrete", "probability"])
def test_modicum_attacker_policy(jc_action):
    # checks exactly the focus deals of non-deterministic classes (focus_nondeterminism > 0)
    from agents.baselines import PolicyContext, make_policy
    from twin.observe import JC_FEATURES

    pol = make_policy("jc", "modicum_attacker", ctx=PolicyContext(jc_action=jc_action))
    obs = np.zeros((3, len(JC_FEATURES)), np.float32)
    obs[:, JC_FEATURES.index("focus_nondeterminism")] = (0.3, 0.0, 0.9)
    act = pol.act_batch(obs, np.ones((3, 3), np.int8), np.random.default_rng(0))
    assert act[:, 0].tolist() == [1, 0, 1]
