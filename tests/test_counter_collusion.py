"""Counter-collusion contracts (Dong et al., CCS 2017): the money of every outcome derived by
hand, the analytic payoffs, the rational best response, and end-to-end runs through the market.

Terms of the hand-derived tables (small integers; the functions are unit-free):

    w = 10 (pay per node), c = 4 (an honest run; a wrong answer costs 0), ch = 3 (TTP),
    d = 8 (node deposit), t = 5 (colluder's deposit), b = 2 (bribe).
    Into ccc_escrow at creation: client 2w + ch = 23, each node d = 8 -> 39; with the traitor's
    contract also the client's w + 2d - ch = 23 -> 62; a report adds its ch = 3.
    Into the colluder's contract when it binds: leader t + b = 7, follower t = 5 -> 12.
    Conditions: d - c - ch = 1 > 0 (betraying and deviating from tacit collusion pay);
    leader loyal iff t > d - c - ch = 1 (yes); follower loyal iff t >= d - c - ch - b = -1 (yes);
    the leader initiates iff b < c (2 < 4, yes).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from experiments import run_episodes
from twin.config import ConfigError
from twin.events import EventKind, TransferReason
from twin.mechanisms.counter_collusion import (
    CLIENT,
    FEATURES,
    TTP,
    A,
    B,
    Decision,
    Sub,
    Terms,
    analytic_payoffs,
    conditions,
    rational_mode,
    rational_modes,
    settle,
    submission,
)
from twin.metrics import balances_from_events

TOKEN = 10**18
W, C, CH, D, T, BR = 10, 4, 3, 8, 5, 2
P = Terms(W, D, CH, T, BR)  # prisoner's contract only
PC = Terms(W, D, CH, T, BR, colluder=True)  # + colluder's
PCT = Terms(W, D, CH, T, BR, colluder=True, traitor=True)  # + traitor's
PT = Terms(W, D, CH, T, BR, traitor=True)  # prisoner's + traitor's (tacit collusion)
OK, AG, OWN, NONE = Sub.Correct, Sub.Agreed, Sub.Own, Sub.Nothing
H, X, BT, SK = Decision.Honest, Decision.Cheat, Decision.Betray, Decision.Skip


def paid_in(terms: Terms, reports=()) -> dict[int, int]:
    """What each party put into ccc_escrow (nodes A, B; client)."""
    w1, w2 = terms.client_deposits
    into = {A: terms.d, B: terms.d, CLIENT: w1 + w2}
    for i in reports:
        into[i] += terms.ch
    return into


def colluder_in(terms: Terms, leader: int) -> dict[int, int]:
    return {leader: terms.t + terms.b, 1 - leader: terms.t}


# (id, terms, subs, reports, binding, leader, honest_match,
#  expected payouts from ccc_escrow {party: wei}, from the colluder's contract {node: wei},
#  outcome, expected payoff of node A and node B = net ledger flow - cost)
CASES = [
    # -- prisoner's contract ----------------------------------------------------------------
    # Both correct and equal: each node gets w + d = 18 back, the client ch = 3.
    # A: 18 - 8 - c = 6 = w - c; B the same. Client: 3 - 23 = -20 (pays 2w).
    ("both_honest", P, (OK, OK), (), False, 0, True, {A: 18, B: 18, CLIENT: 3}, {}, "honest", 6, 6),
    # A honest, B its own wrong answer: TTP paid ch = 3; A gets w + 2d - ch = 23 (its d, its w,
    # B's d less ch); the client w + ch = 13 (B's unearned w; ch reimbursed from B's deposit).
    # A: 23 - 8 - 4 = 11 = w + d - ch - c; B: -8 = -d. Client: 13 - 23 = -10 = -w. 3+23+13 = 39.
    ("honest_vs_cheat", P, (OK, OWN), (), False, 0, True, {TTP: 3, A: 23, CLIENT: 13}, {},
     "cheat_caught", 11, -8),
    # The same when B submits nothing at all (the TTP checks A's lone result).
    ("honest_vs_nothing", P, (OK, NONE), (), False, 0, True, {TTP: 3, A: 23, CLIENT: 13}, {},
     "cheat_caught", 11, -8),
    # Both wrong but different: TTP 3; the client gets 2w + 2d = 36: each node loses d.
    # Client: 36 - 23 = +13 = 2d - ch.
    ("both_wrong_different", P, (OWN, OWN), (), False, 0, True, {TTP: 3, CLIENT: 36}, {},
     "both_wrong", -8, -8),
    # The agreed wrong answer against nothing: also both wrong.
    ("agreed_vs_nothing", P, (AG, NONE), (), False, 0, True, {TTP: 3, CLIENT: 36}, {},
     "both_wrong", -8, -8),
    # Both the same wrong answer: undetected; as both honest but without cost: each w = 10.
    ("undetected_collusion", P, (AG, AG), (), False, 0, True, {A: 18, B: 18, CLIENT: 3}, {},
     "collusion", 10, 10),
    # Nothing from either: no TTP; the client gets 39 back (its 23 and both deposits).
    ("no_results", P, (NONE, NONE), (), False, 0, True, {CLIENT: 39}, {}, "no_results", -8, -8),
    # Two correct but different results (non-deterministic job): the TTP finds both right, both
    # are paid w + d = 18, the client bears ch (gets nothing back: -23).
    ("honest_mismatch", P, (OK, OK), (), False, 0, False, {TTP: 3, A: 18, B: 18}, {},
     "honest_mismatch", 6, 6),
    # -- colluder's contract (binding; A leads: pays t + b = 7, B pays t = 5) -------------------
    # Both loyal: prisoner's as undetected collusion (+10 each); colluder's: A gets t = 5
    # (-2 = -b), B gets t + b = 7 (+2 = +b). A: 10 - 2 = 8 = w - b; B: 12 = w + b.
    ("colluders_loyal", PC, (AG, AG), (), True, 0, True, {A: 18, B: 18, CLIENT: 3}, {A: 5, B: 7},
     "collusion", 8, 12),
    # The leader deviates (honest): prisoner's A +15, B -8; colluder's: B gets 2t + b = 12
    # (+7), A loses its 7. A: 15 - 7 - 4 = 4 = w + d - ch - c - t - b; B: -8 + 7 = -1.
    ("leader_deviates", PC, (OK, AG), (), True, 0, True, {TTP: 3, A: 23, CLIENT: 13}, {B: 12},
     "cheat_caught", 4, -1),
    # The follower deviates: A (loyal leader) gets 2t + b = 12 (+5 = +t), B loses t.
    # A: -8 + 5 = -3; B: 15 - 5 - 4 = 6 = w + d - ch - c - t.
    ("follower_deviates", PC, (AG, OK), (), True, 0, True, {TTP: 3, B: 23, CLIENT: 13}, {A: 12},
     "cheat_caught", -3, 6),
    # Both deviate (both honest): colluder's deposits refunded (A 7, B 5); each w - c = 6.
    ("both_deviate", PC, (OK, OK), (), True, 0, True, {A: 18, B: 18, CLIENT: 3}, {A: 7, B: 5},
     "honest", 6, 6),
    # B leads instead: both loyal: A (follower) +2, B (leader) -2.
    ("colluders_loyal_b_leads", PC, (AG, AG), (), True, 1, True, {A: 18, B: 18, CLIENT: 3},
     {A: 7, B: 5}, "collusion", 12, 8),
    # -- traitor's contract (escrow 62; a report adds 3) -------------------------------------------
    # Both honest: as before, plus the client's traitor deposit 23 back (client: 26 - 46 = -20).
    ("traitor_unused", PCT, (OK, OK), (), False, 0, True, {A: 18, B: 18, CLIENT: 26}, {},
     "honest", 6, 6),
    # B (follower) betrays A (leader, loyal): B submitted r and reported with the correct result.
    # Escrow 65 out: TTP 3, client 2w + 2d = 36, B w + 2d = 26 (3 + 36 + 26 = 65). Colluder's:
    # both look loyal: A 5, B 7. A: -8 - 2 = -10 = -d - b. B: 26 - 8 - 3 + 2 - 4 = 13
    # = w + d - ch - c + b (colluding would give w + b = 12: betraying pays, d > c + ch).
    # Client: 36 - 46 = -10 = -w.
    ("follower_betrays", PCT, (AG, AG), (B,), True, 0, True, {TTP: 3, CLIENT: 36, B: 26},
     {A: 5, B: 7}, "betrayed", -10, 13),
    # Both betray, A's report first: A gets 26, B's ch = 3 comes back (escrow 68 = 3 + 36 + 26
    # + 3). A: 26 - 8 - 3 - 2 - 4 = 9; B: 3 - 8 - 3 + 2 - 4 = -10.
    ("both_betray_a_first", PCT, (AG, AG), (A, B), True, 0, True,
     {TTP: 3, CLIENT: 36, A: 26, B: 3}, {A: 5, B: 7}, "betrayed", 9, -10),
    # A false report: B betrays but A (the leader) deviated honestly. Prisoner's: A honest vs a
    # wrong B (TTP 3, A 23, client 13); B's report is false (its ch 3 to the TTP); the client's
    # traitor deposit 23 comes back. Colluder's: B loyal gets 12. A: 23 - 8 - 7 - 4 = 4;
    # B: -8 - 3 + 7 - 4 = -8. (3 + 23 + 13 + 3 + 23 = 65.)
    ("false_report", PCT, (OK, AG), (B,), True, 0, True, {TTP: 6, A: 23, CLIENT: 36}, {B: 12},
     "cheat_caught", 4, -8),
    # Tacit collusion (no colluder's contract) betrayed: B gets w + 2d = 26: B 26 - 8 - 3 - 4
    # = 11 = w + d - ch - c; A -8.
    ("tacit_betrayed", PT, (AG, AG), (B,), False, 0, True, {TTP: 3, CLIENT: 36, B: 26}, {},
     "betrayed", -8, 11),
]  # fmt: skip

COST = {"both_honest": (4, 4), "honest_vs_cheat": (4, 0), "honest_vs_nothing": (4, 0),
        "honest_mismatch": (4, 4), "leader_deviates": (4, 0), "follower_deviates": (0, 4),
        "both_deviate": (4, 4), "traitor_unused": (4, 4), "follower_betrays": (0, 4),
        "both_betray_a_first": (4, 4), "false_report": (4, 4), "tacit_betrayed": (0, 4)}  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_settlement_table(case):
    name, terms, subs, reports, binding, leader, match, escrow, col, outcome, pa, pb = case
    s = settle(terms, subs, reports, binding, leader, match)
    got: dict[int, int] = {}
    for who, wei, _ in s.escrow:
        got[who] = got.get(who, 0) + wei
    assert got == escrow
    assert dict(s.colluder) == col
    assert s.outcome == outcome
    into = paid_in(terms, reports)
    assert sum(escrow.values()) == sum(into.values())  # ccc_escrow ends empty
    if binding:
        assert sum(col.values()) == terms.t * 2 + terms.b  # so does the colluder's contract
    cin = colluder_in(terms, leader) if binding else {}
    cost = COST.get(name, (0, 0))
    for i, expected in ((A, pa), (B, pb)):
        net = got.get(i, 0) - into[i] + col.get(i, 0) - cin.get(i, 0)
        assert net - cost[i] == expected


def test_reasons_name_each_clause():
    s = settle(PCT, (AG, AG), (B, A), True, 0)
    reasons = {(who, r) for who, _, r in s.escrow}
    assert reasons == {(TTP, TransferReason.CccDisputeCost), (CLIENT, TransferReason.CccClientPayout),
                       (B, TransferReason.CccTraitorReward), (A, TransferReason.CccPayout)}  # fmt: skip


def _profiles():
    """Every decision pair under every contract set, agreement, binding, leader and order."""
    for terms in (P, PC, PT, PCT):
        for da, db in itertools.product(Decision, Decision):
            for agreed in (False, True):
                for binding in (False, True) if terms.colluder and agreed else (False,):
                    for leader, match, first in itertools.product((0, 1), (True, False), (0, 1)):
                        for fa, fb in itertools.product((False, True), (False, True)):
                            yield terms, (da, db), agreed, binding, leader, match, first, (fa, fb)


def test_settle_agrees_with_the_analytic_payoffs_everywhere():
    # settle() (the money) and analytic_payoffs() (the paper's case analysis) are written
    # independently; on every profile the ledger nets of settle() minus costs must equal it,
    # and both contracts must pay out exactly what they hold.
    n = 0
    for terms, dec, agreed, binding, leader, match, first, failed in _profiles():
        subs = [NONE if failed[i] else submission(dec[i], agreed, terms.traitor) for i in (A, B)]
        if subs != [OK, OK]:
            match_used = True  # only two correct results can disagree
        else:
            match_used = match
        reps = [i for i in (A, B) if dec[i] == BT and terms.traitor and agreed and not failed[i]]
        if len(reps) == 2 and first == B:
            reps.reverse()
        s = settle(terms, tuple(subs), tuple(reps), binding, leader, match_used)
        into = paid_in(terms, reps)
        out = {k: 0 for k in (A, B, CLIENT, TTP)}
        for who, wei, _ in s.escrow:
            assert wei > 0
            out[who] += wei
        assert sum(out.values()) == sum(into.values())
        cin = colluder_in(terms, leader) if binding else {}
        assert sum(x for _, x in s.colluder) == sum(cin.values())
        costs = tuple(C if dec[i] in (H, BT) else 0 for i in (A, B))
        want = analytic_payoffs(
            terms, dec, agreed, binding, leader, costs, match_used, first, failed
        )
        got = tuple(
            out[i] - into[i] + dict(s.colluder).get(i, 0) - cin.get(i, 0) - costs[i] for i in (A, B)
        )
        assert got == want, (terms, dec, agreed, binding, leader, match_used, first, failed)
        n += 1
    assert n > 2000


# -- the analytic conditions and the rational best response -----------------------------------
def _spe_payoff(terms, leader_i, me, c, choice_sign=None, choice_compute=None):
    """Payoff of node ``me`` when both play rational_mode, except that ``me`` may deviate at the
    sign stage and/or the compute stage (both betraying: each report first half the time)."""
    w, d, ch, t, b = terms.w, terms.d, terms.ch, terms.t, terms.b
    lead = [leader_i == 0, leader_i == 1]

    def sign(i):
        if i == me and choice_sign is not None:
            return choice_sign
        return rational_mode(True, lead[i], terms.colluder, terms.traitor, False, False,
                             w, d, ch, t, b, c)  # fmt: skip

    agreed = all(sign(i) in (X, BT) for i in (0, 1))
    binding = agreed and terms.colluder

    def compute(i):
        if i == me and choice_compute is not None:
            return choice_compute
        return rational_mode(False, lead[i], terms.colluder, terms.traitor, agreed, binding,
                             w, d, ch, t, b, c)  # fmt: skip

    dec = (compute(0), compute(1))
    costs = tuple(c if x in (H, BT) else 0 for x in dec)
    return np.mean([analytic_payoffs(terms, dec, agreed, binding, leader_i, costs, True, f)[me]
                    for f in (0, 1)])  # fmt: skip


GRID = list(itertools.product((2, 6, 7, 9, 12), (0, 1, 3), (0, 1, 5), (1, 3)))  # d, t, b, ch


@pytest.mark.parametrize("kind", ["prisoner", "colluder", "traitor"])
def test_rational_choice_is_a_best_response(kind):
    # subgame perfection against the analytic payoffs: no deviation of one node at the compute
    # stage (given the agreement reached) or at the sign stage (with rational play after it)
    # pays more than the rational choice; c = 4, w = 10
    c = 4
    for d, t, b, ch in GRID:
        terms = Terms(10, d, ch, t, b, kind != "prisoner", kind == "traitor")
        for leader, me in itertools.product((0, 1), (0, 1)):
            base = _spe_payoff(terms, leader, me, c)
            for s in (H, X):
                assert _spe_payoff(terms, leader, me, c, choice_sign=s) <= base + 1e-9
            for x in (H, X, SK) + ((BT,) if terms.traitor else ()):
                assert _spe_payoff(terms, leader, me, c, choice_compute=x) <= base + 1e-9


def _collude_path(terms, c, leader):
    """(both agree at the sign stage, both then collude) under rational play."""
    w, d, ch, t, b = terms.w, terms.d, terms.ch, terms.t, terms.b
    s = [rational_mode(True, i == leader, terms.colluder, terms.traitor, False, False, w, d, ch, t,
                       b, c) for i in (0, 1)]  # fmt: skip
    agreed = all(x == X for x in s)
    x = [rational_mode(False, i == leader, terms.colluder, terms.traitor, agreed,
                       agreed and terms.colluder, w, d, ch, t, b, c) for i in (0, 1)]  # fmt: skip
    return agreed, agreed and all(v == X for v in x)


@pytest.mark.parametrize("d,t,b,ch", GRID)
def test_rational_nodes_are_honest_exactly_when_the_analytic_condition_holds(d, t, b, ch):
    c, w = 4, 10
    # (i) prisoner's contract alone: cheating (collusion) dies out iff d > c + ch
    agreed, colluded = _collude_path(Terms(w, d, ch, t, b), c, 0)
    assert colluded == agreed == (not d > c + ch)
    # (ii) with the colluder's contract: collusion iff t > d - c - ch and b < c
    agreed, colluded = _collude_path(Terms(w, d, ch, t, b, colluder=True), c, 0)
    assert colluded == agreed == (t > d - c - ch and b < c)
    # (iii) with the traitor's contract too: collusion only where betraying does not pay
    agreed, colluded = _collude_path(Terms(w, d, ch, t, b, True, True), c, 0)
    assert colluded == (t > d - c - ch and b < c and not d > c + ch)
    k = conditions(w, d, ch, t, b, c)
    assert k["betrayal_pays"] == (d > c + ch) and k["leader_initiates"] == (b < c)


def test_rational_modes_decode_the_features():
    # one row per seat in FEATURES order; money as symlog tokens; w=10, ch=3, t=5, b=2, c=4
    def row(sign, leader, col, tra, agreed, binding, d):
        money = np.array([10, d, 3, 5, 2, 4], float)
        return [1, sign, col, tra, leader, agreed, binding, *np.log1p(money), 0.5, 0.5, 0.5]

    F = np.array([
        row(1, 0, 0, 0, 0, 0, 12),  # sign stage, prisoner's, d = 12 > c + ch = 7: refuse (0)
        row(1, 0, 0, 0, 0, 0, 5),  # d = 5 < 7: tacit collusion is stable, agree (1)
        row(0, 1, 1, 1, 1, 1, 12),  # compute stage, bound, traitor's on offer, d > 7: betray (2)
        row(0, 0, 0, 0, 1, 0, 5),  # compute stage, tacit agreement, d = 5: collude (1)
        [0.0] * len(FEATURES),  # no dual-deal decision pending: 0
    ], np.float32)  # fmt: skip
    assert F.shape[1] == len(FEATURES)
    assert rational_modes(F).tolist() == [0, 1, 2, 1, 0]


# -- end to end through the market ----------------------------------------------------------------
def dual_cfg(compose, contracts="prisoner", *extra, token_usd="0.00034", rp_policy="honest"):
    # Every job is a cowsay job (deterministic) on a 32-vCPU server: its run takes `units` s at
    # 1.224 USD/h = 1 token/s at 0.00034 USD/token, so c is about 2-4 tokens.
    # w = 10, ch = 3 tokens; d, t, b per test.
    return compose(
        "market.n_job_creators=8", "market.n_resource_providers=6", "market.n_mediators=1",
        "market.episode_ticks=60", "market.job_rate_per_tick=0.3", "market.modules=[cowsay]",
        "hardware.shares.cpu_server=1", "hardware.shares.consumer_gpu_small=0",
        "hardware.shares.consumer_gpu=0", "hardware.shares.datacenter_gpu=0",
        "hardware.shares.datacenter_gpu_h100=0", f"market.token_usd={token_usd}",
        "market.jc_wallet_tokens=100000", "market.rp_wallet_tokens=100000",
        f"counter_collusion={contracts}", f"counter_collusion.wage_wei={10 * TOKEN}",
        f"counter_collusion.dispute_cost_wei={3 * TOKEN}", f"policies.rp.policy={rp_policy}",
        *extra,
    )  # fmt: skip


def run_market(cfg, seed=0):
    from twin.env import MarketEnv

    env = MarketEnv(cfg)
    env.reset(seed=seed)
    while not env.market.done:
        env.step({})
    return env.market


def mech_of(mk):
    return next(m for m in mk.mechanisms if m.name == "counter_collusion")


def check_invariants(mk):
    assert mk.ledger.total() == mk.ledger.minted
    wallet, escrow = balances_from_events(mk.genesis_wallets, mk.log.rows)
    assert wallet == mk.ledger.wallet and escrow == mk.ledger.escrow
    for acct in ("ccc_escrow", "ccc_colluder"):
        assert mk.ledger.wallet[mk.system[acct]] == 0  # nothing stuck in the contracts
    assert not mk.active and not mech_of(mk).open
    assert (mk.res.free == mk.res.cap).all()  # every capacity hold released


def _analytic_rows(df, terms):
    """The analytic payoff (wei) of both nodes of every recorded dual deal."""
    out = []
    for r in df.itertuples():
        dec = tuple(Decision[getattr(r, f"decision_{x}").capitalize()] for x in "ab")
        failed = tuple(
            dec[i] in (H, BT) and getattr(r, f"submitted_{x}") == "nothing"
            for i, x in enumerate("ab")
        )
        out.append(analytic_payoffs(terms, dec, r.agreed, r.binding, "ab".index(r.leader),
                                    (int(r.cost_a_wei), int(r.cost_b_wei)), r.honest_match,
                                    "ab".index(r.first_report or "a"), failed))  # fmt: skip
    return out


def _realised(df):
    """Each node's realised payoff (wei, exact ints): its ledger net minus its cost."""
    return [(int(r.net_a_wei) - int(r.cost_a_wei), int(r.net_b_wei) - int(r.cost_b_wei))
            for r in df.itertuples()]  # fmt: skip


