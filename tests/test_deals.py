"""Table-driven tests of the v1 deal state machine and its money flows, to the wei.

Every case runs a sequence of v1 calls on one deal and compares the final state, every balance
and the exact event sequence with values derived by hand (in each case's comment). Terms used
throughout (small integers so the arithmetic is easy to follow):

    instruction price 3, units 5  -> C = 15;  P = 20;  m = 2 -> R = 30;  F = 4;
    Ts (submit collateral) = 6;  Tj (judge collateral) = 7;  every timeout window 100 s.
    Genesis: JC wallet 100, RP wallet 100, mediator 0, owner 0 (total 200).
"""

from __future__ import annotations

import pytest

from twin.deals import CallRejected, Deal, DealFlows, DealState
from twin.events import EventLog
from twin.events import PaymentDirection as Dir
from twin.events import PaymentReason as Rsn
from twin.ledger import Ledger
from twin.protocol import PRESETS

OWNER, JC, RP, MED, MED2 = 0, 1, 2, 3, 4
PAID_IN, PAID_OUT, REFUNDED, SLASHED = Dir.PaidIn, Dir.PaidOut, Dir.Refunded, Dir.Slashed
PC, RC, TC, JP, MF = (
    Rsn.PaymentCollateral,
    Rsn.ResultsCollateral,
    Rsn.TimeoutCollateral,
    Rsn.JobPayment,
    Rsn.MediationFee,
)


def make(
    preset="lilypad_v1",
    price=3,
    units=5,
    P=20,
    m=2,
    F=4,
    Ts=6,
    Tj=7,
    window=100,
    jc_wallet=100,
    rp_wallet=100,
):
    ledger = Ledger(5)
    ledger.mint(JC, jc_wallet)
    ledger.mint(RP, rp_wallet)
    log = EventLog()
    flows = DealFlows(ledger, log, PRESETS[preset], OWNER)
    d = new_deal(0, price, units, P, m, F, Ts, Tj, window)
    return ledger, log, flows, d


def new_deal(index, price=3, units=5, P=20, m=2, F=4, Ts=6, Tj=7, window=100):
    d = Deal(
        index,
        JC,
        RP,
        9,
        (MED, MED2),
        0,
        units,
        price,
        P,
        m,
        F,
        (window,) * 4,
        Ts,
        Tj,
        index,
        index,
        0,
    )
    d.units_reported = units
    return d


def events(log):
    """Compact view: ("DSC", state) / ("Pay", payee, amount, reason, direction) / ("MR", mediator)."""
    out = []
    for r in log.rows:
        if r[0] == 0:
            out.append(("DSC", r[3]))
        elif r[0] == 1:
            out.append(("Pay", r[3], r[4], int(r[5]), int(r[6])))
        elif r[0] == 2:
            out.append(("MR", r[3]))
        elif r[0] == 4:
            out.append(("Reverted", r[3]))
    return out


def balances(ledger):
    return {a: (ledger.wallet[a], ledger.escrow[a]) for a in (OWNER, JC, RP, MED)}


AGREE_EVENTS = [
    ("DSC", 0),
    ("Pay", RP, 6, TC, PAID_IN),
    ("Pay", JC, 20, PC, PAID_IN),
    ("Pay", JC, 7, TC, PAID_IN),
    ("DSC", 1),
]
SUBMIT_EVENTS = [("Pay", RP, 30, RC, PAID_IN), ("Pay", RP, 6, TC, REFUNDED), ("DSC", 2)]
CHECK_EVENTS = [("Pay", JC, 7, TC, REFUNDED), ("Pay", JC, 4, MF, PAID_IN), ("DSC", 4)]


def agreed(flows, d, t=10):
    flows.agree(t, d, RP)
    flows.agree(t, d, JC)


def submitted(flows, d, t=20):
    agreed(flows, d)
    flows.add_result(t, d)


