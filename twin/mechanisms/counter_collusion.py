"""Smart counter-collusion contracts: one job, two nodes, three contracts.

Source: C. Dong, Y. Wang, A. Aldweesh, P. McCorry, A. van Moorsel, "Betrayal, Distrust, and
Rationality: Smart Counter-Collusion Contracts for Verifiable Cloud Computing", ACM CCS 2017
(arXiv:1708.01171); restated in ``spec/mechanisms.md`` section 3.

What it models
    A share ``counter_collusion.share`` of matched jobs becomes a *dual deal*: the solver's match
    is extended with a second node -- the next best feasible resource offer of the same solver
    once the round's matches are booked (v1 order: cheapest, then the higher reputation score
    when solvers rank by it, then the older offer, then the lower row), among the nodes that can
    fund the deposit -- and both nodes compute the job. A dual deal never reaches the v1
    contracts: the mechanism takes the match over (hook ``takes_over``) and runs it through the
    contracts below, with its own states and deadlines; if no second node or not every deposit
    can be funded, the match stays an ordinary v1 deal. Other mechanisms (fees, taxes,
    reputation, ...) act on v1 deals only.

Parameters (``counter_collusion.*``; amounts in wei)
    ``share`` (share of matched jobs that become dual deals), ``contracts`` (on offer:
    ``prisoner`` always; ``colluder`` and ``traitor`` optionally), ``wage_wei`` w (paid to each
    node), ``deposit_wei`` d (each node's deposit), ``dispute_cost_wei`` ch (the trusted third
    party's fee, at most w + 2d), ``collusion_deposit_wei`` t, ``bribe_wei`` b,
    ``ttp_latency_s`` (how long the TTP takes to decide a dispute). c is each node's actual
    hardware cost of its run (off-ledger, as v1's execution cost; a wrong answer costs
    ``execution.cheat_cost_fraction`` of it).

Contracts and money (system accounts: ``ccc_escrow`` holds the prisoner's and the traitor's
contract, ``ccc_colluder`` the colluder's contract, ``ttp`` receives ch whenever the TTP is used;
every movement is a ``Transfer`` event with a ``Ccc*`` :class:`~twin.events.TransferReason`)
    - Prisoner's: at creation the client pays 2w + ch and each node d into ``ccc_escrow``.
      Both correct and equal: each node gets w + d back (payoff w - c), the client ch.
      Same wrong answer (undetected collusion): the same. Results differ (or one is missing):
      the TTP decides (ch to ``ttp``); an honest node against a wrong or missing one gets
      w + 2d - ch (payoff w + d - ch - c) and the client w + ch (the cheater's d reimburses the
      dispute, its unearned w is refunded); both wrong: the client gets 2w + 2d (each node loses
      d); both correct but different (a non-deterministic job class): both are paid, the client
      bears ch. Nothing submitted by either: the client gets everything back plus both deposits,
      without the TTP.
    - Colluder's (between the nodes; a random node of the pair leads): the leader pays t + b,
      the follower t into ``ccc_colluder``. Both submit the agreed wrong answer r: the leader gets
      t, the follower t + b. A deviating party (anything but r) forfeits its whole deposit to
      the loyal one (the leader t + b: the bribe is owed to a loyal follower whatever the
      leader does -- which is what makes the leader's condition t > d - c - ch and the
      follower's t >= d - c - ch - b); both deviating: both refunded.
    - Traitor's: at creation the client deposits w + 2d - ch in ``ccc_escrow``. A node that
      betrays pays ch, submits r to the prisoner's contract (so the colluder's contract sees it
      loyal) and delivers the correct result with a report. A true report (its partner did
      submit r) gets w + 2d (payoff w + d - ch - c plus its colluder's-contract terms) while the
      prisoner's contract pays ch to the TTP and 2w plus both deposits to the client; only the
      first report is paid (equal times: a fair draw), a later true one gets its ch back. A false
      report's ch goes to the TTP. Unused, the client's deposit is refunded at settlement.

Lifecycle (:class:`DualState`) and decisions (read from the RP's ``Actions.rp_mode``)
    Created in ``agree`` (the tick of the match), a dual deal is ``Bargaining``: at the next tick
    each node decides whether to collude (mode 1 ``cheat``, or 2, which a node that means to
    betray also needs: agree -- sign the colluder's contract when it is on offer, otherwise a
    cheap-talk agreement on r; modes 0 and 3: refuse). One action per seat and tick applies to
    every decision the seat owes, as for v1 deals. The
    colluder's contract binds when both agree and both fund it. ``Computing``: at the following
    tick each node decides how to compute (:class:`Decision`): 0 honest; 1 cheat = submit r when
    the pair agreed, else a wrong answer of its own; 2 (v1's ``inflate``) betray, only where the
    traitor's contract is on offer and the pair agreed (elsewhere it means honest); 3 skip.
    ``Running``: results arrive after the run time (a failed run submits nothing); the
    submission deadline is ``timeouts.submit_results_s`` after the decision (strict), after
    which a missing result counts as nothing. ``Disputed``: the TTP decides after
    ``ttp_latency_s``. ``Settled``: every contract paid out. A dual deal stays in
    ``Market.active`` until settled, so the episode waits for it; should the close cap be reached
    first, open dual deals are settled at once as if every missing result were nothing.

Observations (RP only: the nodes of dual deals decide; :data:`FEATURES`): whether a dual-deal
decision is pending and at which stage, which contracts are on offer, whether this node leads,
whether the pair agreed and is bound, w, d, ch, t, b and the node's cost estimate c (symlog
tokens), the partner's row and its public record (loyalty to past collusion agreements,
honesty). Action masks: at the sign stage modes 0-1; at the compute stage 0, 1, 3 and 2 where
betrayal is possible.

:func:`settle` (money of each outcome), :func:`analytic_payoffs` (the same payoffs by the
paper's case analysis, written independently) and :func:`rational_modes` (the subgame-perfect
best response to those payoffs, used by the ``ccc_rational`` baseline) are pure functions.
"""