def _terms(cfg) -> Terms:
    cc = cfg.counter_collusion
    return Terms(cc.wage_wei, cc.deposit_wei, cc.dispute_cost_wei, cc.collusion_deposit_wei,
                 cc.bribe_wei, "colluder" in cc.contracts, "traitor" in cc.contracts)  # fmt: skip


@pytest.mark.parametrize(
    "contracts,policy,d,t,b,outcome",
    [
        ("prisoner", "honest", 8, 5, 2, "honest"),
        ("prisoner", "always_collude", 8, 5, 2, "collusion"),
        ("colluder", "always_collude", 8, 5, 2, "collusion"),
        ("traitor", "collude_then_betray", 8, 5, 2, "betrayed"),
        ("traitor", "always_skip", 8, 5, 2, "no_results"),
    ],
)
def test_scripted_pairs_get_the_analytic_payoffs(compose, contracts, policy, d, t, b, outcome):
    # every dual deal of a run_episodes run pays each node exactly its analytic payoff for the
    # decisions taken (to the wei), and the payoff per dual deal has the analytic mean
    cfg = dual_cfg(compose, contracts, f"counter_collusion.deposit_wei={d * TOKEN}",
                   f"counter_collusion.collusion_deposit_wei={t * TOKEN}",
                   f"counter_collusion.bribe_wei={b * TOKEN}", rp_policy=policy)  # fmt: skip
    res = run_episodes(cfg, episodes=2, seed=0)
    df = res.tables["dual_deals"]
    assert len(df) > 40 and (df.outcome == outcome).mean() > 0.97
    assert _analytic_rows(df, _terms(cfg)) == _realised(df)
    # the closed forms per outcome, in tokens: honest w - c; collusion w (leader w - b, follower
    # w + b under the colluder's contract); betrayal: the first reporter w + d - ch - c (+- b),
    # the other -d - c (+- b) -- on average (w - ch)/2 - c; nothing submitted: -d
    sel = df[df.outcome == outcome]
    c_mean = (sel.cost_a_wei.astype(float) + sel.cost_b_wei.astype(float)).mean() / 2 / TOKEN
    node = (sel.payoff_a_tokens + sel.payoff_b_tokens) / 2
    expect = {"honest": 10 - c_mean, "collusion": 10, "betrayed": (10 - 3) / 2 - c_mean,
              "no_results": -d}[outcome]  # fmt: skip
    assert node.mean() == pytest.approx(expect, abs=1e-9)
    if contracts == "colluder":
        assert np.allclose(sel.payoff_leader_tokens, 10 - b) and np.allclose(
            sel.payoff_follower_tokens, 10 + b
        )
    assert res.summary["ccc_dual_deals"] == len(df) / 2


