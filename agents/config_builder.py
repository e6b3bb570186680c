"""The one pure config builder: a validated :class:`~twin.config.TwinConfig` -> RLlib config.

:func:`build_algo_config` returns the ``AlgorithmConfig`` of a training run (PPO on the new API
stack by default) and touches nothing outside it: no Ray, no registry, no files. It wires

- the env: :class:`agents.env.TwinMultiAgentEnv` (passed as a class, so there is no registry to
  fill), exposing the learning seats only (``train.scripted_seats=env``: scripted seats act
  inside the env) or every seat (``train.scripted_seats=modules``);
- the policies: :func:`seat_layout` names one policy per seat; :func:`policy_mapping_fn` is the
  named mapping RLlib calls (bound to the layout with ``functools.partial``);
- the RLModules: a :class:`~agents.modules.MaskedPPOTorchRLModule` per learning policy with a
  ``Discrete`` action (a :class:`~agents.modules.DictObsPPOTorchRLModule` for the JC's
  probability action), and a never-trained :class:`~agents.modules.ScriptedRLModule` per group
  with scripted seats exposed to RLlib, left out of ``policies_to_train``; a layout may also name
  *frozen* policies (trained modules of an earlier run playing, never trained, beside fresh
  learners: the best-response runs of :mod:`agents.exploit`), whose specs the caller passes;
- the env runner :class:`agents.env_runner.TwinEnvRunner` (RLlib's multi-agent runner with its
  per-step bookkeeping cut);
- the callback :class:`agents.callbacks.MarketMetricsCallback` (market measures per episode).

Policy ids: learning seats map to their role (``rp``, ``jc``, ``mediator``) with
``train.policy_mapping=shared_per_role`` or to their own name (``rp_0``, ...) with ``per_agent``;
scripted seats map to ``<role>_scripted``. :func:`build_algo_config` takes an explicit layout,
frozen module specs and an env class (a subclass of the adapter) for callers that place the
seats themselves; by default it derives the layout from the config as above.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec
from ray.rllib.core.rl_module.rl_module import RLModuleSpec

from agents.baselines import REGISTRY
from agents.callbacks import MarketMetricsCallback
from agents.env import TwinMultiAgentEnv
from agents.env_runner import TwinEnvRunner
from agents.modules import DictObsPPOTorchRLModule, MaskedPPOTorchRLModule, ScriptedRLModule
from twin.config import ConfigError, TwinConfig
from twin.configuration import to_config
from twin.env import GROUPS, MarketEnv

ALGORITHM_CONFIGS: dict[str, type[AlgorithmConfig]] = {"PPO": PPOConfig}
SCRIPTED_SUFFIX = "_scripted"


@dataclass(frozen=True)
class SeatLayout:
    """Which policy every exposed seat plays: the input of :func:`policy_mapping_fn`."""

    policy_of: tuple[tuple[str, str], ...]  # (agent id, policy id), in env order
    learning: tuple[str, ...]  # policy ids that are trained
    scripted: tuple[str, ...]  # policy ids of never-trained scripted modules
    #: policy ids of frozen (trained elsewhere, never trained here) modules; their RLModuleSpecs
    #: are given to :func:`module_specs` / :func:`build_algo_config` by the caller
    frozen: tuple[str, ...] = ()

    def mapping(self) -> dict[str, str]:
        return dict(self.policy_of)

    @property
    def policies(self) -> tuple[str, ...]:
        return self.learning + self.scripted + self.frozen


def group_of(agent_or_policy: str) -> str:
    """The role of an agent id (``rp_3``) or policy id (``rp``, ``rp_3``, ``rp_scripted``)."""
    for g in GROUPS:
        if agent_or_policy == g or agent_or_policy.startswith(g + "_"):
            return g
    raise ValueError(f"{agent_or_policy!r} names no role; roles: {list(GROUPS)}")


def training_env_config(cfg: TwinConfig) -> TwinConfig:
    """``cfg`` with ``env.expose`` set from ``train.scripted_seats`` (the env training runs)."""
    out = copy.deepcopy(cfg)
    out.env.expose = "all" if cfg.train.scripted_seats == "modules" else "learning"
    return out


def seat_layout(cfg: TwinConfig) -> SeatLayout:
    """Policy of every exposed seat of the training env of ``cfg``."""
    env = MarketEnv(training_env_config(cfg))
    shared = cfg.train.policy_mapping == "shared_per_role"
    pairs: list[tuple[str, str]] = []
    learning: dict[str, None] = {}  # insertion-ordered sets of policy ids
    scripted: dict[str, None] = {}
    for g in GROUPS:
        learn = {f"{g}_{r}" for r in env.learning_rows[g]}
        for agent in env.names[g]:
            if agent in learn:
                pid = g if shared else agent
                learning[pid] = None
            else:
                pid = g + SCRIPTED_SUFFIX
                scripted[pid] = None
            pairs.append((agent, pid))
    if not learning:
        raise ConfigError(
            "no learning seats: set policies.<group>.learning_share > 0 for at least one of "
            f"{list(GROUPS)} (e.g. policies.rp.learning_share=0.2)"
        )
    return SeatLayout(tuple(pairs), tuple(learning), tuple(scripted))


def policy_mapping_fn(agent_id: str, episode=None, *, layout: SeatLayout, **kwargs) -> str:
    """RLlib's agent -> policy mapping: the policy :func:`seat_layout` gave the seat."""
    for agent, pid in layout.policy_of:
        if agent == agent_id:
            return pid
    raise KeyError(f"agent {agent_id!r} is not a seat of this training env")


