"""Observations and action masks of every seat, built as one matrix per role.

Each role has a fixed feature vector (names in :data:`FEATURES`). Money and counts are
``symlog``-scaled (``sign(x) * log1p(|x|)``, money in tokens) so that one network sees small and
large markets alike; shares and flags are in [0, 1].

The *focus deal* of a seat is the oldest deal waiting for that seat's decision (RP: agreed, not
yet executed; JC: results submitted, not yet judged; mediator: check requested, not yet voted).
Its terms fill the ``focus_*`` features (zeros when there is none). The action taken in the next
tick applies to every deal the seat has waiting.

A node also sees the job cost of its own results still on their way (executed, deal not yet
ended), faked or inflated (``open_fake_results``) and honest (``open_honest_results``), and the
submit collateral of its open deals it chose to skip (``open_skipped_collateral``, lost at the
submit timeout): private knowledge of what it has at stake, which lets a learner's value
function tie a payment or a slashing ticks later to the decision that earned it.

Masks (1 = allowed): RP ``[honest, cheat, inflate, skip] + [price levels...]`` (without a focus
deal only ``honest``, which is then a no-op); JC ``[accept, check, wait]`` (without a focus deal
only ``wait``; ``check`` needs the mediation fee); mediator ``[honest, collude]`` (``collude``
only when a member of the mediator's collusion ring is a party of the focus deal). Mechanisms
that ask seats for decisions of their own open the actions those use (hook ``action_mask``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from twin.ledger import WEI_PER_TOKEN
from twin.mechanisms.base import FeatureBlocks
from twin.modules import runtime_s

RP_FEATURES = (
    "wallet", "escrow", "open_deals", "pending", "rep_completed", "rep_checked", "rep_failed",
    "free_cpu_share", "price_level",
    "focus", "focus_job_cost", "focus_payment_collateral", "focus_results_collateral", "focus_mediation_fee",
    "focus_exec_cost", "focus_nondeterminism", "focus_ring_mediator",
    "recent_check_rate", "recent_reject_rate", "open_job_offers", "mean_ask", "time_left",
    "open_fake_results", "open_honest_results", "open_skipped_collateral",
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
    """Per-role observation matrices (rows: seats of the group) and action masks.

    An :class:`Observer` asked to build only some parts (its ``build`` argument) leaves the rest
    out: a role built for its mask only has a matrix of zero columns (one row per seat, no
    features), and a role not built at all has that and no mask (None)."""

    rp: np.ndarray
    rp_mask: np.ndarray
    jc: np.ndarray
    jc_mask: np.ndarray
    mediator: np.ndarray
    mediator_mask: np.ndarray


#: what an :class:`Observer` builds of a role: its feature matrix and action mask, only its mask,
#: or nothing
BUILD = ("features", "mask", None)


def observe(mk, n_price_levels: int) -> Observation:
    """Build every seat's observation of market ``mk`` (a :class:`twin.market.Market`)."""
    return Observer(mk, n_price_levels)()


