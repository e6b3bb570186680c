"""Composing ``configs/`` with Hydra and turning the result into a validated ``TwinConfig``.

``compose(["pricing.results_collateral_multiple=4", "experiment=result_a_threshold"])`` is the
Python equivalent of the command-line overrides of the Hydra apps. Every bad override fails with
a one-line :class:`~twin.config.ConfigError` naming the field and what is allowed: an unknown key
(Hydra's merge against the registered schema) lists the keys allowed there and the close
matches; an unknown option of a config group (``mediation=bogus``, ``experiment=typo``) lists
the group's options; a value of the wrong type says what was expected; ranges and choices fail
in :func:`twin.config.validate`.
"""

from __future__ import annotations

import difflib
import os
import re
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
    return to_config(compose_node(overrides, config_name))


def compose_node(overrides: Sequence[str] = (), config_name: str = "config") -> DictConfig:
    """Compose ``configs/<config_name>.yaml`` with ``overrides`` (Hydra's DictConfig, not yet
    validated): a bad override fails as a one-line :class:`ConfigError`. The schemas of
    ``config_name`` must be registered (``config``'s are, here)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if isinstance(overrides, str) or not all(isinstance(o, str) for o in overrides):
        raise ConfigError(
            f"overrides must be a list of 'key=value' strings, got {overrides!r}"
            + (f" (write [{overrides!r}])" if isinstance(overrides, str) else "")
        )
    overrides = list(overrides)
    register_schemas()

    def run():
        try:
            return hydra_compose(config_name=config_name, overrides=overrides)
        except Exception as e:  # one line naming the field and what is allowed
            raise _composition_error(e, overrides, hydra_compose, config_name) from e

    if GlobalHydra.instance().is_initialized():  # inside a Hydra app
        return run()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return run()


def _composition_error(e: Exception, overrides: list[str], hydra_compose, config_name: str
                       ) -> ConfigError:  # fmt: skip
    """Hydra's composition errors as one line that names the field and what is allowed."""
    msg = str(e)
    m = re.match(r"Could not override '([^']+)'", msg)
    if m:  # an unknown key: the keys allowed where it failed, and the close matches
        key = m.group(1)
        others = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") != key]
        try:
            cfg = hydra_compose(config_name=config_name, overrides=others)
        except Exception:
            return ConfigError(f"{key}: unknown key")
        node, path = cfg, []
        for part in key.split("."):
            if not isinstance(node, DictConfig) or part not in node:
                break
            node, path = node[part], [*path, part]
        bad = key.split(".")[len(path)]
        where = ".".join(path) or "the root"
        allowed = list(node.keys()) if isinstance(node, DictConfig) else []
        hint = difflib.get_close_matches(bad, allowed, n=3)
        elsewhere = sorted(p for p in _paths(cfg) if p.endswith("." + bad))[:3]
        out = f"{'.'.join([*path, bad])}: unknown key; allowed keys of {where}: {allowed}"
        if hint:
            out += f"; did you mean {', '.join('.'.join([*path, h]) for h in hint)}?"
        elif elsewhere:
            out += f"; did you mean {', '.join(elsewhere)}?"
        return ConfigError(out)
    m = re.search(r"Could not find '([^']+)/([^'/]+)'", msg)
    if m and "Available options in" in msg:  # an unknown option of a config group
        group, option = m.groups()
        listed = msg.split("Available options in", 1)[1].split("Config search path", 1)[0]
        options = [ln.strip() for ln in listed.splitlines()[1:] if ln.startswith("\t")]
        return ConfigError(
            f"{group}={option}: no such option of the config group '{group}'; allowed values: "
            f"{options} (the files of configs/{group}/)"
        )
    if msg.startswith("Error merging override") and e.__cause__ is not None:
        cause = str(e.__cause__).strip().splitlines()[0]
        return ConfigError(f"{msg[len('Error merging override ') :]}: {cause}")
    return ConfigError(msg.strip().splitlines()[0] if msg.strip() else repr(e))


def _paths(node, prefix: str = "") -> list[str]:
    """Every key path of a composed config (``a.b.c``)."""
    out = []
    if isinstance(node, DictConfig):
        for k in node.keys():
            p = f"{prefix}{k}"
            out.append(p)
            try:
                child = node[k]
            except Exception:
                continue
            out += _paths(child, p + ".")
    return out


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


def check_cli_overrides(argv: Sequence[str], config_name: str = "config") -> None:
    """Compose a Hydra app's command-line overrides once, before Hydra does, so that a bad one
    fails with :func:`compose_node`'s one-line message (Hydra's own names the key but lists
    nothing and suggests appending it with ``+``); the twin's own config (``config``) is also
    validated (:func:`compose`). Keys of ``hydra`` are left to Hydra; so is the whole command
    line when it holds a flag (``--multirun``, ``--cfg``, ``--help``...). The app registers its
    schemas first."""
    argv = list(argv)
    if any(a.startswith("-") for a in argv):
        return
    keep = [a for a in argv if not a.lstrip("+~").startswith(("hydra.", "hydra/", "hydra="))]
    if config_name == "config":
        compose(keep)
    else:
        compose_node(keep, config_name)
