"""An env runner's markets stepped in a child process, so that the env and RLlib overlap.

With ``train.env_process=true``, :class:`agents.env_runner.TwinEnvRunner` does not hold its
markets: a child process does (:func:`_serve`), and the runner talks to it through
:class:`MarketsProcess`, a stand-in for RLlib's ``SyncVectorMultiAgentEnv`` (same spaces, same
``reset``/``step`` results, the same next-step auto-reset) that can also step a *slice* of its
sub-envs without waiting (:meth:`MarketsProcess.step_async`, then :meth:`MarketsProcess.step_wait`).
The runner splits its markets into two lanes and steps one lane's markets in the child while it
runs RLlib's connectors and forward pass for the other's (see :mod:`agents.env_runner`).

A market whose episode ended is reset after the step's answer is sent, while the runner works
(an auto-reset draws nothing from the step's actions, so doing it early changes nothing); its
next step hands out that reset's observations.

What crosses the pipe each step: the actions of a lane's sub-envs, and back their results. Where
the sub-envs can (``step_vector``: every exposed agent acts through a discrete space with a mask)
and RLlib's actions are numpy integers (in whatever agent order its dicts hold them), the actions
go as one int64 matrix (sub-envs x agents), the child steps each market from its row and answers
with arrays: per group of exposed seats, the observation and mask rows of the lane's markets end
to end, and the rewards; the runner builds from them the dicts the sub-envs' ``step`` returns
(:meth:`MarketsProcess._from_vector`), so the child builds, packs and pickles no per-agent dicts.
Otherwise the actions go :func:`pack`-ed (each agent's values as one byte string), and (as in the
step that hands out a reset's observations) the child answers with the sub-envs' dicts:
observations :func:`pack`-ed, rewards, flags and infos pickled. Messages are pickled with the
plain pickler (:class:`_Conn`), and a side waiting for the other's message polls for it a few
milliseconds before it blocks (:data:`SPIN_SECONDS`).

The child also does, when it has nothing else to do, the work no request waits for: one piece at
a time, whenever no request is waiting, and a market's pending pieces first when its next step
comes. After a step, the next step's actions of the scripted seats (``prepare_step``:
:meth:`twin.env.MarketEnv.prepare_step`; the same draws in the same order), which takes them off
the time the runner waits for. When markets' episodes end, their resets, and then their episode
measures (:meth:`agents.env.TwinMultiAgentEnv.episode_counts`, read from the finished markets,
which the child keeps until then), which go in messages of their own. At an episode's end that
work (about 1.2 ms a market in the default market, where a step takes a tenth of it, and the
markets of a lane end together) would otherwise hold up the next lane's step; a market's next
step waits at most for its reset, never for its measures. The stand-in sub-envs
(:class:`RemoteMarket`) hand the measures to :class:`agents.callbacks.MarketMetricsCallback`
when they arrive (at the runner's next requests to the child, at the latest at the end of its
``sample()`` call, which waits for them).

The child is a fresh interpreter (``python -m agents.env_process``; not a fork of a process
running Ray and torch threads, and not ``multiprocessing``'s spawn, which re-imports the caller's
main script), joined to the runner by a private socket pair. It runs with
``PYTHONHASHSEED=0`` (:mod:`agents.hashseed`), one thread per maths library and a young-generation
garbage collection every :data:`GC_YOUNG_THRESHOLD` allocations instead of 700, builds its
sub-envs exactly as RLlib's runner builds them (the env class called with the
runner's ``EnvContext``; RLlib's initial reset seeds sub-env ``i`` with ``seed + i``), and keeps
the seconds it spends inside the sub-envs' ``step``/``reset`` (:meth:`MarketsProcess.busy_seconds`).
An exception in the child is raised in the runner as :class:`EnvProcessError` with the child's
traceback; a child that dies is reported the same way.
"""

from __future__ import annotations

import gc
import math
import os
import pickle
import select
import socket
import subprocess
import sys
import time
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from agents.hashseed import HASH_SEED

#: the child's threshold of young-generation garbage collections (CPython's default: 700)
GC_YOUNG_THRESHOLD = 100_000

