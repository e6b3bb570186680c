"""Writing a run's report: per-deal and per-agent tables, a summary, and a plot.

Tables go to Parquet (wei amounts as exact ``decimal128(38, 0)``) and CSV; the summary to JSON and
Markdown; the figure (payoff per agent by role and seat, deal outcomes, node profit per deal by
execution mode) to PNG. :func:`plot_training` draws the curves of a training run's metrics table.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402


def to_parquet(df: pd.DataFrame, path: Path) -> None:
    """Write ``df`` with every ``*_wei`` column as exact decimal128(38, 0)."""
    cols = {}
    for c in df.columns:
        if c.endswith("_wei"):
            cols[c] = pa.array([Decimal(int(x)) for x in df[c]], pa.decimal128(38, 0))
        else:
            cols[c] = (
                pa.array(df[c].tolist()) if df[c].dtype == object else pa.array(df[c].to_numpy())
            )
    pq.write_table(pa.table(cols), path)


def plot(deals: pd.DataFrame, agents: pd.DataFrame, path: Path, title: str = "") -> None:
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    groups = [
        (f"{r}\n({s})", g["payoff_tokens"].to_numpy())
        for (r, s), g in agents.groupby(["role", "seat"])
    ]
    if groups:
        ax.boxplot([g for _, g in groups], tick_labels=[n for n, _ in groups])
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_title("payoff per agent and episode (tokens)")
    ax = axes[1]
    if len(deals):
        counts = deals["outcome"].value_counts().sort_index()
        ax.barh(counts.index, counts.to_numpy(), color="tab:blue")
    ax.set_title("deal outcomes")
    ax = axes[2]
    if len(deals):
        for mode, g in deals[deals["mode"] != "none"].groupby("mode"):
            ax.hist(g["rp_profit_tokens"], bins=40, alpha=0.6, label=f"{mode} ({len(g)})")
        ax.legend()
    ax.set_title("node profit per deal (tokens)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summary_markdown(summary: dict, agents: pd.DataFrame, title: str) -> str:
    lines = [f"# {title}", "", "| measure | value |", "|---|---|"]
    lines += [f"| {k} | {v:.4g} |" for k, v in summary.items()]
    if len(agents):
        lines += [
            "",
            "## Mean payoff per agent and episode (tokens)",
            "",
            "| role | seat | policy | agents | mean payoff | mean cost |",
            "|---|---|---|---|---|---|",
        ]
        for (role, seat, pol), g in agents.groupby(["role", "seat", "policy"]):
            lines.append(
                f"| {role} | {seat} | {pol} | {g.agent.nunique()} | {g.payoff_tokens.mean():.4f} | {g.cost_tokens.mean():.4f} |"
            )
    return "\n".join(lines) + "\n"


def write_report(
    out: Path, deals: pd.DataFrame, agents: pd.DataFrame, summary: dict, title: str,
    *, plots: bool = True,
) -> dict[str, Path]:  # fmt: skip
    """Tables, summary and report under ``out``; the plot unless ``plots=False``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "deals": out / "deals.parquet",
        "agents": out / "agents.parquet",
        "summary": out / "summary.json",
        "report": out / "report.md",
    }
    to_parquet(deals, paths["deals"])
    to_parquet(agents, paths["agents"])
    deals.to_csv(out / "deals.csv", index=False)
    agents.to_csv(out / "agents.csv", index=False)
    paths["summary"].write_text(json.dumps(summary, indent=2))
    paths["report"].write_text(summary_markdown(summary, agents, title))
    if plots:
        paths["plot"] = out / "report.png"
        plot(deals, agents, paths["plot"], title)
    return paths


TRAINING_PANELS = (  # (column, title, rows plotted: the market row or the learning roles)
    ("module_return_mean", "RLlib episode return per learning policy", "roles"),
    ("learning_payoff_tokens", "payoff per learning seat and episode (tokens)", "roles"),
    ("learning_cheat_rate", "cheat rate of the learning seats' deals", "roles"),
    ("learning_check_rate", "check rate of the learning seats' deals", "roles"),
    ("cheat_rate", "market: cheat rate (cheated / executed)", "market"),
    ("check_rate", "market: check rate (checked / submitted)", "market"),
    ("collusion_rate", "market: collusion rate (collusive / checks)", "market"),
    ("wrong_accepted_rate", "market: wrong results accepted / deals", "market"),
    ("mediation_rate", "market: mediation rate (checked / deals)", "market"),
    ("collateral_locked_tokens", "market: collateral locked, time-weighted (tokens)", "market"),
    ("client_surplus_tokens", "market: client surplus per JC and episode (tokens)", "market"),
    ("protocol_revenue_tokens", "market: protocol revenue per episode (tokens)", "market"),
    ("entropy", "policy entropy", "roles"),
    ("vf_loss", "value-function loss", "roles"),
    ("time_this_iter_s", "seconds per iteration", "market"),
)


def plot_training(metrics: pd.DataFrame, path: Path, title: str = "") -> None:
    """Curves of a training run's metrics table (``agents.train``) in a grid of panels."""
    cols = 4
    rows = -(-len(TRAINING_PANELS) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    learning = metrics[(metrics.role != "market") & (metrics.policies != "")]
    market = metrics[metrics.role == "market"]
    for ax, (key, label, which) in zip(axes.flat, TRAINING_PANELS, strict=False):
        for role, g in (market if which == "market" else learning).groupby("role", sort=False):
            y = g[key].to_numpy(dtype=float)
            if np.isfinite(y).any():
                ax.plot(g["iteration"].to_numpy(), y, marker=".", label=role)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("iteration", fontsize=8)
        ax.tick_params(labelsize=8)
        if ax.lines and which == "roles":
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(TRAINING_PANELS) :]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
