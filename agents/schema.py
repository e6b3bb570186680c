"""Typed schema of the ``train`` config group (``configs/train/``): budgets, PPO knobs, seats.

:class:`TrainConfig` is the ``train`` field of :class:`twin.config.TwinConfig`, so every
training knob is composed, type-checked and range-checked with the rest of the config (a typo
fails at load naming the key; :func:`twin.config.validate` checks the ranges and choices declared
here in each field's metadata). This module imports only the standard library: the simulator
core may import it without pulling in ray or torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

ALGORITHMS = ("PPO",)
POLICY_MAPPINGS = ("shared_per_role", "per_agent")
SCRIPTED_SEATS = ("env", "modules")


def _knob(default: Any = dataclasses.MISSING, doc: str = "", *, lo=None, hi=None, choices=None,
          factory=None):  # fmt: skip
    """A field with the metadata read by :func:`twin.config.validate` (doc, range, choices)."""
    meta = {"doc": doc, "lo": lo, "hi": hi, "choices": choices}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class RayConfig:
    """Where the training runs."""

    address: str = _knob(
        "",
        "'' starts a lean local Ray inside the run directory; 'auto', 'host:port' or "
        "'ray://host:10001' runs the same training on an existing cluster",
    )
    num_cpus: int = _knob(2, "CPUs of the local Ray (ignored with an address)", lo=1, hi=4096)
    object_store_mb: int = _knob(
        128, "object store of the local Ray, MiB (ignored with an address)", lo=80, hi=1 << 20
    )


@dataclass
class TrainConfig:
    """One training run: algorithm, budget, checkpoints, PPO hyper-parameters, seat layout."""

    algorithm: str = _knob("PPO", "RLlib algorithm (new API stack)", choices=ALGORITHMS)
    iterations: int = _knob(15, "training iterations of the run", lo=1, hi=10**7)
    checkpoint_every_iters: int = _knob(
        5, "save a checkpoint every this many iterations (and always at the end)", lo=1, hi=10**7
    )
    keep_checkpoints: int = _knob(
        3, "checkpoints kept in the run directory (oldest deleted first)", lo=1, hi=10**6
    )
    lr: float = _knob(3e-4, "learning rate of every learning policy", lo=0.0, hi=1.0)
    gamma: float = _knob(0.99, "discount per tick", lo=0.0, hi=1.0)
    gae_lambda: float = _knob(0.95, "GAE lambda", lo=0.0, hi=1.0)
    entropy_coeff: float = _knob(0.01, "entropy bonus coefficient", lo=0.0, hi=10.0)
    clip_param: float = _knob(0.2, "PPO clip parameter", lo=0.0, hi=10.0)
    train_batch_size: int = _knob(
        2000, "env steps (ticks) sampled per iteration (RLlib train_batch_size_per_learner)",
        lo=1, hi=10**9,
    )  # fmt: skip
    minibatch_size: int = _knob(256, "agent steps per SGD minibatch", lo=1, hi=10**9)
    num_epochs: int = _knob(5, "SGD passes over each training batch", lo=1, hi=1000)
    rollout_fragment_length: int = _knob(
        250,
        "env steps each vectorised env samples per env-runner call (0: auto = train_batch_size "
        "/ (env runners x num_envs_per_env_runner)); train_batch_size must be a multiple of "
        "env runners x num_envs_per_env_runner x this",
        lo=0, hi=10**7,
    )  # fmt: skip
    num_envs_per_env_runner: int = _knob(
        8, "markets stepped side by side by each env runner (vectorised)", lo=1, hi=1024
    )
    num_env_runners: int = _knob(
        0, "remote env runner actors (0: sample in the driver, best on 2 cores)", lo=0, hi=4096
    )
    env_process: bool = _knob(
        True,
        "step each env runner's markets in a child process, two lanes of markets overlapping "
        "RLlib's work (agents/env_runner.py): 1.1-1.5x the sampling throughput when few seats "
        "per market are exposed (when the machine's second core is free). Used only with num_envs_per_env_runner >= 2 and "
        "scripted_seats=env (with every seat exposed RLlib's per-seat work dominates and two "
        "lanes cost more than they save); sweeps switch it off when a trial has under 2 CPUs",
    )
    hidden_sizes: list[int] = _knob(
        doc="hidden layer sizes of the policy and value networks", factory=lambda: [64, 64]
    )
    seed: int = _knob(-1, "seed of RLlib and the episodes (-1: the root seed)", lo=-1, hi=2**31 - 1)
    policy_mapping: str = _knob(
        "shared_per_role",
        "shared_per_role: one learning policy per role (rp, jc, mediator); per_agent: one "
        "learning policy per learning seat (rp_0, rp_1, ...)",
        choices=POLICY_MAPPINGS,
    )
    scripted_seats: str = _knob(
        "env",
        "where the scripted (non-learning) seats act: env = inside the env (env.expose=learning, "
        "fastest); modules = as RLlib agents driven by never-trained scripted RLModules "
        "(env.expose=all); training sets env.expose from this",
        choices=SCRIPTED_SEATS,
    )
    client_value_multiple: float = _knob(
        1.5,
        "value to its client of a correct result, as a multiple of its honest price (base "
        "instruction price x true work units); client surplus = JC payoff + that value",
        lo=0.0, hi=1e6,
    )  # fmt: skip
    resume: bool = _knob(
        False,
        "continue a killed run from its last checkpoint: the run in hydra.run.dir if it has "
        "checkpoints, else the newest run of the same run.name",
    )
    ray: RayConfig = field(default_factory=RayConfig)


@dataclass
class EvalConfig:
    """``twin-eval``: greedy episodes of a trained checkpoint in the twin (configs/eval.yaml)."""

    checkpoint: str = _knob(
        "", "a checkpoint dir (<run>/checkpoints/iter_<n>) or a run dir (its newest checkpoint)"
    )
    episodes: int = _knob(4, "episodes to run", lo=1, hi=10**6)
    seed: int = _knob(
        1_000_000, "episode e is seeded with seed + e (apart from training's)", lo=0, hi=2**31 - 1
    )
    record: bool = _knob(True, "write the episode record (episodes.jsonl)")
    overrides: list[str] = _knob(
        doc="twin config overrides applied to the checkpoint's config, e.g. "
        "['pricing.results_collateral_multiple=8'] (the seats must stay the same)",
        factory=list,
    )
    name: str = _knob("eval", "name of the run (output directory outputs/<name>/<time>)")
