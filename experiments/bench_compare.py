"""Compare the env's speed of this checkout with another one: alternating runs on one core.

``python -m experiments.bench_compare OTHER`` measures environment agent-steps per second (the
market of ``experiments.bench`` at ``--agents`` seats, every seat acting with a uniformly random
allowed action) in this checkout and in ``OTHER``, alternately, ``--rounds`` times. ``OTHER`` is
another checkout of this project (a directory holding ``twin/``) or a git revision of this
repository (``HEAD~3``, a branch, a commit), which is checked out into a temporary worktree and
removed afterwards.

Why alternate: this machine's speed drifts by 10-30 % over minutes, so one run of each version
compares the moments, not the code. Each round runs both versions back to back (in turn first),
each in a fresh process pinned to one CPU, taking the fastest of ``--blocks`` blocks of
``--steps`` steps; the report gives each version's median over the rounds and the median and
range of the per-round ratios (this / other: above 1, this checkout is faster).

Both versions run the same measuring code (:data:`_MEASURE`, using only ``twin.compose`` and
``twin.env.MarketEnv``) on the same market (this checkout's
:func:`experiments.bench.bench_overrides`), so older checkouts can be compared too. Bad arguments, bad overrides
(checked here first) and an ``OTHER`` that is neither a checkout nor a revision are reported on
one line (``bench_compare: ...``) with exit status 2. ``--out FILE`` writes every run as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from twin.errors import UserError, user_errors

PROG = "bench_compare"
ROOT = Path(__file__).resolve().parents[1]  # this checkout

#: run in each checkout (``python -c``, working directory: the checkout); argv[1]: JSON
#: [steps, blocks, overrides of the whole market]; prints JSON {agent_steps_per_s, twin}
_MEASURE = r"""
import json, os, sys, time
sys.path.insert(0, os.getcwd())
import numpy as np
import twin
from twin.env import MarketEnv

steps, blocks, overrides = json.loads(sys.argv[1])
cfg = twin.compose(overrides)
cpus = os.sched_getaffinity(0)
os.sched_setaffinity(0, {min(cpus)})
env = MarketEnv(cfg)
obs, _ = env.reset(seed=0)
rng = np.random.default_rng(0)

def actions(obs):
    return {a: int(rng.choice(np.flatnonzero(obs[a]["action_mask"]))) for a in env.agents}

for _ in range(20):
    obs, *_ = env.step(actions(obs))
best = 0.0
for _ in range(blocks):
    spent = 0.0
    for _ in range(steps):
        a = actions(obs)
        t = time.perf_counter()
        obs, *_ = env.step(a)
        spent += time.perf_counter() - t
    best = max(best, len(env.agents) * steps / spent)