def train_seed(cfg: TwinConfig) -> int:
    return cfg.seed % (2**31 - 1) if cfg.train.seed < 0 else cfg.train.seed


def module_specs(cfg: TwinConfig, layout: SeatLayout,
                 frozen_specs: Mapping[str, RLModuleSpec] | None = None
                 ) -> dict[str, RLModuleSpec]:  # fmt: skip
    """One RLModuleSpec per policy id of ``layout``; ``frozen_specs`` holds those of
    ``layout.frozen`` (e.g. ``RLModuleSpec.from_module`` of a checkpoint's module)."""
    frozen_specs = dict(frozen_specs or {})
    missing = [pid for pid in layout.frozen if pid not in frozen_specs]
    if missing:
        raise ValueError(f"frozen policies {missing} have no RLModuleSpec in frozen_specs")
    t = cfg.train
    if not t.hidden_sizes or any(h < 1 for h in t.hidden_sizes):
        raise ConfigError(f"train.hidden_sizes must be positive sizes, got {t.hidden_sizes}")
    env = MarketEnv(training_env_config(cfg))
    agent_of = {pid: agent for agent, pid in reversed(layout.policy_of)}
    model = DefaultModelConfig(fcnet_hiddens=list(t.hidden_sizes), fcnet_activation="tanh",
                               vf_share_layers=False)  # fmt: skip
    ctx = dataclasses.asdict(env.ctx)
    specs = {}
    for pid in layout.policies:
        if pid in layout.frozen:
            specs[pid] = frozen_specs[pid]
            continue
        agent = agent_of[pid]
        obs_space, act_space = env.observation_space(agent), env.action_space(agent)
        if pid in layout.learning:
            cls = (
                MaskedPPOTorchRLModule
                if isinstance(act_space, gym.spaces.Discrete)
                else DictObsPPOTorchRLModule
            )
            specs[pid] = RLModuleSpec(module_class=cls, observation_space=obs_space,
                                      action_space=act_space, model_config=model)  # fmt: skip
        else:
            g = group_of(pid)
            gc = getattr(cfg.policies, g)
            params = {k: getattr(gc, k) for k in REGISTRY[g][gc.policy][1]}
            mc = {"group": g, "policy": gc.policy, "params": params, "ctx": ctx,
                  "seed": train_seed(cfg) + 7919 * (1 + GROUPS.index(g))}  # fmt: skip
            specs[pid] = RLModuleSpec(module_class=ScriptedRLModule, observation_space=obs_space,
                                      action_space=act_space, model_config=mc)  # fmt: skip
    return specs


def uses_env_process(cfg: TwinConfig) -> bool:
    """Whether the env runners step their markets in a child process: ``train.env_process``, with
    two markets or more per runner (two lanes) and the scripted seats inside the env (few seats
    exposed; with every seat exposed the two lanes' extra RLlib work outweighs the overlap:
    16 800 against 21 000 agent-steps/s in ``bench_train``, default market, 8 markets)."""
    t = cfg.train
    return t.env_process and t.num_envs_per_env_runner >= 2 and t.scripted_seats == "env"


