"""The verifier's dilemma in money (spec section 4): a checker's profit with and without forced errors.

Honest nodes, clients that check every result, a deterministic job class, no mediator collusion.
Per checked deal the client's wealth changes by:

- an honest result: the mediator accepts; the client pays the job C and the fee F:  -(C + F);
- a forced error (probability phi per honest run): the mediator rejects; the client gets P back,
  pays F, and wins the jackpot payout X = min(compensation / phi, jackpot / 3):  -F + X.

So E[delta per check] = (1 - phi) * (-(C + F)) + phi * (X - F) = -F - (1 - phi) C + phi X,
and with no forced errors (phi = 0) it is -(C + F): checking costs F more than accepting, with
nothing to win -- the verifier's dilemma. With forced errors the expected payout phi * X exceeds
the cost of a check F when phi * X > F, here phi * X = compensation = 2 tokens > F = 1 token.
"""

from __future__ import annotations

import numpy as np
import pytest

from twin.deals import DealState
from twin.events import EventKind, PaymentDirection, TransferReason

TOKEN = 10**18
BASE = ("market.modules=[cowsay]", "policies.rp.policy=honest", "policies.jc.policy=always_check",
        "policies.rp.learning_share=0", "market.n_job_creators=10", "market.n_resource_providers=6",
        "market.n_mediators=2", "market.episode_ticks=300")  # fmt: skip


def client_deltas(mk) -> dict[int, int]:
    """Per checked deal: the client's wealth change from that deal's events (wei)."""
    out: dict[int, int] = {}
    for r in mk.log.rows:
        d = r[2]
        if d < 0 or not mk.deals[d].checked:
            continue
        deal = mk.deals[d]
        if r[0] == EventKind.Payment:
            payee, amount, direction, src = r[3], r[4], r[6], r[7]
            if direction == PaymentDirection.PaidOut and src == deal.jc:  # job payment or fee
                out[d] = out.get(d, 0) - amount
            elif direction == PaymentDirection.Slashed and payee == deal.jc:
                out[d] = out.get(d, 0) - amount
        elif (
            r[0] == EventKind.Transfer and r[4] == deal.jc and r[6] == TransferReason.JackpotPayout
        ):
            out[d] = out.get(d, 0) + r[5]
    return out


def run(compose, *extra, seed=0):
    from twin.env import MarketEnv

    env = MarketEnv(compose(*BASE, *extra))
    env.reset(seed=seed)
    while not env.market.done:
        env.step({})
    return env.market


def test_checking_without_forced_errors_costs_the_fee(compose):
    mk = run(compose)
    deltas = client_deltas(mk)
    checked = [d for d in mk.deals if d.checked and d.state == DealState.MediationAccepted]
    assert len(checked) > 100 and len(deltas) == len(checked)
    for d in checked:  # exactly -(C + F): F = 1 token buys nothing
        assert deltas[d.index] == -(d.payment + d.mediation_fee)


@pytest.mark.parametrize("phi", [0.1, 0.3])
def test_forced_errors_pay_the_checker(compose, phi):
    # compensation 1 token / phi = X target; the jackpot (50 000 tokens, no tax) keeps
    # jackpot / 3 above the target, so X = 1 / phi tokens exactly: phi * X = 1 token
    mk = run(
        compose,
        "taxes=forced_errors",
        f"taxes.forced_error_rate={phi}",
        "taxes.rate=0",
        "taxes.seed_jackpot_tokens=50000",
    )
    deltas = client_deltas(mk)
    deals = [
        d
        for d in mk.deals
        if d.checked and d.state in (DealState.MediationAccepted, DealState.MediationRejected)
    ]
    assert len(deals) > 200
    X = int(TOKEN / phi) if phi != 0.3 else 3333333333333333333  # floor(10**18 / 0.3)
    F = deals[0].mediation_fee
    forced = [d for d in deals if d.forced_error]
    assert forced and all(deltas[d.index] == X - F for d in forced)
    assert all(deltas[d.index] == -(d.payment + F) for d in deals if not d.forced_error)
    # the expectation over deals: -F - (1 - phi) E[C] + phi X, within a 4-SE interval
    x = np.array([deltas[d.index] for d in deals], float) / TOKEN
    c = np.mean([d.payment for d in deals]) / TOKEN
    expected = -F / TOKEN - (1 - phi) * c + phi * X / TOKEN
    se = x.std(ddof=1) / np.sqrt(len(x))
    assert abs(x.mean() - expected) < 4 * se, (x.mean(), expected, se)