@pytest.mark.parametrize("contracts", ["prisoner", "traitor"])
def test_mixed_population_mean_payoff_within_confidence_interval(compose, contracts):
    # Nodes choose mode 1 (agree / cheat) with probability q = 0.5 at every decision, else 0.
    # Expected payoff of the collusion leader and of the follower: the sum over both nodes' sign
    # choices (agreement iff both agree; under "traitor" the colluder's contract then binds,
    # t = 4, b = 0.01) and compute choices of P(profile) * analytic payoff, with c the mean
    # honest run cost. Each sample mean must be within 4 standard errors of it (the colluder's
    # contract is zero-sum between the two nodes: only the per-role means see it).
    q, d = 0.5, 8
    cfg = dual_cfg(compose, contracts, f"counter_collusion.deposit_wei={d * TOKEN}",
                   "policies.rp.policy=cheat_with_probability",
                   f"policies.rp.cheat_probability={q}")  # fmt: skip
    res = run_episodes(cfg, episodes=3, seed=1)
    df = res.tables["dual_deals"]
    terms = _terms(cfg)
    honest_costs = [int(x) for x in df.cost_a_wei[df.decision_a == "honest"]] + [
        int(x) for x in df.cost_b_wei[df.decision_b == "honest"]
    ]
    c = float(np.mean(honest_costs))
    expect = np.zeros(2)  # (leader, follower), wei
    for sa, sb, xa, xb in itertools.product((0, 1), (0, 1), (H, X), (H, X)):
        k = sa + sb + (xa == X) + (xb == X)
        p = q**k * (1 - q) ** (4 - k)
        agreed = bool(sa and sb)
        costs = (c if xa == H else 0, c if xb == H else 0)
        pl, pf = analytic_payoffs(terms, (xa, xb), agreed, agreed and terms.colluder, 0, costs)
        expect += p * np.array([pl, pf])
    sample = {
        "leader": df.payoff_leader_tokens.to_numpy() * TOKEN,
        "follower": df.payoff_follower_tokens.to_numpy() * TOKEN,
        "pair": np.array([(a + b) / 2 for a, b in _realised(df)]),
    }
    want = {"leader": expect[0], "follower": expect[1], "pair": expect.mean()}
    assert len(df) > 100
    for k, x in sample.items():
        se = x.std(ddof=1) / math.sqrt(len(x))
        assert abs(x.mean() - want[k]) < 4 * se, (k, x.mean() / TOKEN, want[k] / TOKEN, se / TOKEN)
    if terms.colluder:  # the leader pays the bribe: its expected payoff is below the follower's
        assert want["leader"] < want["follower"] and df.binding.mean() > 0.15
    assert set(df.outcome) >= {"honest", "collusion", "cheat_caught", "both_wrong"}


