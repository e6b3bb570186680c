"""Where a market step's time goes: microseconds per step in each phase, hook and env part.

``python -m experiments.bench_phases [--agents 100] [--steps 1000] [--all-mechanisms]
[--override key=value] [--out FILE]`` builds the market of :mod:`experiments.bench` (random
valid actions, every seat an agent), then times, per env step:

- the env's parts (:class:`twin.env.MarketEnv`): turning actions into market actions, the
  market's tick, building the observation matrices, splitting them into per-agent dicts;
- each phase of the tick (:data:`twin.market.PHASES`);
- each hook of each mechanism that implements it (:data:`twin.mechanisms.base.HOOKS`, and
  ``write_features``, which the observation calls). A hook runs inside a phase (or inside the
  observation), so its time is also counted in that phase's: the table marks nested rows.

Each timed callable is wrapped in a timer (about 0.3 us a call), so the step is a little slower
than in :mod:`experiments.bench`; the shares are what to read. A mechanism's author can see what
their hooks cost per step, with the other mechanisms on or off.

Bad arguments and bad overrides are reported on one line (``bench_phases: ...``) with exit
status 2 before anything is timed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

if __name__ == "__main__":  # one thread per library when run as a benchmark; not when imported
    # (the variables would reach every process started later, e.g. the test suite's Ray workers)
    for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_v, "1")

PROG = "bench_phases"

#: the env's parts, in the order a step runs them (method names of MarketEnv)
ENV_PARTS = ("_to_market_actions", "_observer", "_observations")


class Timers:
    """Wall time and calls per label, of callables wrapped with :meth:`wrap`."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def wrap(self, obj, attr: str, label: str) -> None:
        """Replace ``obj.attr`` by a timed call, adding to ``label`` (several may share one)."""
        fn = getattr(obj, attr)
        seconds, calls = self.seconds, self.calls
        seconds.setdefault(label, 0.0)
        calls.setdefault(label, 0)
        clock = time.perf_counter

        def timed(*args, **kwargs):
            t0 = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                seconds[label] += clock() - t0
                calls[label] += 1

        setattr(obj, attr, timed)  # on the instance: the class and other markets are untouched

    def reset(self) -> None:
        for k in self.seconds:
            self.seconds[k], self.calls[k] = 0.0, 0


def instrument(env) -> tuple[Timers, list[tuple[str, str]]]:
    """Wrap ``env``'s parts, its market's phases and its mechanisms' hooks in timers; returns
    the timers and the rows of the table as (label, kind) in step order (kind: ``env``,
    ``phase`` or ``hook``)."""
    from twin.market import PHASES
    from twin.mechanisms.base import HOOKS

    timers, rows = Timers(), []
    mk = env.market
    for part in ENV_PARTS:
        label = f"env.{part.lstrip('_')}"
        timers.wrap(env, part, label)
        rows.append((label, "env"))
        if part == "_to_market_actions":
            timers.wrap(mk, "step", "market.step")
            rows.append(("market.step", "env"))
            for ph in PHASES:
                timers.wrap(mk, ph, f"market.{ph}")
                rows.append((f"market.{ph}", "phase"))
    for mech in mk.mechanisms:
        cls = type(mech)
        hooks = [h for h in HOOKS if cls.implements(h)]
        if cls.implements("write_features") or cls.implements("public_features"):
            hooks.append("write_features")  # (the observation calls it; its default, the other)
        for h in hooks:
            label = f"{mech.name or cls.__name__}.{h}"
            timers.wrap(mech, h, label)
            rows.append((label, "hook"))
    return timers, rows


def run(n_agents: int, steps: int, overrides: list[str], warmup: int = 20) -> dict:
    """Time ``steps`` env steps of the benchmark market of ``n_agents`` seats, per part."""
    from experiments.bench import _Runner

    r = _Runner(n_agents, overrides, warmup=0)
    timers, rows = instrument(r.env)
    r.step_block(warmup)
    timers.reset()
    r.reset()
    r.step_block(steps)
    base = r.result()
    us = 1e6 / steps
    step_us = r.t_env * us
    table = [
        {
            "part": label,
            "kind": kind,
            "us_per_step": timers.seconds[label] * us,
            "share": timers.seconds[label] / r.t_env,
            "calls_per_step": timers.calls[label] / steps,
        }
        for label, kind in rows
    ]
    env_parts = [t for t in table if t["kind"] == "env"]
    return {
        **{k: base[k] for k in ("agents", "steps", "mechanisms", "deals")},
        "overrides": overrides,
        "step_us": step_us,
        "table": table,
        # what the env does outside its timed parts: rewards, dicts of flags, the wealth vector
        "env_rest_us": step_us - sum(t["us_per_step"] for t in env_parts),
    }


def main(argv: list[str] | None = None) -> None:
    from experiments.bench import ALL_MECHANISMS, bench_config, check_out
    from twin.errors import user_errors

    p = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("--agents", type=int, default=100, help="seats of the market")
    p.add_argument("--steps", type=int, default=1000, help="env steps timed (after 20 warm-up)")
    p.add_argument("--all-mechanisms", action="store_true", help="switch every mechanism on")
    p.add_argument("--override", action="append", default=[], help="Hydra override (repeatable)")
    p.add_argument("--out", default="", help="write the result as JSON to this file")
    a = p.parse_args(argv)
    if a.agents < 1 or a.steps < 1:
        p.error("--agents and --steps must be >= 1")
    check_out(p, a.out)
    overrides = [*(ALL_MECHANISMS if a.all_mechanisms else ()), *a.override]
    with user_errors(PROG):
        bench_config(a.agents, overrides)  # a bad override: one line, before any output
        res = run(a.agents, a.steps, overrides)
    print(f"{res['agents']} agents, {res['mechanisms']} mechanisms, {res['steps']} steps: "
          f"{res['step_us']:,.0f} us per env step (timers included), {res['deals']} deals")  # fmt: skip
    print(f"{'part':<44} {'us/step':>9} {'share':>7} {'calls/step':>11}")
    for t in res["table"]:
        indent = {"env": "", "phase": "  ", "hook": "    "}[t["kind"]]
        print(f"{indent + t['part']:<44} {t['us_per_step']:>9.1f} {100 * t['share']:>6.1f}% "
              f"{t['calls_per_step']:>11.2f}")  # fmt: skip
    print(f"{'env: the rest (rewards, flags, wealth)':<44} {res['env_rest_us']:>9.1f}")
    print("(hooks run inside the phase or observation that calls them: their time is in both)")
    if a.out:
        with open(a.out, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    sys.exit(main())
