"""Staking behind nodes: genesis positions, fee share, slashing and re-delegation on hand-derived
numbers, then end-to-end in the market."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import pytest

from tests.test_mechanisms import SMALL, run_market, transfers
from twin.deals import DealState
from twin.events import EventKind, PaymentDirection, TransferReason
from twin.market import Market
from twin.mechanisms.fees import PAID_STATES
from twin.mechanisms.staking import delegator_names, genesis_backers
from twin.metrics import balances_from_events
from twin.observe import symlog

TOKEN = 10**18


@pytest.fixture(scope="module")
def base(compose):
    return compose(*SMALL, "market.n_resource_providers=4", "staking=on")


def staked_market(base, n_rp=4, **fields):
    """A fresh market (not stepped) on a copy of ``base`` with ``group__field=value`` set."""
    cfg = copy.deepcopy(base)
    cfg.market.n_resource_providers = n_rp
    for path, value in fields.items():
        group, key = path.split("__")
        setattr(getattr(cfg, group), key, value)
    mk = Market(cfg, seed=0)
    return mk, next(m for m in mk.mechanisms if m.name == "staking")


def fake_deal(mk, rp_row, state, payment=0, forced_error=False):
    return SimpleNamespace(
        index=0, rp=int(mk.rp_acct[rp_row]), jc=int(mk.jc_acct[0]), mediator=int(mk.med_acct[0]),
        payment=payment, state=state, forced_error=forced_error, slash_to=-1,
    )  # fmt: skip


def set_positions(mk, st, positions):
    """Replace every position (tokens or wei per delegator, per RP row) and re-mint the pool so
    that it holds exactly their sum."""
    st.pos = [dict(p) for p in positions]
    for r, p in enumerate(st.pos):
        st._set_stake(r, sum(p.values()))
    pool = st.pool
    mk.ledger.wallet[pool] = 0
    mk.ledger.mint(pool, sum(st.stake))


# -- genesis --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "n_rp,n_del,expected",
    [
        (4, 4, [[0], [1], [2], [3]]),  # one delegator per RP: i backs RP i
        (4, 2, [[0], [1], [0], [1]]),  # fewer: delegator i backs every RP r = i (mod 2)
        (2, 5, [[0, 2, 4], [1, 3]]),  # more: delegators r, r + 2, ... share RP r
        (3, 1, [[0], [0], [0]]),  # one delegator backs everyone
    ],
)
def test_genesis_backers(n_rp, n_del, expected):
    assert [genesis_backers(r, n_rp, n_del) for r in range(n_rp)] == expected


def test_delegator_names_sort_in_index_order():
    names = delegator_names(12)
    assert names[0] == "delegator_00" and names[11] == "delegator_11"
    assert sorted(names) == list(names)


def test_genesis_positions_and_pool(base):
    # 2 RPs, 3 delegators, 100 tokens per RP: RP 0 <- delegators 0 and 2 (50 each), RP 1 <- 1
    mk, st = staked_market(base, n_rp=2, staking__n_delegators=3)
    assert st.pos == [{0: 50 * TOKEN, 2: 50 * TOKEN}, {1: 100 * TOKEN}]
    assert mk.ledger.wallet[st.pool] == 200 * TOKEN
    assert all(mk.ledger.wallet[a] == 0 for a in st.delegators)
    assert mk.ledger.total() == mk.ledger.minted
    # 100 wei per RP over 3 backers: 34 + 33 + 33 (the dust to the first)
    mk, st = staked_market(
        base, n_rp=2, staking__n_delegators=6, staking__stake_per_node_tokens=1e-16
    )
    assert st.pos == [{0: 34, 2: 33, 4: 33}, {1: 34, 3: 33, 5: 33}]


# -- fee share --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "positions,payment,fee_share,parts",
    [
        # cut = 2.5 tokens * 0.1 = 0.25 tokens, split 60 : 40
        ({0: 60 * TOKEN, 1: 40 * TOKEN}, 25 * TOKEN // 10, 0.1, {0: 15 * TOKEN // 100, 1: TOKEN // 10}),
        # cut = floor(1001 * 0.1) = 100 wei; 100 * 1 // 3 = 33, 100 * 2 // 3 = 66; 1 wei stays
        ({0: 1, 1: 2}, 1001, 0.1, {0: 33, 1: 66}),
        # half of 3 tokens to a lone delegator
        ({1: 5 * TOKEN}, 3 * TOKEN, 0.5, {1: 15 * TOKEN // 10}),
        ({0: 1}, 10**18, 0.0, {}),  # no share: nothing moves
    ],
)  # fmt: skip
def test_fee_share(base, positions, payment, fee_share, parts):
    mk, st = staked_market(base, staking__fee_share=fee_share)
    set_positions(mk, st, [positions, {}, {}, {}])
    rp = int(mk.rp_acct[0])
    before = mk.ledger.wallet[rp]
    paid = st.share_fees(mk, fake_deal(mk, 0, DealState.ResultsAccepted, payment))
    got = {i: mk.ledger.wallet[int(st.delegators[i])] for i in positions}
    assert {i: w for i, w in got.items() if w} == parts
    assert paid == sum(parts.values()) == before - mk.ledger.wallet[rp] == st.rewards
    assert len(transfers(mk, TransferReason.StakeReward)) == sum(1 for w in parts.values() if w)


# -- slashing ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "positions,fraction,after",
    [
        ({0: 100 * TOKEN}, 0.1, {0: 90 * TOKEN}),  # 10 tokens slashed
        ({0: 7, 1: 13}, 0.5, {0: 4, 1: 7}),  # floor(3.5) = 3 and floor(6.5) = 6: 9 wei
        ({0: 3}, 1.0, {}),  # everything: the position disappears
        ({0: 9}, 0.1, {0: 9}),  # floor(0.9) = 0: nothing moves
    ],
)
def test_slash_to_the_owner(base, positions, fraction, after):
    mk, st = staked_market(base, staking__slash_fraction=fraction)
    set_positions(mk, st, [positions, {}, {}, {}])
    amount = sum(positions.values()) - sum(after.values())
    pool = mk.ledger.wallet[st.pool]
    st.on_deal_end(mk, fake_deal(mk, 0, DealState.MediationRejected))
    assert st.pos[0] == after and st.stake[0] == sum(after.values()) and st.slashed == amount
    assert mk.ledger.wallet[mk.owner] == amount  # v1: slashed collateral goes to the owner
    assert mk.ledger.wallet[st.pool] == pool - amount
    rows = transfers(mk, TransferReason.StakeSlash)
    assert [(r[3], r[4], r[5]) for r in rows] == ([(st.pool, mk.owner, amount)] if amount else [])


def test_slash_follows_the_slashing_shares(base):
    # slashing=client_and_burn: owner 1/4, client (the deal's JC) 1/2, burn 1/4 of 10 tokens
    mk, st = staked_market(base, slashing__owner=0.25, slashing__client=0.5, slashing__burn=0.25)
    d = fake_deal(mk, 1, DealState.MediationRejected)
    st.on_deal_end(mk, d)
    got = sorted((r[4], r[5]) for r in transfers(mk, TransferReason.StakeSlash))
    assert got == sorted(
        [(mk.owner, 25 * TOKEN // 10), (d.jc, 5 * TOKEN), (mk.system["burn"], 25 * TOKEN // 10)]
    )
    assert st.stake[1] == 90 * TOKEN and mk.ledger.wallet[mk.system["slashing_pool"]] == 0  # fmt: skip


def test_forced_errors_and_other_outcomes_do_not_slash(base):
    mk, st = staked_market(base)
    for state, forced in ((DealState.MediationRejected, True), (DealState.TimeoutSubmitResults, False),
                          (DealState.MediationAccepted, False)):  # fmt: skip
        st.on_deal_end(mk, fake_deal(mk, 0, state, forced_error=forced))
    assert st.slashed == 0 and st.stake[0] == 100 * TOKEN


# -- re-delegation ------------------------------------------------------------------------------
def test_review_moves_stake_to_the_best_node(base):
    # RP 0 scores 0.2 < 0.3: its two positions leave. Delegator 0's 100 tokens go to the best
    # node, RP 1 or RP 2 (0.8 both, 100 tokens each: lowest row, RP 1); delegator 3's 50 then go
    # to RP 2 (0.8, 100 tokens < RP 1's 200). Moves inside the pool: no ledger movement.
    mk, st = staked_market(base)
    T = TOKEN
    set_positions(mk, st, [{0: 100 * T, 3: 50 * T}, {1: 100 * T}, {2: 100 * T}, {3: 100 * T}])
    pool, n_events = mk.ledger.wallet[st.pool], len(mk.log)
    st.review(mk, np.array([0.2, 0.8, 0.8, 0.5]))
    assert st.pos == [{}, {1: 100 * T, 0: 100 * T}, {2: 100 * T, 3: 50 * T}, {3: 100 * T}]
    assert st.stake == [0, 200 * T, 150 * T, 100 * T] and st.redelegations == 2
    assert mk.ledger.wallet[st.pool] == pool and len(mk.log) == n_events


def test_review_withdraws_when_no_node_qualifies(base):
    mk, st = staked_market(base)
    st.review(mk, np.array([0.1, 0.2, 0.29, 0.0]))
    rows = transfers(mk, TransferReason.StakeWithdraw)
    assert sorted((r[3], r[4], r[5]) for r in rows) == [
        (st.pool, int(a), 100 * TOKEN) for a in st.delegators
    ]
    assert mk.ledger.wallet[st.pool] == 0 and st.stake == [0] * 4 and st.withdrawn == 400 * TOKEN  # fmt: skip


def test_review_interval_and_exit_score_zero(base):
    mk, st = staked_market(base, staking__review_interval_s=600)
    assert st.next_review == mk.now + 600
    mk, st = staked_market(base, staking__exit_score=0.0)
    mk.now = st.next_review
    mk.rep_checked[mk.rp_acct], mk.rep_failed[mk.rp_acct] = 10, 10  # pass rate 1/12
    st.on_tick_end(mk)
    assert st.stake == [100 * TOKEN] * 4  # exit_score 0: stake never moves


# -- observations -------------------------------------------------------------------------------
def test_features(base):
    mk, st = staked_market(base)
    set_positions(mk, st, [{0: 3 * TOKEN}, {1: 100 * TOKEN}, {}, {}])
    assert st.feature_names("rp") == ("own_stake",) and st.feature_names("jc") == (
        "focus_rp_stake",
    )
    d = SimpleNamespace(rp=int(mk.rp_acct[1]))
    mk.deals = [d]
    f = st.public_features(mk, {"jc": {2: 0}})
    assert np.allclose(f["rp"][:, 0], [np.log1p(3.0), np.log1p(100.0), 0, 0])
    assert f["jc"].shape == (mk.n_jc, 1) and f["jc"][2, 0] == pytest.approx(symlog(100.0))
    assert f["jc"][[0, 1, 3, 4, 5], 0].tolist() == [0.0] * 5 and f["mediator"].shape == (
        mk.n_med,
        1,
    )


# -- end to end -----------------------------------------------------------------------------------
def test_caught_nodes_lose_stake_in_the_market(compose):
    # Nodes always cheat, clients always check: every result is rejected and every rejection
    # slashes 10% of the stake behind the RP, to the owner. With exit_score 0 the stake stays,
    # so the k-th slash of an RP takes floor(s_k / 10) with s_0 = 100 tokens, s_{k+1} = s_k - that:
    # 10, 9, 8.1, 7.29, ... tokens.
    cfg = compose(*SMALL, "staking=on", "staking.exit_score=0", "policies.rp.policy=always_cheat",
                  "policies.jc.policy=always_check")  # fmt: skip
    mk = run_market(cfg)
    st = next(m for m in mk.mechanisms if m.name == "staking")
    rows = transfers(mk, TransferReason.StakeSlash)
    rejected = [d for d in mk.deals if d.state == DealState.MediationRejected]
    assert len(rows) == len(rejected) > 10
    for r, rp in enumerate(mk.rp_acct):
        mine = [row[5] for row in rows if mk.deals[row[2]].rp == rp]
        s, expected = 100 * TOKEN, []
        for _ in mine:
            expected.append(s // 10)
            s -= s // 10
        assert mine == expected and st.stake[r] == s
    assert all(row[3] == st.pool and row[4] == mk.owner for row in rows)
    assert mk.ledger.wallet[st.pool] == sum(st.stake) == 400 * TOKEN - st.slashed
    assert mk.ledger.total() == mk.ledger.minted


def test_paid_deals_share_fees_with_delegators(compose):
    # honest nodes: every paid deal moves floor(payment / 10) from the RP to its one delegator
    cfg = compose(*SMALL, "staking=on")
    mk = run_market(cfg)
    st = next(m for m in mk.mechanisms if m.name == "staking")
    paid = [d for d in mk.deals if d.state in PAID_STATES and d.payment // 10]
    rows = transfers(mk, TransferReason.StakeReward)
    assert len(rows) == len(paid) > 10
    delegator_of = {int(mk.rp_acct[r]): int(st.delegators[r]) for r in range(mk.n_rp)}
    assert sorted((r[2], r[3], r[4], r[5]) for r in rows) == sorted(
        (d.index, d.rp, delegator_of[d.rp], d.payment // 10) for d in paid
    )
    assert sum(mk.ledger.wallet[a] for a in st.delegators) == st.rewards
    m = st.metrics(mk)
    assert m["delegator_return"] == pytest.approx(st.rewards / (400 * TOKEN))


def test_delegators_leave_caught_nodes(compose):
    # Every node cheats and is caught: pass rates (0 + 1) / (k + 2) fall below 0.3 after two
    # failures, stake moves to nodes not yet caught twice, and once every node is below the bar
    # it is withdrawn to the delegators' wallets.
    cfg = compose(*SMALL, "staking=on", "staking.review_interval_s=60", "policies.rp.policy=always_cheat",
                  "policies.jc.policy=always_check")  # fmt: skip
    mk = run_market(cfg)
    st = next(m for m in mk.mechanisms if m.name == "staking")
    assert st.redelegations > 0 and st.withdrawn > 0
    assert mk.ledger.wallet[st.pool] == sum(st.stake)
    assert st.withdrawn + st.slashed + sum(st.stake) == 400 * TOKEN
    withdrawals = transfers(mk, TransferReason.StakeWithdraw)
    assert sum(r[5] for r in withdrawals) == st.withdrawn
    assert sum(mk.ledger.wallet[a] for a in st.delegators) == st.withdrawn + st.rewards
    wallet, escrow = balances_from_events(mk.genesis_wallets, mk.log.rows)
    assert wallet == mk.ledger.wallet and escrow == mk.ledger.escrow
    slashed_collateral = sum(
        r[4] for r in mk.log.rows if r[0] == EventKind.Payment and r[6] == PaymentDirection.Slashed
    )
    assert mk.ledger.wallet[mk.owner] == slashed_collateral + st.slashed


def test_observations_carry_the_stakes(compose):
    # through the environment: every RP sees the 100 tokens staked behind it at genesis
    from twin.env import MarketEnv

    env = MarketEnv(compose(*SMALL, "staking=on", "env.expose=all"))
    obs, _ = env.reset(seed=0)
    col = env.features["rp"].index("staking.own_stake")
    assert "staking.focus_rp_stake" in env.features["jc"]
    assert obs["rp_0"]["observation"][col] == pytest.approx(np.log1p(100.0), rel=1e-6)
