"""twin: a digital twin of the Lilypad v1 compute marketplace.

The documented Python API:

- :func:`compose` -- compose ``configs/`` with Hydra overrides into a validated
  :class:`~twin.config.TwinConfig`;
- :func:`make_env` -- a PettingZoo ``ParallelEnv`` over the market (:mod:`twin.env`);
- :class:`~twin.market.Market` -- the simulator core, driven tick by tick with
  :class:`~twin.market.Actions`.

The core modules import neither gymnasium, pettingzoo nor ray; only :mod:`twin.env` does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twin.config import ConfigError, TwinConfig
from twin.configuration import compose, config_dir, to_config

if TYPE_CHECKING:  # pragma: no cover
    from twin.env import MarketEnv


def make_env(config: TwinConfig, **kwargs) -> MarketEnv:
    """A PettingZoo ``ParallelEnv`` over a market built from ``config`` (see :mod:`twin.env`)."""
    from twin.env import MarketEnv

    return MarketEnv(config, **kwargs)


__all__ = ["ConfigError", "TwinConfig", "compose", "config_dir", "make_env", "to_config"]
