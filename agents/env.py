"""The RLlib adapter: the twin's PettingZoo env as an RLlib ``MultiAgentEnv``.

:class:`TwinMultiAgentEnv` wraps :class:`twin.env.MarketEnv` the way RLlib's
``ParallelPettingZooEnv`` does (same observations, rewards and ``__all__`` flags), and adds what
training needs from the market:

- seeding: RLlib resets its envs with ``seed=None`` after the first episode, and a market built
  with no seed replays the config's seed; the adapter draws every episode's seed from its own
  ``SeedSequence`` (root seed, env runner index, vector index), so episodes differ and a run is
  reproducible;
- episode end: the PettingZoo env truncates every agent when the market has closed and settled;
  that is the true end of the game (nothing is left to earn), so the adapter reports it to RLlib
  as termination (no value bootstrap past the end);
- access: :attr:`market` (the finished market is still there when RLlib's ``on_episode_end``
  callbacks run) and :attr:`par_env` (the PettingZoo env, for its seat table).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ray.rllib.env.multi_agent_env import MultiAgentEnv

from twin.config import TwinConfig
from twin.env import MarketEnv


class TwinMultiAgentEnv(MultiAgentEnv):
    """``env_config``: ``{"twin": TwinConfig, "expose": "learning" | "all", "seed": int}``.

    RLlib passes an ``EnvContext`` (a dict with ``worker_index`` and ``vector_index``
    attributes) as ``env_config``; a plain dict works too.
    """

    def __init__(self, env_config: dict[str, Any]) -> None:
        super().__init__()
        cfg = env_config.get("twin")
        if not isinstance(cfg, TwinConfig):
            raise TypeError(
                f"env_config['twin'] must be a twin.config.TwinConfig, got {type(cfg).__name__}"
            )
        self.par_env = MarketEnv(cfg, expose=env_config.get("expose"))
        self.possible_agents = list(self.par_env.possible_agents)
        self.agents = list(self.possible_agents)
        self.observation_spaces = {a: self.par_env.observation_space(a) for a in self.agents}
        self.action_spaces = {a: self.par_env.action_space(a) for a in self.agents}
        root = int(env_config.get("seed", cfg.seed))
        worker = int(getattr(env_config, "worker_index", 0))
        vector = int(getattr(env_config, "vector_index", 0))
        self._seeds = np.random.default_rng(np.random.SeedSequence([root, worker, vector]))

    @property
    def market(self):
        """The current (or just finished) :class:`twin.market.Market`."""
        return self.par_env.market

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:  # an explicit seed re-roots the episode seed stream
            self._seeds = np.random.default_rng(np.random.SeedSequence([int(seed)]))
        episode_seed = int(self._seeds.integers(2**31 - 1))
        obs, infos = self.par_env.reset(seed=episode_seed, options=options)
        self.agents = list(self.par_env.agents)
        return obs, infos

    def step(self, action_dict: dict):
        obs, rew, _, trunc, infos = self.par_env.step(action_dict)
        done = self.market.done
        term = dict.fromkeys(trunc, done)
        term["__all__"] = done
        trunc = dict.fromkeys(trunc, False)
        trunc["__all__"] = False
        self.agents = list(self.par_env.agents)
        return obs, rew, term, trunc, infos

    def episode_counts(self, market=None) -> list[dict] | None:
        """The additive measures of the market's episode (:func:`agents.measures.episode_counts`),
        read by :class:`agents.callbacks.MarketMetricsCallback` when an episode ends; None before
        the first reset. ``market``: a finished market kept past the reset that replaced it (an
        env process computes its measures after the reset, off the path of the next step);
        default the current one."""
        from agents.measures import episode_counts

        market = self.market if market is None else market
        if market is None:
            return None
        return episode_counts(
            market, self.par_env.seat_table(market), self.par_env.cfg.train.client_value_multiple
        )

    def on_episode_counts(self, fn) -> None:
        """Call ``fn`` with :meth:`episode_counts` (at once: the market is here; the stand-in of
        a market in an env process, :class:`agents.env_process.RemoteMarket`, calls it when the
        child's measures arrive)."""
        fn(self.episode_counts())

    @property
    def vector_ok(self) -> bool:
        """Whether :meth:`step_vector` applies (:attr:`twin.env.MarketEnv.vector_ok`)."""
        return self.par_env.vector_ok

    def step_vector(self, actions: np.ndarray):
        """:meth:`step` with the actions as one vector and the results as arrays
        (:meth:`twin.env.MarketEnv.step_vector`); what an env process uses."""
        out = self.par_env.step_vector(actions)
        self.agents = list(self.par_env.agents)
        return out

    def prepare_step(self) -> None:
        """Compute ahead what the next step needs that the actions do not change
        (:meth:`twin.env.MarketEnv.prepare_step`); an env process calls it while it waits."""
        self.par_env.prepare_step()

    def close(self) -> None:
        self.par_env.close()
