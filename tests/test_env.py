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


def test_episode_ends_by_truncation_of_every_seat_at_once(compose):
    """No seat terminates; every seat is truncated together at the episode's last step (after
    the market has closed and its deals have run out), after which ``agents`` is empty. Each
    step's flag dicts are new objects: a caller that changes one does not change the next."""
    env = MarketEnv(compose(*SMALL, "env.expose=all"))
    obs, _ = env.reset(seed=4)
    rng = np.random.default_rng(4)
    steps = 0
    while env.agents:
        everyone = list(env.agents)
        obs, _, terms, truncs, infos = env.step(random_actions(env, obs, rng))
        steps += 1
        assert set(terms) == set(truncs) == set(infos) == set(everyone)
        assert not any(terms.values())
        last = not env.agents
        assert all(truncs.values()) == last and any(truncs.values()) == last
        terms["rp_0"] = truncs["rp_0"] = True  # must not leak into the next step's flags
    assert steps >= 30  # SMALL: 30 ticks of trading, then the closing


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
    for i in range(20):
        acts = {a: int(rng.integers(-3, 20)) for a in env.agents}
        if i % 2:  # RLlib hands categorical actions over as numpy int32 scalars
            acts = {a: np.int32(v) for a, v in acts.items()}
        fast = env._every_seat_actions(acts)
        assert fast is not None
        env._all_acting = False
        general = env._to_market_actions(acts)
        env._all_acting = True
        for f in ("rp_mode", "rp_price_level", "jc_check_prob", "med_collude"):
            x, y = getattr(fast, f), getattr(general, f)
            assert x.dtype == y.dtype and np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), f
    acts.pop("jc_0")  # an idle seat: the general path (its scripted policy) takes over
    assert env._every_seat_actions(acts) is None


def test_fixed_policies_act_as_their_act_batch():
    """A policy that returns rows from ``fixed_batch`` returns exactly them from ``act_batch``
    for any observation and mask, and draws nothing (the env then skips it every step): every
    registered policy of every role, with and without its price-level parameter."""
    from agents.baselines import REGISTRY, PolicyContext, make_policy

    ctx = PolicyContext(n_price_levels=3, default_price_level=1)
    width = {"rp": 12, "jc": 3, "mediator": 2}
    rng = np.random.default_rng(0)
    fixed = set()
    for group, policies in REGISTRY.items():
        for name, (_, params) in policies.items():
            for p in ({}, {"price_level": 2.0}) if "price_level" in params else ({},):
                pol = make_policy(group, name, p, ctx)
                rows = pol.fixed_batch(7)
                if rows is None:
                    continue
                fixed.add((group, name))
                for _ in range(20):
                    mask = (rng.random((7, width[group])) < 0.5).astype(np.int8)
                    mask[:, 0] = 1
                    obs = rng.normal(size=(7, 5)).astype(np.float32)
                    g = np.random.default_rng(1)
                    out = pol.act_batch(obs, mask, g)
                    assert np.array_equal(out, rows) and out.dtype == rows.dtype, (group, name, p)
                    assert g.random() == np.random.default_rng(1).random(), (group, name)
    # the two policies of the default population are the fixed ones
    assert fixed == {("rp", "honest"), ("mediator", "honest_mediator")}


def test_template_actions_equal_acting_every_scripted_seat(compose):
    """The env writes the actions of fixed scripted policies once (its template); each step's
    actions equal those of asking every scripted seat's policy, for learning seats among honest
    nodes and mediators (and an exposed seat left without an action)."""
    cfg = compose(*SMALL, "policies.rp.learning_share=0.34")
    env = MarketEnv(cfg)
    assert env._fixed_groups == {"rp", "mediator"} and env._acting_groups == ["jc"]
    env.observe_build = dict.fromkeys(("rp", "jc", "mediator"), "features")  # every mask
    obs, _ = env.reset(seed=2)
    rng = np.random.default_rng(0)
    for step in range(25):
        acts = random_actions(env, obs, rng)
        if step % 5 == 0:
            acts.pop(next(iter(acts)))
        state = env.market.rng.bit_generator.state  # both ask the JCs' policy: same draws
        fast = env._to_market_actions(acts)
        acting, env._acting_groups = env._acting_groups, ["rp", "jc", "mediator"]
        env.market.rng.bit_generator.state = state
        every = env._to_market_actions(acts)
        env._acting_groups = acting
        for f in ("rp_mode", "rp_price_level", "jc_check_prob", "med_collude"):
            x, y = getattr(fast, f), getattr(every, f)
            assert x.dtype == y.dtype and np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), f
        obs, *_ = env.step(acts)
        if not env.agents:
            break


