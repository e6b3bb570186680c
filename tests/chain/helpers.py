"""Small helpers of the chain tests: default terms, balance snapshots and expected events."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bridge.contracts import LilypadClient
from bridge.errors import ChainCallError
from bridge.types import AgreementState as S
from bridge.types import (
    DealStateChange,
    DealTerms,
    MediationRequested,
    Payment,
    PaymentDirection,
    PaymentReason,
)

TOKEN = 10**18
DEAL_ID = "bafyreigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"


def default_terms(addr: dict[str, str], deal_id: str = DEAL_ID, **overrides) -> DealTerms:
    """Spec defaults (whole tokens): price 1, P 2, m 2, F 1, Ts = Tj = 1, timeouts 3600 s."""
    terms = DealTerms(
        deal_id=deal_id,
        solver=addr["solver"],
        job_creator=addr["jc"],
        resource_provider=addr["rp"],
        mediators=(addr["m1"],),
    )
    return replace(terms, **overrides)


def balances(client: LilypadClient, addr: dict[str, str]) -> dict[str, tuple[int, int]]:
    """(wallet, escrow) of every named party."""
    read = client.balances(addr.values())
    return {name: read[a] for name, a in addr.items()}


def assert_moves(
    before: dict[str, tuple[int, int]],
    after: dict[str, tuple[int, int]],
    expected: dict[str, tuple[int, int]],
) -> None:
    """Each party's (wallet, escrow) changed by exactly `expected` (absent parties: unchanged)."""
    for name in before:
        dw, de = expected.get(name, (0, 0))
        got = (after[name][0] - before[name][0], after[name][1] - before[name][1])
        assert got == (dw, de), f"{name}: moved {got}, expected {(dw, de)}"


def pay(deal_id: str, who: str, amount: int, reason: int, direction: int) -> Payment:
    return Payment(deal_id, who, amount, PaymentReason(reason), PaymentDirection(direction))


def dsc(deal_id: str, state: S) -> DealStateChange:
    return DealStateChange(deal_id, state)


def requested(deal_id: str, mediator: str) -> MediationRequested:
    return MediationRequested(deal_id, mediator)


def expect_revert(error_name: str, fn, *args, **kwargs) -> ChainCallError:
    """Calls `fn`, which must revert with custom error `error_name`; returns the error."""
    with pytest.raises(ChainCallError) as info:
        fn(*args, **kwargs)
    assert info.value.error_name == error_name, str(info.value)
    return info.value