#: how long (seconds) either side, with nothing else to do, polls the socket for the other's next
#: message before it blocks in a read. Waking a process blocked in a read is dear on a virtual
#: machine: the runner's send that woke the child took about 50 us instead of 13 (the wake-up is
#: charged to the writer), and the woken child stepped its markets a fifth slower; between a
#: lane's answer and its next request there is about a millisecond of the runner's work. After
#: this long (the runner is learning, or gone) the waiting side blocks and uses no CPU.
SPIN_SECONDS = 0.005


class _Conn(Connection):
    """A ``multiprocessing`` connection (the same messages on the wire) with cheaper ends:

    - ``send`` pickles with the plain pickler. ``Connection.send`` pickles with
      ``multiprocessing``'s ``ForkingPickler``, which copies its table of reducers at every
      call: 26 us a message in a runner that has imported torch and RLlib (they register
      reducers there), against 2 us. What crosses here (numbers, bytes, arrays, dicts, spaces,
      the env class by reference) needs none of those reducers.
    - ``recv`` polls the socket for up to :data:`SPIN_SECONDS` before it blocks in a read.
    - :meth:`ready` asks whether a message (or the peer's end) is there with one ``poll`` system
      call, not a selector built per call as ``Connection.poll`` does.
    """

    def __init__(self, handle: int) -> None:
        super().__init__(handle)
        self._poller = select.poll()
        self._poller.register(handle, select.POLLIN)

    def send(self, obj: Any) -> None:
        self._check_closed()
        self._check_writable()
        self._send_bytes(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))

    def ready(self) -> bool:
        """Whether a message, or the peer's end, is there to read (no waiting)."""
        return bool(self._poller.poll(0))

    def recv(self) -> Any:
        if not self.ready():  # poll a while before blocking (see SPIN_SECONDS)
            clock = time.perf_counter
            end = clock() + SPIN_SECONDS
            while clock() < end and not self.ready():
                pass
        return super().recv()


class EnvProcessError(RuntimeError):
    """The env process failed (an exception in a market, or the process died)."""


def _blob(values: list) -> tuple | None:
    """Arrays (of at least one dimension) of one dtype and shape, or numpy scalars of one type,
    as ``(dtype, shape or None for scalars, their bytes end to end)``; None if they are not."""
    v0 = values[0]
    t = type(v0)
    if t is np.ndarray:
        if not v0.ndim:
            return None
        shape = v0.shape
    elif isinstance(v0, np.generic) and v0.dtype.kind in "biuf":
        shape = None
    else:
        return None
    dtype = v0.dtype
    if not all(type(v) is t and v.dtype == dtype for v in values):
        return None
    if shape is not None and not all(v.shape == shape for v in values):
        return None
    return (dtype.str, shape, b"".join([v.tobytes() for v in values]))


def _rows(blob: tuple) -> list:
    """The arrays (or scalars) of :func:`_blob`: rows of one writable array."""
    dtype, shape, data = blob
    flat = np.frombuffer(bytearray(data), dtype)  # a bytearray: writable, like a copy
    if shape is None:
        return list(flat)  # numpy scalars of the dtype
    n = len(data) // max(1, flat.itemsize * math.prod(shape))
    return list(flat.reshape((n, *shape)))


def pack(observations: list[dict]) -> tuple:
    """The sub-envs' observation (or action) dicts as one byte string per agent (and per field of
    a dict observation): the agent's arrays, or numpy scalars, end to end in sub-env order, with
    their dtype and shape. A few bytes objects cross the pipe instead of one pickled array or
    scalar per agent, sub-env and field (numpy's pickling costs several microseconds each,
    ``tobytes`` well under one). Agents whose values are not arrays, numpy scalars or dicts of
    arrays of one dtype and shape go as they are."""
    rows: dict = {}
    for obs in observations:
        for agent, value in obs.items():
            rows.setdefault(agent, []).append(value)
    packed = {}
    for agent, values in rows.items():
        v0 = values[0]
        if type(v0) is dict:
            keys = tuple(v0)
            blobs = None
            if all(type(v) is dict and tuple(v) == keys for v in values):
                blobs = {k: _blob([v[k] for v in values]) for k in keys}
                if any(b is None for b in blobs.values()):
                    blobs = None
            packed[agent] = ("dict", blobs) if blobs is not None else ("asis", values)
        else:
            blob = _blob(values)
            packed[agent] = ("array", blob) if blob is not None else ("asis", values)
    return ([tuple(obs) for obs in observations], packed)