def test_non_deterministic_jobs_make_honest_pairs_disagree(compose):
    # sdxl: two honest runs differ with probability 0.3. A mismatch goes to the TTP, which finds
    # both results correct: both nodes are paid (w - c each), the client bears ch. (One GPU per
    # machine: a low job rate leaves a second GPU free for most jobs.)
    cfg = dual_cfg(compose, "prisoner", "market.modules=[sdxl]", "hardware.shares.cpu_server=0",
                   "hardware.shares.consumer_gpu=1", "market.n_resource_providers=12",
                   "market.job_rate_per_tick=0.1", "market.episode_ticks=120")  # fmt: skip
    res = run_episodes(cfg, episodes=2, seed=0)
    df = res.tables["dual_deals"]
    assert _analytic_rows(df, _terms(cfg)) == _realised(df)
    mismatch = (df.outcome == "honest_mismatch").to_numpy()
    se = math.sqrt(0.3 * 0.7 / len(df))
    assert len(df) > 40 and abs(mismatch.mean() - 0.3) < 4 * se
    assert set(df.outcome) <= {"honest", "honest_mismatch", "cheat_caught"}
    client = df.client_net_wei.map(int)
    assert (client[mismatch] == -(2 * 10 + 3) * TOKEN).all()
    assert (client[df.outcome == "honest"] == -2 * 10 * TOKEN).all()


