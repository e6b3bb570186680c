"""Random sequences of calls by random parties (hypothesis `RuleBasedStateMachine`), compared
call by call with the reference model of docs/protocol-flows.md (tests/chain/model.py): the same
calls succeed, with the same custom error otherwise, the same events, and the same wallet and
escrow of every party. After every step: totalSupply == wallets + escrow (+ pools, none here),
the token holds exactly the escrow, every deal holds exactly its model escrow, and nobody's funds
moved but the caller's and those of the parties, mediators and slashing destination of the deal
the call was about."""

from __future__ import annotations

import os
from collections import Counter

import pytest
from hypothesis import HealthCheck, Phase, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from bridge.contracts import LilypadClient
from bridge.errors import ChainCallError
from bridge.types import AgreementState as S
from bridge.types import DealTerms
from tests.chain.model import Model, Rejected

UNIT = 10**17  # amounts are multiples of 0.1 token
DEAL_IDS = ("d0", "d1", "d2", "d3", "d4")
NAMES = ("owner", "solver", "jc", "jc2", "rp", "rp2", "m1", "m2", "m3", "outsider", "treasury")
ZERO = "0x" + "00" * 20
EXAMPLES = int(os.environ.get("TWIN_CHAIN_EXAMPLES", "20"))
STEPS = int(os.environ.get("TWIN_CHAIN_STEPS", "40"))
SHRINK = os.environ.get("TWIN_CHAIN_SHRINK") == "1"

amounts = st.integers(0, 4).map(lambda k: k * UNIT)
timeouts = st.integers(1, 90)
OUTCOMES: Counter[str] = Counter()  # call outcomes seen (printed with `pytest -s`)
roles = st.sampled_from(("JC", "RP", "mediator", "any"))
honest = st.sampled_from((True,) * 9 + (False,))
agree_roles = st.sampled_from(("JC", "RP", "JC", "RP", "any"))
DEAL_CALLS = (
    "addResult", "acceptResult", "checkResult", "timeoutAgree", "timeoutSubmitResult",
    "timeoutJudgeResult", "timeoutMediateResult", "mediationAcceptResult", "mediationRejectResult",
)  # fmt: skip
# The natural next calls of a deal in each state, with the role entitled to each.
NEXT_CALLS = {
    S.DealNegotiating: (("agree", "agree"),) * 4 + (("timeoutAgree", "JC"), ("timeoutAgree", "RP")),
    S.DealAgreed: (("addResult", "RP"), ("addResult", "RP"), ("timeoutSubmitResult", "JC")),
    S.ResultsSubmitted: (
        ("acceptResult", "JC"),
        ("checkResult", "JC"),
        ("timeoutJudgeResult", "RP"),
    ),
    S.ResultsChecked: (
        ("mediationAcceptResult", "mediator"),
        ("mediationRejectResult", "mediator"),
        ("timeoutMediateResult", "JC"),
        ("timeoutMediateResult", "RP"),
    ),
}

pytestmark = pytest.mark.chain


@st.composite
def deal_terms(draw, deal_id: str, addr: dict[str, str], valid: bool = False) -> DealTerms:
    mediators = draw(
        st.lists(st.sampled_from(("m1", "m2", "m3")), min_size=1, max_size=3, unique=True)
    )
    terms = DealTerms(
        deal_id=deal_id,
        solver=addr["outsider"],
        job_creator=addr[draw(st.sampled_from(("jc", "jc2")))],
        resource_provider=addr[draw(st.sampled_from(("rp", "rp2")))],
        mediators=tuple(addr[m] for m in mediators),
        agree_timeout_s=draw(timeouts),
        submit_results_timeout_s=draw(timeouts),
        judge_results_timeout_s=draw(timeouts),
        mediate_results_timeout_s=draw(timeouts),
        submit_results_collateral_wei=draw(amounts),
        judge_results_collateral_wei=draw(amounts),
        instruction_price_wei=draw(amounts),
        payment_collateral_wei=draw(amounts),
        results_collateral_multiple=draw(st.integers(0, 3)),
        mediation_fee_wei=draw(amounts),
    )
    flaws = (None,) if valid else (None,) * 12 + ("no_mediators", "agree_collateral", "same_party")
    flaw = draw(st.sampled_from(flaws))
    if flaw == "no_mediators":
        return DealTerms(**{**terms.__dict__, "mediators": ()})
    if flaw == "agree_collateral":
        return DealTerms(**{**terms.__dict__, "agree_collateral_wei": UNIT})
    if flaw == "same_party":
        return DealTerms(**{**terms.__dict__, "resource_provider": terms.job_creator})
    return terms


