"""Consortium mediation: k of n mediators decide a check, with recursive rounds, several
selection rules, a fee split, colluding rings that vote as a group, and commit-reveal.

What it models (``mediation.protocol=consortium``; the whitepaper's pluggable mediation: number of
mediators, consensus threshold, how mediators are chosen, recursive mediation with a cap on the
nodes it may draw, the mediation fee; and its anti-collusion by obfuscation):

**Rounds and the k-of-n decision.** When the JC checks a result, ``n = mediation.n_mediators``
distinct mediators are drawn from the deal's mutually trusted set ``d.mediators`` (fewer if the
set is smaller). Each re-executes and votes (or colludes). A round is tallied once every one of its
mediators has voted (the contract collects the round's votes, then counts): with ``a`` accepts and
``r`` rejects, the result is *accepted* if ``a >= k`` and ``a > r``, *rejected* if ``r >= k`` and
``r > a``, else the round has no consensus (:func:`tally`; with ``k > n/2`` this is simply "k
agreeing votes decide"). ``k = mediation.threshold``.

**Recursive mediation.** A round without consensus opens a new round of ``n`` mediators drawn from
the trusted set minus every mediator already drawn, while fewer than ``max_rounds`` rounds were
held and at most ``max_nodes`` mediators (0: no cap) are drawn in all; a round is drawn only if it
can reach ``k`` votes (its size ``min(n, candidates left, nodes left) >= k``). When no round can be
drawn, the deal waits for the mediate timeout (``timeoutMediateResult``: the JC gets ``P`` and ``F``
back, the RP ``R``; the mediators who voted are not paid). The timeout window runs from
``checkResult`` for all rounds together.

**Selection** (``mediation.selection``), each drawing distinct mediators from the candidates:

- ``v1_hash``: v1's rule generalised to several draws (:func:`hash_draw`): ``h_0 =
  keccak256(abi.encodePacked(uint256 timestamp, string dealId))``, ``h_{j+1} =
  keccak256(abi.encodePacked(bytes32 h_j))``; draw ``j`` takes ``candidates[h_j mod len]`` and
  removes it from the list (order kept). The first draw is exactly v1's mediator. ``timestamp`` is
  the block time of the call that opens the round (``checkResult``, or the vote that closes the
  previous round: always a later second). Predictable, like v1's.
- ``uniform``: uniformly without replacement, from the market's generator.
- ``auction`` (lowest fee): every mediator has a fee *ask* for a job: its re-execution cost of
  the job on its machine times ``1 + markup``, its markup drawn once at genesis uniformly on a
  basis-point grid in ``[0, ask_markup_max]``; the ``n`` lowest asks win (ties: lower markup, then
  trusted-set order). The asks select; the price is the deal's posted fee ``F`` split as below
  (the JC's budget is fixed in the deal terms).
- ``reputation``: successive draws without replacement, each with probability proportional to the
  mediator's beta reputation (Jøsang and Ismail's beta reputation system) ``(g + a) / (g + b + 2a)``
  where ``g``/``b`` count its votes that agreed / disagreed with the final verdict of decided deals
  and ``a = reputation_prior``.

**Fee split** (``mediation.fee_split``). The JC's fee ``F`` (deposited at ``checkResult``) is paid
once, at the verdict, to the voters of *all* rounds: ``equal`` splits it among every voter,
``majority`` among the voters whose vote equals the verdict; each payee gets ``F // m`` and the
remainder wei go to the first payee in draw order (:func:`split_fee`). The payees are recorded on
the deal (``d.voters``; :mod:`twin.mechanisms.slashing` gives the mediators' share of slashed
collateral to them). The flow is :meth:`twin.deals.DealFlows.mediation_verdict`: v1's accept or
reject flow with one ``Payment(payee, share, MediationFee, PaidOut)`` per payee.

**Colluding rings act as a group** (:class:`twin.collusion.CollusionRings`): every ring mediator
drawn on a deal where the ring's agreement applies (a ring RP's wrong result: accept; a correct
result delivered to a ring JC: reject) votes as agreed when its action is ``collude``, for the
ring's bribe ``collusion.bribe_wei`` each. A ring mediator that votes on its honest re-execution
instead *defects* (a learning mediator by its action; scripted colluders with
``mediation.defect_probability``).

**What a colluder observes; commit-reveal** (``mediation.commit_reveal``; the whitepaper's
anti-collusion by obfuscation). Without it, each vote is a public transaction
(``MediationVoted(dealId, mediator, vote)``) and each fee payment names its payee: once a round's
votes are in, a ring mediator sees whether each ring partner of the round kept the agreement
(features ``ring_partner_defected_last`` and ``ring_partner_loyalty``); the briber can verify the
vote, so the bribe is paid per collusive vote. With it, mediators publish a sealed commitment
(``MediationVoted(dealId, mediator, 2)``), the round's votes are revealed only when all are in and
without their authors (``VoteRevealed(dealId, vote)``, rejects first), and fees are paid into a
``mediation_pool`` account from which each mediator receives, at the end of the tick, one
``MediationPayout`` transfer that names no deal (unlinkable). Colluders then cannot observe their
partners' votes (those features are 0), and the briber cannot make the bribe conditional on the
vote: **ring bribes are paid up front**, when the ring's mediators are drawn (each drawn ring
mediator whose ring's agreement applies receives the bribe at once; it keeps it whatever it votes),
and a mediator whose briber could not pay has nothing to honour and votes on its re-execution.
The model is the whitepaper's idealised obfuscation: the verdict and the public tally remain
visible, so in a small consortium the outcome alone can still reveal a defection (two colluders of
a 2-of-3 consortium that see a rejection know one of them defected); the mediators' reputation
(kept by the contract from the votes it verifies) stays public; and a share of slashed collateral
that :mod:`twin.mechanisms.slashing` pays to the voters names the deal.

**Observations** (:meth:`ConsortiumMediation.feature_names`). A mediator sees ``votes_public``
(1 without commit-reveal), for its focus deal the round it was drawn in (``focus_round``, over
``max_rounds``) and how many of its ring partners were drawn with it (``focus_ring_partners_drawn``,
over ``n``; draws are public), what it observed of its partners (``ring_partner_defected_last``,
``ring_partner_loyalty``: beta mean of their kept agreements; both 0 under commit-reveal), its own
reputation and its auction markup. A ring RP deciding how to execute sees the share of its ring
among the deal's trusted mediators and the hypergeometric probability that a uniform first round
draws at least ``k`` of them (:func:`ring_consensus_probability`; exact for ``uniform``, an
estimate for the other rules).

Parameters (``cfg.mediation``): ``n_mediators`` (n, mediators per round), ``threshold`` (k),
``selection``, ``max_rounds``, ``max_nodes`` (mediators over all rounds, 0: no cap),
``fee_split``, ``commit_reveal``, ``defect_probability`` (per scripted colluder decision),
``ask_markup_max`` (auction, fraction), ``reputation_prior`` (pseudo-counts). Sources: the Lilypad
whitepaper (mediation protocols, recursive mediation, anti-collusion by obfuscation); Lilypad v1's
``keccak256(timestamp, dealId)`` mediator choice; Jøsang and Ismail (2002), the beta reputation
system.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from sha3 import keccak_256

from twin.deals import DealState
from twin.events import VOTE_SEALED, TransferReason
from twin.execution import reexecute
from twin.mechanisms.base import Mechanism
from twin.mediation.base import Vote
from twin.modules import runtime_s

if TYPE_CHECKING:  # pragma: no cover
    from twin.deals import Deal
    from twin.market import Market

BP = 10_000  # basis points per unit of ask markup


def tally(accepts: int, rejects: int, k: int) -> bool | None:
    """Verdict of a closed round: True accept, False reject, None no consensus."""
    if accepts >= k and accepts > rejects:
        return True
    if rejects >= k and rejects > accepts:
        return False
    return None


def fee_payees(ballots: Sequence[tuple[int, bool]], verdict: bool, rule: str) -> list[int]:
    """Mediators paid from the fee, in draw order: every voter (``equal``) or the voters whose
    vote equals the verdict (``majority``). ``ballots``: (mediator, accept) in draw order."""
    if rule == "equal":
        return [m for m, _ in ballots]
    return [m for m, accept in ballots if accept == verdict]


def split_fee(fee_wei: int, payees: Sequence[int]) -> list[tuple[int, int]]:
    """``fee_wei // len(payees)`` each; the remainder wei to the first payee."""
    if not payees:
        raise ValueError("the fee needs at least one payee")
    each, dust = divmod(fee_wei, len(payees))
    return [(m, each + (dust if i == 0 else 0)) for i, m in enumerate(payees)]