def test_money_moves_through_the_contract_accounts(compose):
    cfg = dual_cfg(compose, "traitor", "policies.rp.policy=cheat_with_probability")
    mk = run_market(cfg, seed=3)
    check_invariants(mk)
    mech = mech_of(mk)
    rows = [r for r in mk.log.rows if r[0] == EventKind.Transfer]
    esc, col, ttp = mk.system["ccc_escrow"], mk.system["ccc_colluder"], mk.system["ttp"]
    dual_deals = {dd.deal for dd in mech.duals}
    for r in rows:
        if r[6] in (TransferReason.CccDeposit,):
            assert r[4] == esc and r[2] in dual_deals
        if r[6] == TransferReason.CccDisputeCost:
            assert (r[3], r[4], r[5]) == (esc, ttp, 3 * TOKEN)
        if r[6] in (TransferReason.CccCollusionDeposit, TransferReason.CccCollusionPayout):
            assert col in (r[3], r[4])
    disputes = sum(r[6] == TransferReason.CccDisputeCost for r in rows)
    assert mk.ledger.wallet[ttp] == 3 * TOKEN * disputes > 0
    # dual deals never reach the v1 contracts: no v1 event names their deal index
    v1 = {r[2] for r in mk.log.rows if r[0] != EventKind.Transfer}
    assert not v1 & dual_deals


