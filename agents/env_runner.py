"""The env runner of training: RLlib's ``MultiAgentEnvRunner`` with five per-step costs cut.

RLlib's multi-agent env runner (ray 2.60) spends much of its sampling time on bookkeeping that
grows with the number of exposed seats and with the length of a ``sample()`` call, not on the
policies. :class:`TwinEnvRunner` keeps its sampling loop and its results, and changes five things:

- **Step counters, once per call.** After every env step RLlib logs two env-step counters and
  four counters per agent that observed (agent steps and module steps sampled, this iteration
  and lifetime): four ``MetricsLogger.log_value`` calls per agent-step, about 40 % of RLlib's
  part of a tick with the 25 seats of the default market exposed. Here each env step adds to
  plain counters, and the totals are logged once at the end of ``sample()``. The counters are sums (``reduce="sum"`` and
  ``"lifetime_sum"`` without a window), so the reduced metrics are the same numbers.
- **Finished episodes numpy'ized once.** RLlib converts the episodes finished so far to numpy
  at the end of *every* loop iteration (``to_numpy`` of an episode already converted validates
  and walks it again), so a call's cost grows with the episodes finished in it times the steps
  after. Here the runner keeps episodes as lists while sampling and converts each returned
  episode once, at the end of ``sample()``: the same arrays.
- **No copy of the observations.** The vector env deep-copies every sub-env's observation dict
  after each step, in case the env reuses its buffers. The twin's env hands out rows of matrices
  built fresh every step (:class:`twin.observe.Observer`), so the copy is switched off.
- **Modules in eval mode for good.** RLlib's torch modules switch themselves to eval mode
  before every ``forward_exploration``/``forward_inference`` call and back to train mode after
  it: two walks over the ~24 torch submodules, dearer than the forward pass of the small
  networks. The runner's modules only act (their weights come from the learner), so
  :meth:`TwinEnvRunner.make_module` puts them in eval mode once and
  :class:`agents.modules.DictObsPPOTorchRLModule` skips the switch when it is already there.
- **Long-lived objects out of the garbage collections.** A ``sample()`` call allocates many small
  objects (episode rows, dicts, arrays), so Python's cyclic collector runs often, and its older
  generations walk the whole heap: torch, RLlib, the modules. At its first call the runner
  freezes the objects alive then (:func:`twin.env.freeze_gc_once`, once per process, as a market
  does at its first reset): the collections then skip them. With the markets in a child process
  nothing else did so in the runner's process; sampling at 8 markets of the default market got
  1.05-1.15x faster in agent-steps/s (3 alternating pairs, 2026-12-08).

With the default market's 25 seats exposed and 4 markets per runner, the first three cuts take
RLlib's part of a tick from 2.22 ms to 1.37 (counters), 1.15 (numpy once) and 1.05 ms (no copy);
with 2 seats exposed and 8 markets, from 0.32 to 0.26 ms (medians of 3 interleaved runs,
2026-12-07). The mode switches took about a fifth of the driver's sampling time with the
markets in a child process (two forward passes a tick; ``cProfile``, 2026-12-07 evening).

``tests/test_env_runner.py`` checks that the runner samples the same episodes (observations,
actions, rewards) and reports the same counters as RLlib's own runner for the same seed.

**Markets in a second process** (``train.env_process=true``, ``env_config["env_process"]``).
On 2 cores the driver samples and learns alone while the second core idles, and each tick it
waits for the markets. With the option on, the runner's markets live in a child process
(:class:`agents.env_process.MarketsProcess`) and are split into two lanes (the first and second
half of the vector): the runner sends one lane's actions to the child and, while the child steps
that lane's markets, takes in the other lane's results (episode bookkeeping, callbacks, the
env-to-module connectors) and runs its forward pass and module-to-env connectors; then the other
way round. The env's work and RLlib's overlap, and the driver waits for the env only when a lane's
markets take longer than RLlib's work on the other lane. The loop is RLlib's (the same episode
calls, callbacks, connectors and counters, per lane), with per-lane connector shared data (the
agent-to-module mapping a lane's forward pass unmaps with is the one its own env-to-module pass
stored). A call stops after the step that reaches ``num_timesteps`` and takes in the other
lane's step in flight, so a call returns at most one lane more than asked, as RLlib's vector env
returns up to ``num_envs - 1`` more.

The episodes are the same *in distribution* as in one process, not the same draws: each lane's
forward pass samples its actions apart, so the torch random stream is consumed in another order.
A run is still reproducible from its seed. ``sample(num_episodes=...)`` and random actions are
taken with one process's loop over the child's markets (``MarketsProcess.step``), after a reset.
A lane's step runs about 19 timers (the connector pipelines time each of their pieces); the
overlapped loop keeps their time deltas and pushes them to the metrics logger at the end of the
call (:class:`_BatchedTimers`: the same EMA values, at a third of the cost).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any

import torch
from ray.rllib.callbacks.utils import make_callback
from ray.rllib.core.columns import Columns
from ray.rllib.env.env_context import EnvContext
from ray.rllib.env.multi_agent_env_runner import MultiAgentEnvRunner
from ray.rllib.utils.metrics import (
    ENV_STEP_TIMER,
    ENV_TO_MODULE_CONNECTOR,
    MODULE_TO_ENV_CONNECTOR,
    NUM_AGENT_STEPS_SAMPLED,
    NUM_AGENT_STEPS_SAMPLED_LIFETIME,
    NUM_ENV_STEPS_SAMPLED,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
    NUM_EPISODES,
    NUM_EPISODES_LIFETIME,
    NUM_MODULE_STEPS_SAMPLED,
    NUM_MODULE_STEPS_SAMPLED_LIFETIME,
    RLMODULE_INFERENCE_TIMER,
    WEIGHTS_SEQ_NO,
)

from agents.env_process import MarketsProcess, env_spec
from twin.env import freeze_gc_once


class _Block:
    """A timed block of :class:`_BatchedTimers` (one per key, not re-entrant)."""

    __slots__ = ("deltas", "t0")

    def __init__(self) -> None:
        self.deltas: list[float] = []
        self.t0 = 0.0

    def __enter__(self) -> _Block:
        self.t0 = perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.deltas.append(perf_counter() - self.t0)


class _BatchedTimers:
    """The runner's ``MetricsLogger`` as the overlapped loop and its connector pipelines see it:
    ``log_time`` (with the default settings) keeps each key's time deltas, and :meth:`flush`
    pushes them to the logger's stats objects in the order measured, at the end of the
    ``sample()`` call: the same EMA values as RLlib's timed blocks, which push each delta at once
    (6 us a value instead of 17 us a timed block; a lane's step has about 19 timers: the
    connector pipelines time each of their pieces). Everything else is the logger's."""

    def __init__(self, logger) -> None:
        self._logger = logger
        self._blocks: dict[Any, _Block] = {}

    def log_time(self, key, **kwargs: Any):
        if kwargs:
            return self._logger.log_time(key, **kwargs)
        block = self._blocks.get(key)
        if block is None:
            block = self._blocks[key] = _Block()
        return block

    def __getattr__(self, name: str) -> Any:
        return getattr(self._logger, name)

    def flush(self) -> None:
        blocks, self._blocks = self._blocks, {}
        for key, block in blocks.items():
            if block.deltas:
                stats = self._logger.log_time(key)  # the stats object of a timed block
                for delta in block.deltas:
                    stats.push(delta)