from __future__ import annotations

import enum
import heapq
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from twin.deals import ExecMode
from twin.events import TransferReason
from twin.execution import plan
from twin.ledger import WEI_PER_TOKEN
from twin.mechanisms.base import Mechanism
from twin.modules import runtime_s
from twin.solvers.base import feasible

CONTRACTS = ("prisoner", "colluder", "traitor")
A, B, CLIENT, TTP = 0, 1, 2, 3  # parties of a settlement (A: the solver's node, B: the second)
R = TransferReason

FEATURES = (
    "ccc_focus", "ccc_sign_stage", "ccc_colluder_offered", "ccc_traitor_offered", "ccc_leader",
    "ccc_agreed", "ccc_binding", "ccc_wage", "ccc_deposit", "ccc_dispute_cost",
    "ccc_collusion_deposit", "ccc_bribe", "ccc_cost", "ccc_partner", "ccc_partner_loyalty",
    "ccc_partner_honesty",
)  # fmt: skip
_MONEY = slice(7, 13)  # symlog-token columns of FEATURES (w, d, ch, t, b, c)


class DualState(enum.IntEnum):
    """States of a dual deal (the mechanism's own, not v1's ``AgreementState``)."""

    Bargaining = 0  # waiting for both nodes' collusion decision
    Computing = 1  # waiting for both nodes' compute decision
    Running = 2  # results on their way; deadline armed
    Disputed = 3  # the TTP is deciding
    Settled = 4  # terminal: every contract paid out


class Decision(enum.IntEnum):
    """A node's compute decision in a dual deal (= its RP mode value)."""

    Honest = 0
    Cheat = 1  # the agreed wrong answer r when the pair agreed, else a wrong answer of its own
    Betray = 2  # traitor's contract: r to the prisoner's contract, the correct result reported
    Skip = 3


#: how a node runs the job for each decision (a betrayer computes the correct result)
_EXEC_MODE = {Decision.Honest: ExecMode.Honest, Decision.Betray: ExecMode.Honest,
              Decision.Cheat: ExecMode.Cheat, Decision.Skip: ExecMode.Skip}  # fmt: skip


class Sub(enum.IntEnum):
    """What a node submitted to the prisoner's contract."""

    Pending = -1
    Nothing = 0
    Correct = 1
    Agreed = 2  # the pair's agreed wrong answer r
    Own = 3  # a wrong answer of its own (differs from r and from any other)


@dataclass(frozen=True)
class Terms:
    """One dual deal's contract terms (wei) and which optional contracts are on offer."""

    w: int
    d: int
    ch: int
    t: int
    b: int
    colluder: bool = False
    traitor: bool = False

    @property
    def client_deposits(self) -> tuple[int, int]:
        """(prisoner's 2w + ch, traitor's w + 2d - ch or 0)."""
        return 2 * self.w + self.ch, (self.w + 2 * self.d - self.ch) if self.traitor else 0


@dataclass(frozen=True)
class Settlement:
    """What the contracts pay out when a dual deal settles."""

    escrow: tuple[tuple[int, int, TransferReason], ...]  # (party, wei, reason) from ccc_escrow
    colluder: tuple[tuple[int, int], ...]  # (node, wei) from the colluder's contract
    outcome: str
    ttp_used: bool
    traitor: int  # the node paid by the traitor's contract (-1: none)


OUTCOMES = (
    "honest", "collusion", "no_results", "honest_mismatch", "cheat_caught", "both_wrong", "betrayed",
)  # fmt: skip