def test_missing_results(compose):
    # Nodes that skip submit nothing: the deal settles at once, without the TTP: each node loses
    # d, the client gets back 2w + ch and both deposits (net +2d).
    cfg = dual_cfg(compose, "prisoner", rp_policy="always_skip")
    mk = run_market(cfg)
    check_invariants(mk)
    mech = mech_of(mk)
    assert len(mech.duals) > 20
    for dd in mech.duals:
        assert dd.outcome == "no_results" and not dd.ttp_used and dd.settled_at < dd.deadline
        assert dd.net[dd.jc] == 2 * mech.terms.d and dd.net[dd.nodes[0]] == -mech.terms.d
    # Honest runs slower than the submission window (1 s; a cowsay run takes 1-5 s here) count as
    # nothing once the deadline has passed (strict: at deadline + 1 s at the earliest).
    mk = run_market(dual_cfg(compose, "prisoner", "timeouts.submit_results_s=1"))
    check_invariants(mk)
    late = [dd for dd in mech_of(mk).duals if dd.sub == [Sub.Nothing, Sub.Nothing]]
    assert len(late) > 20
    for dd in late:
        assert dd.outcome == "no_results" and dd.settled_at > dd.deadline and min(dd.cost) > 0


def test_ttp_verdict_beyond_the_close_cap_is_forced(compose):
    # A TTP slower than the episode's close cap: the open disputes are settled at the cap, so
    # the episode still ends with every contract paid out.
    cfg = dual_cfg(compose, "prisoner", "counter_collusion.ttp_latency_s=100000000",
                   "policies.rp.policy=cheat_with_probability")  # fmt: skip
    mk = run_market(cfg)
    check_invariants(mk)
    assert any(dd.ttp_used for dd in mech_of(mk).duals)
    assert mk.tick == mk.cfg.market.episode_ticks + mk.close_cap_ticks


