"""The RLModules of the twin's seats: learning PPO modules and never-trained scripted modules.

- :class:`DictObsPPOTorchRLModule`: RLlib's default PPO torch module over the ``observation``
  entry of the twin's ``Dict`` observation (the JC's ``env.jc_action=probability`` seats, whose
  observation has no mask and whose action is a ``Box(0, 1, (1,))``).
- :class:`MaskedPPOTorchRLModule`: the same with action masking for the ``Discrete`` seats:
  the ``action_mask`` entry adds ``log(mask)`` (clamped to RLlib's ``FLOAT_MIN``) to the logits,
  so a masked action has probability 0 when sampling and is never the greedy choice.
- :class:`ScriptedRLModule`: a seat's scripted policy of :mod:`agents.baselines` as an RLModule
  (``model_config = {"group", "policy", "params", "ctx", "seed"}``). It has no parameters and
  raises in ``forward_train``: it must be left out of ``policies_to_train``.

:func:`masked_argmax` and :func:`greedy_action` turn module outputs into env actions for
inference (:mod:`agents.policies`).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module import DefaultPPOTorchRLModule
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.rl_module import RLModule
from ray.rllib.utils.torch_utils import FLOAT_MIN

from agents.baselines import PolicyContext, make_policy

OBS_KEY, MASK_KEY = "observation", "action_mask"


def _inner_space(space: gym.Space) -> gym.Space:
    if not isinstance(space, gym.spaces.Dict) or OBS_KEY not in space.spaces:
        raise ValueError(
            f"the twin's RLModules need a Dict observation space with an {OBS_KEY!r} entry, "
            f"got {space}"
        )
    return space[OBS_KEY]


class DictObsPPOTorchRLModule(DefaultPPOTorchRLModule):
    """RLlib's default PPO module fed with ``obs["observation"]`` (the mask, if any, is dropped)."""

    def __init__(self, *args: Any, observation_space: gym.Space | None = None, **kwargs: Any):
        self.observation_space_dict = observation_space
        super().__init__(*args, observation_space=_inner_space(observation_space), **kwargs)

    def setup(self) -> None:
        super().setup()  # networks are built for the inner Box
        self.observation_space = self.observation_space_dict

    # RLlib's TorchRLModule puts the module in eval mode around every forward_exploration /
    # forward_inference call and back in train mode after it: two walks over the ~24 torch
    # submodules that cost more than the forward pass itself (about 1.6 ms a call on the machine
    # of docs/performance.md). A module already in eval mode (the training's env runners put
    # theirs there once: agents.env_runner.TwinEnvRunner.make_module) runs the same forward pass
    # without the walks.
    def forward_exploration(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        if self.training:
            return super().forward_exploration(batch, **kwargs)
        return self._forward_exploration(batch, **kwargs)

    def forward_inference(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        if self.training:
            return super().forward_inference(batch, **kwargs)
        return self._forward_inference(batch, **kwargs)

    def _split(self, batch: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        obs = batch[Columns.OBS]
        if not isinstance(obs, dict):  # already unwrapped (e.g. by compute_values)
            return batch.get(MASK_KEY), batch
        inner = dict(batch)
        inner[Columns.OBS] = obs[OBS_KEY]
        return obs.get(MASK_KEY), inner

    def _masked(self, out: dict[str, Any], mask: Any) -> dict[str, Any]:
        return out

    def _forward(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        mask, inner = self._split(batch)
        return self._masked(super()._forward(inner, **kwargs), mask)

    def _forward_train(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        mask, inner = self._split(batch)
        return self._masked(super()._forward_train(inner, **kwargs), mask)

    def compute_values(self, batch: dict[str, Any], embeddings: Any = None):
        if embeddings is None:
            _, batch = self._split(batch)
        return super().compute_values(batch, embeddings)


class MaskedPPOTorchRLModule(DictObsPPOTorchRLModule):
    """PPO with action masking: logits of masked actions are pushed to ``FLOAT_MIN``."""

    def _masked(self, out: dict[str, Any], mask: Any) -> dict[str, Any]:
        if mask is None:
            raise ValueError(
                f"MaskedPPOTorchRLModule needs obs[{MASK_KEY!r}]; got a batch without it"
            )
        inf_mask = torch.clamp(torch.log(mask.float()), min=FLOAT_MIN)
        out[Columns.ACTION_DIST_INPUTS] = out[Columns.ACTION_DIST_INPUTS] + inf_mask
        return out


class ScriptedRLModule(RLModule):
    """A scripted policy of :mod:`agents.baselines` behind the RLModule interface (never trained).

    ``model_config``: ``group`` (rp, jc, mediator), ``policy`` (a name of that group in
    :data:`agents.baselines.REGISTRY`), ``params`` (its parameters), ``ctx`` (the
    :class:`~agents.baselines.PolicyContext` fields) and ``seed`` (of its own numpy Generator).
    """

    def setup(self) -> None:
        mc = dict(self.model_config or {})
        missing = [k for k in ("group", "policy") if k not in mc]
        if missing:
            raise ValueError(f"ScriptedRLModule model_config lacks {missing}; got {sorted(mc)}")
        self.group = mc["group"]
        self.policy = make_policy(
            self.group, mc["policy"], mc.get("params") or {}, PolicyContext(**mc.get("ctx", {}))
        )
        self.rng = np.random.default_rng(int(mc.get("seed", 0)))
        space = self.action_space
        self._n_mask = int(space.n) if isinstance(space, gym.spaces.Discrete) else 1
        self._box = isinstance(space, gym.spaces.Box)

    def _forward(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        obs = batch[Columns.OBS]
        x = _to_numpy(obs[OBS_KEY])
        mask = _to_numpy(obs[MASK_KEY]) if MASK_KEY in obs else np.ones((len(x), self._n_mask))
        act = self.policy.act_batch(x, mask.astype(np.int8), self.rng)
        if self._box:
            return {Columns.ACTIONS: act.astype(np.float32)}  # NaN: wait (see twin.env)
        return {Columns.ACTIONS: act[:, 0].astype(np.int64)}

    def _forward_train(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        raise NotImplementedError(
            "ScriptedRLModule is never trained: keep it out of policies_to_train"
        )

    def get_state(self, *args: Any, **kwargs: Any) -> dict:
        return {}

    def set_state(self, state: dict) -> None:
        return None


def _to_numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def masked_argmax(logits: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Index of the largest logit among the allowed actions, per row."""
    if mask is None:
        return logits.argmax(axis=-1)
    return np.where(mask.astype(bool), logits, -np.inf).argmax(axis=-1)


def greedy_action(space: gym.Space, dist_inputs: np.ndarray, mask: np.ndarray | None):
    """The deterministic action of a PPO module's distribution inputs (one row per seat).

    ``Discrete``: the most likely allowed action; ``Box``: the Gaussian's mean, clipped to the
    space's bounds.
    """
    if isinstance(space, gym.spaces.Discrete):
        return masked_argmax(dist_inputs, mask)
    if isinstance(space, gym.spaces.Box):
        dim = int(np.prod(space.shape))
        mean = dist_inputs[..., :dim]
        return np.clip(mean, space.low, space.high).astype(space.dtype)
    raise TypeError(f"no greedy action for action space {space}")
