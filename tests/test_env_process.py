"""The markets in a child process (``train.env_process``): :class:`agents.env_process.MarketsProcess`
steps exactly as RLlib's in-process vector env, and :class:`agents.env_runner.TwinEnvRunner`'s
overlapped loop records exactly the episodes of the in-process loop when actions are greedy."""

from __future__ import annotations

import os
import pickle
import signal
import time

import numpy as np
import pytest
from ray.rllib.env.vector.sync_vector_multi_agent_env import SyncVectorMultiAgentEnv
from ray.rllib.utils.metrics import (
    CONNECTOR_TIMERS,
    ENV_STEP_TIMER,
    ENV_TO_MODULE_CONNECTOR,
    MODULE_TO_ENV_CONNECTOR,
    RLMODULE_INFERENCE_TIMER,
    TIMERS,
)

import twin
from agents.callbacks import METRICS_KEY
from agents.env import TwinMultiAgentEnv
from agents.env_process import EnvProcessError, MarketsProcess, env_spec, pack, unpack
from agents.schema import RayConfig
from agents.train import build_algorithm, ray_session

# a small market: 2 learning RPs exposed (the other seats scripted inside the env); episodes of
# 20 ticks plus the closing ticks (20-60 steps)
SMALL = (
    "market.n_job_creators=3",
    "market.n_resource_providers=4",
    "market.n_mediators=2",
    "market.episode_ticks=20",
    "policies.rp.learning_share=0.5",
)


def _ctx(seed: int = 11) -> dict:
    cfg = twin.compose(list(SMALL))
    return {"twin": cfg, "expose": cfg.env.expose, "seed": seed}


def _assert_same(a, b, what: str) -> None:
    """Equal nested results of a vector env step (lists of per-agent dicts of arrays/scalars)."""
    assert len(a) == len(b), what
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        assert x.keys() == y.keys(), f"{what}[{i}]"
        for k in x:
            u, v = x[k], y[k]
            if isinstance(u, dict):
                assert u.keys() == v.keys(), f"{what}[{i}][{k}]"
                for kk in u:
                    np.testing.assert_array_equal(u[kk], v[kk], err_msg=f"{what}[{i}][{k}][{kk}]")
            else:
                assert u == v, f"{what}[{i}][{k}]: {u} != {v}"


def test_pack_round_trip():
    """:func:`pack` -> pickle -> :func:`unpack` gives equal observation dicts with the same
    dtypes, shapes and agents per sub-env, as writable arrays; an agent's arrays of one layout
    cross as one byte string, anything else as it is."""
    rng = np.random.default_rng(3)

    def dict_obs():
        return {
            "observation": rng.random(5, np.float32),
            "action_mask": rng.integers(0, 2, 4, np.int8),
        }

    observations = [
        {"rp_0": dict_obs(), "rp_1": dict_obs(), "jc_0": rng.random((2, 3))},  # a 2-D array too
        {"rp_1": dict_obs(), "jc_0": rng.random((2, 3))},  # another set of agents
        {"rp_0": dict_obs(), "rp_1": {"observation": rng.random(5, np.float32)}, "jc_0": rng.random((2, 3)),
         "mediator_0": 7},  # rp_1's fields differ here; mediator_0 is no array
    ]  # fmt: skip
    strided = np.arange(12, dtype=np.float32)[::2][:5]  # a view with a stride
    observations[0]["rp_0"]["observation"] = strided
    packed = pack(observations)
    _, blobs = packed
    assert blobs["jc_0"][0] == "array" and isinstance(blobs["jc_0"][1][2], bytes)
    assert blobs["rp_0"][0] == "dict" and all(
        isinstance(b[2], bytes) for b in blobs["rp_0"][1].values()
    )
    assert blobs["rp_1"][0] == blobs["mediator_0"][0] == "asis"
    out = unpack(pickle.loads(pickle.dumps(packed)))
    assert [list(o) for o in out] == [list(o) for o in observations]  # agents and their order
    for o, ref in zip(out, observations, strict=True):
        for agent, value in o.items():
            if isinstance(value, dict):
                assert list(value) == list(ref[agent]), agent
            pairs = value.items() if isinstance(value, dict) else [(None, value)]
            for k, got in pairs:
                want = ref[agent] if k is None else ref[agent][k]
                if isinstance(want, np.ndarray):
                    np.testing.assert_array_equal(got, want, err_msg=f"{agent} {k}")
                    assert got.dtype == want.dtype and got.shape == want.shape, (agent, k)
                    assert got.flags.writeable, (agent, k)
                else:
                    assert got == want and type(got) is type(want), (agent, k)
    assert unpack(pack([])) == []
    # actions: numpy scalars cross as bytes too; 0-d arrays and Python numbers as they are
    actions = [{"rp_0": np.int64(3), "jc_0": np.float32(0.25), "m": np.array(2), "x": 1},
               {"rp_0": np.int64(-1), "jc_0": np.float32(1.5), "m": np.array(5), "x": 2}, {}]  # fmt: skip
    packed = pack(actions)
    assert {a: kind for a, (kind, _) in packed[1].items()} == {
        "rp_0": "array", "jc_0": "array", "m": "asis", "x": "asis"
    }  # fmt: skip
    out = unpack(pickle.loads(pickle.dumps(packed)))
    assert out == actions
    for o, ref in zip(out, actions, strict=True):
        assert all(type(o[a]) is type(ref[a]) for a in ref)


