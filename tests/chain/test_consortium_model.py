"""LilypadMediationConsortium against the twin's consortium, on random cases (hypothesis): random
deal mediators, fees, vote orders and votes, under several parameter sets. The reference is the
twin's own code (`twin.mediation.consortium`: `hash_draw`, `tally`, `fee_payees`, `split_fee` and
the round size, min(n, candidates left, max_nodes - drawn so far)). Every vote's
events must be the twin's: `MediationVoted`, then the new round's `MediationRequested` events or
the verdict's flows; every payee's wallet must grow by its share, and a deal whose rounds run out
must end by `timeoutMediateResult` with nobody paid."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bridge.contracts import LilypadClient
from bridge.deploy import ConsortiumOptions
from bridge.types import AgreementState as S
from bridge.types import MediationVoted
from tests.chain.conftest import deploy_funded
from tests.chain.helpers import TOKEN, default_terms, dsc, pay, requested
from twin.mediation.consortium import (
    ConsortiumMediation,
    fee_payees,
    hash_draw,
    split_fee,
    tally,
)

pytestmark = pytest.mark.chain

EXAMPLES = int(os.environ.get("TWIN_CHAIN_EXAMPLES", "20"))
#: parties that may be a deal's mediators (any address can be; these hold keys to vote)
POOL = ("m1", "m2", "m3", "jc2", "rp2", "outsider", "treasury", "solver")
#: n, k, max rounds, max nodes, fee split: v1-like, recursive with and without caps, majority
PARAMETERS = (
    ConsortiumOptions(1, 1, 1, 0, "equal"),
    ConsortiumOptions(3, 2, 3, 0, "equal"),
    ConsortiumOptions(2, 2, 4, 5, "majority"),
    ConsortiumOptions(4, 3, 3, 7, "majority"),
)


@pytest.fixture(scope="module", params=PARAMETERS, ids=lambda o: f"n{o.n_mediators}k{o.threshold}"
                f"r{o.max_rounds}c{o.max_nodes}{o.fee_split[0]}")  # fmt: skip
def deployed(request, w3, parties) -> Iterator[tuple[LilypadClient, ConsortiumOptions]]:
    options = request.param
    client = deploy_funded(w3, parties, mediation_kind="consortium", consortium=options)[1]
    yield client, options


def _round_size(o: ConsortiumOptions, used: int, left: int) -> int:
    """The twin's round size, min(n, candidates left, max_nodes - drawn so far), for ``o``."""
    return ConsortiumMediation(o)._round_size(None, used, left)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip
@given(data=st.data())
def test_the_contract_decides_and_pays_as_the_twin(deployed, parties, addr, data) -> None:
    c, o = deployed
    names = tuple(data.draw(st.permutations(POOL), label="deal mediators"))
    names = names[: data.draw(st.integers(1, len(POOL)), label="how many")]
    fee = data.draw(st.sampled_from([TOKEN, 7, 3 * TOKEN + 2]), label="F")
    terms = default_terms(addr, mediators=tuple(addr[n] for n in names), mediation_fee_wei=fee,
                          mediate_results_timeout_s=3_600)  # fmt: skip
    deal = terms.deal_id
    snapshot = c.snapshot()
    try:
        c.agree(parties["rp"], terms)
        c.agree(parties["jc"], terms)
        c.add_result(parties["rp"], deal, "r", "d", 1)
        t = c.now() + 10
        c.set_next_timestamp(t)
        first = hash_draw(t, deal, range(len(names)), _round_size(o, 0, len(names)))
        r = c.check_result(parties["jc"], deal)
        assert r.events[3:] == tuple(requested(deal, addr[names[i]]) for i in first)
        rounds, ballots = [first], {}
        verdict = None
        while verdict is None:
            current = rounds[-1]
            order = data.draw(st.permutations(current), label="vote order")
            for pos, m in enumerate(order):
                vote = data.draw(st.booleans(), label="accept")
                ballots[m] = vote
                t += 7
                c.set_next_timestamp(t)
                before = c.balances([addr[n] for n in names])
                who = parties[names[m]]
                r = (c.mediation_accept_result if vote else c.mediation_reject_result)(who, deal)
                expected = [MediationVoted(deal, addr[names[m]], int(vote))]
                if pos < len(order) - 1:  # the round is still open
                    assert tuple(r.events) == tuple(expected)
                    continue
                a = sum(ballots[x] for x in current)
                verdict = tally(a, len(current) - a, o.threshold)
                if verdict is None:
                    used = [x for rnd in rounds for x in rnd]
                    left = [i for i in range(len(names)) if i not in used]
                    size = _round_size(o, len(used), len(left))
                    if len(rounds) < o.max_rounds and size >= o.threshold:
                        drawn = tuple(left[i] for i in hash_draw(t, deal, range(len(left)), size))
                        rounds.append(drawn)
                        expected += [requested(deal, addr[names[x]]) for x in drawn]
                    assert tuple(r.events) == tuple(expected)
                    event("new round" if rounds[-1] is not current else "no round left")
                    break
                event(f"verdict in round {len(rounds)}")
                # the verdict: v1's flows with the fee in shares to the payees, in draw order
                drawn_order = [(x, ballots[x]) for rnd in rounds for x in rnd]
                shares = split_fee(fee, fee_payees(drawn_order, verdict, o.fee_split))
                jc, rp = addr["jc"], addr["rp"]
                fee_events = [pay(deal, addr[names[x]], w, 4, 1) for x, w in shares if w]
                if verdict:  # C = 1 token = pay (P = 2), R = 2 tokens
                    expected += [pay(deal, rp, TOKEN, 3, 1), *fee_events,
                                 pay(deal, jc, TOKEN, 0, 2), pay(deal, rp, 2 * TOKEN, 1, 2),
                                 dsc(deal, S.MediationAccepted)]  # fmt: skip
                else:
                    expected += [pay(deal, jc, 2 * TOKEN, 0, 2), *fee_events,
                                 pay(deal, rp, 2 * TOKEN, 1, 3), dsc(deal, S.MediationRejected)]  # fmt: skip
                assert tuple(r.events) == tuple(expected)
                after = c.balances([addr[n] for n in names])
                for x, w in shares:
                    address = addr[names[x]]
                    assert after[address][0] - before[address][0] == w
                break
            if verdict is None and rounds[-1] is current:  # no round left: only the timeout
                c.set_next_timestamp(t + 3_600)
                r = c.timeout_mediate_result(parties["rp"], deal)
                assert r.events[-1] == dsc(deal, S.TimeoutMediateResults)
                assert not any(getattr(e, "reason", None) == 4 and e.direction == 1
                               for e in r.events)  # fmt: skip
                break
    finally:
        c.revert(snapshot)
