"""Splitting an episode record's events into v1 calls (`bridge.plan`), on small hand-written
records: who called what, with which events, in which order; refusals of what the v1 contracts
cannot replay. No chain needed.

Terms of every deal below (small numbers, easy to follow): instruction price 3, m = 2, P = 20,
F = 4, Ts = 6, Tj = 7 (Ts = 0 where a case says so); accounts 0 owner, 1 solver, 2 JC, 3 RP,
4 mediator.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bridge.plan import RecordError, UnsupportedRecordError, read_plans

OWNER, SOLVER, JC, RP, MED = 0, 1, 2, 3, 4
ADDR = [f"0x{i:040x}" for i in range(8)]
DEAL = "bafkreideal"


def _deal(Ts: int = 6) -> dict:
    return {
        "type": "deal", "episode": 0, "deal_id": DEAL, "deal_index": 0, "solver": ADDR[SOLVER],
        "job_creator": ADDR[JC], "resource_provider": ADDR[RP], "mediators": [ADDR[MED]],
        "timeouts": {"agree_s": 100, "submit_results_s": 100, "judge_results_s": 100,
                     "mediate_results_s": 100, "submit_results_collateral_wei": str(Ts),
                     "judge_results_collateral_wei": "7"},
        "pricing": {"instruction_price_wei": "3", "payment_collateral_wei": "20",
                    "results_collateral_multiple": 2, "mediation_fee_wei": "4"},
        "module": "cowsay", "units": 5,
    }  # fmt: skip


def dsc(t: int, state: int, **extra) -> dict:
    return {"event": "DealStateChange", "time_s": t, "state": state, **extra}


def pay(t: int, who: int, amount: int, reason: int, direction: int, src=None, dst=None) -> dict:
    return {"event": "Payment", "time_s": t, "payee": who, "amount_wei": str(amount),
            "reason_code": reason, "direction_code": direction,
            "source": who if src is None else src, "destination": who if dst is None else dst}  # fmt: skip


def write_record(tmp_path: Path, events: list[dict], Ts: int = 6, config: dict | None = None,
                 balances: list[tuple[int, int]] | None = None,
                 mediators: tuple[int, ...] = (MED,)) -> Path:  # fmt: skip
    n = max(5, max(mediators) + 1)  # accounts past 4 are mediators too
    deal = _deal(Ts)
    deal["mediators"] = [ADDR[m] for m in mediators]
    lines = [
        {"type": "run", "schema_version": 1, "checkpoint": "", "episodes": 1, "seed": 0,
         "config": config or {"protocol": {"preset": "lilypad_v1"}}},
        {"type": "episode", "episode": 0, "seed": 0, "salt": "t", "genesis_time_s": 1000,
         "tick_s": 10, "owner": ADDR[OWNER],
         "accounts": [{"account": i, "address": ADDR[i],
                       "role": ["owner", "solver", "jc", "rp"][i] if i < 4 else "mediator",
                       "agent": None, "seat": None, "policy": None, "genesis_wallet_wei": "100"}
                      for i in range(n)]},
        deal,
    ]  # fmt: skip
    for seq, ev in enumerate(events):
        lines.append({"type": "event", "episode": 0, "tick": ev["time_s"] // 10, "seq": seq,
                      "deal_id": ev.get("deal_id", DEAL), **ev})  # fmt: skip
    bal = balances or [(100, 0)] * n
    lines.append({"type": "episode_end", "episode": 0, "ticks": 9, "time_s": 1090,
                  "events": len(events), "deals": 1,
                  "balances": [{"account": i, "address": ADDR[i], "wallet_wei": str(w),
                                "escrow_wei": str(e), "locked_wei": "0"}
                               for i, (w, e) in enumerate(bal)]})  # fmt: skip
    path = tmp_path / "episodes.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def calls(path: Path) -> list[tuple]:
    """(function, caller, events as (kind, state or amount)) of every step."""
    (plan,) = read_plans(path)
    out = []
    for s in plan.steps:
        evs = tuple(
            ("DSC", e.state) if e.kind == "DealStateChange"
            else ("Pay", e.payee, e.amount) if e.kind == "Payment"
            else (e.kind, e.mediator if e.kind == "MediationRequested" else e.amount)
            for e in s.events
        )  # fmt: skip
        out.append((s.function, s.caller, evs, s.reverts))
    return out


AGREE_BOTH = [dsc(1010, 0), pay(1010, RP, 6, 2, 0), pay(1010, JC, 20, 0, 0),
              pay(1010, JC, 7, 2, 0), dsc(1010, 1)]  # fmt: skip


def test_both_agree_in_one_tick_rp_first(tmp_path: Path) -> None:
    # DSC(0) and the RP's Ts are the RP's agree (it agrees first in the twin); the JC's P and Tj
    # and DSC(1) are the JC's.
    path = write_record(tmp_path, AGREE_BOTH)
    assert calls(path) == [
        ("agree", RP, (("DSC", 0), ("Pay", RP, 6)), False),
        ("agree", JC, (("Pay", JC, 20), ("Pay", JC, 7), ("DSC", 1)), False),
    ]


def test_zero_deposit_rp_still_agrees_first(tmp_path: Path) -> None:
    # Ts = 0: the RP's agree emits only DSC(0) (a 0-token movement emits nothing).
    events = [dsc(1010, 0), pay(1010, JC, 20, 0, 0), pay(1010, JC, 7, 2, 0), dsc(1010, 1)]
    path = write_record(tmp_path, events, Ts=0)
    assert calls(path) == [
        ("agree", RP, (("DSC", 0),), False),
        ("agree", JC, (("Pay", JC, 20), ("Pay", JC, 7), ("DSC", 1)), False),
    ]


def test_lone_jc_then_timeout_agree_called_by_the_jc(tmp_path: Path) -> None:
    # Only the JC agreed (P + Tj = 27 in escrow); 101 s later the JC calls timeoutAgree and is
    # refunded 20 + 7.
    events = [dsc(1010, 0), pay(1010, JC, 20, 0, 0), pay(1010, JC, 7, 2, 0),
              pay(1120, JC, 20, 0, 2), pay(1120, JC, 7, 2, 2), dsc(1120, 7)]  # fmt: skip
    path = write_record(tmp_path, events)
    assert calls(path) == [
        ("agree", JC, (("DSC", 0), ("Pay", JC, 20), ("Pay", JC, 7)), False),
        ("timeoutAgree", JC, (("Pay", JC, 20), ("Pay", JC, 7), ("DSC", 7)), False),
    ]


def test_result_check_and_rejection_with_inferred_count(tmp_path: Path) -> None:
    # addResult without instruction_count: R = 30 = m * price * n = 2 * 3 * n -> n = 5.
    # checkResult: Tj 7 back, F 4 in, DSC(4), the mediator requested; its rejection is its call.
    events = AGREE_BOTH + [
        pay(1020, RP, 30, 1, 0), pay(1020, RP, 6, 2, 2), dsc(1020, 2),
        pay(1030, JC, 7, 2, 2), pay(1030, JC, 4, 4, 0), dsc(1030, 4),
        {"event": "MediationRequested", "time_s": 1030, "mediator": MED},
        pay(1040, JC, 20, 0, 2), pay(1040, MED, 4, 4, 1, src=JC, dst=MED),
        pay(1040, RP, 30, 1, 3, src=RP, dst=OWNER), dsc(1040, 6),
    ]  # fmt: skip
    path = write_record(tmp_path, events)
    (plan,) = read_plans(path)
    got = calls(path)[2:]
    assert [(f, c) for f, c, _, _ in got] == [
        ("addResult", RP),
        ("checkResult", JC),
        ("mediationRejectResult", MED),
    ]
    assert plan.steps[2].instruction_count == 5
    assert got[1][2][-1] == ("MediationRequested", MED)
    assert plan.last_step_of() == {DEAL: 4}


def test_recorded_instruction_count_wins_and_reverted_calls_are_steps(tmp_path: Path) -> None:
    # An inflating RP reported n = 9 (R = 54); the deployed preset's judge timeout reverted.
    events = AGREE_BOTH + [
        pay(1020, RP, 54, 1, 0), pay(1020, RP, 6, 2, 2), dsc(1020, 2, instruction_count=9),
        {"event": "CallReverted", "time_s": 1130, "call": "timeoutJudgeResult", "caller": RP,
         "reason": "calls a payments function that does not exist"},
    ]  # fmt: skip
    (plan,) = read_plans(write_record(tmp_path, events))
    assert plan.steps[2].instruction_count == 9
    last = plan.steps[3]
    assert (last.function, last.caller, last.reverts, last.events) == (
        "timeoutJudgeResult",
        RP,
        True,
        (),
    )


def test_transfers_become_token_transfers_signed_by_their_source(tmp_path: Path) -> None:
    events = AGREE_BOTH + [
        {"event": "Transfer", "time_s": 1015, "source": RP, "destination": MED,
         "amount_wei": "2", "reason": "Bribe"},
    ]  # fmt: skip
    (plan,) = read_plans(write_record(tmp_path, events))
    t = plan.steps[2]
    assert (t.function, t.caller, t.recipient, t.amount_wei, t.transfer_reason) == (
        "transfer",
        RP,
        MED,
        2,
        "Bribe",
    )


CONSORTIUM = {"mediation": {"protocol": "consortium", "selection": "v1_hash",
                             "commit_reveal": False}}  # fmt: skip


@pytest.mark.parametrize(
    "config,match",
    [
        ({"mediation": {"protocol": "consortium", "selection": "uniform"}},
         "mediation.selection='uniform'"),
        ({"mediation": {"protocol": "consortium", "selection": "v1_hash", "commit_reveal": True}},
         "mediation.commit_reveal=True"),
        ({"mediation": {"protocol": "oracle"}}, "mediation.protocol='oracle'"),
        ({"collateral": {"results_timing": "up_front"}}, "collateral.results_timing"),
        ({"collateral": {"pooling_ratio": 2.0}}, "collateral.pooling_ratio"),
    ],
)  # fmt: skip
def test_records_the_contracts_cannot_run_are_refused_by_key(config, match, tmp_path: Path) -> None:
    with pytest.raises(UnsupportedRecordError, match=match):
        read_plans(write_record(tmp_path, AGREE_BOTH, config=config))


def voted(t: int, mediator: int, vote: int) -> dict:
    return {"event": "MediationVoted", "time_s": t, "mediator": mediator, "vote": vote}


def requested(t: int, mediator: int) -> dict:
    return {"event": "MediationRequested", "time_s": t, "mediator": mediator}


def test_consortium_votes_are_calls_of_their_voters(tmp_path: Path) -> None:
    # Mediators 4, 5, 6. checkResult requests the first round (4, 5); 4's accept changes nothing;
    # 5's reject closes the round 1-1 and requests a new round (6) in the same call; 6's vote
    # closes that round and brings the verdict. The verdict is a rejection although 6 voted
    # accept (the plan follows the events, the tally is the contract's): its call is
    # mediationAcceptResult, signed by 6, ending in DSC(6) with the twin's fee payment to 5.
    events = AGREE_BOTH + [
        pay(1020, RP, 30, 1, 0), pay(1020, RP, 6, 2, 2), dsc(1020, 2),
        pay(1030, JC, 7, 2, 2), pay(1030, JC, 4, 4, 0), dsc(1030, 4),
        requested(1030, 4), requested(1030, 5),
        voted(1040, 4, 1), voted(1040, 5, 0), requested(1040, 6),
        voted(1050, 6, 1), pay(1050, JC, 20, 0, 2), pay(1050, 5, 4, 4, 1, src=JC, dst=5),
        pay(1050, RP, 30, 1, 3, src=RP, dst=OWNER), dsc(1050, 6),
    ]  # fmt: skip
    path = write_record(tmp_path, events, config=CONSORTIUM, mediators=(4, 5, 6))
    got = calls(path)[3:]
    assert [(f, c, [e[0] for e in evs]) for f, c, evs, _ in got] == [
        ("checkResult", JC, ["Pay", "Pay", "DSC", "MediationRequested", "MediationRequested"]),
        ("mediationAcceptResult", 4, ["MediationVoted"]),
        ("mediationRejectResult", 5, ["MediationVoted", "MediationRequested"]),
        ("mediationAcceptResult", 6, ["MediationVoted", "Pay", "Pay", "Pay", "DSC"]),
    ]
    (plan,) = read_plans(path)
    assert [e.vote for s in plan.steps[4:] for e in s.events if e.kind == "MediationVoted"] == [
        1,
        0,
        1,
    ]
    assert plan.last_step_of() == {DEAL: 6}  # 2 agrees, addResult, checkResult, 3 votes


def test_sealed_votes_and_votes_under_v1_are_refused(tmp_path: Path) -> None:
    events = AGREE_BOTH + [voted(1050, MED, 2)]
    with pytest.raises(UnsupportedRecordError, match="mediation.commit_reveal"):
        read_plans(write_record(tmp_path, events, config=CONSORTIUM))
    with pytest.raises(RecordError, match="MediationVoted event under v1"):
        read_plans(write_record(tmp_path, AGREE_BOTH + [
            pay(1020, RP, 30, 1, 0), pay(1020, RP, 6, 2, 2), dsc(1020, 2),
            pay(1030, JC, 7, 2, 2), pay(1030, JC, 4, 4, 0), dsc(1030, 4), requested(1030, MED),
            voted(1040, MED, 1)]))  # fmt: skip


def test_events_that_form_no_call_name_the_line_and_the_deal(tmp_path: Path) -> None:
    # A refund with no DealStateChange after it is no v1 call.
    events = AGREE_BOTH + [pay(1020, RP, 6, 2, 2)]
    with pytest.raises(RecordError, match=r"episodes.jsonl:\d+: deal bafkreideal"):
        read_plans(write_record(tmp_path, events))
    # acceptResult straight from DealAgreed is no v1 transition
    events = AGREE_BOTH + [pay(1020, JC, 7, 2, 2), dsc(1020, 3)]
    with pytest.raises(RecordError, match="no v1 call goes from DealAgreed to ResultsAccepted"):
        read_plans(write_record(tmp_path, events))


def test_missing_record_and_missing_episode_are_clear(tmp_path: Path) -> None:
    with pytest.raises(RecordError, match="no episode record"):
        read_plans(tmp_path / "nope.jsonl")
    path = write_record(tmp_path, AGREE_BOTH)
    with pytest.raises(RecordError, match=r"episodes: \[3\] not in"):
        read_plans(path, [3])