print(json.dumps({"agent_steps_per_s": best, "twin": os.path.dirname(twin.__file__)}))
"""


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("other", help="another checkout (a directory) or a git revision of this repo")
    p.add_argument("--agents", type=int, default=100)
    p.add_argument("--rounds", type=int, default=8, help="alternations (each runs both versions)")
    p.add_argument("--steps", type=int, default=600, help="env steps per block")
    p.add_argument("--blocks", type=int, default=3, help="blocks per run; the fastest counts")
    p.add_argument("--override", action="append", default=[], help="Hydra override (repeatable)")
    p.add_argument("--out", default="", help="write the runs and the summary as JSON here")
    a = p.parse_args(argv)
    if min(a.agents, a.rounds, a.steps, a.blocks) < 1:
        p.error("--agents, --rounds, --steps and --blocks must be >= 1")
    if a.out and not Path(a.out).resolve().parent.is_dir():
        p.error(f"--out {a.out}: no such directory {str(Path(a.out).resolve().parent)!r}")
    with user_errors(PROG):
        import twin
        from experiments.bench import bench_overrides

        market = bench_overrides(a.agents, a.override)
        twin.compose(market)  # a misspelt key or a bad value: before any run
        with _checkout(a.other) as other:
            result = compare(ROOT, other, a.agents, a.rounds, a.steps, a.blocks, a.override, market)
        _report(result)
        if a.out:
            Path(a.out).write_text(json.dumps(result, indent=2))


def compare(this: Path, other: Path, agents: int, rounds: int, steps: int, blocks: int,
            overrides: list[str], market: list[str]) -> dict:  # fmt: skip
    """Alternating runs of the two checkouts on the market of the Hydra overrides ``market``
    (``overrides`` are the user's part of them, for the report); every run and the medians."""
    runs = []
    for k in range(rounds):
        order = (("this", this), ("other", other)) if k % 2 == 0 else (("other", other), ("this", this))  # fmt: skip
        got = {name: measure(tree, steps, blocks, market) for name, tree in order}
        runs.append({"round": k, "this": got["this"], "other": got["other"],
                     "ratio": got["this"] / got["other"]})  # fmt: skip
        print(f"round {k + 1}/{rounds}: this {got['this']:,.0f}, other {got['other']:,.0f} "
              f"agent-steps/s ({runs[-1]['ratio']:.3f}x)", flush=True)  # fmt: skip
    ratios = [r["ratio"] for r in runs]
    return {
        "this": str(this), "other": str(other), "agents": agents, "steps": steps, "blocks": blocks,
        "overrides": overrides, "runs": runs,
        "median_this": statistics.median(r["this"] for r in runs),
        "median_other": statistics.median(r["other"] for r in runs),
        "median_ratio": statistics.median(ratios), "min_ratio": min(ratios), "max_ratio": max(ratios),
    }  # fmt: skip


def measure(tree: Path, steps: int, blocks: int, market: list[str]) -> float:
    """Agent-steps per second of ``tree``'s env on the market of the Hydra overrides ``market``
    (the fastest block), in a fresh process."""
    env = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(tree), *filter(None, [env.get("PYTHONPATH")])])
    proc = subprocess.run(
        [sys.executable, "-c", _MEASURE, json.dumps([steps, blocks, market])],
        cwd=tree, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise UserError(f"the env of {tree} failed to run: {last}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    if Path(out["twin"]).resolve() != (tree / "twin").resolve():  # the other checkout's code ran
        raise UserError(f"{tree}: imported twin from {out['twin']}, not from this checkout")
    return float(out["agent_steps_per_s"])


class _checkout:
    """``other`` as a directory: a checkout given by path, or a git revision checked out into a
    temporary worktree (removed on exit)."""

    def __init__(self, other: str) -> None:
        self.other, self.tmp = other, None

    def __enter__(self) -> Path:
        path = Path(self.other)
        if path.is_dir():
            if not (path / "twin" / "__init__.py").is_file():
                raise UserError(f"other: {self.other!r} is a directory but holds no twin/ package: "
                                "give a checkout of this project or a git revision")  # fmt: skip
            return path.resolve()
        sha = _git("rev-parse", "--verify", "--quiet", f"{self.other}^{{commit}}")
        if sha is None:
            raise UserError(f"other: {self.other!r} is neither a directory (a checkout of this "
                            "project) nor a git revision of this repository")  # fmt: skip
        self.tmp = tempfile.mkdtemp(prefix="twin-compare-")
        if _git("worktree", "add", "--detach", self.tmp, sha) is None:
            raise UserError(
                f"other: could not check out {self.other!r} ({sha[:12]}) into {self.tmp}"
            )
        return Path(self.tmp)

    def __exit__(self, *exc) -> None:
        if self.tmp is not None:
            _git("worktree", "remove", "--force", self.tmp)


def _git(*args: str) -> str | None:
    """``git args`` in this checkout: its stdout, or None when it fails (or git is missing)."""
    try:
        proc = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    except OSError:
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def _report(r: dict) -> None:
    print(f"{r['agents']} agents, {len(r['runs'])} rounds: this {r['median_this']:,.0f}, other "
          f"{r['median_other']:,.0f} agent-steps/s (medians); this / other: median "
          f"{r['median_ratio']:.3f}x (range {r['min_ratio']:.3f}-{r['max_ratio']:.3f})")  # fmt: skip


if __name__ == "__main__":
    main()
