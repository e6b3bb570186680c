"""Deals: the v1 agreement state machine and its money flows, to the wei.

A :class:`Deal` holds the immutable terms (members, timeouts, pricing), the v1 ``Agreement``
timestamps and the twin's own bookkeeping (how the result was produced, who checked, costs).
:class:`DealFlows` performs every v1 call on a deal -- ``agree``, ``add_result``,
``accept_result``, ``check_result``, the mediator's verdict (v1's single mediator, or a
consortium's :meth:`DealFlows.mediation_verdict` with the fee split among several mediators) and
the four timeouts -- moving tokens
in the :class:`~twin.ledger.Ledger` and appending the events of ``docs/protocol-flows.md`` to the
:class:`~twin.events.EventLog`, in that exact order. A call that is not allowed (wrong state,
timeout not reached, insufficient funds) raises :class:`CallRejected` before anything moves; a
call that the protocol preset makes revert is recorded as a ``CallReverted`` event and, where the
deployed contracts would strand funds, the deal's escrow is marked locked for good.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

from twin.events import EventKind, EventLog
from twin.events import PaymentDirection as D
from twin.events import PaymentReason as R
from twin.ledger import InsufficientFunds, Ledger
from twin.protocol import ProtocolRules

_PAYMENT, _STATE_CHANGE = int(EventKind.Payment), int(EventKind.DealStateChange)
_PAID_IN, _PAID_OUT, _REFUNDED, _SLASHED = (int(D.PaidIn), int(D.PaidOut), int(D.Refunded),
                                            int(D.Slashed))  # fmt: skip


class DealState(enum.IntEnum):
    """v1 ``AgreementState`` (exact indices)."""

    DealNegotiating = 0
    DealAgreed = 1
    ResultsSubmitted = 2
    ResultsAccepted = 3
    ResultsChecked = 4
    MediationAccepted = 5
    MediationRejected = 6
    TimeoutAgree = 7
    TimeoutSubmitResults = 8
    TimeoutJudgeResults = 9
    TimeoutMediateResults = 10


TERMINAL_STATES = frozenset(
    {
        DealState.ResultsAccepted,
        DealState.MediationAccepted,
        DealState.MediationRejected,
        DealState.TimeoutAgree,
        DealState.TimeoutSubmitResults,
        DealState.TimeoutJudgeResults,
        DealState.TimeoutMediateResults,
    }
)

#: the states in which the RP's result was delivered and it is paid for the job (accepted by the
#: client or a mediator, or the judge timeout ran): the metrics' "wrong result accepted" when the
#: result was fake, and what several mechanisms charge or credit (fees, taxes, reputation, ...)
PAID_STATES = frozenset(
    {DealState.ResultsAccepted, DealState.MediationAccepted, DealState.TimeoutJudgeResults}
)


class ExecMode(enum.IntEnum):
    """How an RP produces (or does not produce) a deal's result."""

    Pending = -1
    Honest = 0
    Cheat = 1
    Inflate = 2
    Skip = 3


class CallRejected(RuntimeError):
    """A call that the contracts would revert for an ordinary reason (state, time, funds)."""


