"""RLlib callback that measures every finished episode from the market itself.

At ``on_episode_end`` the env's market is still the finished one (RLlib's vector env resets a
sub-env on the *next* step), so :class:`MarketMetricsCallback` asks the sub-env
(``env.envs[env_index].unwrapped``) for its episode's additive counts
(:meth:`agents.env.TwinMultiAgentEnv.on_episode_counts`; with the markets in an env process,
:class:`agents.env_process.RemoteMarket` hands over the counts the process computes after the
step, within the same ``sample()`` call) and logs them as one item of the ``twin/episodes``
series. The training
loop pools an iteration's items with :func:`agents.measures.rates`; because counts are logged,
not rates, the pooled rates are exact whatever the number of env runners.
"""

from __future__ import annotations

from typing import Any

from ray.rllib.callbacks.callbacks import RLlibCallback

METRICS_KEY = ("twin", "episodes")


class MarketMetricsCallback(RLlibCallback):
    def on_episode_end(self, *, episode: Any = None, metrics_logger: Any = None,
                       env: Any = None, env_index: int = 0, **kwargs: Any) -> None:  # fmt: skip
        sub = env.envs[env_index].unwrapped if hasattr(env, "envs") else env
        if metrics_logger is None:
            return

        def log(counts: list[dict] | None) -> None:
            if counts is not None:
                metrics_logger.log_value(METRICS_KEY, counts, reduce="item_series")

        sub.on_episode_counts(log)  # now in the driver; when they arrive from an env process