def settle(terms: Terms, subs: tuple[Sub, Sub], reports: tuple[int, ...], binding: bool,
           leader: int, honest_match: bool = True) -> Settlement:  # fmt: skip
    """Payouts of the contracts given each node's submission to the prisoner's contract,
    the nodes whose betrayal reports were filed (in filing order), whether the colluder's
    contract binds (and who leads), and whether two correct results agree (non-determinism)."""
    w, d, ch, t, b = terms.w, terms.d, terms.ch, terms.t, terms.b
    out: list[tuple[int, int, TransferReason]] = []

    def pay(party: int, amount: int, reason: TransferReason) -> None:
        if amount:
            out.append((party, amount, reason))

    true = [i for i in reports if subs[1 - i] == Sub.Agreed]
    false = [i for i in reports if subs[1 - i] != Sub.Agreed]
    ttp = bool(reports)
    if true:  # the traitor's contract: the client learns the truth and keeps both deposits
        winner = true[0]
        pay(TTP, ch, R.CccDisputeCost)
        pay(CLIENT, 2 * w + 2 * d, R.CccClientPayout)
        pay(winner, w + 2 * d, R.CccTraitorReward)
        for i in true[1:]:  # the contract has paid: a later report gets its ch back
            pay(i, ch, R.CccPayout)
        outcome = "betrayed"
    else:
        winner = -1
        sa, sb = subs
        if (sa == sb == Sub.Correct and honest_match) or sa == sb == Sub.Agreed:
            pay(A, w + d, R.CccPayout)
            pay(B, w + d, R.CccPayout)
            pay(CLIENT, ch, R.CccClientPayout)
            outcome = "honest" if sa == Sub.Correct else "collusion"
        elif sa == sb == Sub.Nothing:
            pay(CLIENT, 2 * w + ch + 2 * d, R.CccClientPayout)
            outcome = "no_results"
        else:  # results differ or one is missing: the TTP decides who was right
            ttp = True
            pay(TTP, ch, R.CccDisputeCost)
            correct = [i for i in (A, B) if subs[i] == Sub.Correct]
            if len(correct) == 2:
                pay(A, w + d, R.CccPayout)
                pay(B, w + d, R.CccPayout)
                outcome = "honest_mismatch"
            elif correct:
                pay(correct[0], w + 2 * d - ch, R.CccPayout)
                pay(CLIENT, w + ch, R.CccClientPayout)
                outcome = "cheat_caught"
            else:
                pay(CLIENT, 2 * w + 2 * d, R.CccClientPayout)
                outcome = "both_wrong"
        if terms.traitor:
            pay(CLIENT, w + 2 * d - ch, R.CccClientPayout)
    for _ in false:
        pay(TTP, ch, R.CccDisputeCost)
    col: list[tuple[int, int]] = []
    if binding:
        f = 1 - leader
        loyal = (subs[A] == Sub.Agreed, subs[B] == Sub.Agreed)
        if loyal[leader] and loyal[f]:
            col = [(leader, t), (f, t + b)]
        elif loyal[leader]:
            col = [(leader, 2 * t + b)]
        elif loyal[f]:
            col = [(f, 2 * t + b)]
        else:
            col = [(leader, t + b), (f, t)]
    return Settlement(tuple(out), tuple((i, x) for i, x in col if x), outcome, ttp, winner)


def submission(decision: Decision, agreed: bool, traitor: bool) -> Sub:
    """What a decision submits to the prisoner's contract (a failed run submits nothing)."""
    if decision == Decision.Honest or (decision == Decision.Betray and not (traitor and agreed)):
        return Sub.Correct
    if decision in (Decision.Cheat, Decision.Betray):
        return Sub.Agreed if agreed else Sub.Own
    return Sub.Nothing


def analytic_payoffs(terms: Terms, decisions: tuple[Decision, Decision], agreed: bool, binding: bool,
                     leader: int, costs: tuple[int, int], honest_match: bool = True,
                     first: int = 0, failed: tuple[bool, bool] = (False, False)) -> tuple[int, int]:  # fmt: skip
    """Each node's payoff (wei, net of its cost) by the case analysis of spec section 3, written
    independently of :func:`settle`: prisoner's outcomes, plus the colluder's-contract terms,
    with betrayal (``first``: whose report comes first when both betray; ``failed``: whose run
    failed, submitting nothing)."""
    w, d, ch, t, b = terms.w, terms.d, terms.ch, terms.t, terms.b
    x = [
        Sub.Nothing if failed[i] else submission(decisions[i], agreed, terms.traitor)
        for i in (0, 1)
    ]
    betrayers = [i for i in (0, 1) if decisions[i] == Decision.Betray and terms.traitor and agreed
                 and not failed[i]]  # fmt: skip
    true = [i for i in betrayers if x[1 - i] == Sub.Agreed]
    if true:
        k = true[0] if len(true) == 1 else first
        p = [0, 0]
        p[k], p[1 - k] = w + d - ch, -d  # the traitor: its pay and the other's deposit, less ch
    elif x[0] == x[1] and x[0] in (Sub.Correct, Sub.Agreed):
        p = [w, w]  # both honest (agreeing or not: the client bears ch), or undetected collusion
    else:  # one honest node gets w + d - ch; every wrong or missing result loses d
        p = [w + d - ch if x[i] == Sub.Correct else -d for i in (0, 1)]
        p = [p[i] - ch if i in betrayers else p[i] for i in (0, 1)]  # a false report costs ch
    if binding:
        loyal = [x[i] == Sub.Agreed for i in (0, 1)]
        f = 1 - leader
        if loyal[leader] and loyal[f]:
            p[leader] -= b
            p[f] += b
        elif loyal[leader]:  # the follower deviated: its t goes to the leader
            p[leader] += t
            p[f] -= t
        elif loyal[f]:  # the leader deviated: its t + b goes to the follower
            p[leader] -= t + b
            p[f] += t + b
    return p[0] - costs[0], p[1] - costs[1]


