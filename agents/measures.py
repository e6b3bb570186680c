"""Measures of spec section 5 per role, computed from a finished market (no RLlib here).

:func:`episode_counts` reads one finished :class:`twin.market.Market` (its deals, seats and event
log: the columns of :func:`twin.metrics.deals_frame` and :func:`twin.metrics.agents_frame` that
the measures need, read from the deals directly, without building the frames) and
returns additive counts per ``(role, seats)`` with ``seats`` = ``all`` (every seat of the role)
or ``learning`` (the role's learning seats), plus a ``market`` row over every seat and deal. :func:`rates` pools the counts of any number of
episodes into the measures below, so an iteration's rates are exact ratios over all its deals,
not means of per-episode ratios. The deals of a ``(role, seats)`` row are those in which one of
those seats is the party of that role (for mediators: the deals they were asked to check).

Measures (``_tokens`` are token floats):

- ``payoff_tokens``: mean payoff per seat and episode (wealth change minus execution cost).
- ``cheat_rate``: executed deals whose result was faked or inflated / executed deals.
- ``check_rate``: deals whose result the client checked / deals with a submitted result.
- ``collusion_rate``: collusive mediator verdicts / checked deals.
- ``wrong_accepted_rate``: deals whose wrong result was accepted (by the client, a mediator or
  the judge timeout) / deals.
- ``mediation_rate``: checked deals (mediation requested) / deals.
- ``collateral_locked_tokens``: escrow held by the seats, **time-weighted** over the episode
  (integral of escrow over simulated time, from every escrow movement of the event log, divided
  by the episode's duration), summed over the seats, mean per episode.
- ``stranded_tokens``: escrow locked for good at the end (deployed-contract defects).
- ``client_surplus_tokens`` (rows with JC seats): mean per JC seat and episode of its payoff plus the
  value of the correct results it received; a correct result is worth
  ``train.client_value_multiple`` x its honest price (base instruction price x true work units).
- ``protocol_revenue_tokens``: collateral slashed from the seats to the protocol owner, per
  episode.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from twin.deals import PAID_STATES, ExecMode
from twin.events import EventKind
from twin.events import PaymentDirection as D
from twin.ledger import WEI_PER_TOKEN
from twin.market import GENESIS_TIME_S
from twin.metrics import OUTCOMES

ROLES = ("rp", "jc", "mediator")
ROWS = ("market", *ROLES)  # the market row pools every seat and every deal
SEATS = ("all", "learning")
SUBMITTED = {"submitted", "accepted", "checking", "check_passed", "check_failed",
             "timeout_judge", "timeout_mediate"}  # fmt: skip
#: the deal states whose outcome is in SUBMITTED (a stuck deal's outcome is "stuck")
SUBMITTED_STATES = frozenset(s for s, name in OUTCOMES.items() if name in SUBMITTED)
MEASURES = ("payoff_tokens", "cheat_rate", "check_rate", "collusion_rate", "wrong_accepted_rate",
            "mediation_rate", "collateral_locked_tokens", "stranded_tokens",
            "client_surplus_tokens", "protocol_revenue_tokens", "deals_per_episode")  # fmt: skip


def _escrow_integrals(market) -> tuple[np.ndarray, np.ndarray]:
    """Per account: integral of escrow over the episode (token-seconds); slashed to the owner."""
    n, end, owner = market.n_accounts, market.now, market.owner
    integral = [0.0] * n
    revenue = [0.0] * n
    payment, paid_in, refunded, slashed = EventKind.Payment, D.PaidIn, D.Refunded, D.Slashed
    for r in market.log.rows:
        if r[0] != payment:
            continue
        t, payee, amount, direction, src, dst = r[1], r[3], r[4], r[6], r[7], r[8]
        tokens = amount / WEI_PER_TOKEN
        if direction == paid_in:
            integral[payee] += tokens * (end - t)
        elif direction == refunded:
            integral[payee] -= tokens * (end - t)
        else:  # PaidOut, Slashed: out of the source's escrow
            integral[src] -= tokens * (end - t)
            if direction == slashed and dst == owner:
                revenue[src] += tokens
    return np.array(integral), np.array(revenue)


def _deal_columns(market) -> dict[str, np.ndarray]:
    """The columns of :func:`twin.metrics.deals_frame` that the measures use, one entry per deal
    that reached the chain, read from the deals: the parties; executed (``mode != "none"``),
    cheated, checked, collusive, wrong accepted (a cheated result delivered); submitted
    (``outcome`` in :data:`SUBMITTED`; a stuck deal's outcome is ``"stuck"``)."""
    pending = ExecMode.Pending
    rows = [
        (d.jc, d.rp, d.mediator, d.mode != pending, d.cheated, d.checked, d.collusive,
         d.cheated and d.state in PAID_STATES, not d.stuck and d.state in SUBMITTED_STATES)
        for d in market.deals
        if d.rp_agreed_at or d.jc_agreed_at
    ]  # fmt: skip
    names = ("jc", "rp", "mediator", "executed", "cheated", "checked", "collusive", "wrong",
             "submitted")  # fmt: skip
    if not rows:
        return {c: np.zeros(0, np.int64 if c in ROLES else bool) for c in names}
    cols = list(zip(*rows, strict=True))
    return {
        c: np.array(v, np.int64 if c in ROLES else bool) for c, v in zip(names, cols, strict=True)
    }


def episode_counts(market, seats: Sequence[tuple], value_multiple: float) -> list[dict]:
    """Additive counts of one finished episode, one dict per ``(role, seats)``.

    ``seats``: :meth:`twin.env.MarketEnv.seat_table` rows (agent, role, account, kind, policy).
    The deals of a role's row are those in which its seats are that party (``deals_frame``
    columns ``rp``, ``jc``, ``mediator``); mediators' rows keep the deals they checked. A seat's
    payoff is ``agents_frame``'s: wealth change minus execution cost.
    """
    cols = _deal_columns(market)
    integral, revenue = _escrow_integrals(market)
    duration = max(1, market.now - GENESIS_TIME_S)
    base = market.base_price
    value = np.zeros(market.n_accounts)
    for d in market.deals:
        if d.correct and d.state in PAID_STATES:
            value[d.jc] += value_multiple * base * d.units / WEI_PER_TOKEN
    n_deals = len(cols["rp"])
    party = {r: cols[r] for r in ROLES}
    executed, cheated, checked = cols["executed"], cols["cheated"], cols["checked"]
    collusive, wrong, submitted = cols["collusive"], cols["wrong"], cols["submitted"]
    a_role = np.array([s[1] for s in seats], object)
    a_seat = np.array([s[3] for s in seats], object)
    a_acct = np.array([s[2] for s in seats], np.int64)
    payoff = market.wealth_tokens() - market.genesis_wealth - market.cost_tokens
    a_pay = payoff[a_acct] if len(a_acct) else np.zeros(0)
    groups = [("market", "all", np.ones(len(seats), bool), np.ones(n_deals, bool))]
    for role in ROLES:
        for kind in SEATS:
            sel = (a_role == role) & ((a_seat == "learning") if kind == "learning" else True)
            if kind == "learning" and not sel.any():
                continue
            dl = np.isin(party[role], a_acct[sel])
            if role == "mediator":
                dl &= checked
            groups.append((role, kind, sel, dl))
    locked = market.ledger.locked_tokens
    out = []
    for role, kind, sel, dl in groups:
        accts = a_acct[sel]
        jc = sel & (a_role == "jc")
        out.append({
            "role": role, "seats": kind, "episodes": 1, "seats_n": int(sel.sum()),
            "jc_seats_n": int(jc.sum()), "payoff": float(a_pay[sel].sum()), "deals": int(dl.sum()),
            "executed": int((dl & executed).sum()), "cheated": int((dl & cheated).sum()),
            "submitted": int((dl & submitted).sum()), "checked": int((dl & checked).sum()),
            "collusive": int((dl & collusive).sum()), "wrong_accepted": int((dl & wrong).sum()),
            "locked_token_s": float(integral[accts].sum()), "duration_s": float(duration),
            "stranded": float(locked[accts].sum()),
            "surplus": float(a_pay[jc].sum() + value[a_acct[jc]].sum()),
            "revenue": float(revenue[accts].sum()),
        })  # fmt: skip
    return out


def _ratio(a: float, b: float) -> float:
    return float(a) / float(b) if b else float("nan")


def rates(counts: Iterable[dict]) -> pd.DataFrame:
    """Pool the counts of any number of episodes into one row of measures per ``(role, seats)``."""
    df = pd.DataFrame(list(counts))
    if df.empty:
        return pd.DataFrame(columns=["role", "seats", "episodes", *MEASURES])
    g = df.groupby(["role", "seats"], sort=False).sum(numeric_only=True, min_count=1)
    rows = []
    for (role, kind), c in g.iterrows():
        seat_eps = c["seats_n"]
        rows.append({
            "role": role, "seats": kind, "episodes": int(c["episodes"]),
            "payoff_tokens": _ratio(c["payoff"], seat_eps),
            "cheat_rate": _ratio(c["cheated"], c["executed"]),
            "check_rate": _ratio(c["checked"], c["submitted"]),
            "collusion_rate": _ratio(c["collusive"], c["checked"]),
            "wrong_accepted_rate": _ratio(c["wrong_accepted"], c["deals"]),
            "mediation_rate": _ratio(c["checked"], c["deals"]),
            "collateral_locked_tokens": _ratio(c["locked_token_s"], c["duration_s"]),
            "stranded_tokens": _ratio(c["stranded"], c["episodes"]),
            "client_surplus_tokens": _ratio(c["surplus"], c["jc_seats_n"]),
            "protocol_revenue_tokens": _ratio(c["revenue"], c["episodes"]),
            "deals_per_episode": _ratio(c["deals"], c["episodes"]),
        })  # fmt: skip
    return pd.DataFrame(rows)
