"""Benchmark: the fixed cost of a sweep trial (``python -m experiments.bench_sweep``).

Runs a sweep of ``--points`` check probabilities x 2 budgets (1 and 3 training iterations of
200 ticks in a small market, one checkpoint at the end, one greedy episode) with
:func:`experiments.sweep.run_sweep` on a lean local Ray (``--cpus`` CPUs, one trial per CPU at
a time) in a temporary directory. Trials are grouped into *cold* ones (the first in a worker
process: they also import torch and RLlib) and *warm* ones (Tune reused the process). For warm
trials, the fixed cost per trial -- building the algorithm, the checkpoint, loading it for the
evaluation, writing tables, Tune's hand-over -- is the time of a 1-iteration trial minus the
cost of one iteration, (t(3) - t(1)) / 2, in wall and in CPU seconds (CPU time of the trial's
process). The sweep-level overhead (starting Ray and Tune, idle CPUs between trials) is the
wall time not covered by trials. Wall times are inflated on a shared machine: quote CPU seconds
for comparisons.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

TINY = (
    "market.n_job_creators=4",
    "market.n_resource_providers=5",
    "market.n_mediators=2",
    "market.episode_ticks=30",
    "policies.rp.learning_share=0.4",
    "policies.rp.policy=cheat_with_probability",
    "train=smoke",
    "train.checkpoint_every_iters=1000",
    "run.episodes=1",
)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=10, help="check probabilities swept")
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray")
    ap.add_argument("--keep", action="store_true", help="keep the sweep directory")
    args = ap.parse_args(argv)

    from agents.schema import RayConfig
    from experiments.sweep import plan_sweep, run_sweep
    from experiments.sweep_schema import SweepConfig

    probs = ",".join(f"{p:.3f}" for p in np.linspace(0.05, 0.5, args.points))
    overrides = [*TINY, "train.iterations=1,3", f"policies.jc.check_probability={probs}"]
    settings = SweepConfig(seeds=args.seeds)
    root = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        plan = plan_sweep(overrides, settings)
        plan_s, plan_cpu = time.perf_counter() - t0, time.process_time() - c0
        t1, c1 = time.perf_counter(), time.process_time()
        df = run_sweep(overrides, settings, RayConfig(num_cpus=args.cpus), root / "sweep",
                       plan=plan)  # fmt: skip
        run_s, run_cpu = time.perf_counter() - t1, time.process_time() - c1
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    t = df[df.status == "ok"].pivot(index="trial_id", columns="metric", values="value")
    t["iterations"] = t.train_iterations.astype(int)
    t["cold"] = t.process_trial_number == 1
    load = os.getloadavg()[0]
    print(f"\n{len(t)} trials (1 or 3 iterations of 200 ticks, 1 greedy episode), {args.cpus} "
          f"CPUs; load average {load:.1f} on {os.cpu_count()} cores")  # fmt: skip
    print(f"planning (compose + validate every trial, import RLlib): {plan_s:.1f} s wall, "
          f"{plan_cpu:.1f} s CPU")  # fmt: skip
    cols = ["trial_seconds", "trial_cpu_seconds", "train_iteration_seconds",
            "train_setup_seconds", "evaluate_seconds", "eval_seconds"]  # fmt: skip
    means = t.groupby(["cold", "iterations"])[cols].mean()
    counts = t.groupby(["cold", "iterations"]).size().rename("trials")
    with pd.option_context("display.width", 160):
        print(pd.concat([counts, means.round(2)], axis=1).to_string())
    warm = means.loc[False] if False in means.index.get_level_values(0) else None
    if warm is not None and {1, 3} <= set(warm.index):
        for c, label in (("trial_seconds", "wall"), ("trial_cpu_seconds", "CPU")):
            per_iter = (warm.loc[3, c] - warm.loc[1, c]) / 2
            fixed = warm.loc[1, c] - per_iter
            print(f"warm trial, {label}: {per_iter:.2f} s per iteration, fixed {fixed:.2f} s "
                  "per trial")  # fmt: skip
    cold = t[t.cold].trial_cpu_seconds.mean() - t[~t.cold].trial_cpu_seconds.mean()
    print(f"cold trials: about {cold:.1f} s CPU more (imports in a new worker process)")
    covered = t.trial_seconds.sum() / args.cpus
    print(f"sweep run: {run_s:.1f} s wall; trials cover {covered:.1f} s of it at {args.cpus} "
          f"at a time; the rest ({run_s - covered:.1f} s) is Ray and Tune start-up, hand-over "
          "and idle CPUs")  # fmt: skip
    print(f"driver CPU during the run (Tune's controller, writing results): {run_cpu:.1f} s, "
          f"{run_cpu / len(t):.2f} s per trial")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