CASES = [
    # name, preset, script(flows, d) -> None, final state, balances {acct: (wallet, escrow)}, events
    (
        # RP: 100 -6 (Ts) -30 (R) +6 (Ts back) +15 (pay) +30 (R back) = 115.
        # JC: 100 -20 (P) -7 (Tj) +5 (P - pay) +7 (Tj back) = 85.  Escrow all 0.
        "happy_path",
        "lilypad_v1",
        lambda f, d: (submitted(f, d), f.accept_result(30, d)),
        DealState.ResultsAccepted,
        {OWNER: (0, 0), JC: (85, 0), RP: (115, 0), MED: (0, 0)},
        AGREE_EVENTS
        + SUBMIT_EVENTS
        + [
            ("Pay", RP, 15, JP, PAID_OUT),
            ("Pay", JC, 5, PC, REFUNDED),
            ("Pay", JC, 7, TC, REFUNDED),
            ("Pay", RP, 30, RC, REFUNDED),
            ("DSC", 3),
        ],
    ),
    (
        # After the check: JC wallet 100-27+7-4 = 76, escrow 20+4 = 24. Mediator accepts:
        # RP +15 and R back -> 115; mediator +4; JC +5 (P - pay) -> 81. Escrow all 0.
        "check_accepted",
        "lilypad_v1",
        lambda f, d: (submitted(f, d), f.check_result(30, d, MED), f.mediation_accept(40, d)),
        DealState.MediationAccepted,
        {OWNER: (0, 0), JC: (81, 0), RP: (115, 0), MED: (4, 0)},
        AGREE_EVENTS
        + SUBMIT_EVENTS
        + CHECK_EVENTS
        + [("MR", MED)]
        + [
            ("Pay", RP, 15, JP, PAID_OUT),
            ("Pay", MED, 4, MF, PAID_OUT),
            ("Pay", JC, 5, PC, REFUNDED),
            ("Pay", RP, 30, RC, REFUNDED),
            ("DSC", 5),
        ],
    ),
    (
        # Mediator rejects: JC gets P back -> 76 + 20 = 96 (it lost only F = 4); mediator +4;
        # RP's R = 30 slashed to the owner: RP 100 - 30 = 70 (= -m*C).
        "check_rejected",
        "lilypad_v1",
        lambda f, d: (submitted(f, d), f.check_result(30, d, MED), f.mediation_reject(40, d)),
        DealState.MediationRejected,
        {OWNER: (30, 0), JC: (96, 0), RP: (70, 0), MED: (4, 0)},
        AGREE_EVENTS
        + SUBMIT_EVENTS
        + CHECK_EVENTS
        + [("MR", MED)]
        + [
            ("Pay", JC, 20, PC, REFUNDED),
            ("Pay", MED, 4, MF, PAID_OUT),
            ("Pay", RP, 30, RC, SLASHED),
            ("DSC", 6),
        ],
    ),
    (
        # Only the RP agreed at t=10; at t=111 > 10 + 100 its Ts = 6 comes back: RP 100.
        "timeout_agree_rp_only",
        "lilypad_v1",
        lambda f, d: (f.agree(10, d, RP), f.timeout_agree(111, d, RP)),
        DealState.TimeoutAgree,
        {OWNER: (0, 0), JC: (100, 0), RP: (100, 0), MED: (0, 0)},
        [("DSC", 0), ("Pay", RP, 6, TC, PAID_IN), ("Pay", RP, 6, TC, REFUNDED), ("DSC", 7)],
    ),
    (
        # Only the JC agreed: P + Tj = 27 back: JC 100.
        "timeout_agree_jc_only",
        "lilypad_v1",
        lambda f, d: (f.agree(10, d, JC), f.timeout_agree(111, d, JC)),
        DealState.TimeoutAgree,
        {OWNER: (0, 0), JC: (100, 0), RP: (100, 0), MED: (0, 0)},
        [
            ("DSC", 0),
            ("Pay", JC, 20, PC, PAID_IN),
            ("Pay", JC, 7, TC, PAID_IN),
            ("Pay", JC, 20, PC, REFUNDED),
            ("Pay", JC, 7, TC, REFUNDED),
            ("DSC", 7),
        ],
    ),
    (
        # Deployed defect 2: the lone JC gets P + Ts = 26 instead of 27; 1 wei stays in escrow.
        "deployed_timeout_agree_refunds_ts",
        "lilypad_v1_deployed",
        lambda f, d: (f.agree(10, d, JC), f.timeout_agree(111, d, JC)),
        DealState.TimeoutAgree,
        {OWNER: (0, 0), JC: (99, 1), RP: (100, 0), MED: (0, 0)},
        [
            ("DSC", 0),
            ("Pay", JC, 20, PC, PAID_IN),
            ("Pay", JC, 7, TC, PAID_IN),
            ("Pay", JC, 20, PC, REFUNDED),
            ("Pay", JC, 6, TC, REFUNDED),
            ("DSC", 7),
        ],
    ),
    (
        # No result by t = 10 + 100: JC gets P + Tj back (100); RP's Ts = 6 slashed: RP 94, owner 6.
        "timeout_submit",
        "lilypad_v1",
        lambda f, d: (agreed(f, d), f.timeout_submit(111, d, JC)),
        DealState.TimeoutSubmitResults,
        {OWNER: (6, 0), JC: (100, 0), RP: (94, 0), MED: (0, 0)},
        AGREE_EVENTS
        + [
            ("Pay", JC, 20, PC, REFUNDED),
            ("Pay", JC, 7, TC, REFUNDED),
            ("Pay", RP, 6, TC, SLASHED),
            ("DSC", 8),
        ],
    ),
    (
        # Deployed defect 1: the call reverts; everything stays in escrow (JC 27, RP 6).
        "deployed_timeout_submit_reverts",
        "lilypad_v1_deployed",
        lambda f, d: (agreed(f, d), f.timeout_submit(111, d, JC)),
        DealState.DealAgreed,
        {OWNER: (0, 0), JC: (73, 27), RP: (94, 6), MED: (0, 0)},
        AGREE_EVENTS + [("Reverted", "timeoutSubmitResult")],
    ),
    (
        # JC never judges; at t = 20 + 100 + 1 the RP calls the judge timeout = an acceptance:
        # RP 115 as in the happy path; JC 100 - 27 + 5 = 78 (Tj = 7 slashed to the owner).
        "timeout_judge_is_acceptance",
        "lilypad_v1",
        lambda f, d: (submitted(f, d), f.timeout_judge(121, d, RP)),
        DealState.TimeoutJudgeResults,
        {OWNER: (7, 0), JC: (78, 0), RP: (115, 0), MED: (0, 0)},
        AGREE_EVENTS
        + SUBMIT_EVENTS
        + [
            ("Pay", RP, 15, JP, PAID_OUT),
            ("Pay", JC, 5, PC, REFUNDED),
            ("Pay", RP, 30, RC, REFUNDED),
            ("Pay", JC, 7, TC, SLASHED),
            ("DSC", 9),
        ],
    ),
    (
        # Deployed defect 1: reverts; JC's P + Tj (27) and RP's R (30) stay in escrow.
        "deployed_timeout_judge_reverts",
        "lilypad_v1_deployed",
        lambda f, d: (submitted(f, d), f.timeout_judge(121, d, RP)),
        DealState.ResultsSubmitted,
        {OWNER: (0, 0), JC: (73, 27), RP: (70, 30), MED: (0, 0)},
        AGREE_EVENTS + SUBMIT_EVENTS + [("Reverted", "timeoutJudgeResult")],
    ),
    (
        # Checked at t=30, no vote by 30 + 100: RP gets R back (100), JC gets P and F back (100).
        "timeout_mediate",
        "lilypad_v1",
        lambda f, d: (submitted(f, d), f.check_result(30, d, MED), f.timeout_mediate(131, d, JC)),
        DealState.TimeoutMediateResults,
        {OWNER: (0, 0), JC: (100, 0), RP: (100, 0), MED: (0, 0)},
        AGREE_EVENTS
        + SUBMIT_EVENTS
        + CHECK_EVENTS
        + [("MR", MED)]
        + [
            ("Pay", RP, 30, RC, REFUNDED),
            ("Pay", JC, 20, PC, REFUNDED),
            ("Pay", JC, 4, MF, REFUNDED),
            ("DSC", 10),
        ],
    ),
]


