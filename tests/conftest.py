"""Shared fixtures: composing configs quickly and running scripted markets."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def compose():
    import twin

    def _compose(*overrides: str):
        return twin.compose(list(overrides))

    return _compose


def random_actions(env, obs, rng: np.random.Generator) -> dict:
    """A uniformly random action allowed by each agent's mask."""
    out = {}
    for a in env.agents:
        space = env.action_space(a)
        if hasattr(space, "n"):
            out[a] = int(rng.choice(np.flatnonzero(obs[a]["action_mask"])))
        else:
            out[a] = rng.random(1).astype(np.float32)
    return out