def unpack(packed: tuple) -> list[dict]:
    """The dicts of :func:`pack`: equal arrays and numpy scalars of the same dtypes (the arrays
    writable rows of one array per agent and field)."""
    agents, blobs = packed
    values = {}
    for agent, (kind, data) in blobs.items():
        if kind == "array":
            values[agent] = _rows(data)
        elif kind == "dict":
            keys = tuple(data)
            cols = [_rows(data[k]) for k in keys]
            values[agent] = [dict(zip(keys, row, strict=True)) for row in zip(*cols, strict=True)]
        else:
            values[agent] = data
    at = dict.fromkeys(blobs, 0)
    out = []
    for names in agents:
        obs = {}
        for agent in names:
            i = at[agent]
            at[agent] = i + 1
            obs[agent] = values[agent][i]
        out.append(obs)
    return out


def _int_matrix(actions: list[dict], agents: tuple) -> np.ndarray | None:
    """A lane's action dicts as one int64 matrix (sub-envs x ``agents``) if each holds a numpy
    integer for each of ``agents`` and for no other agent (RLlib's actions in the discrete
    spaces, in whatever order its dicts hold them: RLlib builds them by iterating sets of agent
    ids, whose order follows the string-hash seed); else None."""
    n = len(agents)
    if any(len(a) != n for a in actions):
        return None
    try:
        rows = [[a[x] for x in agents] for a in actions]
    except KeyError:
        return None
    integer = np.integer
    for row in rows:
        for v in row:
            if not isinstance(v, integer):
                return None
    return np.array(rows, np.int64)


def _block(arrays: list[np.ndarray]) -> tuple:
    """Arrays of one dtype and shape, end to end: ``(dtype, (n, *shape), bytes)``."""
    a0 = arrays[0]
    return (a0.dtype.str, (len(arrays), *a0.shape), b"".join([a.tobytes() for a in arrays]))


def _array(block: tuple) -> np.ndarray:
    """The writable array of a :func:`_block`."""
    dtype, shape, data = block
    return np.frombuffer(bytearray(data), dtype).reshape(shape)


def _build_envs(env_cls, ctx: dict, worker_index: int, num_workers: int, num_envs: int):
    from ray.rllib.env.env_context import EnvContext

    env_ctx = EnvContext(ctx, worker_index=worker_index, num_workers=num_workers)
    return [env_cls(env_ctx) for _ in range(num_envs)]