@pytest.mark.parametrize("name,preset,script,state,expected,evs", CASES, ids=[c[0] for c in CASES])
def test_flow(name, preset, script, state, expected, evs):
    ledger, log, flows, d = make(preset)
    script(flows, d)
    assert d.state == state
    assert balances(ledger) == expected
    assert ledger.total() == 200
    assert events(log) == evs


def test_payment_cap_when_cost_exceeds_collateral():
    # units 10 -> C = 30 > P = 20: the RP is paid min(C, P) = 20; R = m*C = 60.
    # RP: 100 - 6 - 60 + 6 + 20 + 60 = 120. JC: 100 - 27 + 0 (P - pay = 0: no event) + 7 = 80.
    ledger, log, flows, d = make(units=10)
    submitted(flows, d)
    flows.accept_result(30, d)
    assert balances(ledger) == {OWNER: (0, 0), JC: (80, 0), RP: (120, 0), MED: (0, 0)}
    pays = [e for e in events(log) if e[0] == "Pay"]
    assert ("Pay", RP, 20, JP, PAID_OUT) in pays
    assert not any(e[2] == 0 for e in pays)  # zero-amount movements emit nothing


def test_timeouts_are_strict():
    # agreed at 10 with a 100 s window: callable only when now > 110.
    _, _, flows, d = make()
    agreed(flows, d)
    with pytest.raises(CallRejected):
        flows.timeout_submit(110, d, JC)
    assert flows.timeout_submit(111, d, JC)