class Observer:
    """Builds the :class:`Observation` of one market, step after step.

    What does not change during an episode (account ranges, capacities, machine speeds and
    costs, mask templates) is computed once here. Each call returns fresh matrices (callers may
    keep the previous ones), built with a fixed, small number of numpy calls plus Python work
    per *focus deal* (seats with a decision pending), not per seat.

    ``build`` says, per role (``rp``, ``jc``, ``mediator``), what is built each call:
    ``"features"`` (the matrix and the mask: the default for every role), ``"mask"`` (the mask
    only) or None (neither); see :class:`Observation`. An env builds only what its seats read
    (:class:`twin.env.MarketEnv`): with a few learning seats among scripted ones most of the
    matrices would be thrown away. What is built is the same, value for value, as in a full
    observation.
    """

    def __init__(self, mk, n_price_levels: int, build: dict[str, str | None] | None = None) -> None:
        self.mk = mk
        self.n_levels = n_price_levels
        self.build = {role: "features" for role in FEATURES}
        for role, what in (build or {}).items():
            if role not in FEATURES:
                raise ValueError(f"Observer build: unknown role {role!r}; roles: {list(FEATURES)}")
            if what not in BUILD:
                raise ValueError(f"Observer build[{role!r}]: {what!r} is not one of {list(BUILD)}")
            self.build[role] = what
        # accounts of a group are contiguous ([owner, solvers, jcs, rps, mediators]): slices
        self.rp0, self.jc0, self.med0 = int(mk.rp_acct[0]), int(mk.jc_acct[0]), int(mk.med_acct[0])
        for acc, a0 in ((mk.rp_acct, self.rp0), (mk.jc_acct, self.jc0), (mk.med_acct, self.med0)):
            assert np.array_equal(acc, np.arange(a0, a0 + len(acc))), (
                "group accounts not contiguous"
            )
        self.rp = slice(self.rp0, self.rp0 + mk.n_rp)
        self.jc = slice(self.jc0, self.jc0 + mk.n_jc)
        self.med = slice(self.med0, self.med0 + mk.n_med)
        self.cap_cpu = np.maximum(1, mk.res.cap_cpu)
        fl = mk.fleet
        self.cpu_speed, self.gpu_speed = fl.cpu_speed.tolist(), fl.gpu_speed.tolist()
        self.cost_wei_per_s = [int(c) for c in fl.cost_wei_per_s]
        #: each account's collusion ring (-1: none), drawn once per market (twin.collusion), as
        #: Python ints: compared per focus deal, where numpy scalars cost more
        self.ring = mk.collusion.ring.tolist()
        self.rp_mask0 = np.ones((mk.n_rp, 4, n_price_levels), np.int8)  # (mode, level), flattened
        self.rp_mask0[:, 1:4] = 0
        #: mechanisms that add observation columns (see :func:`feature_names`)
        self.mechs = {
            role: [m for m in mk.mechanisms if m.feature_names(role)]
            for role in ("rp", "jc", "mediator")
        }
        #: per role, (mechanism, first column, width) of each mechanism block after the base
        #: features, and the full width of the role's observation
        self.blocks: dict[str, list[tuple[object, int, int]]] = {}
        self.width: dict[str, int] = {}
        for role in ("rp", "jc", "mediator"):
            c, blocks = len(FEATURES[role]), []
            for m in self.mechs[role]:
                k = len(m.feature_names(role))
                blocks.append((m, c, k))
                c += k
            self.blocks[role], self.width[role] = blocks, c
        #: mechanisms with public features in a role built with its features, each asked once
        #: per observation
        built = [r for r, what in self.build.items() if what == "features"]
        self.featured = [m for m in mk.mechanisms if any(m in self.mechs[r] for r in built)]
        #: a matrix of zero columns per role (the feature matrix of a role built without it)
        self.no_features = {
            "rp": np.empty((mk.n_rp, 0), np.float32),
            "jc": np.empty((mk.n_jc, 0), np.float32),
            "mediator": np.empty((mk.n_med, 0), np.float32),
        }
        self.jc_mask0 = np.zeros((mk.n_jc, 3), np.int8)
        self.jc_mask0[:, 2] = 1
        self.med_mask0 = np.zeros((mk.n_med, 2), np.int8)
        self.med_mask0[:, 0] = 1
        self._index_templates()

    def _index_templates(self) -> None:
        """Where each observation entry is read from in the step's source vector (see
        :meth:`__call__`): one index matrix per role, for seats without a focus deal."""
        mk, n, n_rp = self.mk, self.mk.n_accounts, self.mk.n_rp
        p0 = 2 * n_rp  # the public features, then the constants 0 and 1
        zero, a0 = p0 + 5, p0 + 7  # a0: the symlogged per-account features
        self.one = p0 + 6
        self.l0 = a0 + 7 * n + 3 * n_rp  # the focus deals' symlogged terms
        rows = {"rp": np.arange(n_rp), "jc": np.arange(mk.n_jc), "mediator": np.arange(mk.n_med)}
        acct = {
            "rp": self.rp0 + rows["rp"],
            "jc": self.jc0 + rows["jc"],
            "mediator": self.med0 + rows["mediator"],
        }
        idx = {
            role: np.full((len(r), self.width[role]), zero, np.int64) for role, r in rows.items()
        }
        rp, jc, med = idx["rp"], idx["jc"], idx["mediator"]
        for f in range(7):  # wallet, escrow, open deals, pending, completed, checked, failed
            rp[:, f] = a0 + f * n + acct["rp"]
        rp[:, 7] = rows["rp"]  # free CPU share
        rp[:, 8] = n_rp + rows["rp"]  # price level
        rp[:, 17:22] = p0 + np.arange(5)  # the public features
        for k in range(3):  # open fake / honest results, skipped collateral
            rp[:, 22 + k] = a0 + 7 * n + k * n_rp + rows["rp"]
        for f in range(4):  # wallet, escrow, open deals, pending
            jc[:, f] = a0 + f * n + acct["jc"]
        jc[:, 16:21] = p0 + np.arange(5)
        for c, f in ((0, 0), (1, 1), (2, 3)):  # wallet, escrow, pending
            med[:, c] = a0 + f * n + acct["mediator"]
        med[:, 11:14] = p0 + np.array([0, 1, 4])  # recent check and reject rates, time left
        self.idx = idx

    def __call__(self) -> Observation:
        """The observation of every seat (of the roles in ``build``), built as one float32
        source vector per step (each value computed once, in float64, then cast) gathered into
        each role's matrix through an index matrix: a seat without a focus deal reads the
        template (:meth:`_index_templates`), a seat with one reads its deal's terms. A few numpy
        calls per step, whatever the features."""
        mk = self.mk
        build = self.build
        want_rp, want_jc, want_med = build["rp"], build["jc"], build["mediator"]

        # focus deals: Python work per seat with a decision pending (for a role built for its
        # mask only, just what the mask needs: the rows, and for a JC whether it can check, for a
        # mediator whether it may collude)
        rp_rows, rp_logs, rp_raws = (
            self._rp_focus() if want_rp == "features" else (self._rp_rows(), [], [])
        ) if want_rp else ([], [], [])  # fmt: skip
        jc_rows, jc_logs, jc_raws = (
            self._jc_focus() if want_jc == "features" else self._jc_mask_focus()
        ) if want_jc else ([], [], [])  # fmt: skip
        med_rows, med_logs, med_raws = (
            self._med_focus() if want_med == "features" else self._med_mask_focus()
        ) if want_med else ([], [], [])  # fmt: skip

        # (the raw values of a role built for its mask only are for its mask: not in the source)
        jc_raws_s = jc_raws if want_jc == "features" else []
        med_raws_s = med_raws if want_med == "features" else []
        if "features" in (want_rp, want_jc, want_med):
            S = self._source(rp_logs + jc_logs + med_logs, rp_raws, jc_raws_s, med_raws_s)
        one, l0 = self.one, self.l0
        r0 = l0 + len(rp_logs) + len(jc_logs) + len(med_logs)  # the focus deals' raw values
        hooks = mk._hooks["action_mask"]

        # -- resource providers: focus terms in columns 9-16
        X, M = self.no_features["rp"], None
        if want_rp:
            M = self.rp_mask0.copy()
            if want_rp == "features":
                X = self._gather(S, "rp", rp_rows, slice(9, 17), [
                    (one, b, b + 1, b + 2, b + 3, b + 4, c, c + 1)
                    for b, c in ((l0 + 5 * k, r0 + 2 * k) for k in range(len(rp_rows)))
                ])  # fmt: skip
            for row in rp_rows:
                M[row, 1:4] = 1
            for mech in hooks:  # decisions mechanisms open or close (mask: seat, mode, level)
                mech.action_mask(mk, "rp", M)
            M = M.reshape(mk.n_rp, 4 * self.n_levels)

        # -- job creators: focus terms in columns 4-15
        J, JM = self.no_features["jc"], None
        if want_jc:
            JM = self.jc_mask0.copy()
            if want_jc == "features":
                o, r = l0 + len(rp_logs), r0 + 2 * len(rp_raws)
                J = self._gather(S, "jc", jc_rows, slice(4, 16), [
                    (one, b, b + 1, b + 2, b + 3, c, b + 4, b + 5, b + 6, c + 1, c + 2, c + 3)
                    for b, c in ((o + 7 * k, r + 4 * k) for k in range(len(jc_rows)))
                ])  # fmt: skip
            for k, row in enumerate(jc_rows):
                JM[row, 0:2] = (1, jc_raws[k][4])  # accept; check if the fee can be paid

        # -- mediators: focus terms in columns 3-10
        Z, ZM = self.no_features["mediator"], None
        if want_med:
            ZM = self.med_mask0.copy()
            if want_med == "features":
                o = l0 + len(rp_logs) + len(jc_logs)
                r = r0 + 2 * len(rp_raws) + 4 * len(jc_raws_s)
                Z = self._gather(S, "mediator", med_rows, slice(3, 11), [
                    (one, b, b + 1, b + 2, b + 3, b + 4, c, c + 1)
                    for b, c in ((o + 5 * k, r + 2 * k) for k in range(len(med_rows)))
                ])  # fmt: skip
            for k, row in enumerate(med_rows):
                # collude: a member of the mediator's ring is a party
                ZM[row, 1] = med_raws[k][0] + med_raws[k][1] > 0
        for mech in hooks:
            if JM is not None:
                mech.action_mask(mk, "jc", JM)
            if ZM is not None:
                mech.action_mask(mk, "mediator", ZM)
        if self.featured:
            self._mechanism_columns(X, J, Z)
        return Observation(X, M, J, JM, Z, ZM)

    def _gather(
        self, S: np.ndarray, role: str, rows: list[int], cols: slice, terms: list
    ) -> np.ndarray:
        """``role``'s matrix from the source vector ``S``: the template's index matrix, with the
        focus seats' ``rows`` reading their deal's entries ``terms`` (one tuple per row) in
        columns ``cols`` (a row at a time: for the few seats with a decision, cheaper than fancy
        indexing)."""
        idx = self.idx[role]
        if rows:
            idx = idx.copy()
            for row, t in zip(rows, terms, strict=True):
                idx[row, cols] = t
        return S[idx]

    def _source(
        self, logs: list[float], rp_raws: list, jc_raws: list, med_raws: list
    ) -> np.ndarray:
        """The step's source vector: [free CPU share, price level (per RP); public features, 0,
        1; symlog of (per-account features of every account (an account waits in one queue only,
        its role's, so the queue counts add up), the RPs' open results, the focus deals' terms);
        the focus deals' other values]."""
        mk = self.mk
        L = mk.ledger
        rec = mk.recent_totals  # per-tick counts summed over the recent window
        offering = mk.res.offering
        n_offering = np.count_nonzero(offering)
        mean_ask = 0.0
        if n_offering:  # as ndarray.mean(): float64 sum, then divided by the count
            ask_sum = np.add.reduce(mk.res.price[offering], dtype=np.float64)
            mean_ask = float(ask_sum / n_offering / max(1, mk.base_price))
        ep = mk.cfg.market.episode_ticks
        time_left = max(0, ep - mk.tick) / ep
        public = [
            rec[1] / max(1, rec[0]),
            rec[2] / max(1, rec[2] + rec[3]),
            math.log1p(len(mk.jobs.live)),
            mean_ask,
            time_left,
        ]
        pending = mk.exec_q.count + mk.judge_q.count + mk.med_q.count
        open_results = mk.open_results_tokens[:, self.rp]  # fake, honest, skipped (tokens)
        sym = symlog(np.concatenate((L.wallet_tokens, L.escrow_tokens, mk.open_deals, pending, mk.rep_completed,
                                     mk.rep_checked, mk.rep_failed, open_results.ravel(), logs)))  # fmt: skip
        raws = [v for rw in rp_raws for v in rw]
        raws += [v for rw in jc_raws for v in rw[:4]]  # (the fifth, can check, is a mask)
        raws += [v for rw in med_raws for v in rw]
        return np.concatenate((mk.res.free_cpu / self.cap_cpu, mk.res.price / max(1, mk.base_price),
                               public + [0.0, 1.0], sym, raws), dtype=np.float32)  # fmt: skip

    # Focus deals, one per seat with a decision pending: (rows, values to symlog (flat, a fixed
    # number per row), raw values per row).
    def _rp_focus(self) -> tuple[list[int], list[float], list[tuple]]:
        mk, T = self.mk, WEI_PER_TOKEN
        deals, ring, job_classes = mk.deals, self.ring, mk.job_classes
        cpu_speed, gpu_speed, cost_s = self.cpu_speed, self.gpu_speed, self.cost_wei_per_s
        rows, logs, raws = [], [], []
        for a, q in mk.exec_q.q.items():
            d = deals[q[0][0]]
            r = a - self.rp0
            job = job_classes[d.module]
            c = d.instruction_price * d.units
            speed = gpu_speed[r] if job.kind == "gpu" else cpu_speed[r]
            my = ring[d.rp]
            rows.append(r)
            logs += (c / T, d.payment_collateral / T, d.results_multiple * c / T, d.mediation_fee / T,
                     runtime_s(d.units, speed) * cost_s[r] / T)  # fmt: skip
            raws.append((job.nondeterminism_prob, float(my >= 0 and any(ring[x] == my for x in d.mediators))))  # fmt: skip
        return rows, logs, raws

    def _jc_focus(self) -> tuple[list[int], list[float], list[tuple]]:
        mk, T = self.mk, WEI_PER_TOKEN
        deals, ring, job_classes, wallet = (
            mk.deals,
            self.ring,
            mk.job_classes,
            mk.ledger.wallet,
        )
        rep_completed, rep_checked, rep_failed = mk.rep_completed, mk.rep_checked, mk.rep_failed
        rows, logs, raws = [], [], []
        for a, q in mk.judge_q.q.items():
            d = deals[q[0][0]]
            rp = d.rp
            # the counters as Python ints (numpy scalars are slower to compute with and to
            # convert; the quotients of small ints are the same)
            done, checked, failed = int(rep_completed[rp]), int(rep_checked[rp]), int(rep_failed[rp])  # fmt: skip
            rows.append(a - self.jc0)
            logs += (d.job_cost / T, d.payment_collateral / T, d.results_collateral / T, d.mediation_fee / T,
                     done, checked, failed)  # fmt: skip
            # wait share; fail rate with a uniform prior; non-determinism; ring partner; can check
            raws.append(((mk.now - d.submitted_at) / max(1, d.judge_timeout),
                         (failed + 1) / (checked + 2), job_classes[d.module].nondeterminism_prob,
                         float(ring[d.jc] >= 0 and ring[rp] == ring[d.jc]),
                         wallet[d.jc] + d.judge_collateral >= d.mediation_fee))  # fmt: skip
        return rows, logs, raws

    def _med_focus(self) -> tuple[list[int], list[float], list[tuple]]:
        mk, T = self.mk, WEI_PER_TOKEN
        deals, ring, job_classes = mk.deals, self.ring, mk.job_classes
        bribe = mk.collusion.bribe_wei / T
        rows, logs, raws = [], [], []
        for a, q in mk.med_q.q.items():
            d = deals[q[0][0]]
            job = job_classes[d.module]
            speed, cost = mk.mediator_machine(a, job)
            my = ring[a]
            rp_in, jc_in = my >= 0 and ring[d.rp] == my, my >= 0 and ring[d.jc] == my
            rows.append(a - self.med0)
            logs += (d.job_cost / T, d.results_collateral / T, d.mediation_fee / T,
                     bribe if (rp_in or jc_in) else 0.0, runtime_s(d.units, speed) * cost / T)  # fmt: skip
            raws.append((float(rp_in), float(jc_in)))
        return rows, logs, raws

    # What a role built for its mask only needs of its focus deals: the rows, and the values of
    # the raw tuples above that the masks read (in the same positions).
    def _rp_rows(self) -> list[int]:
        rp0 = self.rp0
        return [a - rp0 for a in self.mk.exec_q.q]

    def _jc_mask_focus(self) -> tuple[list[int], list[float], list[tuple]]:
        mk = self.mk
        deals, wallet, jc0 = mk.deals, mk.ledger.wallet, self.jc0
        rows, raws = [], []
        for a, q in mk.judge_q.q.items():
            d = deals[q[0][0]]
            rows.append(a - jc0)
            raws.append((0, 0, 0, 0, wallet[d.jc] + d.judge_collateral >= d.mediation_fee))
        return rows, [], raws

    def _med_mask_focus(self) -> tuple[list[int], list[float], list[tuple]]:
        mk = self.mk
        deals, ring, med0 = mk.deals, self.ring, self.med0
        rows, raws = [], []
        for a, q in mk.med_q.q.items():
            d = deals[q[0][0]]
            my = ring[a]
            rows.append(a - med0)
            raws.append((float(my >= 0 and ring[d.rp] == my), float(my >= 0 and ring[d.jc] == my)))
        return rows, [], raws

    def _mechanism_columns(self, X: np.ndarray, J: np.ndarray, Z: np.ndarray) -> None:
        """Fill the public features of the mechanisms (jackpot size, scores, stakes, odds...) into
        the columns after the base features: each mechanism writes its blocks of every role in
        place (:meth:`twin.mechanisms.base.Mechanism.write_features`), for the roles built with
        their features."""
        mk = self.mk
        fb = FeatureBlocks(mk, {
            "rp": {a - self.rp0: di for a, di in mk.exec_q.first().items()},
            "jc": {a - self.jc0: di for a, di in mk.judge_q.first().items()},
            "mediator": {a - self.med0: di for a, di in mk.med_q.first().items()},
        })  # fmt: skip
        views: dict[int, dict[str, np.ndarray]] = {id(m): {} for m in self.featured}
        for role, base in (("rp", X), ("jc", J), ("mediator", Z)):
            blocks = self.blocks[role]
            if not blocks or self.build[role] != "features":
                continue  # (a mechanism finds no block of a role not built)
            # (the blocks start at 0: the index templates read the constant 0 there)
            for m, c, k in blocks:
                views[id(m)][role] = base[:, c : c + k]
        for m in self.featured:
            fb.out = views[id(m)]
            m.write_features(mk, fb)


def feature_names(mechanisms, role: str) -> tuple[str, ...]:
    """Every observation column of ``role``: the base features, then each mechanism's as
    ``<mechanism name>.<feature>``."""
    names = FEATURES[role]
    for m in mechanisms:
        names = names + tuple(f"{m.name}.{f}" for f in m.feature_names(role))
    return names
