"""Python mirrors of the protocol's enums, structs and events (spec sections 2, 3 and 5)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum


class AgreementState(IntEnum):
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
        AgreementState.ResultsAccepted,
        AgreementState.MediationAccepted,
        AgreementState.MediationRejected,
        AgreementState.TimeoutAgree,
        AgreementState.TimeoutSubmitResults,
        AgreementState.TimeoutJudgeResults,
        AgreementState.TimeoutMediateResults,
    }
)


class PaymentReason(IntEnum):
    PaymentCollateral = 0
    ResultsCollateral = 1
    TimeoutCollateral = 2
    JobPayment = 3
    MediationFee = 4


class PaymentDirection(IntEnum):
    PaidIn = 0
    PaidOut = 1
    Refunded = 2
    Slashed = 3


class ServiceType(IntEnum):
    Solver = 0
    Mediator = 1
    ResourceProvider = 2
    JobCreator = 3


# Solidity enum name (ABI internalType "enum X") -> Python enum, to render decoded values.
ENUMS: dict[str, type[IntEnum]] = {
    "AgreementState": AgreementState,
    "PaymentReason": PaymentReason,
    "PaymentDirection": PaymentDirection,
    "ServiceType": ServiceType,
}


@dataclass(frozen=True)
class DealTerms:
    """The immutable terms of a deal (members, timeouts, pricing); amounts in base units."""

    deal_id: str
    solver: str
    job_creator: str
    resource_provider: str
    mediators: tuple[str, ...]
    agree_timeout_s: int = 3600
    submit_results_timeout_s: int = 3600
    judge_results_timeout_s: int = 3600
    mediate_results_timeout_s: int = 3600
    agree_collateral_wei: int = 0
    submit_results_collateral_wei: int = 10**18  # Ts
    judge_results_collateral_wei: int = 10**18  # Tj
    mediate_results_collateral_wei: int = 0
    instruction_price_wei: int = 10**18
    payment_collateral_wei: int = 2 * 10**18  # P
    results_collateral_multiple: int = 2  # m
    mediation_fee_wei: int = 10**18  # F

    def abi_args(self) -> tuple:
        """`(dealId, members, timeouts, pricing)` as the controller's `agree` takes them."""
        members = (self.solver, self.job_creator, self.resource_provider, list(self.mediators))
        timeouts = (
            (self.agree_timeout_s, self.agree_collateral_wei),
            (self.submit_results_timeout_s, self.submit_results_collateral_wei),
            (self.judge_results_timeout_s, self.judge_results_collateral_wei),
            (self.mediate_results_timeout_s, self.mediate_results_collateral_wei),
        )
        pricing = (
            self.instruction_price_wei,
            self.payment_collateral_wei,
            self.results_collateral_multiple,
            self.mediation_fee_wei,
        )
        return (self.deal_id, members, timeouts, pricing)

    @classmethod
    def from_abi(cls, deal: tuple | list) -> DealTerms:
        """From the `Deal` tuple returned by `getDeal`."""
        deal_id, members, timeouts, pricing = deal
        solver, jc, rp, mediators = members
        (at, ac), (st, sc), (jt, jcol), (mt, mc) = timeouts
        price, p, m, f = pricing
        return cls(deal_id, solver, jc, rp, tuple(mediators), at, st, jt, mt, ac, sc, jcol, mc,
                   price, p, m, f)  # fmt: skip


@dataclass(frozen=True)
class Agreement:
    """The `Agreement` struct of storage (unix seconds; 0 = not reached)."""

    state: AgreementState
    resource_provider_agreed_at: int
    job_creator_agreed_at: int
    deal_created_at: int
    deal_agreed_at: int
    results_submitted_at: int
    results_accepted_at: int
    results_checked_at: int
    mediation_accepted_at: int
    mediation_rejected_at: int
    timeout_agree_at: int
    timeout_submit_results_at: int
    timeout_judge_results_at: int
    timeout_mediate_results_at: int

    @classmethod
    def from_abi(cls, values: tuple | list) -> Agreement:
        state, *rest = values
        return cls(AgreementState(state), *rest)


@dataclass(frozen=True)
class Result:
    deal_id: str
    results_id: str
    data_id: str
    instruction_count: int


# ------------------------------------------------------------------ events (flows doc)


@dataclass(frozen=True)
class Payment:
    deal_id: str
    payee: str
    amount: int
    reason: PaymentReason
    direction: PaymentDirection


@dataclass(frozen=True)
class DealStateChange:
    deal_id: str
    state: AgreementState


@dataclass(frozen=True)
class MediationRequested:
    deal_id: str
    mediator: str


@dataclass(frozen=True)
class MediationVoted:
    """Consortium mediation option: a drawn mediator's vote (1 accept, 0 reject)."""

    deal_id: str
    mediator: str
    vote: int


@dataclass(frozen=True)
class TaxCollected:
    """Jackpot pool option: the job creator paid a tax on a paid job into the pool."""

    deal_id: str
    payer: str
    amount: int


@dataclass(frozen=True)
class JackpotPaid:
    """Jackpot pool option: the pool paid the job creator whose check caught a bad result."""

    deal_id: str
    payee: str
    amount: int


ProtocolEvent = (
    Payment | DealStateChange | MediationRequested | MediationVoted | TaxCollected | JackpotPaid
)


@dataclass(frozen=True)
class TxResult:
    """A mined, successful transaction and the protocol events it emitted, in log order."""

    function: str
    caller: str
    tx_hash: str
    block_number: int
    timestamp: int
    gas_used: int
    events: tuple[ProtocolEvent, ...] = field(default_factory=tuple)
