"""The collector: turns a market's deals and events into pandas DataFrames.

:func:`deals_frame` gives one row per deal that reached the chain (parties, terms, final state,
how the result was produced, whether it was checked, the outcome, and the payments, summed from
the ``Payment`` and ``Transfer`` events); :func:`agents_frame` one row per seat (role, seat kind,
policy, payoff, cost, deals, cheats, times caught, checks, mediations). Amounts ending in
``_wei`` are exact Python ints; ``_tokens`` columns are floats for analysis.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pandas as pd

from twin.deals import PAID_STATES, DealState, ExecMode
from twin.events import EventKind, TransferReason
from twin.events import PaymentDirection as D
from twin.events import PaymentReason as R
from twin.ledger import WEI_PER_TOKEN

OUTCOMES = {
    DealState.DealNegotiating: "negotiating",
    DealState.DealAgreed: "agreed",
    DealState.ResultsSubmitted: "submitted",
    DealState.ResultsAccepted: "accepted",
    DealState.ResultsChecked: "checking",
    DealState.MediationAccepted: "check_passed",
    DealState.MediationRejected: "check_failed",
    DealState.TimeoutAgree: "timeout_agree",
    DealState.TimeoutSubmitResults: "timeout_submit",
    DealState.TimeoutJudgeResults: "timeout_judge",
    DealState.TimeoutMediateResults: "timeout_mediate",
}


def deal_flows(market) -> dict[int, dict[str, int]]:
    """Per deal: wei paid to the RP, slashed from the RP and the JC, fees, bribes, refunds."""
    out: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in market.log.rows:
        kind, d = r[0], r[2]
        if d < 0:
            continue
        if kind == EventKind.Payment:
            payee, amount, reason, direction = r[3], r[4], r[5], r[6]
            f = out[d]
            if direction == D.PaidOut and reason == R.JobPayment:
                f["paid_to_rp_wei"] += amount
            elif direction == D.PaidOut and reason == R.MediationFee:
                f["mediation_fee_paid_wei"] += amount
            elif direction == D.Slashed:
                deal = market.deals[d]
                f["slashed_rp_wei" if payee == deal.rp else "slashed_jc_wei"] += amount
        elif kind == EventKind.Transfer and r[6] == TransferReason.Bribe:
            deal = market.deals[d]
            f = out[d]
            f["bribe_wei"] += r[5]
            f["bribe_by_rp_wei" if r[3] == deal.rp else "bribe_by_jc_wei"] += r[5]
    return out


def deals_frame(market, episode: int = 0, with_ids: bool = False) -> pd.DataFrame:
    flows = deal_flows(market)
    rows = []
    T = WEI_PER_TOKEN
    for d in market.deals:
        if not (d.rp_agreed_at or d.jc_agreed_at):
            continue  # never reached the chain
        f = flows.get(d.index, {})
        paid = f.get("paid_to_rp_wei", 0)
        slashed_rp = f.get("slashed_rp_wei", 0)
        bribe_rp = f.get("bribe_by_rp_wei", 0)
        rp_delta = paid - slashed_rp - bribe_rp
        rows.append({
            "episode": episode, "deal": d.index, "deal_id": market.deal_id(d.index) if with_ids else "",
            "jc": d.jc, "rp": d.rp, "mediator": d.mediator, "module": market.module_names[d.module],
            "units": d.units, "units_reported": d.units_reported,
            "instruction_price_wei": d.instruction_price, "payment_collateral_wei": d.payment_collateral,
            "results_multiple": d.results_multiple, "mediation_fee_wei": d.mediation_fee,
            "job_cost_wei": d.job_cost, "state": int(d.state), "outcome": "stuck" if d.stuck else OUTCOMES[d.state],
            "mode": d.mode.name.lower() if d.mode != ExecMode.Pending else "none",
            "cheated": d.cheated, "checked": d.checked, "collusive": d.collusive,
            "wrong_accepted": d.cheated and d.state in PAID_STATES,
            "paid_to_rp_wei": paid, "slashed_rp_wei": slashed_rp, "slashed_jc_wei": f.get("slashed_jc_wei", 0),
            "mediation_fee_paid_wei": f.get("mediation_fee_paid_wei", 0), "bribe_wei": f.get("bribe_wei", 0),
            "rp_exec_cost_wei": d.exec_cost,
            "late_withheld_wei": d.late_withheld, "slash_unpaid_wei": d.slash_unpaid, "flagged": d.flagged,
            "rp_profit_tokens": (rp_delta - d.exec_cost) / T,
            "job_cost_tokens": d.job_cost / T,
            "created_at": d.created_at, "ended_at": d.ended_at, "stuck": d.stuck,
        })  # fmt: skip
    return pd.DataFrame(rows)


def agents_frame(market, seats, episode: int = 0) -> pd.DataFrame:
    """``seats``: (agent, group, account, seat kind, policy) rows (see ``MarketEnv.seat_table``)."""
    wealth = market.wealth_tokens()
    rows = []
    for name, group, acct, kind, policy in seats:
        rows.append({
            "episode": episode, "agent": name, "role": group, "account": acct, "seat": kind, "policy": policy,
            "payoff_tokens": wealth[acct] - market.genesis_wealth[acct] - market.cost_tokens[acct],
            "wealth_tokens": wealth[acct], "cost_tokens": market.cost_tokens[acct],
            "locked_tokens": market.ledger.locked_tokens[acct],
            "deals": int(market.n_deals[acct]), "cheats": int(market.n_cheats[acct]), "caught": int(market.n_caught[acct]),
            "checks": int(market.n_checks[acct]), "mediations": int(market.n_mediations[acct]),
            "collusive_votes": int(market.n_collusive[acct]),
        })  # fmt: skip
    return pd.DataFrame(rows)


def summary(deals: pd.DataFrame, agents: pd.DataFrame) -> dict[str, float]:
    """Headline measures of spec section 5 over a set of episodes."""
    n = max(1, len(deals))
    executed = deals[deals["mode"] != "none"] if len(deals) else deals
    ne = max(1, len(executed))
    return {
        "deals": float(len(deals)),
        "cheat_rate": float(executed["cheated"].sum() / ne) if len(deals) else 0.0,
        "check_rate": float(deals["checked"].sum() / n) if len(deals) else 0.0,
        "wrong_accepted_rate": float(deals["wrong_accepted"].sum() / n) if len(deals) else 0.0,
        "collusion_rate": float(deals["collusive"].sum() / n) if len(deals) else 0.0,
        "stuck_deals": float(deals["stuck"].sum()) if len(deals) else 0.0,
        "mean_payoff_rp": float(agents.loc[agents.role == "rp", "payoff_tokens"].mean())
        if len(agents)
        else np.nan,
        "mean_payoff_jc": float(agents.loc[agents.role == "jc", "payoff_tokens"].mean())
        if len(agents)
        else np.nan,
    }


def balances_from_events(
    genesis_wallets: list[int], rows: list[tuple]
) -> tuple[list[int], list[int]]:
    """Rebuild every wallet and escrow balance from the genesis wallets and the event log alone.

    The ledger must equal this rebuild at any time: every token movement is an event."""
    wallet, escrow = list(genesis_wallets), [0] * len(genesis_wallets)
    for r in rows:
        if r[0] == EventKind.Payment:
            payee, amount, direction, src, dst = r[3], r[4], r[6], r[7], r[8]
            if direction == D.PaidIn:
                wallet[payee] -= amount
                escrow[payee] += amount
            elif direction == D.Refunded:
                escrow[payee] -= amount
                wallet[payee] += amount
            else:
                escrow[src] -= amount
                wallet[dst] += amount
        elif r[0] == EventKind.Transfer:
            wallet[r[3]] -= r[5]
            wallet[r[4]] += r[5]
    return wallet, escrow
