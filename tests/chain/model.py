"""A reference model of docs/protocol-flows.md for the chain tests: given a call, the caller and
the block timestamp, it predicts whether the contracts accept it (and which custom error they
raise otherwise, checks in the controller's order), the exact protocol events, and every party's
wallet and escrow afterwards."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from eth_utils import keccak

from bridge.types import (
    AgreementState as S,
)
from bridge.types import (
    DealStateChange,
    DealTerms,
    MediationRequested,
    Payment,
    ProtocolEvent,
)
from bridge.types import (
    PaymentDirection as D,
)
from bridge.types import (
    PaymentReason as R,
)

MAX_UINT40 = 2**40 - 1
MAX_UINT64 = 2**64 - 1
MAX_UINT128 = 2**128 - 1


class Rejected(Exception):
    """The contracts revert with custom error `name`."""

    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


def choose_mediator(timestamp: int, deal_id: str, mediators: tuple[str, ...]) -> str:
    """v1: mediators[keccak256(abi.encodePacked(uint256 timestamp, dealId)) % len]."""
    digest = keccak(timestamp.to_bytes(32, "big") + deal_id.encode())
    return mediators[int.from_bytes(digest, "big") % len(mediators)]


def job_cost(t: DealTerms, n: int) -> int:
    return t.instruction_price_wei * n


@dataclass
class DealModel:
    terms: DealTerms
    state: S = S.DealNegotiating
    rp_agreed: bool = False
    jc_agreed: bool = False
    created_at: int = 0
    agreed_at: int = 0
    submitted_at: int = 0
    checked_at: int = 0
    n: int = 0
    mediator: str | None = None
    jc_held: int = 0
    rp_held: int = 0

    @property
    def cost(self) -> int:
        return job_cost(self.terms, self.n)

    @property
    def pay(self) -> int:
        return min(self.cost, self.terms.payment_collateral_wei)

    @property
    def r(self) -> int:
        return self.terms.results_collateral_multiple * self.cost


@dataclass
class Model:
    """Wallets, escrow (locked by deals + free) and deals; `slash_to` receives slashes."""

    wallet: dict[str, int]
    slash_to: str
    locked: dict[str, int] = field(default_factory=dict)
    free: dict[str, int] = field(default_factory=dict)
    deals: dict[str, DealModel] = field(default_factory=dict)

    def escrow(self, who: str) -> int:
        return self.locked.get(who, 0) + self.free.get(who, 0)

    # ---------------------------------------------------------------- movements
    def _in(self, ev, d: DealModel, who: str, amount: int, reason: R) -> None:
        if amount == 0:
            return
        if self.wallet.get(who, 0) < amount:
            raise Rejected("ERC20InsufficientBalance")
        self.wallet[who] -= amount
        self.locked[who] = self.locked.get(who, 0) + amount
        ev.append(Payment(d.terms.deal_id, who, amount, reason, D.PaidIn))

    def _release(self, ev, d, frm: str, to: str, payee: str, amount: int, reason, direction):
        if amount == 0:
            return
        assert self.locked.get(frm, 0) >= amount, "model: escrow underflow"
        self.locked[frm] -= amount
        self.wallet[to] = self.wallet.get(to, 0) + amount
        ev.append(Payment(d.terms.deal_id, payee, amount, reason, direction))

    def _refund(self, ev, d, who, amount, reason):
        self._release(ev, d, who, who, who, amount, reason, D.Refunded)

    def _out(self, ev, d, payee, amount, reason):
        self._release(ev, d, d.terms.job_creator, payee, payee, amount, reason, D.PaidOut)

    def _slash(self, ev, d, who, amount, reason):
        self._release(ev, d, who, self.slash_to, who, amount, reason, D.Slashed)

    # -------------------------------------------------------------------- calls
    def apply(self, call: str, caller: str, now: int, *args) -> list[ProtocolEvent]:
        """Runs `call` on a copy; commits and returns the events, or raises Rejected."""
        trial = copy.deepcopy(self)
        events = getattr(trial, "_" + call)(caller, now, *args)
        self.__dict__.update(trial.__dict__)
        return events

    def _load(self, deal_id: str) -> DealModel:
        d = self.deals.get(deal_id)
        if d is None:
            raise Rejected("DealNotFound")
        return d

    @staticmethod
    def _state(d: DealModel, expected: S) -> None:
        if d.state != expected:
            raise Rejected("WrongState")

    @staticmethod
    def _timeout(now: int, start: int, timeout: int) -> None:
        if not now > start + timeout:
            raise Rejected("TimeoutNotReached")

    @staticmethod
    def _validate(t: DealTerms) -> None:
        zero = "0x" + "00" * 20
        if t.solver == zero or t.job_creator == zero or t.resource_provider == zero:
            raise Rejected("MissingMember")
        if t.job_creator == t.resource_provider:
            raise Rejected("SameJobCreatorAndResourceProvider")
        if not t.mediators:
            raise Rejected("MissingMember")
        if t.agree_collateral_wei:
            raise Rejected("NonZeroAgreeCollateral")
        if t.mediate_results_collateral_wei:
            raise Rejected("NonZeroMediateCollateral")
        timeouts = (t.agree_timeout_s, t.submit_results_timeout_s, t.judge_results_timeout_s,
                    t.mediate_results_timeout_s)  # fmt: skip
        if any(v > MAX_UINT40 for v in timeouts):
            raise Rejected("ValueTooLarge")
        amounts = (t.submit_results_collateral_wei, t.judge_results_collateral_wei,
                   t.instruction_price_wei, t.payment_collateral_wei,
                   t.results_collateral_multiple, t.mediation_fee_wei)  # fmt: skip
        if any(v > MAX_UINT128 for v in amounts):
            raise Rejected("ValueTooLarge")

    def _agree(self, caller: str, now: int, terms: DealTerms) -> list:
        by_rp = caller == terms.resource_provider
        if not by_rp and caller != terms.job_creator:
            raise Rejected("NotParty")
        self._validate(terms)
        ev: list = []
        d = self.deals.get(terms.deal_id)
        first = d is None
        if first:
            d = DealModel(terms, created_at=now)
            self.deals[terms.deal_id] = d
            ev.append(DealStateChange(terms.deal_id, S.DealNegotiating))
        else:
            self._state(d, S.DealNegotiating)
            if d.terms != terms:
                raise Rejected("TermsMismatch")
            if d.rp_agreed if by_rp else d.jc_agreed:
                raise Rejected("AlreadyAgreed")
        t = d.terms
        if by_rp:
            d.rp_agreed = True
            self._in(ev, d, caller, t.submit_results_collateral_wei, R.TimeoutCollateral)
            d.rp_held += t.submit_results_collateral_wei
        else:
            d.jc_agreed = True
            self._in(ev, d, caller, t.payment_collateral_wei, R.PaymentCollateral)
            self._in(ev, d, caller, t.judge_results_collateral_wei, R.TimeoutCollateral)
            d.jc_held += t.payment_collateral_wei + t.judge_results_collateral_wei
        if not first:
            d.state = S.DealAgreed
            d.agreed_at = now
            ev.append(DealStateChange(t.deal_id, S.DealAgreed))
        return ev

    def _addResult(self, caller, now, deal_id, n) -> list:
        d = self._load(deal_id)
        t = d.terms
        if caller != t.resource_provider:
            raise Rejected("NotResourceProvider")
        self._state(d, S.DealAgreed)
        if n > MAX_UINT64:
            raise Rejected("ValueTooLarge")
        d.n = n
        ev: list = []
        self._in(ev, d, caller, d.r, R.ResultsCollateral)
        self._refund(ev, d, caller, t.submit_results_collateral_wei, R.TimeoutCollateral)
        d.rp_held += d.r - t.submit_results_collateral_wei
        d.state, d.submitted_at = S.ResultsSubmitted, now
        ev.append(DealStateChange(deal_id, d.state))
        return ev

    def _acceptResult(self, caller, now, deal_id) -> list:
        d = self._load(deal_id)
        t = d.terms
        if caller != t.job_creator:
            raise Rejected("NotJobCreator")
        self._state(d, S.ResultsSubmitted)
        ev: list = []
        self._out(ev, d, t.resource_provider, d.pay, R.JobPayment)
        self._refund(ev, d, t.job_creator, t.payment_collateral_wei - d.pay, R.PaymentCollateral)
        self._refund(ev, d, t.job_creator, t.judge_results_collateral_wei, R.TimeoutCollateral)
        self._refund(ev, d, t.resource_provider, d.r, R.ResultsCollateral)
        return self._close(ev, d, S.ResultsAccepted)

    def _checkResult(self, caller, now, deal_id) -> list:
        d = self._load(deal_id)
        t = d.terms
        if caller != t.job_creator:
            raise Rejected("NotJobCreator")
        self._state(d, S.ResultsSubmitted)
        ev: list = []
        self._refund(ev, d, caller, t.judge_results_collateral_wei, R.TimeoutCollateral)
        self._in(ev, d, caller, t.mediation_fee_wei, R.MediationFee)
        d.jc_held += t.mediation_fee_wei - t.judge_results_collateral_wei
        d.state, d.checked_at = S.ResultsChecked, now
        d.mediator = choose_mediator(now, deal_id, t.mediators)
        ev.append(DealStateChange(deal_id, d.state))
        ev.append(MediationRequested(deal_id, d.mediator))
        return ev

    def _mediate(self, caller, deal_id, accept: bool) -> list:
        d = self.deals.get(deal_id)
        if d is None or d.mediator is None or caller != d.mediator:
            raise Rejected("NotMediator")
        self._state(d, S.ResultsChecked)
        t = d.terms
        ev: list = []
        if accept:
            self._out(ev, d, t.resource_provider, d.pay, R.JobPayment)
            self._out(ev, d, caller, t.mediation_fee_wei, R.MediationFee)
            self._refund(
                ev, d, t.job_creator, t.payment_collateral_wei - d.pay, R.PaymentCollateral
            )
            self._refund(ev, d, t.resource_provider, d.r, R.ResultsCollateral)
            return self._close(ev, d, S.MediationAccepted)
        self._refund(ev, d, t.job_creator, t.payment_collateral_wei, R.PaymentCollateral)
        self._out(ev, d, caller, t.mediation_fee_wei, R.MediationFee)
        self._slash(ev, d, t.resource_provider, d.r, R.ResultsCollateral)
        return self._close(ev, d, S.MediationRejected)

    def _mediationAcceptResult(self, caller, now, deal_id) -> list:
        return self._mediate(caller, deal_id, True)

    def _mediationRejectResult(self, caller, now, deal_id) -> list:
        return self._mediate(caller, deal_id, False)

    def _party(self, d: DealModel, caller: str) -> None:
        if caller not in (d.terms.job_creator, d.terms.resource_provider):
            raise Rejected("NotParty")

    def _timeoutAgree(self, caller, now, deal_id) -> list:
        d = self._load(deal_id)
        t = d.terms
        self._party(d, caller)
        self._state(d, S.DealNegotiating)
        self._timeout(now, d.created_at, t.agree_timeout_s)
        ev: list = []
        if d.rp_agreed:
            self._refund(
                ev, d, t.resource_provider, t.submit_results_collateral_wei, R.TimeoutCollateral
            )
        if d.jc_agreed:
            self._refund(ev, d, t.job_creator, t.payment_collateral_wei, R.PaymentCollateral)
            self._refund(ev, d, t.job_creator, t.judge_results_collateral_wei, R.TimeoutCollateral)
        return self._close(ev, d, S.TimeoutAgree)

    def _timeoutSubmitResult(self, caller, now, deal_id) -> list:
        d = self._load(deal_id)
        t = d.terms
        if caller != t.job_creator:
            raise Rejected("NotJobCreator")
        self._state(d, S.DealAgreed)
        self._timeout(now, d.agreed_at, t.submit_results_timeout_s)
        ev: list = []
        self._refund(ev, d, t.job_creator, t.payment_collateral_wei, R.PaymentCollateral)
        self._refund(ev, d, t.job_creator, t.judge_results_collateral_wei, R.TimeoutCollateral)
        self._slash(
            ev, d, t.resource_provider, t.submit_results_collateral_wei, R.TimeoutCollateral
        )
        return self._close(ev, d, S.TimeoutSubmitResults)

    def _timeoutJudgeResult(self, caller, now, deal_id) -> list:
        d = self._load(deal_id)
        t = d.terms
        if caller != t.resource_provider:
            raise Rejected("NotResourceProvider")
        self._state(d, S.ResultsSubmitted)
        self._timeout(now, d.submitted_at, t.judge_results_timeout_s)
        ev: list = []
        self._out(ev, d, t.resource_provider, d.pay, R.JobPayment)
        self._refund(ev, d, t.job_creator, t.payment_collateral_wei - d.pay, R.PaymentCollateral)
        self._refund(ev, d, t.resource_provider, d.r, R.ResultsCollateral)
        self._slash(ev, d, t.job_creator, t.judge_results_collateral_wei, R.TimeoutCollateral)
        return self._close(ev, d, S.TimeoutJudgeResults)

    def _timeoutMediateResult(self, caller, now, deal_id) -> list:
        d = self._load(deal_id)
        t = d.terms
        self._party(d, caller)
        self._state(d, S.ResultsChecked)
        self._timeout(now, d.checked_at, t.mediate_results_timeout_s)
        ev: list = []
        self._refund(ev, d, t.resource_provider, d.r, R.ResultsCollateral)
        self._refund(ev, d, t.job_creator, t.payment_collateral_wei, R.PaymentCollateral)
        self._refund(ev, d, t.job_creator, t.mediation_fee_wei, R.MediationFee)
        return self._close(ev, d, S.TimeoutMediateResults)

    def _close(self, ev: list, d: DealModel, state: S) -> list:
        d.state = state
        d.jc_held = d.rp_held = 0
        ev.append(DealStateChange(d.terms.deal_id, state))
        return ev

    # ------------------------------------------------------------- self escrow
    def _payEscrow(self, caller, now, amount) -> list:
        if self.wallet.get(caller, 0) < amount:
            raise Rejected("ERC20InsufficientBalance")
        self.wallet[caller] -= amount
        self.free[caller] = self.free.get(caller, 0) + amount
        return []

    def _withdrawEscrow(self, caller, now, amount) -> list:
        if self.free.get(caller, 0) < amount:
            raise Rejected("InsufficientFreeEscrow")
        self.free[caller] = self.free.get(caller, 0) - amount
        self.wallet[caller] = self.wallet.get(caller, 0) + amount
        return []

    def _transfer(self, caller, now, to, amount) -> list:
        if self.wallet.get(caller, 0) < amount:
            raise Rejected("ERC20InsufficientBalance")
        self.wallet[caller] -= amount
        self.wallet[to] = self.wallet.get(to, 0) + amount
        return []