def _serve(conn, env_cls, ctx: dict, worker_index: int, num_workers: int, num_envs: int) -> None:
    """The child's loop: build the sub-envs, then answer ``reset``/``step``/``busy``/``close``."""
    clock = time.perf_counter
    busy = 0.0
    try:
        envs = _build_envs(env_cls, ctx, worker_index, num_workers, num_envs)
        conn.send(("ok", env_spec(envs[0])))
    except BaseException:
        conn.send(("error", traceback.format_exc()))
        return
    # the markets make no reference cycles (young collections here free nothing: 170 of them
    # over 24 000 market steps of the default market, 0 objects collected, 1 % of the time and
    # pauses of up to milliseconds the runner waits through), so young collections come 140x
    # less often; cycles, should a market make some, are still collected
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    autoreset = [False] * num_envs
    ready: dict[int, tuple] = {}  # sub-env -> (obs, infos) of a reset done ahead of its step
    #: work that no request waits for, in order: ("prepare", i) computes ahead what sub-env i's
    #: next step needs that the actions do not change (its scripted seats' actions:
    #: ``prepare_step``, where the env has it); ("reset", i) resets it ahead of its next step;
    #: ("counts", i, market) sends the measures of its episode that just ended, read from that
    #: episode's market (kept: the reset replaces it), so that only the reset is in the way of
    #: the sub-env's next step, not its measures
    later: list[tuple] = []
    prepares = [getattr(env, "prepare_step", None) for env in envs]
    # sub-envs that step from an action vector and answer with arrays (step_vector)
    agent_order = tuple(envs[0].unwrapped.possible_agents)
    vectors = all(getattr(env, "vector_ok", False) for env in envs)

    def finish(task: tuple) -> None:
        kind, i = task[0], task[1]
        if kind == "prepare":
            prepares[i]()
        elif kind == "counts":
            conn.send(("counts", {i: envs[i].episode_counts(task[2])}))
        else:
            ready[i] = envs[i].reset()

    def finish_env(i: int) -> None:
        """Do sub-env ``i``'s work that its next step needs, now (that step is here): its reset
        and its scripted actions; its measures stay queued."""
        for task in [t for t in later if t[1] == i and t[0] != "counts"]:
            later.remove(task)
            finish(task)

    def after_step(lo: int, k: int, ended: list[int]) -> None:
        """Queue the work a step of sub-envs ``lo .. lo + k - 1`` leaves: the next step's
        scripted actions, the finished markets' resets (and their first step's scripted
        actions), then the finished markets' measures."""
        later.extend(("prepare", lo + j) for j in range(k) if prepares[lo + j] and j not in ended)
        for j in ended:
            later.append(("reset", lo + j))
            if prepares[lo + j]:
                later.append(("prepare", lo + j))
        for j in ended:  # the measures last: no step waits for them
            later.append(("counts", lo + j, envs[lo + j].market))

    while True:
        if later and not conn.ready():  # nothing asked: a piece of the work left
            t0 = clock()
            try:
                finish(later.pop(0))
            except BaseException:
                conn.send(("error", traceback.format_exc()))
            busy += clock() - t0
            continue
        try:
            msg = conn.recv()
        except EOFError:  # the runner is gone
            break
        cmd = msg[0]
        try:
            if cmd in ("step", "vstep"):
                if cmd == "vstep":  # the actions as one int64 matrix (MarketsProcess.step_async)
                    _, lo, k, data = msg
                    matrix = np.frombuffer(data, np.int64).reshape(k, len(agent_order))
                    actions = None
                else:  # pack-ed action dicts
                    _, lo, actions = msg
                    k = len(actions[0])
                    matrix = None
                # (a step that hands out a reset's observations answers with dicts)
                if matrix is not None and vectors and not any(autoreset[lo : lo + k]):
                    t0 = clock()
                    blocks, rewards, ended = [], [], []
                    for j in range(k):
                        i = lo + j
                        if later:
                            finish_env(i)
                        b, r, done = envs[i].step_vector(matrix[j])
                        blocks.append(b)
                        rewards.append(r)
                        if done:
                            autoreset[i] = True
                            ended.append(j)
                    busy += clock() - t0
                    groups = []  # per group of exposed seats: its size, rows and masks
                    for g in range(len(blocks[0])):
                        rows, masks = [b[g][0] for b in blocks], [b[g][1] for b in blocks]
                        groups.append((len(rows[0]), _block(rows), _block(masks)))
                    conn.send(("ok", ("vector", groups, _block(rewards), ended)))
                    after_step(lo, k, ended)
                    continue
                if actions is None:  # (numpy integers, as RLlib's)
                    actions = [dict(zip(agent_order, row, strict=True)) for row in matrix]
                else:
                    actions = unpack(actions)
                out_obs, out_rew, out_term, out_trunc, out_info, ended = [], [], [], [], [], []
                t0 = clock()
                for j, action in enumerate(actions):
                    i = lo + j
                    env = envs[i]
                    if later:
                        finish_env(i)
                    if autoreset[i]:  # next-step auto-reset, as SyncVectorMultiAgentEnv
                        obs, info = ready.pop(i, None) or env.reset()
                        agents = env.unwrapped.possible_agents
                        rew = dict.fromkeys(agents, 0.0)
                        term = dict.fromkeys(agents, False)
                        term["__all__"] = False
                        trunc = dict(term)
                    else:
                        obs, rew, term, trunc, info = env.step(action)
                    autoreset[i] = bool(term["__all__"] or trunc.get("__all__", False))
                    if autoreset[i]:
                        ended.append(j)
                    out_obs.append(obs)
                    out_rew.append(rew)
                    out_term.append(term)
                    out_trunc.append(trunc)
                    out_info.append(info)
                busy += clock() - t0
                conn.send(
                    ("ok", ("dicts", pack(out_obs), out_rew, out_term, out_trunc, out_info, ended))
                )
                after_step(lo, len(actions), ended)
            elif cmd == "reset":
                _, seed = msg
                t0 = clock()
                # the work left but the scripted actions (the early resets too: an unseeded
                # reset uses them; the measures, read from the finished markets)
                tasks, later[:] = later[:], []
                for task in tasks:
                    if task[0] != "prepare":
                        finish(task)
                out_obs, out_info = [], []
                for i, env in enumerate(envs):
                    early = ready.pop(i, None)  # the same draw as a reset now, if unseeded
                    if early is not None and seed is None:
                        obs, info = early
                    else:
                        obs, info = env.reset(seed=None if seed is None else seed + i)
                    out_obs.append(obs)
                    out_info.append(info)
                    autoreset[i] = False
                busy += clock() - t0
                conn.send(("ok", (pack(out_obs), out_info)))
                later.extend(("prepare", i) for i in range(num_envs) if prepares[i])
            elif cmd == "busy":
                conn.send(("ok", busy))
            elif cmd == "close":
                for env in envs:
                    env.close()
                conn.send(("ok", None))
                break
            else:
                conn.send(("error", f"unknown command {cmd!r}"))
        except BaseException:
            conn.send(("error", traceback.format_exc()))
    conn.close()


