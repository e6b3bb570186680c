"""Reputation: per-node counts kept from the ledger's outcomes, and pluggable scores.

Counts per RP (from its deals' terminal states): completed jobs (paid), checks, passed checks,
failed checks, missed results (submit timeouts), and exponentially decayed passes/fails
(half-life ``reputation.half_life_s``). Scoring functions (``reputation.score``):

- ``pass_rate``: ``(passed + a) / (checked + a + b)`` with prior pseudo-counts a, b;
- ``decayed``: the same on the decayed counts (recent behaviour weighs more);
- ``beta``: beta reputation over every outcome: positive = completed jobs, negative = failed
  checks + missed results; the score is the beta mean ``(r + a) / (r + s + a + b)``.

Uses: clients do not deal with nodes scored below ``min_score`` (their offers are not matched);
with ``solver_ranks`` solvers prefer the higher-scored node among equally good offers. These
scores rate nodes; mediators are rated separately: reputation-weighted mediator selection
(``mediation.selection=reputation``, :mod:`twin.mediation.consortium`) keeps a beta reputation of
each mediator from the agreement of its votes with the final verdicts. Every seat observes the
scores it would see: an RP its own, a JC the score of the node of the deal it decides on.
"""

from __future__ import annotations

import numpy as np

from twin.deals import DealState
from twin.mechanisms.base import Mechanism
from twin.mechanisms.fees import PAID_STATES

SCORES = ("pass_rate", "decayed", "beta")


class Reputation(Mechanism):
    name = "reputation"

    @classmethod
    def enabled(cls, cfg) -> bool:
        return cfg.reputation.score != "none"

    @classmethod
    def from_config(cls, cfg) -> Reputation:
        return cls(cfg.reputation)

    def attach(self, mk) -> None:
        n = mk.n_accounts
        self.completed = np.zeros(n)
        self.checked = np.zeros(n)
        self.passed = np.zeros(n)
        self.failed = np.zeros(n)
        self.missed = np.zeros(n)
        self.dec_pass = np.zeros(n)
        self.dec_fail = np.zeros(n)
        self.last = np.full(n, float(mk.now))
        self.rp_acct = mk.rp_acct
        #: every account's score, kept until the counts change (on_deal_end) or, for decayed
        #: scores, the time does: (version, time, scores); see :meth:`scores_now`
        self._version = 0
        self._kept: tuple[int, int, np.ndarray] | None = None
        mk.res.score = self.score(mk.now)[mk.rp_acct] if self.params.solver_ranks else None

    def _decay(self, a: int, now: int) -> None:
        f = 0.5 ** ((now - self.last[a]) / self.params.half_life_s)
        self.dec_pass[a] *= f
        self.dec_fail[a] *= f
        self.last[a] = now

    def on_deal_end(self, mk, d) -> None:
        self._version += 1
        rp, s = d.rp, d.state
        if s in PAID_STATES:
            self.completed[rp] += 1
        if s == DealState.TimeoutSubmitResults or (d.stuck and s == DealState.DealAgreed):
            self.missed[rp] += 1
        if d.checked and s in (DealState.MediationAccepted, DealState.MediationRejected):
            self._decay(rp, mk.now)
            self.checked[rp] += 1
            if s == DealState.MediationAccepted:
                self.passed[rp] += 1
                self.dec_pass[rp] += 1
            else:
                self.failed[rp] += 1
                self.dec_fail[rp] += 1

    def score(self, now: int, accounts=None) -> np.ndarray:
        """Scores in [0, 1] of ``accounts`` (default: every account)."""
        a, b = self.params.prior_pass, self.params.prior_fail
        idx = slice(None) if accounts is None else accounts
        kind = self.params.score
        if kind == "pass_rate":
            return (self.passed[idx] + a) / (self.checked[idx] + a + b)
        if kind == "decayed":
            f = 0.5 ** ((now - self.last[idx]) / self.params.half_life_s)
            p, q = self.dec_pass[idx] * f, self.dec_fail[idx] * f
            return (p + a) / (p + q + a + b)
        r, s = self.completed[idx], self.failed[idx] + self.missed[idx]
        return (r + a) / (r + s + a + b)

    def scores_now(self, now: int) -> np.ndarray:
        """:meth:`score` of every account (read-only), computed once per change of the counts
        (and of the time, for decayed scores): the market's hooks ask for them several times a
        tick. The scores are elementwise, so picking accounts from it gives :meth:`score` of
        those accounts."""
        t = now if self.params.score == "decayed" else 0
        kept = self._kept
        if kept is None or kept[0] != self._version or kept[1] != t:
            s = self.score(now)
            s.flags.writeable = False
            kept = self._kept = (self._version, t, s)
        return kept[2]

    def on_tick_end(self, mk) -> None:
        rp_scores = self.scores_now(mk.now)[mk.rp_acct]
        if self.params.min_score > 0:
            mk.res.eligible = rp_scores >= self.params.min_score
        if self.params.solver_ranks:
            mk.res.score = rp_scores

    def feature_names(self, role: str) -> tuple[str, ...]:
        return {"rp": ("own_score",), "jc": ("focus_rp_score",), "mediator": ("focus_rp_score",)}[
            role
        ]

    def write_features(self, mk, fb) -> None:
        every, out = self.scores_now(mk.now), fb.out
        if "rp" in out:
            out["rp"][:, 0] = every[mk.rp_acct]
        for role in ("jc", "mediator"):
            rows = fb.rows(role)
            if len(rows) and role in out:
                out[role][rows, 0] = every[fb.rps(role)]

    def metrics(self, mk) -> dict[str, float]:
        s = self.score(mk.now, mk.rp_acct)
        return {"mean_rp_score": float(s.mean()), "min_rp_score": float(s.min())}


def public_scores(mk, accounts) -> np.ndarray:
    """The score in [0, 1] that any participant sees for each RP account in ``accounts``: the
    reputation mechanism's score when it is on, else the pass rate of the public reputation
    ledger with a uniform prior, ``(checked - failed + 1) / (checked + 2)`` (as the JC's
    ``rp_fail_rate`` feature). Used by the scripted delegators and bettors."""
    for mech in mk.mechanisms:
        if isinstance(mech, Reputation):
            return mech.scores_now(mk.now)[accounts]
    checked, failed = mk.rep_checked[accounts], mk.rep_failed[accounts]
    return (checked - failed + 1) / (checked + 2)
