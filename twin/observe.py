"""Observations and action masks of every seat, built as one matrix per role.

Each role has a fixed feature vector (names in :data:`FEATURES`). Money and counts are
``symlog``-scaled (``sign(x) * log1p(|x|)``, money in tokens) so that one network sees small and
large markets alike; shares and flags are in [0, 1].

The *focus deal* of a seat is the oldest deal waiting for that seat's decision (RP: agreed, not
yet executed; JC: results submitted, not yet judged; mediator: check requested, not yet voted).
Its terms fill the ``focus_*`` features (zeros when there is none). The action taken in the next
tick applies to every deal the seat has waiting.

Masks (1 = allowed): RP ``[honest, cheat, inflate, skip] + [price levels...]`` (without a focus
deal only ``honest``, which is then a no-op); JC ``[accept, check, wait]`` (without a focus deal
only ``wait``; ``check`` needs the mediation fee); mediator ``[honest, collude]`` (``collude``
only when a member of the mediator's collusion ring is a party of the focus deal).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from twin.ledger import WEI_PER_TOKEN
from twin.modules import runtime_s

RP_FEATURES = (
    "wallet", "escrow", "open_deals", "pending", "focus", "focus_job_cost", "focus_payment_collateral",
    "focus_results_collateral", "focus_mediation_fee", "focus_exec_cost", "focus_nondeterminism",
    "focus_ring_mediator", "rep_completed", "rep_checked", "rep_failed", "free_cpu_share", "price_level",
    "recent_check_rate", "recent_reject_rate", "open_job_offers", "mean_ask", "time_left",
)  # fmt: skip
JC_FEATURES = (
    "wallet", "escrow", "open_deals", "pending", "focus", "focus_job_cost", "focus_payment_collateral",
    "focus_results_collateral", "focus_mediation_fee", "focus_wait_share", "rp_completed", "rp_checked",
    "rp_failed", "rp_fail_rate", "focus_nondeterminism", "focus_ring_rp", "recent_check_rate",
    "recent_reject_rate", "open_job_offers", "mean_ask", "time_left",
)  # fmt: skip
MED_FEATURES = (
    "wallet", "escrow", "pending", "focus", "focus_job_cost", "focus_results_collateral", "focus_mediation_fee",
    "focus_rp_in_ring", "focus_jc_in_ring", "bribe", "focus_reexec_cost", "recent_check_rate",
    "recent_reject_rate", "time_left",
)  # fmt: skip
FEATURES = {"rp": RP_FEATURES, "jc": JC_FEATURES, "mediator": MED_FEATURES}


def symlog(x):
    return np.sign(x) * np.log1p(np.abs(x))


@dataclass
class Observation:
    """Per-role observation matrices (rows: seats of the group) and action masks."""

    rp: np.ndarray
    rp_mask: np.ndarray
    jc: np.ndarray
    jc_mask: np.ndarray
    mediator: np.ndarray
    mediator_mask: np.ndarray


def _first_per_seat(queue, row_of) -> dict[int, int]:
    """Oldest queued deal per seat row; ``row_of(entry)`` gives the seat row of a queue entry."""
    out: dict[int, int] = {}
    for e in queue:
        r = row_of(e)
        if r not in out:
            out[r] = e[0]
    return out


def observe(mk, n_price_levels: int) -> Observation:
    """Build every seat's observation of market ``mk`` (a :class:`twin.market.Market`)."""
    L = mk.ledger
    T = WEI_PER_TOKEN
    deals, row = mk.deals, mk.row
    rec = mk.recent.sum(axis=0)
    check_rate = rec[1] / max(1, rec[0])
    reject_rate = rec[2] / max(1, rec[2] + rec[3])
    offering = mk.res.offering
    mean_ask = (
        float(mk.res.price[offering].mean() / max(1, mk.base_price)) if offering.any() else 0.0
    )
    open_offers = np.log1p(len(mk.jobs.live))
    ep = mk.cfg.market.episode_ticks
    time_left = max(0, ep - mk.tick) / ep
    ring = mk.collusion.ring

    # -- resource providers
    acc = mk.rp_acct
    n = mk.n_rp
    X = np.zeros((n, len(RP_FEATURES)), np.float32)
    X[:, 0] = symlog(L.wallet_tokens[acc])
    X[:, 1] = symlog(L.escrow_tokens[acc])
    X[:, 2] = symlog(mk.open_deals[acc])
    pend = (
        np.bincount([row[deals[e[0]].rp] for e in mk.exec_queue], minlength=n)
        if mk.exec_queue
        else np.zeros(n)
    )
    X[:, 3] = symlog(pend)
    X[:, 12] = symlog(mk.rep_completed[acc])
    X[:, 13] = symlog(mk.rep_checked[acc])
    X[:, 14] = symlog(mk.rep_failed[acc])
    X[:, 15] = mk.res.free_cpu / np.maximum(1, mk.res.cap_cpu)
    X[:, 16] = mk.res.price / max(1, mk.base_price)
    X[:, 17], X[:, 18], X[:, 19], X[:, 20], X[:, 21] = (
        check_rate,
        reject_rate,
        open_offers,
        mean_ask,
        time_left,
    )
    M = np.zeros((n, 4 + n_price_levels), np.int8)
    M[:, 0] = 1
    M[:, 4:] = 1
    if mk.exec_queue:
        fl = mk.fleet
        for r, di in _first_per_seat(mk.exec_queue, lambda e: row[deals[e[0]].rp]).items():
            d = deals[di]
            job = mk.job_classes[d.module]
            c = d.instruction_price * d.units
            speed = float(fl.gpu_speed[r] if job.kind == "gpu" else fl.cpu_speed[r])
            X[r, 4] = 1.0
            X[r, 5] = symlog(c / T)
            X[r, 6] = symlog(d.payment_collateral / T)
            X[r, 7] = symlog(d.results_multiple * c / T)
            X[r, 8] = symlog(d.mediation_fee / T)
            X[r, 9] = symlog(runtime_s(d.units, speed) * int(fl.cost_wei_per_s[r]) / T)
            X[r, 10] = job.nondeterminism_prob
            my = ring[d.rp]
            X[r, 11] = float(my >= 0 and any(ring[x] == my for x in d.mediators))
            M[r, 1:4] = 1

    # -- job creators
    acc = mk.jc_acct
    n = mk.n_jc
    J = np.zeros((n, len(JC_FEATURES)), np.float32)
    J[:, 0] = symlog(L.wallet_tokens[acc])
    J[:, 1] = symlog(L.escrow_tokens[acc])
    J[:, 2] = symlog(mk.open_deals[acc])
    pend = (
        np.bincount([row[deals[e[0]].jc] for e in mk.judge_queue], minlength=n)
        if mk.judge_queue
        else np.zeros(n)
    )
    J[:, 3] = symlog(pend)
    J[:, 16], J[:, 17], J[:, 18], J[:, 19], J[:, 20] = (
        check_rate,
        reject_rate,
        open_offers,
        mean_ask,
        time_left,
    )
    JM = np.zeros((n, 3), np.int8)
    JM[:, 2] = 1
    if mk.judge_queue:
        for r, di in _first_per_seat(mk.judge_queue, lambda e: row[deals[e[0]].jc]).items():
            d = deals[di]
            c = d.job_cost
            J[r, 4] = 1.0
            J[r, 5] = symlog(c / T)
            J[r, 6] = symlog(d.payment_collateral / T)
            J[r, 7] = symlog(d.results_collateral / T)
            J[r, 8] = symlog(d.mediation_fee / T)
            J[r, 9] = (mk.now - d.submitted_at) / max(1, d.judge_timeout)
            J[r, 10] = symlog(mk.rep_completed[d.rp])
            J[r, 11] = symlog(mk.rep_checked[d.rp])
            J[r, 12] = symlog(mk.rep_failed[d.rp])
            J[r, 13] = (mk.rep_failed[d.rp] + 1) / (
                mk.rep_checked[d.rp] + 2
            )  # pass/fail with a uniform prior
            J[r, 14] = mk.job_classes[d.module].nondeterminism_prob
            J[r, 15] = float(ring[d.jc] >= 0 and ring[d.rp] == ring[d.jc])
            JM[r, 0] = 1
            JM[r, 1] = int(L.wallet[d.jc] + d.judge_collateral >= d.mediation_fee)

    # -- mediators
    acc = mk.med_acct
    n = mk.n_med
    Z = np.zeros((n, len(MED_FEATURES)), np.float32)
    Z[:, 0] = symlog(L.wallet_tokens[acc])
    Z[:, 1] = symlog(L.escrow_tokens[acc])
    pend = (
        np.bincount([row[e[1]] for e in mk.mediate_queue], minlength=n)
        if mk.mediate_queue
        else np.zeros(n)
    )
    Z[:, 2] = symlog(pend)
    Z[:, 11], Z[:, 12], Z[:, 13] = check_rate, reject_rate, time_left
    ZM = np.zeros((n, 2), np.int8)
    ZM[:, 0] = 1
    if mk.mediate_queue:
        for r, di in _first_per_seat(mk.mediate_queue, lambda e: row[e[1]]).items():
            d = deals[di]
            med = int(acc[r])
            job = mk.job_classes[d.module]
            speed, cost = mk.mediator_machine(med, job)
            my = ring[med]
            rp_in, jc_in = my >= 0 and ring[d.rp] == my, my >= 0 and ring[d.jc] == my
            Z[r, 3] = 1.0
            Z[r, 4] = symlog(d.job_cost / T)
            Z[r, 5] = symlog(d.results_collateral / T)
            Z[r, 6] = symlog(d.mediation_fee / T)
            Z[r, 7], Z[r, 8] = float(rp_in), float(jc_in)
            Z[r, 9] = symlog(mk.collusion.bribe_wei / T) if (rp_in or jc_in) else 0.0
            Z[r, 10] = symlog(runtime_s(d.units, speed) * cost / T)
            ZM[r, 1] = int(rp_in or jc_in)
    return Observation(X, M, J, JM, Z, ZM)