def test_actions_in_any_agent_order_make_one_action_matrix():
    """RLlib's action dicts hold the agents in the order of its sets of agent ids, which depends
    on the string-hash seed: whatever the order, the lane's actions cross to the child as one
    int64 matrix (sub-envs x agents, in the env's agent order), so the child steps from action
    vectors. Actions that are not numpy integers, or that miss or add an agent, make none (they
    cross as dicts)."""
    from agents.env_process import _int_matrix

    agents = ("rp_0", "rp_1", "jc_2")
    lane = [
        {"rp_1": np.int32(4), "rp_0": np.int32(3), "jc_2": np.int32(1)},
        {"jc_2": np.int64(0), "rp_0": np.int64(7), "rp_1": np.int64(2)},
    ]
    m = _int_matrix(lane, agents)
    assert m.dtype == np.int64
    np.testing.assert_array_equal(m, [[3, 4, 1], [7, 2, 0]])
    assert _int_matrix([{"rp_0": np.int32(1), "rp_1": np.int32(2)}], agents) is None
    assert _int_matrix([{"rp_0": np.int32(1), "rp_1": np.int32(2), "x": np.int32(0)}],
                       agents) is None  # fmt: skip
    assert _int_matrix([{**lane[0], "med_0": np.int32(1)}], agents) is None
    assert _int_matrix([{a: np.float32(v) for a, v in lane[0].items()}], agents) is None
    assert _int_matrix([{a: int(v) for a, v in lane[0].items()}], agents) is None