def test_deployed_mediate_timeout_runs_from_submission_with_judge_window():
    # Defect 3: submitted at 20, judge window 50, mediate window 100, checked at 60.
    # Intended: callable after 60 + 100 = 160. Deployed: after 20 + 50 = 70.
    for preset, too_early, ok in (("lilypad_v1", 150, 161), ("lilypad_v1_deployed", 70, 71)):
        ledger = Ledger(5)
        ledger.mint(JC, 100)
        ledger.mint(RP, 100)
        flows = DealFlows(ledger, EventLog(), PRESETS[preset], OWNER)
        d = Deal(0, JC, RP, 9, (MED,), 0, 5, 3, 20, 2, 4, (100, 100, 50, 100), 6, 7, 0, 0, 0)
        d.units_reported = 5
        submitted(flows, d)
        flows.check_result(60, d, MED)
        with pytest.raises(CallRejected):
            flows.timeout_mediate(too_early, d, JC)
        assert flows.timeout_mediate(ok, d, JC)


@pytest.mark.parametrize(
    "call",
    [
        lambda f, d: f.add_result(20, d),  # not agreed
        lambda f, d: f.accept_result(20, d),
        lambda f, d: f.check_result(20, d, MED),
        lambda f, d: f.mediation_accept(20, d),
        lambda f, d: f.timeout_submit(500, d, JC),
        lambda f, d: f.agree(20, d, MED),  # not a party
    ],
)
def test_guards_reject_out_of_state_calls(call):
    ledger, log, flows, d = make()
    before = (balances(ledger), len(log))
    with pytest.raises(CallRejected):
        call(flows, d)
    assert (balances(ledger), len(log)) == before


def test_each_party_agrees_once_and_needs_funds():
    ledger, _, flows, d = make(jc_wallet=26)  # P + Tj = 27 > 26
    flows.agree(10, d, RP)
    with pytest.raises(CallRejected):
        flows.agree(10, d, RP)
    with pytest.raises(CallRejected):
        flows.agree(10, d, JC)
    assert d.state == DealState.DealNegotiating and ledger.wallet[JC] == 26


