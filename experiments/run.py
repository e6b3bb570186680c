"""``run_episodes``: run the market with the scripted policies named in the config.

Every seat is driven by its group's scripted policy (learning shares are ignored here: there is
no learner). Episode ``e`` is seeded with ``seed + e``; the same config and seed give the same
tables. Rows stream into the result one episode at a time (no market is kept in memory).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import pandas as pd

from twin.config import TwinConfig
from twin.configuration import to_config
from twin.metrics import agents_frame, deals_frame, summary


@dataclass
class EpisodesResult:
    deals: pd.DataFrame
    agents: pd.DataFrame
    events: int = 0
    summary: dict[str, float] = field(default_factory=dict)
    #: per-record tables of the mechanisms (e.g. ``dual_deals``), with an ``episode`` column
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)


def run_episodes(
    config: TwinConfig, episodes: int, seed: int, with_ids: bool = False
) -> EpisodesResult:
    """Run ``episodes`` episodes of the scripted market and collect per-deal and per-agent rows."""
    from twin.env import MarketEnv

    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    cfg = copy.deepcopy(to_config(config))
    for g in ("rp", "jc", "mediator"):
        getattr(cfg.policies, g).learning_share = 0.0
    env = MarketEnv(cfg, expose="learning")
    deals, agents, n_events, mech = [], [], 0, []
    tables: dict[str, list[pd.DataFrame]] = {}
    for e in range(episodes):
        env.reset(seed=seed + e)
        mk = env.market
        while not mk.done:
            env.step({})
        deals.append(deals_frame(mk, e, with_ids))
        agents.append(agents_frame(mk, env.seat_table(), e))
        n_events += len(mk.log)
        mech.append({k: v for m in mk.mechanisms for k, v in m.metrics(mk).items()})
        for m in mk.mechanisms:
            for name, df in m.tables(mk).items():
                tables.setdefault(name, []).append(df.assign(episode=e))
    d = pd.concat(deals, ignore_index=True) if deals else pd.DataFrame()
    a = pd.concat(agents, ignore_index=True)
    extra = pd.DataFrame(mech).mean().to_dict() if mech and mech[0] else {}
    t = {k: pd.concat(v, ignore_index=True) for k, v in tables.items()}
    return EpisodesResult(d, a, n_events, {**summary(d, a), **extra}, t)
