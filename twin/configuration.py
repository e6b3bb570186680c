"""Composing ``configs/`` with Hydra and turning the result into a validated ``TwinConfig``.

``compose(["pricing.results_collateral_multiple=4", "experiment=collateral_threshold"])`` is the
Python equivalent of the command-line overrides of the Hydra apps. Unknown keys fail in Hydra's
merge against the registered schema (the message names the key); ranges and choices fail in
:func:`twin.config.validate` (the message names the field and the allowed values).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from twin.config import ConfigError, TwinConfig, register_schemas, validate


def config_dir() -> Path:
    """The project's ``configs/`` directory (``TWIN_CONFIG_DIR`` overrides it)."""
    env = os.environ.get("TWIN_CONFIG_DIR")
    if env:
        return Path(env).resolve()
    return (Path(__file__).resolve().parent.parent / "configs").resolve()


def compose(overrides: Sequence[str] = (), config_name: str = "config") -> TwinConfig:
    """Compose ``configs/<config_name>.yaml`` with ``overrides`` into a validated config."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_schemas()
    gh = GlobalHydra.instance()
    was = gh.is_initialized()
    if was:
        cfg = hydra_compose(config_name=config_name, overrides=list(overrides))
    else:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            try:
                cfg = hydra_compose(config_name=config_name, overrides=list(overrides))
            except (
                Exception
            ) as e:  # Hydra's errors name the key; keep them, drop the traceback noise
                raise ConfigError(str(e)) from e
    return to_config(cfg)


def to_config(cfg: DictConfig | TwinConfig) -> TwinConfig:
    """A validated :class:`TwinConfig` from a composed DictConfig (or a TwinConfig)."""
    if isinstance(cfg, TwinConfig):
        return validate(cfg)
    schema = OmegaConf.structured(TwinConfig)
    try:
        merged = OmegaConf.merge(schema, cfg)
        obj = OmegaConf.to_object(merged)
    except Exception as e:
        raise ConfigError(str(e)) from e
    return validate(obj)
