"""Typed events mirroring the Lilypad v1 contract events, and the event log that records them.

Every state change and every token movement of the simulator is an event. Phases append compact
tuples to an :class:`EventLog` (cheap on the hot path); :meth:`EventLog.typed` turns them into the
typed, frozen event records below, whose fields mirror the contracts' events:

- :class:`DealStateChange` <-> ``DealStateChange(string dealId, uint8 state)``
- :class:`Payment` <-> ``Payment(string dealId, address payee, uint256 amount, uint8 reason,
  uint8 direction)``; ``source`` and ``destination`` name the accounts whose balances moved
  (the contract event carries only the payee).
- :class:`MediationRequested` <-> ``MediationRequested(string dealId, address mediator)``
- :class:`Transfer`: a wallet-to-wallet movement outside the v1 contracts (bribes, mechanism
  pools), with a :class:`TransferReason`.
- :class:`CallReverted`: a call that the protocol preset makes revert (e.g. the deployed v1
  timeouts); nothing moves, the deal keeps its state.
- :class:`MediationVoted` and :class:`VoteRevealed`: a consortium mediator's vote (public), or
  its sealed commitment and, once the round's votes are all in, the anonymous reveals
  (commit-reveal; :mod:`twin.mediation.consortium`). v1 mediation emits neither.

The log is deterministic: the same seed and actions give the same tuples, and
:meth:`EventLog.to_bytes` gives the same bytes.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from dataclasses import dataclass


class PaymentReason(enum.IntEnum):
    """v1 ``PaymentReason`` (exact indices)."""

    PaymentCollateral = 0
    ResultsCollateral = 1
    TimeoutCollateral = 2
    JobPayment = 3
    MediationFee = 4


class PaymentDirection(enum.IntEnum):
    """v1 ``PaymentDirection`` (exact indices)."""

    PaidIn = 0
    PaidOut = 1
    Refunded = 2
    Slashed = 3


class TransferReason(enum.IntEnum):
    """Reasons of wallet-to-wallet movements that the v1 contracts do not make."""

    Bribe = 0
    Tax = 1
    JackpotPayout = 2
    ProtocolFee = 3
    StakeReward = 4
    MarketBet = 5
    MarketPayout = 6
    Genesis = 7
    StorageFee = 8
    SlashShare = 9
    AnnounceReward = 10
    ForcedErrorRefund = 11
    StakeSlash = 12
    ContractPayment = 13
    MediationPayout = 14  # unlinkable payout of pooled mediation fees (commit-reveal consortium)
    CccDeposit = 15  # into a counter-collusion contract: client's pay, a node's d, a report's ch
    CccPayout = 16  # prisoner's contract -> node (its pay and deposits)
    CccClientPayout = 17  # counter-collusion contract -> client (refunds, forfeited deposits)
    CccDisputeCost = 18  # counter-collusion contract -> the TTP (ch)
    CccCollusionDeposit = 19  # node -> colluder's contract (leader t + b, follower t)
    CccCollusionPayout = 20  # colluder's contract -> node
    CccTraitorReward = 21  # traitor's contract -> the traitor (w + 2d)
    StakeWithdraw = 22  # delegated stake leaves the stake pool for its delegator's wallet
    MarketSubsidy = 23  # a replication market's subsidy: funder -> maker, and the rest back
    MarketRefund = 24  # a voided replication market refunds a bettor's payments


class EventKind(enum.IntEnum):
    DealStateChange = 0
    Payment = 1
    MediationRequested = 2
    Transfer = 3
    CallReverted = 4
    MediationVoted = 5
    VoteRevealed = 6


#: ``MediationVoted.vote`` values: the vote itself, or a sealed commitment (commit-reveal)
VOTE_REJECT, VOTE_ACCEPT, VOTE_SEALED = 0, 1, 2


_STATE_CHANGE, _PAYMENT, _MEDIATION_REQUESTED, _TRANSFER, _CALL_REVERTED, _VOTED, _REVEALED = (
    int(k) for k in EventKind
)


@dataclass(frozen=True, slots=True)
class DealStateChange:
    time_s: int
    deal_id: str
    state: int


@dataclass(frozen=True, slots=True)
class Payment:
    time_s: int
    deal_id: str
    payee: int
    amount: int
    reason: PaymentReason
    direction: PaymentDirection
    source: int
    destination: int


@dataclass(frozen=True, slots=True)
class MediationRequested:
    time_s: int
    deal_id: str
    mediator: int


@dataclass(frozen=True, slots=True)
class Transfer:
    time_s: int
    deal_id: str
    source: int
    destination: int
    amount: int
    reason: TransferReason


@dataclass(frozen=True, slots=True)
class CallReverted:
    time_s: int
    deal_id: str
    call: str
    caller: int
    reason: str


@dataclass(frozen=True, slots=True)
class MediationVoted:
    """A consortium mediator voted: ``vote`` 0 reject, 1 accept, 2 sealed commitment."""

    time_s: int
    deal_id: str
    mediator: int
    vote: int


@dataclass(frozen=True, slots=True)
class VoteRevealed:
    """One revealed vote of a commit-reveal round, not linked to its mediator."""

    time_s: int
    deal_id: str
    vote: int


Event = (
    DealStateChange
    | Payment
    | MediationRequested
    | Transfer
    | CallReverted
    | MediationVoted
    | VoteRevealed
)


class EventLog:
    """Append-only log of raw event tuples ``(kind, time_s, deal_index, *fields)``.

    ``deal_index`` is the simulator's integer deal index (-1 for none); :meth:`typed` resolves it
    to the deal's content id through ``deal_id_of``.
    """

    __slots__ = ("rows",)

    def __init__(self) -> None:
        self.rows: list[tuple] = []

    def __len__(self) -> int:
        return len(self.rows)

    def clear(self) -> None:
        self.rows.clear()

    # Rows hold plain ints (not enum members): a tuple of atomic values is untracked by the
    # garbage collector, so a long log does not slow down every full collection.
    def state_change(self, t: int, deal: int, state: int) -> None:
        self.rows.append((_STATE_CHANGE, t, deal, state))

    def payment(
        self,
        t: int,
        deal: int,
        payee: int,
        amount: int,
        reason: int,
        direction: int,
        src: int,
        dst: int,
    ) -> None:
        self.rows.append((_PAYMENT, t, deal, payee, amount, int(reason), int(direction), src, dst))

    def mediation_requested(self, t: int, deal: int, mediator: int) -> None:
        self.rows.append((_MEDIATION_REQUESTED, t, deal, mediator))

    def transfer(self, t: int, deal: int, src: int, dst: int, amount: int, reason: int) -> None:
        self.rows.append((_TRANSFER, t, deal, src, dst, amount, int(reason)))

    def reverted(self, t: int, deal: int, call: str, caller: int, reason: str) -> None:
        self.rows.append((_CALL_REVERTED, t, deal, call, caller, reason))

    def mediation_voted(self, t: int, deal: int, mediator: int, vote: int) -> None:
        self.rows.append((_VOTED, t, deal, mediator, vote))

    def vote_revealed(self, t: int, deal: int, vote: int) -> None:
        self.rows.append((_REVEALED, t, deal, vote))

    def to_bytes(self) -> bytes:
        """A canonical byte serialisation (for byte-for-byte determinism checks)."""
        return "\n".join(
            repr(tuple(int(x) if isinstance(x, enum.IntEnum) else x for x in r)) for r in self.rows
        ).encode()

    def typed(self, deal_id_of: Callable[[int], str], start: int = 0) -> Iterator[Event]:
        """Yield typed events from row ``start`` on."""
        for r in self.rows[start:]:
            kind, t, d = r[0], r[1], r[2]
            did = deal_id_of(d) if d >= 0 else ""
            if kind == EventKind.DealStateChange:
                yield DealStateChange(t, did, r[3])
            elif kind == EventKind.Payment:
                yield Payment(
                    t, did, r[3], r[4], PaymentReason(r[5]), PaymentDirection(r[6]), r[7], r[8]
                )
            elif kind == EventKind.MediationRequested:
                yield MediationRequested(t, did, r[3])
            elif kind == EventKind.Transfer:
                yield Transfer(t, did, r[3], r[4], r[5], TransferReason(r[6]))
            elif kind == EventKind.MediationVoted:
                yield MediationVoted(t, did, r[3], r[4])
            elif kind == EventKind.VoteRevealed:
                yield VoteRevealed(t, did, r[3])
            else:
                yield CallReverted(t, did, r[3], r[4], r[5])