@dataclass
class _Lane:
    """One half of the runner's markets in the overlapped loop: sub-envs ``lo .. hi - 1``."""

    lo: int
    hi: int
    shared: dict = field(default_factory=dict)  # the lane's connector shared data
    to_module: Any = None  # the env-to-module output its next forward pass reads
    sent: tuple | None = None  # (actions, extra model outputs) of its step in flight


class TwinEnvRunner(MultiAgentEnvRunner):
    """``MultiAgentEnvRunner`` with batched step counters, one numpy conversion per episode, no
    observation copy and its modules in eval mode for good (see the module docstring)."""

    def __init__(self, *, config, **kwargs: Any) -> None:
        self._env_steps = self._episodes = 0
        self._agent_steps: Counter = Counter()
        self._module_steps: Counter = Counter()
        super().__init__(config=config, **kwargs)
        self._timers = _BatchedTimers(self.metrics)  # the overlapped loop's timers
        #: the config's episodes_to_numpy, applied once per returned episode (see _sample)
        self._numpy_episodes = self.episodes_to_numpy
        self.episodes_to_numpy = False

    @property
    def env_process(self) -> bool:
        """True when the markets are stepped in a child process (``env_config["env_process"]``)."""
        return bool(self.config.env_config.get("env_process", False))

    def make_module(self) -> None:
        """RLlib's module, with its torch modules in eval mode for good: an env runner's module
        only acts (its weights come from the learner), and RLlib's forward calls would otherwise
        switch every submodule to eval mode and back at each call
        (:class:`agents.modules.DictObsPPOTorchRLModule`)."""
        super().make_module()
        if self.module is not None:
            self.module.foreach_module(
                lambda mid, mod: mod.eval() if isinstance(mod, torch.nn.Module) else mod
            )

    def make_env(self) -> None:
        if self.env_process:
            self._make_env_process()
            return
        super().make_env()
        if self.env is not None:
            if not hasattr(self.env, "copy"):
                raise TypeError(
                    f"TwinEnvRunner expects RLlib's SyncVectorMultiAgentEnv (with a 'copy' "
                    f"flag), got {type(self.env).__name__}"
                )
            self.env.copy = False  # the twin's observations are fresh arrays every step

    def _make_env_process(self) -> None:
        """The env of the overlapped mode: the markets in a child process, two lanes."""
        if self.env is not None:
            self.env.close()
            self.env = None
        env_ctx = self.config.env_config
        if not isinstance(env_ctx, EnvContext):
            env_ctx = EnvContext(env_ctx, worker_index=self.worker_index,
                                 num_workers=self.config.num_env_runners)  # fmt: skip
        n = self.config.num_envs_per_env_runner
        if n < 2:
            raise ValueError(
                f"env_process needs at least 2 markets per env runner (two lanes), got "
                f"num_envs_per_env_runner = {n}"
            )
        # the spaces from a local market, so that the child's start-up overlaps building the
        # modules and the learner
        local = self.config.env(env_ctx)
        spec = env_spec(local)
        local.close()
        self.env = MarketsProcess(self.config.env, env_ctx, n, spec=spec)
        self.num_envs = n
        half = (n + 1) // 2
        self._lanes = [_Lane(0, half), _Lane(half, n)]
        self._overlapped_ready = False  # the lanes hold no episodes yet
        self._needs_initial_reset = True
        make_callback(
            "on_environment_created",
            callbacks_objects=self._callbacks,
            callbacks_functions=self.config.callbacks_on_environment_created,
            kwargs=dict(
                env_runner=self,
                metrics_logger=self.metrics,
                env=self.env.unwrapped,
                env_context=env_ctx,
            ),  # fmt: skip
        )

    def _sample(self, **kwargs: Any):
        # the objects alive at the first call (torch, RLlib, the modules, the connectors: most of
        # the heap) leave the garbage collector's generations for good, once per process, as a
        # market does at its first reset in a process that steps markets (with the markets in a
        # child process, the runner's process steps none)
        freeze_gc_once()
        return self._sample_call(**kwargs)

    def _sample_call(self, **kwargs: Any):
        try:
            if self.env_process:
                overlapped = kwargs.get("num_timesteps") is not None and not kwargs.get(
                    "random_actions", False
                )
                if overlapped != self._overlapped_ready:  # the other loop's state: start afresh
                    kwargs["force_reset"] = True
                    self._overlapped_ready = overlapped
                if overlapped:
                    episodes = self._sample_overlapped(
                        num_timesteps=kwargs["num_timesteps"], explore=kwargs["explore"],
                        force_reset=kwargs.get("force_reset", False),
                    )  # fmt: skip
                else:
                    episodes = super()._sample(**kwargs)
                self.env.flush_counts()  # the episode measures still to come, in this call
            else:
                episodes = super()._sample(**kwargs)
        finally:
            self._log_step_counts()
            self._timers.flush()
        if self._numpy_episodes:
            for episode in episodes:
                episode.to_numpy()
        return episodes

    def _increase_sampled_metrics(self, num_steps, next_obs, episode):
        self._env_steps += num_steps
        self._episodes += bool(episode.is_done)
        self._agent_steps.update(next_obs.keys())
        module_for = episode.module_for
        self._module_steps.update(module_for(aid) for aid in next_obs)
        return num_steps

    def _log_step_counts(self) -> None:
        """Log the env, episode, agent and module step counts gathered since the last call (the
        keys and reductions of RLlib's per-step logging)."""
        log = self.metrics.log_value
        if self._env_steps:
            log(NUM_ENV_STEPS_SAMPLED, self._env_steps, reduce="sum")
            log(NUM_ENV_STEPS_SAMPLED_LIFETIME, self._env_steps, reduce="lifetime_sum",
                with_throughput=True)  # fmt: skip
        if self._episodes:
            log(NUM_EPISODES, self._episodes, reduce="sum")
            log(NUM_EPISODES_LIFETIME, self._episodes, reduce="lifetime_sum")
        self._env_steps = self._episodes = 0
        for aid, n in self._agent_steps.items():
            log((NUM_AGENT_STEPS_SAMPLED, str(aid)), n, reduce="sum")
            log((NUM_AGENT_STEPS_SAMPLED_LIFETIME, str(aid)), n, reduce="lifetime_sum")
        for mid, n in self._module_steps.items():
            log((NUM_MODULE_STEPS_SAMPLED, mid), n, reduce="sum")
            log((NUM_MODULE_STEPS_SAMPLED_LIFETIME, mid), n, reduce="lifetime_sum")
        self._agent_steps.clear()
        self._module_steps.clear()

    # -- the overlapped loop (env_process) -------------------------------------------------------

    def _sample_overlapped(self, *, num_timesteps: int, explore: bool, force_reset: bool):
        if force_reset or self._needs_initial_reset:
            self._reset_lanes(explore)
        by_env = self.config.count_steps_by == "env_steps"
        done: list = []
        env_ts = agent_ts = 0
        lanes = self._lanes
        for lane in lanes:
            self._send(lane, explore, env_ts)
        k = 0
        while True:
            e, a = self._take(lanes[k], explore, done)
            env_ts, agent_ts = env_ts + e, agent_ts + a
            k = 1 - k
            if (env_ts if by_env else agent_ts) >= num_timesteps:
                e, a = self._take(lanes[k], explore, done)  # the other lane's step in flight
                env_ts, agent_ts = env_ts + e, agent_ts + a
                break
            self._send(lanes[1 - k], explore, env_ts)
        return self._finish_call(done)

    def _reset_lanes(self, explore: bool) -> None:
        """RLlib's reset of every sub-env and episode, with per-lane connector passes."""
        n = self.num_envs
        episodes = self._ongoing_episodes = [None] * n
        self._shared_data = {}
        for i in range(n):
            self._new_episode(i, episodes)
        self._ongoing_episodes_for_metrics.clear()
        obs, infos = self.env.reset(seed=self._seed if self._needs_initial_reset else None)
        for i in range(n):
            episodes[i].add_env_reset(observations=obs[i], infos=infos[i])
        for lane in self._lanes:
            lane.shared, lane.sent = {}, None
            lane.to_module = self._env_to_module(
                rl_module=self.module, episodes=episodes[lane.lo:lane.hi], explore=explore,
                shared_data=lane.shared, metrics=self._timers,
                metrics_prefix_key=(ENV_TO_MODULE_CONNECTOR,),
                **{Columns.OBS: obs[lane.lo:lane.hi], Columns.INFOS: infos[lane.lo:lane.hi]},
            )  # fmt: skip
        for i in range(n):
            self._make_on_episode_callback("on_episode_start", i, episodes)
        self._needs_initial_reset = False

    def _send(self, lane: _Lane, explore: bool, env_ts: int) -> None:
        """Forward pass and module-to-env connectors of ``lane``; send its actions to the child."""
        episodes = self._ongoing_episodes[lane.lo : lane.hi]
        to_module, lane.to_module = lane.to_module, None
        if to_module:
            if explore:
                runners = self.config.num_env_runners or 1
                t = (self.num_env_steps_sampled_lifetime // runners + env_ts) * runners
                with self._timers.log_time(RLMODULE_INFERENCE_TIMER):
                    to_env = self.module.forward_exploration(to_module, t=t)
            else:
                with self._timers.log_time(RLMODULE_INFERENCE_TIMER):
                    to_env = self.module.forward_inference(to_module)
            to_env = self._module_to_env(
                rl_module=self.module, batch=to_env, episodes=episodes, explore=explore,
                shared_data=lane.shared, metrics=self._timers,
                metrics_prefix_key=(MODULE_TO_ENV_CONNECTOR,),
            )  # fmt: skip
        else:
            to_env = {}
        lane.shared["vector_env_episodes_map"] = {}
        actions = to_env.pop(Columns.ACTIONS, [{} for _ in episodes])
        actions_for_env = to_env.pop(Columns.ACTIONS_FOR_ENV, actions)
        self.env.step_async(lane.lo, list(actions_for_env))
        lane.sent = (actions, to_env)

    def _take(self, lane: _Lane, explore: bool, done: list) -> tuple[int, int]:
        """Wait for ``lane``'s step; add it to the episodes (RLlib's bookkeeping and callbacks),
        collect finished episodes into ``done`` and run the env-to-module connectors for the
        lane's next forward pass. Returns the env steps and agent steps taken in."""
        with self._timers.log_time(ENV_STEP_TIMER):
            obs, rewards, terms, truncs, infos = self.env.step_wait()
        actions, to_env = lane.sent
        lane.sent = None
        episodes = self._ongoing_episodes
        env_ts = agent_ts = 0
        started = set()
        for j in range(lane.hi - lane.lo):
            i = lane.lo + j
            episode = episodes[i]
            if not episode.is_reset:
                episode.add_env_reset(observations=obs[j], infos=infos[j])
                started.add(i)
                continue
            extra: defaultdict = defaultdict(dict)
            for col, per_env in to_env.items():
                for aid, val in per_env[j].items():
                    extra[aid][col] = val
                    extra[aid][WEIGHTS_SEQ_NO] = self._weights_seq_no
            episode.add_env_step(
                observations=obs[j], actions=actions[j], rewards=rewards[j], infos=infos[j],
                terminateds=terms[j], truncateds=truncs[j], extra_model_outputs=dict(extra),
            )  # fmt: skip
            env_ts += self._increase_sampled_metrics(1, obs[j], episode)
            agent_ts += len(obs[j])
        if env_ts:
            self._log_env_steps(metric=self._metrics_num_env_steps_sampled, num_steps=env_ts)
        finished = []
        for i in range(lane.lo, lane.hi):
            which = "on_episode_start" if i in started else "on_episode_step"
            self._make_on_episode_callback(which, i, episodes)
            if episodes[i].is_done:
                self._make_on_episode_callback("on_episode_end", i, episodes)
                self._prune_zero_len_sa_episodes(episodes[i])
                done.append(episodes[i])
                finished.append(episodes[i])
                old_id = episodes[i].id_
                self._new_episode(i, episodes)
                lane.shared["vector_env_episodes_map"][old_id] = episodes[i].id_
        data = {Columns.OBS: obs, Columns.ACTIONS: actions, Columns.REWARDS: rewards,
                Columns.INFOS: infos, Columns.TERMINATEDS: terms, Columns.TRUNCATEDS: truncs}  # fmt: skip
        if finished:  # a last connector pass over the finished episodes (as RLlib's loop)
            self._env_to_module(batch={}, episodes=finished, explore=explore,
                                rl_module=self.module, shared_data=lane.shared, metrics=None,
                                **data)  # fmt: skip
        lane.to_module = self._env_to_module(
            episodes=episodes[lane.lo:lane.hi], batch={}, explore=explore, rl_module=self.module,
            shared_data=lane.shared, metrics=self._timers,
            metrics_prefix_key=(ENV_TO_MODULE_CONNECTOR,), **data,
        )  # fmt: skip
        return env_ts, agent_ts

    def _finish_call(self, done: list) -> list:
        """RLlib's end of a ``num_timesteps`` call: finished episodes, then the chunks of the
        ongoing ones (cut, to continue in the next call)."""
        self._done_episodes_for_metrics.extend(done)
        continuations = [
            e.cut(len_lookback_buffer=self.config.episode_lookback_horizon)
            for e in self._ongoing_episodes
        ]
        ongoing = []
        for e in self._ongoing_episodes:
            if e.env_t == 0:
                continue
            e.validate()
            self._ongoing_episodes_for_metrics[e.id_].append(e)
            self._prune_zero_len_sa_episodes(e)
            ongoing.append(e)
        self._ongoing_episodes = continuations
        return done + ongoing