def test_markets_process_steps_as_rllibs_vector_env():
    """Same reset seeds and actions -> the same observations, rewards, flags and infos, through
    episode ends (next-step auto-reset, which the child does ahead), with the two lanes stepped
    out of order; at each episode end the child's episode measures equal those of the in-process
    market. Then an unseeded reset right after an episode end (the child's early reset stands in
    for it) and a seeded one: still the same."""
    n = 3
    ctx = _ctx()
    ref = SyncVectorMultiAgentEnv([lambda: TwinMultiAgentEnv(ctx) for _ in range(n)], copy=False)
    proc = MarketsProcess(TwinMultiAgentEnv, ctx, n)
    try:
        obs_r, info_r = ref.reset(seed=5)
        obs_p, info_p = proc.reset(seed=5)
        _assert_same(obs_r, obs_p, "reset obs")
        _assert_same(info_r, info_p, "reset infos")
        rng = np.random.default_rng(0)
        ended = 0

        def step_both(step: int) -> bool:
            nonlocal obs_r, ended
            # numpy integers as RLlib's (the child steps from an action vector and answers with
            # arrays), Python ints now and then (the child steps with dicts)
            kind = int if step % 5 == 0 else np.int64
            actions = [
                {a: kind(rng.integers(ref.single_action_spaces[a].n)) for a in o} for o in obs_r
            ]
            if step % 3 == 1:  # agents in another order (RLlib's dicts iterate sets of ids)
                actions = [dict(reversed(a.items())) for a in actions]
            res_r = ref.step(actions)
            # lane 1 (env 2) sent first, then lane 0 (envs 0-1); answers come in sending order
            proc.step_async(2, actions[2:])
            proc.step_async(0, actions[:2])
            second, first = proc.step_wait(), proc.step_wait()
            res_p = [a + b for a, b in zip(first, second, strict=True)]
            for name, x, y in zip(("obs", "rewards", "terminateds", "truncateds", "infos"),
                                  res_r, res_p, strict=True):  # fmt: skip
                _assert_same(list(x), list(y), f"step {step} {name}")
            end = False
            for i, term in enumerate(res_r[2]):
                if term["__all__"]:
                    ended, end = ended + 1, True
                    assert proc.envs[i].episode_counts() == ref.envs[i].unwrapped.episode_counts()
            obs_r = res_r[0]
            return end

        for step in range(150):
            step_both(step)
        assert ended >= 4, ended  # several episode ends, hence auto-resets, were compared
        while not step_both(-1):  # up to an episode end: the child resets that market early
            pass
        for seed in (None, 9):
            obs_r, info_r = ref.reset(seed=seed)
            obs_p, info_p = proc.reset(seed=seed)
            _assert_same(obs_r, obs_p, f"reset obs, seed {seed}")
            for step in range(40):
                step_both(1000 + step)
        assert proc.busy_seconds() > 0
        assert min(proc.answers.values()) > 50, proc.answers  # both kinds of answer compared
    finally:
        proc.close()
        ref.close()


def test_measures_come_after_the_next_answer_and_the_answer_is_kept():
    """The child sends a finished episode's measures (and resets its market) only when no
    request waits. With the next lane's step already sent when an episode ends, its answer comes
    before the measures: reading the measures keeps that answer for its ``step_wait``, and both
    equal those of the in-process markets."""
    ctx = _ctx()
    ref = SyncVectorMultiAgentEnv([lambda: TwinMultiAgentEnv(ctx) for _ in range(2)], copy=False)
    proc = MarketsProcess(TwinMultiAgentEnv, ctx, 2)
    try:
        obs, _ = ref.reset(seed=3)
        proc.reset(seed=3)
        rng = np.random.default_rng(1)
        kept = 0
        for step in range(200):
            actions = [
                {a: int(rng.integers(ref.single_action_spaces[a].n)) for a in o} for o in obs
            ]
            res = ref.step(actions)
            proc.step_async(0, actions[:1])
            proc.step_async(1, actions[1:])  # sent before lane 0's answer is read
            first = proc.step_wait()
            if res[2][0]["__all__"]:  # market 0's episode ended: its measures are still to come
                counts = proc.envs[0].episode_counts()  # read past lane 1's answer
                kept += len(proc._early)
                assert counts == ref.envs[0].unwrapped.episode_counts()
            second = proc.step_wait()
            got = [a + b for a, b in zip(first, second, strict=True)]
            for name, x, y in zip(("obs", "rewards", "terminateds", "truncateds", "infos"),
                                  res, got, strict=True):  # fmt: skip
                _assert_same(list(x), list(y), f"step {step} {name}")
            obs = res[0]
        assert kept >= 2, kept  # the answer came first at several episode ends
    finally:
        proc.close()
        ref.close()