def conditions(w, d, ch, t, b, c) -> dict[str, bool]:
    """The analytic conditions of Dong et al. for a node of cost ``c`` (same-cost partner)."""
    return {
        "tacit_stable": not d > c + ch,  # prisoner's: deviating from r to honest gains d - c - ch
        "leader_loyal": t > d - c - ch,
        "follower_loyal": t >= d - c - ch - b,
        "leader_initiates": b < c,
        "betrayal_pays": d > c + ch,
    }


def rational_mode(sign_stage: bool, leader: bool, colluder: bool, traitor: bool, agreed: bool,
                  binding: bool, w, d, ch, t, b, c) -> Decision:  # fmt: skip
    """Subgame-perfect best response to :func:`analytic_payoffs` against a partner of the same
    cost that plays it too. Sign stage: Cheat = agree to collude, Honest = refuse."""
    k = conditions(w, d, ch, t, b, c)
    betray = traitor and k["betrayal_pays"]
    if sign_stage:
        if betray:  # anticipating betrayal, a colluder would only lose its deposit
            return Decision.Honest
        if colluder:
            stable = k["leader_loyal"] and k["follower_loyal"]
            ok = stable and (k["leader_initiates"] if leader else True)
        else:
            ok = k["tacit_stable"] and c > 0  # cheap talk: collusion pays w > w - c if stable
        return Decision.Cheat if ok else Decision.Honest
    if not agreed:
        return Decision.Honest  # alone, a wrong answer only loses d
    if binding:
        if betray:
            return Decision.Betray
        loyal = k["leader_loyal"] if leader else k["follower_loyal"]
        return Decision.Cheat if loyal else Decision.Honest
    return Decision.Cheat if k["tacit_stable"] else Decision.Honest


def symlog_inverse(x):
    return np.sign(x) * np.expm1(np.abs(x))


def rational_modes(cols: np.ndarray) -> np.ndarray:
    """:func:`rational_mode` of each row of a (seats x len(FEATURES)) matrix; 0 where no
    dual-deal decision is pending."""
    cols = np.asarray(cols, dtype=float)
    money = symlog_inverse(cols[:, _MONEY]) * WEI_PER_TOKEN
    out = np.zeros(len(cols), np.int64)
    for k in np.flatnonzero(cols[:, 0] > 0.5):
        f = cols[k] > 0.5
        out[k] = rational_mode(bool(f[1]), bool(f[4]), bool(f[2]), bool(f[3]), bool(f[5]),
                               bool(f[6]), *money[k])  # fmt: skip
    return out


@dataclass(slots=True)
class DualDeal:
    """One dual deal. Index 0/1 of the pair arrays: node A (the solver's match), node B."""

    index: int
    deal: int  # the v1 deal record of the match (event deal index and id)
    jc: int
    nodes: tuple[int, int]
    rows: tuple[int, int]
    leader: int
    terms: Terms
    module: int
    units: int
    need: np.ndarray
    created_at: int
    state: DualState = DualState.Bargaining
    agree: list[bool] = field(default_factory=lambda: [False, False])
    decided: list[bool] = field(default_factory=lambda: [False, False])
    agreed: bool = False
    binding: bool = False
    decision: list[int] = field(default_factory=lambda: [-1, -1])
    sub: list[Sub] = field(default_factory=lambda: [Sub.Pending, Sub.Pending])
    cost: list[int] = field(default_factory=lambda: [0, 0])
    held: list[bool] = field(default_factory=lambda: [True, True])
    reports: list[tuple[int, int]] = field(default_factory=list)  # (filing time, node)
    deadline: int = 0
    honest_match: bool = True
    ordered: bool = False  # equal-time reports were put in order (a fair draw)
    outcome: str = ""
    ttp_used: bool = False
    traitor: int = -1
    #: the payouts, once every result is in (kept from the resolution to the TTP's verdict)
    settlement: Settlement | None = None
    net: dict[int, int] = field(default_factory=dict)  # account -> wei received (paid: < 0)
    settled_at: int = -1


