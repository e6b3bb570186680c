"""Checkpoint loading, in one place: trained RLModules as plain callables (without Ray), and
the training checkpoints of a run (listing them, restoring an algorithm from one).

:func:`load` reads the RLModules of a training checkpoint
(``<checkpoint>/learner_group/learner/rl_module/<policy_id>/``) with
``RLModule.from_checkpoint`` -- no ``Algorithm``, no Ray cluster -- and returns one
:class:`SeatPolicy` per policy id. A :class:`SeatPolicy` maps one agent's observation dict
(``{"observation", "action_mask"}`` as the env returns it) to an env action, with exploration
off: the most likely allowed action for ``Discrete`` seats (the mask is applied to the logits,
so a masked action is never chosen), the Gaussian's mean clipped to ``[0, 1]`` for the JC's
probability action; a scripted module returns its scripted policy's action.

``checkpoint`` may be an algorithm checkpoint (``<run>/checkpoints/iter_<n>``), a run
directory (its newest checkpoint is used) or its ``checkpoints`` directory. :func:`load_run`
also returns the twin config and seat layout saved beside the checkpoint by
:mod:`agents.train`; :func:`restore_algorithm` restores a whole RLlib algorithm (weights,
optimiser, counters, iteration) for a resumed training run. A missing or malformed checkpoint raises :class:`CheckpointError` naming
the path and what was expected there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from twin.errors import UserError

MODULES_DIR = Path("learner_group") / "learner" / "rl_module"
CHECKPOINTS = "checkpoints"  # <run>/checkpoints/iter_<n>/
EXPECTED = (
    "an RLlib algorithm checkpoint written by twin-train: <run>/checkpoints/iter_<n>/ holding "
    f"rllib_checkpoint.json and {MODULES_DIR}/<policy_id>/ (or a run directory with such "
    "checkpoints)"
)


class CheckpointError(UserError, FileNotFoundError):
    """A checkpoint path is missing or does not hold what :func:`load` needs."""


def checkpoint_iteration(path: Path) -> int:
    """The training iteration of a checkpoint directory ``iter_<n>``."""
    return int(path.name.split("_")[-1])


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run (``<run>/checkpoints/iter_<n>``), oldest first."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [p for p in root.glob("iter_*") if p.is_dir() and p.name[5:].isdigit()]
    return sorted(found, key=checkpoint_iteration)


def restore_algorithm(algo, checkpoint: Path) -> int:
    """Restore ``algo`` (an RLlib Algorithm) from ``checkpoint``; return its iteration."""
    ckpt = resolve_checkpoint(checkpoint)
    algo.restore_from_path(str(ckpt.resolve()))
    n = checkpoint_iteration(ckpt)
    if algo.iteration != n:
        raise CheckpointError(f"{ckpt} restored iteration {algo.iteration}, its name says {n}")
    return n


def resolve_checkpoint(path: str | Path) -> Path:
    """The algorithm checkpoint directory that ``path`` names (see the module docstring)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise CheckpointError(f"checkpoint {p} does not exist; expected {EXPECTED}")
    if not p.is_dir():
        raise CheckpointError(f"checkpoint {p} is a file, not a directory; expected {EXPECTED}")
    if (p / "rllib_checkpoint.json").exists() or (p / MODULES_DIR).exists():
        return p
    found = list_checkpoints(p.parent if p.name == CHECKPOINTS else p)
    if found:
        return found[-1]
    raise CheckpointError(f"{p} holds no checkpoint; expected {EXPECTED}")


@dataclass
class SeatPolicy:
    """One policy for inference: ``policy(obs) -> action`` for one agent, or a batch."""

    policy_id: str
    module: Any  # ray.rllib RLModule
    action_space: Any  # gymnasium space

    def __call__(self, obs: dict) -> Any:
        return self.batch([obs])[0]

    def batch(self, observations: Sequence[dict]) -> list:
        """Actions of several agents of this policy at once (one forward pass)."""
        import gymnasium as gym
        import torch
        from ray.rllib.core.columns import Columns

        from agents.modules import MASK_KEY, OBS_KEY, greedy_action

        x = np.stack([np.asarray(o[OBS_KEY], np.float32) for o in observations])
        has_mask = all(MASK_KEY in o for o in observations)
        mask = np.stack([np.asarray(o[MASK_KEY]) for o in observations]) if has_mask else None
        obs = {OBS_KEY: torch.from_numpy(x)}
        if mask is not None:
            obs[MASK_KEY] = torch.from_numpy(mask.astype(np.float32))
        with torch.no_grad():
            out = self.module.forward_inference({Columns.OBS: obs})
        if Columns.ACTIONS in out:  # a scripted module acts itself
            acts = np.asarray(out[Columns.ACTIONS])
        else:
            logits = out[Columns.ACTION_DIST_INPUTS].detach().cpu().numpy()
            acts = greedy_action(self.action_space, logits, mask)
        if isinstance(self.action_space, gym.spaces.Discrete):
            return [int(a) for a in acts.reshape(len(observations))]
        return [np.asarray(a, np.float32).reshape(self.action_space.shape) for a in acts]


def load(checkpoint: str | Path) -> dict[str, SeatPolicy]:
    """``{policy_id: SeatPolicy}`` of every RLModule of ``checkpoint`` (no Ray, no Algorithm)."""
    ckpt = resolve_checkpoint(checkpoint)
    root = ckpt / MODULES_DIR
    if not root.is_dir():
        raise CheckpointError(f"{ckpt} has no {MODULES_DIR}/ directory; expected {EXPECTED}")
    dirs = sorted(d for d in root.iterdir() if d.is_dir())
    if not dirs:
        raise CheckpointError(f"{root} holds no RLModule directory; expected {EXPECTED}")
    import logging

    from ray.rllib.core.rl_module.rl_module import RLModule

    logging.getLogger("ray._common.deprecation").setLevel(logging.ERROR)  # RLlib-internal chatter
    out = {}
    for d in dirs:
        try:
            module = RLModule.from_checkpoint(str(d.resolve()))
        except Exception as e:  # corrupt or foreign files: say which module and why
            raise CheckpointError(
                f"cannot load the RLModule in {d}: {type(e).__name__}: {e}; expected {EXPECTED}"
            ) from e
        if hasattr(module, "eval"):  # torch modules: inference mode (no dropout etc.)
            module.eval()
        out[d.name] = SeatPolicy(d.name, module, module.action_space)
    return out


@dataclass
class LoadedRun:
    """A checkpoint's policies with the config and seat layout it was trained with."""

    checkpoint: Path
    policies: dict[str, SeatPolicy]
    config: Any  # twin.config.TwinConfig
    policy_of: dict[str, str]  # agent id -> policy id (training seats)


def load_run(checkpoint: str | Path) -> LoadedRun:
    """:func:`load` plus ``twin_config.yaml`` and ``seats.json`` saved by :mod:`agents.train`."""
    import json

    from omegaconf import OmegaConf

    from twin.configuration import to_config

    ckpt = resolve_checkpoint(checkpoint)
    for name in ("twin_config.yaml", "seats.json"):
        if not (ckpt / name).is_file():
            raise CheckpointError(f"{ckpt} has no {name}; expected {EXPECTED}")
    config = to_config(OmegaConf.load(ckpt / "twin_config.yaml"))
    seats = json.loads((ckpt / "seats.json").read_text())
    return LoadedRun(ckpt, load(ckpt), config, dict(seats["policy_of"]))