def test_second_node_is_the_next_best_offer_and_fallback(compose):
    # one RP only: no second node, so every match stays a v1 deal
    cfg = dual_cfg(compose, "prisoner", "market.n_resource_providers=1")
    mk = run_market(cfg)
    mech = mech_of(mk)
    assert not mech.duals and mech.fallbacks > 5 and len([d for d in mk.deals if d.agreed_at]) > 5
    # with several: B is never A, and both ran the job
    mk = run_market(dual_cfg(compose, "prisoner"))
    assert all(dd.nodes[0] != dd.nodes[1] for dd in mech_of(mk).duals)
    assert all(min(dd.cost) > 0 for dd in mech_of(mk).duals if dd.outcome == "honest")


def test_features_and_masks_of_a_pending_decision(compose):
    from twin.env import MarketEnv
    from twin.observe import observe

    cfg = dual_cfg(compose, "traitor", "counter_collusion.deposit_wei=8000000000000000000")
    env = MarketEnv(cfg, expose="all")
    env.reset(seed=0)
    mk = env.market
    mech = mech_of(mk)
    while not mech.pending:
        env.step({})
    X = mech.public_features(mk, {})["rp"]
    L = len(cfg.pricing.price_levels)
    M = observe(mk, L).rp_mask.reshape(mk.n_rp, 4, L)
    for rp, q in mech.pending.items():
        dd = mech.duals[q[0][0]]
        i = q[0][1]
        row = dict(zip(FEATURES, X[mk.row[rp]], strict=True))
        assert row["ccc_focus"] == 1 and row["ccc_sign_stage"] == 1
        assert row["ccc_leader"] == float(dd.leader == i)
        assert row["ccc_colluder_offered"] == row["ccc_traitor_offered"] == 1
        assert np.expm1(row["ccc_wage"]) == pytest.approx(10) and np.expm1(
            row["ccc_deposit"]
        ) == pytest.approx(8)
        c = mech.cost_estimate(mk, dd, i)
        assert np.expm1(row["ccc_cost"]) == pytest.approx(c / TOKEN)
        assert row["ccc_partner"] == (mk.row[dd.nodes[1 - i]] + 1) / mk.n_rp
        assert M[mk.row[rp], :2].all() and not M[mk.row[rp], 2:].any()  # sign stage: 0 or 1
    idle = [r for r in range(mk.n_rp) if int(mk.rp_acct[r]) not in mech.pending]
    assert (X[idle] == 0).all()
    assert mech.feature_names("rp") == FEATURES and mech.feature_names("jc") == ()
    # after both agree (mode 1), the compute stage opens 0, 1, 3 and betrayal (2)
    acts = {f"rp_{r}": 1 * L + 2 for r in range(mk.n_rp)}
    env.step(acts)
    M = observe(mk, L).rp_mask.reshape(mk.n_rp, 4, L)
    for rp, q in mech.pending.items():
        dd = mech.duals[q[0][0]]
        if dd.state == 1:  # Computing
            assert dd.agreed and dd.binding and M[mk.row[rp]].all()


