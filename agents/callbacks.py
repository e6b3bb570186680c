"""RLlib callback that measures every finished episode from the market itself.

At ``on_episode_end`` the env's market is still the finished one (RLlib's vector env resets a
sub-env on the *next* step), so :class:`MarketMetricsCallback` reads it through the adapter
(``env.envs[env_index].unwrapped.market``) and logs the additive counts of
:func:`agents.measures.episode_counts` as one item of the ``twin/episodes`` series. The training
loop pools an iteration's items with :func:`agents.measures.rates`; because counts are logged,
not rates, the pooled rates are exact whatever the number of env runners.
"""

from __future__ import annotations

from typing import Any

from ray.rllib.callbacks.callbacks import RLlibCallback

from agents.measures import episode_counts

METRICS_KEY = ("twin", "episodes")


class MarketMetricsCallback(RLlibCallback):
    def on_episode_end(self, *, episode: Any = None, metrics_logger: Any = None,
                       env: Any = None, env_index: int = 0, **kwargs: Any) -> None:  # fmt: skip
        sub = env.envs[env_index].unwrapped if hasattr(env, "envs") else env
        market = sub.market
        if market is None or metrics_logger is None:
            return
        counts = episode_counts(
            market, sub.par_env.seat_table(), sub.par_env.cfg.train.client_value_multiple
        )
        metrics_logger.log_value(METRICS_KEY, counts, reduce="item_series")
