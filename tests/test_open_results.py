"""The node's private observation of its own results on their way (``open_fake_results``,
``open_honest_results``): job cost of its executed deals that have not ended, by kind of result;
and of the deals it chose to skip (``open_skipped_collateral``): the submit collateral it will
lose at their submit timeout."""

from __future__ import annotations

import numpy as np

from twin.deals import ExecMode
from twin.env import MarketEnv
from twin.ledger import WEI_PER_TOKEN
from twin.observe import symlog


def _open(mk, account: int, fake: bool) -> int:
    """By definition: job cost (wei) of the account's deals executed with a result on its way
    (a fake or inflated result if ``fake``, else an honest one) and still active (not ended)."""
    kinds = (ExecMode.Cheat, ExecMode.Inflate) if fake else (ExecMode.Honest,)
    return sum(d.job_cost for d in mk.deals
               if d.rp == account and d.mode in kinds and d.ready_at >= 0
               and d.index in mk.active)  # fmt: skip


def _skipped(mk, account: int) -> int:
    """By definition: submit collateral (wei) of the account's deals it chose to skip (no result
    will come) that are still active: exactly what the submit timeout will slash."""
    return sum(d.submit_collateral for d in mk.deals
               if d.rp == account and d.mode == ExecMode.Skip and d.index in mk.active)  # fmt: skip


def test_open_results_follow_the_deals_and_reach_zero(compose):
    cfg = compose("experiment=result_a_threshold", "policies.jc.check_probability=0.5")
    env = MarketEnv(cfg)
    obs, _ = env.reset(seed=2)
    names = ("open_fake_results", "open_honest_results", "open_skipped_collateral")
    cols = [env.features["rp"].index(c) for c in names]
    # rp_0 fakes every result (action 1 = cheat at the one price level), rp_1 inflates, rp_2
    # skips (action 3: never submits), rp_3 works honestly
    actions = {"rp_0": 1, "rp_1": 2, "rp_2": 3, "rp_3": 0}
    seen_fake = seen_honest = seen_skipped = 0
    while env.agents:
        obs, *_ = env.step(actions)
        mk = env.market
        for agent in env.agents:
            acct = int(mk.rp_acct[int(agent.rsplit("_", 1)[1])])
            fake, honest = _open(mk, acct, True), _open(mk, acct, False)
            skipped = _skipped(mk, acct)
            got = (mk.open_fake_wei[acct], mk.open_honest_wei[acct], mk.open_skipped_wei[acct])
            assert got == (fake, honest, skipped)
            tokens = np.array([fake, honest, skipped], float) / WEI_PER_TOKEN
            # the market's float mirror, kept up to date, is the conversion of the lists, bit for bit
            assert np.array_equal(mk.open_results_tokens[:, acct], tokens)
            want = symlog(tokens)
            assert np.array_equal(obs[agent]["observation"][cols], want.astype(np.float32))
            if agent in ("rp_0", "rp_1"):
                assert honest == skipped == 0  # a cheating node has no honest result out
                seen_fake += fake > 0
            elif agent == "rp_2":
                assert fake == honest == 0
                # every skipped deal stakes the v1 submit collateral (1 token, configs/timeouts)
                assert skipped % (10**18) == 0
                seen_skipped += skipped > 0
            else:
                assert fake == skipped == 0
                seen_honest += honest > 0
    assert seen_fake and seen_honest and seen_skipped
    mk = env.market  # every deal ended: nothing is on its way, nothing left to slash
    assert not any(mk.open_fake_wei) and not any(mk.open_honest_wei)
    assert not any(mk.open_skipped_wei) and not mk._open_results
    assert not mk.open_results_tokens.any()
