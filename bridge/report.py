"""The parity report of a replay: per deal twin vs chain, per transaction, gas, accounts, summary.

`write_episode_report` writes, into the episode's output directory:

- `parity.jsonl`: one JSON object per deal (`deal_id`, parties, `path` = its calls in order,
  `twin_state`, `chain_state`, `match`, `first_difference` and `caused_by` = the transaction that
  caused it, `locked_wei` = escrow a reverted call left locked, per account, `gas`);
- `steps.csv`: one row per transaction (step, call, deal, caller, tx hash, status, gas, match,
  difference);
- `gas.csv` (per call: count, total, mean, min, max) and `gas_paths.csv` (mean gas of a full deal
  per path);
- `accounts.csv`: every account's final wallet and escrow movement, twin vs chain;
- `summary.json` and `report.md` (the summary line, the differences, the gas tables).

`write_run_report` aggregates several episodes. `summary_line` is the one-line summary: deals
replayed, deals matching, token amounts compared, total gas.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from bridge.deploy import Deployment
    from bridge.plan import EpisodePlan
    from bridge.replay import ReplayResult

STEP_COLUMNS = ("step", "function", "deal_id", "caller", "time_s", "tx_hash", "status", "gas",
                "match", "difference")  # fmt: skip
MAX_DEAL_ROWS = 40


def summary_line(s: dict) -> str:
    """`replayed D deals (T transactions): M match, X differ; N token amounts compared
    (V tokens moved); total gas G`."""
    differ = s["deals_replayed"] - s["deals_matching"]
    line = (
        f"replayed {s['deals_replayed']} deals ({s['steps_sent']} transactions): "
        f"{s['deals_matching']} match, {differ} differ; {s['token_amounts_compared']:,} token "
        f"amounts compared ({s['tokens_moved']:,.4f} tokens moved); total gas {s['total_gas']:,}"
    )
    if "accounts" in s and s["accounts"]:
        line += f"; accounts matching {s['accounts_matching']}/{s['accounts']}"
    if not s.get("complete", True):
        line += " (incomplete: resume to finish)"
    return line


def _csv(path: Path, rows: list[dict], columns: tuple[str, ...] | None = None) -> Path:
    columns = columns or (tuple(rows[0]) if rows else ("empty",))
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k) for k in columns})
    return path


def write_episode_report(result: ReplayResult, plan: EpisodePlan, deployment: Deployment) -> None:
    from bridge.replay import gas_table, path_gas

    out = result.out_dir
    with (out / "parity.jsonl").open("w") as f:
        for r in result.deals:
            f.write(json.dumps(r, separators=(",", ":")) + "\n")
    _csv(out / "steps.csv", result.steps, STEP_COLUMNS)
    gas = gas_table(result.steps)
    paths = path_gas(result.deals)
    _csv(out / "gas.csv", gas, ("function", "count", "total_gas", "mean_gas", "min_gas", "max_gas"))
    _csv(out / "gas_paths.csv", paths, ("path", "deals", "mean_gas", "min_gas", "max_gas"))
    _csv(out / "accounts.csv", result.accounts)
    summary = dict(result.summary, deployment=deployment.to_dict(), record=plan.record_path)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "report.md").write_text(_markdown(result, plan, gas, paths))


def _markdown(result: ReplayResult, plan: EpisodePlan, gas: list[dict], paths: list[dict]) -> str:
    s = result.summary
    lines = [
        f"# Replay of episode {plan.episode} of `{plan.record_path}`",
        "",
        summary_line(s),
        "",
        f"- twin preset `{s['preset']}` against contracts `{s['variant']}` on chain id "
        f"{s['chain_id']}; chain time `{s['time_mode']}` (offset {s['time_offset_s']} s)",
        f"- transactions matching: {s['steps_matching']} of {len(result.steps)}",
        "",
        "## Deals",
        "",
        "| deal | parties | path | twin | chain | match | first difference | caused by |",
        "|---|---|---|---|---|---|---|---|",
    ]
    shown = [r for r in result.deals if not r["match"]][:MAX_DEAL_ROWS]
    shown += [r for r in result.deals if r["match"]][: max(0, 10 - len(shown))]
    for r in shown:
        lines.append(
            f"| {r['deal_index']} `{r['deal_id'][:12]}..` | {r['job_creator']} / "
            f"{r['resource_provider']} | {' > '.join(r['path'])} | {r['twin_state']} | "
            f"{r['chain_state']} | {'yes' if r['match'] else '**no**'} | "
            f"{r['first_difference'] or ''} | {r['caused_by'] or ''} |"
        )
    if len(result.deals) > len(shown):
        lines.append(f"\n({len(result.deals) - len(shown)} more deals in parity.jsonl)")
    locked = [r for r in result.deals if r["locked_wei"]]
    if locked:
        lines += ["", "## Funds left locked by reverted calls", "",
                  "| deal | call | locked per account (wei) |", "|---|---|---|"]  # fmt: skip
        for r in locked:
            amounts = ", ".join(f"{k}: {v}" for k, v in r["locked_wei"].items())
            lines.append(f"| {r['deal_index']} | {r['caused_by']} | {amounts} |")
    bad = [a for a in result.accounts if not a["match"]]
    lines += ["", "## Accounts", "",
              f"{len(result.accounts) - len(bad)} of {len(result.accounts)} accounts end with the "
              "twin's wallet and escrow to the wei."]  # fmt: skip
    if bad:
        lines += ["", "| account | twin wallet | chain wallet | twin escrow | chain escrow | "
                  "first differing tx |", "|---|---:|---:|---:|---:|---|"]  # fmt: skip
        for a in bad:
            lines.append(
                f"| {a['label']} | {a['twin_wallet_wei']} | {a['chain_wallet_wei']} | "
                f"{a['twin_escrow_wei']} | {a['chain_escrow_wei']} | "
                f"{a['first_difference_at'] or ''} |"
            )
    lines += ["", "## Gas per call", "", "| call | count | mean | min | max | total |",
              "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for g in gas:
        lines.append(f"| {g['function']} | {g['count']} | {g['mean_gas']:,} | {g['min_gas']:,} | "
                     f"{g['max_gas']:,} | {g['total_gas']:,} |")  # fmt: skip
    lines += ["", "## Gas per full deal, by path", "", "| path | deals | mean | min | max |",
              "|---|---:|---:|---:|---:|"]  # fmt: skip
    for p in paths:
        lines.append(f"| {p['path']} | {p['deals']} | {p['mean_gas']:,} | {p['min_gas']:,} | "
                     f"{p['max_gas']:,} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def write_run_report(out: Path, results: list[ReplayResult]) -> dict:
    """`summary.json` and `report.md` over every episode; returns the totals."""
    keys = ("deals_replayed", "deals_matching", "steps", "steps_sent", "steps_matching",
            "token_amounts_compared", "total_gas", "accounts", "accounts_matching")  # fmt: skip
    total = {k: sum(r.summary[k] for r in results) for k in keys}
    total["tokens_moved"] = sum(r.summary["tokens_moved"] for r in results)
    total["complete"] = all(r.complete for r in results)
    total["episodes"] = [r.episode for r in results]
    (out / "summary.json").write_text(json.dumps(total, indent=2) + "\n")
    lines = ["# Replay", "", summary_line(total), "", "| episode | summary | report |",
             "|---|---|---|"]  # fmt: skip
    for r in results:
        rel = r.out_dir.relative_to(out) if r.out_dir.is_relative_to(out) else r.out_dir
        lines.append(f"| {r.episode} | {summary_line(r.summary)} | `{rel}/report.md` |")
    (out / "report.md").write_text("\n".join(lines) + "\n")
    return total
