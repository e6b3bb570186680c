"""A fixed string-hash seed for every process that samples with RLlib.

RLlib keeps the agents of a multi-agent episode in Python sets of agent ids (strings:
``MultiAgentEpisode.get_agents_to_act``), and builds each module's forward batch in the order it
iterates them. A set of strings iterates in an order that depends on the process's hash seed,
which CPython draws at random at start-up unless ``PYTHONHASHSEED`` is set. With two learning
seats sharing a policy, that order decides which of the batch's random draws each seat gets, so
two processes with the same config and seed could sample different actions: runs were
reproducible within a process, not across processes (seen as two outcomes of the same training).

So the training processes run with ``PYTHONHASHSEED=0``:

- the command-line tools that train (``twin-train``, ``twin-run``, ``twin-exploit``) re-execute
  themselves once with it set (:func:`reexec_with_fixed_hash_seed`), before any work;
- Ray's workers (Tune trials, remote env runners) get it in the job's ``runtime_env``
  (:data:`RUNTIME_ENV`, used by :func:`agents.train.ray_session`);
- ``make run`` and ``make test`` set it in the environment.

A notebook or script that calls :func:`agents.train.train` directly should itself be started
with ``PYTHONHASHSEED=0`` to get the same numbers as the command line (training is still
reproducible within that process).
"""

from __future__ import annotations

import os
import sys

HASH_SEED = "0"
#: the ``runtime_env`` of the Ray jobs the twin starts or joins
RUNTIME_ENV = {"env_vars": {"PYTHONHASHSEED": HASH_SEED}}


def fixed_hash_seed() -> bool:
    """This process hashes strings with :data:`HASH_SEED`."""
    return os.environ.get("PYTHONHASHSEED") == HASH_SEED


def reexec_with_fixed_hash_seed() -> None:
    """Replace this process by the same command with ``PYTHONHASHSEED=0``, unless it already
    runs with it (then return). Call it first thing in a command-line tool's ``main``."""
    if fixed_hash_seed():
        return
    env = dict(os.environ, PYTHONHASHSEED=HASH_SEED)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
