"""Environment throughput benchmark: agent-steps per second with scripted random actions.

``python -m experiments.bench`` (or ``twin-bench``) builds markets of 10, 100, 1 000 and 10 000
agents (every seat exposed as a PettingZoo agent: 40 % clients, 50 % nodes, 10 % mediators),
acts with uniformly random valid actions (drawn with numpy, outside the timed region's env code
but inside the loop), and reports agent-steps per second, microseconds per agent-step, and the
process's peak resident memory. Runs on one core (it sets the BLAS/OpenMP thread counts to 1).
Results are printed as a table and written to ``--out`` (JSON) when given.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse
import json
import resource
import sys
import time

import numpy as np

from agents.baselines import PolicyContext, make_policy

#: every mechanism of the library switched on at once (issue: "within 2x of the v1-only figure")
ALL_MECHANISMS = (
    "mediation=consortium", "slashing=client_and_burn", "collateral=pooled", "collateral.late_grace_s=600",
    "verification=approximate", "taxes=forced_errors", "reputation=beta", "staking=on", "prediction=lmsr_jackpot",
    "announce=reward", "storage=window", "fees=protocol_fee", "counter_collusion=traitor",
    "counter_collusion.share=0.2",
)  # fmt: skip


def bench_config(n_agents: int, overrides: list[str] | None = None, seed: int = 0):
    import twin

    n_jc = max(1, int(round(0.4 * n_agents)))
    n_med = max(1, int(round(0.1 * n_agents)))
    n_rp = max(1, n_agents - n_jc - n_med)
    return twin.compose([
        f"market.n_job_creators={n_jc}", f"market.n_resource_providers={n_rp}", f"market.n_mediators={n_med}",
        "market.episode_ticks=1000000", "env.expose=all", f"seed={seed}", *(overrides or []),
    ])  # fmt: skip


def run(n_agents: int, steps: int, overrides: list[str] | None = None, warmup: int = 20) -> dict:
    from twin.env import MarketEnv

    cfg = bench_config(n_agents, overrides)
    env = MarketEnv(cfg)
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(1)
    ctx = PolicyContext(
        len(cfg.pricing.price_levels), cfg.pricing.default_price_level, cfg.env.jc_action
    )
    pols = {g: make_policy(g, "random", {}, ctx) for g in ("rp", "jc", "mediator")}
    names = {g: env.names[g] for g in pols}

    def actions(obs):
        out = {}
        for g, pol in pols.items():
            ns = names[g]
            if not ns:
                continue
            obs_m = np.stack([obs[a]["observation"] for a in ns])
            M = np.stack([obs[a]["action_mask"] for a in ns])
            A = pol.act_batch(obs_m, M, rng)
            out.update(zip(ns, A[:, 0].tolist(), strict=True))
        return out

    for _ in range(warmup):
        obs, *_ = env.step(actions(obs))
    t_act = t_env = 0.0
    for _ in range(steps):
        t0 = time.perf_counter()
        a = actions(obs)
        t1 = time.perf_counter()
        obs, *_ = env.step(a)
        t2 = time.perf_counter()
        t_act += t1 - t0
        t_env += t2 - t1
    n = len(env.agents)
    agent_steps = n * steps
    return {
        "agents": n,
        "steps": steps,
        "env_agent_steps_per_s": agent_steps / t_env,
        "us_per_agent_step": 1e6 * t_env / agent_steps,
        "deals": len(env.market.deals),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "action_sampling_s": t_act,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--agents", type=int, nargs="*", default=[10, 100, 1000, 10000])
    p.add_argument(
        "--agent-steps",
        type=int,
        default=200_000,
        help="agent-steps per size (steps = this / agents, at least 30)",
    )
    p.add_argument(
        "--override", action="append", default=[], help="Hydra override applied to every size"
    )
    p.add_argument(
        "--all-mechanisms", action="store_true", help="switch every mechanism on (ALL_MECHANISMS)"
    )
    p.add_argument("--out", default="")
    a = p.parse_args(argv)
    if a.all_mechanisms:
        a.override = [*ALL_MECHANISMS, *a.override]
    try:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    except (AttributeError, OSError):
        pass
    rows = []
    print(
        f"{'agents':>7} {'steps':>6} {'agent-steps/s':>14} {'us/agent-step':>14} {'deals':>7} {'peak RSS MiB':>13}"
    )
    for n in a.agents:
        steps = max(30, a.agent_steps // n)
        r = run(n, steps, a.override)
        rows.append(r)
        print(
            f"{r['agents']:>7} {steps:>6} {r['env_agent_steps_per_s']:>14,.0f} {r['us_per_agent_step']:>14.2f} {r['deals']:>7} {r['peak_rss_mib']:>13.0f}",
            flush=True,
        )
    if len(rows) > 1:
        base = next((r for r in rows if r["agents"] >= 100), rows[0])
        worst = max(r["us_per_agent_step"] for r in rows if r["agents"] >= base["agents"])
        print(
            f"cost growth per agent-step from {base['agents']} agents: {worst / base['us_per_agent_step']:.2f}x"
        )
    if a.out:
        with open(a.out, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    sys.exit(main())