def env_spec(env) -> dict:
    """The agents and spaces of a sub-env (what :class:`MarketsProcess` needs up front)."""
    return {
        "possible_agents": list(env.unwrapped.possible_agents),
        "observation_spaces": dict(env.unwrapped.observation_spaces),
        "action_spaces": dict(env.unwrapped.action_spaces),
        "vector_ok": bool(getattr(env, "vector_ok", False)),  # whether it has step_vector
    }


class RemoteMarket:
    """A sub-env of :class:`MarketsProcess` as the runner and callbacks see it: its spaces, and
    the episode measures of its market's last finished episode."""

    def __init__(self, spec: dict, owner: MarketsProcess) -> None:
        self.possible_agents = spec["possible_agents"]
        self.observation_spaces = spec["observation_spaces"]
        self.action_spaces = spec["action_spaces"]
        self._owner = owner
        self._counts: list[dict] | None = None  # the measures of the last episode delivered
        #: per ended episode whose measures are still to come, oldest first: the callbacks
        #: waiting for them (the child sends each market's measures in the order its episodes end)
        self._due: list[list] = []

    @property
    def unwrapped(self) -> RemoteMarket:
        return self

    def get_observation_space(self, agent: str) -> gym.Space:
        return self.observation_spaces[agent]

    def get_action_space(self, agent: str) -> gym.Space:
        return self.action_spaces[agent]

    def episode_counts(self) -> list[dict] | None:
        """The measures of the episode that ended last (None before the first); waits for the
        child's messages if they are still to come."""
        if self._due:
            self._owner.flush_counts()
        return self._counts

    def on_episode_counts(self, fn) -> None:
        """Call ``fn(counts)`` with the measures of the episode that just ended, when the child's
        message arrives (at the runner's next request, at the latest at the end of the
        ``sample()`` call: :meth:`MarketsProcess.flush_counts`)."""
        if self._due:
            self._due[-1].append(fn)
        else:
            fn(self._counts)

    def _ended(self) -> None:
        """An episode of this market ended: its measures are to come."""
        self._due.append([])

    def _deliver(self, counts: list[dict]) -> None:
        """The measures of the oldest ended episode whose measures were to come."""
        self._counts = counts
        for fn in self._due.pop(0):
            fn(counts)