def hash_draw(
    timestamp: int, deal_id: str, candidates: Sequence[int], size: int
) -> tuple[int, ...]:
    """v1's ``keccak256(timestamp, dealId) mod len`` rule generalised to ``size`` distinct draws:
    hash chain ``h_{j+1} = keccak256(h_j)``, each draw removed from the candidates (order kept)."""
    pool = list(candidates)
    h = keccak_256(timestamp.to_bytes(32, "big") + deal_id.encode()).digest()
    out = []
    for _ in range(min(size, len(pool))):
        out.append(pool.pop(int.from_bytes(h, "big") % len(pool)))
        h = keccak_256(h).digest()
    return tuple(out)


def weighted_draw(
    rng: np.random.Generator, candidates: Sequence[int], weights: Sequence[float], size: int
) -> tuple[int, ...]:
    """``size`` successive draws without replacement, each proportional to the weights left."""
    pool, w = list(candidates), [float(x) for x in weights]
    out = []
    for _ in range(min(size, len(pool))):
        total = sum(w)
        u = rng.random() * total
        i, acc = 0, w[0]
        while acc <= u and i < len(w) - 1:
            i += 1
            acc += w[i]
        out.append(pool.pop(i))
        w.pop(i)
    return tuple(out)


@functools.lru_cache(maxsize=4096)
def ring_consensus_probability(trusted: int, ring: int, n: int, k: int) -> float:
    """P(a uniform draw of ``n`` of ``trusted`` mediators holds at least ``k`` of the ``ring``
    ring mediators): the hypergeometric tail, a ring RP's estimate that its ring decides."""
    n = min(n, trusted)
    total = math.comb(trusted, n)
    hit = sum(
        math.comb(ring, x) * math.comb(trusted - ring, n - x) for x in range(k, min(ring, n) + 1)
    )
    return hit / total if total else 0.0


