"""The RLlib side without a cluster: config builder, policy mapping, RLModules, measures."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agents.baselines import RP_MODES
from agents.config_builder import (
    SCRIPTED_SUFFIX,
    build_algo_config,
    module_specs,
    policy_mapping_fn,
    seat_layout,
)
from agents.measures import episode_counts, rates
from agents.modules import (
    DictObsPPOTorchRLModule,
    MaskedPPOTorchRLModule,
    ScriptedRLModule,
    greedy_action,
)
from twin.config import ConfigError
from twin.env import MarketEnv
from twin.metrics import deals_frame

TINY = (
    "market.n_job_creators=4",
    "market.n_resource_providers=5",
    "market.n_mediators=2",
    "market.episode_ticks=30",
    "train=smoke",
)


def test_build_is_pure_and_wires_policies(compose):
    import ray

    cfg = compose(*TINY, "policies.rp.learning_share=0.4")
    conf = build_algo_config(cfg)
    assert not ray.is_initialized()
    assert set(conf.policies) == {"rp"}
    assert conf.policies_to_train == ["rp"]
    assert conf.num_env_runners == 0 and conf.num_learners == 0
    assert conf.train_batch_size_per_learner == cfg.train.train_batch_size
    assert conf.policy_mapping_fn("rp_1", None) == "rp"
    specs = conf.rl_module_spec.rl_module_specs
    assert specs["rp"].module_class is MaskedPPOTorchRLModule


@pytest.mark.parametrize(
    "mapping,expect",
    [
        ("shared_per_role", {"rp_0": "rp", "rp_1": "rp", "rp_2": "rp" + SCRIPTED_SUFFIX}),
        ("per_agent", {"rp_0": "rp_0", "rp_1": "rp_1", "rp_2": "rp" + SCRIPTED_SUFFIX}),
    ],
)
def test_policy_mapping(compose, mapping, expect):
    cfg = compose(*TINY, "policies.rp.learning_share=0.4", "train.scripted_seats=modules",
                  f"train.policy_mapping={mapping}")  # fmt: skip
    layout = seat_layout(cfg)
    for agent, pid in expect.items():
        assert policy_mapping_fn(agent, None, layout=layout) == pid
    assert policy_mapping_fn("jc_3", None, layout=layout) == "jc" + SCRIPTED_SUFFIX
    assert set(layout.scripted) == {"rp_scripted", "jc_scripted", "mediator_scripted"}
    conf = build_algo_config(cfg)
    assert set(conf.policies_to_train) == set(layout.learning)
    specs = conf.rl_module_spec.rl_module_specs
    assert specs["jc_scripted"].module_class is ScriptedRLModule
    assert specs["jc_scripted"].model_config["policy"] == "check_with_probability"
    with pytest.raises(KeyError, match="rp_9"):
        policy_mapping_fn("rp_9", None, layout=layout)


def test_probability_action_gets_the_plain_module(compose):
    cfg = compose(*TINY, "policies.rp.learning_share=0", "policies.jc.learning_share=0.5",
                  "env.jc_action=probability")  # fmt: skip
    specs = module_specs(cfg, seat_layout(cfg))
    assert specs["jc"].module_class is DictObsPPOTorchRLModule


@pytest.mark.parametrize(
    "overrides,needle",
    [
        (
            ("policies.rp.learning_share=0",),
            "no learning seats: set policies.<group>.learning_share",
        ),
        (("train.train_batch_size=333",), "train.train_batch_size = 333 must be"),
        (("train.policy_mapping=shared",), "train.policy_mapping = 'shared' is not allowed"),
        (("train.lrr=0.1",), "train.lrr"),
    ],
)
def test_bad_training_config_names_the_field(compose, overrides, needle):
    with pytest.raises(ConfigError, match=None) as e:
        build_algo_config(compose(*TINY, *overrides))
    assert needle in str(e.value)


def _spec_module(compose, *overrides):
    cfg = compose(*TINY, *overrides)
    layout = seat_layout(cfg)
    return cfg, {pid: spec.build() for pid, spec in module_specs(cfg, layout).items()}


def test_masked_module_never_picks_a_masked_action(compose):
    cfg, mods = _spec_module(compose, "policies.rp.learning_share=0.4")
    env = MarketEnv(cfg)
    space = env.action_space("rp_0")
    mod = mods["rp"]
    rng = np.random.default_rng(0)
    n = 256
    mask = (rng.random((n, space.n)) < 0.3).astype(np.float32)
    mask[np.arange(n), rng.integers(0, space.n, n)] = 1.0
    obs = {"observation": torch.randn(n, len(env.observation_space("rp_0")["observation"].low)),
           "action_mask": torch.from_numpy(mask)}  # fmt: skip
    for fwd in (mod.forward_exploration, mod.forward_inference):
        logits = fwd({"obs": dict(obs)})["action_dist_inputs"]
        dist = torch.distributions.Categorical(logits=logits)
        sampled = dist.sample().numpy()
        assert (mask[np.arange(n), sampled] == 1).all()
        greedy = greedy_action(space, logits.detach().numpy(), mask)
        assert (mask[np.arange(n), greedy] == 1).all()
    values = mod.compute_values({"obs": dict(obs)})
    assert values.shape == (n,)


def test_scripted_module_plays_its_baseline(compose):
    cfg, mods = _spec_module(compose, "policies.rp.learning_share=0.2",
                             "train.scripted_seats=modules",
                             "policies.rp.policy=always_cheat")  # fmt: skip
    env = MarketEnv(cfg, expose="all")
    obs, _ = env.reset(seed=0)
    mod = mods["rp" + SCRIPTED_SUFFIX]
    names = env.names["rp"][1:]
    while not any(obs[a]["observation"][9] == 1 for a in names):  # until a node has a deal
        obs, *_ = env.step({a: 0 for a in env.agents if not a.startswith("jc")})
    batch = {"obs": {k: torch.from_numpy(np.stack([obs[a][k] for a in names]))
                     for k in ("observation", "action_mask")}}  # fmt: skip
    acts = mod.forward_inference(batch)["actions"]
    L = env.n_levels
    modes = [RP_MODES[int(act) // L] for act in acts]
    assert modes == ["cheat" if obs[a]["observation"][9] == 1 else "honest" for a in names]
    assert "cheat" in modes
    with pytest.raises(NotImplementedError, match="never trained"):
        mod.forward_train(batch)


def _finished_market(compose, *overrides):
    cfg = compose(*TINY, "policies.rp.policy=cheat_with_probability", *overrides)
    env = MarketEnv(cfg, expose="learning")
    env.reset(seed=5)
    escrow_integral = 0.0
    prev_t, prev_escrow = env.market.now, 0.0
    while env.agents:
        env.step({a: 0 for a in env.agents})
        mk = env.market
        escrow_integral += prev_escrow * (mk.now - prev_t)
        prev_t, prev_escrow = mk.now, float(sum(mk.ledger.escrow)) / 1e18
    return cfg, env, escrow_integral


def test_measures_match_the_collector_and_a_tick_by_tick_integral(compose):
    cfg, env, integral = _finished_market(compose, "policies.rp.learning_share=0.4")
    mk = env.market
    counts = episode_counts(mk, env.seat_table(), value_multiple=0.0)
    table = rates(counts).set_index(["role", "seats"])
    deals = deals_frame(mk)
    market = table.loc[("market", "all")]
    executed = deals[deals["mode"] != "none"]
    assert market.cheat_rate == pytest.approx(executed.cheated.mean())
    assert market.deals_per_episode == len(deals)
    revenue = (deals.slashed_rp_wei.sum() + deals.slashed_jc_wei.sum()) / 1e18
    assert market.protocol_revenue_tokens == pytest.approx(revenue)
    duration = mk.now - (mk.now - mk.tick * cfg.market.tick_s)
    assert market.collateral_locked_tokens == pytest.approx(integral / duration)
    learning = table.loc[("rp", "learning")]
    mine = deals[deals.rp.isin(mk.rp_acct[:2])]
    assert learning.deals_per_episode == len(mine)
    # with a zero job value, client surplus is the JCs' mean payoff
    jc = table.loc[("jc", "all")]
    assert jc.client_surplus_tokens == pytest.approx(jc.payoff_tokens)


def test_rates_pool_counts_not_ratios(compose):
    _, env, _ = _finished_market(compose, "policies.rp.learning_share=0.4")
    c1 = episode_counts(env.market, env.seat_table(), 1.5)
    env.reset(seed=6)
    while env.agents:
        env.step({a: 0 for a in env.agents})
    c2 = episode_counts(env.market, env.seat_table(), 1.5)
    pooled = rates(c1 + c2).set_index(["role", "seats"]).loc[("market", "all")]
    a = {c["role"]: c for c in c1 if c["seats"] == "all"}["market"]
    b = {c["role"]: c for c in c2 if c["seats"] == "all"}["market"]
    assert pooled.cheat_rate == pytest.approx(
        (a["cheated"] + b["cheated"]) / (a["executed"] + b["executed"])
    )
    assert pooled.episodes == 2


def _counts_from_frames(mk, seats, value_multiple: float) -> list[dict]:
    """The oracle: the counts of :func:`episode_counts` computed from the collector's pandas
    frames (``deals_frame``, ``agents_frame``) and the event log, as episode_counts did before it
    read the deals directly."""
    from agents.measures import ROLES, SEATS, SUBMITTED, _escrow_integrals
    from twin.deals import PAID_STATES
    from twin.market import GENESIS_TIME_S
    from twin.metrics import agents_frame

    deals, agents = deals_frame(mk), agents_frame(mk, seats)
    integral, revenue = _escrow_integrals(mk)
    value = np.zeros(mk.n_accounts)
    for d in mk.deals:
        if d.correct and d.state in PAID_STATES:
            value[d.jc] += value_multiple * mk.base_price * d.units / 1e18
    n = len(deals)
    col = (lambda c, dt: deals[c].to_numpy(dt)) if n else (lambda c, dt: np.zeros(0, dt))
    checked = col("checked", bool)
    flags = {"executed": col("mode", object) != "none", "cheated": col("cheated", bool),
             "submitted": np.isin(col("outcome", object), list(SUBMITTED)), "checked": checked,
             "collusive": col("collusive", bool), "wrong_accepted": col("wrong_accepted", bool)}  # fmt: skip
    role, seat = agents.role.to_numpy(object), agents.seat.to_numpy(object)
    acct, pay = agents.account.to_numpy(np.int64), agents.payoff_tokens.to_numpy(float)
    groups = [("market", "all", np.ones(len(agents), bool), np.ones(n, bool))]
    for r in ROLES:
        for kind in SEATS:
            sel = (role == r) & ((seat == "learning") if kind == "learning" else True)
            if kind == "learning" and not sel.any():
                continue
            dl = np.isin(col(r, np.int64), acct[sel]) & (checked if r == "mediator" else True)
            groups.append((r, kind, sel, dl))
    out = []
    for r, kind, sel, dl in groups:
        jc = sel & (role == "jc")
        out.append({"role": r, "seats": kind, "episodes": 1, "seats_n": int(sel.sum()),
                    "jc_seats_n": int(jc.sum()), "payoff": float(pay[sel].sum()),
                    "deals": int(dl.sum()), **{k: int((dl & v).sum()) for k, v in flags.items()},
                    "locked_token_s": float(integral[acct[sel]].sum()),
                    "duration_s": float(max(1, mk.now - GENESIS_TIME_S)),
                    "stranded": float(mk.ledger.locked_tokens[acct[sel]].sum()),
                    "surplus": float(pay[jc].sum() + value[acct[jc]].sum()),
                    "revenue": float(revenue[acct[sel]].sum())})  # fmt: skip
    return out


@pytest.mark.parametrize(
    "overrides",
    [("policies.rp.learning_share=0.4", "market.episode_ticks=120"),
     # the deployed contracts' defects (stranded collateral), random nodes and clients: wrong
     # results accepted, checks, slashing
     ("protocol=lilypad_v1_deployed", "policies.rp.policy=random", "policies.jc.policy=random",
      "market.episode_ticks=120"),
     # colluding mediators in rings; learning clients and mediators (their own rows)
     ("collusion=rings", "policies.mediator.policy=colluding_mediator", "policies.jc.policy=always_check",
      "policies.jc.learning_share=0.5", "policies.mediator.learning_share=0.5", "market.episode_ticks=120")],
)  # fmt: skip
def test_episode_counts_equal_the_collector_frames(compose, overrides):
    # episode_counts reads the deals directly (no pandas: it runs at every episode's end in
    # training); every count equals the one computed from the collector's frames, exactly
    _, env, _ = _finished_market(compose, *overrides)
    mk, seats = env.market, env.seat_table()
    counts = episode_counts(mk, seats, 1.5)
    assert counts == _counts_from_frames(mk, seats, 1.5)
    market = counts[0]
    assert market["deals"] > 0 and market["executed"] > 0 and market["cheated"] > 0
    if "protocol=lilypad_v1_deployed" in overrides:
        assert market["stranded"] > 0 and market["wrong_accepted"] > 0 and market["revenue"] > 0