@pytest.mark.parametrize("mechanisms", ["v1", "all"])
def test_a_replaced_market_is_freed_without_the_cycle_collector(compose, mechanisms):
    # freeze_gc_once (run at the first reset) moves the first market to the collector's
    # permanent generation: it must hold no reference cycles, so that reference counting alone
    # frees it (and every later market) when a reset replaces it. The collector is switched off
    # here: a market still alive after the reset would be one only the collector could free.
    import gc
    import weakref

    from experiments.bench import ALL_MECHANISMS

    extra = ALL_MECHANISMS if mechanisms == "all" else ()
    env = MarketEnv(compose(*SMALL, "env.expose=all", *extra))
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(20):
        obs, *_ = env.step(random_actions(env, obs, rng))
    assert env.market.deals  # the market has state: deals, events, mechanism records
    old, old_observer = weakref.ref(env.market), weakref.ref(env._observer)
    gc.disable()
    try:
        env.reset(seed=1)
        assert old() is None and old_observer() is None
    finally:
        gc.enable()


def test_freeze_gc_once_freezes_once_per_process(compose):
    import gc

    from twin.env import freeze_gc_once

    env = MarketEnv(compose(*SMALL, "env.expose=all"))
    env.reset(seed=0)  # the first reset in this process froze the objects alive then
    frozen = gc.get_freeze_count()
    assert frozen > 0
    assert not freeze_gc_once()  # never again: later episodes add nothing frozen
    env.reset(seed=1)  # (frees the market it replaced, which may have been frozen)
    assert gc.get_freeze_count() <= frozen


def _every_build_combination():
    kinds = ("features", "mask", None)
    return [
        {"rp": a, "jc": b, "mediator": c}
        for a in kinds for b in kinds for c in kinds
    ]  # fmt: skip


@pytest.mark.parametrize("mechanisms", ["v1", "all"])
def test_an_observer_builds_only_what_is_asked_the_same(compose, mechanisms):
    """For every combination of what is built per role, tick after tick (focus deals of every
    role, with every mechanism's columns and masks): a role built with its features has the
    matrix and mask of the full observation, value for value; one built for its mask only has
    that mask and a matrix of zero columns; one not built has no mask."""
    from experiments.bench import ALL_MECHANISMS
    from twin.observe import Observer

    extra = ALL_MECHANISMS if mechanisms == "all" else ()
    cfg = compose(*SMALL, "env.expose=all", "market.job_rate_per_tick=0.5", *extra)
    env = MarketEnv(cfg)
    obs, _ = env.reset(seed=3)
    rng = np.random.default_rng(1)
    L = len(cfg.pricing.price_levels)
    builds = _every_build_combination()
    focus = {"rp": 0, "jc": 0, "mediator": 0}
    for _ in range(60):
        mk = env.market
        full = Observer(mk, L)()
        for role, q in (("rp", mk.exec_q), ("jc", mk.judge_q), ("mediator", mk.med_q)):
            focus[role] += bool(q.q)
        for build in builds:
            o = Observer(mk, L, build)()
            for role, x, m in (("rp", "rp", "rp_mask"), ("jc", "jc", "jc_mask"),
                               ("mediator", "mediator", "mediator_mask")):  # fmt: skip
                X, M, FX, FM = getattr(o, x), getattr(o, m), getattr(full, x), getattr(full, m)
                if build[role] == "features":
                    assert X.dtype == FX.dtype and np.array_equal(X, FX), (build, role)
                else:
                    assert X.shape == (len(FX), 0), (build, role)
                if build[role] is None:
                    assert M is None, (build, role)
                else:
                    assert M.dtype == FM.dtype and np.array_equal(M, FM), (build, role)
        obs, *_ = env.step(random_actions(env, obs, rng))
    assert min(focus.values()) >= 3, focus  # every role had decisions pending in some ticks


