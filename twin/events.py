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
    CccDeposit = 14  # into a counter-collusion contract: client's pay, a node's d, a report's ch
    CccPayout = 15  # prisoner's contract -> node (its pay and deposits)
    CccClientPayout = 16  # counter-collusion contract -> client (refunds, forfeited deposits)
    CccDisputeCost = 17  # counter-collusion contract -> the TTP (ch)
    CccCollusionDeposit = 18  # node -> colluder's contract (leader t + b, follower t)
    CccCollusionPayout = 19  # colluder's contract -> node
    CccTraitorReward = 20  # traitor's contract -> the traitor (w + 2d)


class EventKind(enum.IntEnum):
    DealStateChange = 0
    Payment = 1
    MediationRequested = 2
    Transfer = 3
    CallReverted = 4


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


Event = DealStateChange | Payment | MediationRequested | Transfer | CallReverted


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

    def state_change(self, t: int, deal: int, state: int) -> None:
        self.rows.append((EventKind.DealStateChange, t, deal, state))

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
        self.rows.append((EventKind.Payment, t, deal, payee, amount, reason, direction, src, dst))

    def mediation_requested(self, t: int, deal: int, mediator: int) -> None:
        self.rows.append((EventKind.MediationRequested, t, deal, mediator))

    def transfer(self, t: int, deal: int, src: int, dst: int, amount: int, reason: int) -> None:
        self.rows.append((EventKind.Transfer, t, deal, src, dst, amount, reason))

    def reverted(self, t: int, deal: int, call: str, caller: int, reason: str) -> None:
        self.rows.append((EventKind.CallReverted, t, deal, call, caller, reason))

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
            else:
                yield CallReverted(t, did, r[3], r[4], r[5])