def _run_rational(cfg, seed=0):
    """The market with every RP playing ccc_rational on its observation (base features plus the
    mechanism's columns), JCs accepting."""
    from agents.baselines import PolicyContext, make_policy
    from twin.market import Actions, Market
    from twin.observe import feature_names, observe

    mk = Market(cfg, seed=seed)
    mech = mech_of(mk)
    L = len(cfg.pricing.price_levels)
    ctx = PolicyContext(
        n_price_levels=L,
        default_price_level=cfg.pricing.default_price_level,
        features=(("rp", feature_names(mk.mechanisms, "rp")),),
    )
    pol = make_policy("rp", "ccc_rational", {}, ctx)
    while not mk.done:
        o = observe(mk, L)
        X = o.rp  # the base features and the mechanism's columns, as the env builds them
        a = Actions.default(mk)
        flat = pol.act_batch(X, o.rp_mask, np.random.default_rng(0))[:, 0]
        a.rp_mode[:], a.rp_price_level[:] = np.divmod(flat, L)
        mk.step(a)
    check_invariants(mk)
    return mech.tables(mk)["dual_deals"]


@pytest.mark.parametrize(
    "contracts,d,t,b,colludes",
    [
        ("prisoner", 12, 5, 2, False),  # (i) d = 12 > c + ch (at most 5 + 3): honest
        ("prisoner", 4, 5, 2, True),  # (i) d = 4 < c + ch (at least 2 + 3): tacit collusion
        ("colluder", 12, 12, 1, True),  # (ii) t = 12 > d - c - ch and b = 1 < c: collusion
        ("colluder", 12, 12, 6, False),  # (ii) but a bribe b = 6 > c: the leader declines
        ("colluder", 12, 2, 1, False),  # (ii) t = 2 < d - c - ch: not self-enforcing
        ("traitor", 12, 12, 1, False),  # (iii) betraying pays (d > c + ch): no collusion
    ],
)
def test_rational_nodes_in_the_market(compose, contracts, d, t, b, colludes):
    cfg = dual_cfg(compose, contracts, f"counter_collusion.deposit_wei={d * TOKEN}",
                   f"counter_collusion.collusion_deposit_wei={t * TOKEN}",
                   f"counter_collusion.bribe_wei={b * TOKEN}", "market.episode_ticks=30")  # fmt: skip
    df = _run_rational(cfg)
    assert len(df) > 15
    want = "collusion" if colludes else "honest"
    assert (df.outcome == want).mean() > 0.95
    assert (df.binding == (colludes and contracts != "prisoner")).mean() > 0.95


def test_config_is_validated(compose):
    with pytest.raises(ConfigError, match="counter_collusion.contracts"):
        compose("counter_collusion=prisoner", "counter_collusion.contracts=[colluder]")
    with pytest.raises(ConfigError, match="counter_collusion.contracts"):
        compose("counter_collusion=prisoner", "counter_collusion.contracts=[prisoner,spy]")
    with pytest.raises(ConfigError, match="dispute_cost_wei"):
        compose(
            "counter_collusion=prisoner", "counter_collusion.dispute_cost_wei=11000000000000000000"
        )
    assert compose().counter_collusion.share == 0.0  # off by default


def test_same_seed_same_log(compose):
    cfg = dual_cfg(compose, "traitor", "policies.rp.policy=cheat_with_probability",
                   "market.episode_ticks=30")  # fmt: skip
    a, b, c = (run_market(cfg, s).log.to_bytes() for s in (5, 5, 6))
    assert a == b and a != c