def test_an_observer_names_a_bad_build(compose):
    from twin.observe import Observer

    env = MarketEnv(compose(*SMALL))
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"unknown role 'node'.*'rp', 'jc', 'mediator'"):
        Observer(env.market, 3, {"node": "mask"})
    with pytest.raises(ValueError, match=r"build\['jc'\]: 'all' is not one of"):
        Observer(env.market, 3, {"jc": "all"})


@pytest.mark.parametrize(
    ("overrides", "build"),
    [
        # learning nodes exposed; clients check from their masks; honest mediators: template
        ((), {"rp": "features", "jc": "mask", "mediator": None}),
        # the Modicum attacker reads a feature column; colluding mediators read their masks
        (
            ("policies.jc.policy=modicum_attacker", "policies.mediator.policy=colluding_mediator"),
            {"rp": "features", "jc": "features", "mediator": "mask"},
        ),
        # every seat exposed: everything
        (("env.expose=all",), {"rp": "features", "jc": "features", "mediator": "features"}),
        # no learning seat, honest nodes and mediators: the nodes are all in the template
        (("policies.rp.learning_share=0",), {"rp": None, "jc": "mask", "mediator": None}),
    ],
)
def test_the_env_builds_what_its_seats_read(compose, overrides, build):
    assert MarketEnv(compose(*SMALL, *overrides)).observe_build == build


@pytest.mark.parametrize(
    "overrides",
    [
        ("policies.rp.learning_share=0.34",),
        ("policies.rp.learning_share=0.34", "policies.jc.learning_share=0.5",
         "policies.mediator.policy=colluding_mediator", "collusion=rings"),
        ("policies.rp.learning_share=0.34", "env.jc_action=probability",
         "policies.jc.learning_share=0.5"),
    ],
)  # fmt: skip
def test_building_only_what_is_read_changes_nothing(compose, overrides):
    """The same seeded episode with the env's own build and with every role built in full:
    the same observations, rewards and flags for the exposed agents every step, and the same
    event log and balances, byte for byte (exposed seats left without an action now and then
    play their scripted policy, which reads the observation rows of the built roles)."""
    runs = []
    for full in (False, True):
        env = MarketEnv(compose(*SMALL, *overrides))
        every = dict.fromkeys(("rp", "jc", "mediator"), "features")
        assert env.observe_build != every  # (some role is left out or built for its mask)
        if full:
            env.observe_build = every
        obs, _ = env.reset(seed=4)
        rng = np.random.default_rng(2)
        trace = [obs]
        for step in range(200):
            acts = random_actions(env, obs, rng)
            if step % 7 == 0:
                acts.pop(next(iter(acts)))
            obs, rew, term, trunc, _ = env.step(acts)
            trace.append((obs, rew, term, trunc))
            if not env.agents:
                break
        mk = env.market
        runs.append((trace, mk.log.to_bytes(), repr((mk.ledger.wallet, mk.cost_wei, mk.tick))))
    (ta, la, ba), (tb, lb, bb) = runs
    assert la == lb and ba == bb
    assert len(ta) == len(tb)
    for k, (x, y) in enumerate(zip(ta, tb, strict=True)):
        xo, yo = (x, y) if k == 0 else (x[0], y[0])
        assert xo.keys() == yo.keys(), k
        for agent in xo:
            for field in xo[agent]:
                assert np.array_equal(xo[agent][field], yo[agent][field]), (k, agent, field)
        if k:
            assert x[1:] == y[1:], k


def test_policies_say_whether_they_read_features():
    """Only the policies that read observation columns say so; a new policy that overrides
    ``act_batch`` without saying is taken to read them."""
    from agents.baselines import REGISTRY, Policy, PolicyContext, make_policy

    ctx = PolicyContext(n_price_levels=3, default_price_level=1)
    readers = {
        (group, name)
        for group, policies in REGISTRY.items()
        for name in policies
        if make_policy(group, name, {}, ctx).reads_features
    }
    assert readers == {("rp", "ccc_rational"), ("jc", "modicum_attacker")}

    class Mine(Policy):
        role = "jc"

        def act_batch(self, obs, mask, rng):
            return obs[:, :1]

    class Quiet(Policy):
        role = "jc"
        reads_features = False

        def act_batch(self, obs, mask, rng):
            return np.zeros((len(obs), 1), np.int64)

    assert Mine.reads_features and not Quiet.reads_features