def test_measures_reach_their_own_episodes_callbacks_in_order():
    """The child sends a market's measures in the order its episodes end, whenever it has the
    time: when a second episode ends before the first's measures arrive, each callback still
    gets its own episode's measures, and ``episode_counts`` waits for the last episode's."""
    from agents.env_process import RemoteMarket

    class Owner:  # stands in for MarketsProcess: its flush delivers what is still to come
        def __init__(self) -> None:
            self.queue: list = []

        def flush_counts(self) -> None:
            while self.queue:
                market._deliver(self.queue.pop(0))

    owner = Owner()
    spec = {"possible_agents": ["rp_0"], "observation_spaces": {}, "action_spaces": {}}
    market = RemoteMarket(spec, owner)
    got = []
    market._ended()  # episode A ends; its callback waits
    market.on_episode_counts(lambda c: got.append(("A", c)))
    market._ended()  # episode B ends before A's measures arrived
    market.on_episode_counts(lambda c: got.append(("B", c)))
    market._deliver(["a"])
    assert got == [("A", ["a"])]
    owner.queue.append(["b"])
    assert market.episode_counts() == ["b"]  # waits for B's (the last episode's) measures
    assert got == [("A", ["a"]), ("B", ["b"])]
    market.on_episode_counts(lambda c: got.append(("B again", c)))  # nothing due: at once
    assert got[-1] == ("B again", ["b"])


def test_an_error_in_a_market_is_raised_with_the_childs_traceback():
    proc = MarketsProcess(TwinMultiAgentEnv, _ctx(), 2)
    try:
        proc.reset(seed=1)
        proc.step_async(0, [{"rp_0": "cheat"}])  # not an action of rp_0's space
        with pytest.raises(EnvProcessError, match="the env process failed:\n.*Traceback"):
            proc.step_wait()
    finally:
        proc.close()
    assert proc._proc.poll() is not None  # closed: the child has exited