class MarketsProcess:
    """``num_envs`` markets (instances of ``env_cls`` built from ``env_ctx``) in a child process,
    with the interface of RLlib's ``SyncVectorMultiAgentEnv`` plus :meth:`step_async` and
    :meth:`step_wait` over a slice of the sub-envs.

    Requests are answered in order; :meth:`step_wait` returns the oldest unanswered step.
    """

    def __init__(self, env_cls, env_ctx, num_envs: int, spec: dict | None = None) -> None:
        """``spec``: the sub-envs' ``possible_agents``, ``observation_spaces`` and
        ``action_spaces`` if the caller knows them (:func:`env_spec` of a local instance); then
        the child's start-up (about 5 s of imports) overlaps the caller's work and is waited for
        at the first request, else it is waited for here."""
        mine, theirs = socket.socketpair()
        root = str(Path(__file__).resolve().parent.parent)  # the directory holding agents/
        path = os.environ.get("PYTHONPATH")
        env = dict(os.environ, PYTHONHASHSEED=HASH_SEED,
                   PYTHONPATH=root if not path else os.pathsep.join((root, path)))  # fmt: skip
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = "1"
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "agents.env_process", str(theirs.fileno())],
            pass_fds=(theirs.fileno(),), env=env, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        theirs.close()
        self._conn = _Conn(mine.detach())
        self._conn.send((env_cls, dict(env_ctx), int(getattr(env_ctx, "worker_index", 0)),
                         int(getattr(env_ctx, "num_workers", 0)), num_envs))  # fmt: skip
        self._pending: list[int] = []  # the first sub-env of each unanswered step
        self._counts_due = 0  # the ended episodes whose measures are still to come
        self._early: list[tuple] = []  # answers read while waiting for measures, in order
        #: step answers so far, by kind: "vector" (arrays, from step_vector) or "dicts"
        self.answers = {"vector": 0, "dicts": 0}
        self._closed = False
        self._hello = spec  # the start-up message still to read, and what it must say
        if spec is None:
            spec = self._ok()
        self.num_envs = num_envs
        self._agents = tuple(spec["possible_agents"])
        self._vectors = bool(spec.get("vector_ok", False))  # the sub-envs have step_vector
        self.envs = [RemoteMarket(spec, self) for _ in range(num_envs)]
        self.single_observation_spaces = spec["observation_spaces"]
        self.single_action_spaces = spec["action_spaces"]
        self.single_observation_space = gym.spaces.Dict(self.single_observation_spaces)
        self.single_action_space = gym.spaces.Dict(self.single_action_spaces)
        self.observation_space = self.action_space = None  # as SyncVectorMultiAgentEnv's
        self.metadata = {"autoreset_mode": "next_step"}
        self.render_mode = None

    @property
    def unwrapped(self) -> MarketsProcess:
        return self

    @property
    def pid(self) -> int | None:
        return self._proc.pid

    def _recv(self) -> tuple:
        try:
            return self._conn.recv()
        except (EOFError, OSError) as e:
            try:
                code = self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                code = None
            raise EnvProcessError(
                f"the env process (pid {self._proc.pid}) died (exit code {code})"
            ) from e

    def _ok(self) -> Any:
        """The payload of the next answer (measures that come before it are handed over)."""
        if self._early:
            status, payload = self._early.pop(0)
        else:
            while True:
                status, payload = self._recv()
                if status != "counts":
                    break
                self._take_counts(payload)
        if status != "ok":
            raise EnvProcessError(f"the env process failed:\n{payload}")
        return payload

    def _take_counts(self, payload: dict) -> None:
        for i, counts in payload.items():
            self._counts_due -= 1
            self.envs[i]._deliver(counts)

    def _answer(self) -> Any:
        """The answer to the oldest request."""
        if self._hello is not None:  # the child's start-up message comes first
            expected, self._hello = self._hello, None
            got = self._ok()
            if got["possible_agents"] != expected["possible_agents"]:
                raise EnvProcessError(
                    f"the env process built other agents: {got['possible_agents']} instead of "
                    f"{expected['possible_agents']}"
                )
        return self._ok()

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if options:
            raise ValueError("MarketsProcess.reset: options are not supported")
        if self._pending:
            raise RuntimeError("MarketsProcess.reset with steps still unanswered")
        self._conn.send(("reset", seed))
        obs, infos = self._answer()
        return unpack(obs), infos

    def step_async(self, lo: int, actions: list[dict]) -> None:
        """Send the actions of sub-envs ``lo .. lo + len(actions) - 1``; do not wait. RLlib's
        integer actions, where the sub-envs step from action vectors, go as one matrix."""
        matrix = _int_matrix(actions, self._agents) if self._vectors and actions else None
        if matrix is not None:
            self._conn.send(("vstep", lo, len(actions), matrix.tobytes()))
        else:
            self._conn.send(("step", lo, pack(actions)))
        self._pending.append(lo)

    def step_wait(self):
        """The results of the oldest unanswered :meth:`step_async`: lists of observations,
        rewards, terminateds, truncateds and infos of its sub-envs. The measures of the episodes
        that ended come in a later message (:meth:`flush_counts`)."""
        lo = self._pending.pop(0)
        answer = self._answer()
        self.answers[answer[0]] += 1
        if answer[0] == "vector":
            _, groups, rewards, ended = answer
            obs, rew, term, trunc, info = self._from_vector(groups, rewards, ended)
        else:
            _, obs, rew, term, trunc, info, ended = answer
            obs = unpack(obs)
        for j in ended:
            self._counts_due += 1
            self.envs[lo + j]._ended()  # its measures come in a later message
        return obs, rew, term, trunc, info

    def _from_vector(self, groups: list, rewards: tuple, ended: list[int]) -> tuple:
        """The per-agent dicts of a ``step_vector`` answer (what the sub-envs' ``step`` returns:
        :class:`agents.env.TwinMultiAgentEnv`'s observations, rewards, flags and infos)."""
        names = self.envs[0].possible_agents
        R = _array(rewards).tolist()
        k = len(R)
        obs: list[dict] = [{} for _ in R]
        start = 0
        for n, xs, ms in groups:
            group = names[start : start + n]
            start += n
            X, M = _array(xs), _array(ms)  # (markets, seats, columns)
            rows = list(X.reshape(k * n, X.shape[-1]))  # (one list of row views: cheapest)
            masks = list(M.reshape(k * n, M.shape[-1]))
            i = 0
            for o in obs:
                for a in group:
                    o[a] = {"observation": rows[i], "action_mask": masks[i]}
                    i += 1
        rew = [dict(zip(names, r, strict=True)) for r in R]
        # as TwinMultiAgentEnv.step: every agent terminated when the episode ended, none
        # truncated, an empty info each
        live = dict.fromkeys(names, False)
        live["__all__"] = False
        over = dict.fromkeys(names, True)
        over["__all__"] = True
        term = [(over if j in ended else live).copy() for j in range(len(R))]
        trunc = [live.copy() for _ in R]
        info = [{a: {} for a in names} for _ in R]
        return obs, rew, term, trunc, info

    def flush_counts(self) -> None:
        """Wait for the episode measures the child has still to send (it sends them after the
        step that ended the episodes, when it has nothing else to do) and hand them to the
        callbacks waiting for them. Answers that come first are kept for their requests."""
        while self._counts_due:
            status, payload = self._recv()
            if status == "counts":
                self._take_counts(payload)
            elif status == "ok" and self._pending:
                self._early.append((status, payload))
            else:
                raise EnvProcessError(f"the env process failed:\n{payload}")

    def step(self, actions: list[dict]):
        self.step_async(0, actions)
        return self.step_wait()

    def busy_seconds(self) -> float:
        """Seconds the child has spent inside its sub-envs' ``step``/``reset`` so far."""
        if self._pending:
            raise RuntimeError("MarketsProcess.busy_seconds with steps still unanswered")
        self._conn.send(("busy",))
        return float(self._answer())

    def close(self, **kwargs: Any) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            while self._pending:
                self.step_wait()
            self._conn.send(("close",))
            self._answer()
        except (EnvProcessError, OSError, BrokenPipeError):
            pass
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._conn.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


def main(argv: list[str] | None = None) -> None:
    """The child's entry point: ``python -m agents.env_process <socket fd>``; the first message
    is ``(env class, env context dict, worker index, number of workers, number of sub-envs)``."""
    argv = sys.argv[1:] if argv is None else argv
    conn = _Conn(int(argv[0]))
    try:
        init = conn.recv()
    except EOFError:
        return
    _serve(conn, *init)


if __name__ == "__main__":
    main()