class Deal:
    """One deal: terms, agreement timestamps and twin bookkeeping. Amounts in wei."""

    __slots__ = (
        "index", "jc", "rp", "solver", "mediators", "module", "units",
        "instruction_price", "payment_collateral", "results_multiple", "mediation_fee",
        "agree_timeout", "submit_timeout", "judge_timeout", "mediate_timeout",
        "submit_collateral", "judge_collateral",
        "job_offer", "resource_offer",
        "state", "rp_agreed_at", "jc_agreed_at", "created_at", "agreed_at", "submitted_at",
        "accepted_at", "checked_at", "mediation_accepted_at", "mediation_rejected_at",
        "timeout_agree_at", "timeout_submit_at", "timeout_judge_at", "timeout_mediate_at",
        "mode", "units_reported", "correct", "failed", "ready_at", "exec_cost", "decided_tick",
        "mediator", "verdict_at", "collusive", "bribe", "mediation_cost", "stuck", "ended_at",
        "cheated", "checked", "slash_to", "slashed", "forced_error", "voters",
        "results_up_front", "results_held", "slash_unpaid", "late_withheld", "verification", "flagged",
    )  # fmt: skip

    def __init__(self, index: int, jc: int, rp: int, solver: int, mediators: tuple[int, ...], module: int,
                 units: int, instruction_price: int, payment_collateral: int, results_multiple: int,
                 mediation_fee: int, timeouts: tuple[int, int, int, int], submit_collateral: int,
                 judge_collateral: int, job_offer: int, resource_offer: int, created_at: int) -> None:  # fmt: skip
        self.index = index
        self.jc, self.rp, self.solver, self.mediators = jc, rp, solver, mediators
        self.module, self.units = module, units
        self.instruction_price = instruction_price
        self.payment_collateral = payment_collateral
        self.results_multiple = results_multiple
        self.mediation_fee = mediation_fee
        self.agree_timeout, self.submit_timeout, self.judge_timeout, self.mediate_timeout = timeouts
        self.submit_collateral, self.judge_collateral = submit_collateral, judge_collateral
        self.job_offer, self.resource_offer = job_offer, resource_offer
        self.state = DealState.DealNegotiating
        self.created_at = created_at
        self.rp_agreed_at = self.jc_agreed_at = self.agreed_at = self.submitted_at = 0
        self.accepted_at = self.checked_at = self.mediation_accepted_at = (
            self.mediation_rejected_at
        ) = 0
        self.timeout_agree_at = self.timeout_submit_at = self.timeout_judge_at = (
            self.timeout_mediate_at
        ) = 0
        self.mode = ExecMode.Pending
        self.units_reported = 0
        self.correct = False
        self.failed = False
        self.ready_at = -1
        self.exec_cost = 0
        self.decided_tick = -1
        self.mediator = -1
        self.verdict_at = -1
        self.collusive = False
        self.bribe = 0
        self.mediation_cost = 0
        self.stuck = False
        self.ended_at = -1
        self.cheated = False
        self.checked = False
        self.slash_to = -1  # where this deal's slashed collateral goes (-1: the protocol's default)
        self.slashed = 0  # wei slashed from this deal's parties so far
        self.forced_error = False  # a wrong result the protocol forced (taxes and jackpots)
        #: mediators the verdict paid (consortium mediation: every voter, or the majority voters,
        #: in draw order; v1 leaves it empty: the one mediator is ``mediator``)
        self.voters: tuple[int, ...] = ()
        # collateral variants (twin.mechanisms.collateral); all 0 in v1
        self.results_up_front = 0  # results collateral the RP posts at agree (v1: none)
        self.results_held = 0  # results collateral this deal holds in the RP's escrow now
        self.slash_unpaid = 0  # results collateral owed by a slashing that a short pool lacked
        self.late_withheld = 0  # payment withheld for a late result (refunded to the JC)
        # verification (twin.mechanisms.verification): how a check is done; None: v1 replication
        self.verification = None
        self.flagged = False  # a mediator flagged the job as non-deterministic (Modicum)

    # -- derived amounts ---------------------------------------------------------------------
    @property
    def job_cost(self) -> int:
        """C = instructionPrice * reported instruction count."""
        return self.instruction_price * self.units_reported

    @property
    def payment(self) -> int:
        """What the RP is paid: min(C, P), less what a late result forfeits (0 in v1)."""
        return min(self.job_cost, self.payment_collateral) - self.late_withheld

    @property
    def results_collateral(self) -> int:
        """R = m * C."""
        return self.results_multiple * self.job_cost

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    def agreement(self) -> dict[str, int]:
        """The v1 ``Agreement`` struct (field order as on chain)."""
        return {
            "state": int(self.state), "resourceProviderAgreedAt": self.rp_agreed_at,
            "jobCreatorAgreedAt": self.jc_agreed_at, "dealCreatedAt": self.created_at,
            "dealAgreedAt": self.agreed_at, "resultsSubmittedAt": self.submitted_at,
            "resultsAcceptedAt": self.accepted_at, "resultsCheckedAt": self.checked_at,
            "mediationAcceptedAt": self.mediation_accepted_at, "mediationRejectedAt": self.mediation_rejected_at,
            "timeoutAgreeAt": self.timeout_agree_at, "timeoutSubmitResultsAt": self.timeout_submit_at,
            "timeoutJudgeResultsAt": self.timeout_judge_at, "timeoutMediateResultsAt": self.timeout_mediate_at,
        }  # fmt: skip