class CounterCollusion(Mechanism):
    name = "counter_collusion"
    accounts = ("ccc_colluder", "ccc_escrow", "ttp")

    @classmethod
    def enabled(cls, cfg) -> bool:
        return cfg.counter_collusion.share > 0

    @classmethod
    def from_config(cls, cfg) -> CounterCollusion:
        m = cls(cfg.counter_collusion)
        m.submit_s = cfg.timeouts.submit_results_s
        return m

    def attach(self, mk) -> None:
        p = self.params
        self.terms = Terms(p.wage_wei, p.deposit_wei, p.dispute_cost_wei, p.collusion_deposit_wei,
                           p.bribe_wei, "colluder" in p.contracts, "traitor" in p.contracts)  # fmt: skip
        tm = self.terms
        #: w, d, ch, t, b in tokens: the first money features of every focus row
        self._terms_tokens = [x / WEI_PER_TOKEN for x in (tm.w, tm.d, tm.ch, tm.t, tm.b)]
        self.escrow, self.colluder = mk.system["ccc_escrow"], mk.system["ccc_colluder"]
        self.ttp = mk.system["ttp"]
        self.duals: list[DualDeal] = []
        self.open: dict[int, None] = {}  # unsettled dual deals (insertion-ordered)
        #: RP account -> (dual deal, node index, tick queued) decisions it owes, oldest first
        self.pending: dict[int, deque[tuple[int, int, int]]] = {}
        self._due: list[tuple[int, int, int, int, int]] = []  # (time, seq, kind, dual, node)
        self._seq = 0
        n = mk.n_accounts
        self.n_agreed = np.zeros(n, np.int64)  # collusion agreements a node entered
        self.n_loyal = np.zeros(n, np.int64)  # ... and followed (submitted r, did not betray)
        self.n_decided = np.zeros(n, np.int64)  # compute decisions
        self.n_honest = np.zeros(n, np.int64)  # ... that computed the correct result
        self.fallbacks = 0  # dual deals drawn that stayed v1 deals (no second node or funds)

    # -- creation ----------------------------------------------------------------------------
    def takes_over(self, mk, d) -> bool:
        share = self.params.share
        if share < 1.0 and not mk.rng.random() < share:
            return False
        tm = self.terms
        w1, w2 = tm.client_deposits
        wallet = mk.ledger.wallet
        r2 = self._second_node(mk, d) if wallet[d.rp] >= tm.d and wallet[d.jc] >= w1 + w2 else None
        if r2 is None:
            self.fallbacks += 1
            return False
        nodes = (d.rp, int(mk.rp_acct[r2]))
        hold = mk._holds.pop(d.index)  # the mechanism now owns node A's capacity hold
        mk.res.reserve(r2, hold[1], mk.now)
        leader = int(mk.rng.integers(2))
        dd = DualDeal(len(self.duals), d.index, d.jc, nodes, (hold[0], r2), leader, tm, d.module,
                      d.units, hold[1], mk.now)  # fmt: skip
        self.duals.append(dd)
        self.open[dd.index] = None
        self._pay(mk, dd, d.jc, self.escrow, w1, R.CccDeposit)
        self._pay(mk, dd, d.jc, self.escrow, w2, R.CccDeposit)
        for i, node in enumerate(nodes):
            self._pay(mk, dd, node, self.escrow, tm.d, R.CccDeposit)
            self._queue(mk, dd, i)
        mk.active[d.index] = None  # the episode waits for the dual deal to settle
        for a in (d.jc, *nodes):
            mk.n_deals[a] += 1
            mk.open_deals[a] += 1
        return True

    def _second_node(self, mk, d) -> int | None:
        ok = feasible(mk.jobs, d.job_offer, mk.res, mk.trust, mk.rp_acct, int(mk.row[d.solver]))
        ok[mk.row[d.rp]] = False
        cand = np.flatnonzero(ok)
        res = mk.res
        score = -res.score[cand] if res.score is not None else np.zeros(len(cand))
        order = np.lexsort((cand, res.posted_at[cand], score, res.price[cand]))
        # the first in that (total) order whose node can fund the deposit: the best of those
        # that can, without reading every wallet
        wallet, rp0, need = mk.ledger.wallet, int(mk.rp_acct[0]), self.terms.d
        for r in cand[order].tolist():
            if wallet[rp0 + r] >= need:
                return r
        return None

    # -- helpers -------------------------------------------------------------------------------
    def _pay(self, mk, dd: DualDeal, src: int, dst: int, amount: int, reason,
             must: bool = True) -> bool:  # fmt: skip
        """Move ``amount`` wei for ``dd`` (a ``Transfer`` event) and book it in ``dd.net``.
        Payments the mechanism checked beforehand (``must``) cannot fail: a failure is a bug."""
        if amount <= 0:
            return True
        if not mk.transfer(src, dst, amount, reason, dd.deal):
            if must:
                raise RuntimeError(f"dual deal {dd.index}: account {src} cannot pay {amount} wei")
            return False
        dd.net[src] = dd.net.get(src, 0) - amount
        dd.net[dst] = dd.net.get(dst, 0) + amount
        return True

    def _queue(self, mk, dd: DualDeal, i: int) -> None:
        self.pending.setdefault(dd.nodes[i], deque()).append((dd.index, i, mk.tick))

    def _at(self, time: int, kind: int, dd: DualDeal, i: int = -1) -> None:
        self._seq += 1
        heapq.heappush(self._due, (time, self._seq, kind, dd.index, i))

    def _release(self, mk, dd: DualDeal, i: int) -> None:
        if dd.held[i]:
            dd.held[i] = False
            mk.res.release(dd.rows[i], dd.need, mk.now)

    def _run_cost(self, mk, dd: DualDeal, i: int) -> tuple[float, int]:
        r = dd.rows[i]
        job = mk.job_classes[dd.module]
        fl = mk.fleet
        speed = float(fl.gpu_speed[r] if job.kind == "gpu" else fl.cpu_speed[r])
        return speed, int(fl.cost_wei_per_s[r])

    def cost_estimate(self, mk, dd: DualDeal, i: int) -> int:
        """c: the node's hardware cost of an honest run of the job (wei)."""
        speed, cost_s = self._run_cost(mk, dd, i)
        return runtime_s(dd.units, speed) * cost_s

    # -- the tick ------------------------------------------------------------------------------
    _READY, _DEADLINE, _VERDICT = 0, 1, 2

    def on_tick_start(self, mk) -> None:
        if self.pending:
            modes = mk.actions.rp_mode
            for rp in sorted(self.pending):
                q = self.pending[rp]
                mode = int(modes[mk.row[rp]])
                while q and q[0][2] < mk.tick:
                    di, i, _ = q.popleft()
                    self._decide(mk, self.duals[di], i, mode)
                if not q:
                    del self.pending[rp]
        q = self._due
        while q and q[0][0] <= mk.now:
            _, _, kind, di, i = heapq.heappop(q)
            dd = self.duals[di]
            if kind == self._READY:
                self._ready(mk, dd, i)
            elif kind == self._DEADLINE:
                if dd.state == DualState.Running:
                    for j in (A, B):
                        if dd.sub[j] == Sub.Pending:
                            dd.sub[j] = Sub.Nothing
                    self._resolve(mk, dd)
            elif dd.state == DualState.Disputed:
                self._settle(mk, dd)

    def _decide(self, mk, dd: DualDeal, i: int, mode: int) -> None:
        node = dd.nodes[i]
        if dd.state == DualState.Bargaining:
            dd.agree[i], dd.decided[i] = mode in (Decision.Cheat, Decision.Betray), True
            if not all(dd.decided):
                return
            dd.agreed = all(dd.agree)
            tm = self.terms
            if dd.agreed:
                for j in (A, B):
                    self.n_agreed[dd.nodes[j]] += 1
                if tm.colluder:
                    lead, fol = dd.nodes[dd.leader], dd.nodes[1 - dd.leader]
                    wallet = mk.ledger.wallet
                    if wallet[lead] >= tm.t + tm.b and wallet[fol] >= tm.t:
                        self._pay(mk, dd, lead, self.colluder, tm.t + tm.b, R.CccCollusionDeposit)
                        self._pay(mk, dd, fol, self.colluder, tm.t, R.CccCollusionDeposit)
                        dd.binding = True
            dd.state = DualState.Computing
            dd.decided = [False, False]
            for j in (A, B):
                self._queue(mk, dd, j)
            return
        # compute stage
        dec = Decision(mode)
        if dec == Decision.Betray:
            if not (self.terms.traitor and dd.agreed):
                dec = Decision.Honest  # nothing to report: "inflate" runs honestly
            elif mk.ledger.wallet[node] < self.terms.ch:
                dec = Decision.Cheat  # cannot fund the report: stays a loyal colluder
        dd.decision[i], dd.decided[i] = int(dec), True
        self.n_decided[node] += 1
        if dec in (Decision.Honest, Decision.Betray):
            self.n_honest[node] += 1
        elif dec == Decision.Cheat:
            mk.n_cheats[node] += 1
        ex = mk.cfg.execution
        speed, cost_s = self._run_cost(mk, dd, i)
        p = plan(_EXEC_MODE[dec], mk.job_classes[dd.module], dd.units, speed, cost_s,
                 ex.cheat_cost_fraction, ex.cheat_runtime_s, ex.inflate_factor, mk.rng)  # fmt: skip
        dd.cost[i] = p.cost_wei
        mk._add_cost(node, p.cost_wei)
        if p.ready_in_s < 0:  # skipped or failed: nothing will come
            dd.sub[i] = Sub.Nothing
            self._release(mk, dd, i)
        else:
            self._at(mk.now + p.ready_in_s, self._READY, dd, i)
        if all(dd.decided):
            dd.state = DualState.Running
            dd.deadline = mk.now + self.submit_s
            self._at(dd.deadline + 1, self._DEADLINE, dd)
            if Sub.Pending not in dd.sub:
                self._resolve(mk, dd)

    def _ready(self, mk, dd: DualDeal, i: int) -> None:
        self._release(mk, dd, i)
        if dd.state != DualState.Running or dd.sub[i] != Sub.Pending:
            return
        dec = Decision(dd.decision[i])
        dd.sub[i] = submission(dec, dd.agreed, self.terms.traitor)
        if dec == Decision.Betray and self._pay(mk, dd, dd.nodes[i], self.escrow, self.terms.ch,
                                                R.CccDeposit, must=False):  # fmt: skip
            dd.reports.append((mk.now, i))  # the report, with the correct result
        if Sub.Pending not in dd.sub:
            self._resolve(mk, dd)

    def _resolve(self, mk, dd: DualDeal) -> None:
        if dd.sub == [Sub.Correct, Sub.Correct]:
            nd = mk.job_classes[dd.module].nondeterminism_prob
            dd.honest_match = not (nd > 0 and mk.rng.random() < nd)
        s = self._settlement(mk, dd)
        if s.ttp_used and self.params.ttp_latency_s > 0:
            dd.state = DualState.Disputed
            self._at(mk.now + self.params.ttp_latency_s, self._VERDICT, dd)
        else:
            self._settle(mk, dd)

    def _settlement(self, mk, dd: DualDeal) -> Settlement:
        """The payouts of ``dd`` from its results (computed once: nothing changes them after
        the resolution)."""
        if dd.settlement is not None:
            return dd.settlement
        rep = dd.reports
        if len(rep) == 2 and rep[0][0] == rep[1][0] and not dd.ordered:
            if mk.rng.random() < 0.5:  # filed in the same second: a fair draw decides who was first
                rep.reverse()
            dd.ordered = True
        subs = (dd.sub[A], dd.sub[B])
        dd.settlement = settle(self.terms, subs, tuple(i for _, i in rep), dd.binding, dd.leader,
                               dd.honest_match)  # fmt: skip
        return dd.settlement

    def _settle(self, mk, dd: DualDeal) -> None:
        s = self._settlement(mk, dd)
        party = {A: dd.nodes[A], B: dd.nodes[B], CLIENT: dd.jc, TTP: self.ttp}
        for who, amount, reason in s.escrow:
            self._pay(mk, dd, self.escrow, party[who], amount, reason)
        for who, amount in s.colluder:
            self._pay(mk, dd, self.colluder, dd.nodes[who], amount, R.CccCollusionPayout)
        dd.outcome, dd.ttp_used, dd.traitor = s.outcome, s.ttp_used, s.traitor
        dd.state, dd.settled_at = DualState.Settled, mk.now
        self.open.pop(dd.index, None)
        mk.active.pop(dd.deal, None)
        both_paid = s.outcome in ("honest", "collusion", "honest_mismatch")
        for j in (A, B):
            self._release(mk, dd, j)
            node, sub, dec = dd.nodes[j], dd.sub[j], dd.decision[j]
            if dd.agreed and dec == Decision.Cheat:
                self.n_loyal[node] += 1  # followed the agreement (submitted r, did not betray)
            if both_paid or s.traitor == j or (s.outcome == "cheat_caught" and sub == Sub.Correct):
                mk.rep_completed[node] += 1
            if s.ttp_used and sub != Sub.Nothing:
                mk.rep_checked[node] += 1
                if sub != Sub.Correct and dec != Decision.Betray:
                    mk.rep_failed[node] += 1
                    mk.n_caught[node] += 1
        for a in (dd.jc, *dd.nodes):
            mk.open_deals[a] -= 1

    def on_tick_end(self, mk) -> None:
        """At the close cap, settle every open dual deal at once (missing results: nothing)."""
        if not self.open or not mk.closing:
            return
        if mk.tick < mk.cfg.market.episode_ticks + mk.close_cap_ticks:
            return
        self.pending.clear()
        for di in list(self.open):
            dd = self.duals[di]
            if dd.state != DualState.Disputed:
                dd.sub = [Sub.Nothing if s == Sub.Pending else s for s in dd.sub]
            self._settle(mk, dd)

    # -- observations --------------------------------------------------------------------------
    def _focus(self) -> dict[int, tuple[DualDeal, int]]:
        """Per RP account: the oldest dual deal (and its node index) awaiting its decision."""
        return {rp: (self.duals[q[0][0]], q[0][1]) for rp, q in self.pending.items() if q}

    def feature_names(self, role: str) -> tuple[str, ...]:
        return FEATURES if role == "rp" else ()

    def write_features(self, mk, fb) -> None:
        X = fb.out.get("rp")
        focus_rp = self._focus()
        if X is None or not focus_rp:
            return
        tm, terms_tokens = self.terms, self._terms_tokens
        T = WEI_PER_TOKEN
        # Python scalars throughout: numpy scalars in the row lists would make each assignment
        # below convert element by element (int / int of small counts: the same quotients)
        row, n_rp = mk.row, mk.n_rp
        loyal, agreed, honest, decided = (self.n_loyal, self.n_agreed, self.n_honest,
                                          self.n_decided)  # fmt: skip
        rows, flags, money, partner_cols = [], [], [], []
        for rp, (dd, i) in focus_rp.items():
            partner = dd.nodes[1 - i]
            rows.append(int(row[rp]))
            flags.append((1.0, float(dd.state == DualState.Bargaining), float(tm.colluder),
                          float(tm.traitor), float(dd.leader == i), float(dd.agreed),
                          float(dd.binding)))  # fmt: skip
            # int / int in Python (correctly rounded): amounts above 2**63 wei (~9.2 tokens) are
            # no int64, so numpy must not see the wei
            money.append([*terms_tokens, self.cost_estimate(mk, dd, i) / T])
            partner_cols.append((
                (int(row[partner]) + 1) / n_rp,
                (int(loyal[partner]) + 1) / (int(agreed[partner]) + 2),
                (int(honest[partner]) + 1) / (int(decided[partner]) + 2),
            ))  # fmt: skip
        # one symlog over every focus row (elementwise: the values of a per-row pass); the few
        # rows written one at a time (cheaper than fancy indexing with lists)
        money = np.array(money)
        money = np.sign(money) * np.log1p(np.abs(money))
        for k, r in enumerate(rows):
            X[r, 0:7] = flags[k]
            X[r, _MONEY] = money[k]
            X[r, 13:16] = partner_cols[k]

    def action_mask(self, mk, role: str, mask: np.ndarray) -> None:
        """Open the RP modes a pending dual-deal decision can use (``mask``: seats x modes x
        price levels): sign stage 0-1; compute stage 0, 1, 3, and 2 where betrayal is possible."""
        if role != "rp" or not self.pending:
            return
        for rp, q in self.pending.items():
            r = mk.row[rp]
            for di, _, _ in q:
                dd = self.duals[di]
                if dd.state == DualState.Bargaining:
                    mask[r, 0:2] = 1
                else:  # modes 0, 1 and 3 (two basic slices: cheaper than a tuple index)
                    mask[r, 0:2] = 1
                    mask[r, 3] = 1
                    if self.terms.traitor and dd.agreed:
                        mask[r, 2] = 1

    def held_wei(self, mk) -> dict[int, int]:
        """The deposits of every open dual deal, per party (client and nodes): all a party has
        paid into the contracts so far (they pay out only at settlement), counted in its wealth
        until then as v1 collateral in escrow is."""
        out: dict[int, int] = {}
        for di in self.open:
            dd = self.duals[di]
            for a in (dd.jc, *dd.nodes):
                paid = -dd.net.get(a, 0)
                if paid:
                    out[a] = out.get(a, 0) + paid
        return out

    # -- results -------------------------------------------------------------------------------
    def payoffs(self, dd: DualDeal) -> tuple[int, int]:
        """Each node's realised payoff in the dual deal (wei): ledger flows minus its cost."""
        return tuple(dd.net.get(dd.nodes[i], 0) - dd.cost[i] for i in (A, B))

    def tables(self, mk) -> dict:
        import pandas as pd

        rows = []
        T = WEI_PER_TOKEN
        for dd in self.duals:
            pa, pb = self.payoffs(dd)
            dec = [Decision(x).name.lower() if x >= 0 else "none" for x in dd.decision]
            rows.append({
                "dual": dd.index, "deal": dd.deal, "jc": dd.jc, "rp_a": dd.nodes[A], "rp_b": dd.nodes[B],
                "leader": "ab"[dd.leader], "module": mk.module_names[dd.module], "units": dd.units,
                "agree_a": dd.agree[A], "agree_b": dd.agree[B], "agreed": dd.agreed, "binding": dd.binding,
                "decision_a": dec[A], "decision_b": dec[B],
                "submitted_a": dd.sub[A].name.lower(), "submitted_b": dd.sub[B].name.lower(),
                "reports": len(dd.reports), "first_report": "ab"[dd.reports[0][1]] if dd.reports else "",
                "traitor": "ab"[dd.traitor] if dd.traitor >= 0 else "", "honest_match": dd.honest_match,
                "outcome": dd.outcome if dd.state == DualState.Settled else "open",
                "ttp_used": dd.ttp_used, "cost_a_wei": dd.cost[A], "cost_b_wei": dd.cost[B],
                "net_a_wei": dd.net.get(dd.nodes[A], 0), "net_b_wei": dd.net.get(dd.nodes[B], 0),
                "client_net_wei": dd.net.get(dd.jc, 0), "ttp_wei": dd.net.get(self.ttp, 0),
                "payoff_a_tokens": pa / T, "payoff_b_tokens": pb / T,
                "payoff_leader_tokens": (pa, pb)[dd.leader] / T, "payoff_follower_tokens": (pa, pb)[1 - dd.leader] / T,
                "created_at": dd.created_at, "settled_at": dd.settled_at,
            })  # fmt: skip
        return {"dual_deals": pd.DataFrame(rows)}

    def metrics(self, mk) -> dict[str, float]:
        done = [dd for dd in self.duals if dd.state == DualState.Settled]
        n = max(1, len(done))
        decisions = [x for dd in done for x in dd.decision if x >= 0]
        nd = max(1, len(decisions))
        pay = [p for dd in done for p in self.payoffs(dd)]
        count = lambda f: sum(1 for dd in done if f(dd)) / n  # noqa: E731
        return {
            "ccc_dual_deals": float(len(done)),
            "ccc_fallbacks": float(self.fallbacks),
            "ccc_agreed_rate": count(lambda dd: dd.agreed),
            "ccc_binding_rate": count(lambda dd: dd.binding),
            "ccc_collusion_rate": count(lambda dd: dd.outcome == "collusion"),
            "ccc_betrayal_rate": count(lambda dd: dd.outcome == "betrayed"),
            "ccc_dispute_rate": count(lambda dd: dd.ttp_used),
            "ccc_cheat_rate": sum(x == Decision.Cheat for x in decisions) / nd,
            "ccc_honest_rate": sum(x in (Decision.Honest, Decision.Betray) for x in decisions) / nd,
            "ccc_node_payoff_tokens": float(np.mean(pay)) / WEI_PER_TOKEN if pay else 0.0,
            "ccc_client_cost_tokens": -sum(dd.net.get(dd.jc, 0) for dd in done) / n / WEI_PER_TOKEN,
        }
