"""The training's env runner (:class:`agents.env_runner.TwinEnvRunner`) samples what RLlib's own
``MultiAgentEnvRunner`` samples: the same episodes, value for value, and the same step counters,
on one shared local Ray."""

from __future__ import annotations

import numpy as np
import pytest
from ray.rllib.env.multi_agent_env_runner import MultiAgentEnvRunner
from ray.rllib.utils.metrics import (
    NUM_AGENT_STEPS_SAMPLED,
    NUM_AGENT_STEPS_SAMPLED_LIFETIME,
    NUM_ENV_STEPS_SAMPLED,
    NUM_EPISODES,
    NUM_MODULE_STEPS_SAMPLED,
    NUM_MODULE_STEPS_SAMPLED_LIFETIME,
)

import twin
from agents.env_runner import TwinEnvRunner
from agents.schema import RayConfig
from agents.train import build_algorithm, ray_session

pytestmark = pytest.mark.slow

# every seat exposed (scripted ones as never-trained modules), 2 markets per runner, episodes
# of 30 ticks (30-80 steps with the closing ticks): two samples of 150 env steps finish a few
# episodes in the middle of a call (3-4, by the process's hash seed) and leave two cut each
MARKET = (
    "market.n_job_creators=4",
    "market.n_resource_providers=5",
    "market.n_mediators=2",
    "market.episode_ticks=30",
    "policies.rp.learning_share=0.4",
    "train=smoke",
    "train.scripted_seats=modules",
    "train.num_envs_per_env_runner=2",
    "train.rollout_fragment_length=0",
    "train.env_process=false",  # one process's loop: RLlib's draws (tests/test_env_process.py)
)

COUNTERS = (NUM_AGENT_STEPS_SAMPLED, NUM_AGENT_STEPS_SAMPLED_LIFETIME, NUM_MODULE_STEPS_SAMPLED,
            NUM_MODULE_STEPS_SAMPLED_LIFETIME, NUM_ENV_STEPS_SAMPLED, NUM_EPISODES)  # fmt: skip


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    """Two ``sample()`` calls of each runner, built from the same config and seed."""
    out = {}
    with ray_session(RayConfig(), tmp_path_factory.mktemp("ray")):
        for cls in (MultiAgentEnvRunner, TwinEnvRunner):
            algo = build_algorithm(
                twin.compose(list(MARKET)), tmp_path_factory.mktemp("run"), env_runner_cls=cls
            )
            try:
                er = algo.env_runner
                assert type(er) is cls
                calls = [er.sample(num_timesteps=150, random_actions=False) for _ in range(2)]
                counters = {k: er.metrics.peek(k) for k in COUNTERS}  # reduced values
                out[cls.__name__] = (calls, counters, er)
            finally:
                algo.stop()
    return out


def test_the_default_training_samples_with_the_twin_runner():
    from agents.config_builder import build_algo_config

    assert build_algo_config(twin.compose(list(MARKET))).env_runner_cls is TwinEnvRunner


def test_same_episodes_as_rllibs_runner(samples):
    """Every returned episode chunk (finished or cut) holds the same agents, observations,
    actions, rewards and flags, already as numpy arrays."""
    ref, _, _ = samples["MultiAgentEnvRunner"]
    new, _, _ = samples["TwinEnvRunner"]
    finished = 0
    for ref_call, new_call in zip(ref, new, strict=True):
        assert len(ref_call) == len(new_call)
        for a, b in zip(ref_call, new_call, strict=True):
            assert b.is_numpy and a.is_numpy
            assert (a.env_t_started, a.env_t, a.is_done) == (b.env_t_started, b.env_t, b.is_done)
            finished += b.is_done
            assert sorted(a.agent_episodes) == sorted(b.agent_episodes)
            for aid, sa in a.agent_episodes.items():
                sb = b.agent_episodes[aid]
                for get in ("get_observations", "get_actions", "get_rewards"):
                    x, y = getattr(sa, get)(), getattr(sb, get)()
                    if isinstance(x, dict):
                        assert x.keys() == y.keys()
                        for k in x:
                            np.testing.assert_array_equal(x[k], y[k], err_msg=f"{aid} {get} {k}")
                    else:
                        np.testing.assert_array_equal(x, y, err_msg=f"{aid} {get}")
                assert (sa.is_terminated, sa.is_truncated) == (sb.is_terminated, sb.is_truncated)
    assert finished >= 2, finished  # the case the runner changes: episodes finished inside a call


def test_same_step_counters_as_rllibs_runner(samples):
    """The per-agent and per-module step counters (logged once per call here, once per step
    by RLlib) reduce to the same numbers, and they count every agent-step sampled."""
    _, ref, _ = samples["MultiAgentEnvRunner"]
    calls, new, _ = samples["TwinEnvRunner"]
    assert new == ref
    # nothing reduced the counters since the first call: they add up to both calls'
    # agent-steps, and the lifetime counters equal them
    steps = sum(e.agent_steps() for call in calls for e in call)
    assert sum(new[NUM_AGENT_STEPS_SAMPLED].values()) == steps
    assert sum(new[NUM_MODULE_STEPS_SAMPLED].values()) == steps
    assert new[NUM_AGENT_STEPS_SAMPLED_LIFETIME] == new[NUM_AGENT_STEPS_SAMPLED]
    assert len(new[NUM_AGENT_STEPS_SAMPLED]) == 4 + 5 + 2  # every seat
    assert {"rp", "rp_scripted", "jc_scripted", "mediator_scripted"} <= set(
        new[NUM_MODULE_STEPS_SAMPLED]
    )