@dataclass
class _Case:
    """The mediation of one checked deal."""

    rounds: list[tuple[int, ...]]  # mediators drawn per round, in draw order
    ballots: dict[int, bool] = field(default_factory=dict)  # mediator -> accept (cast votes)
    prepaid: dict[int, int] = field(default_factory=dict)  # up-front bribes (commit-reveal)


class ConsortiumMediation(Mechanism):
    """``mediation.protocol=consortium``: a :class:`~twin.mediation.base.MediationProtocol` that
    is also a mechanism (genesis asks, the fee pool's payouts, observations, metrics)."""

    name = "consortium"

    @classmethod
    def enabled(cls, cfg) -> bool:
        return cfg.mediation.protocol == "consortium"

    @classmethod
    def from_config(cls, cfg) -> ConsortiumMediation:
        m = cls(cfg.mediation)
        m.accounts = ("mediation_pool",) if cfg.mediation.commit_reveal else ()
        return m

    def attach(self, mk: Market) -> None:
        p = self.params
        n = mk.n_accounts
        self.public = not p.commit_reveal
        self.pool = mk.system.get("mediation_pool", -1)
        self.agreed = np.zeros(n, np.int64)  # votes equal to the final verdict
        self.disagreed = np.zeros(n, np.int64)
        self.markup_bp = np.zeros(n, np.int64)
        if p.selection == "auction":
            hi = int(round(p.ask_markup_max * BP))
            self.markup_bp[mk.med_acct] = mk.rng.integers(0, hi + 1, len(mk.med_acct))
        self.cases: dict[int, _Case] = {}
        self.owed: dict[int, int] = {}  # pooled fees owed per mediator (paid at tick end)
        self.decided = self.rounds_held = self.undecided = 0
        self.defections = self.prepaid_bribes = 0
        #: mediator accounts (contiguous) as a slice: reads of every mediator without a copy
        self._med = slice(int(mk.med_acct[0]), int(mk.med_acct[-1]) + 1)
        self._partners: dict[int, frozenset[int]] = {}  # mediator -> its ring partners (fixed)
        self._rp_focus: dict[int, tuple[float, ...]] = {}  # open deal -> its RP features (fixed)

    # -- selection ------------------------------------------------------------------------------
    def score(self, accounts) -> np.ndarray:
        """Beta reputation of mediators: agreement of their votes with the final verdicts."""
        a = self.params.reputation_prior
        g, b = self.agreed[accounts], self.disagreed[accounts]
        return (g + a) / (g + b + 2 * a)

    def asks(self, mk: Market, d: Deal, candidates: Sequence[int]) -> list[int]:
        """Fee asks (wei) of ``candidates`` for ``d``'s job: re-execution cost x (1 + markup)."""
        job = mk.job_classes[d.module]
        out = []
        for m in candidates:
            speed, cost_per_s = mk.mediator_machine(m, job)
            cost = runtime_s(d.units, speed) * cost_per_s
            out.append(cost * (BP + int(self.markup_bp[m])) // BP)
        return out

    def draw(
        self, mk: Market, d: Deal, t: int, candidates: Sequence[int], size: int
    ) -> tuple[int, ...]:
        sel = self.params.selection
        if sel == "v1_hash":
            return hash_draw(t, mk.deal_id(d.index), candidates, size)
        if sel == "uniform":
            idx = mk.rng.choice(len(candidates), size=size, replace=False)
            return tuple(int(candidates[i]) for i in idx)
        if sel == "auction":
            asks = self.asks(mk, d, candidates)
            order = sorted(
                range(len(candidates)),
                key=lambda i: (asks[i], int(self.markup_bp[candidates[i]]), i),
            )
            return tuple(int(candidates[i]) for i in order[:size])
        return weighted_draw(mk.rng, candidates, self.score(list(candidates)), size)

    def _round_size(self, d: Deal, used: int, left: int) -> int:
        p = self.params
        cap = p.max_nodes - used if p.max_nodes else p.n_mediators
        return max(0, min(p.n_mediators, left, cap))

    def select(self, mk: Market, d: Deal, t: int) -> tuple[int, ...]:
        drawn = self.draw(mk, d, t, d.mediators, self._round_size(d, 0, len(d.mediators)))
        self.cases[d.index] = _Case([drawn])
        return drawn

    def _next_round(self, mk: Market, d: Deal, case: _Case) -> tuple[int, ...]:
        if len(case.rounds) >= self.params.max_rounds:
            return ()
        used = {m for r in case.rounds for m in r}
        candidates = [m for m in d.mediators if m not in used]
        size = self._round_size(d, len(used), len(candidates))
        if size < self.params.threshold:
            return ()
        return self.draw(mk, d, mk.now, candidates, size)

    # -- bribes ---------------------------------------------------------------------------------
    def _prepay(self, mk: Market, d: Deal, mediators: Sequence[int]) -> None:
        """Commit-reveal: the briber cannot verify votes, so it pays each drawn ring mediator up
        front (it keeps the bribe whatever it votes)."""
        case, bribe = self.cases[d.index], mk.collusion.bribe_wei
        for m in mediators:
            ag = mk.collusion.agreement(d, m)
            if ag is not None and mk.transfer(ag[0], m, bribe, TransferReason.Bribe, d.index):
                case.prepaid[m] = bribe
                d.bribe += bribe
                self.prepaid_bribes += 1

    def on_checked(self, mk: Market, d: Deal) -> None:
        if not self.public and d.index in self.cases:
            self._prepay(mk, d, self.cases[d.index].rounds[0])

    # -- votes and verdicts ---------------------------------------------------------------------
    def vote(
        self, mk: Market, d: Deal, mediator: int, collude: bool, rng: np.random.Generator
    ) -> Vote:
        job = mk.job_classes[d.module]
        speed, cost = mk.mediator_machine(mediator, job)
        rex = reexecute(d, job, speed, cost, rng)
        if collude:
            ag = mk.collusion.agreement(d, mediator)
            if ag is not None:
                briber, accept = ag
                if self.public:  # the briber sees the vote: paid per collusive vote
                    return Vote(mediator, accept, True, briber, mk.collusion.bribe_wei, 0,
                                mk.cheap_latency_s)  # fmt: skip
                case = self.cases.get(d.index)
                if case is not None and mediator in case.prepaid:  # paid up front
                    return Vote(mediator, accept, True, -1, 0, 0, mk.cheap_latency_s)
        accept = rex.data_matches and rex.count_matches
        if not mk.mediator_reexecutes:
            return Vote(mediator, accept, False, -1, 0, 0, mk.cheap_latency_s)
        return Vote(mediator, accept, False, -1, 0, rex.cost_wei, rex.runtime_s)

    def decide(self, mk: Market, d: Deal, votes: list) -> bool | None:
        case = self.cases.get(d.index)
        if case is None or not votes:
            return None
        v = votes[-1]
        case.ballots[v.mediator] = v.accept
        mk.log.mediation_voted(
            mk.now, d.index, v.mediator, int(v.accept) if self.public else VOTE_SEALED
        )
        current = case.rounds[-1]
        if any(m not in case.ballots for m in current):
            return None  # the round is still open
        ballots = {m: case.ballots[m] for m in current}
        if not self.public:  # reveal the round's votes, not linked to their authors
            for accept in sorted(ballots.values()):
                mk.log.vote_revealed(mk.now, d.index, int(accept))
        self.defections += mk.collusion.observe_round(d, ballots, public=self.public)
        accepts = sum(ballots.values())
        verdict = tally(accepts, len(ballots) - accepts, self.params.threshold)
        if verdict is not None:
            return verdict
        more = self._next_round(mk, d, case)
        if more:
            case.rounds.append(more)
            mk.request_mediators(d, more)
            if not self.public:
                self._prepay(mk, d, more)
        return None

    def settle(self, mk: Market, d: Deal, accept: bool, votes: list) -> bool:
        case = self.cases.pop(d.index)
        ballots = [(m, case.ballots[m]) for r in case.rounds for m in r]
        payees = fee_payees(ballots, accept, self.params.fee_split)
        shares = split_fee(d.mediation_fee, payees)
        flow = shares if self.public else [(self.pool, d.mediation_fee)]
        if not mk.flows.mediation_verdict(mk.now, d, accept, flow):
            return False
        d.voters = tuple(payees)
        if not self.public:
            for m, wei in shares:
                if wei:
                    self.owed[m] = self.owed.get(m, 0) + wei
        for m, vote in ballots:
            if vote == accept:
                self.agreed[m] += 1
            else:
                self.disagreed[m] += 1
        self.decided += 1
        self.rounds_held += len(case.rounds)
        return True

    # -- hooks ----------------------------------------------------------------------------------
    def on_deal_end(self, mk: Market, d: Deal) -> None:
        self._rp_focus.pop(d.index, None)
        if self.cases.pop(d.index, None) is not None and d.state == DealState.TimeoutMediateResults:
            self.undecided += 1

    def on_tick_end(self, mk: Market) -> None:
        if self.owed:  # pooled fees: one unlinkable transfer per mediator, naming no deal
            for m in sorted(self.owed):
                mk.transfer(self.pool, m, self.owed[m], TransferReason.MediationPayout)
            self.owed.clear()

    # -- observations and metrics ---------------------------------------------------------------
    def feature_names(self, role: str) -> tuple[str, ...]:
        if role == "mediator":
            return ("votes_public", "focus_round", "focus_ring_partners_drawn",
                    "ring_partner_defected_last", "ring_partner_loyalty", "own_reputation",
                    "own_ask_markup")  # fmt: skip
        if role == "rp":
            return ("focus_ring_mediator_share", "focus_ring_consensus_prob")
        return ()

    def write_features(self, mk: Market, fb) -> None:
        p, coll, focus = self.params, mk.collusion, fb.focus
        med = self._med
        Z = fb.out.get("mediator")
        if Z is not None:
            self._mediator_features(Z, p, coll, focus, med)
        X, per_deal = fb.out.get("rp"), self._rp_focus
        if X is None:
            return
        for row, di in focus.get("rp", {}).items():
            v = per_deal.get(di)
            if v is None:  # a deal's RP, mediators and rings never change: once per deal
                v = per_deal[di] = self._rp_focus_values(mk, di)
            if v:
                X[row] = v  # (a row at a time: cheaper than fancy indexing for the few)

    def _mediator_features(self, Z, p, coll, focus, med) -> None:
        Z[:, 0] = float(self.public)
        if self.public:  # partners' votes are observable only when votes are public
            Z[:, 3] = coll.defected_last[med]
            seen_loyal = coll.loyal_seen[med]  # CollusionRings.loyalty, on a slice
            Z[:, 4] = (seen_loyal + 1.0) / (seen_loyal + coll.defected_seen[med] + 2.0)
        Z[:, 5] = self.score(med)
        Z[:, 6] = self.markup_bp[med] / BP
        med0, cases, partners_of = med.start, self.cases, self._partners
        for row, di in focus.get("mediator", {}).items():
            case = cases.get(di)
            if not case:
                continue
            m = med0 + row
            rnd = next((i for i, r in enumerate(case.rounds) if m in r), -1)
            if rnd < 0:
                continue
            Z[row, 1] = (rnd + 1) / p.max_rounds
            partners = partners_of.get(m)
            if partners is None:  # rings never change: each mediator's partners, once
                partners = partners_of[m] = frozenset(coll.partners(m).tolist())
            # (a round's mediators are distinct: its partners are the intersection)
            Z[row, 2] = len(partners.intersection(case.rounds[rnd])) / p.n_mediators

    def _rp_focus_values(self, mk: Market, di: int) -> tuple[float, float] | tuple[()]:
        """The RP features of deal ``di``: the share of its trusted mediators in the RP's ring and
        the ring's chance to decide; ``()`` when the RP is in no ring (zeros)."""
        p, ring_of, d = self.params, mk.collusion.ring, mk.deals[di]
        ring = ring_of[d.rp]
        if ring < 0:
            return ()
        trusted = len(d.mediators)
        r = int(sum(ring_of[x] == ring for x in d.mediators))
        return r / trusted, ring_consensus_probability(trusted, r, p.n_mediators, p.threshold)

    def metrics(self, mk: Market) -> dict[str, float]:
        return {
            "mediation_decided": float(self.decided),
            "mediation_rounds_mean": self.rounds_held / max(1, self.decided),
            "mediation_undecided": float(self.undecided),
            "mediator_defections": float(self.defections),
            "prepaid_bribes": float(self.prepaid_bribes),
        }
