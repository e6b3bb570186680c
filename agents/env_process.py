"""An env runner's markets stepped in a child process, so that the env and RLlib overlap.

With ``train.env_process=true``, :class:`agents.env_runner.TwinEnvRunner` does not hold its
markets: a child process does (:func:`_serve`), and the runner talks to it through
:class:`MarketsProcess`, a stand-in for RLlib's ``SyncVectorMultiAgentEnv`` (same spaces, same
``reset``/``step`` results, the same next-step auto-reset) that can also step a *slice* of its
sub-envs without waiting (:meth:`MarketsProcess.step_async`, then :meth:`MarketsProcess.step_wait`).
The runner splits its markets into two lanes and steps one lane's markets in the child while it
runs RLlib's connectors and forward pass for the other's (see :mod:`agents.env_runner`).

A market whose episode ended is reset right after the step's answer is sent, while the runner
works on it (an auto-reset draws nothing from the step's actions, so doing it early changes
nothing); its next step hands out that reset's observations.

What crosses the pipe each step: the actions of a lane's sub-envs, and back their observations,
rewards, flags and infos (pickled), plus, for a market whose episode just ended, its episode
measures (:meth:`agents.env.TwinMultiAgentEnv.episode_counts`), since the finished market stays
in the child: the stand-in sub-envs (:class:`RemoteMarket`) hand them to
:class:`agents.callbacks.MarketMetricsCallback`.

The child is a fresh interpreter (``python -m agents.env_process``; not a fork of a process
running Ray and torch threads, and not ``multiprocessing``'s spawn, which re-imports the caller's
main script), joined to the runner by a private socket pair. It runs with
``PYTHONHASHSEED=0`` (:mod:`agents.hashseed`) and one thread per maths library, builds its
sub-envs exactly as RLlib's runner builds them (the env class called with the
runner's ``EnvContext``; RLlib's initial reset seeds sub-env ``i`` with ``seed + i``), and keeps
the seconds it spends inside the sub-envs' ``step``/``reset`` (:meth:`MarketsProcess.busy_seconds`).
An exception in the child is raised in the runner as :class:`EnvProcessError` with the child's
traceback; a child that dies is reported the same way.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import gymnasium as gym

from agents.hashseed import HASH_SEED


class EnvProcessError(RuntimeError):
    """The env process failed (an exception in a market, or the process died)."""


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
    autoreset = [False] * num_envs
    ready: dict[int, tuple] = {}  # sub-env -> (obs, infos) of a reset done ahead of its step
    while True:
        try:
            msg = conn.recv()
        except EOFError:  # the runner is gone
            break
        cmd = msg[0]
        try:
            if cmd == "step":
                _, lo, actions = msg
                out_obs, out_rew, out_term, out_trunc, out_info, counts = [], [], [], [], [], {}
                t0 = clock()
                for j, action in enumerate(actions):
                    i = lo + j
                    env = envs[i]
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
                        counts[j] = env.episode_counts()
                    out_obs.append(obs)
                    out_rew.append(rew)
                    out_term.append(term)
                    out_trunc.append(trunc)
                    out_info.append(info)
                busy += clock() - t0
                conn.send(("ok", (out_obs, out_rew, out_term, out_trunc, out_info, counts)))
                if counts:  # reset the finished markets now, while the runner works
                    t0 = clock()
                    for j in counts:
                        ready[lo + j] = envs[lo + j].reset()
                    busy += clock() - t0
            elif cmd == "reset":
                _, seed = msg
                t0 = clock()
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
                conn.send(("ok", (out_obs, out_info)))
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
    env = env.unwrapped
    return {
        "possible_agents": list(env.possible_agents),
        "observation_spaces": dict(env.observation_spaces),
        "action_spaces": dict(env.action_spaces),
    }


class RemoteMarket:
    """A sub-env of :class:`MarketsProcess` as the runner and callbacks see it: its spaces, and
    the episode measures of its market's last finished episode."""

    def __init__(self, spec: dict) -> None:
        self.possible_agents = spec["possible_agents"]
        self.observation_spaces = spec["observation_spaces"]
        self.action_spaces = spec["action_spaces"]
        self._counts: list[dict] | None = None

    @property
    def unwrapped(self) -> RemoteMarket:
        return self

    def get_observation_space(self, agent: str) -> gym.Space:
        return self.observation_spaces[agent]

    def get_action_space(self, agent: str) -> gym.Space:
        return self.action_spaces[agent]

    def episode_counts(self) -> list[dict] | None:
        """The measures of the episode that ended at the last step (None before the first)."""
        return self._counts


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
        self._conn = Connection(mine.detach())
        self._conn.send((env_cls, dict(env_ctx), int(getattr(env_ctx, "worker_index", 0)),
                         int(getattr(env_ctx, "num_workers", 0)), num_envs))  # fmt: skip
        self._pending: list[int] = []  # the first sub-env of each unanswered step
        self._closed = False
        self._hello = spec  # the start-up message still to read, and what it must say
        if spec is None:
            spec = self._answer()
        self.num_envs = num_envs
        self.envs = [RemoteMarket(spec) for _ in range(num_envs)]
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

    def _answer(self) -> Any:
        if self._hello is not None:
            expected, self._hello = self._hello, None
            got = self._answer()  # the child's start-up message
            if got["possible_agents"] != expected["possible_agents"]:
                raise EnvProcessError(
                    f"the env process built other agents: {got['possible_agents']} instead of "
                    f"{expected['possible_agents']}"
                )
        try:
            status, payload = self._conn.recv()
        except (EOFError, OSError) as e:
            try:
                code = self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                code = None
            raise EnvProcessError(
                f"the env process (pid {self._proc.pid}) died (exit code {code})"
            ) from e
        if status != "ok":
            raise EnvProcessError(f"the env process failed:\n{payload}")
        return payload

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if options:
            raise ValueError("MarketsProcess.reset: options are not supported")
        if self._pending:
            raise RuntimeError("MarketsProcess.reset with steps still unanswered")
        self._conn.send(("reset", seed))
        return self._answer()

    def step_async(self, lo: int, actions: list[dict]) -> None:
        """Send the actions of sub-envs ``lo .. lo + len(actions) - 1``; do not wait."""
        self._conn.send(("step", lo, actions))
        self._pending.append(lo)

    def step_wait(self):
        """The results of the oldest unanswered :meth:`step_async`: lists of observations,
        rewards, terminateds, truncateds and infos of its sub-envs."""
        lo = self._pending.pop(0)
        obs, rew, term, trunc, info, counts = self._answer()
        for j, c in counts.items():
            self.envs[lo + j]._counts = c
        return obs, rew, term, trunc, info

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
    conn = Connection(int(argv[0]))
    try:
        init = conn.recv()
    except EOFError:
        return
    _serve(conn, *init)


if __name__ == "__main__":
    main()