@pytest.mark.parametrize(
    "overrides",
    [
        ("policies.rp.learning_share=0.34",),
        ("policies.rp.learning_share=0.34", "policies.jc.learning_share=0.5",
         "policies.mediator.policy=colluding_mediator", "collusion=rings"),
        ("env.expose=all",),
    ],
)  # fmt: skip
def test_preparing_steps_ahead_changes_nothing(compose, overrides):
    """The same seeded episode with the scripted seats' actions computed ahead
    (``prepare_step`` after each reset and step, sometimes twice) and without: the same
    observations, rewards and event log (exposed seats left without an action now and then
    play their scripted policy at the step, after the prepared draws, as without)."""
    runs = []
    for ahead in (False, True):
        env = MarketEnv(compose(*SMALL, *overrides))
        obs, _ = env.reset(seed=6)
        rng = np.random.default_rng(3)
        trace = [obs]
        for step in range(200):
            if ahead:
                env.prepare_step()
                if step % 3 == 0:
                    env.prepare_step()  # (once per step: the second call does nothing)
            acts = random_actions(env, obs, rng)
            if step % 7 == 0:
                acts.pop(next(iter(acts)))
            obs, rew, *_ = env.step(acts)
            trace.append((obs, rew))
            if not env.agents:
                break
        runs.append((trace, env.market.log.to_bytes()))
    (ta, la), (tb, lb) = runs
    assert la == lb and len(ta) == len(tb)
    for k, (x, y) in enumerate(zip(ta, tb, strict=True)):
        xo, yo = (x, y) if k == 0 else (x[0], y[0])
        for agent in xo:
            for field in xo[agent]:
                assert np.array_equal(xo[agent][field], yo[agent][field]), (k, agent, field)
        if k:
            assert x[1] == y[1], k


def test_step_vector_is_step_with_arrays(compose):
    """The same seeded episode through ``step`` (dicts) and ``step_vector`` (an action vector,
    arrays back): the same observation and mask rows, rewards, episode end and event log. A
    vector of the wrong length, or an env whose clients act with probabilities, is refused."""
    cfg = compose(*SMALL, "policies.rp.learning_share=0.67", "policies.mediator.learning_share=0.5")
    a, b = MarketEnv(cfg), MarketEnv(cfg)
    assert b.vector_ok and b.possible_agents == ["rp_0", "rp_1", "mediator_0"]
    obs, _ = a.reset(seed=8)
    b.reset(seed=8)
    rng = np.random.default_rng(5)
    for _ in range(200):
        acts = random_actions(a, obs, rng)
        obs, rew, term, trunc, _ = a.step(acts)
        blocks, rewards, done = b.step_vector(np.array([acts[n] for n in b.possible_agents]))
        rows = [(x, m) for X, M in blocks for x, m in zip(X, M, strict=True)]
        for name, (x, m) in zip(a.possible_agents, rows, strict=True):
            assert np.array_equal(obs[name]["observation"], x) and x.dtype == np.float32
            assert np.array_equal(obs[name]["action_mask"], m) and m.dtype == np.int8
        assert rewards.tolist() == [rew[n] for n in a.possible_agents]
        assert done == all(trunc.values()) and b.agents == a.agents
        if done:
            break
    assert done and a.market.log.to_bytes() == b.market.log.to_bytes()
    b.reset(seed=1)
    with pytest.raises(ValueError, match=r"2 actions for 3 agents \(rp_0, rp_1, mediator_0\)"):
        b.step_vector(np.array([0, 0]))
    c = MarketEnv(compose(*SMALL, "env.jc_action=probability", "policies.jc.learning_share=0.5"))
    c.reset(seed=0)
    with pytest.raises(ValueError, match="jc_action=probability"):
        c.step_vector(np.zeros(len(c.possible_agents), np.int64))