def test_a_dead_env_process_is_reported():
    proc = MarketsProcess(TwinMultiAgentEnv, _ctx(), 2)
    try:
        proc.reset(seed=1)
        os.kill(proc.pid, signal.SIGKILL)
        proc.step_async(0, [{}])
        with pytest.raises(EnvProcessError, match=r"died \(exit code -9\)"):
            proc.step_wait()
    finally:
        proc.close()


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far (Linux: /proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_an_idle_env_process_stops_polling_and_sleeps():
    """Between requests the child polls its socket for at most SPIN_SECONDS (waking a blocked
    process is dear on a VM), then blocks: with nothing asked for a second (the runner learning,
    say), it uses almost no CPU. A child that kept polling would use the whole second. The runner's
    wait polls the same way, then blocks too: the answer still arrives."""
    from agents.env_process import SPIN_SECONDS

    assert 0 < SPIN_SECONDS <= 0.05
    proc = MarketsProcess(TwinMultiAgentEnv, _ctx(), 2)
    try:
        proc.reset(seed=1)
        proc.busy_seconds()  # (the child has nothing left to do ahead)
        before = _cpu_seconds(proc.pid)
        time.sleep(1.0)
        idle = _cpu_seconds(proc.pid) - before
        assert idle < 0.3, idle  # a spinning child: about 1.0
        obs, _ = proc.reset(seed=2)
        assert len(obs) == 2
    finally:
        proc.close()


def test_a_bad_env_is_reported_at_start():
    with pytest.raises(EnvProcessError, match="must be a twin.config.TwinConfig"):
        MarketsProcess(TwinMultiAgentEnv, {"twin": None}, 2)


def test_with_the_spaces_given_the_start_is_checked_at_the_first_request():
    """Given the spaces, the constructor does not wait for the child; the first request reads
    its start-up message: a failure, or other agents than announced, is raised there."""
    spec = env_spec(TwinMultiAgentEnv(_ctx()))
    proc = MarketsProcess(TwinMultiAgentEnv, {"twin": None}, 2, spec=spec)
    with pytest.raises(EnvProcessError, match="must be a twin.config.TwinConfig"):
        proc.reset(seed=1)
    proc.close()
    proc = MarketsProcess(TwinMultiAgentEnv, _ctx(), 2, spec={**spec, "possible_agents": ["x"]})
    with pytest.raises(EnvProcessError, match=r"other agents: \['rp_0', 'rp_1'\] instead of"):
        proc.reset(seed=1)
    proc.close()
    proc = MarketsProcess(TwinMultiAgentEnv, _ctx(), 2, spec=spec)
    try:
        obs, _ = proc.reset(seed=1)
        assert len(obs) == 2 and sorted(obs[0]) == spec["possible_agents"]
    finally:
        proc.close()


@pytest.mark.parametrize(
    ("overrides", "used"),
    [([], True),  # the default: 8 markets per runner, the scripted seats inside the env
     (["train.env_process=false"], False),
     (["train.num_envs_per_env_runner=1", "train.rollout_fragment_length=0"], False),  # 1 lane
     (["train.scripted_seats=modules"], False)],  # every seat exposed: RLlib's work dominates
)  # fmt: skip
def test_when_the_markets_go_to_a_child_process(overrides, used):
    from agents.config_builder import build_algo_config, uses_env_process

    cfg = twin.compose(overrides)
    assert uses_env_process(cfg) is used
    assert build_algo_config(cfg).env_config["env_process"] is used


@pytest.mark.parametrize(("cpus", "used"), [(1.0, False), (2.0, True)])
def test_sweeps_keep_a_trials_markets_in_its_process_below_2_cpus(cpus, used):
    """Two trials of 1 CPU already use both cores: a trial's env process would only compete."""
    from experiments.sweep import plan_sweep
    from experiments.sweep_schema import SweepConfig

    plan = plan_sweep([*SMALL, "train.num_envs_per_env_runner=2", "train.rollout_fragment_length=0",
                       "pricing.results_collateral_multiple=1,2"],
                      SweepConfig(seeds=1, cpus_per_trial=cpus))  # fmt: skip
    assert len(plan.configs) == 2
    assert all(c.train.env_process is used for c in plan.configs.values())


# -- the overlapped loop against the in-process loop, on one local Ray -----------------------------
RUN = (*SMALL, "train=smoke", "train.num_envs_per_env_runner=3", "train.rollout_fragment_length=0")


def _complete(episodes) -> list:
    """Signatures of the episodes that started and ended inside the call (every agent's
    observations, actions and rewards, as bytes)."""
    sigs = []
    for e in episodes:
        if e.env_t_started != 0 or not e.is_done:
            continue
        sig = []
        for aid in sorted(e.agent_episodes):
            sa = e.agent_episodes[aid]
            obs = sa.get_observations()
            sig.append((aid, np.asarray(obs["observation"]).tobytes(),
                        np.asarray(sa.get_actions()).tobytes(),
                        np.asarray(sa.get_rewards()).tobytes()))  # fmt: skip
        sigs.append(tuple(sig))
    return sigs


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Per mode (in-process, child process twice): one greedy call of 400 env steps, then two
    exploring calls of 150; the episode measures logged; the runner's counters."""
    out = {}
    with ray_session(RayConfig(), tmp_path_factory.mktemp("ray")):
        for name, flag in (("inproc", "false"), ("proc", "true"), ("proc2", "true")):
            cfg = twin.compose([*RUN, f"train.env_process={flag}"])
            algo = build_algorithm(cfg, tmp_path_factory.mktemp("run"))
            try:
                er = algo.env_runner
                greedy = er.sample(num_timesteps=400, explore=False)
                measures = er.metrics.peek(METRICS_KEY)
                explore = [er.sample(num_timesteps=150) for _ in range(2)]
                steps = er.metrics.peek("num_env_steps_sampled")
                timers = {
                    (pipe, piece): value
                    for pipe in (ENV_TO_MODULE_CONNECTOR, MODULE_TO_ENV_CONNECTOR)
                    for piece, value in er.metrics.peek((pipe, TIMERS, CONNECTOR_TIMERS)).items()
                }  # fmt: skip
                timers.update(
                    {k: er.metrics.peek(k) for k in (ENV_STEP_TIMER, RLMODULE_INFERENCE_TIMER)}
                )
                answers = dict(getattr(er.env, "answers", {}))
                out[name] = (type(er.env).__name__, greedy, measures, explore, steps, timers,
                             answers)  # fmt: skip
            finally:
                algo.stop()
    return out


@pytest.mark.slow
def test_the_overlapped_loop_logs_rllibs_timers(runs):
    """The same connector-piece, env-step and inference timers as RLlib's loop, each a
    positive time (the overlapped loop pushes them at the end of each call)."""
    assert runs["proc"][5].keys() == runs["inproc"][5].keys()
    assert len(runs["proc"][5]) > 6
    assert all(v > 0 for v in runs["proc"][5].values())


@pytest.mark.slow
def test_the_runner_uses_a_child_process_only_when_asked(runs):
    assert runs["inproc"][0] == "SyncVectorMultiAgentEnv"
    assert runs["proc"][0] == "MarketsProcess"


@pytest.mark.slow
def test_the_child_steps_rllibs_actions_from_action_vectors(runs):
    """RLlib's actions (numpy integers, in dicts whose agent order follows its sets of ids) take
    the vector path: every lane step answers with arrays except those handing out a reset's
    observations. Per market: about one reset step in an episode of 20-60 steps, so the dict
    answers are at most a tenth of (about 1/40 of) the 700 env steps' lane steps."""
    answers = runs["proc"][6]
    assert answers["vector"] > 9 * answers["dicts"], answers


@pytest.mark.slow
def test_greedy_episodes_are_those_of_the_in_process_loop(runs):
    """Greedy actions draw nothing at random, so both loops must record the same complete
    episodes (the calls may end a lane apart, so one may hold an episode more)."""
    a, b = _complete(runs["inproc"][1]), _complete(runs["proc"][1])
    small, big = sorted((a, b), key=len)
    assert len(small) >= 6, (len(a), len(b))
    assert set(small) <= set(big)
    assert len(big) - len(small) <= 1


@pytest.mark.slow
def test_episode_measures_come_back_from_the_child(runs):
    """The callback logged one item per finished episode in both modes, the same items."""
    a, b = runs["inproc"][2], runs["proc"][2]
    done_a = sum(e.is_done for e in runs["inproc"][1])
    done_b = sum(e.is_done for e in runs["proc"][1])
    assert (len(a), len(b)) == (done_a, done_b)
    common = min(len(a), len(b)) - 1  # episodes end in the same order per market, not overall
    key = sorted(map(repr, a))
    assert sum(repr(x) in key for x in b) >= common


@pytest.mark.slow
def test_overlapped_sampling_is_reproducible_and_counts_its_steps(runs):
    """Same seed -> the same exploring episodes; a call returns at least what was asked and at
    most one lane (2 markets) more, and the env-step counter adds them up."""
    for ca, cb in zip(runs["proc"][3], runs["proc2"][3], strict=True):
        assert _complete(ca) == _complete(cb)
        for x, y in zip(ca, cb, strict=True):
            for aid, sa in x.agent_episodes.items():
                np.testing.assert_array_equal(sa.get_actions(), y.agent_episodes[aid].get_actions())
    calls = [runs["proc"][1], *runs["proc"][3]]
    for call, asked in zip(calls, (400, 150, 150), strict=True):
        got = sum(e.env_steps() for e in call)
        assert asked <= got <= asked + 2, (asked, got)
    assert runs["proc"][4] == sum(e.env_steps() for call in calls for e in call)
