"""``run_episodes``: run the market with the scripted policies named in the config.

Every seat is driven by its group's scripted policy (learning shares are ignored here: there is
no learner). Episode ``e`` is seeded with ``seed + e``; the same config and seed give the same
tables. Rows stream into the result one episode at a time (no market is kept in memory).

With ``measures=True`` the result also holds the pooled measures of :mod:`agents.measures`
(the table ``twin-eval`` writes as ``measures.csv``); with ``record=<path>`` the episodes are
written to ``path`` as the episode record of ``docs/episode-record.md``
(:class:`experiments.record.EpisodeRecorder`, the file ``twin-eval`` writes as
``episodes.jsonl``; scripted seats are not exposed, so it holds no ``action`` records), which
``twin-replay record=<path>`` replays.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

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
    #: pooled measures (:func:`agents.measures.rates`), when asked for (``measures=True``)
    measures: pd.DataFrame | None = None


def run_episodes(
    config: TwinConfig,
    episodes: int,
    seed: int,
    with_ids: bool = False,
    *,
    measures: bool = False,
    record: str | Path | None = None,
) -> EpisodesResult:
    """Run ``episodes`` episodes of the scripted market and collect per-deal and per-agent rows
    (and the pooled measures with ``measures=True``; the episode record to ``record``)."""
    from twin.env import MarketEnv

    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    cfg = copy.deepcopy(to_config(config))
    for g in ("rp", "jc", "mediator"):
        getattr(cfg.policies, g).learning_share = 0.0
    env = MarketEnv(cfg, expose="learning")
    recorder = None
    if measures:
        from agents.measures import episode_counts, rates
    if record is not None:
        from omegaconf import OmegaConf

        from experiments.record import EpisodeRecorder

        Path(record).parent.mkdir(parents=True, exist_ok=True)
        header = {"checkpoint": "", "episodes": episodes, "seed": seed,
                  "config": OmegaConf.to_container(OmegaConf.structured(cfg))}  # fmt: skip
        recorder = EpisodeRecorder(Path(record), header)
    deals, agents, n_events, mech, counts = [], [], 0, [], []
    tables: dict[str, list[pd.DataFrame]] = {}
    try:
        for e in range(episodes):
            env.reset(seed=seed + e)
            mk = env.market
            if recorder:
                recorder.start_episode(e, seed + e, env)
            while not mk.done:
                env.step({})
                if recorder:
                    recorder.events(mk.tick)
            if recorder:
                recorder.end_episode()
            seats = env.seat_table()
            deals.append(deals_frame(mk, e, with_ids))
            agents.append(agents_frame(mk, seats, e))
            if measures:
                counts += episode_counts(mk, seats, cfg.train.client_value_multiple)
            n_events += len(mk.log)
            mech.append({k: v for m in mk.mechanisms for k, v in m.metrics(mk).items()})
            for m in mk.mechanisms:
                for name, df in m.tables(mk).items():
                    tables.setdefault(name, []).append(df.assign(episode=e))
    finally:
        if recorder:
            recorder.close()
    d = pd.concat(deals, ignore_index=True) if deals else pd.DataFrame()
    a = pd.concat(agents, ignore_index=True)
    extra = pd.DataFrame(mech).mean().to_dict() if mech and mech[0] else {}
    t = {k: pd.concat(v, ignore_index=True) for k, v in tables.items()}
    m = rates(counts) if measures else None
    return EpisodesResult(d, a, n_events, {**summary(d, a), **extra}, t, m)