class DealFlows:
    """Performs the v1 calls on deals: state checks, token movements and events.

    ``slash_to`` is the account that receives slashed collateral (v1: the protocol owner).

    Results collateral: a deal's RP holds ``d.results_held`` of it in escrow. In v1 that is 0 until
    ``addResult`` and ``R = m*C`` from then on; the collateral variants
    (:mod:`twin.mechanisms.collateral`) post ``d.results_up_front`` at the RP's ``agree`` (settled
    to the posted amount at ``addResult``) and, with ``pool`` set, post a share of ``R`` and let a
    slashing draw on the node's other deals. With ``results_up_front = 0`` and no pool, every call
    moves exactly the v1 amounts and emits exactly the v1 events.
    """

    def __init__(self, ledger: Ledger, log: EventLog, rules: ProtocolRules, slash_to: int) -> None:
        self.ledger, self.log, self.rules, self.slash_to = ledger, log, rules, slash_to
        #: deals that became terminal or stuck since the market last settled (drained by it)
        self.ended: list[Deal] = []
        #: collateral pooling across a node's deals (``posted(d)``, ``draws(d)``); None: v1
        self.pool = None

    def results_posted(self, d: Deal) -> int:
        """Results collateral the deal holds once its result is in (v1: ``R = m*C``)."""
        return d.results_collateral if self.pool is None else self.pool.posted(d)

    # -- primitive movements (zero amounts move nothing and emit nothing) ---------------------
    # (events appended as EventLog.payment / state_change rows, without the extra call)
    def _in(self, t: int, d: Deal, who: int, amount: int, reason: int) -> None:
        if amount:
            self.ledger.pay_in(who, amount)
            self.log.rows.append(
                (_PAYMENT, t, d.index, who, amount, int(reason), _PAID_IN, who, who)
            )

    def _refund(self, t: int, d: Deal, who: int, amount: int, reason: int) -> None:
        if amount:
            self.ledger.refund(who, amount)
            self.log.rows.append(
                (_PAYMENT, t, d.index, who, amount, int(reason), _REFUNDED, who, who)
            )

    def _out(self, t: int, d: Deal, payee: int, amount: int, reason: int) -> None:
        if amount:
            jc = d.jc
            self.ledger.pay_out(jc, payee, amount)
            self.log.rows.append(
                (_PAYMENT, t, d.index, payee, amount, int(reason), _PAID_OUT, jc, payee)
            )

    def _slash(self, t: int, d: Deal, who: int, amount: int, reason: int) -> None:
        if amount:
            dst = self.slash_to if d.slash_to < 0 else d.slash_to
            self.ledger.pay_out(who, dst, amount)
            d.slashed += amount
            self.log.rows.append(
                (_PAYMENT, t, d.index, who, amount, int(reason), _SLASHED, who, dst)
            )

    def _set(self, t: int, d: Deal, state: DealState) -> None:
        d.state = state
        if state in TERMINAL_STATES:
            d.ended_at = t
            self.ended.append(d)
        self.log.rows.append((_STATE_CHANGE, t, d.index, int(state)))

    @staticmethod
    def _need(d: Deal, state: DealState, call: str) -> None:
        if d.state != state:
            raise CallRejected(f"{call}: deal {d.index} is {d.state.name}, needs {state.name}")

    # -- atomicity -----------------------------------------------------------------------------
    def _atomic(self, t: int, d: Deal, call: str, caller: int, moves) -> bool:
        """Run the token movements ``moves()`` of one call as a transaction: if a balance
        underflows (possible only where a preset's defect lets one deal drain another's pooled
        escrow), every movement of the call is undone, its events are dropped, and the call is
        recorded as reverted -- as a reverted transaction on chain."""
        mark, slashed = len(self.log.rows), d.slashed
        try:
            moves()
            return True
        except InsufficientFunds as e:
            self._rollback(mark)
            d.slashed = slashed
            self._revert(t, d, call, caller, f"escrow underflow: {e}")
            return False

    def _rollback(self, mark: int) -> None:
        rows = self.log.rows
        for r in reversed(rows[mark:]):
            if r[0] != 1:  # only Payment rows move tokens inside a call
                continue
            payee, amount, direction, src, dst = r[3], r[4], r[6], r[7], r[8]
            if direction == D.PaidIn:
                self.ledger.refund(payee, amount)
            elif direction == D.Refunded:
                self.ledger.pay_in(payee, amount)
            else:  # PaidOut / Slashed: dst's wallet back into src's escrow
                self.ledger.transfer(dst, src, amount)
                self.ledger.pay_in(src, amount)
        del rows[mark:]

    # -- calls ----------------------------------------------------------------------------------
    def agree(self, t: int, d: Deal, party: int) -> None:
        """``agree`` by the JC or the RP. Deposits: RP ``Ts``; JC ``P + Tj``."""
        self._need(d, DealState.DealNegotiating, "agree")
        if party == d.rp:
            if d.rp_agreed_at:
                raise CallRejected(f"agree: RP already agreed to deal {d.index}")
            if not self.ledger.can_pay_in(party, d.submit_collateral + d.results_up_front):
                raise CallRejected(f"agree: RP {party} cannot deposit Ts for deal {d.index}")
        elif party == d.jc:
            if d.jc_agreed_at:
                raise CallRejected(f"agree: JC already agreed to deal {d.index}")
            if not self.ledger.can_pay_in(party, d.payment_collateral + d.judge_collateral):
                raise CallRejected(f"agree: JC {party} cannot deposit P + Tj for deal {d.index}")
        else:
            raise CallRejected(f"agree: account {party} is not a party of deal {d.index}")
        if not d.rp_agreed_at and not d.jc_agreed_at:
            d.created_at = t
            self.log.state_change(t, d.index, int(DealState.DealNegotiating))
        if party == d.rp:
            self._in(t, d, d.rp, d.submit_collateral, R.TimeoutCollateral)
            self._in(t, d, d.rp, d.results_up_front, R.ResultsCollateral)
            d.results_held = d.results_up_front
            d.rp_agreed_at = t
        else:
            self._in(t, d, d.jc, d.payment_collateral, R.PaymentCollateral)
            self._in(t, d, d.jc, d.judge_collateral, R.TimeoutCollateral)
            d.jc_agreed_at = t
        if d.rp_agreed_at and d.jc_agreed_at:
            d.agreed_at = t
            self._set(t, d, DealState.DealAgreed)

    def add_result(self, t: int, d: Deal) -> None:
        """``addResult`` by the RP: deposits ``R = m*C``, gets ``Ts`` back. Collateral posted up
        front is settled here: the RP tops it up to the amount due, or is refunded the excess."""
        self._need(d, DealState.DealAgreed, "addResult")
        due = self.results_posted(d)
        top_up = due - d.results_held
        if not self.ledger.can_pay_in(d.rp, max(0, top_up)):
            raise CallRejected(f"addResult: RP {d.rp} cannot deposit R for deal {d.index}")

        def moves() -> None:
            if top_up >= 0:
                self._in(t, d, d.rp, top_up, R.ResultsCollateral)
            else:
                self._refund(t, d, d.rp, -top_up, R.ResultsCollateral)
            self._refund(t, d, d.rp, d.submit_collateral, R.TimeoutCollateral)

        if self._atomic(t, d, "addResult", d.rp, moves):
            d.results_held = due
            d.submitted_at = t
            self._set(t, d, DealState.ResultsSubmitted)

    def accept_result(self, t: int, d: Deal) -> bool:
        """``acceptResult`` by the JC: RP paid min(C,P); JC refunded the rest of P and Tj."""
        self._need(d, DealState.ResultsSubmitted, "acceptResult")
        pay = d.payment

        def moves() -> None:
            self._out(t, d, d.rp, pay, R.JobPayment)
            self._refund(t, d, d.jc, d.payment_collateral - pay, R.PaymentCollateral)
            self._refund(t, d, d.jc, d.judge_collateral, R.TimeoutCollateral)
            self._refund(t, d, d.rp, d.results_held, R.ResultsCollateral)

        if not self._atomic(t, d, "acceptResult", d.jc, moves):
            return False
        d.results_held = 0
        d.accepted_at = t
        self._set(t, d, DealState.ResultsAccepted)
        return True

    def check_result(self, t: int, d: Deal, mediator: int) -> bool:
        """``checkResult`` by the JC: Tj refunded, fee F deposited, ``mediator`` requested."""
        self._need(d, DealState.ResultsSubmitted, "checkResult")
        if self.ledger.wallet[d.jc] + d.judge_collateral < d.mediation_fee:
            raise CallRejected(f"checkResult: JC {d.jc} cannot deposit F for deal {d.index}")

        def moves() -> None:
            self._refund(t, d, d.jc, d.judge_collateral, R.TimeoutCollateral)
            self._in(t, d, d.jc, d.mediation_fee, R.MediationFee)

        if not self._atomic(t, d, "checkResult", d.jc, moves):
            return False
        d.checked_at = t
        d.checked = True
        d.mediator = mediator
        self._set(t, d, DealState.ResultsChecked)
        self.log.mediation_requested(t, d.index, mediator)
        return True

    def mediation_accept(self, t: int, d: Deal) -> bool:
        self._need(d, DealState.ResultsChecked, "mediationAcceptResult")
        pay = d.payment

        def moves() -> None:
            self._out(t, d, d.rp, pay, R.JobPayment)
            self._out(t, d, d.mediator, d.mediation_fee, R.MediationFee)
            self._refund(t, d, d.jc, d.payment_collateral - pay, R.PaymentCollateral)
            self._refund(t, d, d.rp, d.results_held, R.ResultsCollateral)

        if not self._atomic(t, d, "mediationAcceptResult", d.mediator, moves):
            return False
        d.results_held = 0
        d.mediation_accepted_at = t
        self._set(t, d, DealState.MediationAccepted)
        return True

    def mediation_reject(self, t: int, d: Deal) -> bool:
        """The RP's results collateral is slashed. With a pool, the slashing takes ``R`` from the
        node's pool (this deal's share, then shares of its other open deals) up to what the pool
        holds; the rest is recorded in ``d.slash_unpaid``."""
        self._need(d, DealState.ResultsChecked, "mediationRejectResult")
        draws = self.pool.draws(d) if self.pool is not None else ()
        take = d.results_held + sum(w for _, w in draws)

        def moves() -> None:
            self._refund(t, d, d.jc, d.payment_collateral, R.PaymentCollateral)
            self._out(t, d, d.mediator, d.mediation_fee, R.MediationFee)
            self._slash(t, d, d.rp, take, R.ResultsCollateral)

        if not self._atomic(t, d, "mediationRejectResult", d.mediator, moves):
            return False
        for other, wei in draws:
            other.results_held -= wei
        d.slash_unpaid = max(0, d.results_collateral - take)
        d.results_held = 0
        d.mediation_rejected_at = t
        self._set(t, d, DealState.MediationRejected)
        return True

    # -- consortium mediation (twin.mediation.consortium; v1's calls above stay as they are) -----
    def request_mediators(self, t: int, d: Deal, mediators: Sequence[int]) -> None:
        """Ask more mediators to vote on a checked deal: one ``MediationRequested`` each, in
        draw order (the rest of a consortium's first round after ``checkResult``, or a new round
        of recursive mediation). Nothing moves."""
        if not mediators:
            return
        self._need(d, DealState.ResultsChecked, "requestMediators")
        for m in mediators:
            self.log.mediation_requested(t, d.index, m)

    def mediation_verdict(
        self, t: int, d: Deal, accept: bool, fee_payees: Sequence[tuple[int, int]]
    ) -> bool:
        """A consortium's verdict: v1's ``mediationAcceptResult`` / ``mediationRejectResult``
        flows with the fee ``F`` paid in shares, one ``Payment(payee, share, MediationFee,
        PaidOut)`` per ``(payee, share)`` of ``fee_payees`` in order, where v1 pays ``F`` to its
        one mediator. The shares must sum to ``F``. Atomic like every call; with a single payee
        the events are exactly v1's."""
        call = "mediationAcceptResult" if accept else "mediationRejectResult"
        self._need(d, DealState.ResultsChecked, call)
        if sum(w for _, w in fee_payees) != d.mediation_fee or any(w < 0 for _, w in fee_payees):
            raise ValueError(
                f"{call}: fee shares {list(fee_payees)} do not split F = {d.mediation_fee}"
            )
        pay = d.payment
        draws = self.pool.draws(d) if (self.pool is not None and not accept) else ()
        take = d.results_held + sum(w for _, w in draws)

        def moves() -> None:
            if accept:
                self._out(t, d, d.rp, pay, R.JobPayment)
                for payee, share in fee_payees:
                    self._out(t, d, payee, share, R.MediationFee)
                self._refund(t, d, d.jc, d.payment_collateral - pay, R.PaymentCollateral)
                self._refund(t, d, d.rp, d.results_held, R.ResultsCollateral)
            else:
                self._refund(t, d, d.jc, d.payment_collateral, R.PaymentCollateral)
                for payee, share in fee_payees:
                    self._out(t, d, payee, share, R.MediationFee)
                self._slash(t, d, d.rp, take, R.ResultsCollateral)

        if not self._atomic(t, d, call, d.mediator, moves):
            return False
        if accept:
            d.mediation_accepted_at = t
            d.results_held = 0
            self._set(t, d, DealState.MediationAccepted)
        else:  # as mediation_reject: pooled collateral draws, shortfall recorded
            for other, wei in draws:
                other.results_held -= wei
            d.slash_unpaid = max(0, d.results_collateral - take)
            d.results_held = 0
            d.mediation_rejected_at = t
            self._set(t, d, DealState.MediationRejected)
        return True

    # -- timeouts (pull-based; strict: callable only when now > start + window) -----------------
    def timeout_deadline(self, d: Deal) -> int | None:
        """Last second at which the current state's timeout is *not* yet callable (None: none)."""
        s = d.state
        if s == DealState.DealNegotiating:
            return d.created_at + d.agree_timeout
        if s == DealState.DealAgreed:
            return d.agreed_at + d.submit_timeout
        if s == DealState.ResultsSubmitted:
            return d.submitted_at + d.judge_timeout
        if s == DealState.ResultsChecked:
            if self.rules.mediate_timeout_from_submission:
                return d.submitted_at + d.judge_timeout
            return d.checked_at + d.mediate_timeout
        return None

    def _check_window(self, t: int, d: Deal, call: str) -> None:
        deadline = self.timeout_deadline(d)
        if deadline is None or not t > deadline:
            raise CallRejected(
                f"{call}: deal {d.index} timeout not reached (now {t}, deadline {deadline})"
            )

    def timeout_agree(self, t: int, d: Deal, caller: int) -> bool:
        """Refunds whoever had agreed. Deployed defect 2: a lone JC gets ``P + Ts`` (not ``P + Tj``)
        from its pooled escrow, which reverts when that escrow holds less; when ``Ts < Tj`` the
        ``Tj - Ts`` left in its escrow belongs to no deal and is locked for good; when ``Ts > Tj``
        the refund may take escrow that a stuck deal had locked, and locked shrinks with it."""
        self._need(d, DealState.DealNegotiating, "timeoutAgree")
        self._check_window(t, d, "timeoutAgree")
        if d.rp_agreed_at and d.jc_agreed_at:
            raise CallRejected(f"timeoutAgree: deal {d.index} was agreed")
        defect = self.rules.timeout_agree_refunds_ts

        def moves() -> None:
            if d.rp_agreed_at:
                self._refund(t, d, d.rp, d.submit_collateral, R.TimeoutCollateral)
                self._refund(t, d, d.rp, d.results_held, R.ResultsCollateral)
            if d.jc_agreed_at:
                self._refund(t, d, d.jc, d.payment_collateral, R.PaymentCollateral)
                second = d.submit_collateral if defect else d.judge_collateral
                self._refund(t, d, d.jc, second, R.TimeoutCollateral)

        if not self._atomic(t, d, "timeoutAgree", caller, moves):
            return False
        if defect and d.jc_agreed_at and not d.rp_agreed_at:
            led = self.ledger
            if d.judge_collateral > d.submit_collateral:
                # the JC's Tj - Ts stays in its pooled escrow, held by no deal: locked for good
                led.lock(d.jc, d.judge_collateral - d.submit_collateral)
            elif led.locked[d.jc] > led.escrow[d.jc]:
                # Ts > Tj took escrow already counted locked (a stuck deal's): less is left
                led.lock(d.jc, led.escrow[d.jc] - led.locked[d.jc])
        d.results_held = 0
        d.timeout_agree_at = t
        self._set(t, d, DealState.TimeoutAgree)
        return True

    def timeout_submit(self, t: int, d: Deal, caller: int) -> bool:
        self._need(d, DealState.DealAgreed, "timeoutSubmitResult")
        self._check_window(t, d, "timeoutSubmitResult")
        if self.rules.submit_and_judge_timeouts_revert:
            return self._revert(
                t, d, "timeoutSubmitResult", caller, "calls a payments function that does not exist"
            )

        def moves() -> None:
            self._refund(t, d, d.jc, d.payment_collateral, R.PaymentCollateral)
            self._refund(t, d, d.jc, d.judge_collateral, R.TimeoutCollateral)
            self._slash(t, d, d.rp, d.submit_collateral, R.TimeoutCollateral)
            self._refund(t, d, d.rp, d.results_held, R.ResultsCollateral)  # posted up front

        if not self._atomic(t, d, "timeoutSubmitResult", caller, moves):
            return False
        d.results_held = 0
        d.timeout_submit_at = t
        self._set(t, d, DealState.TimeoutSubmitResults)
        return True

    def timeout_judge(self, t: int, d: Deal, caller: int) -> bool:
        """Intended v1: a judge timeout is an acceptance, and the JC's Tj is slashed."""
        self._need(d, DealState.ResultsSubmitted, "timeoutJudgeResult")
        self._check_window(t, d, "timeoutJudgeResult")
        if self.rules.submit_and_judge_timeouts_revert:
            return self._revert(
                t, d, "timeoutJudgeResult", caller, "calls a payments function that does not exist"
            )
        pay = d.payment

        def moves() -> None:
            self._out(t, d, d.rp, pay, R.JobPayment)
            self._refund(t, d, d.jc, d.payment_collateral - pay, R.PaymentCollateral)
            self._refund(t, d, d.rp, d.results_held, R.ResultsCollateral)
            self._slash(t, d, d.jc, d.judge_collateral, R.TimeoutCollateral)

        if not self._atomic(t, d, "timeoutJudgeResult", caller, moves):
            return False
        d.results_held = 0
        d.timeout_judge_at = t
        self._set(t, d, DealState.TimeoutJudgeResults)
        return True

    def timeout_mediate(self, t: int, d: Deal, caller: int) -> bool:
        self._need(d, DealState.ResultsChecked, "timeoutMediateResult")
        self._check_window(t, d, "timeoutMediateResult")

        def moves() -> None:
            self._refund(t, d, d.rp, d.results_held, R.ResultsCollateral)
            self._refund(t, d, d.jc, d.payment_collateral, R.PaymentCollateral)
            self._refund(t, d, d.jc, d.mediation_fee, R.MediationFee)

        if not self._atomic(t, d, "timeoutMediateResult", caller, moves):
            return False
        d.results_held = 0
        d.timeout_mediate_at = t
        self._set(t, d, DealState.TimeoutMediateResults)
        return True

    def _revert(self, t: int, d: Deal, call: str, caller: int, reason: str) -> bool:
        """A call the preset's contracts revert: log it; the deal's escrow is locked for good."""
        self.log.reverted(t, d.index, call, caller, reason)
        if not d.stuck:
            d.stuck = True
            for who, amount in self.escrow_held(d).items():
                free = self.ledger.escrow[who] - self.ledger.locked[who]
                self.ledger.lock(who, max(0, min(amount, free)))
            self.ended.append(d)
        return False

    @staticmethod
    def escrow_held(d: Deal) -> dict[int, int]:
        """Escrow that the deal holds per party in its current state (intended accounting)."""
        s = d.state
        held: dict[int, int] = {}

        def add(who: int, amount: int) -> None:
            if amount:
                held[who] = held.get(who, 0) + amount

        if s == DealState.DealNegotiating:
            if d.rp_agreed_at:
                add(d.rp, d.submit_collateral + d.results_held)
            if d.jc_agreed_at:
                add(d.jc, d.payment_collateral + d.judge_collateral)
        elif s == DealState.DealAgreed:
            add(d.rp, d.submit_collateral + d.results_held)
            add(d.jc, d.payment_collateral + d.judge_collateral)
        elif s == DealState.ResultsSubmitted:
            add(d.rp, d.results_held)
            add(d.jc, d.payment_collateral + d.judge_collateral)
        elif s == DealState.ResultsChecked:
            add(d.rp, d.results_held)
            add(d.jc, d.payment_collateral + d.mediation_fee)
        return held


__all__ = [
    "CallRejected",
    "Deal",
    "DealFlows",
    "DealState",
    "ExecMode",
    "InsufficientFunds",
    "TERMINAL_STATES",
]
