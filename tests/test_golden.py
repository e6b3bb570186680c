"""Golden hashes: the event log and the balances of two seeded runs, pinned.

Performance work must not change behaviour: the same seed and actions give the same event log,
byte for byte. These hashes were recorded before the performance work and still hold after it.
A change that is meant to alter the market's behaviour (a rule, a default, the order of draws)
changes them: check that the change is intended, then record the new values printed by the
failing assertion. Only integers are hashed (events and wei balances; no floats from ``libm``).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from experiments.bench import ALL_MECHANISMS
from tests.conftest import random_actions
from twin.env import MarketEnv

SMALL = ("market.n_job_creators=8", "market.n_resource_providers=10", "market.n_mediators=4")
CASES = {
    # the default market and protocol, every seat exposed, a whole episode (settled at the end)
    "v1": ((*SMALL, "env.expose=all", "market.episode_ticks=60"), 11, 200),
    # every mechanism of the library at once, 100 ticks of trading
    "all_mechanisms": ((*SMALL, "env.expose=all", *ALL_MECHANISMS), 12, 100),
}
GOLDEN = {  # (events, balances), recorded at fcd1372 (before the performance work)
    "v1": ("d46fca8dbb67527a54fc", "1888096d2463682d9e69"),
    "all_mechanisms": ("fc38c75028d0b9b82b7d", "8869deb60868c4ccf385"),
}


def run_hashes(compose, overrides, seed: int, steps: int) -> tuple[str, str]:
    env = MarketEnv(compose(*overrides))
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        if not env.agents:
            break
        obs, *_ = env.step(random_actions(env, obs, rng))
    mk = env.market
    events = hashlib.sha256(mk.log.to_bytes()).hexdigest()[:20]
    money = repr((mk.ledger.wallet, mk.ledger.escrow, mk.ledger.locked, mk.cost_wei, mk.tick))
    return events, hashlib.sha256(money.encode()).hexdigest()[:20]


@pytest.mark.parametrize("case", sorted(CASES))
def test_event_log_and_balances_are_pinned(compose, case):
    overrides, seed, steps = CASES[case]
    assert run_hashes(compose, overrides, seed, steps) == GOLDEN[case]