def test_the_vector_env_does_not_copy_observations(samples):
    assert samples["TwinEnvRunner"][2].env.copy is False
    assert samples["MultiAgentEnvRunner"][2].env.copy is True


def test_the_runners_modules_act_in_eval_mode(samples, monkeypatch):
    """TwinEnvRunner puts its torch modules in eval mode once, and their forward passes then
    switch no mode (RLlib's runner leaves its modules in train mode, and RLlib's forward calls
    switch every submodule to eval mode and back each time); the actions are the same
    (test_same_episodes_as_rllibs_runner)."""
    import torch
    from ray.rllib.core.columns import Columns

    def torch_modules(er):
        return {mid: m for mid, m in er.module.items() if isinstance(m, torch.nn.Module)}

    mine = torch_modules(samples["TwinEnvRunner"][2])
    theirs = torch_modules(samples["MultiAgentEnvRunner"][2])
    assert mine and mine.keys() == theirs.keys()
    assert not any(sub.training for m in mine.values() for sub in m.modules())
    assert all(m.training for m in theirs.values())
    switches: list = []
    original = torch.nn.Module.train
    monkeypatch.setattr(
        torch.nn.Module,
        "train",
        lambda self, mode=True: switches.append(mode) or original(self, mode),
    )
    for mid, m in mine.items():
        obs = m.observation_space.sample()
        batch = {Columns.OBS: {k: torch.as_tensor(v[None]) for k, v in obs.items()}}
        torch.manual_seed(0)
        out = m.forward_exploration(batch)
        assert not switches, mid
        torch.manual_seed(0)
        ref = theirs[mid].forward_exploration(batch)  # switches to eval mode and back
        # every submodule to eval mode, then back to train mode (about 20 calls each way)
        assert switches[0] is False and switches[-1] is True and len(switches) > 2, mid
        switches.clear()
        torch.testing.assert_close(
            out[Columns.ACTION_DIST_INPUTS], ref[Columns.ACTION_DIST_INPUTS], rtol=0, atol=0
        )


def test_batched_timers_push_what_timed_blocks_push(monkeypatch):
    """The overlapped loop's timers (agents.env_runner._BatchedTimers) keep each key's time
    deltas and push them at the end of the call: with a clock that advances by known steps, the
    logger holds the EMA values that RLlib's own timed blocks give (deltas 1, 2, 4 s under one key
    and 8 s under another, interleaved); the other methods are the logger's."""
    import types

    from ray.rllib.utils.metrics.metrics_logger import MetricsLogger
    from ray.rllib.utils.metrics.stats import base

    import agents.env_runner as er_mod

    now = [0.0]
    fake_time = types.SimpleNamespace(perf_counter=lambda: now[0])
    monkeypatch.setattr(base, "time", fake_time)  # RLlib's timed blocks
    monkeypatch.setattr(er_mod, "perf_counter", fake_time.perf_counter)  # the batched ones
    ref, logger = MetricsLogger(), MetricsLogger()
    batched = er_mod._BatchedTimers(logger)
    steps = [("a", 1.0), ("b", 8.0), ("a", 2.0), ("a", 4.0)]
    for key, dt in steps:
        with ref.log_time(("t", key)):
            now[0] += dt
        with batched.log_time(("t", key)):
            now[0] += dt
    assert not logger.stats  # nothing logged before the flush
    batched.flush()
    batched.log_value("n", 3, reduce="sum")  # forwarded to the logger
    for key in ("a", "b"):
        assert logger.peek(("t", key)) == ref.peek(("t", key)), key
    # RLlib's EMA (coefficient 0.01): 1, then 0.99 * 1 + 0.01 * 2, then 0.99 * that + 0.01 * 4
    assert logger.peek(("t", "a")) == pytest.approx(0.99 * (0.99 + 0.02) + 0.04)
    assert logger.peek(("t", "b")) == 8.0 and logger.peek("n") == 3


def test_the_first_sample_call_freezes_the_objects_alive_then(monkeypatch):
    """The runner's first ``sample()`` call moves the objects alive then (torch, RLlib, the
    modules) out of the garbage collector's generations, once per process
    (:func:`twin.env.freeze_gc_once`): with the markets in a child process, no market reset in
    the runner's process does it."""
    import gc

    import twin.env

    class Runner:  # stands in for TwinEnvRunner: only its loop is replaced
        def _sample_call(self, **kwargs):
            return kwargs

    monkeypatch.setattr(twin.env, "_gc_frozen", False)  # as in a process that stepped no market
    assert TwinEnvRunner._sample(Runner(), num_timesteps=5) == {"num_timesteps": 5}
    assert twin.env._gc_frozen and gc.get_freeze_count() > 0
