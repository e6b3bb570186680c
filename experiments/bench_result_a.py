"""Where the CPU time of one result-A trial goes (a training run plus its greedy evaluation).

``python -m experiments.bench_result_a [--budget full] [--cells 2] [--override key=value]``
runs ``--cells`` trials of the experiment (:mod:`experiments.result_a`: its config at its
budget, cells taken from its grid) in one lean local Ray and reports CPU seconds of this process
(robust to other load on the machine; sampling and learning run in this process) per phase:

- ``imports``: importing the training stack (torch, RLlib, the twin) in a fresh interpreter, as
  every new trial process of a sweep does;
- ``build``: building the PPO algorithm (env runner, envs, RLModules, learner);
- ``sampling`` and ``learning``: the training iterations, split by RLlib's own timers
  (``env_runner_sampling_timer`` / ``learner_update_timer``); ``env share`` is the share of
  sampling spent stepping the markets (:mod:`experiments.bench_train`'s instrumentation);
- ``checkpoint``: saving the final checkpoint; ``evaluation``: the greedy episodes.

The grid's wall time on ``n`` cores is about ``trials x (sum of phases) / n`` plus the sweep's
own scheduling.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __name__ == "__main__":  # one thread per library when run as a benchmark; not when imported
    # (the variables would reach every process started later, e.g. the test suite's Ray workers)
    for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_v, "1")

IMPORTS = "import agents.train, agents.evaluate, ray.rllib.algorithms.ppo, torch, twin"


def import_cpu_s() -> float:
    """CPU seconds a fresh interpreter spends importing the training stack."""
    code = f"import time; c = time.process_time(); {IMPORTS}; print(time.process_time() - c)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def trial(cfg, out: Path) -> dict:
    """CPU seconds per phase of one trial of ``cfg`` (Ray must be running)."""
    from agents.evaluate import evaluate
    from agents.train import build_algorithm, save_checkpoint
    from experiments.bench_train import _instrument
    from experiments.result_a import eval_episodes

    c = time.process_time()
    algo = build_algorithm(cfg, out)
    row = {"build": time.process_time() - c, "sampling": 0.0, "learning": 0.0, "env": 0.0}
    clocks = _instrument(algo)
    try:
        for _ in range(cfg.train.iterations):
            c, w = time.process_time(), time.perf_counter()
            env0 = clocks.seconds["env"]
            timers = algo.train().get("timers", {})
            cpu, wall = time.process_time() - c, time.perf_counter() - w
            s, learn = (
                timers.get("env_runner_sampling_timer", 0.0),
                timers.get("learner_update_timer", 0.0),
            )
            share = s / max(s + learn, 1e-9)
            row["sampling"] += cpu * share
            row["learning"] += cpu * (1 - share)
            row["env"] += (clocks.seconds["env"] - env0) * cpu / max(wall, 1e-9)
        c = time.process_time()
        ckpt = save_checkpoint(algo, cfg, out, cfg.train.iterations, 1)
        row["checkpoint"] = time.process_time() - c
    finally:
        algo.stop()
    c = time.process_time()
    evaluate(ckpt, eval_episodes("full"), out / "eval", record=False)
    row["evaluation"] = time.process_time() - c
    return row


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", default="full", choices=["full", "tiny"])
    p.add_argument("--cells", type=int, default=2, help="trials to run (cells of the grid)")
    p.add_argument("--override", action="append", default=[], help="Hydra override (repeatable)")
    p.add_argument("--out", default="", help="write the rows as JSON here")
    a = p.parse_args(argv)
    import torch

    from agents.schema import RayConfig
    from agents.train import quiet_rllib, ray_session
    from experiments import result_a as ra

    torch.set_num_threads(1)
    quiet_rllib()
    g = ra.grid(a.budget)
    cells = [(p_, m) for p_ in g.check_probabilities for m in g.multiples][:: max(1, 25 // a.cells)]
    rows = []
    imports = import_cpu_s()
    with tempfile.TemporaryDirectory(prefix="bench-a-") as d, ray_session(RayConfig(), Path(d)):
        for k, (p_, m) in enumerate(cells[: a.cells]):
            cfg = ra.experiment_config(
                # markets in the driver, as in the grid's sweep (trials of 1 CPU)
                a.budget, [f"{ra.P_KEY}={p_}", f"{ra.M_KEY}={m}", "train.env_process=false",
                           *a.override],
            )  # fmt: skip
            row = {"p": p_, "m": m, "imports": imports, **trial(cfg, Path(d) / f"t{k}")}
            row["total"] = sum(row[k] for k in ("imports", "build", "sampling", "learning",
                                                "checkpoint", "evaluation"))  # fmt: skip
            rows.append(row)
            print(" ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                           for k, v in row.items()), flush=True)  # fmt: skip
    keys = ("imports", "build", "sampling", "learning", "checkpoint", "evaluation", "total")
    mean = {k: sum(r[k] for r in rows) / len(rows) for k in keys}
    print("mean CPU seconds per trial: " + ", ".join(f"{k} {mean[k]:.1f}" for k in keys))
    env = sum(r["env"] for r in rows) / max(1e-9, sum(r["sampling"] for r in rows))
    print(f"env share of sampling: {env:.0%}; {g.trials} trials on 2 cores: about "
          f"{g.trials * mean['total'] / 2 / 60:.1f} min of CPU per core")  # fmt: skip
    if a.out:
        Path(a.out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    sys.exit(main())
