"""Replay throughput and gas per full deal, measured by replaying scripted episodes on anvil.

For each market (default population; a cheating one with checks, so that mediators accept and
reject) it records one scripted episode, replays it on a fresh anvil with a fresh deployment
(`bridge.replay.Replayer`, chain time set per call, the node signing for the parties), and reports:

- deals replayed per second (wall clock) and the CPU seconds of the replayer (this process) and of
  anvil (from /proc) per deal: wall time depends on the machine's load, CPU time much less;
- gas per full deal for the happy path (agree, agree, addResult, acceptResult), the check-accept
  path (... checkResult, mediationAcceptResult) and the check-reject path (... checkResult,
  mediationRejectResult), against the target: at most half the published Lilypad v1 gas (their
  happy path: agree 710k + 300k, addResult 290k, acceptResult 210k = 1.51M).

Writes a markdown table to `--out` (default outputs/replay_bench.md).

Run: python -m experiments.replay_bench [--ticks 60] [--seed 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from web3 import Web3

import twin
from bridge.anvil import Anvil
from bridge.keys import Keys
from bridge.plan import read_plans
from bridge.replay import Replayer
from experiments.replay_scripted import record_scripted

V1_HAPPY_PATH_GAS = 710_000 + 300_000 + 290_000 + 210_000
TARGET_SHARE = 0.5
MARKETS = {
    "default": (),
    "cheating, checked": ("policies.rp.policy=cheat_with_probability",
                          "policies.rp.cheat_probability=0.5", "policies.jc.check_probability=0.5"),
}  # fmt: skip
PATHS = {
    "happy path": ("agree", "agree", "addResult", "acceptResult"),
    "check, mediator accepts": ("agree", "agree", "addResult", "checkResult",
                                "mediationAcceptResult"),
    "check, mediator rejects": ("agree", "agree", "addResult", "checkResult",
                                "mediationRejectResult"),
}  # fmt: skip


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process `pid` (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_market(overrides: tuple[str, ...], ticks: int, seed: int, work: Path) -> dict:
    record = record_scripted(
        twin.compose([*overrides, f"market.episode_ticks={ticks}"]), 1, seed,
        work / f"{abs(hash(overrides))}.jsonl",
    )  # fmt: skip
    (plan,) = read_plans(record)
    with Anvil(genesis_timestamp_s=plan.first_time_s - 3_600,
               accounts=1 + len(plan.accounts)) as node:  # fmt: skip
        w3 = Web3(Web3.HTTPProvider(node.url, request_kwargs={"timeout": 60}))
        pid = node._process.pid  # noqa: SLF001 - the node's CPU time
        anvil0, cpu0, t0 = _cpu_s(pid), time.process_time(), time.perf_counter()
        result = Replayer(plan, w3, work / f"out{abs(hash(overrides))}", Keys()).run()
        wall = time.perf_counter() - t0
        cpu, anvil_cpu = time.process_time() - cpu0, _cpu_s(pid) - anvil0
    s = result.summary
    assert s["deals_matching"] == s["deals_replayed"], "the benchmark replays must match"
    gas: dict[str, list[int]] = {}
    for r in result.deals:
        for name, path in PATHS.items():
            if tuple(r["path"]) == path:
                gas.setdefault(name, []).append(int(r["gas"]))
    return {"deals": s["deals_replayed"], "transactions": s["steps_sent"], "wall_s": wall,
            "cpu_s": cpu, "anvil_cpu_s": anvil_cpu, "gas": gas}  # fmt: skip


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ticks", type=int, default=60, help="market ticks per episode")
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--out", type=Path, default=Path("outputs/replay_bench.md"))
    args = p.parse_args(argv)
    rows, gas = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, overrides in MARKETS.items():
            r = bench_market(overrides, args.ticks, args.seed, Path(tmp))
            rows.append((name, r))
            for path, values in r["gas"].items():
                gas.setdefault(path, []).extend(values)
    lines = [
        "| market | deals | transactions | deals/s (wall) | replayer CPU ms/deal | "
        "anvil CPU ms/deal |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in rows:
        lines.append(
            f"| {name} | {r['deals']} | {r['transactions']} | {r['deals'] / r['wall_s']:.1f} | "
            f"{1000 * r['cpu_s'] / r['deals']:.0f} | {1000 * r['anvil_cpu_s'] / r['deals']:.0f} |"
        )
    target = int(V1_HAPPY_PATH_GAS * TARGET_SHARE)
    lines += [
        "",
        "| path | deals | mean gas per deal | min | max | published v1 happy path | share |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for path in PATHS:
        values = gas.get(path, [])
        if not values:
            lines.append(f"| {path} | 0 | | | | | |")
            continue
        mean = sum(values) // len(values)
        lines.append(
            f"| {path} | {len(values)} | {mean:,} | {min(values):,} | {max(values):,} | "
            f"{V1_HAPPY_PATH_GAS:,} | {mean / V1_HAPPY_PATH_GAS:.0%} |"
        )
    lines += [
        "",
        f"Target: at most {target:,} gas per full deal (half the published v1 happy path). Gas "
        "per deal includes the first deals of each party (fresh storage slots). Wall-clock "
        "throughput depends on the machine's load; CPU time per deal is the steadier figure.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"written to {args.out}")
    return text


if __name__ == "__main__":
    main()
