"""RLlib sampling benchmark: agent-steps per second and the share of sampling spent in the env.

``python -m experiments.bench_train [--nvec 1 4 8] [--env-steps 2000] [--override key=value]
[--runners process twin rllib]`` builds the training algorithm of the default config (plus
overrides) with :func:`agents.config_builder.build_algo_config` in a lean local Ray (sampling in
the driver, one torch thread), then for each ``num_envs_per_env_runner`` and each env runner
(measured in alternation) calls the local env runner's ``sample()`` for ``--env-steps`` env
steps (after a warm-up call) and reports the figures below. The runners:

- ``process``: the training's :class:`agents.env_runner.TwinEnvRunner` with
  ``train.env_process=true`` (the default): the markets in a child process, two lanes of markets
  overlapping RLlib's work (with one market it steps it itself, as ``twin``);
- ``twin``: the same runner with the markets in the driver (``train.env_process=false``);
- ``rllib``: RLlib's own ``MultiAgentEnvRunner`` (markets in the driver).

Figures:

- agent-steps and env-steps sampled per second of wall time (and per CPU second of this
  process, the driver, which is robust to other load on the machine when the markets are in
  the driver);
- the share of sampling time spent in the environment, i.e. the driver's time inside it:
  with the markets in the driver, inside :meth:`agents.env.TwinMultiAgentEnv.step`/``reset``
  (adapter and market), of which inside the market's PettingZoo env
  (:class:`twin.env.MarketEnv`), and in the episode-end market measures
  (:class:`agents.callbacks.MarketMetricsCallback`); with the markets in a child process, the
  driver's time handing its actions to the child and waiting for and reading the child's results
  (:meth:`agents.env_process.MarketsProcess.step_async`, ``step_wait``, ``reset``, and
  ``flush_counts``: the episode measures still to come at the end of a ``sample()`` call),
  while the child's own time inside the markets (overlapping the driver's work) is reported
  apart as ``child busy``. The rest is RLlib (connectors, RLModule forward passes,
  episode bookkeeping).

The target is an env share of at most 10 %: the simulator must not be what limits training.
Results are printed as a table and written to ``--out`` (JSON) when given. Bad arguments and
bad overrides are reported on one line (``bench_train: ...``) with exit status 2, before Ray
starts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from experiments.bench_phases import Timers

PROG = "bench_train"

if __name__ == "__main__":  # one thread per library when run as a benchmark; not when imported
    # (the variables would reach every process started later, e.g. the test suite's Ray workers)
    for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_v, "1")


def _instrument(algo) -> Timers:
    """Time the env adapters (``env``), the markets' PettingZoo envs (``market``) and the
    episode-end callback (``measures``); with the markets in a child process, the driver's waits
    for it (``env``)."""
    from agents.callbacks import MarketMetricsCallback
    from agents.env_process import MarketsProcess

    clocks = Timers()
    er = algo.env_runner
    if isinstance(er.env, MarketsProcess):
        for name in ("step_async", "step_wait", "reset", "flush_counts"):
            clocks.wrap(er.env, name, "env")
        clocks.seconds.setdefault("market", float("nan"))
    else:
        for sub in er.env.envs:
            env = sub.unwrapped
            for obj, label in ((env, "env"), (env.par_env, "market")):
                clocks.wrap(obj, "step", label)
                clocks.wrap(obj, "reset", label)
    clocks.seconds.setdefault("measures", 0.0)
    for cb in getattr(er, "_callbacks", []):
        if isinstance(cb, MarketMetricsCallback):
            clocks.wrap(cb, "on_episode_end", "measures")
    return clocks


def bench_config(nvec: int, env_steps: int, overrides: list[str]):
    """The twin config of one setting: the default config, the sampling settings, overrides."""
    import twin
    from agents.schema import TrainConfig

    batch = max(env_steps, nvec)  # a short run's batch may be below the default minibatch
    return twin.compose([
        f"train.num_envs_per_env_runner={nvec}", "train.rollout_fragment_length=0",
        f"train.train_batch_size={batch}",
        f"train.minibatch_size={min(TrainConfig().minibatch_size, batch)}", *overrides,
    ])  # fmt: skip


#: ``--runners`` choices: the training's env runner with the markets in a child process or in the
#: driver, or RLlib's own multi-agent runner
RUNNERS = ("process", "twin", "rllib")


def runner_class(name: str) -> type | None:
    """The env runner class of a ``--runners`` name (None: the training config's own)."""
    if name in ("process", "twin"):
        return None
    from ray.rllib.env.multi_agent_env_runner import MultiAgentEnvRunner

    return MultiAgentEnvRunner


def run(nvec: int, env_steps: int, overrides: list[str], runner: str = "twin") -> dict:
    """Sampling figures for one ``num_envs_per_env_runner`` and env runner (Ray must be
    running)."""
    from agents.train import build_algorithm

    cfg = bench_config(nvec, env_steps, [*overrides, f"train.env_process={runner == 'process'}"])
    with tempfile.TemporaryDirectory(prefix="bench-train-") as d:
        algo = build_algorithm(cfg, Path(d), env_runner_cls=runner_class(runner))
        try:
            er = algo.env_runner
            er.sample(num_timesteps=max(nvec, env_steps // 4), random_actions=False)  # warm-up
            clocks = _instrument(algo)
            child = getattr(er.env, "busy_seconds", None)
            busy0 = child() if child else 0.0
            agent_steps = 0
            c0, t0 = time.process_time(), time.perf_counter()
            done = 0
            while done < env_steps:
                episodes = er.sample(num_timesteps=env_steps - done, random_actions=False)
                done += sum(e.env_steps() for e in episodes)
                agent_steps += sum(e.agent_steps() for e in episodes)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            busy = child() - busy0 if child else float("nan")
        finally:
            algo.stop()
    env_s, market_s, meas_s = (clocks.seconds[k] for k in ("env", "market", "measures"))
    return {
        "num_envs_per_env_runner": nvec,
        "runner": runner,
        "env_steps": done,
        "agent_steps": agent_steps,
        "agents_per_env_step": agent_steps / max(1, done),
        "seconds": wall,
        "agent_steps_per_s": agent_steps / wall,
        "env_steps_per_s": done / wall,
        "agent_steps_per_cpu_s": agent_steps / max(cpu, 1e-9),
        "env_share": env_s / wall,
        "market_share": market_s / wall,
        "child_busy_share": busy / wall,
        "measures_share": meas_s / wall,
        "rllib_share": max(0.0, 1.0 - (env_s + meas_s) / wall),
        "us_per_env_step_in_env": 1e6 * env_s / max(1, done),
        "us_per_env_step_in_rllib": 1e6 * (wall - env_s - meas_s) / max(1, done),
    }


def main(argv: list[str] | None = None) -> None:
    from experiments.bench import check_out
    from twin.errors import user_errors

    p = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("--nvec", type=int, nargs="+", default=[1, 4, 8],
                   help="num_envs_per_env_runner values to measure")  # fmt: skip
    p.add_argument("--env-steps", type=int, default=2000, help="env steps sampled per setting")
    p.add_argument("--override", action="append", default=[], help="Hydra override (repeatable)")
    p.add_argument("--runners", nargs="+", choices=RUNNERS, default=["process"],
                   help="env runners to measure, alternating at each nvec: process (the "
                        "training's agents.env_runner.TwinEnvRunner, markets in a child "
                        "process), twin (the same, markets in the driver), rllib (RLlib's "
                        "MultiAgentEnvRunner)")  # fmt: skip
    p.add_argument("--out", default="", help="write the rows as JSON here")
    a = p.parse_args(argv)
    if any(n < 1 for n in a.nvec) or a.env_steps < 1:
        p.error("--nvec values and --env-steps must be >= 1")
    check_out(p, a.out)
    with user_errors(PROG):
        for nvec in a.nvec:  # a bad override fails here, on one line, before Ray starts
            bench_config(nvec, a.env_steps, a.override)
        _bench(a)


def _bench(a: argparse.Namespace) -> None:
    import torch

    from agents.schema import RayConfig
    from agents.train import quiet_rllib, ray_session

    torch.set_num_threads(1)
    quiet_rllib()
    rows = []
    print(f"{'nvec':>4} {'runner':>7} {'agents/step':>11} {'agent-steps/s':>14} {'per CPU s':>10} "
          f"{'env share':>9} {'market':>7} {'measures':>8} {'child busy':>10} {'us env/step':>11} "
          f"{'us RLlib/step':>13}")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as d, ray_session(RayConfig(), Path(d)):
        for nvec, runner in ((n, r) for n in a.nvec for r in a.runners):
            r = run(nvec, a.env_steps, a.override, runner)
            rows.append(r)
            print(f"{nvec:>4} {runner:>7} {r['agents_per_env_step']:>11.1f} "
                  f"{r['agent_steps_per_s']:>14,.0f} {r['agent_steps_per_cpu_s']:>10,.0f} "
                  f"{r['env_share']:>9.1%} {r['market_share']:>7.1%} {r['measures_share']:>8.1%} "
                  f"{r['child_busy_share']:>10.1%} "
                  f"{r['us_per_env_step_in_env']:>11,.0f} {r['us_per_env_step_in_rllib']:>13,.0f}",
                  flush=True)  # fmt: skip
    best = max(rows, key=lambda r: r["agent_steps_per_s"])
    verdict = "meets" if best["env_share"] <= 0.10 else "misses"
    print(f"best: {best['agent_steps_per_s']:,.0f} agent-steps/s at nvec="
          f"{best['num_envs_per_env_runner']} ({best['runner']} runner); env share "
          f"{best['env_share']:.1%} ({verdict} the 10 % target)")  # fmt: skip
    if a.out:
        Path(a.out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    sys.exit(main())