def check_batch_sizes(cfg: TwinConfig) -> None:
    """Fail at build, naming the fields, when RLlib could not assemble the training batch."""
    t = cfg.train
    per_call = max(1, t.num_env_runners) * t.num_envs_per_env_runner
    if t.rollout_fragment_length:
        per_call *= t.rollout_fragment_length
        k = max(1, round(t.train_batch_size / per_call))
        if abs(k * per_call - t.train_batch_size) > 0.1 * t.train_batch_size:
            raise ConfigError(
                f"train.train_batch_size = {t.train_batch_size} must be (within 10 %) a multiple "
                f"of max(1, train.num_env_runners) x train.num_envs_per_env_runner x "
                f"train.rollout_fragment_length = {per_call}; set train.rollout_fragment_length=0 "
                "(auto) or adjust one of them"
            )
    elif t.train_batch_size < per_call:
        raise ConfigError(
            f"train.train_batch_size = {t.train_batch_size} is smaller than one step of each of "
            f"the {per_call} envs (env runners x train.num_envs_per_env_runner)"
        )


def build_algo_config(cfg: TwinConfig, *, layout: SeatLayout | None = None,
                      frozen_specs: Mapping[str, RLModuleSpec] | None = None,
                      env: type[TwinMultiAgentEnv] = TwinMultiAgentEnv,
                      env_config: Mapping[str, Any] | None = None) -> AlgorithmConfig:  # fmt: skip
    """The RLlib ``AlgorithmConfig`` of the training run described by ``cfg`` (pure).

    ``layout`` (default :func:`seat_layout` of ``cfg``) places the exposed seats; its frozen
    policies take their RLModuleSpecs from ``frozen_specs`` and are left out of
    ``policies_to_train`` like the scripted ones. ``env`` (the adapter or a subclass) receives
    ``env_config`` merged into the adapter's own entries.
    """
    cfg = to_config(cfg)
    t = cfg.train
    if t.algorithm not in ALGORITHM_CONFIGS:
        raise ConfigError(
            f"train.algorithm = {t.algorithm!r}; allowed: {sorted(ALGORITHM_CONFIGS)}"
        )
    check_batch_sizes(cfg)
    layout = layout if layout is not None else seat_layout(cfg)
    seed = train_seed(cfg)
    env_cfg = training_env_config(cfg)
    config = (
        ALGORITHM_CONFIGS[t.algorithm]()
        .framework("torch")
        .environment(
            env=env,
            env_config={
                **dict(env_config or {}),
                "twin": env_cfg,
                "expose": env_cfg.env.expose,
                "seed": seed,
                "env_process": uses_env_process(cfg),
            },
            normalize_actions=False,  # the JC's Box(0, 1) probability is used as is (env clips)
            clip_actions=False,
            disable_env_checking=True,  # the env passes PettingZoo's API test (tests/test_env.py)
        )
        .env_runners(
            num_env_runners=t.num_env_runners,
            num_envs_per_env_runner=t.num_envs_per_env_runner,
            rollout_fragment_length=t.rollout_fragment_length or "auto",
            batch_mode="truncate_episodes",
            num_cpus_per_env_runner=1,
            env_runner_cls=TwinEnvRunner,
        )
        .learners(num_learners=0)
        .training(
            lr=t.lr,
            gamma=t.gamma,
            lambda_=t.gae_lambda,
            entropy_coeff=t.entropy_coeff,
            clip_param=t.clip_param,
            train_batch_size_per_learner=t.train_batch_size,
            minibatch_size=t.minibatch_size,
            num_epochs=t.num_epochs,
        )
        .multi_agent(
            policies=set(layout.policies),
            policy_mapping_fn=functools.partial(policy_mapping_fn, layout=layout),
            policies_to_train=list(layout.learning),
        )
        .rl_module(
            rl_module_spec=MultiRLModuleSpec(
                rl_module_specs=module_specs(cfg, layout, frozen_specs)
            )
        )
        .callbacks(MarketMetricsCallback)
        .debugging(seed=seed, log_level="ERROR")
    )
    return config
