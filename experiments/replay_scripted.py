"""Episode records of scripted markets (no checkpoint), for the chain replay.

`record_scripted(cfg, episodes, seed, path)` runs the market with every seat on its group's
scripted policy (as `experiments.run.run_episodes` does) and writes the episode record of
`docs/episode-record.md` with `experiments.record.EpisodeRecorder`: the same format `twin-eval`
writes for trained policies, so `twin-replay record=...` replays either. Episode `e` is seeded
with `seed + e`.
"""

from __future__ import annotations

import copy
from pathlib import Path

from omegaconf import OmegaConf

from twin.config import TwinConfig
from twin.configuration import to_config


def record_scripted(config: TwinConfig, episodes: int, seed: int, path: str | Path) -> Path:
    """Writes the record of `episodes` scripted episodes to `path`; returns `path`."""
    from experiments.record import EpisodeRecorder
    from twin.env import MarketEnv

    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    cfg = copy.deepcopy(to_config(config))
    for g in ("rp", "jc", "mediator"):
        getattr(cfg.policies, g).learning_share = 0.0
    env = MarketEnv(cfg, expose="learning")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {"checkpoint": "", "episodes": episodes, "seed": seed,
              "config": OmegaConf.to_container(OmegaConf.structured(cfg))}  # fmt: skip
    with EpisodeRecorder(path, header) as recorder:
        for e in range(episodes):
            env.reset(seed=seed + e)
            recorder.start_episode(e, seed + e, env)
            mk = env.market
            while not mk.done:
                env.step({})
                recorder.events(mk.tick)
            recorder.end_episode()
    return path
