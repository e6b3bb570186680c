"""The PettingZoo environment: API compliance, seeding, masks, rewards and seat layout."""

from __future__ import annotations

import numpy as np
import pytest
from pettingzoo.test import parallel_api_test, parallel_seed_test

from tests.conftest import random_actions
from twin.env import MarketEnv

SMALL = (
    "market.n_job_creators=4",
    "market.n_resource_providers=3",
    "market.n_mediators=2",
    "market.episode_ticks=30",
)


@pytest.mark.parametrize("jc_action", ["discrete", "probability"])
def test_parallel_api(compose, jc_action):
    cfg = compose(*SMALL, "env.expose=all", f"env.jc_action={jc_action}")
    parallel_api_test(MarketEnv(cfg), num_cycles=200)


def test_parallel_api_learning_seats_only(compose):
    cfg = compose(*SMALL, "policies.rp.learning_share=0.34", "policies.jc.learning_share=0.5")
    env = MarketEnv(cfg)
    assert env.possible_agents == ["rp_0", "jc_0", "jc_1"]
    parallel_api_test(env, num_cycles=200)


def test_seed_test(compose):
    cfg = compose(*SMALL, "env.expose=all")
    parallel_seed_test(lambda: MarketEnv(cfg), num_cycles=100)


def _episode_bytes(cfg, seed):
    env = MarketEnv(cfg)
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    rewards = []
    while env.agents:
        obs, rew, *_ = env.step(random_actions(env, obs, rng))
        rewards.append(sorted(rew.items()))
    return env.market.log.to_bytes(), rewards


def test_same_seed_same_event_log_byte_for_byte(compose):
    cfg = compose(*SMALL, "env.expose=all", "policies.rp.policy=cheat_with_probability")
    a, ra = _episode_bytes(cfg, 7)
    b, rb = _episode_bytes(cfg, 7)
    c, _ = _episode_bytes(cfg, 8)
    assert len(a) > 1000
    assert a == b and ra == rb
    assert a != c


def test_rewards_are_wealth_change_minus_cost(compose):
    # Sum of an agent's rewards over the episode = final wealth - genesis wealth - cost (tokens).
    cfg = compose(*SMALL, "env.expose=all")
    env = MarketEnv(cfg)
    obs, _ = env.reset(seed=3)
    rng = np.random.default_rng(3)
    total = dict.fromkeys(env.agents, 0.0)
    while env.agents:
        obs, rew, *_ = env.step(random_actions(env, obs, rng))
        for a, r in rew.items():
            total[a] += r
    mk = env.market
    wealth = mk.wealth_tokens()
    for name, _group, acct, _kind, _pol in env.seat_table():
        expected = wealth[acct] - mk.genesis_wealth[acct] - mk.cost_tokens[acct]
        assert total[name] == pytest.approx(expected, abs=1e-9)


def test_masks(compose):
    cfg = compose(*SMALL, "env.expose=all", "collusion=rings", "market.n_mediators=2")
    env = MarketEnv(cfg)
    obs, _ = env.reset(seed=0)
    # nothing to decide at reset: RPs may only choose "honest" (a no-op); JCs only "wait"
    L = len(cfg.pricing.price_levels)
    assert obs["rp_0"]["action_mask"].reshape(4, L).all(axis=1).tolist() == [
        True,
        False,
        False,
        False,
    ]
    assert obs["jc_0"]["action_mask"].tolist() == [0, 0, 1]
    assert obs["mediator_0"]["action_mask"].tolist() == [1, 0]
    rng = np.random.default_rng(0)
    seen = {"rp": False, "jc": False}
    while env.agents:
        obs, *_ = env.step(random_actions(env, obs, rng))
        for a in env.agents:
            o, m = obs[a]["observation"], obs[a]["action_mask"]
            if a.startswith("rp") and m.reshape(4, -1)[1].any():
                seen["rp"] = True
                assert o[9] == 1.0  # a focus deal is shown when cheating is possible
            if a.startswith("jc") and m[0]:
                seen["jc"] = True
                assert o[4] == 1.0
    assert all(seen.values())


def test_scripted_seats_fill_the_rest(compose):
    cfg = compose(*SMALL, "policies.rp.learning_share=1.0", "policies.rp.policy=always_cheat")
    env = MarketEnv(cfg)
    assert [a for a in env.possible_agents if not a.startswith("rp")] == []
    kinds = {k for _, g, _, k, _ in env.seat_table() if g == "jc"} if env.reset(seed=0) else None
    assert kinds == {"scripted"}


def test_every_seat_actions_equal_the_general_path(compose):
    """The fast path for integer actions of every seat gives the general path's Actions, with
    out-of-range choices (negative, too large) clipped or mapped the same way."""
    cfg = compose(*SMALL, "env.expose=all")
    env = MarketEnv(cfg)
    env.reset(seed=3)
    assert env._all_acting
    rng = np.random.default_rng(0)
    for _ in range(20):
        acts = {a: int(rng.integers(-3, 20)) for a in env.agents}
        fast = env._every_seat_actions(acts)
        env._all_acting = False
        general = env._to_market_actions(acts)
        env._all_acting = True
        for f in ("rp_mode", "rp_price_level", "jc_check_prob", "med_collude"):
            x, y = getattr(fast, f), getattr(general, f)
            assert x.dtype == y.dtype and np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), f
    acts.pop("jc_0")  # an idle seat: the general path (its scripted policy) takes over
    assert env._every_seat_actions(acts) is None
