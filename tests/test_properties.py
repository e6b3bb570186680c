"""Property tests over random markets and random actions (hypothesis).

Invariants: (1) tokens are conserved by every tick: the ledger's total equals what genesis
minted; (2) the ledger equals a rebuild from the event log alone (every movement is an event);
(3) under the intended preset with timeouts on, no deal is left non-terminal when the episode
ends (and under either preset the counter-collusion contracts hold nothing); (4) no balance is
ever negative; (5) mechanism pools (stake pool, market maker) hold exactly what their accounts say.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import random_actions
from twin.env import MarketEnv
from twin.metrics import balances_from_events

scenario = st.fixed_dictionaries({
    "preset": st.sampled_from(["lilypad_v1", "lilypad_v1_deployed"]),
    "n_jc": st.integers(1, 6),
    "n_rp": st.integers(1, 6),
    "n_med": st.integers(1, 4),
    "ticks": st.integers(5, 40),
    "tick_s": st.sampled_from([30, 60, 600]),
    "window": st.sampled_from([60, 300, 3600]),
    "rate": st.floats(0.05, 1.0),
    "trust": st.integers(0, 3),
    "rings": st.integers(0, 1),
    "jc_wallet": st.sampled_from([5, 30, 1000]),
    "rp_wallet": st.sampled_from([1, 10, 200]),
    "solvers": st.sampled_from(["[v1]", "[surplus]", "[v1,surplus]"]),
    "jc_action": st.sampled_from(["discrete", "probability"]),
    "seed": st.integers(0, 2**16),
    "mechanisms": st.lists(st.sampled_from(
        ["taxes=forced_errors", "slashing=client_and_burn", "reputation=beta", "fees=protocol_fee", "storage=window",
         "announce=reward", "counter_collusion=traitor",
         # collateral and verification options (one group choice per group; the rest as fields)
         "collateral=pooled", "collateral.results_timing=up_front", "collateral.late_grace_s=120",
         "verification=modicum_defence", "verification.method=proof", "+verification.per_module.cowsay=none",
         "verification.approx_tolerance=2.0", "staking=on", "prediction=lmsr", "prediction=lmsr_jackpot"]),
        unique=True, max_size=10),
    "mediation": st.sampled_from(["v1", "consortium", "consortium_recursive", "auction", "reputation",
                                  "commit_reveal"]),
})  # fmt: skip


def needs_jackpot(mechanisms) -> bool:
    """The announce reward and jackpot-funded markets need the taxes mechanism's jackpot."""
    needs = "announce=reward" in mechanisms or "prediction=lmsr_jackpot" in mechanisms
    return needs and "taxes=forced_errors" not in mechanisms


def build(compose, s):
    return compose(
        f"protocol={s['preset']}", f"market.n_job_creators={s['n_jc']}", f"market.n_resource_providers={s['n_rp']}",
        f"market.n_mediators={s['n_med']}", f"market.episode_ticks={s['ticks']}", f"market.tick_s={s['tick_s']}",
        f"timeouts.agree_s={s['window']}", f"timeouts.submit_results_s={s['window']}",
        f"timeouts.judge_results_s={s['window']}", f"timeouts.mediate_results_s={s['window']}",
        f"market.job_rate_per_tick={s['rate']}", f"market.trusted_mediators_per_party={s['trust']}",
        f"collusion.n_rings={s['rings']}", f"market.jc_wallet_tokens={s['jc_wallet']}",
        f"market.rp_wallet_tokens={s['rp_wallet']}", f"market.solvers={s['solvers']}",
        f"env.jc_action={s['jc_action']}", "env.expose=all", "execution.cheat_runtime_s=1",
        f"mediation={s['mediation']}",
        *s["mechanisms"], *(["taxes=jackpot"] if needs_jackpot(s["mechanisms"]) else []),
        *(["counter_collusion.share=0.5"] if "counter_collusion=traitor" in s["mechanisms"] else []),
    )  # fmt: skip


def mechanism_pools_balance(mk) -> None:
    """Pools that mechanisms keep accounts for hold exactly what those accounts say: the stake
    pool the sum of the delegators' positions, the market maker its open rounds' subsidies and
    payments."""
    for m in mk.mechanisms:
        if m.name == "staking":
            assert mk.ledger.wallet[m.pool] == sum(m.stake) == sum(sum(p.values()) for p in m.pos)
        elif m.name == "prediction":
            held = sum(r.subsidy + r.collected for r in m.rounds.values())
            assert mk.ledger.wallet[m.maker] == held


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(s=scenario)
def test_random_markets_conserve_tokens_and_settle(compose, s):
    cfg = build(compose, s)
    env = MarketEnv(cfg)
    obs, _ = env.reset(seed=s["seed"])
    mk = env.market
    minted = mk.ledger.minted
    rng = np.random.default_rng(s["seed"])
    steps = 0
    while env.agents:
        obs, *_ = env.step(random_actions(env, obs, rng))
        steps += 1
        assert mk.ledger.total() == minted
        assert min(mk.ledger.wallet) >= 0 and min(mk.ledger.escrow) >= 0
        mechanism_pools_balance(mk)
        assert steps < 10_000
    wallet, escrow = balances_from_events(mk.genesis_wallets, mk.log.rows)
    assert wallet == mk.ledger.wallet and escrow == mk.ledger.escrow
    for pool in ("ccc_escrow", "ccc_colluder"):  # contracts of dual deals always settle
        if pool in mk.system:
            assert mk.ledger.wallet[mk.system[pool]] == 0
    if s["preset"] == "lilypad_v1":
        assert not mk.active
        on_chain = [d for d in mk.deals if d.rp_agreed_at or d.jc_agreed_at]
        assert all(d.terminal for d in on_chain)
        assert sum(mk.ledger.escrow) == 0  # every terminal path releases all escrow
        # every replication market settled or was voided when its node had no deal left
        assert all(not m.rounds for m in mk.mechanisms if m.name == "prediction")
    else:  # deployed: a deal that is not terminal at the end is one a defect left stuck
        on_chain = [d for d in mk.deals if d.rp_agreed_at or d.jc_agreed_at]
        assert all(d.terminal or d.stuck for d in on_chain)
