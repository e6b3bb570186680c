"""Observations and action masks of every seat, built as one matrix per role.

Each role has a fixed feature vector (names in :data:`FEATURES`). Money and counts are
``symlog``-scaled (``sign(x) * log1p(|x|)``, money in tokens) so that one network sees small and
large markets alike; shares and flags are in [0, 1].

The *focus deal* of a seat is the oldest deal waiting for that seat's decision (RP: agreed, not
yet executed; JC: results submitted, not yet judged; mediator: check requested, not yet voted).
Its terms fill the ``focus_*`` features (zeros when there is none). The action taken in the next
tick applies to every deal the seat has waiting.

Masks (1 = allowed): RP over the flat action ``mode * n_price_levels + level`` with modes
``honest, cheat, inflate, skip`` (without a focus deal only ``honest``, a no-op, at any level); JC ``[accept, check, wait]`` (without a focus deal
only ``wait``; ``check`` needs the mediation fee); mediator ``[honest, collude]`` (``collude``
only when a member of the mediator's collusion ring is a party of the focus deal). Mechanisms
that ask seats for decisions of their own open the actions those use (hook ``action_mask``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from twin.ledger import WEI_PER_TOKEN
from twin.modules import runtime_s

RP_FEATURES = (
    "wallet", "escrow", "open_deals", "pending", "rep_completed", "rep_checked", "rep_failed",
    "free_cpu_share", "price_level",
    "focus", "focus_job_cost", "focus_payment_collateral", "focus_results_collateral", "focus_mediation_fee",
    "focus_exec_cost", "focus_nondeterminism", "focus_ring_mediator",
    "recent_check_rate", "recent_reject_rate", "open_job_offers", "mean_ask", "time_left",
)  # fmt: skip
JC_FEATURES = (
    "wallet", "escrow", "open_deals", "pending",
    "focus", "focus_job_cost", "focus_payment_collateral", "focus_results_collateral", "focus_mediation_fee",
    "focus_wait_share", "rp_completed", "rp_checked", "rp_failed", "rp_fail_rate", "focus_nondeterminism",
    "focus_ring_rp",
    "recent_check_rate", "recent_reject_rate", "open_job_offers", "mean_ask", "time_left",
)  # fmt: skip
MED_FEATURES = (
    "wallet", "escrow", "pending",
    "focus", "focus_job_cost", "focus_results_collateral", "focus_mediation_fee", "bribe", "focus_reexec_cost",
    "focus_rp_in_ring", "focus_jc_in_ring",
    "recent_check_rate", "recent_reject_rate", "time_left",
)  # fmt: skip
FEATURES = {"rp": RP_FEATURES, "jc": JC_FEATURES, "mediator": MED_FEATURES}


def symlog(x):
    """``sign(x) * log1p(|x|)`` for arrays (numpy) and scalars (math: 20x cheaper per call)."""
    if isinstance(x, np.ndarray):
        return np.sign(x) * np.log1p(np.abs(x))
    x = float(x)
    return math.copysign(math.log1p(abs(x)), x)


@dataclass
class Observation:
    """Per-role observation matrices (rows: seats of the group) and action masks."""

    rp: np.ndarray
    rp_mask: np.ndarray
    jc: np.ndarray
    jc_mask: np.ndarray
    mediator: np.ndarray
    mediator_mask: np.ndarray


def observe(mk, n_price_levels: int) -> Observation:
    """Build every seat's observation of market ``mk`` (a :class:`twin.market.Market`)."""
    L = mk.ledger
    T = WEI_PER_TOKEN
    deals, row = mk.deals, mk.row
    rec = mk.recent.sum(axis=0)
    offering = mk.res.offering
    mean_ask = (
        float(mk.res.price[offering].mean() / max(1, mk.base_price)) if offering.any() else 0.0
    )
    ep = mk.cfg.market.episode_ticks
    time_left = max(0, ep - mk.tick) / ep
    public = (
        rec[1] / max(1, rec[0]),
        rec[2] / max(1, rec[2] + rec[3]),
        math.log1p(len(mk.jobs.live)),
        mean_ask,
        time_left,
    )
    ring = mk.collusion.ring
    wt, et = L.wallet_tokens, L.escrow_tokens

    # -- resource providers
    acc = mk.rp_acct
    X = np.empty((mk.n_rp, len(RP_FEATURES)), np.float32)
    X[:, 0:7] = symlog(np.stack((wt[acc], et[acc], mk.open_deals[acc], mk.exec_q.count[acc], mk.rep_completed[acc],
                                 mk.rep_checked[acc], mk.rep_failed[acc]), axis=1))  # fmt: skip
    X[:, 7] = mk.res.free_cpu / np.maximum(1, mk.res.cap_cpu)
    X[:, 8] = mk.res.price / max(1, mk.base_price)
    X[:, 9:17] = 0.0
    X[:, 17:22] = public
    M = np.ones((mk.n_rp, 4, n_price_levels), np.int8)  # (mode, price level), flattened below
    M[:, 1:4] = 0
    if mk.exec_q:
        fl = mk.fleet
        focus = {int(row[a]): di for a, di in mk.exec_q.first().items()}
        rows = np.fromiter(focus.keys(), np.int64, len(focus))
        vals = np.empty((len(rows), 7))
        for k, (r, di) in enumerate(focus.items()):
            d = deals[di]
            job = mk.job_classes[d.module]
            c = d.instruction_price * d.units
            speed = float(fl.gpu_speed[r] if job.kind == "gpu" else fl.cpu_speed[r])
            my = ring[d.rp]
            vals[k] = (c / T, d.payment_collateral / T, d.results_multiple * c / T, d.mediation_fee / T,
                       runtime_s(d.units, speed) * int(fl.cost_wei_per_s[r]) / T, job.nondeterminism_prob,
                       float(my >= 0 and any(ring[x] == my for x in d.mediators)))  # fmt: skip
        X[rows, 9] = 1.0
        X[rows, 10:15] = symlog(vals[:, :5])
        X[rows, 15:17] = vals[:, 5:7]
        M[rows, 1:4] = 1
    for mech in mk._hooks["action_mask"]:  # decisions that mechanisms ask of the RPs
        mech.action_mask(mk, "rp", M)
    M = M.reshape(mk.n_rp, 4 * n_price_levels)

    # -- job creators
    acc = mk.jc_acct
    J = np.empty((mk.n_jc, len(JC_FEATURES)), np.float32)
    J[:, 0:4] = symlog(
        np.stack((wt[acc], et[acc], mk.open_deals[acc], mk.judge_q.count[acc]), axis=1)
    )
    J[:, 4:16] = 0.0
    J[:, 16:21] = public
    JM = np.zeros((mk.n_jc, 3), np.int8)
    JM[:, 2] = 1
    if mk.judge_q:
        focus = {int(row[a]): di for a, di in mk.judge_q.first().items()}
        rows = np.fromiter(focus.keys(), np.int64, len(focus))
        vals = np.empty((len(rows), 12))
        wallet = L.wallet
        for k, di in enumerate(focus.values()):
            d = deals[di]
            rp = d.rp
            vals[k] = (d.job_cost / T, d.payment_collateral / T, d.results_collateral / T, d.mediation_fee / T,
                       (mk.now - d.submitted_at) / max(1, d.judge_timeout), mk.rep_completed[rp], mk.rep_checked[rp],
                       mk.rep_failed[rp], (mk.rep_failed[rp] + 1) / (mk.rep_checked[rp] + 2),
                       mk.job_classes[d.module].nondeterminism_prob, float(ring[d.jc] >= 0 and ring[rp] == ring[d.jc]),
                       float(wallet[d.jc] + d.judge_collateral >= d.mediation_fee))  # fmt: skip
        J[rows, 4] = 1.0
        J[rows, 5:9] = symlog(vals[:, 0:4])
        J[rows, 9] = vals[:, 4]
        J[rows, 10:13] = symlog(vals[:, 5:8])
        J[rows, 13:16] = vals[
            :, 8:11
        ]  # fail rate with a uniform prior; non-determinism; ring partner
        JM[rows, 0] = 1
        JM[rows, 1] = vals[:, 11]
    for mech in mk._hooks["action_mask"]:
        mech.action_mask(mk, "jc", JM)

    # -- mediators
    acc = mk.med_acct
    Z = np.empty((mk.n_med, len(MED_FEATURES)), np.float32)
    Z[:, 0:3] = symlog(np.stack((wt[acc], et[acc], mk.med_q.count[acc]), axis=1))
    Z[:, 3:11] = 0.0
    Z[:, 11:14] = (public[0], public[1], public[4])
    ZM = np.zeros((mk.n_med, 2), np.int8)
    ZM[:, 0] = 1
    if mk.med_q:
        focus = {int(row[a]): di for a, di in mk.med_q.first().items()}
        rows = np.fromiter(focus.keys(), np.int64, len(focus))
        vals = np.empty((len(rows), 7))
        bribe = mk.collusion.bribe_wei / T
        for k, (r, di) in enumerate(focus.items()):
            d = deals[di]
            med = int(acc[r])
            job = mk.job_classes[d.module]
            speed, cost = mk.mediator_machine(med, job)
            my = ring[med]
            rp_in, jc_in = my >= 0 and ring[d.rp] == my, my >= 0 and ring[d.jc] == my
            vals[k] = (d.job_cost / T, d.results_collateral / T, d.mediation_fee / T,
                       bribe if (rp_in or jc_in) else 0.0, runtime_s(d.units, speed) * cost / T,
                       float(rp_in), float(jc_in))  # fmt: skip
        Z[rows, 3] = 1.0
        Z[rows, 4:9] = symlog(vals[:, 0:5])
        Z[rows, 9:11] = vals[:, 5:7]
        ZM[rows, 1] = (vals[:, 5] + vals[:, 6]) > 0
    for mech in mk._hooks["action_mask"]:
        mech.action_mask(mk, "mediator", ZM)
    return Observation(X, M, J, JM, Z, ZM)