def test_deployed_defect_drains_pooled_escrow_and_later_call_reverts_atomically():
    # Deployed defect 2 with Ts = 9 > Tj = 7 and two deals of the same JC, each holding P + Tj = 27
    # (pooled escrow 54). Deal A: only the JC agreed; its timeoutAgree refunds P + Ts = 29, leaving
    # 25 < 27 of deal B's collateral. Deal B (agreed, result submitted) is then accepted: it must pay
    # 15 to the RP and refund 5 + 7 = 12 to the JC (27 in all) -> underflow -> the whole call
    # reverts: no partial payment, deal B stuck in ResultsSubmitted, nothing moved.
    ledger = Ledger(5)
    ledger.mint(JC, 100)
    ledger.mint(RP, 100)
    log = EventLog()
    flows = DealFlows(ledger, log, PRESETS["lilypad_v1_deployed"], OWNER)
    a, b = new_deal(0, Ts=9), new_deal(1, Ts=9)
    flows.agree(10, a, JC)
    flows.agree(10, b, RP)
    flows.agree(10, b, JC)
    flows.add_result(20, b)
    assert ledger.escrow[JC] == 54
    assert flows.timeout_agree(111, a, JC)
    assert ledger.escrow[JC] == 25 and ledger.wallet[JC] == 100 - 54 + 29
    snapshot = (balances(ledger), ledger.total())
    n = len(log)
    assert flows.accept_result(120, b) is False
    assert (balances(ledger), ledger.total()) == snapshot
    assert b.state == DealState.ResultsSubmitted and b.stuck
    assert events(log)[n:] == [("Reverted", "acceptResult")]


@pytest.mark.parametrize("Ts,locked", [(6, 1), (7, 0), (9, 0)])
def test_deployed_defect_2_locks_the_judge_collateral_it_strands(Ts, locked):
    # Deployed defect 2, lone JC (deposited P + Tj = 20 + 7 = 27): timeoutAgree refunds P + Ts.
    # Ts = 6: 26 back, 1 = Tj - Ts stays in the JC's escrow, held by no deal -> locked 1 (the chain
    # reproduction, LilypadPaymentsDeployedV1Defects, leaves the same 1 in escrow for good).
    # Ts = 7: exact refund, nothing locked. Ts = 9: 29 back (2 taken from the pool, which is why
    # this JC needs other escrow: here a second lone deal deposited 27), nothing left to lock.
    ledger, _, flows, d = make("lilypad_v1_deployed", Ts=Ts)
    other = new_deal(1, Ts=Ts)
    flows.agree(10, other, JC)  # pooled escrow that the Ts = 9 case draws on
    flows.agree(10, d, JC)
    assert flows.timeout_agree(111, d, JC)
    assert ledger.escrow[JC] == 54 - 20 - Ts
    assert ledger.locked[JC] == locked


def test_deployed_defect_2_drain_of_a_stuck_deal_shrinks_what_is_locked():
    # Ts = 9 > Tj = 7. Deal B (agreed: JC P + Tj = 27, RP Ts = 9) times out on submission: the
    # deployed call reverts, B is stuck and its 27 are locked (JC escrow 27, locked 27). Lone deal
    # A: the JC deposits 27 (escrow 54); its agree timeout refunds P + Ts = 29 -> escrow 25. The
    # 2 it took beyond A's 27 were B's, so B's stranded collateral is now 25: locked 25, not 27.
    ledger = Ledger(5)
    ledger.mint(JC, 100)
    ledger.mint(RP, 100)
    flows = DealFlows(ledger, EventLog(), PRESETS["lilypad_v1_deployed"], OWNER)
    a, b = new_deal(0, Ts=9), new_deal(1, Ts=9)
    flows.agree(10, b, RP)
    flows.agree(10, b, JC)
    assert flows.timeout_submit(111, b, JC) is False and b.stuck
    assert (ledger.escrow[JC], ledger.locked[JC]) == (27, 27)
    flows.agree(120, a, JC)
    assert flows.timeout_agree(221, a, JC)
    assert (ledger.escrow[JC], ledger.locked[JC]) == (25, 25)


def test_agreement_struct_timestamps():
    _, _, flows, d = make()
    submitted(flows, d)
    flows.accept_result(30, d)
    a = d.agreement()
    assert list(a)[:4] == [
        "state",
        "resourceProviderAgreedAt",
        "jobCreatorAgreedAt",
        "dealCreatedAt",
    ]
    assert (a["state"], a["dealAgreedAt"], a["resultsSubmittedAt"], a["resultsAcceptedAt"]) == (
        3,
        10,
        20,
        30,
    )