class LilypadMachine(RuleBasedStateMachine):
    client: LilypadClient
    parties: dict
    addr: dict[str, str]

    def __init__(self) -> None:
        super().__init__()
        c = self.client
        self.snapshot = c.snapshot()
        self.now = c.now() + 10
        self.model = Model(wallet={}, slash_to=c.deployment.slashing_destination)
        for name in NAMES:
            a = self.addr[name]
            self.model.wallet[a] = c.balance(a)
            assert c.escrow(a) == 0
        self.names = {a: n for n, a in self.addr.items()}
        self.touched: set[str] = set()

    def teardown(self) -> None:
        self.client.revert(self.snapshot)

    @initialize(data=st.data(), count=st.integers(1, 3))
    def open_deals(self, data, count: int) -> None:
        """Start with 1-3 valid deals agreed by both parties (so that deep states are reached)."""
        for deal_id in DEAL_IDS[:count]:
            terms = data.draw(deal_terms(deal_id, self.addr, valid=True))
            for party in (terms.resource_provider, terms.job_creator):
                self._step("agree", self.names[party], deal_id,
                           lambda a, t=terms: self.client.agree(a, t), terms)  # fmt: skip

    # ---------------------------------------------------------------- helpers
    def live_deals(self) -> list[str]:
        """Deals that are not in a terminal state."""
        return sorted(i for i, d in self.model.deals.items() if d.state in NEXT_CALLS)

    def _caller(self, deal_id: str, role: str, anyone: str) -> str:
        d = self.model.deals.get(deal_id)
        if role == "any" or d is None:
            return anyone
        t = d.terms
        if role == "JC":
            return self.names[t.job_creator]
        if role == "RP":
            return self.names[t.resource_provider]
        mediator = d.mediator or (t.mediators[0] if t.mediators else self.addr[anyone])
        return self.names[mediator]

    def _balances(self) -> dict[str, tuple[int, int]]:
        read = self.client.balances(self.addr[n] for n in NAMES)
        return {n: read[self.addr[n]] for n in NAMES}

    def _step(
        self,
        call: str,
        caller: str,
        deal_id: str | None,
        chain_call,
        *model_args,
        recipient: str | None = None,
    ) -> None:
        self.now += 1
        self.client.set_next_timestamp(self.now)
        before = self._balances()
        caller_address = self.addr[caller]
        try:
            expected = self.model.apply(call, caller_address, self.now, *model_args)
            expected_error = None
        except Rejected as rejected:
            expected, expected_error = None, rejected.name
        try:
            result = chain_call(self.parties[caller])
            error = None
        except ChainCallError as exc:
            result, error = None, exc.error_name
        assert error == expected_error, f"{call} by {caller}: chain {error}, model {expected_error}"
        event(f"{call}: {error or 'ok'}")
        OUTCOMES[f"{call}: {error or 'ok'}"] += 1
        after = self._balances()
        if result is None:
            assert after == before, f"reverted {call} moved funds"
            return
        assert result.timestamp == self.now
        assert list(result.events) == expected, f"{call}: events differ"
        moved = {n for n in NAMES if after[n] != before[n]}
        allowed = {caller} | ({recipient} if recipient else set())
        if deal_id is not None and deal_id in self.model.deals:
            t = self.model.deals[deal_id].terms
            allowed |= {self.names[a] for a in (t.job_creator, t.resource_provider, *t.mediators)}
            allowed.add(self.names[self.model.slash_to])
        assert moved <= allowed, f"{call} by {caller} moved the funds of {moved - allowed}"
        for n in NAMES:
            a = self.addr[n]
            assert after[n] == (self.model.wallet[a], self.model.escrow(a)), f"{n} after {call}"
        if deal_id is not None:
            self.touched.add(deal_id)

    # ------------------------------------------------------------------ rules
    @rule(seconds=st.integers(1, 120))
    def advance_time(self, seconds: int) -> None:
        self.now += seconds

    @rule(data=st.data(), deal_id=st.sampled_from(DEAL_IDS), role=agree_roles,
          anyone=st.sampled_from(NAMES), reuse=st.sampled_from((True, True, True, False)))  # fmt: skip
    def agree(self, data, deal_id: str, role: str, anyone: str, reuse: bool) -> None:
        d = self.model.deals.get(deal_id)
        if d is not None and reuse:
            terms = d.terms
        else:
            terms = data.draw(deal_terms(deal_id, self.addr))
        if role == "JC":
            caller = self.names[terms.job_creator]
        elif role == "RP" and terms.resource_provider in self.names:
            caller = self.names[terms.resource_provider]
        else:
            caller = anyone
        self._step("agree", caller, deal_id, lambda acct: self.client.agree(acct, terms), terms)

    def _progress(self, data, n: int, honest: bool, wait: bool) -> None:
        """The natural next call of an existing deal, usually by the party entitled to it; before
        a timeout call, often first waits until the timeout has passed."""
        deal_id = data.draw(st.sampled_from(self.live_deals()))
        d = self.model.deals[deal_id]
        options = NEXT_CALLS[d.state]
        call, role = data.draw(st.sampled_from(options))
        if wait and call.startswith("timeout"):
            t = d.terms
            start, window = {
                S.DealNegotiating: (d.created_at, t.agree_timeout_s),
                S.DealAgreed: (d.agreed_at, t.submit_results_timeout_s),
                S.ResultsSubmitted: (d.submitted_at, t.judge_results_timeout_s),
                S.ResultsChecked: (d.checked_at, t.mediate_results_timeout_s),
            }[d.state]
            self.now = max(self.now, start + window)  # the call itself comes 1 s later
        if role == "agree":
            caller = self.names[d.terms.job_creator if d.rp_agreed else d.terms.resource_provider]
            if not honest:
                caller = data.draw(st.sampled_from(NAMES))
            self._step("agree", caller, deal_id, lambda a: self.client.agree(a, d.terms), d.terms)
            return
        caller = self._caller(deal_id, role if honest else "any", data.draw(st.sampled_from(NAMES)))
        self._call(call, caller, deal_id, n)

    # Three copies of the same rule: hypothesis picks rules uniformly, and progress matters most.
    @precondition(lambda self: self.live_deals())
    @rule(data=st.data(), n=st.integers(0, 3), honest=honest, wait=st.booleans())
    def progress_1(self, data, n: int, honest: bool, wait: bool) -> None:
        self._progress(data, n, honest, wait)

    @precondition(lambda self: self.live_deals())
    @rule(data=st.data(), n=st.integers(0, 3), honest=honest, wait=st.booleans())
    def progress_2(self, data, n: int, honest: bool, wait: bool) -> None:
        self._progress(data, n, honest, wait)

    @precondition(lambda self: self.live_deals())
    @rule(data=st.data(), n=st.integers(0, 3), honest=honest, wait=st.booleans())
    def progress_3(self, data, n: int, honest: bool, wait: bool) -> None:
        self._progress(data, n, honest, wait)

    @rule(deal_id=st.sampled_from(DEAL_IDS), role=roles, anyone=st.sampled_from(NAMES),
          call=st.sampled_from(DEAL_CALLS), n=st.integers(0, 3))  # fmt: skip
    def deal_call(self, deal_id: str, role: str, anyone: str, call: str, n: int) -> None:
        """Any call on any deal (existing or not) by anyone."""
        self._call(call, self._caller(deal_id, role, anyone), deal_id, n)

    def _call(self, call: str, caller: str, deal_id: str, n: int) -> None:
        if call == "addResult":
            self._step("addResult", caller, deal_id,
                       lambda a: self.client.add_result(a, deal_id, "res", "data", n), deal_id, n)  # fmt: skip
            return
        method = {
            "acceptResult": self.client.accept_result,
            "checkResult": self.client.check_result,
            "timeoutAgree": self.client.timeout_agree,
            "timeoutSubmitResult": self.client.timeout_submit_result,
            "timeoutJudgeResult": self.client.timeout_judge_result,
            "timeoutMediateResult": self.client.timeout_mediate_result,
            "mediationAcceptResult": self.client.mediation_accept_result,
            "mediationRejectResult": self.client.mediation_reject_result,
        }[call]
        self._step(call, caller, deal_id, lambda a: method(a, deal_id), deal_id)

    @rule(who=st.sampled_from(NAMES), to=st.sampled_from(NAMES), amount=amounts,
          kind=st.sampled_from(("payEscrow", "withdrawEscrow", "transfer")),
          share=st.sampled_from((0.5, 1.0)))  # fmt: skip
    def token_call(self, who: str, to: str, amount: int, kind: str, share: float) -> None:
        """Own-funds moves: free escrow in and out, or a transfer of half or all of a wallet."""
        if kind == "payEscrow":
            self._step(kind, who, None, lambda a: self.client.pay_escrow(a, amount), amount)
        elif kind == "withdrawEscrow":
            self._step(kind, who, None, lambda a: self.client.withdraw_escrow(a, amount), amount)
        else:
            value = int(self.model.wallet[self.addr[who]] * share)
            target = self.addr[to]
            self._step(kind, who, None, lambda a: self.client.transfer(a, target, value),
                       target, value, recipient=to)  # fmt: skip

    # ------------------------------------------------------------- invariants
    @invariant()
    def supply_is_conserved(self) -> None:
        c = self.client
        read = self._balances()
        wallets = sum(w for w, _ in read.values())
        escrow = sum(e for _, e in read.values())
        pools = 0  # no tax / jackpot pool in this deployment
        assert c.total_supply() == wallets + escrow + pools
        assert c.balance(c.token.address) == escrow == c.view("token", "totalEscrow")[0]

    @invariant()
    def deals_hold_exactly_their_escrow(self) -> None:
        for deal_id in self.touched:
            d = self.model.deals.get(deal_id)
            held = (0, 0) if d is None else (d.jc_held, d.rp_held)
            assert self.client.deal_escrow(deal_id) == held, deal_id
            if d is not None:
                assert self.client.state(deal_id) == d.state, deal_id
        self.touched.clear()


def test_random_call_sequences_match_the_model(module_client, parties, addr):
    LilypadMachine.client = module_client
    LilypadMachine.parties = parties
    LilypadMachine.addr = addr
    run_state_machine_as_test(
        LilypadMachine,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            derandomize=True,
            report_multiple_bugs=False,
            # Shrinking a chain failure can take many minutes: opt in with TWIN_CHAIN_SHRINK=1.
            phases=tuple(Phase) if SHRINK else tuple(p for p in Phase if p != Phase.shrink),
        ),
    )
    print("\ncall outcomes:", dict(sorted(OUTCOMES.items())))
